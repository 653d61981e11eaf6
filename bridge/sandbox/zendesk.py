"""A simulated Zendesk Support account: the REST API slice the bridge uses, and signed webhooks.

Answered as Zendesk documents it (developer.zendesk.com API reference; shapes checked against
answers recorded from real accounts in zenpy's test cassettes):

- **Auth**: an API token as Basic ``{email}/token:{token}``, or an OAuth ``Bearer`` token; a bad
  one is 401 ``{"error": "Couldn't authenticate you"}``; an agent calling an admin endpoint is 403.
- **Tickets**: ``GET /api/v2/tickets/{id}``, ``GET /api/v2/tickets/show_many?ids=`` (at most
  100, missing ids left out), both with ``include=users`` sideloading the requester, submitter
  and assignee; ``PUT /api/v2/tickets/{id}`` with ``custom_fields``, ``comment`` (public unless
  ``"public": false``: an internal note), ``tags``/``additional_tags``/``remove_tags``,
  ``status``, and ``safe_update`` + ``updated_stamp``: when the stamp is not the ticket's
  ``updated_at``, 409 ``{"error": "UpdateConflict", "description": "Safe Update prevented the
  update due to outdated ticket data. Please fetch the latest ticket data and try again."}``;
  a closed ticket refuses updates (422). ``GET /api/v2/tickets/{id}/comments``.
- **Users**: ``GET /api/v2/users/{id}``, ``/users/show_many?ids=``, ``/users/me``.
- **Fields**: ``GET``/``POST /api/v2/ticket_fields`` and ``/api/v2/user_fields``.
- **Webhooks**: create, list (``filter[name_contains]``), show, update, delete, the signing
  secret (show; ``POST`` resets it), invocations and their attempts. Deliveries in
  ``zendesk_webhooks.py``.
- **Triggers**: create, list, show, update, delete; they run after every ticket change
  (``zendesk_triggers.py``), the bridge's own updates included.
- **Limits**: account-wide, ``rate_limit`` requests a minute (Team 200, Professional 400,
  Enterprise 700), and 30 updates of one ticket by one user in 10 minutes. Every API answer has
  ``X-Rate-Limit``, ``X-Rate-Limit-Remaining``, ``ratelimit-limit``, ``ratelimit-remaining`` and
  ``ratelimit-reset``; a refusal is 429 with ``Retry-After`` in seconds.

Assumed where the docs are silent: the 429 body's wording; an unknown custom field id in an
update is ignored; ``safe_update`` without ``updated_stamp`` is refused (422); ``updated_at``
moves at least one second per update, so that a stamp always names one version.

Tests and demos steer it through ``/_sandbox/*``: ``GET /_sandbox/state``; ``POST
/_sandbox/control`` with ``rate_limit``, ``latency``, ``fail_next`` (``[{"path", "method",
"status", "retry_after"}]``: one answer each), ``outage`` (``seconds``, ``status``),
``conflict_next`` (the next N safe updates meet an agent's edit made just before them),
``lose_update_answer`` (the next N ticket updates are applied, then the connection is cut),
``expire_tokens``, ``tickets``/``users`` (added or replaced), ``webhook_faults``; ``POST
/_sandbox/tickets`` (a new ticket, as an end user would create it) and ``POST
/_sandbox/tickets/{id}`` (an agent's edit): both run the triggers.
"""

from __future__ import annotations

import copy
import datetime as dt
import logging
import math
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from bridge.sandbox import zendesk_triggers as triggers
from bridge.sandbox.zendesk_account import (
    SANDBOX_ACCOUNT_ID,
    SANDBOX_ADMIN_EMAIL,
    SANDBOX_ADMIN_ID,
    SANDBOX_API_TOKEN,
    SANDBOX_SUBDOMAIN,
    bridge_ticket_fields,
    sample_tickets,
    sample_user_fields,
    sample_users,
    stamp,
    system_ticket_fields,
)
from bridge.sandbox.zendesk_webhooks import WebhookDeliverer, new_signing_secret, new_ulid

logger = logging.getLogger(__name__)

_UPDATES_PER_TICKET = (30, 600.0)  # updates of one ticket by one user, per window in seconds


