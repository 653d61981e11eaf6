"""``bridge check``'s look at the Zendesk account: is it set up the way ``bridge zendesk setup`` and
``config/zendesk.toml`` say?

The bridge's webhook is recognised by its signing secret (the one the bridge verifies with), not
by its name: a webhook is the bridge's exactly when the bridge would accept what it sends.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping, Sequence
from typing import Any

from bridge.crm.plugin import CheckContext
from bridge.crm.zendesk.client import ZendeskClient
from bridge.crm.zendesk.gateway import KNOWN_FIELD
from bridge.crm.zendesk.settings import ZendeskSettings
from bridge.crm.zendesk.setup import WEBHOOK_PATH
from bridge.errors import BridgeError
from bridge.model import Finding


def check_account(settings: ZendeskSettings, client: ZendeskClient, context: CheckContext) -> list[Finding]:
    """The account's findings; a refused login ends the list early."""
    try:
        me = _get(client, "/api/v2/users/me.json", "user")
    except BridgeError as exc:
        return [Finding("Zendesk", False, str(exc))]
    findings = [Finding("Zendesk", True, f"logged in as {me.get('email')} ({me.get('role')}) at {settings.base_url()}")]
    findings.append(_mapping_fields(context.ticket_fields))
    try:
        findings.append(_fields(settings, client))
        webhook, finding = _webhook(settings, client)
        findings.append(finding)
        if webhook is not None:
            findings.append(_triggers(client, webhook))
    except BridgeError as exc:
        findings.append(Finding("Zendesk set-up", False, f"{exc} (an admin's token reads webhooks and triggers)"))
    return findings


def _mapping_fields(names: Sequence[str]) -> Finding:
    unknown = [name for name in names if not KNOWN_FIELD.match(name)]
    if unknown:
        return Finding(
            "Mapping fields",
            False,
            f"{', '.join(unknown)}: not fields of a Zendesk ticket or its users "
            "(use config/zendesk.toml as BRIDGE_CONFIG, or the names in README: Zendesk)",
        )
    return Finding("Mapping fields", True, ", ".join(names) or "none")


def _fields(settings: ZendeskSettings, client: ZendeskClient) -> Finding:
    found = {str(f.get("title")): f for f in _get(client, "/api/v2/ticket_fields.json", "ticket_fields")}
    titles = settings.zendesk.titles().values()
    missing = [t for t in titles if t not in found]
    inactive = [t for t in titles if t in found and not found[t].get("active", True)]
    if missing or inactive:
        problems = [f"{', '.join(missing)} missing"] if missing else []
        problems += [f"{', '.join(inactive)} inactive"] if inactive else []
        return Finding("Write-back fields", False, "; ".join(problems) + " (run bridge zendesk setup)")
    return Finding("Write-back fields", True, ", ".join(titles))


def _webhook(settings: ZendeskSettings, client: ZendeskClient) -> tuple[Mapping[str, Any] | None, Finding]:
    secrets = settings.secrets()
    if not secrets:
        return None, Finding("Webhook", False, "ZENDESK_WEBHOOK_SECRET is not set: no webhook can reach the bridge")
    for webhook in _get(client, "/api/v2/webhooks", "webhooks"):
        secret = _get(client, f"/api/v2/webhooks/{webhook['id']}/signing_secret", "signing_secret").get("secret", "")
        if not any(hmac.compare_digest(str(secret), s) for s in secrets):
            continue
        endpoint = str(webhook.get("endpoint", ""))
        problems = []
        if webhook.get("status") != "active":
            problems.append("it is inactive")
        if not endpoint.endswith(WEBHOOK_PATH):
            problems.append(f"it calls {endpoint}, not the bridge's {WEBHOOK_PATH}")
        if settings.webhook_url and endpoint != settings.webhook_url.rstrip("/") + WEBHOOK_PATH:
            problems.append(f"it calls {endpoint}, not {settings.webhook_url.rstrip('/')}{WEBHOOK_PATH}")
        if webhook.get("http_method") != "POST" or webhook.get("request_format") != "json":
            problems.append("it must POST JSON")
        detail = f"{webhook.get('name')!r} ({webhook['id']})"
        if problems:
            return webhook, Finding("Webhook", False, f"{detail}: {'; '.join(problems)}")
        return webhook, Finding("Webhook", True, f"{detail} calls {endpoint}, signed with ZENDESK_WEBHOOK_SECRET")
    return None, Finding(
        "Webhook",
        False,
        "no webhook is signed with ZENDESK_WEBHOOK_SECRET (run bridge zendesk setup, or copy its secret)",
    )


def _triggers(client: ZendeskClient, webhook: Mapping[str, Any]) -> Finding:
    using = [
        t
        for t in _get(client, "/api/v2/triggers.json", "triggers")
        if any(
            a.get("field") == "notification_webhook" and (a.get("value") or [None])[0] == webhook["id"]
            for a in t.get("actions", [])
        )
    ]
    active = [t for t in using if t.get("active")]
    if not active:
        listed = ", ".join(repr(t.get("title")) for t in using) or "none"
        return Finding(
            "Trigger", False, f"no active trigger calls the webhook (inactive: {listed}): nothing is texted yet"
        )
    return Finding("Trigger", True, ", ".join(repr(t.get("title")) for t in active))


def _get(client: ZendeskClient, path: str, key: str) -> Any:
    answer = client.request("GET", path, action=f"read {key.replace('_', ' ')}")
    if not answer.ok or not isinstance(answer.body, Mapping) or key not in answer.body:
        raise BridgeError(f"Zendesk did not answer {path} as expected: {answer.error()}.")
    return answer.body[key]
