"""Plain types passed between the bridge's parts, and the names of its states. No I/O here."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal, assert_never, get_args

from bridge.phones import mask
from bridge.times import iso_date

# A send goes queued -> sending -> one of the final statuses. Retries go back to queued with a
# not_before time; a send held for the recipient's send window waits as scheduled.
PendingStatus = Literal["queued", "sending", "scheduled"]
FinalStatus = Literal["sent", "failed", "skipped", "suppressed", "unknown", "opted_out"]
SendStatus = PendingStatus | FinalStatus
PENDING_STATUSES: tuple[PendingStatus, ...] = get_args(PendingStatus)
FINAL_STATUSES: tuple[FinalStatus, ...] = get_args(FinalStatus)

# Outcomes after which nothing can have reached the customer, unless an earlier attempt's answer
# was lost (``may_have_sent``). Only these can be retried by an operator without --force.
NOTHING_SENT: tuple[FinalStatus, ...] = ("failed", "skipped", "opted_out")
# Send ids are 32-bit on PostgreSQL; a larger one names no send (and must never reach a query).
MAX_SEND_ID = 2**31 - 1


def status_words(status: SendStatus) -> str:
    """A status as people read it: on the ticket's status field, in its notes, on the dashboard."""
    match status:
        case "queued":
            return "Queued"
        case "sending":
            return "Sending"
        case "scheduled":
            return "Scheduled"
        case "sent":
            return "Sent"
        case "failed":
            return "Failed"
        case "skipped":
            return "Skipped"
        case "suppressed":
            return "Suppressed"
        case "unknown":
            return "Unknown"
        case "opted_out":
            return "Opted Out"
        case _:
            assert_never(status)


# Whether a send's text reached the customer, as every surface says it.
Reached = Literal["yes", "maybe", "no"]

# The state of one part of a write-back (the ticket's fields, or the note/Task on it).
WritebackState = Literal["none", "pending", "done", "failed"]

# Who asked for a send. It decides the rules, whatever door the send came through:
# - "crm_event": a rule in the CRM fired it (an outbound message, a trigger, a streamed event). The
#   bridge's own update of the ticket can fire the rule again, so the loop guard applies; and no
#   event may override the recipient's send window.
# - "person": an agent, a Flow acting for one, or an operator asked for it (the send API, bridge send).
# A send's ``source`` is only the name of the door, shown to people; nothing branches on it.
Origin = Literal["crm_event", "person"]
ORIGINS: tuple[Origin, ...] = get_args(Origin)
ResendPolicy = Literal["lookup", "never"]


@dataclass(frozen=True)
class Overrides:
    """What a person's request changes for its send (the send API, ``bridge send``), stored with it.

    The stored form is JSON with these names (what the send API takes). ``end_user_number`` is
    dropped once the send is final (:meth:`without_number`): only its masked hint is kept.
    """

    message: str | None = None
    agent_email: str | None = None
    agent_id: int | None = None
    end_user_number: str | None = None
    outbound_number: str | None = None
    send_window: Literal["ignore"] | None = None  # an agent answering a customer who just wrote
    end_user_number_removed: bool = False
    # The message template asked for by name: by the person (the API's "template"), or configured
    # for the CRM rule that fired (a Salesforce outbound message's ActionId).
    template: str | None = None

    @property
    def window_ignored(self) -> bool:
        return self.send_window == "ignore"

    @property
    def number_removed(self) -> bool:
        """The send was for a number given in its request, which is no longer kept."""
        return self.end_user_number_removed

    def for_operator_retry(self) -> Overrides:
        """What an operator's retry keeps: not the agent's "ignore the send window", which was for
        that moment (a customer who had just written), not for whenever the retry runs."""
        return dataclasses.replace(self, send_window=None)

    def without_number(self) -> Overrides:
        """Without the full number: it is needed only until the send is final."""
        if self.end_user_number is None:
            return self
        return dataclasses.replace(self, end_user_number=None, end_user_number_removed=True)

    def to_json(self) -> str | None:
        # Every field is a plain value: read them directly (asdict's deep copy is most of an ingest's cost).
        values = ((f.name, getattr(self, f.name)) for f in dataclasses.fields(self))
        given = {k: v for k, v in values if v is not None and v is not False}
        return json.dumps(given) if given else None

    @classmethod
    def from_json(cls, raw: str | None) -> Overrides:
        if not raw:
            return cls()
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in json.loads(raw).items() if k in known})


