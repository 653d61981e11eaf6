"""``bridge zendesk setup``: with an admin's API token, make a Zendesk account ready for the bridge.

Idempotent: what exists (by title or name) is kept, so running it again changes nothing but a
webhook's endpoint that moved. It creates the write-back ticket fields, the webhook that calls the
bridge (and reads its signing secret, which the bridge needs as ``ZENDESK_WEBHOOK_SECRET``), and an
**inactive** example trigger: an admin reads it, adapts it and activates it.

The example trigger texts the requester when an agent (or a macro) adds the ``request_tag``, and
removes that tag as it fires, so the bridge's own update (which never adds it) cannot fire it
again, and the same tag can ask for another text later. It also skips updates made by the bridge's
own user: the bridge tags its updates with ``update_tag`` for views and reports, but a trigger that
excluded that tag would text each ticket only once.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from bridge.crm.zendesk.client import ZendeskClient
from bridge.crm.zendesk.settings import ZendeskTable
from bridge.errors import CRMRequestError

WEBHOOK_NAME = "CCAI bridge"
WEBHOOK_PATH = "/zendesk/webhook"
TRIGGER_TITLE = "CCAI bridge: text the requester (example)"
FIELD_TYPES = {"error_field": "textarea"}  # the rest are single-line text fields


@dataclass
class SetupReport:
    """What set-up found and did, for the command to print; ``secret`` is the webhook's signing secret."""

    lines: list[str] = field(default_factory=list)
    webhook_id: str = ""
    secret: str = ""
    trigger_id: int | None = None


def webhook_body() -> str:
    """The request body the example trigger sends: the ticket id (the bridge reads the rest itself)."""
    return json.dumps({"ticket_id": "{{ticket.id}}"})


def example_trigger(webhook_id: str, table: ZendeskTable, bridge_user_id: int) -> dict[str, Any]:
    return {
        "title": TRIGGER_TITLE,
        "active": False,
        "description": (
            f"Texts the requester through CCAI Platform when the tag {table.request_tag} is added. "
            "Created inactive by bridge zendesk setup: adapt the conditions, then activate."
        ),
        "conditions": {
            "all": [
                {"field": "update_type", "operator": "is", "value": "Change"},
                {"field": "current_tags", "operator": "includes", "value": table.request_tag},
                {"field": "current_user", "operator": "is_not", "value": str(bridge_user_id)},
            ],
            "any": [],
        },
        "actions": [
            {"field": "notification_webhook", "value": [webhook_id, webhook_body()]},
            {"field": "remove_tags", "value": table.request_tag},
        ],
    }


def set_up(client: ZendeskClient, table: ZendeskTable, *, bridge_url: str, bridge_user_email: str = "") -> SetupReport:
    """Create what is missing; :class:`~bridge.errors.CRMError` when Zendesk refuses."""
    report = SetupReport()
    me = _body(client.request("GET", "/api/v2/users/me.json", action="check the admin's login"), "user")
    if me.get("role") != "admin":
        raise CRMRequestError(
            f"bridge zendesk setup needs an admin's API token; {me.get('email')} is {me.get('role')}."
        )
    report.lines.append(f"Logged in as {me.get('email')} (admin).")
    _fields(client, table, report)
    endpoint = bridge_url.rstrip("/") + WEBHOOK_PATH
    _webhook(client, endpoint, report)
    bridge_user = _bridge_user(client, bridge_user_email) if bridge_user_email else me
    _trigger(client, table, report, bridge_user_id=int(bridge_user["id"]))
    return report


def _fields(client: ZendeskClient, table: ZendeskTable, report: SetupReport) -> None:
    existing = _body(
        client.request("GET", "/api/v2/ticket_fields.json", action="read the ticket fields"), "ticket_fields"
    )
    titles = {str(f.get("title")) for f in existing}
    for key, title in table.titles().items():
        if title in titles:
            report.lines.append(f"Ticket field {title!r}: exists.")
            continue
        created = client.request(
            "POST",
            "/api/v2/ticket_fields.json",
            json={"ticket_field": {"type": FIELD_TYPES.get(key, "text"), "title": title, "active": True}},
            action=f"create the ticket field {title}",
        )
        field_id = _body(created, "ticket_field").get("id")
        report.lines.append(f"Ticket field {title!r}: created (id {field_id}).")


def _webhook(client: ZendeskClient, endpoint: str, report: SetupReport) -> None:
    listed = client.request(
        "GET", "/api/v2/webhooks", params={"filter[name_contains]": WEBHOOK_NAME}, action="list the webhooks"
    )
    found = next((w for w in _body(listed, "webhooks") if w.get("name") == WEBHOOK_NAME), None)
    if found is None:
        webhook = {
            "name": WEBHOOK_NAME,
            "description": "Texts ticket requesters through CCAI Platform (the CCAI bridge).",
            "endpoint": endpoint,
            "http_method": "POST",
            "request_format": "json",
            "status": "active",
            "subscriptions": ["conditional_ticket_events"],
        }
        created = client.request("POST", "/api/v2/webhooks", json={"webhook": webhook}, action="create the webhook")
        found = _body(created, "webhook")
        report.lines.append(f"Webhook {WEBHOOK_NAME!r}: created, calling {endpoint}.")
    elif found.get("endpoint") != endpoint:
        client.request(
            "PATCH",
            f"/api/v2/webhooks/{found['id']}",
            json={"webhook": {"endpoint": endpoint}},
            action="move the webhook",
        )
        report.lines.append(f"Webhook {WEBHOOK_NAME!r}: now calls {endpoint} (was {found.get('endpoint')}).")
    else:
        report.lines.append(f"Webhook {WEBHOOK_NAME!r}: exists, calling {endpoint}.")
    report.webhook_id = str(found["id"])
    secret = client.request(
        "GET", f"/api/v2/webhooks/{report.webhook_id}/signing_secret", action="read the webhook's signing secret"
    )
    report.secret = str(_body(secret, "signing_secret").get("secret", ""))


def _trigger(client: ZendeskClient, table: ZendeskTable, report: SetupReport, *, bridge_user_id: int) -> None:
    triggers = _body(client.request("GET", "/api/v2/triggers.json", action="list the triggers"), "triggers")
    existing = next((t for t in triggers if t.get("title") == TRIGGER_TITLE), None)
    if existing is not None:
        report.trigger_id = int(existing["id"])
        state = "active" if existing.get("active") else "inactive"
        report.lines.append(f"Trigger {TRIGGER_TITLE!r}: exists ({state}).")
        return
    rule = example_trigger(report.webhook_id, table, bridge_user_id)
    created = _body(
        client.request("POST", "/api/v2/triggers.json", json={"trigger": rule}, action="create the trigger"), "trigger"
    )
    report.trigger_id = int(created["id"])
    report.lines.append(f"Trigger {TRIGGER_TITLE!r}: created, inactive (id {report.trigger_id}).")


def _bridge_user(client: ZendeskClient, email: str) -> Mapping[str, Any]:
    """The bridge's own user (whose updates the example trigger skips), found by email."""
    answer = client.request(
        "GET", "/api/v2/users/search.json", params={"query": f"email:{email}"}, action="find the bridge's user"
    )
    users = _body(answer, "users")
    if not users:
        raise CRMRequestError(f"No Zendesk user has the email {email} (ZENDESK_EMAIL).")
    first: Mapping[str, Any] = users[0]
    return first


def _body(answer: Any, key: str) -> Any:
    if not answer.ok or not isinstance(answer.body, Mapping) or key not in answer.body:
        raise CRMRequestError(f"Zendesk refused the set-up ({key}): {answer.error()}.")
    return answer.body[key]
