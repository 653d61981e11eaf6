"""A store that went back in time (R6) is noticed by the worker whose writes it lost, and nothing
unfinished in it is sent before it is looked up."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import text

from bridge.errors import StoreWentBack
from bridge.model import NewSend, Overrides
from bridge.store import Store
from tests._clock import Clock
from tests._sends import depart


def _queue(store: Store, key: str) -> int:
    new = NewSend(dedupe_key=key, source="api", origin="person", ticket_id="5005g00000SBX01AAH", overrides=Overrides())
    return store.sends.create(new).id


def _restore_older_copy(store: Store) -> None:
    """What a failover to a replica that missed the last writes looks like from here."""
    with store.db.tx() as connection:
        connection.execute(text("DELETE FROM generations"))
        connection.execute(text("UPDATE sends SET status = 'queued', inflight = false, lease_owner = NULL"))


def test_a_store_that_lost_a_workers_departures_is_noticed_before_anything_is_sent(store: Store, clock: Clock) -> None:
    send_id = _queue(store, "api:auto:1")
    [job] = store.sends.claim("w", limit=1, lease_seconds=30)
    assert depart(store, job.id, token=job.token, lease_seconds=30)
    _restore_older_copy(store)
    with pytest.raises(StoreWentBack, match="went back in time"):
        store.sends.claim("w", limit=1, lease_seconds=30)
    assert store.takeovers.after_going_back("w", settle_seconds=40, detail="found") == 1
    assert store.sends.claim("w", limit=1, lease_seconds=30) == []  # not before CCAI had time to list it
    clock.advance(40)
    [again] = store.sends.claim("w", limit=1, lease_seconds=30)
    assert (again.id, again.may_have_sent) == (send_id, True)  # looked up before anything is sent
    assert again.ambiguous_since is not None
    assert not depart(store, job.id, token=job.token, lease_seconds=30)  # the old claim is fenced off
    assert store.takeovers.looking_up_after_going_back(clock.now - 40) == 1
    kinds = [entry.event for entry in store.history.timeline(send_id)]
    assert "store went back" in kinds


def test_a_store_that_kept_everything_raises_nothing(store: Store) -> None:
    for n in range(3):
        _queue(store, f"api:auto:{n}")
        [job] = store.sends.claim("w", limit=1, lease_seconds=30)
        assert depart(store, job.id, token=job.token, lease_seconds=30)
    other = Store(store.db)  # another process knows nothing of w's count, and finds nothing wrong
    assert other.sends.claim("w", limit=1, lease_seconds=30) == []
    assert store.sends.claim("w", limit=1, lease_seconds=30) == []


def test_a_new_workers_first_sends_clearing_at_once_are_all_counted(store_url: str) -> None:
    """Both of a new worker's first two departures found no row to lock and inserted one; the second
    failed on the key, and its send was not cleared (found by the chat-tailing tests on PostgreSQL)."""
    stores = [Store.from_url(store_url) for _ in range(8)]
    stores[0].migrate()
    barrier = threading.Barrier(len(stores))
    counts: list[int] = []

    def advance(one: Store) -> None:
        barrier.wait(timeout=30)  # all at once (SQLite's transactions queue; PostgreSQL's race)
        with one.db.tx() as connection:
            counts.append(one.generations.advance(connection, "new-worker", now=1.0))

    try:
        threads = [threading.Thread(target=advance, args=(one,)) for one in stores]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        assert sorted(counts) == list(range(1, 9))
    finally:
        for one in stores:
            one.close()
