"""The CRM boundary: what the pipeline needs from a CRM, in the bridge's own terms, and the table of CRMs.

A *ticket* is the record a send is about (a Salesforce Case, a Zendesk ticket); a *note* is the
activity logged on it (a Salesforce Task, a Zendesk internal comment). Everything shaped like one
CRM (field names, record formats, error codes, id formats, its doors and its words) lives in that
CRM's package (``bridge/crm/salesforce/``), behind :class:`CRMGateway` and a plugin
(:class:`bridge.crm.plugin.CRMPlugin`), and translates its library's errors into
:class:`~bridge.errors.CRMError`.

A new CRM is a new package beside ``salesforce/`` plus one line in :data:`CRMS`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

from bridge.model import SendStatus

# BRIDGE_CRM -> the module whose ``plugin`` is that CRM. Loaded only when chosen, so a CRM's client
# library is needed only by the deployments that use it.
CRMS: Mapping[str, str] = {
    "salesforce": "bridge.crm.salesforce",
    "zendesk": "bridge.crm.zendesk",
}


@dataclass(frozen=True)
class Words:
    """How a CRM's things are called in what people read: reasons on the ticket, notes, the
    dashboard, the command line."""

    crm: str  # "Salesforce"
    ticket: str  # "Case"
    note: str  # "Task"
    ticket_id: str  # what a ticket id looks like, e.g. "Case id (15 or 18 characters)"
    ticket_id_example: str  # a form's placeholder, e.g. "500…"
    ticket_number: str = ""  # what agents quote when it is not the id, e.g. "CaseNumber"; "" when it is


def ticket_or_number(raw: str, ticket_ids: Callable[[str], str], words: Words) -> tuple[str | None, str | None]:
    """What a person typed to find a ticket's sends, as ``(ticket id, number)`` (one of them set):
    an id, or the number agents quote when the CRM has one apart from the id (digits: a CaseNumber).
    ``ValueError`` saying why it is neither."""
    try:
        return ticket_ids(raw), None
    except ValueError:
        if words.ticket_number and raw.isascii() and raw.isdigit() and len(raw) <= 40:
            return None, raw
        raise


@dataclass(frozen=True)
class Ticket:
    """A ticket as read from the CRM. ``fields`` holds the values the mapping asked for, by the
    names the configuration uses (relationship fields flattened, e.g. ``Contact.DoNotCall``);
    ``owner_email`` is set when a person (not a queue) owns the ticket; ``number`` is what agents
    quote when it is not the id (a Salesforce CaseNumber), so that the dashboard can show and find it."""

    id: str
    fields: Mapping[str, Any]
    owner_email: str | None = None
    number: str | None = None

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
    # Ticket fields emptied with the outcome: the trigger field of the rule that fired (so the same
    # template can be asked for again), once the bridge has the request.
    clear: tuple[str, ...] = ()


@dataclass(frozen=True)
class Note:
    """An activity on a ticket recording a send, at ``at`` (seconds since the epoch). ``key``
    identifies the send, so that a note whose creation was not confirmed can be found again instead
    of being added twice. ``awaits_follow_up``: a :class:`FollowUp` will come (the chat's outcome);
    a CRM whose notes have a state (a Salesforce Task) leaves this one open until then."""

    ticket_id: str
    key: str
    subject: str
    body: str
    at: float
    awaits_follow_up: bool = False


@dataclass(frozen=True)
class FollowUp:
    """What followed a note (the chat's outcome): Salesforce completes the note's Task with it,
    Zendesk adds another internal comment. ``note_ref`` is the id the CRM gave the note, if any."""

    ticket_id: str
    key: str
    body: str
    note_ref: str | None = None


@dataclass(frozen=True)
class ChatUpdate:
    """What a ticket shows about the chat its send started (None: CCAI has not said)."""

    ticket_id: str
    status: str | None
    agent: str | None
    ended_at: float | None
    outcome: str | None


@dataclass(frozen=True)
class WriteResult:
    """The CRM's answer for one record of a write. ``retryable``: the same write may succeed later;
    ``ref``: the id the CRM gave a created record."""

    ok: bool
    retryable: bool = False
    message: str | None = None
    ref: str | None = None


class WriteResults(NamedTuple):
    """The answers to one write of tickets and notes (or follow-ups), each list in the order given."""

    tickets: list[WriteResult]
    notes: list[WriteResult]


class ApiUsage(NamedTuple):
    """The CRM's API requests used and allowed today, as it last reported them."""

    used: int
    total: int


TicketIds = Callable[[str], str]
"""Normalises a ticket id as callers give it, or raises ``ValueError`` with a sentence saying why."""


class CRMGateway(Protocol):
    """What the worker needs from the CRM. Calls are synchronous (run them in a worker thread)."""

    def read_tickets(self, ids: Sequence[str], fields: Sequence[str]) -> dict[str, Ticket]:
        """Read many tickets in one call; tickets that do not exist are absent from the answer."""

    def write_outcomes(self, updates: Sequence[TicketUpdate], notes: Sequence[Note]) -> WriteResults:
        """Update tickets and add notes, in as few calls as the CRM allows; results in order."""

    def existing_notes(self, notes: Sequence[Note]) -> dict[str, str]:
        """Those notes that already exist on their tickets: their ids, by key."""

    def write_chats(self, updates: Sequence[ChatUpdate], follow_ups: Sequence[FollowUp]) -> WriteResults:
        """Show chats' news on their tickets and follow their notes up, in as few calls as possible."""

    def api_usage(self) -> ApiUsage | None:
        """The CRM's API calls used and allowed today, as last reported, if it reports them."""

    def close(self) -> None:
        """Release connections."""
