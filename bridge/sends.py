"""A send as people see it (API answers, CLI tables, the dashboard), waiting for an outcome, and
operator retries."""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass
from typing import Any

import anyio
import anyio.to_thread

from bridge.model import FINAL_STATUSES, NOTHING_SENT, SendRecord, SendStatus
from bridge.store import Store


def iso(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    return dt.datetime.fromtimestamp(timestamp, tz=dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def public_view(send: SendRecord) -> dict[str, Any]:
    """What the API and ``bridge sends show`` reveal: no full number, no message text."""
    return {
        "id": send.id,
        "status": send.status,
        "ticket_id": send.ticket_id,
        "source": send.source,
        "attempts": send.attempts,
        "may_have_sent": send.may_have_sent,
        "chat_id": send.chat_id,
        "error": send.reason if send.status != "sent" else None,
        "end_user_number": send.end_user_hint,
        "write_back": send.write_back_state,
        "write_back_error": send.writeback_error,
        "created_at": iso(send.created_at),
        "first_attempt_at": iso(send.first_attempt_at),
        "finished_at": iso(send.finished_at),
        "next_attempt_at": iso(send.not_before) if send.status == "queued" else None,
        "scheduled_for": iso(send.not_before) if send.status == "scheduled" else None,
        "segments": send.segments,
        "chat_status": send.chat_status,
        "chat_synced_at": iso(send.chat_synced_at),
        "send_window": "ignored" if send.overrides.window_ignored else None,
    }


def http_status(send: SendRecord) -> int:
    """Sent: 200. Final without an SMS (or not knowably one): 422 with the reason. Pending: 202."""
    if send.status == "sent":
        return 200
    return 422 if send.final else 202


async def wait_for_outcome(
    store: Store, send_id: int, *, timeout: float, poll: float = 0.05, stop: anyio.Event | None = None
) -> SendRecord:
    """Poll the store until the send is final, ``timeout`` passes or ``stop`` is set (a shutting
    down server answers at once rather than hold its connection); return the latest record."""
    deadline = time.monotonic() + timeout
    while True:
        send = await anyio.to_thread.run_sync(store.history.get, send_id)
        assert send is not None
        if send.final or time.monotonic() >= deadline or (stop is not None and stop.is_set()):
            return send
        await anyio.sleep(min(poll, max(0.0, deadline - time.monotonic())))


@dataclass(frozen=True)
class RetryResult:
    queued: bool
    message: str


def retryable_without_force(send: SendRecord) -> bool:
    """Only outcomes where nothing can have reached the customer, now or in an earlier attempt."""
    return send.status in NOTHING_SENT and not send.may_have_sent and send.chat_id is None


def retry(store: Store, send_id: int, *, force: bool) -> RetryResult:
    """Re-queue one finished send, if that cannot text the customer twice (or ``force``)."""
    send = store.history.get(send_id)
    if send is None:
        return RetryResult(False, f"Send {send_id} does not exist.")
    if not send.final:
        return RetryResult(False, f"Send {send_id} is {send.status} and cannot be retried now.")
    if not send.ticket_id:
        return RetryResult(False, f"Send {send_id} names no record (it was deleted before Salesforce delivered it).")
    if not force and not retryable_without_force(send):
        why = (
            f"it reached the customer earlier (chat {send.chat_id})"
            if send.chat_id is not None and send.status != "sent"
            else "it may already have reached the customer"
            if send.may_have_sent
            else _why_reached(send.status)
        )
        return RetryResult(
            False,
            f"Send {send_id} is {send.status}: {why}. Retrying it can text them a second time; add --force to do it "
            "anyway (a send that may have been delivered is first looked up in CCAI Platform).",
        )
    if send.overrides.number_removed:
        return RetryResult(
            False,
            f"Send {send_id} was made for a number given in its request, which the bridge does not keep once a "
            "send is finished; make a new send instead.",
        )
    statuses: tuple[SendStatus, ...] = FINAL_STATUSES if force else NOTHING_SENT
    if store.sends.requeue_finished(send_id, statuses=statuses):
        return RetryResult(True, f"Send {send_id} ({send.status}) is queued again.")
    return RetryResult(False, f"Send {send_id} changed meanwhile and was not retried.")


def _why_reached(status: str) -> str:
    if status == "suppressed":
        return "another send for the Case had just texted the customer"
    return "it reached the customer" if status == "sent" else "it may already have reached the customer"
