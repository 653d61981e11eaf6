"""Ticket triggers in the sandbox Zendesk: the conditions and actions a bridge set-up uses.

Zendesk runs every active trigger, in ``position`` order, after a ticket is created or updated,
whoever made the change: an agent in the UI, an end user, or an API client such as the bridge.
That last case is the loop hazard: the bridge's own write-back fires the trigger that texted the
customer, unless the trigger excludes it (a tag the bridge adds, here ``current_tags
not_includes``). Each trigger fires at most once per update, and the pass repeats while one
fires, as Zendesk documents.

Understood here (anything else is refused when the trigger is saved, with a sentence naming it):

- conditions ``update_type`` (``Create``/``Change``), ``current_user`` (``is``, ``is_not``: a
  user id, the user whose change runs the triggers), ``status`` (``is``, ``is_not``,
  ``less_than``, ``greater_than``), ``current_tags`` (``includes``, ``not_includes``: any of the
  space-separated tags), ``assignee_id`` (``is``, ``is_not``; ``""`` for none) and
  ``custom_fields_<id>`` (``present``, ``not_present``, ``is``, ``is_not``);
- actions ``notification_webhook`` (``[webhook id, JSON body with placeholders]``),
  ``current_tags`` (adds), ``remove_tags``, ``set_tags`` and ``status``.

Placeholders: ``{{ticket.id}}``, ``{{ticket.status}}``, ``{{ticket.title}}``, ``{{ticket.tags}}``,
``{{ticket.requester.id|name|email|phone}}``, ``{{ticket.assignee.id|name|email}}``,
``{{ticket.ticket_field_<id>}}`` and ``{{current_user.id|email}}``; an unknown one renders as an
empty string, as Liquid does. Values are escaped for the inside of a JSON string so that the body
stays valid JSON (an assumption: Zendesk's own escaping of JSON bodies is not documented).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

STATUS_ORDER = ("new", "open", "pending", "hold", "solved", "closed")
_CONDITION_FIELDS = ("update_type", "current_user", "status", "current_tags", "assignee_id")
_ACTION_FIELDS = ("notification_webhook", "current_tags", "remove_tags", "set_tags", "status")
_PLACEHOLDER = re.compile(r"\{\{\s*([a-z_]+(?:\.[a-z0-9_]+)*)\s*\}\}")

UserLookup = Callable[[int | None], Mapping[str, Any] | None]


@dataclass(frozen=True)
class Change:
    """One ticket change as triggers see it: the ticket after the change, and who made it."""

    ticket: Mapping[str, Any]
    update_type: str  # "Create" or "Change"
    current_user: Mapping[str, Any]


@dataclass(frozen=True)
class Firing:
    """A webhook to invoke because a trigger fired: its id and the rendered body."""

    trigger_id: int
    webhook_id: str
    body: str


def problems(trigger: Mapping[str, Any], webhook_ids: set[str]) -> list[str]:
    """What the sandbox cannot evaluate (or what does not exist) in a trigger, as sentences."""
    found = []
    conditions = trigger.get("conditions") or {}
    for condition in [*conditions.get("all", []), *conditions.get("any", [])]:
        name = str(condition.get("field", ""))
        if name not in _CONDITION_FIELDS and not name.startswith("custom_fields_"):
            found.append(f"The sandbox does not evaluate the trigger condition field {name!r}.")
    for action in trigger.get("actions") or []:
        name = str(action.get("field", ""))
        if name not in _ACTION_FIELDS:
            found.append(f"The sandbox does not run the trigger action {name!r}.")
        elif name == "notification_webhook":
            value = action.get("value")
            if not (isinstance(value, list) and len(value) == 2 and value[0] in webhook_ids):
                found.append("A notification_webhook action needs [an existing webhook id, a body].")
    if not trigger.get("actions"):
        found.append("A trigger needs at least one action.")
    return found


def matches(trigger: Mapping[str, Any], change: Change) -> bool:
    conditions = trigger.get("conditions") or {}
    every, some = conditions.get("all", []), conditions.get("any", [])
    return all(_holds(c, change) for c in every) and (not some or any(_holds(c, change) for c in some))


def apply_actions(
    trigger: Mapping[str, Any], ticket: dict[str, Any], change: Change, users: UserLookup
) -> list[Firing]:
    """Apply a fired trigger's ticket actions to ``ticket`` and return the webhooks it invokes."""
    firings = []
    for action in trigger.get("actions") or []:
        name, value = action.get("field"), action.get("value")
        if name == "notification_webhook":
            webhook_id, body = value
            rendered = render(str(body), Change(ticket, change.update_type, change.current_user), users)
            firings.append(Firing(int(trigger["id"]), str(webhook_id), rendered))
        elif name == "current_tags":
            ticket["tags"] = _merge(ticket["tags"], str(value).split())
        elif name == "remove_tags":
            ticket["tags"] = [t for t in ticket["tags"] if t not in str(value).split()]
        elif name == "set_tags":
            ticket["tags"] = _merge([], str(value).split())
        elif name == "status":
            ticket["status"] = str(value)
    return firings


