"""Sample data for the sandbox Zendesk: an account, its agents, requesters, tickets and fields.

Records carry the keys Zendesk documents for them (Tickets API, Users API, Ticket Fields API,
User Fields API), so a client written against the documentation reads them as it would read a
real account's. Times are ISO 8601 in UTC to the second, as Zendesk writes them.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any

SANDBOX_ACCOUNT_ID = 90210001
SANDBOX_SUBDOMAIN = "sandbox"
SANDBOX_ADMIN_EMAIL = "admin@sandbox.example"
SANDBOX_ADMIN_ID = 361000001
SANDBOX_AGENT_ID = 361000002
# The sandbox admin's API token: a well-known value for the local demo, never a real credential.
SANDBOX_API_TOKEN = "sandbox-zendesk-token"  # noqa: S105
OPT_OUT_TAG = "sms_opt_out"
OPT_OUT_USER_FIELD = "sms_opt_out"

# The ticket fields `bridge zendesk setup` creates: the write-back's chat id, status and reason, and
# the chat's state as it goes on. The sandbox account starts with them, as after a set-up.
BRIDGE_FIELDS: tuple[tuple[str, str], ...] = (
    ("CCAI Chat Id", "text"),
    ("CCAI SMS Status", "text"),
    ("CCAI SMS Error", "textarea"),
    ("CCAI Chat Status", "text"),
    ("CCAI Chat Agent", "text"),
    ("CCAI Chat Ended At", "text"),
    ("CCAI Chat Outcome", "text"),
)
FIRST_BRIDGE_FIELD_ID = 36000100001
_CREATED = "2026-01-05T09:00:00Z"


def stamp(moment: float) -> str:
    """A Zendesk timestamp: ISO 8601, UTC, whole seconds."""
    return dt.datetime.fromtimestamp(int(moment), tz=dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def user_json(
    user_id: int,
    name: str,
    *,
    base_url: str = "",
    email: str | None = None,
    phone: str | None = None,
    role: str = "end-user",
    time_zone: str = "Eastern Time (US & Canada)",
    iana_time_zone: str = "America/New_York",
    tags: Iterable[str] = (),
    user_fields: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A user as ``GET /api/v2/users/{id}`` shows it.

    Every user has a ``time_zone``: one the user never chose is the account's default (here
    Eastern Time), so a zone alone does not prove where the customer is.
    """
    return {
        "id": user_id,
        "url": f"{base_url}/api/v2/users/{user_id}.json",
        "name": name,
        "email": email,
        "created_at": _CREATED,
        "updated_at": _CREATED,
        "time_zone": time_zone,
        "iana_time_zone": iana_time_zone,
        "phone": phone,
        "shared_phone_number": None if phone is None else False,
        "photo": None,
        "locale_id": 1,
        "locale": "en-US",
        "organization_id": None,
        "role": role,
        "verified": True,
        "external_id": None,
        "tags": list(tags),
        "alias": "",
        "active": True,
        "shared": False,
        "shared_agent": False,
        "last_login_at": None,
        "two_factor_auth_enabled": None,
        "signature": "",
        "details": "",
        "notes": "",
        "role_type": None,
        "custom_role_id": None,
        "moderator": role != "end-user",
        "ticket_restriction": None if role == "admin" else "requested",
        "only_private_comments": False,
        "restricted_agent": role == "agent",
        "suspended": False,
        "default_group_id": 360000001 if role != "end-user" else None,
        "report_csv": role == "admin",
        "user_fields": {OPT_OUT_USER_FIELD: False, **(user_fields or {})},
    }


def ticket_json(
    ticket_id: int,
    subject: str,
    *,
    requester_id: int,
    assignee_id: int | None,
    base_url: str = "",
    status: str = "open",
    tags: Iterable[str] = (),
    custom_fields: Iterable[dict[str, Any]] = (),
) -> dict[str, Any]:
    """A ticket as ``GET /api/v2/tickets/{id}`` shows it (``fields`` repeats ``custom_fields``)."""
    fields = [dict(f) for f in custom_fields]
    return {
        "id": ticket_id,
        "url": f"{base_url}/api/v2/tickets/{ticket_id}.json",
        "external_id": None,
        "via": {"channel": "web", "source": {"from": {}, "to": {}, "rel": None}},
        "created_at": _CREATED,
        "updated_at": _CREATED,
        "generated_timestamp": 0,
        "type": "question",
        "subject": subject,
        "raw_subject": subject,
        "description": subject,
        "priority": "normal",
        "status": status,
        "recipient": None,
        "requester_id": requester_id,
        "submitter_id": requester_id,
        "assignee_id": assignee_id,
        "organization_id": None,
        "group_id": 360000001,
        "collaborator_ids": [],
        "follower_ids": [],
        "email_cc_ids": [],
        "forum_topic_id": None,
        "problem_id": None,
        "has_incidents": False,
        "is_public": True,
        "due_at": None,
        "tags": list(tags),
        "custom_fields": fields,
        "satisfaction_rating": None,
        "sharing_agreement_ids": [],
        "custom_status_id": 1,
        "fields": [dict(f) for f in fields],
        "followup_ids": [],
        "ticket_form_id": 360000002,
        "brand_id": 360000003,
        "allow_channelback": False,
        "allow_attachments": True,
        "from_messaging_channel": False,
    }


