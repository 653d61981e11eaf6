"""The sends: the inbox, the send step's leases and fences, the write-back step's claims, retention."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import text

from bridge.errors import StoreUnavailable
from bridge.model import NewSend, Outcome, Overrides, PendingWriteback
from bridge.store import Store
from tests._clock import Clock
from tests._sends import depart

CASE = "5005g00000SBX01AAH"
OTHER_CASE = "5005g00000SBX02AAH"


def om(note: str, case: str = CASE) -> NewSend:
    return NewSend(
        dedupe_key=f"om:00D5g00000SBXRG:{note}",
        source="outbound_message",
        origin="crm_event",
        ticket_id=case,
        org_id="00D",
    )


def write_back(store: Store, send_id: int, **result: Any) -> None:
    """Claim the send's pending write-back, as the write-back step does, and record ``result``."""
    [item] = [i for i in store.writebacks.claim("wb", limit=100, lease_seconds=30) if i.id == send_id]
    store.writebacks.record(item, **result)


def sent(chat: str = "1", **kwargs: object) -> Outcome:
    return Outcome(status="sent", chat_id=chat, **kwargs)  # type: ignore[arg-type]


def test_the_same_notification_is_stored_once_even_after_a_restart(store: Store, store_url: str) -> None:
    assert store.sends.ingest([om("04l1"), om("04l2"), om("04l1")]) == 2
    reopened = Store.from_url(store_url)
    try:
        assert reopened.sends.ingest([om("04l1"), om("04l2"), om("04l3")]) == 1
    finally:
        reopened.close()
    assert dict(store.history.queue_summary().by_status) == {"queued": 3}


def test_a_claimed_send_is_not_claimed_again_until_its_lease_expires(store: Store, clock: Clock) -> None:
    store.sends.ingest([om("04l1")])
    first = store.sends.claim("worker-a", limit=10, lease_seconds=30)
    assert [c.ticket_id for c in first] == [CASE]
    assert store.sends.claim("worker-b", limit=10, lease_seconds=30) == []
    clock.advance(31)
    again = store.sends.claim("worker-b", limit=10, lease_seconds=30)
    assert [c.id for c in again] == [first[0].id]
    assert not again[0].may_have_sent  # worker-a never started a CCAI request
    # R13: nothing was attempted, so this is no takeover of a send that may be killing its workers.
    assert again[0].takeovers == 0


def test_a_send_whose_worker_died_mid_request_comes_back_flagged(store: Store, clock: Clock) -> None:
    store.sends.ingest([om("04l1")])
    [job] = store.sends.claim("worker-a", limit=1, lease_seconds=30)
    assert depart(store, job.id, token=job.token, lease_seconds=30)
    left_at = clock.now
    clock.advance(31)
    # R1/R5: taken over, but not handed out before a request its holder may still send is listed.
    assert store.sends.claim("worker-b", limit=1, lease_seconds=30, settle_seconds=50) == []
    clock.advance(49)
    assert store.sends.claim("worker-b", limit=1, lease_seconds=30, settle_seconds=50) == []
    clock.advance(1)
    [retaken] = store.sends.claim("worker-b", limit=1, lease_seconds=30, settle_seconds=50)
    assert retaken.may_have_sent
    assert retaken.attempts == 1
    assert retaken.takeovers == 1
    assert retaken.ambiguous_since == left_at  # where a chat lookup starts searching
    # The dead worker's late writes are refused: its lease token is stale.
    assert not depart(store, job.id, token=job.token, lease_seconds=30)
    assert not store.sends.finish(job.id, Outcome(status="failed", reason="x"), token=job.token, create_task=True)
    store.sends.requeue(job.id, token=job.token, delay=0, reason="stale", may_have_sent=False)
    record = store.history.get(job.id)
    assert record is not None
    assert (record.status, record.may_have_sent) == ("sending", True)