@dataclass(frozen=True)
class OptOut:
    """A number on the opt-out list: never texted, whatever ticket it comes from."""

    number: str
    source: str
    note: str | None
    created_at: float

    @property
    def masked(self) -> str:
        return mask(self.number)

    def describe(self) -> str:
        """Why a send is blocked: "the number is on the opt-out list since 2026-11-02 (agent: said stop)"."""
        since = iso_date(self.created_at)
        detail = f"{self.source}: {self.note}" if self.note else self.source
        return f"the number is on the opt-out list since {since} ({detail})"


@dataclass(frozen=True)
class OptOutReading:
    """A number's entry on the opt-out list, if any, and the store's time of the reading."""

    entry: OptOut | None
    at: float


@dataclass(frozen=True)
class Outcome:
    """The final result of a send, as recorded in the store and written to the ticket."""

    status: FinalStatus
    reason: str | None = None
    chat_id: str | None = None
    message: str | None = None
    end_user_hint: str | None = None
    write_back: bool = True
    segments: int | None = None
    opt_out_learned: bool = False  # opted out by something the CRM may not know yet
    template: str | None = None  # the message template the text came from, and its version
    template_version: str | None = None
    # The customer's full number, for a sent one: never stored with the send (only its hint is),
    # only on its followed chat, so that an opt-out CCAI reports later can be recorded.
    end_user_number: str | None = field(default=None, repr=False)

    @property
    def summary(self) -> str:
        """``failed: the reason`` or ``sent (chat 42)``: for the timeline and the log."""
        detail = f": {self.reason}" if self.reason else (f" (chat {self.chat_id})" if self.chat_id else "")
        return f"{self.status}{detail}"


@dataclass(frozen=True)
class NewSend:
    """A send to be stored; ``dedupe_key`` is unique in the store. ``finished`` stores it already
    final (an event that can never be sent, recorded so that it is visible and not retried)."""

    dedupe_key: str
    source: str  # the door's name, e.g. "outbound_message", "api" (a label: see Origin)
    origin: Origin
    ticket_id: str
    org_id: str | None = None
    overrides: Overrides = Overrides()
    finished: Outcome | None = None


@dataclass(frozen=True)
class StreamLease:
    """A long-running input's singleton lease (``input:<name>``, held by a worker): the stream's
    writes are fenced on it, so a process that lost it can no longer move the stream or add sends."""

    name: str
    owner: str

    @classmethod
    def of_input(cls, input_name: str, owner: str) -> StreamLease:
        return cls(name=f"input:{input_name}", owner=owner)


@dataclass(frozen=True)
class StreamCommit:
    """What committing a batch of streamed events did: how many events were new (not seen before
    by their own id), and how many sends they added (an event may repeat another's request)."""

    events_new: int
    sends_new: int


@dataclass(frozen=True)
class Created:
    """What :meth:`Store.create` did: the send's id, the request fingerprint stored with its
    dedupe key, and whether this call created it (False: the key was already taken)."""

    id: int
    request_hash: str | None
    created: bool


@dataclass(frozen=True)
class SmsRequest:
    """What the bridge asks CCAI to send. Numbers are E.164."""

    end_user_number: str
    outbound_number: str
    message: str
    chat_type: str
    ticket_id: str | None = None
    agent_email: str | None = None
    agent_id: int | None = None
    template: str | None = None  # the message template's name and version, for the send's record
    template_version: str | None = None


@dataclass(frozen=True)
class Chat:
    """A CCAI chat: the answer to a successful send, or one found in the Manager API's list."""

    id: str
    status: str | None = None


