"""Pacing of CCAI requests: every process together stays under the tenant's limit, measured in any
one-second window, whatever each host's clock says and however late a request leaves.

CCAI allows 10 requests per second per tenant, shared by every integration. The bridge may use
``share`` of it, and leaves ``headroom`` for the jitter between a request leaving here and
arriving there: at most ``limit * share`` requests leave in any ``1 + headroom`` seconds, at least
``(1 + headroom) / (limit * share)`` apart. A request's departure is recorded when it is allowed to
go (it goes at once), by the database's clock, in a log every process reads
(:class:`bridge.store.pacing.SharedRateLimiter`), so a request that leaves late pushes the next ones back instead of
crowding them. A 429 pauses everyone for its ``Retry-After``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

import anyio

# The longest pause a 429 imposes (its Retry-After is capped at this): a pause recorded further ahead
# than this is not one the bridge set, but a clock that stepped back since.
MAX_PAUSE_SECONDS = 300.0


class RateLimiter(Protocol):
    async def acquire(self) -> None:
        """Wait for this caller's turn to send one request; it must then leave at once."""

    async def pause(self, seconds: float) -> None:
        """Send nothing for ``seconds`` (after a 429)."""


@dataclass(frozen=True)
class Pace:
    """How many requests may leave in which window, and how far apart."""

    limit: float = 10.0
    share: float = 1.0
    headroom: float = 0.08

    @property
    def per_window(self) -> int:
        return max(1, math.floor(self.limit * self.share + 1e-9))

    @property
    def window(self) -> float:
        return 1.0 + self.headroom

    @property
    def gap(self) -> float:
        return self.window / self.per_window

    def wait(self, now: float, departures: list[float], paused_until: float) -> float:
        """Seconds until the next request may leave, given the recent departures (oldest first).

        A departure is reserved at most one gap ahead and a pause lasts at most MAX_PAUSE_SECONDS:
        times further ahead were recorded before the clock stepped back, and waiting them out would
        stop all sending for as long as the step (R7). They are ignored; the departures still in
        the window keep the pace.
        """
        departures = [at for at in departures if at <= now + self.window]
        if paused_until > now + MAX_PAUSE_SECONDS:
            paused_until = now
        earliest = max(now, paused_until)
        if departures:
            earliest = max(earliest, departures[-1] + self.gap)
        if len(departures) >= self.per_window:
            earliest = max(earliest, departures[-self.per_window] + self.window)
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
        self._pace = pace if isinstance(pace, Pace) else Pace(limit=pace, headroom=0.0)
        self._clock = clock
        self._sleep = sleep
        self._departures: list[float] = []
        self._paused_until = 0.0
        self._lock = anyio.Lock()

    async def acquire(self) -> None:
        async with self._lock:
            while (wait := self._try_depart()) > 0:
                await self._sleep(wait)

    def _try_depart(self) -> float:
        now = self._clock()
        self._departures = [t for t in self._departures if t > now - self._pace.window]
        wait = self._pace.wait(now, self._departures, self._paused_until)
        if wait <= 0:
            self._departures.append(now)
        return wait

    async def pause(self, seconds: float) -> None:
        self._paused_until = max(self._paused_until, self._clock() + seconds)