def test_a_success_that_arrives_after_a_takeover_is_recorded(store: Store, clock: Clock) -> None:
    store.sends.ingest([om("04l1")])
    [job] = store.sends.claim("slow", limit=1, lease_seconds=30)
    depart(store, job.id, token=job.token, lease_seconds=30)
    clock.advance(31)
    assert store.sends.claim("other", limit=1, lease_seconds=30) == []  # taken over: settles first
    [taken] = store.sends.claim("other", limit=1, lease_seconds=30)
    # The first worker's CCAI answer finally arrives: the chat exists, so it must be recorded.
    assert store.sends.finish(job.id, sent("114", message="hi"), token=job.token, create_task=True)
    record = store.history.get(job.id)
    assert record is not None
    assert (record.status, record.chat_id, record.writeback) == ("sent", "114", "pending")
    # ...and the worker that took over is fenced out.
    assert not depart(store, job.id, token=taken.token, lease_seconds=30)
    assert not store.sends.finish(job.id, Outcome(status="unknown", reason="x"), token=taken.token, create_task=True)
    assert store.history.get(job.id).status == "sent"  # type: ignore[union-attr]


def test_a_second_chat_ccai_confirms_for_a_send_is_recorded_and_followed(store: Store, clock: Clock) -> None:
    """R1: a paused worker's request left after its send was taken over and texted (the window no
    rule can close): CCAI confirms a second chat. It is never only logged: the ticket follows it and
    the send's timeline says the customer was most likely texted twice."""
    store.sends.ingest([om("04l1")])
    [job] = store.sends.claim("paused", limit=1, lease_seconds=30)
    depart(store, job.id, token=job.token, lease_seconds=30)
    clock.advance(31)
    assert store.sends.claim("other", limit=1, lease_seconds=30) == []
    [taken] = store.sends.claim("other", limit=1, lease_seconds=30)
    depart(store, taken.id, token=taken.token, lease_seconds=30)
    assert store.sends.finish(taken.id, sent("114", message="hi"), token=taken.token, create_task=True)
    assert store.sends.finish(job.id, sent("115", message="hi"), token=job.token, create_task=True)
    assert store.chats.followed(follow_seconds=3600) == {"114", "115"}
    assert store.history.get(job.id).chat_id == "114"  # type: ignore[union-attr]
    [second] = [e for e in store.history.timeline(job.id) if e.event == "second chat"]
    assert "chat 115" in (second.detail or "")
    assert "texted twice" in (second.detail or "")


def test_an_outcome_the_database_refuses_is_recorded_reduced_never_left_sending(store: Store) -> None:
    store.sends.ingest([om("04l1")])
    [job] = store.sends.claim("w", limit=1, lease_seconds=30)
    depart(store, job.id, token=job.token, lease_seconds=30)
    # PostgreSQL text cannot hold NUL: the full outcome is refused (DataError), a reduced one is not.
    outcome = sent("x" * 300, message="a\u0000b", reason=None)
    assert store.sends.finish(job.id, outcome, token=job.token, create_task=True)
    record = store.history.get(job.id)
    assert record is not None
    assert record.status == "sent"
    assert record.chat_id is not None
    assert record.chat_id.startswith("xxx")
    assert not record.may_have_sent


def test_long_values_from_outside_fit(store: Store) -> None:
    key = "k" * 200  # the longest Idempotency-Key the API accepts
    created = store.sends.create(NewSend(dedupe_key=f"api:{key}", source="api", origin="person", ticket_id=CASE))
    [job] = store.sends.claim("w", limit=1, lease_seconds=30)
    assert store.sends.finish(job.id, sent("9" * 100), token=job.token, create_task=False)
    record = store.history.get(created.id)
    assert record is not None
    assert record.chat_id == "9" * 100
    assert record.dedupe_key == f"api:{key}"


def test_loop_guard_sees_a_recent_attempt_on_the_same_case(store: Store, clock: Clock) -> None:
    store.sends.ingest([om("04l1"), om("04l2"), om("04l3", case=OTHER_CASE)])
    a, b, c = store.sends.claim("w", limit=3, lease_seconds=30)
    assert store.sends.start_attempt(a.id, CASE, token=a.token, cooldown=600) is None
    assert store.sends.start_attempt(b.id, CASE, token=b.token, cooldown=600) == a.id
    assert store.sends.start_attempt(c.id, c.ticket_id, token=c.token, cooldown=600) is None
    store.sends.finish(a.id, sent(), token=a.token, create_task=False)
    write_back(store, a.id, case_state="done", task_state=None, error=None, retry_in=None, case_written=True)
    clock.advance(601)
    store.sends.ingest([om("04l4")])
    [d] = store.sends.claim("w", limit=1, lease_seconds=30)
    assert store.sends.start_attempt(d.id, CASE, token=d.token, cooldown=600) is None


