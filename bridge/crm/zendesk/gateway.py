"""The Zendesk gateway: reads tickets with their requesters and writes outcomes back.

Everything shaped like Zendesk's API lives here (with the HTTP in ``client.py``): ``show_many``
with sideloaded users, ticket updates carrying custom fields and an internal note, optimistic
concurrency, comments. The rest of the bridge speaks the neutral types of :mod:`bridge.crm`: a
note is an internal comment, and following it up adds another.

**Fields a mapping can name** (the names of ``[mapping]``, ``[consent]`` and ``[send_window]``):
``id``, ``subject``, ``status``, ``priority``, ``type``, ``tags`` (space-separated), ``tags.<tag>``
(true when the ticket has it), ``field_<id>`` (a custom field's value); ``requester.`` and
``assignee.`` followed by ``name``, ``first_name``, ``email``, ``phone``, ``time_zone``,
``iana_time_zone``, ``tags``, ``tags.<tag>`` and ``user_fields.<key>``; and
``requester.own_time_zone``: the requester's IANA zone only when it is not the account's default
(every Zendesk user has a zone; one nobody chose is the account's, which says nothing about where
the customer is).

**Writes** use ``safe_update`` with the ``updated_at`` just read: a ticket changed in between
answers 409, and is read again and written again (up to :data:`CONFLICT_RETRIES` times). Every
update adds the ``[zendesk] update_tag`` (``additional_tags``, so no other tag is touched).
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from bridge.crm import ApiUsage, ChatUpdate, FollowUp, Note, Ticket, TicketUpdate, WriteResult, WriteResults
from bridge.crm.zendesk.client import Answer, ZendeskClient
from bridge.crm.zendesk.ids import ticket_number
from bridge.crm.zendesk.settings import ZendeskTable
from bridge.errors import CRMError, CRMRequestError
from bridge.model import status_words
from bridge.times import iso_utc

# Names a Zendesk mapping can use (the module's docstring explains each).
_TAG = r"tags\.[a-z0-9_\-/:.]+"
_USER = rf"(requester|assignee)\.(name|first_name|email|phone|time_zone|iana_time_zone|tags|{_TAG}|user_fields\.\w+)"
KNOWN_FIELD = re.compile(rf"^(id|subject|status|priority|type|tags|{_TAG}|field_\d+|requester\.own_time_zone|{_USER})$")

logger = logging.getLogger(__name__)

SHOW_MANY_LIMIT = 100  # ids per show_many call, as Zendesk documents
CONFLICT_RETRIES = 3
COMMENT_LIMIT = 60000  # characters kept of a note's body (Zendesk's own comment limit is far larger)


def note_marker(key: str) -> str:
    """How an internal note names the send it records, so that it can be found again."""
    return f"[CCAI bridge {key}]"


@dataclass(frozen=True)
class _Write:
    """One ticket update to make: the ticket properties, and the note it adds (if any)."""

    ticket_id: str
    changes: dict[str, Any]
    note: str | None


class ZendeskGateway:
    """Implements :class:`bridge.crm.CRMGateway` for a Zendesk account."""

    def __init__(self, *, client: ZendeskClient, table: ZendeskTable, error_max_length: int = 255) -> None:
        self._client = client
        self._table = table
        self._error_max = error_max_length
        self._lock = threading.Lock()
        self._field_ids: dict[str, int] | None = None
        self._account_zone: str | None = None

    @property
    def client(self) -> ZendeskClient:
        return self._client

    def close(self) -> None:
        self._client.close()

    def api_usage(self) -> ApiUsage | None:
        # Zendesk's limits are per minute, not per day: nothing to compare with a daily allowance.
        return None

    # -- reading --------------------------------------------------------------------------------

    def read_tickets(self, ids: Sequence[str], fields: Sequence[str]) -> dict[str, Ticket]:
        """Read tickets and their users, 100 a call; missing tickets (and ids that cannot name one) are absent.

        A field name no Zendesk ticket has (say a Salesforce name such as ``Contact.DoNotCall`` left in
        ``[consent]``) is refused, as Salesforce refuses an unknown field: read as empty, a consent
        field would silently stop nothing."""
        unknown = [name for name in fields if not KNOWN_FIELD.match(name)]
        if unknown:
            raise CRMRequestError(
                f"Zendesk tickets have no field named {', '.join(unknown)} (the mapping file's names: "
                "README, Zendesk; config/zendesk.toml is a complete example)."
            )
        wanted = sorted({n for n in (ticket_number(i) for i in ids) if n is not None}, key=int)
        account_zone = self.account_zone() if "requester.own_time_zone" in fields else None
        tickets = {}
        for start in range(0, len(wanted), SHOW_MANY_LIMIT):
            answer = self._show_many(wanted[start : start + SHOW_MANY_LIMIT])
            users = {u.get("id"): u for u in answer.get("users", []) if isinstance(u, Mapping)}
            for record in answer.get("tickets", []):
                ticket = _ticket(record, users, fields, account_zone)
                tickets[ticket.id] = ticket
        return tickets

    def _show_many(self, ids: Sequence[str]) -> dict[str, Any]:
        answer = self._client.request(
            "GET",
            "/api/v2/tickets/show_many.json",
            params={"ids": ",".join(ids), "include": "users"},
            action="read the tickets",
        )
        if not answer.ok or not isinstance(answer.body, Mapping):
            raise CRMRequestError(f"Zendesk refused to read the tickets: {answer.error()}.")
        return dict(answer.body)

    def account_zone(self) -> str | None:
        """The account's default time zone (Rails name), read once."""
        if self._account_zone is None:
            answer = self._client.request("GET", "/api/v2/account/settings.json", action="read the account's time zone")
            settings = answer.body.get("settings", {}) if answer.ok and isinstance(answer.body, Mapping) else {}
            self._account_zone = str((settings.get("localization") or {}).get("time_zone") or "")
        return self._account_zone or None

    def field_ids(self) -> dict[str, int]:
        """The write-back fields' ids by ``[zendesk]`` key, looked up by title once."""
        with self._lock:
            if self._field_ids is None:
                answer = self._client.request("GET", "/api/v2/ticket_fields.json", action="read the ticket fields")
                found = answer.body.get("ticket_fields", []) if answer.ok and isinstance(answer.body, Mapping) else []
                by_title = {str(f.get("title")): int(f["id"]) for f in found if f.get("active", True) and "id" in f}
                missing = [title for title in self._table.titles().values() if title not in by_title]
                if missing:
                    raise CRMRequestError(
                        f"The ticket fields {', '.join(missing)} do not exist in Zendesk: run bridge zendesk setup."
                    )
                self._field_ids = {key: by_title[title] for key, title in self._table.titles().items()}
            return self._field_ids

    # -- writing --------------------------------------------------------------------------------

    def write_outcomes(self, updates: Sequence[TicketUpdate], notes: Sequence[Note]) -> WriteResults:
        """One ticket update per ticket: its fields and its first note together. Results in order."""
        ids = self.field_ids()
        changes = {u.ticket_id: self._outcome_fields(u, ids) for u in updates}
        bodies = [(n.ticket_id, f"{n.subject}\n\n{n.body}\n\n{note_marker(n.key)}"[:COMMENT_LIMIT]) for n in notes]
        tickets, written = self._write_with_notes(changes, bodies)
        self._tag_opted_out([u.ticket_id for u in updates if u.opted_out])
        return WriteResults([tickets[u.ticket_id] for u in updates], written)

    def _tag_opted_out(self, ticket_ids: Sequence[str]) -> None:
        """Tag each ticket's requester as opted out, so that agents see it and ``[consent]`` blocks
        on it whatever the bridge's list says (as Salesforce's Contact checkbox is ticked). Failures
        are logged, never retried as the outcome's: the opt-out list already blocks every send."""
        tag = self._table.opt_out_tag
        if not tag or not ticket_ids:
            return
        try:
            found = self._show_many(ticket_ids).get("tickets") or []
        except CRMError as exc:
            logger.warning("Could not read %d ticket(s) to tag their requesters as opted out: %s", len(ticket_ids), exc)
            return
        requesters = sorted({t["requester_id"] for t in found if isinstance(t.get("requester_id"), int)})
        for requester in requesters:
            try:
                # Tags API "Add Tags": appends, leaving the user's other tags as they are.
                answer = self._client.request(
                    "PUT", f"/api/v2/users/{requester}/tags.json", json={"tags": [tag]}, action="tag the requester"
                )
                problem = None if answer.ok else answer.error()
            except CRMError as exc:
                problem = str(exc)
            if problem is not None:
                logger.warning(
                    "Could not tag requester %s as opted out (%s); is user tagging on (Admin Center > People > "
                    "Configuration > Tags)? The bridge's opt-out list blocks this number regardless.",
                    requester,
                    problem,
                )

    def write_chats(self, updates: Sequence[ChatUpdate], follow_ups: Sequence[FollowUp]) -> WriteResults:
        """The chat's fields on each ticket and, when the chat ended, an internal note with its outcome.

        A follow-up answers a note: one that does not name it is matched by its key, and one whose
        note was never written has nothing to follow (as a Salesforce Task that does not exist)."""
        ids = self.field_ids()
        changes = {
            u.ticket_id: {
                "custom_fields": [
                    {"id": ids["chat_status_field"], "value": u.status},
                    {"id": ids["chat_agent_field"], "value": u.agent},
                    {"id": ids["chat_ended_at_field"], "value": iso_utc(u.ended_at) if u.ended_at else None},
                    {"id": ids["chat_outcome_field"], "value": u.outcome},
                ]
            }
            for u in updates
        }
        unnamed = [f for f in follow_ups if not f.note_ref]
        known = self.existing_notes([Note(f.ticket_id, f.key, "", "", 0.0) for f in unnamed]) if unnamed else {}
        bodies = [
            None
            if not f.note_ref and f.key not in known
            else (f.ticket_id, f"{f.body}\n\n{note_marker(f.key)}"[:COMMENT_LIMIT])
            for f in follow_ups
        ]
        tickets, followed = self._write_with_notes(changes, bodies)
        return WriteResults([tickets[u.ticket_id] for u in updates], followed)

    def _write_with_notes(
        self, changes: Mapping[str, dict[str, Any]], notes: Sequence[tuple[str, str] | None]
    ) -> tuple[dict[str, WriteResult], list[WriteResult]]:
        """Each ticket's changes with the first of its notes, in one update; a ticket's further notes
        in updates of their own. A note given as None has nothing to attach to and is not written."""
        writes = {ticket_id: _Write(ticket_id, dict(fields), None) for ticket_id, fields in changes.items()}
        targets: list[str | _Write | None] = []
        for note in notes:
            if note is None:
                targets.append(None)
                continue
            ticket_id, body = note
            current = writes.get(ticket_id)
            if current is None or current.note is None:
                writes[ticket_id] = _Write(ticket_id, current.changes if current else {}, body)
                targets.append(ticket_id)
            else:
                targets.append(_Write(ticket_id, {}, body))  # a second note for the same ticket
        results = self._write_all(list(writes.values()))
        orphan = WriteResult(ok=False, message="No note on the ticket records this send; nothing to follow up.")
        notes_written = [
            orphan
            if target is None
            else results[target][1]
            if isinstance(target, str)
            else self._write_all([target])[target.ticket_id][1]
            for target in targets
        ]
        return {ticket_id: results[ticket_id][0] for ticket_id in changes}, notes_written

    def existing_notes(self, notes: Sequence[Note]) -> dict[str, str]:
        """Those notes an internal comment on their ticket already records: comment ids by key."""
        found: dict[str, str] = {}
        for ticket_id in sorted({n.ticket_id for n in notes}):
            number = ticket_number(ticket_id)
            if number is None:
                continue
            answer = self._client.request(
                "GET", f"/api/v2/tickets/{number}/comments.json", action="look for notes already written"
            )
            if not answer.ok or not isinstance(answer.body, Mapping):
                continue
            for comment in answer.body.get("comments", []):
                text = str(comment.get("body") or comment.get("plain_body") or "")
                found |= {
                    n.key: str(comment.get("id"))
                    for n in notes
                    if n.ticket_id == ticket_id and note_marker(n.key) in text
                }
        return found

    def _outcome_fields(self, update: TicketUpdate, ids: Mapping[str, int]) -> dict[str, Any]:
        reason = (update.reason or "")[: self._error_max] or None
        fields = [
            {
                "id": ids["status_field"],
                "value": "Skipped" if update.status == "suppressed" else status_words(update.status),
            },
            {"id": ids["error_field"], "value": reason},
        ]
        if update.chat_id is not None:  # a refusal keeps the chat id a success wrote
            fields.append({"id": ids["chat_id_field"], "value": update.chat_id})
        return {"custom_fields": fields}

    def _write_all(self, writes: Sequence[_Write]) -> dict[str, tuple[WriteResult, WriteResult]]:
        """Each write as (the ticket's result, its note's result), by ticket id."""
        results: dict[str, tuple[WriteResult, WriteResult]] = {}
        valid = [w for w in writes if ticket_number(w.ticket_id) is not None]
        for write in writes:
            if write not in valid:
                gone = WriteResult(ok=False, message=f"Ticket {write.ticket_id!r} is not a Zendesk ticket id.")
                results[write.ticket_id] = (gone, gone)
        stamps = self._stamps([w.ticket_id for w in valid])
        for write in valid:
            results[write.ticket_id] = self._write(write, stamps.get(write.ticket_id))
        return results

    def _stamps(self, ticket_ids: Sequence[str]) -> dict[str, str]:
        """Each ticket's ``updated_at`` as it is now, for safe updates (one call per 100 tickets)."""
        stamps: dict[str, str] = {}
        numbers = [n for n in (ticket_number(t) for t in ticket_ids) if n is not None]
        for start in range(0, len(numbers), SHOW_MANY_LIMIT):
            answer = self._client.request(
                "GET",
                "/api/v2/tickets/show_many.json",
                params={"ids": ",".join(numbers[start : start + SHOW_MANY_LIMIT])},
                action="read the tickets before writing",
            )
            if answer.ok and isinstance(answer.body, Mapping):
                stamps |= {str(t["id"]): str(t.get("updated_at")) for t in answer.body.get("tickets", [])}
        return stamps

    def _write(self, write: _Write, stamp: str | None) -> tuple[WriteResult, WriteResult]:
        if stamp is None:
            gone = WriteResult(ok=False, message=f"Zendesk has no ticket {write.ticket_id} (deleted?).")
            return gone, gone
        for _ in range(CONFLICT_RETRIES + 1):
            body: dict[str, Any] = {
                **write.changes,
                "additional_tags": [self._table.update_tag],
                "safe_update": True,
                "updated_stamp": stamp,
            }
            if write.note is not None:
                body["comment"] = {"body": write.note, "public": False}
            answer = self._client.request(
                "PUT", f"/api/v2/tickets/{write.ticket_id}.json", json={"ticket": body}, action="write the outcome back"
            )
            if answer.status != 409:
                return _results(answer, write)
            # Someone changed the ticket since it was read: read it again, then write on the new version.
            logger.info("Zendesk ticket %s changed while the bridge wrote to it: reading it again", write.ticket_id)
            fresh = self._stamps([write.ticket_id]).get(write.ticket_id)
            if fresh is None:
                gone = WriteResult(ok=False, message=f"Zendesk has no ticket {write.ticket_id} (deleted?).")
                return gone, gone
            stamp = fresh
        busy = WriteResult(
            ok=False,
            retryable=True,
            message="The ticket kept changing while the bridge wrote to it; trying again later.",
        )
        return busy, busy