def render(template: str, change: Change, users: UserLookup) -> str:
    ticket = change.ticket

    def value(match: re.Match[str]) -> str:
        found = _placeholder(match[1], ticket, change.current_user, users)
        return "" if found is None else json.dumps(str(found))[1:-1]

    return _PLACEHOLDER.sub(value, template)


def _placeholder(name: str, ticket: Mapping[str, Any], current: Mapping[str, Any], users: UserLookup) -> Any:
    parts = name.split(".")
    if parts[0] == "current_user" and len(parts) == 2:
        return current.get(parts[1])
    if parts[0] != "ticket" or len(parts) < 2:
        return None
    if len(parts) == 2:
        if parts[1] == "title":
            return ticket.get("subject")
        if parts[1] == "tags":
            return " ".join(ticket.get("tags", []))
        if parts[1].startswith("ticket_field_"):
            return _custom_value(ticket, parts[1].removeprefix("ticket_field_"))
        return ticket.get(parts[1]) if parts[1] in ("id", "status", "priority", "subject") else None
    if len(parts) == 3 and parts[1] in ("requester", "assignee"):
        user = users(ticket.get(f"{parts[1]}_id"))
        return None if user is None else user.get(parts[2])
    return None


def _holds(condition: Mapping[str, Any], change: Change) -> bool:
    name, operator, value = condition.get("field"), condition.get("operator"), condition.get("value")
    ticket = change.ticket
    if name == "update_type":
        return (change.update_type == value) == (operator == "is")
    if name == "current_user":
        return (str(change.current_user.get("id")) == str(value)) == (operator == "is")
    if name == "status":
        return _compare_status(str(ticket.get("status")), str(operator), str(value))
    if name == "current_tags":
        wanted = set(str(value).split())
        present = bool(wanted & set(ticket.get("tags", [])))
        return present if operator == "includes" else not present
    if name == "assignee_id":
        assignee = "" if ticket.get("assignee_id") is None else str(ticket["assignee_id"])
        return (assignee == str(value)) == (operator == "is")
    if isinstance(name, str) and name.startswith("custom_fields_"):
        current = _custom_value(ticket, name.removeprefix("custom_fields_"))
        if operator in ("present", "not_present"):
            return bool((current not in (None, "")) == (operator == "present"))
        return (str(current) == str(value)) == (operator == "is")
    return False


def _compare_status(status: str, operator: str, value: str) -> bool:
    if operator in ("is", "is_not"):
        return (status == value) == (operator == "is")
    if status not in STATUS_ORDER or value not in STATUS_ORDER:
        return False
    here, there = STATUS_ORDER.index(status), STATUS_ORDER.index(value)
    return here < there if operator == "less_than" else here > there


def _custom_value(ticket: Mapping[str, Any], field_id: str) -> Any:
    return next((f.get("value") for f in ticket.get("custom_fields", []) if str(f.get("id")) == field_id), None)


def _merge(tags: list[str], more: list[str]) -> list[str]:
    # Zendesk keeps tags lower-case and unique.
    merged = list(dict.fromkeys([*tags, *(t.lower() for t in more)]))
    return merged
