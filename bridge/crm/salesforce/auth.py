"""Salesforce logins: which mode the settings describe, and getting a session in that mode.

Four modes, each a complete set of settings; exactly one must be complete:

- ``token``: ``SALESFORCE_INSTANCE_URL`` + ``SALESFORCE_ACCESS_TOKEN`` (cannot renew itself)
- ``client_credentials``: ``SALESFORCE_CLIENT_ID`` + ``SALESFORCE_CLIENT_SECRET`` + ``SALESFORCE_DOMAIN``
- ``jwt``: ``SALESFORCE_USERNAME`` + ``SALESFORCE_CLIENT_ID`` + ``SALESFORCE_PRIVATE_KEY`` (or ``_FILE``)
  + ``SALESFORCE_DOMAIN``
- ``password``: ``SALESFORCE_USERNAME`` + ``SALESFORCE_PASSWORD`` + ``SALESFORCE_SECURITY_TOKEN``
  (legacy: Salesforce retires this SOAP login in Summer '27)

simple-salesforce builds every login URL as ``https://{domain}.salesforce.com``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, assert_never
from urllib.parse import urlsplit

import requests
from simple_salesforce.exceptions import SalesforceAuthenticationFailed
from simple_salesforce.login import SalesforceLogin

from bridge.errors import ConfigError, CRMAuthError, CRMUnavailable

LoginMode = Literal["token", "client_credentials", "jwt", "password"]


@dataclass(frozen=True)
class SalesforceCredentials:
    """One complete set of login settings. ``repr`` never shows a secret."""

    mode: LoginMode
    instance_url: str = ""
    access_token: str = ""
    client_id: str = ""
    client_secret: str = ""
    domain: str = ""
    username: str = ""
    password: str = ""
    security_token: str = ""
    private_key: str = ""
    private_key_file: str = ""

    def __repr__(self) -> str:
        return f"SalesforceCredentials(mode={self.mode!r}, domain={self.domain!r}, instance_url={self.instance_url!r})"

    @property
    def can_login(self) -> bool:
        return self.mode != "token"


_MODES: dict[LoginMode, dict[str, str]] = {
    "token": {"instance_url": "SALESFORCE_INSTANCE_URL", "access_token": "SALESFORCE_ACCESS_TOKEN"},
    "client_credentials": {
        "client_id": "SALESFORCE_CLIENT_ID",
        "client_secret": "SALESFORCE_CLIENT_SECRET",
        "domain": "SALESFORCE_DOMAIN",
    },
    "jwt": {
        "username": "SALESFORCE_USERNAME",
        "client_id": "SALESFORCE_CLIENT_ID",
        "private_key": "SALESFORCE_PRIVATE_KEY (or SALESFORCE_PRIVATE_KEY_FILE)",
        "domain": "SALESFORCE_DOMAIN",
    },
    "password": {
        "username": "SALESFORCE_USERNAME",
        "password": "SALESFORCE_PASSWORD",
        "security_token": "SALESFORCE_SECURITY_TOKEN",
    },
}
_MODE_NAMES = {
    "token": "access token",
    "client_credentials": "OAuth client credentials",
    "jwt": "JWT bearer",
    "password": "username + password (legacy)",
}


def choose_credentials(values: dict[str, str]) -> SalesforceCredentials:
    """Pick the one complete login mode in ``values`` (keyed like the dataclass fields).

    Raises :class:`ConfigError` naming what each mode still lacks when none is complete, or the
    competing modes when several are.
    """
    present = dict(values)
    if present.get("private_key_file") and not present.get("private_key"):
        present["private_key"] = "(file)"
    complete = [mode for mode, needed in _MODES.items() if all(present.get(key) for key in needed)]
    # simple-salesforce refuses client credentials against login/test: a My Domain is required.
    if "client_credentials" in complete and present.get("domain") in ("login", "test"):
        raise ConfigError(
            "SALESFORCE_DOMAIN must be your My Domain (such as acme.my) for OAuth client credentials, "
            f"not {present['domain']!r}."
        )
    if len(complete) == 1:
        return SalesforceCredentials(mode=complete[0], **values)
    if len(complete) > 1:
        names = " and ".join(_MODE_NAMES[m] for m in complete)
        raise ConfigError(f"The Salesforce settings describe several logins ({names}); set only one of them.")
    lacking = []
    for mode, needed in _MODES.items():
        missing = [label for key, label in needed.items() if not present.get(key)]
        lacking.append(f"{_MODE_NAMES[mode]} needs {', '.join(missing)}")
    raise ConfigError("No complete Salesforce login is configured: " + "; ".join(lacking) + ".")


def login(credentials: SalesforceCredentials, *, session: requests.Session, api_version: str) -> tuple[str, str]:
    """Return ``(session_id, instance host[:port])`` for the credentials' mode."""
    kwargs: dict[str, str | None] = {"domain": credentials.domain or None}
    match credentials.mode:
        case "token":
            return credentials.access_token, urlsplit(credentials.instance_url).netloc
        case "client_credentials":
            kwargs |= {"consumer_key": credentials.client_id, "consumer_secret": credentials.client_secret}
        case "jwt":
            kwargs |= {
                "username": credentials.username,
                "consumer_key": credentials.client_id,
                "privatekey": credentials.private_key or None,
                "privatekey_file": None if credentials.private_key else credentials.private_key_file,
            }
        case "password":
            kwargs |= {
                "username": credentials.username,
                "password": credentials.password,
                "security_token": credentials.security_token,
            }
        case _:
            assert_never(credentials.mode)
    try:
        session_id, instance = SalesforceLogin(session=session, sf_version=api_version, **kwargs)  # type: ignore[arg-type]
    except SalesforceAuthenticationFailed as exc:
        raise CRMAuthError(
            f"Salesforce refused the {_MODE_NAMES[credentials.mode]} login ({exc.code}: {exc.message})."
        ) from exc
    except requests.RequestException as exc:
        raise CRMUnavailable(f"Could not reach Salesforce to log in ({type(exc).__name__}).") from exc
    except (OSError, ValueError) as exc:  # e.g. an unreadable or malformed private key
        raise CRMAuthError(f"The {_MODE_NAMES[credentials.mode]} login could not be prepared: {exc}.") from exc
    return str(session_id), str(instance)
