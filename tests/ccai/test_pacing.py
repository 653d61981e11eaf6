"""Pacing: under the tenant's limit in every window, shared by every process, paused by a 429."""

from __future__ import annotations

from collections.abc import Callable

import anyio
import pytest

from bridge.ccai.pacing import MAX_PAUSE_SECONDS, Departure, LocalRateLimiter, Pace
from bridge.store import Store
from bridge.store.database import Database
from bridge.store.pacing import SharedRateLimiter
from tests._clock import Clock

pytestmark = pytest.mark.anyio


def busiest(times: list[float], window: float = 1.0) -> int:
    return max(sum(1 for t in times if start <= t < start + window) for start in times)


def test_the_pace_keeps_headroom_under_the_limit() -> None:
    pace = Pace(limit=10, share=1.0, headroom=0.1)
    assert (pace.per_window, pace.window) == (10, 1.1)
    assert pace.gap == pytest.approx(0.11)
    assert Pace(limit=10, share=0.5).per_window == 5  # half the tenant's limit left to other integrations


def test_a_late_departure_pushes_the_next_ones_back() -> None:
    pace = Pace(limit=10, headroom=0.1)
    departures = [0.0, 0.11, 0.5]  # the third left 0.17 s late
    assert pace.wait(0.52, departures, paused_until=0.0) == pytest.approx(0.09)
    full = [i * 0.11 for i in range(10)]
    assert pace.wait(1.0, full, paused_until=0.0) == pytest.approx(0.1)  # 10 in the last 1.1 s
    assert pace.wait(1.0, [], paused_until=5.0) == pytest.approx(4.0)


async def test_local_pacing_never_puts_more_than_the_limit_in_any_second(clock: Clock) -> None:
    limiter = LocalRateLimiter(Pace(limit=10, headroom=0.1), clock=clock, sleep=clock.sleep)
    departures = []
    for _ in range(50):
        slot = await limiter.acquire()
        await limiter.departed(slot, clock.now)
        departures.append(clock.now)
    assert busiest(departures) <= 10
    assert departures[-1] - departures[0] == pytest.approx(49 * 0.11)
    await limiter.pause(5)
    before = clock.now
    await limiter.acquire()
    assert clock.now - before == pytest.approx(5)


async def test_departures_are_shared_by_every_process_using_the_store(store_url: str) -> None:
    """Two limiters on one database (two worker processes) together stay under the limit."""
    first, second = Store.from_url(store_url), Store.from_url(store_url)
    first.migrate()
    pace = Pace(limit=20, headroom=0.1)
    limiters = [SharedRateLimiter(s.db, tenant="acme", pace=pace) for s in (first, second)]
    times: list[float] = []

    async def send(limiter: SharedRateLimiter, count: int) -> None:
        for _ in range(count):
            await limiter.acquire()
            times.append(anyio.current_time())

    try:
        async with anyio.create_task_group() as group:
            for limiter in limiters:
                group.start_soon(send, limiter, 15)
        assert busiest(times, 1.0) <= 20  # what CCAI counts; the pace leaves 0.1 s of room for lateness
        assert max(times) - min(times) >= 29 * 1.1 / 20 - 0.05
        other = SharedRateLimiter(first.db, tenant="other-tenant", pace=pace)
        started = anyio.current_time()
        await other.acquire()  # another tenant has its own budget
        assert anyio.current_time() - started < 0.2
    finally:
        first.close()
        second.close()


async def test_a_429_pauses_every_process(store_url: str, clock: Clock) -> None:
    db = Database.from_url(store_url, clock=clock)
    db.migrate()
    try:
        one, two = (SharedRateLimiter(db, tenant="acme", pace=Pace(limit=10)) for _ in range(2))
        await one.pause(5)
        # One step at a time, with the clock held still: not allowed for 5 s, so nothing is reserved.
        wait, key, *_ = await anyio.to_thread.run_sync(two._try_depart)
        assert wait == pytest.approx(5.0 - Pace(limit=10).gap)
        assert key is None
        clock.advance(5)
        wait, key, *_ = await anyio.to_thread.run_sync(two._try_depart)
        assert (wait, key is not None) == (0.0, True)
        # The next departure is reserved one gap ahead: the caller sleeps until it, then goes.
        wait, key, *_ = await anyio.to_thread.run_sync(two._try_depart)
        assert wait == pytest.approx(Pace(limit=10).gap)
        assert key is not None
    finally:
        db.close()