def test_loop_guard_counts_from_the_latest_activity_not_the_first_attempt(store: Store, clock: Clock) -> None:
    """A2: CCAI retries for 20 minutes, then the SMS goes out; its Case update echoes back."""
    store.sends.ingest([om("04l1")])
    [first] = store.sends.claim("w", limit=1, lease_seconds=30)
    assert store.sends.start_attempt(first.id, CASE, token=first.token, cooldown=600) is None
    clock.advance(1200)  # retried for 20 minutes
    depart(store, first.id, token=first.token, lease_seconds=30)
    store.sends.finish(first.id, sent(), token=first.token, create_task=False)
    clock.advance(5)
    store.sends.ingest([om("echo-1")])
    [echo] = store.sends.claim("w", limit=1, lease_seconds=30)
    assert store.sends.start_attempt(echo.id, CASE, token=echo.token, cooldown=600) == first.id


def test_loop_guard_holds_while_a_write_back_is_pending_and_after_it_lands(store: Store, clock: Clock) -> None:
    store.sends.ingest([om("04l1")])
    [first] = store.sends.claim("w", limit=1, lease_seconds=30)
    store.sends.start_attempt(first.id, CASE, token=first.token, cooldown=600)
    depart(store, first.id, token=first.token, lease_seconds=30)
    store.sends.finish(first.id, sent(), token=first.token, create_task=False)
    clock.advance(3600)  # Salesforce has been down for an hour: the write-back is still pending
    store.sends.ingest([om("04l2")])
    [during] = store.sends.claim("w", limit=1, lease_seconds=30)
    assert store.sends.start_attempt(during.id, CASE, token=during.token, cooldown=600) == first.id
    store.sends.finish(during.id, Outcome(status="suppressed", write_back=False), token=during.token, create_task=False)
    write_back(store, first.id, case_state="done", task_state=None, error=None, retry_in=None, case_written=True)
    clock.advance(60)  # the Case update lands, and fires the rule
    store.sends.ingest([om("04l3")])
    [echo] = store.sends.claim("w", limit=1, lease_seconds=30)
    assert store.sends.start_attempt(echo.id, CASE, token=echo.token, cooldown=600) == first.id


def test_finish_queues_the_write_back_and_claims_it_once(store: Store) -> None:
    store.sends.ingest([om("04l1")])
    [job] = store.sends.claim("w", limit=1, lease_seconds=30)
    assert store.sends.finish(job.id, sent("114", message="hi"), token=job.token, create_task=True)
    [pending] = store.writebacks.claim("w", limit=10, lease_seconds=30)
    assert (pending.status, pending.chat_id, pending.case_pending, pending.task_pending) == ("sent", "114", True, True)
    assert not pending.note_uncertain
    assert store.writebacks.claim("w", limit=10, lease_seconds=30) == []
    store.writebacks.record(pending, case_state="done", task_state="done", error=None, retry_in=None)
    record = store.history.get(job.id)
    assert record is not None
    assert (record.writeback, record.writeback_task, record.writeback_attempts) == ("done", "done", 1)


def test_an_older_outcome_never_overwrites_a_newer_one_on_the_ticket(store: Store, clock: Clock) -> None:
    store.sends.ingest([om("04l1"), om("04l2")])
    success, refusal = store.sends.claim("w", limit=2, lease_seconds=30)
    store.sends.finish(success.id, sent("2"), token=success.token, create_task=True)
    clock.advance(1)
    store.sends.finish(refusal.id, Outcome(status="failed", reason="refused"), token=refusal.token, create_task=True)
    [first] = store.writebacks.claim("a", limit=1, lease_seconds=30)
    assert first.id == success.id  # outcomes are written in the order they happened
    # While one worker holds a write-back for the ticket, nobody else claims another for it.
    assert store.writebacks.claim("b", limit=10, lease_seconds=30) == []
    store.writebacks.record(first, case_state="done", task_state="done", error=None, retry_in=None)
    [second] = store.writebacks.claim("b", limit=10, lease_seconds=30)
    # The refusal finished after the success: it is the ticket's latest outcome and is written.
    assert (second.id, second.superseded) == (refusal.id, False)
    store.writebacks.record(second, case_state="done", task_state="done", error=None, retry_in=None)
    # An outcome older than what the ticket shows, written only now, is superseded: only its note is written.
    store.sends.ingest([om("04l3")])
    [stale] = store.sends.claim("w", limit=1, lease_seconds=30)
    store.sends.finish(stale.id, Outcome(status="failed", reason="late"), token=stale.token, create_task=True)
    with store.db.tx() as connection:
        connection.execute(
            text(f"UPDATE sends SET finished_at = finished_at - 100, state_at = state_at - 100 WHERE id = {stale.id}")
        )
    [late] = store.writebacks.claim("c", limit=10, lease_seconds=30)
    assert (late.id, late.superseded) == (stale.id, True)


