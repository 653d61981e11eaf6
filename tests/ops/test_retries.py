"""Operators' retries: what may be retried without insisting, what needs it, what never can."""

from __future__ import annotations

import pytest

from bridge.crm.salesforce import plugin as salesforce
from bridge.model import FinalStatus, NewSend, Outcome, Overrides
from bridge.ops.retries import retry
from bridge.store import Store
from tests._clock import Clock
from tests._sends import NUMBER, finished, possibly_delivered, queued

WORDS = salesforce.words


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