def test_a_departure_not_yet_known_counts_as_late_as_its_slot_allows() -> None:
    pace = Pace(limit=10, headroom=0.1, lateness=0.05)
    later = [Departure(i * 0.11, i * 0.11) for i in range(1, 10)]
    assert pace.wait(1.0, [Departure(0.0, 0.0), *later], 0.0) == pytest.approx(0.1)
    # The first has not said when it left: it may have left as late as 0.05, the window ends then.
    assert pace.wait(1.0, [Departure(0.0), *later], 0.0) == pytest.approx(0.15)
    # Late departures push the window, but not the planned gap between slots (that would slow every one).
    late = [Departure(i * 0.11, i * 0.11 + 0.03) for i in range(10)]
    assert pace.wait(1.0, late, 0.0) == pytest.approx(0.03 + 1.1 - 1.0)
    assert pace.wait(0.5, late[:3], 0.0) == pytest.approx(0.0)


async def test_a_late_departure_pushes_the_slot_a_window_later(store_url: str, clock: Clock) -> None:
    """A request that leaves 40 ms after its slot (the store's go-ahead was slow, the host busy): the
    request ten slots later leaves a whole window after it actually left, not after its plan."""
    db = Database.from_url(store_url, clock=clock)
    db.migrate()
    pace = Pace(limit=10, headroom=0.1)
    limiter = SharedRateLimiter(db, tenant="acme", pace=pace, clock=clock, sleep=clock.sleep)
    try:
        first = await limiter.acquire()
        clock.advance(0.04)
        assert not first.late()  # within the lateness its slot allows
        await limiter.departed(first, clock.now)
        for _ in range(9):
            slot = await limiter.acquire()
            await limiter.departed(slot, clock.now)
        eleventh = await limiter.acquire()
        assert eleventh.not_before == pytest.approx(first.not_before + 0.04 + pace.window)
        assert clock.now == pytest.approx(eleventh.not_before)
        clock.advance(pace.lateness + 0.01)
        assert not eleventh.counted()  # said to the pacing before it goes
        assert not eleventh.late()
        clock.advance(pace.latest)
        assert eleventh.late()  # the caller takes a new slot rather than leave this late on it
    finally:
        db.close()


async def test_workers_whose_clocks_differ_share_one_pace(store_url: str, clock: Clock) -> None:
    """Three workers whose own clocks are off by minutes, in both directions, and whose requests
    leave up to 45 ms late: by the database's clock, no eleven requests leave within one window."""
    db = Database.from_url(store_url, clock=clock)
    db.migrate()
    pace = Pace(limit=10, headroom=0.06)
    skews = (0.0, 312.5, -97.25)

    def skewed(skew: float) -> Callable[[], float]:
        return lambda: clock.now + skew

    limiters = [SharedRateLimiter(db, tenant="acme", pace=pace, clock=skewed(s), sleep=clock.sleep) for s in skews]
    left: list[float] = []
    try:
        for i in range(60):
            limiter = limiters[i % 3]
            slot = await limiter.acquire(lead=0.02)
            clock.advance(max(0.0, slot.not_before - slot.clock()) + (i * 7 % 10) * 0.005)
            await limiter.departed(slot, slot.clock())
            left.append(clock.now)
        assert all(b - a >= pace.window - 1e-6 for a, b in zip(left, left[10:], strict=False))
        assert left[-1] - left[0] < 59 * pace.gap + 6 * 0.045 + 0.01  # and no slower than the lateness costs
    finally:
        db.close()


def test_times_further_ahead_than_the_rule_ever_sets_are_a_clock_that_stepped_back() -> None:
    """R7: after the store's clock stepped back an hour, the departures and the 429 pause recorded
    before the step lie an hour ahead; waiting for them stopped all sending for the hour."""
    pace = Pace(limit=10, headroom=0.1)
    assert pace.wait(0.0, [3600.0, 3600.11], paused_until=0.0) == 0.0
    assert pace.wait(0.0, [], paused_until=3600.0) == 0.0
    # What the rule itself sets still counts: a departure reserved one gap ahead, a 429's pause.
    assert pace.wait(0.0, [0.11], paused_until=0.0) == pytest.approx(0.22)
    assert pace.wait(0.0, [], paused_until=MAX_PAUSE_SECONDS) == MAX_PAUSE_SECONDS


async def test_a_store_clock_stepped_back_an_hour_does_not_stop_sending(store_url: str, clock: Clock) -> None:
    db = Database.from_url(store_url, clock=clock)
    db.migrate()
    try:
        limiter = SharedRateLimiter(db, tenant="acme", pace=Pace(limit=10))
        for _ in range(3):
            assert (await anyio.to_thread.run_sync(limiter._try_depart))[1] is not None  # reserved
            clock.advance(Pace(limit=10).gap)
        await limiter.pause(30)
        clock.advance(-3600)  # the database's clock steps back an hour (NTP, a failover to another host)
        wait, key, *_ = await anyio.to_thread.run_sync(limiter._try_depart)
        assert key is not None
        assert wait == 0.0
    finally:
        db.close()
