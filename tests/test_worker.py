"""The worker's loop and housekeeping: passes, heartbeat and lease renewal, readiness, stopping."""

from __future__ import annotations

import anyio
import pytest

from bridge.status import StatusBoard
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
    h.clock.advance(31)  # the send's lease runs out and it is taken up again
    await h.drain()
    assert h.row(MOBILE_CASE).status == "sent"


async def test_the_tick_beats_and_renews_the_leases_of_work_in_progress(h: Harness) -> None:
    h.ingest(MOBILE_CASE)
    [job] = h.store.claim_sends(h.worker.id, limit=1, lease_seconds=30)
    for _ in range(4):  # two minutes of a slow CCAI request, with the heartbeat going
        h.clock.advance(30)
        await h.worker.tick()
    assert h.store.claim_sends("someone-else", limit=1, lease_seconds=30) == []
    [me] = StatusBoard(h.store.db).workers()
    assert (me.id, me.seconds_since_beat) == (h.worker.id, 0.0)
    h.clock.advance(31)  # now it stops beating (killed)
    assert [c.id for c in h.store.claim_sends("someone-else", limit=1, lease_seconds=30)] == [job.id]
    assert StatusBoard(h.store.db).workers() == []


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
        assert [w.id for w in StatusBoard(h.store.db).workers()] == [h.worker.id]
        h.worker.stop()
    assert StatusBoard(h.store.db).workers() == []
    [stopped] = StatusBoard(h.store.db).workers(include_stopped=True)
    assert stopped.stopped_at is not None