@dataclass
class ZendeskSimulator:
    """One simulated account: its records, what it was asked, and its fault switches."""

    subdomain: str = SANDBOX_SUBDOMAIN
    account_id: int = SANDBOX_ACCOUNT_ID
    api_tokens: dict[str, str] = field(default_factory=lambda: {SANDBOX_ADMIN_EMAIL: SANDBOX_API_TOKEN})
    oauth_tokens: dict[str, int] = field(default_factory=dict)  # bearer token -> user id
    rate_limit: int = 700
    time_zone: str = "Eastern Time (US & Canada)"  # the account's default, every user's until they set one
    latency: float = 0.0
    clock: Callable[[], float] = time.time
    tickets: dict[int, dict[str, Any]] = field(default_factory=dict)
    users: dict[int, dict[str, Any]] = field(default_factory=dict)
    ticket_fields: dict[int, dict[str, Any]] = field(default_factory=dict)
    user_fields: dict[int, dict[str, Any]] = field(default_factory=dict)
    comments: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    webhooks: dict[str, dict[str, Any]] = field(default_factory=dict)
    signing_secrets: dict[str, str] = field(default_factory=dict)
    triggers: dict[int, dict[str, Any]] = field(default_factory=dict)
    calls: list[dict[str, Any]] = field(default_factory=list)
    fail_next: list[dict[str, Any]] = field(default_factory=list)
    conflict_next: int = 0
    lose_update_answer: int = 0
    outage_until: float = 0.0
    outage_status: int = 503
    deliverer: WebhookDeliverer = field(init=False)
    _admitted: deque[float] = field(default_factory=deque, init=False)
    _ticket_updates: dict[tuple[int, int], deque[float]] = field(default_factory=dict, init=False)
    _next_id: int = field(default=5000, init=False)

    def __post_init__(self) -> None:
        self.deliverer = WebhookDeliverer(
            account_id=self.account_id, webhooks=self.webhooks, signing_secrets=self.signing_secrets, clock=self.clock
        )

    @classmethod
    def sample(cls, *, bridge_fields: bool = True, **options: Any) -> ZendeskSimulator:
        """The sandbox account: sample users and tickets, and (unless asked not to) the bridge's fields."""
        sim = cls(**options)
        fields = [*system_ticket_fields(), *(bridge_ticket_fields() if bridge_fields else [])]
        sim.ticket_fields.update({f["id"]: f for f in fields})
        sim.user_fields.update({f["id"]: f for f in sample_user_fields()})
        sim.add_users(sample_users())
        sim.add_tickets(sample_tickets())
        return sim

    def add_users(self, users: Iterable[Mapping[str, Any]]) -> None:
        for user in users:
            self.users[int(user["id"])] = copy.deepcopy(dict(user))

    def add_tickets(self, tickets: Iterable[Mapping[str, Any]]) -> None:
        for given in tickets:
            ticket = copy.deepcopy(dict(given))
            self.tickets[int(ticket["id"])] = ticket
            self.add_custom_fields(ticket)

    def add_custom_fields(self, ticket: dict[str, Any]) -> None:
        """Give ``ticket`` an entry (``null`` until set) for every custom field, as its form would."""
        present = {f["id"] for f in ticket["custom_fields"]}
        for field_id, definition in self.ticket_fields.items():
            if definition["removable"] and field_id not in present:
                ticket["custom_fields"].append({"id": field_id, "value": None})
        ticket["fields"] = copy.deepcopy(ticket["custom_fields"])

    def new_id(self) -> int:
        self._next_id += 1
        return self._next_id

    def user(self, user_id: int | None) -> dict[str, Any] | None:
        return None if user_id is None else self.users.get(int(user_id))

    def admit(self) -> tuple[bool, int, int]:
        """(admitted, remaining this minute, seconds until a slot frees), on a sliding minute."""
        now = self.clock()
        while self._admitted and self._admitted[0] <= now - 60:
            self._admitted.popleft()
        reset = math.ceil(self._admitted[0] + 60 - now) if self._admitted else 60
        if len(self._admitted) >= self.rate_limit:
            return False, 0, max(1, reset)
        self._admitted.append(now)
        return True, self.rate_limit - len(self._admitted), reset

    def may_update(self, user_id: int, ticket_id: int) -> bool:
        limit, window = _UPDATES_PER_TICKET
        now = self.clock()
        recent = self._ticket_updates.setdefault((user_id, ticket_id), deque())
        while recent and recent[0] <= now - window:
            recent.popleft()
        if len(recent) >= limit:
            return False
        recent.append(now)
        return True

    def touch(self, ticket: dict[str, Any]) -> None:
        """Move ``updated_at`` on: to now, and at least a second past the previous version."""
        previous = _seconds(ticket["updated_at"])
        ticket["updated_at"] = stamp(max(self.clock(), previous + 1))

    def change_ticket(
        self, ticket: dict[str, Any], changes: Mapping[str, Any], author: Mapping[str, Any], *, created: bool = False
    ) -> dict[str, Any]:
        """Apply ``changes`` as ``author``, then run the triggers. Returns the audit."""
        events = _apply(ticket, changes)
        comment = changes.get("comment")
        if isinstance(comment, Mapping) and (comment.get("body") or comment.get("html_body")):
            body = str(comment.get("body") or comment.get("html_body"))
            note = {
                "id": self.new_id(),
                "type": "Comment",
                "author_id": int(comment.get("author_id") or author["id"]),
                "body": body,
                "html_body": f"<p>{body}</p>",
                "plain_body": body,
                # Zendesk comments are public unless the request says otherwise.
                "public": bool(comment.get("public", True)),
                "created_at": stamp(self.clock()),
                "via": {"channel": "api" if not created else "web"},
            }
            self.comments.setdefault(int(ticket["id"]), []).append(note)
            events.append({"id": note["id"], "type": "Comment", "public": note["public"], "body": body})
        if not created:
            self.touch(ticket)
        self._run_triggers(ticket, "Create" if created else "Change", author)
        return {
            "id": self.new_id(),
            "ticket_id": ticket["id"],
            "created_at": ticket["updated_at"],
            "author_id": author["id"],
            "metadata": {"system": {}, "custom": {}},
            "events": events,
        }

    def _run_triggers(self, ticket: dict[str, Any], update_type: str, author: Mapping[str, Any]) -> None:
        fired: set[int] = set()
        while True:
            change = triggers.Change(ticket=ticket, update_type=update_type, current_user=author)
            ready = [
                t
                for t in sorted(self.triggers.values(), key=lambda t: (t.get("position", 0), t["id"]))
                if t.get("active") and t["id"] not in fired and triggers.matches(t, change)
            ]
            if not ready:
                return
            trigger = ready[0]
            fired.add(trigger["id"])
            for firing in triggers.apply_actions(trigger, ticket, change, self.user):
                logger.info("sandbox Zendesk: trigger %s invokes webhook %s", firing.trigger_id, firing.webhook_id)
                self.deliverer.invoke(firing.webhook_id, firing.body)

    def state(self) -> dict[str, Any]:
        return {
            "tickets": {str(k): v for k, v in self.tickets.items()},
            "users": {str(k): v for k, v in self.users.items()},
            "comments": {str(k): v for k, v in self.comments.items()},
            "ticket_fields": list(self.ticket_fields.values()),
            "webhooks": list(self.webhooks.values()),
            "triggers": list(self.triggers.values()),
            "invocations": [
                {**i.summary(), "webhook_id": i.webhook_id, "attempts": len(i.attempts)}
                for i in self.deliverer.invocations.values()
            ],
            "calls": self.calls,
        }

    async def aclose(self) -> None:
        await self.deliverer.aclose()


