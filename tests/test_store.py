from __future__ import annotations

import pytest
from sqlalchemy import inspect, text

from bridge._schema import LATEST_VERSION
from bridge.model import NewSend, Outcome
from bridge.store import Store
from tests.conftest import Clock

CASE = "5005g00000SBX01AAH"


def om(note: str, case: str = CASE) -> NewSend:
    return NewSend(dedupe_key=f"om:00D5g00000SBXRG:{note}", source="outbound_message", ticket_id=case, org_id="00D")


def test_the_same_notification_is_stored_once_even_after_a_restart(store: Store, store_url: str) -> None:
    assert store.ingest([om("04l1"), om("04l2"), om("04l1")]) == 2
    reopened = Store.from_url(store_url)
    try:
        assert reopened.ingest([om("04l1"), om("04l2"), om("04l3")]) == 1
    finally:
        reopened.close()
    assert store.counts() == {"queued": 3}


def test_migrate_is_idempotent(store: Store) -> None:
    assert store.migrate() == store.migrate() == LATEST_VERSION
    store.ingest([om("04l1")])
    store.migrate()
    assert store.counts() == {"queued": 1}


def test_a_claimed_send_is_not_claimed_again_until_its_lease_expires(store: Store, clock: Clock) -> None:
    store.ingest([om("04l1")])
    first = store.claim_sends("worker-a", limit=10, lease_seconds=30)
    assert [c.ticket_id for c in first] == [CASE]
    assert store.claim_sends("worker-b", limit=10, lease_seconds=30) == []
    clock.advance(31)
    again = store.claim_sends("worker-b", limit=10, lease_seconds=30)
    assert [c.id for c in again] == [first[0].id]
    assert not again[0].may_have_sent  # worker-a never started a CCAI request


def test_a_send_whose_worker_died_mid_request_comes_back_flagged(store: Store, clock: Clock) -> None:
    store.ingest([om("04l1")])
    [job] = store.claim_sends("worker-a", limit=1, lease_seconds=30)
    assert store.mark_inflight(job.id, owner="worker-a", lease_seconds=30)
    clock.advance(31)
    [retaken] = store.claim_sends("worker-b", limit=1, lease_seconds=30)
    assert retaken.may_have_sent
    assert retaken.attempts == 1
    # The dead worker's late writes are refused: it no longer holds the lease.
    assert not store.mark_inflight(job.id, owner="worker-a", lease_seconds=30)
    assert not store.finish(job.id, Outcome(status="sent", chat_id="1"), owner="worker-a", create_task=True)


def test_loop_guard_sees_a_recent_attempt_on_the_same_case(store: Store, clock: Clock) -> None:
    store.ingest([om("04l1"), om("04l2"), om("04l3", case="5005g00000SBX02AAH")])
    a, b, c = store.claim_sends("w", limit=3, lease_seconds=30)
    assert store.start_attempt(a.id, CASE, cooldown=600, owner="w") is None
    assert store.start_attempt(b.id, CASE, cooldown=600, owner="w") == a.id
    assert store.start_attempt(c.id, c.ticket_id, cooldown=600, owner="w") is None
    clock.advance(601)
    store.ingest([om("04l4")])
    [d] = store.claim_sends("w", limit=1, lease_seconds=30)
    assert store.start_attempt(d.id, CASE, cooldown=600, owner="w") is None


def test_finish_queues_the_write_back_and_claims_it_once(store: Store) -> None:
    store.ingest([om("04l1")])
    [job] = store.claim_sends("w", limit=1, lease_seconds=30)
    assert store.finish(job.id, Outcome(status="sent", chat_id="114", message="hi"), owner="w", create_task=True)
    [pending] = store.claim_writebacks(limit=10, lease_seconds=30)
    assert (pending.status, pending.chat_id, pending.case_pending, pending.task_pending) == ("sent", "114", True, True)
    assert store.claim_writebacks(limit=10, lease_seconds=30) == []
    store.record_writeback(job.id, case_state="done", task_state="done", error=None, retry_at=None)
    row = store.get(job.id)
    assert row is not None
    assert (row["writeback"], row["writeback_task"], row["writeback_attempts"]) == ("done", "done", 1)


def test_a_429_requeue_refunds_the_attempt(store: Store) -> None:
    store.ingest([om("04l1")])
    [job] = store.claim_sends("w", limit=1, lease_seconds=30)
    store.mark_inflight(job.id, owner="w", lease_seconds=30)
    store.requeue(job.id, owner="w", not_before=0, reason="429", may_have_sent=False, refund=True)
    row = store.get(job.id)
    assert row is not None
    assert (row["status"], row["attempts"]) == ("queued", 0)


def test_a_leased_write_back_is_not_due_before_its_lease_ends(store: Store, clock: Clock) -> None:
    store.ingest([om("04l1")])
    [job] = store.claim_sends("w", limit=1, lease_seconds=30)
    store.finish(job.id, Outcome(status="failed", reason="x"), owner="w", create_task=False)
    assert store.next_due() == clock.now
    store.claim_writebacks(limit=10, lease_seconds=45)  # then the worker holding it dies
    assert store.next_due() == clock.now + 45


