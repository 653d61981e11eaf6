"""Salesforce's settings: exactly one complete login, each mode's needs named, the key restored."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bridge.crm.salesforce.settings import SalesforceSettings
from bridge.errors import ConfigError
from bridge.services import load_settings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.startswith(("CCAI_", "SALESFORCE_", "BRIDGE_", "DATABASE_URL", "DYNO")):
            monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)  # no stray .env or config/ from the working directory


def salesforce() -> SalesforceSettings:
    crm = load_settings().crm
    assert isinstance(crm, SalesforceSettings)
    return crm


@pytest.mark.parametrize(
    ("env", "mode"),
    [
        ({"SALESFORCE_INSTANCE_URL": "https://acme.my.salesforce.com", "SALESFORCE_ACCESS_TOKEN": "t"}, "token"),
        (
            {"SALESFORCE_CLIENT_ID": "c", "SALESFORCE_CLIENT_SECRET": "s", "SALESFORCE_DOMAIN": "acme.my"},
            "client_credentials",
        ),
        (
            {
                "SALESFORCE_USERNAME": "u",
                "SALESFORCE_CLIENT_ID": "c",
                "SALESFORCE_PRIVATE_KEY_FILE": "/k.pem",
                "SALESFORCE_DOMAIN": "login",
            },
            "jwt",
        ),
        ({"SALESFORCE_USERNAME": "u", "SALESFORCE_PASSWORD": "p", "SALESFORCE_SECURITY_TOKEN": "x"}, "password"),
    ],
)
def test_exactly_one_complete_login_chooses_the_mode(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], mode: str
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert salesforce().credentials().mode == mode


def test_no_complete_login_says_what_each_mode_lacks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SALESFORCE_CLIENT_ID", "c")
    monkeypatch.setenv("SALESFORCE_DOMAIN", "acme.my")
    with pytest.raises(ConfigError) as caught:
        salesforce().credentials()
    text = str(caught.value)
    assert "OAuth client credentials needs SALESFORCE_CLIENT_SECRET" in text
    assert "JWT bearer needs SALESFORCE_USERNAME, SALESFORCE_PRIVATE_KEY" in text
    assert "access token needs SALESFORCE_INSTANCE_URL, SALESFORCE_ACCESS_TOKEN" in text


def test_two_complete_logins_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {
        "SALESFORCE_INSTANCE_URL": "https://x",
        "SALESFORCE_ACCESS_TOKEN": "t",
        "SALESFORCE_USERNAME": "u",
        "SALESFORCE_PASSWORD": "p",
        "SALESFORCE_SECURITY_TOKEN": "x",
    }.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match="several logins"):
        salesforce().credentials()


def test_client_credentials_need_a_my_domain(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {
        "SALESFORCE_CLIENT_ID": "c",
        "SALESFORCE_CLIENT_SECRET": "s",
        "SALESFORCE_DOMAIN": "login",
    }.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match="My Domain"):
        salesforce().credentials()


def test_a_private_key_with_escaped_newlines_is_restored(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {
        "SALESFORCE_USERNAME": "u",
        "SALESFORCE_CLIENT_ID": "c",
        "SALESFORCE_DOMAIN": "login",
        "SALESFORCE_PRIVATE_KEY": "-----BEGIN KEY-----\\nabc\\n-----END KEY-----",
    }.items():
        monkeypatch.setenv(name, value)
    credentials = salesforce().credentials()
    assert credentials.private_key == "-----BEGIN KEY-----\nabc\n-----END KEY-----"
    assert "BEGIN" not in repr(credentials)


def test_the_pubsub_topic_is_a_platform_event_channel_and_needs_one_org(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SALESFORCE_INSTANCE_URL", "https://acme.my.salesforce.com")
    monkeypatch.setenv("SALESFORCE_ACCESS_TOKEN", "t")
    monkeypatch.setenv("SALESFORCE_PUBSUB_TOPIC", "CCAI_SMS_Request__e")
    with pytest.raises(ConfigError, match="not a platform event channel, written /event/<API name>__e"):
        salesforce()
    monkeypatch.setenv("SALESFORCE_PUBSUB_TOPIC", "/event/CCAI_SMS_Request__e")
    monkeypatch.setenv("SALESFORCE_ORG_IDS", "00D5g00000SBXRG,00D5g00000SBXRH")
    _, problems = salesforce().problems(web=False)
    assert any("SALESFORCE_ORG_IDS to name exactly one organisation" in p for p in problems)
    monkeypatch.setenv("SALESFORCE_ORG_IDS", "00D5g00000SBXRG")
    assert salesforce().problems(web=False) == ([], [])
    assert (salesforce().pubsub_replay_preset, salesforce().pubsub_endpoint) == (
        "LATEST",
        "api.pubsub.salesforce.com:7443",
    )