def test_a_write_back_whose_worker_vanished_is_marked_uncertain(store: Store, clock: Clock) -> None:
    store.sends.ingest([om("04l1")])
    [job] = store.sends.claim("w", limit=1, lease_seconds=30)
    store.sends.finish(job.id, sent(), token=job.token, create_task=True)
    store.writebacks.claim("gone", limit=10, lease_seconds=30)
    clock.advance(31)
    [again] = store.writebacks.claim("next", limit=10, lease_seconds=30)
    assert again.note_uncertain  # the note may exist: look before adding it


def test_heartbeat_renewal_keeps_the_leases_of_work_in_hand(store: Store, clock: Clock) -> None:
    store.sends.ingest([om("04l1"), om("04l2", case=OTHER_CASE), om("04l3", case="500000000000003AAA")])
    a, b, dropped = store.sends.claim("live", limit=3, lease_seconds=20)
    depart(store, a.id, token=a.token, lease_seconds=60)
    for _ in range(6):
        clock.advance(5)
        renewed = store.sends.renew("live", sends_in_hand=[a.id, b.id], writebacks_in_hand=[], lease_seconds=20)
        assert renewed >= 1
    # The claim the worker let go of (no outcome, not in hand) ran out; the others did not.
    assert [c.id for c in store.sends.claim("other", limit=10, lease_seconds=20)] == [dropped.id]
    clock.advance(15)
    assert store.sends.claim("other", limit=10, lease_seconds=20) == []
    clock.advance(30)  # it stops beating (and "other" never renewed the one it took)
    # The one whose request may be under way is taken over and settles first; the others are claimed.
    assert {c.id for c in store.sends.claim("other", limit=10, lease_seconds=20)} == {b.id, dropped.id}
    assert [c.id for c in store.sends.claim("other", limit=10, lease_seconds=20)] == [a.id]


def test_renewal_never_extends_another_workers_lease(store: Store, clock: Clock) -> None:
    store.sends.ingest([om("04l1")])
    [job] = store.sends.claim("old", limit=1, lease_seconds=20)
    clock.advance(21)
    [taken] = store.sends.claim("new", limit=1, lease_seconds=20)
    assert store.sends.renew("old", sends_in_hand=[job.id], writebacks_in_hand=[], lease_seconds=60) == 0
    assert taken.id == job.id


def test_a_429_requeue_refunds_the_attempt(store: Store) -> None:
    store.sends.ingest([om("04l1")])
    [job] = store.sends.claim("w", limit=1, lease_seconds=30)
    depart(store, job.id, token=job.token, lease_seconds=30)
    store.sends.requeue(job.id, token=job.token, delay=0, reason="429", may_have_sent=False, refund=True)
    record = store.history.get(job.id)
    assert record is not None
    assert (record.status, record.attempts) == ("queued", 0)


def test_a_leased_write_back_is_not_due_before_its_lease_ends(store: Store, clock: Clock) -> None:
    store.sends.ingest([om("04l1")])
    [job] = store.sends.claim("w", limit=1, lease_seconds=30)
    store.sends.finish(job.id, Outcome(status="failed", reason="x"), token=job.token, create_task=False)
    assert store.sends.seconds_until_due() == 0.0
    store.writebacks.claim("w", limit=10, lease_seconds=45)  # then the worker holding it dies
    assert store.sends.seconds_until_due() == 45.0


def test_create_reports_an_existing_key_with_its_fingerprint(store: Store) -> None:
    new = NewSend(dedupe_key="api:key-1", source="api", origin="person", ticket_id=CASE)
    first = store.sends.create(new, request_hash="aaa")
    assert (first.request_hash, first.created) == ("aaa", True)
    again = store.sends.create(new, request_hash="bbb")
    assert (again.id, again.request_hash, again.created) == (first.id, "aaa", False)


