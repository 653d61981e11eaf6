"""The CRM boundary: what the worker and the write-back need from a CRM, in the bridge's own terms.

A *ticket* is the record a send is about (a Salesforce Case); a *note* is the activity logged on
it (a Salesforce Task). Everything shaped like one CRM (field names, record formats, error codes,
id formats) lives behind :class:`CRMGateway` in that CRM's module (``salesforce.py``), which
translates its library's errors into :class:`~bridge.errors.CRMError`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from bridge.model import SendStatus


@dataclass(frozen=True)
class Ticket:
    """A ticket as read from the CRM. ``fields`` holds the values the mapping asked for, by the
    names the configuration uses (relationship fields flattened, e.g. ``Contact.DoNotCall``);
    ``owner_email`` is set when a person (not a queue) owns the ticket."""

    id: str
    fields: Mapping[str, Any]
    owner_email: str | None = None

    def get(self, name: str) -> Any:
        return self.fields.get(name)


@dataclass(frozen=True)
class TicketUpdate:
    """A send's outcome, to be shown on its ticket. ``chat_id`` None leaves the ticket's chat id
    as it is: a later refusal never erases the chat a customer is in."""

    ticket_id: str
    status: SendStatus  # a final outcome, or "scheduled" while held for the send window
    reason: str | None
    chat_id: str | None
    opted_out: bool = False  # the customer opted out: record it on the ticket's contact when configured


@dataclass(frozen=True)
class Note:
    """An activity on a ticket recording a send. ``key`` identifies the send, so that a note whose
    creation was not confirmed can be found again instead of being added twice."""

    ticket_id: str
    key: str
    subject: str
    body: str
    date: str  # ISO date (YYYY-MM-DD)
    done: bool = True  # False: left open, to be completed when the chat ends


@dataclass(frozen=True)
class ChatUpdate:
    """What a ticket shows about the chat its send started (None: CCAI has not said)."""

    ticket_id: str
    status: str | None
    agent: str | None
    ended_at: float | None
    outcome: str | None


@dataclass(frozen=True)
class NoteCompletion:
    """Complete the note created at send time (``ref`` is the id the CRM gave it), with ``body``."""

    ref: str
    key: str
    body: str


@dataclass(frozen=True)
class WriteResult:
    """The CRM's answer for one record of a write. ``retryable``: the same write may succeed later;
    ``ref``: the id the CRM gave a created record."""

    ok: bool
    retryable: bool = False
    message: str | None = None
    ref: str | None = None


TicketIds = Callable[[str], str]
"""Normalises a ticket id as callers give it, or raises ``ValueError`` with a sentence saying why."""


class CRMGateway(Protocol):
    """What the worker needs from the CRM. Calls are synchronous (run them in a worker thread)."""

    def read_tickets(self, ids: Sequence[str], fields: Sequence[str]) -> dict[str, Ticket]:
        """Read many tickets in one call; tickets that do not exist are absent from the answer."""

    def write_outcomes(
        self, updates: Sequence[TicketUpdate], notes: Sequence[Note]
    ) -> tuple[list[WriteResult], list[WriteResult]]:
        """Update tickets and add notes, in as few calls as the CRM allows; results in order."""

    def existing_notes(self, notes: Sequence[Note]) -> dict[str, str]:
        """Those notes that already exist on their tickets: their ids, by key."""

    def write_chats(
        self, updates: Sequence[ChatUpdate], completions: Sequence[NoteCompletion]
    ) -> tuple[list[WriteResult], list[WriteResult]]:
        """Show chats' news on their tickets and complete their notes, in as few calls as possible."""

    def api_usage(self) -> tuple[int, int] | None:
        """The CRM's API calls used and allowed today, as last reported, if it reports them."""

    def close(self) -> None:
        """Release connections."""
