"""CRM event streams: events become sends with the stream's position in one transaction, an event
seen before adds nothing, and a process that lost the stream's lease can no longer write."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select

from bridge.errors import LeaseLost, StoreUnavailable
from bridge.model import NewSend, StreamCommit, StreamLease
from bridge.store import Store, streams
from bridge.store._rows import insert_new
from bridge.store.schema import sends, stream_events
from tests._clock import Clock

STREAM = "/event/CCAI_SMS_Request__e"
LEASE = StreamLease.of_input("salesforce-pubsub", "worker-a")


def request(key: str, case: str = "5005g00000SBX01AAH") -> NewSend:
    return NewSend(
        dedupe_key=f"pe:00D5g00000SBXRG:{key}", source="salesforce_pubsub", origin="crm_event", ticket_id=case
    )


def send_count(store: Store) -> int:
    with store.db.tx() as connection:
        return int(connection.execute(select(func.count()).select_from(sends)).scalar_one())


def test_events_become_sends_with_the_position_and_a_replay_adds_nothing(store: Store) -> None:
    assert store.streams.position(STREAM) is None
    first = store.streams.commit(STREAM, [("u1", request("u1")), ("u2", request("u2"))], b"\x00\x02")
    assert first == StreamCommit(events_new=2, sends_new=2)
    assert store.streams.position(STREAM) == b"\x00\x02"
    # The same events again (a replay after a crash), and one new one.
    again = store.streams.commit(STREAM, [("u1", request("u1")), ("u2", request("u2")), ("u3", request("u3"))], b"\x03")
    assert again == StreamCommit(events_new=1, sends_new=1)
    assert send_count(store) == 3
    assert store.streams.position(STREAM) == b"\x03"


def test_two_events_asking_for_the_same_send_make_one(store: Store) -> None:
    result = store.streams.commit(STREAM, [("u1", request("same-key")), ("u2", request("same-key"))], b"\x01")
    assert result == StreamCommit(events_new=2, sends_new=1)


def test_a_failed_commit_leaves_no_send_and_no_position(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    def fail_after_the_first(db: Any, connection: Any, new: Any, now: float) -> int:
        insert_new(db, connection, new[:1], now)
        raise StoreUnavailable("The connection dropped mid-transaction.")

    monkeypatch.setattr(streams, "insert_new", fail_after_the_first)
    with pytest.raises(StoreUnavailable):
        store.streams.commit(STREAM, [("u1", request("u1")), ("u2", request("u2"))], b"\x09")
    assert send_count(store) == 0
    assert store.streams.position(STREAM) is None
    with store.db.tx() as connection:
        assert connection.execute(select(func.count()).select_from(stream_events)).scalar_one() == 0


def test_only_the_lease_holder_may_commit(store: Store, clock: Clock) -> None:
    assert store.status.take_lease(LEASE.name, LEASE.owner, seconds=20)
    store.streams.commit(STREAM, [("u1", request("u1"))], b"\x01", lease=LEASE)
    clock.advance(21)  # the holder froze; another worker takes the stream over
    assert store.status.take_lease(LEASE.name, "worker-b", seconds=20)
    with pytest.raises(LeaseLost):
        store.streams.commit(STREAM, [("u2", request("u2"))], b"\x02", lease=LEASE)
    with pytest.raises(LeaseLost):
        store.streams.checkpoint(STREAM, b"\x02", lease=LEASE)
    assert store.streams.position(STREAM) == b"\x01"
    assert send_count(store) == 1


def test_a_checkpoint_moves_the_position_without_events(store: Store) -> None:
    store.streams.checkpoint(STREAM, b"\x07")
    assert store.streams.position(STREAM) == b"\x07"
    assert send_count(store) == 0


def test_event_ids_are_forgotten_after_a_week(store: Store, clock: Clock) -> None:
    store.streams.commit(STREAM, [("old", request("old"))], b"\x01")
    clock.advance(8 * 86400)
    store.streams.commit(STREAM, [("new", request("new"))], b"\x02")
    assert store.streams.purge() == 1
    with store.db.tx() as connection:
        kept = connection.execute(select(stream_events.c.event_id)).scalars().all()
    assert kept == ["new"]
