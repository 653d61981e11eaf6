"""The worker's loop and housekeeping: passes, heartbeat and lease renewal, readiness, stopping; and
the long-running inputs it holds under a lease, across two workers on one store."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio
import pytest

from bridge.errors import StoreUnavailable
from bridge.inputs import Input, InputOptions
from bridge.store import Store
from bridge.worker import Worker, WorkerOptions
from tests._clock import Clock
from tests._fakes import FakeGateway
from tests._harness import MOBILE_CASE, Harness, make_harness

pytestmark = pytest.mark.anyio


@pytest.fixture
def h(sqlite_store: Store, clock: Clock) -> Harness:
    return make_harness(sqlite_store, clock)


async def test_an_unexpected_error_does_not_stop_the_worker(h: Harness, caplog: pytest.LogCaptureFixture) -> None:
    h.gateway.failures.append(RuntimeError("a bug"))
    h.ingest(MOBILE_CASE)
    with anyio.move_on_after(1.5):
        await h.worker.run()
    assert "A worker pass failed unexpectedly" in caplog.text
    for _ in range(4):  # the worker lives on and beats, but the dropped send is not its work any more
        h.clock.advance(10)
        await h.worker.tick()
    await h.drain()  # its lease has run out: it is taken up again
    assert h.row(MOBILE_CASE).status == "sent"


async def test_a_send_dropped_when_the_store_went_away_is_taken_up_again(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found by restarting PostgreSQL under load: marking a send in flight failed, the send step
    dropped it, and the heartbeat renewed its lease for as long as the process lived: never sent."""
    h.ingest(MOBILE_CASE)
    depart = h.store.sends.depart
    outage = [StoreUnavailable("The store is restarting.")]

    def restarting(*args: Any, **kwargs: Any) -> bool:
        if outage:
            raise outage.pop()
        return depart(*args, **kwargs)

    monkeypatch.setattr(h.store.sends, "depart", restarting)
    await h.worker.run_once()
    assert h.row(MOBILE_CASE).status == "sending"
    for _ in range(4):
        h.clock.advance(10)
        await h.worker.tick()
    await h.drain()
    assert h.row(MOBILE_CASE).status == "sent"
    assert len(h.sim.accepted) == 1


async def test_the_tick_beats_and_renews_the_leases_of_work_in_progress(h: Harness) -> None:
    h.ingest(MOBILE_CASE)
    [job] = h.store.sends.claim(h.worker.id, limit=1, lease_seconds=30)
    with h.worker.holdings.sends([job.id]):
        for _ in range(4):  # two minutes of a slow CCAI request, with the heartbeat going
            h.clock.advance(30)
            await h.worker.tick()
    assert h.store.sends.claim("someone-else", limit=1, lease_seconds=30) == []
    [me] = h.store.status.workers()
    assert (me.id, me.seconds_since_beat) == (h.worker.id, 0.0)
    h.clock.advance(31)  # now it stops beating (killed)
    assert [c.id for c in h.store.sends.claim("someone-else", limit=1, lease_seconds=30)] == [job.id]
    assert h.store.status.workers() == []


async def test_a_worker_whose_passes_fail_is_not_ready(clock: Clock) -> None:
    """A8: a worker that is alive but whose every pass fails must make /readyz fail."""
    unreachable = Store.from_url("postgresql://nobody@127.0.0.1:9/none?connect_timeout=1")
    h = make_harness(unreachable, clock, lookup_proven=False, bridge_unhealthy_after_seconds=0.3)
    assert h.worker.problem() is None
    with anyio.move_on_after(1.0):
        await h.worker.run()
    problem = h.worker.problem()
    assert problem is not None
    assert "passes have failed" in problem
    assert "store is unavailable" in problem
    unreachable.close()


async def test_a_cleanly_stopped_worker_is_not_counted_alive(h: Harness) -> None:
    async with anyio.create_task_group() as group:
        group.start_soon(h.worker.run)
        with anyio.fail_after(10):  # registered once it has started (a busy machine can take a while)
            while not h.store.status.workers():
                await anyio.sleep(0.02)
        assert [w.id for w in h.store.status.workers()] == [h.worker.id]
        h.worker.stop()
    assert h.store.status.workers() == []
    [stopped] = h.store.status.workers(include_stopped=True)
    assert stopped.stopped_at is not None