def _seconds(value: str) -> float:
    return dt.datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC).timestamp()


def _apply(ticket: dict[str, Any], changes: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The ticket properties an update may set; returns the audit's change events."""
    events: list[dict[str, Any]] = []
    for item in changes.get("custom_fields") or changes.get("fields") or []:
        current = next((f for f in ticket["custom_fields"] if f["id"] == item.get("id")), None)
        if current is None:
            continue  # assumed: Zendesk ignores a custom field the ticket does not have
        events.append({"type": "Change", "field_name": str(item["id"]), "value": item.get("value")})
        current["value"] = item.get("value")
    ticket["fields"] = copy.deepcopy(ticket["custom_fields"])
    tags = list(ticket["tags"])
    if "tags" in changes:
        tags = [str(t).lower() for t in changes["tags"]]
    tags = list(dict.fromkeys([*tags, *(str(t).lower() for t in changes.get("additional_tags") or [])]))
    tags = [t for t in tags if t not in {str(r).lower() for r in changes.get("remove_tags") or []}]
    if tags != ticket["tags"]:
        events.append({"type": "Change", "field_name": "tags", "value": tags})
        ticket["tags"] = tags
    for name in ("status", "priority", "subject", "assignee_id"):
        if name in changes and changes[name] != ticket.get(name):
            events.append({"type": "Change", "field_name": name, "value": changes[name]})
            ticket[name] = changes[name]
    return events


def sandbox_bridge_webhook(sim: ZendeskSimulator) -> str:
    """The account as `bridge zendesk setup` leaves it, with its example trigger active: a webhook
    (its endpoint set once the bridge's URL is known) and the trigger calling it. Returns its id."""
    webhook_id = new_ulid(sim.clock())
    sim.webhooks[webhook_id] = {
        "id": webhook_id,
        "name": "CCAI bridge",
        "description": "Texts ticket requesters through CCAI Platform (the CCAI bridge).",
        "status": "active",
        "subscriptions": ["conditional_ticket_events"],
        "created_at": stamp(sim.clock()),
        "created_by": str(SANDBOX_ADMIN_ID),
        "endpoint": "http://127.0.0.1:9/zendesk/webhook",
        "http_method": "POST",
        "request_format": "json",
    }
    sim.signing_secrets[webhook_id] = new_signing_secret()
    trigger_id = sim.new_id()
    sim.triggers[trigger_id] = {
        "id": trigger_id,
        "title": "CCAI bridge: text the requester (example)",
        "active": True,
        "position": 0,
        "conditions": {
            "all": [
                {"field": "update_type", "operator": "is", "value": "Change"},
                {"field": "current_tags", "operator": "includes", "value": "ccai_text_customer"},
                {"field": "current_user", "operator": "is_not", "value": str(SANDBOX_ADMIN_ID)},
            ],
            "any": [],
        },
        "actions": [
            {"field": "notification_webhook", "value": [webhook_id, '{"ticket_id": "{{ticket.id}}"}']},
            {"field": "remove_tags", "value": "ccai_text_customer"},
        ],
    }
    return webhook_id
