"""A send as people see it, the HTTP status it answers with, waiting for it, and operator retries."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest

from bridge.api.sends import http_status, public_view, wait_for_outcome
from bridge.crm.salesforce import plugin as salesforce
from bridge.model import FinalStatus, NewSend, Outcome, Overrides
from bridge.ops.retries import retry
from bridge.store import Store
from tests._clock import Clock

CASE = "5005g00000SBX01AAH"
NUMBER = "+14155550100"
NOW_ISO = "2027-01-15T08:00:00Z"  # the test clock's start

WORDS = salesforce.words


def queued(store: Store, overrides: Overrides | None = None) -> int:
    new = NewSend(
        dedupe_key=f"api:{uuid.uuid4().hex}",
        source="api",
        origin="person",
        ticket_id=CASE,
        overrides=overrides or Overrides(),
    )
    return store.sends.create(new).id


def finished(store: Store, outcome: Outcome, *, overrides: Overrides | None = None, create_task: bool = False) -> int:
    send_id = queued(store, overrides)
    [job] = store.sends.claim("w", limit=1, lease_seconds=30)
    assert store.sends.finish(job.id, outcome, token=job.token, create_task=create_task)
    return send_id


def possibly_delivered(store: Store, clock: Clock, status: FinalStatus) -> int:
    """A send whose first worker died mid-request (so it may have reached the customer), then settled."""
    send_id = queued(store)
    [job] = store.sends.claim("w", limit=1, lease_seconds=30)
    assert store.sends.mark_inflight(job.id, token=job.token, lease_seconds=30)
    clock.advance(31)
    [again] = store.sends.claim("w2", limit=1, lease_seconds=30)
    assert again.may_have_sent
    assert store.sends.finish(again.id, Outcome(status=status, reason="gave up"), token=again.token, create_task=False)
    return send_id


def view(store: Store, send_id: int) -> dict[str, Any]:
    record = store.history.get(send_id)
    assert record is not None
    return public_view(record)


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


# -- operator retries ---------------------------------------------------------------------------


@pytest.mark.parametrize("status", ["failed", "skipped", "opted_out"])
def test_a_send_that_cannot_have_reached_anyone_is_retried_without_force(store: Store, status: FinalStatus) -> None:
    send_id = finished(store, Outcome(status=status, reason="why"))
    result = retry(store, send_id, force=False, words=WORDS)
    assert (result.queued, result.message) == (True, f"Send {send_id} ({status}) is queued again.")
    record = store.history.get(send_id)
    assert record is not None
    assert (record.status, record.finished_at, record.write_back_state) == ("queued", None, "none")


@pytest.mark.parametrize(
    ("status", "why"),
    [
        ("sent", "it reached the customer"),
        ("unknown", "it may already have reached the customer"),
        ("suppressed", "another send for the Case had just texted the customer"),
    ],
)
def test_a_send_that_may_have_reached_the_customer_needs_force(store: Store, status: FinalStatus, why: str) -> None:
    send_id = finished(store, Outcome(status=status, reason="why", chat_id="9" if status == "sent" else None))
    refused = retry(store, send_id, force=False, words=WORDS)
    assert not refused.queued
    assert refused.message.startswith(f"Send {send_id} is {status}: {why}.")
    assert "--force" in refused.message
    record = store.history.get(send_id)
    assert record is not None
    assert record.status == status  # untouched
    assert retry(store, send_id, force=True, words=WORDS).queued
    record = store.history.get(send_id)
    assert record is not None
    assert record.status == "queued"


def test_a_failure_after_a_lost_answer_needs_force(store: Store, clock: Clock) -> None:
    send_id = possibly_delivered(store, clock, "failed")
    refused = retry(store, send_id, force=False, words=WORDS)
    assert not refused.queued
    assert refused.message.startswith(f"Send {send_id} is failed: it may already have reached the customer.")
    forced = retry(store, send_id, force=True, words=WORDS)
    assert forced.queued
    record = store.history.get(send_id)
    assert record is not None
    assert (record.status, record.may_have_sent) == ("queued", True)  # looked up in CCAI before any re-send


def test_a_forced_resend_that_is_refused_keeps_the_chat_that_reached_the_customer(store: Store) -> None:
    """Found driving the dashboard: a sent send retried with force was refused by CCAI ("already in an
    active SMS session"); its record became failed with no chat, and a plain retry would then text the
    customer again. The chat id holds the last chat that exists, and such a send still needs force."""
    send_id = finished(store, Outcome(status="sent", chat_id="314"))
    assert retry(store, send_id, force=True, words=WORDS).queued
    [job] = store.sends.claim("w", limit=1, lease_seconds=30)
    refusal = Outcome(status="failed", reason="Consumer is already in an active SMS session.")
    assert store.sends.finish(job.id, refusal, token=job.token, create_task=False)
    record = store.history.get(send_id)
    assert record is not None
    assert (record.status, record.chat_id) == ("failed", "314")
    refused = retry(store, send_id, force=False, words=WORDS)
    assert not refused.queued
    assert refused.message.startswith(f"Send {send_id} is failed: it reached the customer earlier (chat 314).")


def test_a_notification_about_a_deleted_record_is_not_retried(sqlite_store: Store) -> None:
    new = NewSend(
        dedupe_key="om:00D:04l",
        source="outbound_message",
        origin="crm_event",
        ticket_id="",
        finished=Outcome(status="skipped", reason="Salesforce sent the notification without its record."),
    )
    send_id = sqlite_store.sends.create(new).id
    refused = retry(sqlite_store, send_id, force=True, words=WORDS)
    assert not refused.queued
    assert refused.message == f"Send {send_id} names no record: it was deleted before Salesforce delivered it."


def test_a_send_whose_number_was_given_in_its_request_cannot_be_retried(sqlite_store: Store) -> None:
    """The number is not kept once the send is final, so a retry could only text the Case's own number."""
    send_id = finished(sqlite_store, Outcome(status="failed", reason="x"), overrides=Overrides(end_user_number=NUMBER))
    for force in (False, True):
        result = retry(sqlite_store, send_id, force=force, words=WORDS)
        assert not result.queued
        assert "make a new send instead" in result.message
    record = sqlite_store.history.get(send_id)
    assert record is not None
    assert record.status == "failed"


def test_only_finished_sends_that_exist_are_retried(sqlite_store: Store) -> None:
    assert retry(sqlite_store, 999, force=True, words=WORDS).message == "Send 999 does not exist."
    pending = queued(sqlite_store)
    result = retry(sqlite_store, pending, force=True, words=WORDS)
    assert (result.queued, result.message) == (False, f"Send {pending} is queued: the bridge is still working on it.")