def test_a_store_from_the_first_release_is_upgraded_in_place(store: Store) -> None:
    old = store
    with old.engine.begin() as connection:  # the v1 schema, as the first release created it
        connection.execute(text("DROP TABLE sends"))
        connection.execute(text("DELETE FROM bridge_schema_version WHERE version > 1"))
        connection.execute(
            text(
                "CREATE TABLE sends (id INTEGER PRIMARY KEY, dedupe_key VARCHAR(200) NOT NULL UNIQUE, "
                "source VARCHAR(32) NOT NULL, org_id VARCHAR(18), ticket_id VARCHAR(18) NOT NULL, overrides TEXT, "
                "status VARCHAR(16) NOT NULL, reason TEXT, chat_id VARCHAR(64), message TEXT, "
                "end_user_hint VARCHAR(16), "
                "attempts INTEGER NOT NULL, not_before FLOAT NOT NULL, lease_owner VARCHAR(64), lease_until FLOAT, "
                "inflight BOOLEAN NOT NULL, may_have_sent BOOLEAN NOT NULL, created_at FLOAT NOT NULL, "
                "first_attempt_at FLOAT, finished_at FLOAT, writeback VARCHAR(16) NOT NULL, "
                "writeback_task VARCHAR(16) NOT NULL, writeback_attempts INTEGER NOT NULL, writeback_not_before FLOAT, "
                "writeback_lease_until FLOAT, writeback_error TEXT)"
            )
        )
    assert old.migrate() == LATEST_VERSION
    with old.engine.connect() as connection:
        columns = {c["name"] for c in inspect(connection).get_columns("sends")}
    assert {"request_hash", "requeued_at"} <= columns


def test_create_reports_an_existing_key_with_its_fingerprint(store: Store) -> None:
    new = NewSend(dedupe_key="api:key-1", source="api", ticket_id=CASE)
    first = store.create(new, request_hash="aaa")
    assert first[1:] == ("aaa", True)
    assert store.create(new, request_hash="bbb") == (first[0], "aaa", False)


def test_an_operator_retry_requeues_only_allowed_statuses(store: Store, clock: Clock) -> None:
    store.ingest([om("04l1")])
    [job] = store.claim_sends("w", limit=1, lease_seconds=30)
    store.finish(job.id, Outcome(status="sent", chat_id="1"), owner="w", create_task=True)
    assert not store.requeue_finished(job.id, statuses=("failed",))
    clock.advance(5)
    assert store.requeue_finished(job.id, statuses=("failed", "sent"))
    row = store.get(job.id)
    assert row is not None
    assert (row["status"], row["requeued_at"], row["writeback"]) == ("queued", clock.now, "none")


def test_request_slots_are_shared_by_every_store_instance(store: Store, store_url: str, clock: Clock) -> None:
    other = Store.from_url(store_url, clock=clock)  # e.g. a second worker process
    try:
        waits = [s.reserve_slot("ccai:acme", 0.1) for s in (store, other, store, other)]
        assert waits == pytest.approx([0.0, 0.1, 0.2, 0.3])
        assert other.reserve_slot("ccai:other-tenant", 0.1) == 0.0
        store.pause_slots("ccai:acme", 5)  # a 429 pauses everybody
        assert other.reserve_slot("ccai:acme", 0.1) == pytest.approx(5.0)
    finally:
        other.close()


def test_release_gives_back_only_unstarted_sends_of_that_worker(store: Store) -> None:
    store.ingest([om("04l1"), om("04l2"), om("04l3")])
    a, b, c = store.claim_sends("stopping", limit=3, lease_seconds=30)
    store.mark_inflight(a.id, owner="stopping", lease_seconds=30)
    assert store.release("stopping") == 2
    statuses = {row["id"]: row["status"] for row in store.find()}
    assert statuses == {a.id: "sending", b.id: "queued", c.id: "queued"}


def test_status_records_and_queue_summary(store: Store, clock: Clock) -> None:
    store.put_status("worker:a", {"heartbeat": 1})
    store.put_status("worker:a", {"heartbeat": 2})
    store.put_status("salesforce:api_usage", {"used": 5, "total": 100})
    assert store.status_items("worker:") == {"worker:a": ({"heartbeat": 2}, clock.now)}
    store.ingest([om("04l1")])
    clock.advance(7)
    summary = store.queue_summary()
    assert summary == {"by_status": {"queued": 1}, "oldest_queued_seconds": 7.0, "writebacks_pending": 0}


def test_purge_removes_only_settled_sends_older_than_the_cutoff(store: Store, clock: Clock) -> None:
    store.ingest([om("04l1"), om("04l2"), om("04l3"), om("04l4")])
    old_done, old_pending, _queued, recent = store.claim_sends("w", limit=4, lease_seconds=30)
    store.release("w")
    store.claim_sends("w", limit=4, lease_seconds=30)
    outcome = Outcome(status="failed", reason="x")
    store.finish(old_done.id, outcome, owner="w", create_task=False)
    store.record_writeback(old_done.id, case_state="done", task_state=None, error=None, retry_at=None)
    store.finish(old_pending.id, outcome, owner="w", create_task=False)  # its write-back never got through
    clock.advance(3 * 86400)
    store.finish(recent.id, outcome, owner="w", create_task=False)
    store.record_writeback(recent.id, case_state="done", task_state=None, error=None, retry_at=None)
    assert store.purge(clock.now - 2 * 86400) == 1
    remaining = {row["id"] for row in store.find()}
    assert old_done.id not in remaining
    assert {old_pending.id, recent.id} <= remaining
    assert len(remaining) == 3  # the queued one stays too