def _results(answer: Answer, write: _Write) -> tuple[WriteResult, WriteResult]:
    if answer.ok:
        note_ref = _comment_id(answer.body) if write.note is not None else None
        return WriteResult(ok=True), WriteResult(ok=True, ref=note_ref)
    if answer.status == 404:
        failed = WriteResult(ok=False, message=f"Zendesk has no ticket {write.ticket_id} (deleted?).")
    else:
        # 422 (a closed ticket, a value the field refuses): the same write gets the same answer.
        failed = WriteResult(ok=False, message=f"Zendesk refused the update: {answer.error()}.")
    return failed, failed


def _comment_id(body: Any) -> str | None:
    events = body.get("audit", {}).get("events", []) if isinstance(body, Mapping) else []
    found = next((e.get("id") for e in events if isinstance(e, Mapping) and e.get("type") == "Comment"), None)
    return str(found) if found is not None else None


def _ticket(
    record: Mapping[str, Any], users: Mapping[Any, Mapping[str, Any]], wanted: Iterable[str], account_zone: str | None
) -> Ticket:
    """A ticket's fields by the names a mapping uses (see the module's docstring)."""
    requester = users.get(record.get("requester_id")) or {}
    assignee = users.get(record.get("assignee_id")) if record.get("assignee_id") is not None else None
    tags = [str(t) for t in record.get("tags") or []]
    fields: dict[str, Any] = {
        "id": str(record.get("id")),
        "subject": record.get("subject"),
        "status": record.get("status"),
        "priority": record.get("priority"),
        "type": record.get("type"),
        "tags": " ".join(tags),
    }
    fields |= {
        f"field_{f.get('id')}": f.get("value") for f in record.get("custom_fields") or [] if isinstance(f, Mapping)
    }
    fields |= _user("requester", requester)
    if assignee is not None:
        fields |= _user("assignee", assignee)
    own = requester.get("time_zone")
    fields["requester.own_time_zone"] = (
        requester.get("iana_time_zone") if own and account_zone and own != account_zone else None
    )
    # Tags asked for by name: true when present (on the ticket, or on its requester or assignee).
    for name in wanted:
        holder, found, tag = name.rpartition("tags.")
        if found and tag and holder in ("", "requester.", "assignee."):
            source = (
                tags if holder == "" else (requester if holder == "requester." else assignee or {}).get("tags") or []
            )
            fields[name] = tag in source
    email = assignee.get("email") if assignee else None
    return Ticket(id=str(record.get("id")), fields=fields, owner_email=str(email).strip() if email else None)


def _user(prefix: str, user: Mapping[str, Any]) -> dict[str, Any]:
    name = str(user.get("name") or "")
    values = {
        "name": name or None,
        "first_name": name.split()[0] if name.split() else None,
        "email": user.get("email"),
        "phone": user.get("phone"),
        "time_zone": user.get("time_zone"),
        "iana_time_zone": user.get("iana_time_zone"),
        "tags": " ".join(str(t) for t in user.get("tags") or []),
    }
    fields = {f"{prefix}.{key}": value for key, value in values.items()}
    for key, value in (user.get("user_fields") or {}).items():
        fields[f"{prefix}.user_fields.{key}"] = value
    return fields