def ticket_field_json(
    field_id: int, title: str, field_type: str, *, base_url: str = "", position: int = 0
) -> dict[str, Any]:
    """A ticket field as the Ticket Fields API shows it."""
    system = field_type in ("subject", "description", "status", "tickettype", "priority", "group", "assignee")
    return {
        "id": field_id,
        "url": f"{base_url}/api/v2/ticket_fields/{field_id}.json",
        "type": field_type,
        "title": title,
        "raw_title": title,
        "description": "",
        "raw_description": "",
        "agent_description": None,
        "position": position,
        "active": True,
        "required": False,
        "collapsed_for_agents": False,
        "regexp_for_validation": None,
        "title_in_portal": title,
        "raw_title_in_portal": title,
        "visible_in_portal": False,
        "editable_in_portal": False,
        "required_in_portal": False,
        "tag": None,
        "created_at": _CREATED,
        "updated_at": _CREATED,
        "removable": not system,
        "key": None,
    }


def user_field_json(field_id: int, key: str, title: str, field_type: str, *, base_url: str = "") -> dict[str, Any]:
    """A custom user field as the User Fields API shows it; its value sits in ``user_fields[key]``."""
    return {
        "id": field_id,
        "url": f"{base_url}/api/v2/user_fields/{field_id}.json",
        "key": key,
        "type": field_type,
        "title": title,
        "raw_title": title,
        "description": "",
        "raw_description": "",
        "position": 0,
        "active": True,
        "system": False,
        "regexp_for_validation": None,
        "created_at": _CREATED,
        "updated_at": _CREATED,
    }


def sample_users() -> list[dict[str, Any]]:
    """An admin (the set-up's API token), an agent, and requesters covering the mapping's main paths."""
    return [
        user_json(SANDBOX_ADMIN_ID, "Sam Admin", email=SANDBOX_ADMIN_EMAIL, role="admin"),
        user_json(SANDBOX_AGENT_ID, "Ana Agent", email="ana.agent@example.com", role="agent"),
        # A mobile in international format, her own time zone set: texted in her local window.
        user_json(
            361000101,
            "Rosa Requester",
            email="rosa@example.com",
            phone="+1 415-555-0100",
            time_zone="Pacific Time (US & Canada)",
            iana_time_zone="America/Los_Angeles",
        ),
        # A national-format number and the account's default zone.
        user_json(361000102, "Ben Billing", email="ben@example.com", phone="(212) 555-0142"),
        # No phone at all: nothing is sent and the ticket says why.
        user_json(361000103, "Pat Nophone", email="pat@example.com"),
        # A UK number: CCAI Platform texts US numbers only.
        user_json(
            361000104,
            "Lee London",
            email="lee@example.com",
            phone="+44 20 7946 0958",
            time_zone="London",
            iana_time_zone="Europe/London",
        ),
        # Opted out, both ways a Zendesk admin may record it: a tag and a checkbox user field.
        user_json(
            361000105,
            "Olive Optout",
            email="olive@example.com",
            phone="+1 617-555-0177",
            tags=[OPT_OUT_TAG],
            user_fields={OPT_OUT_USER_FIELD: True},
        ),
    ]


def sample_tickets() -> list[dict[str, Any]]:
    """One ticket per sample requester; the second has no assignee (a group's queue)."""
    rows = [
        (1001, "Router will not start", 361000101, SANDBOX_AGENT_ID),
        (1002, "Billing question", 361000102, None),
        (1003, "Password reset", 361000103, SANDBOX_AGENT_ID),
        (1004, "Delivery to London", 361000104, SANDBOX_AGENT_ID),
        (1005, "Cancel my plan", 361000105, SANDBOX_AGENT_ID),
    ]
    return [
        ticket_json(ticket_id, subject, requester_id=requester, assignee_id=assignee)
        for ticket_id, subject, requester, assignee in rows
    ]


def system_ticket_fields() -> list[dict[str, Any]]:
    """The fields every account has; custom ones are added after them."""
    rows = [
        (360000011, "Subject", "subject"),
        (360000012, "Description", "description"),
        (360000013, "Status", "status"),
        (360000014, "Type", "tickettype"),
        (360000015, "Priority", "priority"),
        (360000016, "Group", "group"),
        (360000017, "Assignee", "assignee"),
    ]
    return [ticket_field_json(i, title, kind, position=n) for n, (i, title, kind) in enumerate(rows)]


def bridge_ticket_fields() -> list[dict[str, Any]]:
    return [
        ticket_field_json(FIRST_BRIDGE_FIELD_ID + n, title, kind, position=100 + n)
        for n, (title, kind) in enumerate(BRIDGE_FIELDS)
    ]


def sample_user_fields() -> list[dict[str, Any]]:
    return [user_field_json(36000200001, OPT_OUT_USER_FIELD, "SMS opt-out", "checkbox")]
