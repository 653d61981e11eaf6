"""Pacing of CCAI requests: at most ``rate`` per second, evenly spaced, with pauses after a 429.

Requests are spaced ``1/rate`` apart rather than allowed in bursts, so that no one-second window
ever holds more than ``rate`` requests, whatever window CCAI measures with.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import anyio


class RateLimiter:
    """An in-process limiter for one CCAI tenant (one process sends to it)."""

    def __init__(self, rate: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._interval = 1.0 / rate
        self._clock = clock
        self._next_slot = clock()

    async def acquire(self) -> None:
        """Wait for this caller's slot. Slots are reserved before sleeping, so callers never collide."""
        now = self._clock()
        slot = max(now, self._next_slot)
        self._next_slot = slot + self._interval
        if slot > now:
            await anyio.sleep(slot - now)

    def pause(self, seconds: float) -> None:
        """Send nothing for ``seconds`` (after a 429)."""
        self._next_slot = max(self._next_slot, self._clock() + seconds)
