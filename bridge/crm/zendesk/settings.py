"""Zendesk's settings: the account and the bridge's API login (``ZENDESK_*``), the webhook's signing
secrets, and its table of the mapping file (``[zendesk]``: the ticket fields the outcome is
written to, by title, and the tag the bridge's own updates carry)."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import Field, SecretStr, ValidationInfo, field_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from bridge.errors import ConfigError
from bridge.settings import CRMSettings, Section, comma_list

# The titles `bridge zendesk setup` gives the ticket fields it creates (and the defaults of [zendesk]).
FIELD_TITLES = {
    "chat_id_field": "CCAI Chat Id",
    "status_field": "CCAI SMS Status",
    "error_field": "CCAI SMS Error",
    "chat_status_field": "CCAI Chat Status",
    "chat_agent_field": "CCAI Chat Agent",
    "chat_ended_at_field": "CCAI Chat Ended At",
    "chat_outcome_field": "CCAI Chat Outcome",
}


class ZendeskTable(Section):
    """``[zendesk]`` in the mapping file: ticket fields by their title (ids differ per account and
    are looked up once), and the tag the bridge adds to every ticket it updates."""

    chat_id_field: str = FIELD_TITLES["chat_id_field"]
    status_field: str = FIELD_TITLES["status_field"]
    error_field: str = FIELD_TITLES["error_field"]
    chat_status_field: str = FIELD_TITLES["chat_status_field"]
    chat_agent_field: str = FIELD_TITLES["chat_agent_field"]
    chat_ended_at_field: str = FIELD_TITLES["chat_ended_at_field"]
    chat_outcome_field: str = FIELD_TITLES["chat_outcome_field"]
    # Every update the bridge makes adds this tag: views and reports can find the tickets it wrote to,
    # and a trigger can tell the bridge's updates apart (README: Zendesk set-up).
    update_tag: str = "ccai_bridge"
    # The tag the example trigger reacts to (an agent or a macro adds it; the trigger removes it).
    request_tag: str = "ccai_text_customer"
    # Added to the requester when the bridge learns of an opt-out (the customer's reply, CCAI's
    # refusal): agents see it, [consent] blocks on it. "" adds none. Needs user tagging turned on.
    opt_out_tag: str = "sms_opt_out"

    @field_validator("update_tag", "request_tag", "opt_out_tag")
    @classmethod
    def _tag(cls, value: str, info: ValidationInfo) -> str:
        if info.field_name == "opt_out_tag" and not value:
            return value
        if not re.fullmatch(r"[a-z0-9_\-/:.]+", value):
            raise ValueError(f"{value!r} is not a Zendesk tag (lower-case letters, digits, _ - / : .)")
        return value

    def titles(self) -> dict[str, str]:
        return {name: getattr(self, name) for name in FIELD_TITLES}


class ZendeskSettings(CRMSettings):
    """``ZENDESK_*`` (field names without the prefix) and the ``[zendesk]`` table."""

    model_config = SettingsConfigDict(env_prefix="zendesk_")

    subdomain: str = ""
    # The account's API base, when it is not https://<subdomain>.zendesk.com (a host-mapped domain, the sandbox).
    url: str = ""
    email: str = ""  # the bridge's Zendesk user, for its API token
    api_token: SecretStr = SecretStr("")
    oauth_token: SecretStr = SecretStr("")  # instead of email + API token
    timeout_seconds: float = Field(default=10.0, gt=0)
    ca_bundle: str = ""
    # The bridge's public base URL as Zendesk calls it (https://bridge.example.com): `bridge zendesk setup`
    # points the webhook there, and `bridge check` verifies that it still does.
    webhook_url: str = ""
    # The webhook's signing secrets (`bridge zendesk setup` prints it); two while rotating.
    webhook_secret: Annotated[tuple[SecretStr, ...], NoDecode] = ()
    # A signed request older (or newer) than this is refused: a captured request cannot be replayed later.
    webhook_tolerance_seconds: float = Field(default=300.0, gt=0)
    # A 429's Retry-After up to this long is waited out inside the call; a longer one makes the call fail
    # as retryable, so the worker's own backoff takes over instead of holding a thread.
    max_retry_after_seconds: float = Field(default=30.0, ge=0)

    zendesk: ZendeskTable = ZendeskTable()

    @field_validator("webhook_secret", mode="before")
    @classmethod
    def _split_commas(cls, value: Any) -> Any:
        return comma_list(value)

    @field_validator("subdomain")
    @classmethod
    def _subdomain(cls, value: str) -> str:
        if value and not re.fullmatch(r"[a-z0-9][a-z0-9-]*", value):
            raise ValueError(f"{value!r} is not a Zendesk subdomain (the acme of acme.zendesk.com)")
        return value

    @field_validator("url", "webhook_url")
    @classmethod
    def _url(cls, value: str) -> str:
        if value and not re.fullmatch(r"https?://[^/\s]+", value.rstrip("/")):
            raise ValueError(f"{value!r} must be a base URL such as https://support.acme.com (no path)")
        return value.rstrip("/")

    def base_url(self) -> str:
        """The account's base URL, or :class:`ConfigError` when neither setting gives one."""
        if self.url:
            return self.url
        if self.subdomain:
            return f"https://{self.subdomain}.zendesk.com"
        raise ConfigError("ZENDESK_SUBDOMAIN (or ZENDESK_URL) is not set: the bridge does not know the account.")

    def secrets(self) -> list[str]:
        return [secret.get_secret_value() for secret in self.webhook_secret if secret.get_secret_value()]

    def login(self) -> tuple[str, str] | str:
        """(``email/token``, token) for Basic auth, or an OAuth bearer token; :class:`ConfigError` if neither."""
        if self.oauth_token.get_secret_value():
            return self.oauth_token.get_secret_value()
        if self.email and self.api_token.get_secret_value():
            return (f"{self.email}/token", self.api_token.get_secret_value())
        raise ConfigError(
            "Zendesk login: set ZENDESK_EMAIL and ZENDESK_API_TOKEN (an API token of the bridge's user), "
            "or ZENDESK_OAUTH_TOKEN."
        )

    def problems(self, *, web: bool) -> tuple[list[str], list[str]]:
        """What a real deployment still lacks: (missing settings by name, other problems as sentences).
        A worker alone (``web=False``) does not need the webhook's secret."""
        missing = ["ZENDESK_WEBHOOK_SECRET"] if web and not self.secrets() else []
        problems = []
        for check in (self.base_url, self.login):
            try:
                check()
            except ConfigError as exc:
                problems.append(str(exc))
        return missing, problems
