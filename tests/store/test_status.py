"""The status board: worker heartbeats, clean stops, forgetting old workers, stored values, leases."""

from __future__ import annotations

import pytest

from bridge.store import Store
from bridge.store.status import SILENT_AFTER_SECONDS, StatusBoard
from tests._clock import Clock


@pytest.fixture
def board(store: Store) -> StatusBoard:
    return store.status


def test_a_beating_worker_is_listed_with_how_long_ago_it_beat(board: StatusBoard, clock: Clock) -> None:
    started = clock.now
    board.beat("w1", host="web.1", pid=41, pass_ok=None, pass_error=None)
    clock.advance(10)
    [worker] = board.workers()
    assert (worker.id, worker.host, worker.pid, worker.started_at, worker.seconds_since_beat) == (
        "w1",
        "web.1",
        41,
        started,
        10.0,
    )
    assert worker.alive
    assert (worker.pass_ok_at, worker.pass_error, worker.stopped_at) == (None, None, None)
    board.beat("w1", host="web.1", pid=41, pass_ok=None, pass_error=None)
    [again] = board.workers()
    assert (again.started_at, again.beat_at, again.seconds_since_beat) == (started, clock.now, 0.0)


def test_a_beat_records_how_the_latest_pass_went(board: StatusBoard, clock: Clock) -> None:
    board.beat("w1", host="h", pid=1, pass_ok=True, pass_error=None)
    ok_at = clock.now
    clock.advance(5)
    board.beat("w1", host="h", pid=1, pass_ok=False, pass_error="the store is unavailable")
    [failing] = board.workers()
    assert (failing.pass_ok_at, failing.pass_error) == (ok_at, "the store is unavailable")
    clock.advance(5)
    board.beat("w1", host="h", pid=1, pass_ok=True, pass_error=None)
    [recovered] = board.workers()
    assert (recovered.pass_ok_at, recovered.pass_error) == (clock.now, None)


def test_a_silent_worker_is_not_alive(board: StatusBoard, clock: Clock) -> None:
    board.beat("w1", host="h", pid=1, pass_ok=None, pass_error=None)
    board.beat("w2", host="h", pid=2, pass_ok=None, pass_error=None)
    clock.advance(SILENT_AFTER_SECONDS - 1)
    board.beat("w2", host="h", pid=2, pass_ok=None, pass_error=None)
    clock.advance(1)
    assert [w.id for w in board.workers()] == ["w2"]
    assert [w.id for w in board.workers(include_stopped=True)] == ["w1", "w2"]


def test_a_cleanly_stopped_worker_is_not_alive_until_it_beats_again(board: StatusBoard, clock: Clock) -> None:
    board.beat("w1", host="h", pid=1, pass_ok=None, pass_error=None)
    clock.advance(3)
    board.stopped("w1")
    assert board.workers() == []
    [stopped] = board.workers(include_stopped=True)
    assert (stopped.stopped_at, stopped.alive) == (clock.now, False)
    board.beat("w1", host="h", pid=1, pass_ok=None, pass_error=None)  # restarted under the same id
    assert [w.id for w in board.workers()] == ["w1"]


def test_workers_gone_for_long_are_forgotten(board: StatusBoard, clock: Clock) -> None:
    board.beat("old", host="h", pid=1, pass_ok=None, pass_error=None)
    clock.advance(8 * 86400)
    board.beat("new", host="h", pid=2, pass_ok=None, pass_error=None)
    assert board.forget(7 * 86400) == 1
    assert [w.id for w in board.workers(include_stopped=True)] == ["new"]
    assert board.forget(7 * 86400) == 0


def test_values_are_stored_replaced_and_read_with_when_they_were_stored(board: StatusBoard, clock: Clock) -> None:
    assert board.get("salesforce:api_usage") is None
    board.put("salesforce:api_usage", {"used": 5, "total": 100})
    first = clock.now
    assert board.get("salesforce:api_usage") == ({"used": 5, "total": 100}, first)
    clock.advance(60)
    board.put("salesforce:api_usage", {"used": 7, "total": 100})
    board.put("other", {"x": 1})
    assert board.get("salesforce:api_usage") == ({"used": 7, "total": 100}, clock.now)
    assert board.get("other") == ({"x": 1}, clock.now)


def test_a_lease_is_held_by_one_owner_until_it_runs_out(board: StatusBoard, clock: Clock) -> None:
    assert board.take_lease("chat-sync", "w1", seconds=30)
    assert not board.take_lease("chat-sync", "w2", seconds=30)
    clock.advance(20)
    assert board.take_lease("chat-sync", "w1", seconds=30)  # renewed by its holder
    clock.advance(20)
    assert not board.take_lease("chat-sync", "w2", seconds=30)
    clock.advance(11)
    assert board.take_lease("chat-sync", "w2", seconds=30)  # the holder stopped renewing it
    assert not board.take_lease("chat-sync", "w1", seconds=30)
    assert board.take_lease("other-job", "w1", seconds=30)
