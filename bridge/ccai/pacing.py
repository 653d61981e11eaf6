"""Pacing of CCAI requests: every process together stays under the tenant's limit, measured in any
one-second window, whatever each host's clock says and however late a request leaves.

CCAI allows 10 requests per second per tenant, shared by every integration. The bridge may use
``share`` of it, and leaves ``headroom`` for the jitter between a request leaving here and
arriving there: at most ``limit * share`` requests leave in any ``1 + headroom`` seconds, and
planned slots are at least ``(1 + headroom) / (limit * share)`` apart.

A slot is reserved first (its planned time, by the database's clock, in a log every process reads:
:class:`bridge.store.pacing.SharedRateLimiter`), and the request leaves a little later: the store
must still clear it, and a busy host runs the caller late. So the time it actually left is recorded
too, and the window rule counts that: a request that left late pushes back the one that follows it
a window later, instead of crowding into its second at CCAI. Until the actual time is known, a
departure counts as leaving at the latest moment its slot allows (``lateness`` after the plan); a
caller that would leave later than that takes a new slot instead (:meth:`Slot.late`).

Each process reads the database's clock when it reserves, and converts its own monotonic clock to
it from there (never the other way round, and always erring late): the processes' clocks may
differ by seconds, the pacing does not.

A 429 pauses everyone for its ``Retry-After``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

import anyio

# The longest pause a 429 imposes (its Retry-After is capped at this): a pause recorded further ahead
# than this is not one the bridge set, but a clock that stepped back since.
MAX_PAUSE_SECONDS = 300.0


@dataclass(frozen=True)
class Slot:
    """One reserved departure, on the reserving process's monotonic ``clock``.

    ``not_before``: the request may not leave earlier. ``counted_until``: until then, it may leave
    and say so afterwards (it is counted as leaving then); later, it says so before it goes.
    ``until``: the latest it may leave on this slot at all. ``offset`` turns this clock into the
    pacing clock, erring late (so a recorded departure is never earlier than the real one). ``key``
    is the limiter's handle for the record.
    """

    not_before: float
    counted_until: float
    until: float
    offset: float = 0.0
    key: int | None = None
    clock: Callable[[], float] = field(default=time.monotonic, compare=False, repr=False)

    def late(self) -> bool:
        """Whether leaving now would be later than the slot allows (then take a new one)."""
        return self.clock() > self.until

    def counted(self) -> bool:
        """Whether leaving now is within the time the pacing counts it as leaving by, unsaid."""
        return self.clock() <= self.counted_until


class RateLimiter(Protocol):
    async def acquire(self, *, lead: float = 0.0) -> Slot:
        """Wait until ``lead`` seconds before this caller's turn to send one request (the request
        must not leave before ``Slot.not_before``; :meth:`departed` says when it did)."""

    async def departed(self, slot: Slot, at: float) -> None:
        """The request on ``slot`` left at ``at`` (the slot's clock)."""

    async def pause(self, seconds: float) -> None:
        """Send nothing for ``seconds`` (after a 429)."""


@dataclass(frozen=True)
class Departure:
    """A reserved slot in the log: ``planned``, and when the request ``left`` (None while unknown)."""

    planned: float
    left: float | None = None


@dataclass(frozen=True)
class Pace:
    """How many requests may leave in which window, and how far apart."""

    limit: float = 10.0
    share: float = 1.0
    headroom: float = 0.08
    # How late after its planned time a request may leave and say so afterwards: until it does, it
    # counts as leaving this late. One later than this says so before it goes.
    lateness: float = 0.05

    @property
    def per_window(self) -> int:
        return max(1, math.floor(self.limit * self.share + 1e-9))

    @property
    def window(self) -> float:
        return 1.0 + self.headroom

    @property
    def gap(self) -> float:
        return self.window / self.per_window

    @property
    def latest(self) -> float:
        """How late after its planned time a request may leave on its slot at all: one said to
        have left before the request that counts it as the oldest of its window reserves its
        slot. A host too busy for that takes the next slot."""
        return self.lateness + (self.window - self.gap) / 2

    def counted(self, departure: Departure | float) -> float:
        """When the window rule counts a departure as leaving: when it did, or else as late as it may."""
        if isinstance(departure, Departure):
            return departure.left if departure.left is not None else departure.planned + self.lateness
        return departure

    def wait(self, now: float, departures: list[Departure] | list[float], paused_until: float) -> float:
        """Seconds until the next request may leave, given the recent departures (planned oldest first).

        Planned slots stay a gap apart (their lateness is not carried from one to the next, which
        would slow every request by the average delay); the window rule counts when they left.

        A departure is planned at most one gap ahead and a pause lasts at most MAX_PAUSE_SECONDS:
        times further ahead were recorded before the clock stepped back, and waiting them out would
        stop all sending for as long as the step (R7). They are ignored; the departures still in
        the window keep the pace.
        """
        kept: list[Departure | float] = [
            d for d in departures if (d.planned if isinstance(d, Departure) else d) <= now + self.window
        ]
        if paused_until > now + MAX_PAUSE_SECONDS:
            paused_until = now
        earliest = max(now, paused_until)
        if kept:
            last = kept[-1]
            earliest = max(earliest, (last.planned if isinstance(last, Departure) else last) + self.gap)
        counted = sorted(self.counted(d) for d in kept)
        if len(counted) >= self.per_window:
            earliest = max(earliest, counted[-self.per_window] + self.window)
        return earliest - now


class LocalRateLimiter:
    """The same pacing within one process (tests, tools)."""

    def __init__(
        self,
        pace: Pace | float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
    ) -> None:
        self._pace = pace if isinstance(pace, Pace) else Pace(limit=pace, headroom=0.0, lateness=0.0)
        self._clock = clock
        self._sleep = sleep
        self._departures: dict[int, Departure] = {}
        self._next_key = 0
        self._paused_until = 0.0
        self._lock = anyio.Lock()

    async def acquire(self, *, lead: float = 0.0) -> Slot:
        async with self._lock:
            while (wait := self._try_depart()) > 0:
                await self._sleep(wait)
            planned = self._clock()
            self._next_key += 1
            self._departures[self._next_key] = Departure(planned)
            pace = self._pace
            return Slot(planned, planned + pace.lateness, planned + pace.latest, key=self._next_key, clock=self._clock)

    async def departed(self, slot: Slot, at: float) -> None:
        if slot.key in self._departures:
            self._departures[slot.key] = Departure(self._departures[slot.key].planned, at)

    def _try_depart(self) -> float:
        now = self._clock()
        horizon = now - self._pace.window - self._pace.lateness
        self._departures = {k: d for k, d in self._departures.items() if self._pace.counted(d) > horizon}
        recent = sorted(self._departures.values(), key=lambda d: d.planned)
        return self._pace.wait(now, recent, self._paused_until)

    async def pause(self, seconds: float) -> None:
        self._paused_until = max(self._paused_until, self._clock() + seconds)
