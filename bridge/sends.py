"""A send as people see it (API answers, CLI tables), waiting for an outcome, and operator retries."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Mapping
from typing import Any

import anyio
import anyio.to_thread

from bridge.model import FinalStatus
from bridge.store import Store

FINAL: tuple[FinalStatus, ...] = ("sent", "failed", "skipped", "unknown")
# Statuses an operator may retry without --force, and those that may already have reached the customer.
RETRYABLE = ("failed", "skipped")
REACHED_CCAI = ("sent", "unknown")


def iso(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    return dt.datetime.fromtimestamp(timestamp, tz=dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def public_view(row: Mapping[str, Any]) -> dict[str, Any]:
    """What the API and ``bridge sends show`` reveal: no full number, no message text."""
    return {
        "id": row["id"],
        "status": row["status"],
        "ticket_id": row["ticket_id"],
        "source": row["source"],
        "attempts": row["attempts"],
        "chat_id": row["chat_id"],
        "error": row["reason"] if row["status"] != "sent" else None,
        "end_user_number": row["end_user_hint"],
        "write_back": _write_back_state(row),
        "write_back_error": row["writeback_error"],
        "created_at": iso(row["created_at"]),
        "first_attempt_at": iso(row["first_attempt_at"]),
        "finished_at": iso(row["finished_at"]),
        "next_attempt_at": iso(row["not_before"]) if row["status"] == "queued" else None,
    }


def _write_back_state(row: Mapping[str, Any]) -> str:
    parts = {row["writeback"], row["writeback_task"]} - {"none"}
    for state in ("failed", "pending", "done"):
        if state in parts:
            return state
    return "none"


async def wait_for_outcome(store: Store, send_id: int, *, timeout: float, poll: float = 0.05) -> dict[str, Any]:
    """Poll the store until the send is final or ``timeout`` passes; return its latest row."""
    deadline = time.monotonic() + timeout
    while True:
        row = await anyio.to_thread.run_sync(store.get, send_id)
        assert row is not None
        if row["status"] in FINAL or time.monotonic() >= deadline:
            return row
        await anyio.sleep(min(poll, max(0.0, deadline - time.monotonic())))


def retry(store: Store, send_id: int, *, force: bool) -> str:
    """Re-queue one send; returns a sentence saying what happened."""
    row = store.get(send_id)
    if row is None:
        return f"Send {send_id} does not exist."
    allowed = RETRYABLE + (REACHED_CCAI if force else ())
    if row["status"] in REACHED_CCAI and not force:
        return (
            f"Send {send_id} is {row['status']}: it may already have reached the customer. Retrying it can text "
            "them a second time; add --force to do it anyway."
        )
    if store.requeue_finished(send_id, statuses=allowed):
        return f"Send {send_id} ({row['status']}) is queued again."
    return f"Send {send_id} is {row['status']} and cannot be retried now."
