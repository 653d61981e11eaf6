"""Pacing of CCAI requests: at most ``rate`` per second per tenant, evenly spaced, paused after a 429.

Requests are spaced ``1/rate`` apart rather than allowed in bursts, so that no one-second window
holds more than ``rate`` requests whatever window CCAI measures with. :class:`SharedRateLimiter`
keeps the spacing in the store, so any number of worker processes together stay within the
tenant's limit; :class:`LocalRateLimiter` does the same inside one process (tests, tools).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol

import anyio
import anyio.to_thread

from bridge.store import Store


class RateLimiter(Protocol):
    async def acquire(self) -> None:
        """Wait for this caller's turn to send one request."""

    async def pause(self, seconds: float) -> None:
        """Send nothing for ``seconds`` (after a 429)."""


class SharedRateLimiter:
    """Paces one CCAI tenant across every process that uses the same store."""

    def __init__(self, store: Store, *, tenant: str, rate: float) -> None:
        self._store = store
        self._name = f"ccai:{tenant}"
        self._interval = 1.0 / rate

    async def acquire(self) -> None:
        wait = await anyio.to_thread.run_sync(self._store.reserve_slot, self._name, self._interval)
        if wait > 0:
            await anyio.sleep(wait)

    async def pause(self, seconds: float) -> None:
        await anyio.to_thread.run_sync(self._store.pause_slots, self._name, seconds)


class LocalRateLimiter:
    """Paces requests within one process."""

    def __init__(self, rate: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._interval = 1.0 / rate
        self._clock = clock
        self._next_slot = clock()

    async def acquire(self) -> None:
        # The slot is reserved before sleeping, so concurrent callers never share one.
        now = self._clock()
        slot = max(now, self._next_slot)
        self._next_slot = slot + self._interval
        if slot > now:
            await anyio.sleep(slot - now)

    async def pause(self, seconds: float) -> None:
        self._next_slot = max(self._next_slot, self._clock() + seconds)