def test_an_operator_retry_requeues_only_allowed_statuses_and_keeps_what_is_known(store: Store, clock: Clock) -> None:
    store.sends.ingest([om("04l1")])
    [job] = store.sends.claim("w", limit=1, lease_seconds=30)
    depart(store, job.id, token=job.token, lease_seconds=30)
    store.sends.requeue(job.id, token=job.token, delay=0, reason="lost", may_have_sent=True, ambiguous=True)
    [job] = store.sends.claim("w", limit=1, lease_seconds=30)
    store.sends.finish(job.id, Outcome(status="unknown", reason="?"), token=job.token, create_task=True)
    assert not store.sends.requeue_finished(job.id, statuses=("failed",))
    clock.advance(5)
    assert store.sends.requeue_finished(job.id, statuses=("failed", "unknown"))
    record = store.history.get(job.id)
    assert record is not None
    assert (record.status, record.requeued_at, record.writeback) == ("queued", clock.now, "none")
    assert record.may_have_sent  # a re-queue never forgets that the customer may have it


def test_release_gives_back_only_unstarted_sends_of_that_worker(store: Store) -> None:
    store.sends.ingest([om("04l1"), om("04l2"), om("04l3")])
    a, b, c = store.sends.claim("stopping", limit=3, lease_seconds=30)
    depart(store, a.id, token=a.token, lease_seconds=30)
    assert store.sends.release("stopping") == 2
    statuses = {record.id: record.status for record in store.history.find()}
    assert statuses == {a.id: "sending", b.id: "queued", c.id: "queued"}


def test_queue_summary(store: Store, clock: Clock) -> None:
    store.sends.ingest([om("04l1")])
    clock.advance(7)
    summary = store.history.queue_summary()
    assert (dict(summary.by_status), summary.oldest_queued_seconds, summary.writebacks_pending) == (
        {"queued": 1},
        7.0,
        0,
    )


def test_purge_removes_only_settled_sends_older_than_the_cutoff(store: Store, clock: Clock) -> None:
    store.sends.ingest([om("04l1"), om("04l2"), om("04l3"), om("04l4")])
    old_done, old_pending, _queued, recent = store.sends.claim("w", limit=4, lease_seconds=30)
    store.sends.release("w")
    old_done, old_pending, _queued, recent = store.sends.claim("w", limit=4, lease_seconds=30)
    outcome = Outcome(status="failed", reason="x")
    store.sends.finish(old_done.id, outcome, token=old_done.token, create_task=False)
    write_back(store, old_done.id, case_state="done", task_state=None, error=None, retry_in=None)
    store.sends.finish(old_pending.id, outcome, token=old_pending.token, create_task=False)  # never got through
    clock.advance(3 * 86400)
    store.sends.finish(recent.id, outcome, token=recent.token, create_task=False)
    write_back(store, recent.id, case_state="done", task_state=None, error=None, retry_in=None)
    assert store.sends.purge(2 * 86400) == 1
    remaining = {record.id for record in store.history.find()}
    assert old_done.id not in remaining
    assert {old_pending.id, recent.id} <= remaining
    assert len(remaining) == 3  # the queued one stays too


def test_a_number_given_in_a_request_is_not_kept_once_the_send_is_final(store: Store) -> None:
    created = store.sends.create(
        NewSend(
            dedupe_key="api:n",
            source="api",
            origin="person",
            ticket_id=CASE,
            overrides=Overrides(end_user_number="+14155550100"),
        )
    )
    [job] = store.sends.claim("w", limit=1, lease_seconds=30)
    assert job.overrides.end_user_number == "+14155550100"  # needed while sending
    store.sends.finish(job.id, sent(end_user_hint="*******0100"), token=job.token, create_task=False)
    with store.db.engine.connect() as connection:
        raw = connection.execute(text(f"SELECT overrides FROM sends WHERE id = {created.id}")).scalar_one()
    assert "4155550100" not in raw


