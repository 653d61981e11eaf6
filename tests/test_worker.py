"""The worker's loop and housekeeping: passes, heartbeat and lease renewal, readiness, stopping."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from bridge.errors import StoreUnavailable
from bridge.store import Store
from tests._clock import Clock
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
    mark_inflight = h.store.sends.mark_inflight
    outage = [StoreUnavailable("The store is restarting.")]

    def restarting(*args: Any, **kwargs: Any) -> bool:
        if outage:
            raise outage.pop()
        return mark_inflight(*args, **kwargs)

    monkeypatch.setattr(h.store.sends, "mark_inflight", restarting)
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
    h = make_harness(unreachable, clock, bridge_unhealthy_after_seconds=0.3)
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
        await anyio.sleep(0.2)
        assert [w.id for w in h.store.status.workers()] == [h.worker.id]
        h.worker.stop()
    assert h.store.status.workers() == []
    [stopped] = h.store.status.workers(include_stopped=True)
    assert stopped.stopped_at is not None