@dataclass(frozen=True)
class ClaimedSend:
    """A send a worker holds a lease on.

    ``token`` fences the lease: every claim increments it, and a write made with an older token
    is refused, whoever's clock says what. ``retrying_for`` is how long the send has been tried
    (by the database's clock at claim time), ``ambiguous_since`` when the first attempt whose
    answer was lost left (the start of the window a chat lookup searches).
    """

    id: int
    ticket_id: str
    source: str
    origin: Origin
    attempts: int
    may_have_sent: bool
    token: int
    takeovers: int
    retrying_for: float
    first_attempt_at: float | None
    ambiguous_since: float | None
    overrides: Overrides
    claimed_at: float = 0.0  # the database's "now" when it was claimed


@dataclass(frozen=True)
class PendingWriteback:
    """A finished send whose outcome still has to reach the ticket.

    ``superseded``: a later outcome for the same ticket exists, so only its note is written (the
    ticket must never show an older outcome over a newer one). ``ticket_chat_id``: the chat the
    ticket should show whatever this outcome is (a refusal never erases an existing chat).
    ``note_uncertain``: an earlier attempt to add the note may have succeeded without us hearing it,
    so look before adding.
    """

    id: int
    ticket_id: str
    status: SendStatus
    reason: str | None
    chat_id: str | None
    message: str | None
    case_pending: bool
    task_pending: bool
    attempts: int
    finished_at: float
    age: float  # seconds since the send finished, by the database's clock
    superseded: bool = False
    note_uncertain: bool = False
    origin: Origin = "crm_event"  # fired by a CRM rule, or asked for by a person
    ticket_chat_id: str | None = None  # the newest chat any send created for this ticket
    opt_out_learned: bool = False
    state_at: float = 0.0  # when the send reached the state claimed here (recording is fenced on it)


@dataclass(frozen=True)
class SendRecord:
    """One send as stored, for the API, the operator commands and the dashboard."""

    id: int
    dedupe_key: str
    source: str
    origin: Origin
    ticket_id: str
    status: SendStatus
    reason: str | None
    chat_id: str | None
    message: str | None
    end_user_hint: str | None
    attempts: int
    may_have_sent: bool
    created_at: float
    first_attempt_at: float | None
    finished_at: float | None
    not_before: float
    writeback: WritebackState
    writeback_task: WritebackState
    writeback_attempts: int
    writeback_error: str | None
    request_hash: str | None
    requeued_at: float | None
    overrides: Overrides
    segments: int | None = None
    template: str | None = None  # the message template the text came from, and its version
    template_version: str | None = None
    chat_status: str | None = None  # the chat's last known status (the chat sync)
    chat_synced_at: float | None = None
    ticket_number: str | None = None  # what agents quote (a CaseNumber), once the worker read the ticket

    @property
    def final(self) -> bool:
        return self.status in FINAL_STATUSES

    @property
    def reached(self) -> Reached:
        """Whether the customer got a text from this send, in one word for every surface: "yes" (it
        was sent, or an earlier attempt created a chat), "maybe" (an attempt's answer was lost and
        nothing settled it), "no" (nothing can have left, or not yet)."""
        if self.status == "sent" or self.chat_id is not None:
            return "yes"
        if self.may_have_sent or self.status == "unknown":
            return "maybe"
        return "no"

    @property
    def write_back_state(self) -> WritebackState:
        """One word for both parts: failed, then pending, then done wins."""
        parts = {self.writeback, self.writeback_task}
        precedence: tuple[WritebackState, ...] = ("failed", "pending", "done")
        return next((state for state in precedence if state in parts), "none")


@dataclass(frozen=True)
class Finding:
    """One line of ``bridge check``: an area, whether it is right, and what was found."""

    area: str
    ok: bool
    detail: str


@dataclass(frozen=True)
class LogEntry:
    """One step of a send's timeline."""

    at: float
    event: str
    detail: str | None


@dataclass(frozen=True)
class ActivityCount:
    """How many sends created in one hour (0 = the oldest shown) have a status now."""

    hour: int
    status: SendStatus
    count: int


@dataclass(frozen=True)
class QueueSummary:
    """What ``bridge status`` and ``/metrics`` show about the queue."""

    by_status: Mapping[str, int]
    oldest_queued_seconds: float | None
    writebacks_pending: int
