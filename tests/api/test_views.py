"""A send as the API and the operator commands show it, the HTTP status it answers with, and
waiting for its outcome."""

from __future__ import annotations

import time

import pytest

from bridge.api.sends import http_status, wait_for_outcome
from bridge.model import Outcome, Overrides
from bridge.store import Store
from tests._clock import Clock
from tests._sends import CASE, NUMBER, finished, queued, view

NOW_ISO = "2027-01-15T08:00:00Z"  # the test clock's start


# -- what people see ----------------------------------------------------------------------------


def test_a_sent_send_shows_its_chat_and_hides_the_number_and_the_message(sqlite_store: Store) -> None:
    outcome = Outcome(status="sent", chat_id="114", message="Hello Ana", end_user_hint="*******0100", segments=1)
    send_id = finished(sqlite_store, outcome, overrides=Overrides(end_user_number=NUMBER), create_task=True)
    shown = view(sqlite_store, send_id)
    expected = {
        "id": send_id,
        "status": "sent",
        "ticket_id": CASE,
        "source": "api",
        "attempts": 0,
        "reached_customer": "yes",
        "may_have_sent": False,
        "chat_id": "114",
        "error": None,
        "end_user_number": "*******0100",
        "write_back": "pending",
        "write_back_error": None,
        "created_at": NOW_ISO,
        "first_attempt_at": None,
        "finished_at": NOW_ISO,
        "next_attempt_at": None,
        "scheduled_for": None,
        "segments": 1,
        "send_window": None,
    }
    assert {key: shown.get(key, "(missing)") for key in expected} == expected
    assert "Hello Ana" not in str(shown)
    assert "4155550100" not in str(shown)


def test_a_refusal_shows_its_reason(sqlite_store: Store) -> None:
    send_id = finished(sqlite_store, Outcome(status="failed", reason="Outbound SMS is not enabled"))
    shown = view(sqlite_store, send_id)
    assert (shown["status"], shown["error"], shown["chat_id"], shown["write_back"]) == (
        "failed",
        "Outbound SMS is not enabled",
        None,
        "pending",
    )


def test_a_pending_send_says_when_it_is_next_tried_or_scheduled(sqlite_store: Store, clock: Clock) -> None:
    send_id = queued(sqlite_store, Overrides(send_window="ignore"))
    shown = view(sqlite_store, send_id)
    assert (shown["status"], shown["next_attempt_at"], shown["scheduled_for"], shown["finished_at"]) == (
        "queued",
        NOW_ISO,
        None,
        None,
    )
    assert shown["send_window"] == "ignored"
    [job] = sqlite_store.sends.claim("w", limit=1, lease_seconds=30)
    assert sqlite_store.sends.hold(job.id, token=job.token, until=clock.now + 3600, reason="outside hours", hint=None)
    held = view(sqlite_store, send_id)
    assert (held["status"], held["scheduled_for"], held["next_attempt_at"]) == (
        "scheduled",
        "2027-01-15T09:00:00Z",
        None,
    )


@pytest.mark.parametrize(
    ("outcome", "status"),
    [
        (Outcome(status="sent", chat_id="1"), 200),
        (Outcome(status="failed", reason="x"), 422),
        (Outcome(status="skipped", reason="x"), 422),
        (Outcome(status="unknown", reason="x"), 422),
        (Outcome(status="suppressed", reason="x"), 422),
    ],
)
def test_the_http_status_of_a_send(sqlite_store: Store, outcome: Outcome, status: int) -> None:
    record = sqlite_store.history.get(finished(sqlite_store, outcome))
    assert record is not None
    assert http_status(record) == status


def test_a_pending_send_answers_202(sqlite_store: Store) -> None:
    record = sqlite_store.history.get(queued(sqlite_store))
    assert record is not None
    assert http_status(record) == 202


@pytest.mark.anyio
async def test_waiting_ends_with_the_outcome_or_the_deadline(sqlite_store: Store) -> None:
    done = finished(sqlite_store, Outcome(status="sent", chat_id="1"))
    started = time.monotonic()
    assert (await wait_for_outcome(sqlite_store, done, timeout=10)).status == "sent"
    assert time.monotonic() - started < 1
    pending = queued(sqlite_store)
    started = time.monotonic()
    assert (await wait_for_outcome(sqlite_store, pending, timeout=0.2)).status == "queued"
    assert time.monotonic() - started >= 0.2