def test_a_deleted_record_notification_is_stored_as_finished(store: Store) -> None:
    finished = Outcome(status="skipped", reason="deleted", write_back=False)
    store.sends.ingest(
        [
            NewSend(
                dedupe_key="om:x:04lGONE",
                source="outbound_message",
                origin="crm_event",
                ticket_id="",
                finished=finished,
            )
        ]
    )
    assert dict(store.history.queue_summary().by_status) == {"skipped": 1}
    assert store.sends.claim("w", limit=10, lease_seconds=30) == []
    assert store.writebacks.claim("w", limit=10, lease_seconds=30) == []


def test_every_step_of_a_send_is_on_its_timeline(store: Store, clock: Clock) -> None:
    store.sends.ingest([om("04l1")])
    [job] = store.sends.claim("w", limit=1, lease_seconds=30)
    depart(store, job.id, token=job.token, lease_seconds=30)
    clock.advance(1)
    store.sends.requeue(
        job.id, token=job.token, delay=10, reason="CCAI Platform answered HTTP 503.", may_have_sent=True
    )
    clock.advance(10)
    [job] = store.sends.claim("w", limit=1, lease_seconds=30)
    store.sends.confirm_not_sent(job.id, token=job.token)
    depart(store, job.id, token=job.token, lease_seconds=30)
    store.sends.finish(job.id, sent("114"), token=job.token, create_task=True)
    write_back(store, job.id, case_state="done", task_state="done", error=None, retry_in=None)
    steps = [(step.event, step.detail) for step in store.history.timeline(job.id)]
    assert [event for event, _ in steps] == [
        "received",
        "attempt",
        "retry",
        "looked up",
        "attempt",
        "finished",
        "written back",
    ]
    assert steps[2][1] == "Retried in 10 s: CCAI Platform answered HTTP 503."
    assert steps[5][1] == "sent (chat 114)"
    clock.advance(40 * 86400)
    store.sends.purge(30 * 86400)
    assert store.history.timeline(job.id) == []  # the timeline goes with its send


def test_a_requeue_never_reopens_a_send_that_is_no_longer_being_sent(store: Store) -> None:
    """Fenced like every other write a worker makes to its claim: not the token alone, the state too."""
    store.sends.ingest([om("04l1")])
    [job] = store.sends.claim("w", limit=1, lease_seconds=30)
    assert store.sends.finish(job.id, sent("5"), token=job.token, create_task=False)
    assert not store.sends.requeue(job.id, token=job.token, delay=0, reason="late", may_have_sent=False)
    record = store.history.get(job.id)
    assert record is not None
    assert (record.status, record.chat_id) == ("sent", "5")


def test_text_that_was_not_sent_is_kept_only_until_its_note_is_written(store: Store) -> None:
    """Found in review: the text of an SMS that never went out stayed in the store for the whole
    retention period; only the "not sent" note on the ticket needs it."""
    store.sends.ingest([om("04l1"), om("04l2", case=OTHER_CASE), om("04l3", case="500000000000003AAA")])
    no_note, with_note, delivered = store.sends.claim("w", limit=3, lease_seconds=30)
    refusal = Outcome(status="failed", reason="No.", message="Your technician is on the way.")
    store.sends.finish(no_note.id, refusal, token=no_note.token, create_task=False)
    store.sends.finish(with_note.id, refusal, token=with_note.token, create_task=True)
    store.sends.finish(
        delivered.id, sent("8", message="Your technician is on the way."), token=delivered.token, create_task=True
    )
    assert [store.history.get(s.id).message for s in (no_note, with_note, delivered)] == [  # type: ignore[union-attr]
        None,
        "Your technician is on the way.",
        "Your technician is on the way.",
    ]
    for item in store.writebacks.claim("wb", limit=10, lease_seconds=30):
        store.writebacks.record(item, case_state="done", task_state="done", error=None, retry_in=None)
    assert store.history.get(with_note.id).message is None  # type: ignore[union-attr]
    assert store.history.get(delivered.id).message == "Your technician is on the way."  # type: ignore[union-attr]


def test_a_send_from_a_door_the_store_has_never_heard_of_is_stored(store: Store) -> None:
    """A new door needs no change in the store: its events are stored, never refused (a 500)."""
    assert (
        store.sends.ingest(
            [NewSend(dedupe_key="zd:inv-1", source="zendesk_trigger", origin="crm_event", ticket_id=CASE)]
        )
        == 1
    )
    [send] = store.history.find(ticket_id=CASE)
    assert (send.source, send.origin) == ("zendesk_trigger", "crm_event")
    assert [step.event for step in store.history.timeline(send.id)] == ["received"]


