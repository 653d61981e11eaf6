"""Plain types passed between the bridge's parts. No I/O here."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

# A send goes queued -> sending -> one of these; retries go back to queued with a not_before time.
FinalStatus = Literal["sent", "failed", "skipped", "unknown"]

# What the Case shows in its status field.
CaseStatus = Literal["Sent", "Failed", "Skipped", "Unknown"]
CASE_STATUS: Mapping[str, CaseStatus] = {
    "sent": "Sent",
    "failed": "Failed",
    "skipped": "Skipped",
    "unknown": "Unknown",
}

Source = Literal["outbound_message", "api", "cli"]


@dataclass(frozen=True)
class Notification:
    """One notification from a Salesforce outbound message."""

    org_id: str
    notification_id: str
    ticket_id: str


@dataclass(frozen=True)
class NewSend:
    """A send to be stored; ``dedupe_key`` is unique in the store."""

    dedupe_key: str
    source: Source
    ticket_id: str
    org_id: str | None = None
    overrides: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Ticket:
    """A Case as read from Salesforce, with relationship fields flattened (``Owner.Email``)."""

    id: str
    fields: Mapping[str, Any]

    def get(self, name: str) -> Any:
        return self.fields.get(name)


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


@dataclass(frozen=True)
class Chat:
    """CCAI's answer to a successful send."""

    id: str
    status: str | None


@dataclass(frozen=True)
class ClaimedSend:
    """A send a worker holds a lease on."""

    id: int
    ticket_id: str
    source: Source
    attempts: int
    may_have_sent: bool
    created_at: float
    first_attempt_at: float | None
    overrides: Mapping[str, Any]
    requeued_at: float | None = None

    @property
    def retrying_since(self) -> float:
        """Where the bounded retry time starts: the first attempt, or an operator's re-queue."""
        return max(self.first_attempt_at or self.created_at, self.requeued_at or 0.0)


@dataclass(frozen=True)
class Outcome:
    """The final result of a send, as recorded in the store and written to the Case."""

    status: FinalStatus
    reason: str | None = None
    chat_id: str | None = None
    message: str | None = None
    end_user_hint: str | None = None
    write_back: bool = True


@dataclass(frozen=True)
class PendingWriteback:
    """A finished send whose outcome still has to reach the Case."""

    id: int
    ticket_id: str
    status: FinalStatus
    reason: str | None
    chat_id: str | None
    message: str | None
    case_pending: bool
    task_pending: bool
    attempts: int
    finished_at: float


@dataclass(frozen=True)
class RecordResult:
    """Salesforce's answer for one record of a collection call."""

    ok: bool
    error_code: str | None = None
    message: str | None = None

    @property
    def retryable(self) -> bool:
        return not self.ok and self.error_code in RETRYABLE_RECORD_ERRORS


# Per-record errors worth another try; anything else (INVALID_FIELD, ENTITY_IS_DELETED,
# FIELD_CUSTOM_VALIDATION_EXCEPTION, ...) gets the same answer next time.
RETRYABLE_RECORD_ERRORS = frozenset({"UNABLE_TO_LOCK_ROW", "REQUEST_LIMIT_EXCEEDED", "SERVER_UNAVAILABLE"})