# -- long-running inputs --------------------------------------------------------------------------

INPUTS = InputOptions(lease_seconds=2.0, restart_seconds=0.1)


class ToyStream:
    """A stand-in for a CRM's event stream: it notes which worker reads it, and can break."""

    def __init__(self) -> None:
        self.readers: list[str] = []  # who is reading it right now
        self.starts: list[str] = []
        self.breaks = 0  # how many of the next starts fail at once

    def run_for(self, worker: str) -> Input:
        async def run() -> None:
            self.starts.append(worker)
            self.readers.append(worker)
            try:
                if self.breaks:
                    self.breaks -= 1
                    raise ConnectionResetError("the stream broke")
                await anyio.sleep_forever()
            finally:
                self.readers.remove(worker)

        return run


def stream_worker(store: Store, stream: ToyStream, name: str) -> Worker:
    worker = Worker(
        store=store,
        board=store.status,
        gateway=FakeGateway(),
        options=WorkerOptions(poll_seconds=0.05, lease_seconds=30, retention_seconds=0, inputs=INPUTS),
        worker_id=name,
    )
    worker.add_input("events", stream.run_for(name))
    return worker


async def eventually(condition: Callable[[], bool], *, within: float = 10.0) -> None:
    with anyio.fail_after(within):
        while not condition():
            await anyio.sleep(0.02)


async def test_one_worker_at_a_time_reads_a_stream_and_another_takes_over_when_it_dies(
    sqlite_store: Store, clock: Clock
) -> None:
    stream = ToyStream()
    workers = {name: stream_worker(sqlite_store, stream, name) for name in ("a", "b")}
    scopes = {name: anyio.CancelScope() for name in workers}

    async def run(name: str) -> None:
        with scopes[name]:
            await workers[name].run()

    async with anyio.create_task_group() as group:
        for name in workers:
            group.start_soon(run, name)
        await eventually(lambda: len(stream.readers) == 1)
        holder = stream.readers[0]
        other = "b" if holder == "a" else "a"
        for _ in range(40):  # both keep asking for the lease, for several renewal periods
            assert stream.readers == [holder]
            await anyio.sleep(0.05)
        scopes[holder].cancel()  # the holder dies: no goodbye, its lease is left to run out
        await eventually(lambda: stream.readers == [])
        clock.advance(1.0)  # not yet run out: nobody takes over
        await anyio.sleep(1.0)  # two of the other worker's asks
        assert stream.readers == []
        assert sqlite_store.status.lease_holder("input:events") == holder
        clock.advance(1.5)
        await eventually(lambda: stream.readers == [other], within=INPUTS.lease_seconds)
        workers[other].stop()
    assert stream.starts == [holder, other]
    assert sqlite_store.status.lease_holder("input:events") is None  # a clean stop gives the lease back


async def test_a_stream_that_breaks_is_started_again_by_its_holder(sqlite_store: Store, clock: Clock) -> None:
    stream = ToyStream()
    stream.breaks = 2
    worker = stream_worker(sqlite_store, stream, "a")
    async with anyio.create_task_group() as group:
        group.start_soon(worker.run)
        await eventually(lambda: stream.readers == ["a"])  # broke twice, then runs
        worker.stop()
    assert stream.starts == ["a", "a", "a"]


async def test_a_holder_that_finds_its_lease_taken_stops_reading_at_once(sqlite_store: Store, clock: Clock) -> None:
    """A holder frozen past its lease (a paused VM) must not read on beside the one that took over."""
    stream = ToyStream()
    worker = stream_worker(sqlite_store, stream, "a")
    async with anyio.create_task_group() as group:
        group.start_soon(worker.run)
        await eventually(lambda: stream.readers == ["a"])
        clock.advance(INPUTS.lease_seconds + 1)  # "a" was frozen this long: "b" took the lease meanwhile
        assert sqlite_store.status.take_lease("input:events", "b", seconds=60)
        await eventually(lambda: stream.readers == [], within=INPUTS.lease_seconds)
        worker.stop()
    assert stream.starts == ["a"]