def test_a_send_whose_commit_answer_was_lost_is_found_by_its_key(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """R2: the row is committed, then the connection drops before the answer: the store reads the key
    back instead of reporting an outage (a caller told to try again would create a second send)."""
    create = store.sends._create

    def answer_lost(new: NewSend, *, request_hash: str | None) -> Any:
        create(new, request_hash=request_hash)
        raise StoreUnavailable("The store is unavailable: consuming input failed.")

    monkeypatch.setattr(store.sends, "_create", answer_lost)
    new = NewSend(dedupe_key="api:auto:abc", source="api", origin="person", ticket_id=CASE, overrides=Overrides())
    created = store.sends.create(new, request_hash="h")
    assert (created.created, created.request_hash) == (True, "h")
    assert [r.id for r in store.history.find(ticket_id=CASE)] == [created.id]


def test_an_outage_before_anything_was_stored_is_still_an_outage(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    def down(new: NewSend, *, request_hash: str | None) -> Any:
        raise StoreUnavailable("The store is unavailable: connection refused.")

    monkeypatch.setattr(store.sends, "_create", down)
    new = NewSend(dedupe_key="api:auto:abc", source="api", origin="person", ticket_id=CASE, overrides=Overrides())
    with pytest.raises(StoreUnavailable):
        store.sends.create(new)


def _failed_then_retried(store: Store, clock: Clock) -> tuple[PendingWriteback, int]:
    """A failed send whose write-back worker A is still writing, retried by an operator and sent."""
    store.sends.ingest([om("04l1")])
    [job] = store.sends.claim("w", limit=1, lease_seconds=30)
    assert store.sends.finish(
        job.id, Outcome(status="failed", reason="SMS is not enabled"), token=job.token, create_task=False
    )
    [old] = store.writebacks.claim("A", limit=10, lease_seconds=30)
    clock.advance(1)
    assert store.sends.requeue_finished(job.id, statuses=["failed"])
    [again] = store.sends.claim("w", limit=1, lease_seconds=30)
    assert store.sends.finish(again.id, sent("114"), token=again.token, create_task=False)
    return old, job.id


def test_a_retried_sends_new_outcome_waits_for_the_old_ones_write_back(store: Store, clock: Clock) -> None:
    """R11: the operator's retry kept the old outcome's write-back lease, so the new outcome is
    written after the old one lands, never before it."""
    old, send_id = _failed_then_retried(store, clock)
    assert store.writebacks.claim("B", limit=10, lease_seconds=30) == []
    store.writebacks.record(old, case_state="done", task_state=None, error=None, retry_in=None, case_written=True)
    [new] = store.writebacks.claim("B", limit=10, lease_seconds=30)
    assert (new.id, new.status) == (send_id, "sent")


def test_an_old_outcome_landing_after_the_new_one_has_the_new_one_written_again(store: Store, clock: Clock) -> None:
    """R11: should the old write-back's answer land after the new outcome was written (its lease ran
    out meanwhile), the new outcome is written once more, so the ticket ends up showing it."""
    old, send_id = _failed_then_retried(store, clock)
    clock.advance(31)  # A's lease ran out while its call was still under way
    [new] = store.writebacks.claim("B", limit=10, lease_seconds=30)
    store.writebacks.record(new, case_state="done", task_state=None, error=None, retry_in=None, case_written=True)
    store.writebacks.record(old, case_state="done", task_state=None, error=None, retry_in=None, case_written=True)
    [again] = store.writebacks.claim("B", limit=10, lease_seconds=30)
    assert (again.id, again.status, again.chat_id) == (send_id, "sent", "114")


def test_a_held_send_is_due_when_its_window_opens(store: Store, clock: Clock) -> None:
    """Issue 22.1: the worker sleeps until the earliest due work, a held send's included, so a send
    held for its window starts when the window opens, not at the next poll."""
    store.sends.ingest([om("04l1")])
    [job] = store.sends.claim("w", limit=1, lease_seconds=30)
    assert store.sends.hold(job.id, token=job.token, until=clock() + 10, reason="window", hint=None)
    store.writebacks.claim("w", limit=10, lease_seconds=45)  # the ticket is being told
    assert store.sends.seconds_until_due() == 10.0
