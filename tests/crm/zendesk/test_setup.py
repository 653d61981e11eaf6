"""``bridge zendesk setup`` and ``bridge check`` against the simulated account over TLS."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from bridge.crm.plugin import CheckContext
from bridge.crm.zendesk.check import check_account
from bridge.crm.zendesk.settings import ZendeskSettings, ZendeskTable
from bridge.crm.zendesk.setup import TRIGGER_TITLE, WEBHOOK_NAME, set_up
from bridge.errors import CRMRequestError
from bridge.sandbox.zendesk_account import SANDBOX_AGENT_ID
from tests._zendesk import Account

BRIDGE_URL = "https://bridge.acme.example"
CONTEXT = CheckContext(ticket_fields=("requester.phone", "subject"), block_if_true=(), create_notes=True)


@pytest.fixture(autouse=True)
def fresh(account: Account) -> Iterator[None]:
    account.reset()
    # A new account: none of the bridge's fields yet.
    account.sim.ticket_fields = {i: f for i, f in account.sim.ticket_fields.items() if not f["removable"]}
    yield
    account.close_gateways()


def settings(account: Account, secret: str = "", **values: str) -> ZendeskSettings:
    given: dict[str, Any] = {"bridge_config": "/nonexistent/bridge.toml", "webhook_secret": secret, **values}
    return ZendeskSettings(url=account.url, **given)


def test_setup_creates_fields_webhook_and_an_inactive_trigger_and_a_second_run_changes_nothing(
    account: Account,
) -> None:
    client = account.client()
    report = set_up(client, ZendeskTable(), bridge_url=BRIDGE_URL + "/")
    titles = {f["title"] for f in account.sim.ticket_fields.values()}
    assert set(ZendeskTable().titles().values()) <= titles
    [webhook] = account.sim.webhooks.values()
    assert (webhook["name"], webhook["endpoint"], webhook["status"]) == (
        WEBHOOK_NAME,
        f"{BRIDGE_URL}/zendesk/webhook",
        "active",
    )
    assert report.secret == account.sim.signing_secrets[webhook["id"]]
    [trigger] = account.sim.triggers.values()
    assert (trigger["title"], trigger["active"]) == (TRIGGER_TITLE, False)
    assert trigger["actions"][0] == {
        "field": "notification_webhook",
        "value": [webhook["id"], '{"ticket_id": "{{ticket.id}}"}'],
    }

    created = len(account.sim.calls)
    again = set_up(client, ZendeskTable(), bridge_url=BRIDGE_URL)
    assert again.secret == report.secret
    assert len(account.sim.webhooks) == len(account.sim.triggers) == 1
    assert not any(c["method"] in ("POST", "PUT", "PATCH") for c in account.sim.calls[created:])
    client.close()


def test_setup_needs_an_admin(account: Account) -> None:
    account.sim.oauth_tokens["agent"] = SANDBOX_AGENT_ID
    client = account.client(login="agent")
    with pytest.raises(CRMRequestError, match="needs an admin"):
        set_up(client, ZendeskTable(), bridge_url=BRIDGE_URL)
    client.close()


def test_check_finds_the_webhook_by_its_secret_and_says_what_is_missing(account: Account) -> None:
    client = account.client()
    findings = {f.area: f for f in check_account(settings(account, "unknown"), client, CONTEXT)}
    assert findings["Zendesk"].ok
    assert not findings["Write-back fields"].ok
    assert "bridge zendesk setup" in findings["Write-back fields"].detail
    assert not findings["Webhook"].ok

    report = set_up(client, ZendeskTable(), bridge_url=BRIDGE_URL)
    findings = {
        f.area: f for f in check_account(settings(account, report.secret, webhook_url=BRIDGE_URL), client, CONTEXT)
    }
    assert findings["Write-back fields"].ok
    assert findings["Webhook"].ok, findings["Webhook"].detail
    assert not findings["Trigger"].ok  # the example trigger is inactive until an admin adapts it
    assert "nothing is texted" in findings["Trigger"].detail

    moved = settings(account, report.secret, webhook_url="https://elsewhere.example")
    assert not {f.area: f for f in check_account(moved, client, CONTEXT)}["Webhook"].ok
    client.close()


def test_check_names_salesforce_fields_in_a_zendesk_mapping(account: Account) -> None:
    context = CheckContext(ticket_fields=("ContactMobile", "requester.phone"), block_if_true=(), create_notes=True)
    client = account.client()
    mapping = {f.area: f for f in check_account(settings(account), client, context)}["Mapping fields"]
    assert not mapping.ok
    assert "ContactMobile" in mapping.detail
    client.close()
