"""Pacing of CCAI requests: every process together stays under the tenant's limit, measured in any
one-second window, whatever each host's clock says and however late a request leaves.

CCAI allows 10 requests per second per tenant, shared by every integration. The bridge may use
``share`` of it, and leaves ``headroom`` for the jitter between a request leaving here and
arriving there: at most ``limit * share`` requests leave in any ``1 + headroom`` seconds, at least
``(1 + headroom) / (limit * share)`` apart. A request's departure is recorded when it is allowed to
go (it goes at once), by the database's clock, in a log every process reads
(:class:`SharedRateLimiter`), so a request that leaves late pushes the next ones back instead of
crowding them. A 429 pauses everyone for its ``Retry-After``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

import anyio
import anyio.to_thread
from sqlalchemy import Connection, delete, select, update

from bridge._schema import rate_events, rate_limits
from bridge.database import Database


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
        """Seconds until the next request may leave, given the recent departures (oldest first)."""
        earliest = max(now, paused_until)
        if departures:
            earliest = max(earliest, departures[-1] + self.gap)
        if len(departures) >= self.per_window:
            earliest = max(earliest, departures[-self.per_window] + self.window)
        return earliest - now


class SharedRateLimiter:
    """Paces one CCAI tenant across every process that uses the same database.

    Within a process, callers queue on a lock, so only one of them at a time polls the database.
    """

    def __init__(self, db: Database, *, tenant: str, pace: Pace) -> None:
        self._db = db
        self._name = f"ccai:{tenant}"
        self._pace = pace
        self._lock = anyio.Lock()

    async def acquire(self) -> None:
        async with self._lock:
            while True:
                wait, reserved = await anyio.to_thread.run_sync(self._try_depart)
                await anyio.sleep(wait)
                if reserved:
                    return

    async def pause(self, seconds: float) -> None:
        await anyio.to_thread.run_sync(self._pause, seconds)

    def _try_depart(self) -> tuple[float, bool]:
        """Record a departure if one is allowed within one gap from now (then the caller sleeps
        until it and goes: reserving that close ahead keeps the pace even without polling the
        database more often); otherwise say how long to wait before asking again."""
        with self._db.tx() as connection:
            paused_until = self._lock_row(connection)
            now = self._db.now(connection)
            recent = [
                float(at)
                for (at,) in connection.execute(
                    select(rate_events.c.at)
                    .where(rate_events.c.name == self._name, rate_events.c.at > now - self._pace.window)
                    .order_by(rate_events.c.at)
                )
            ]
            wait = self._pace.wait(now, recent, paused_until)
            if wait > self._pace.gap + 1e-6:  # (times are floats: a wait of exactly one gap is reserved)
                return wait - self._pace.gap, False
            connection.execute(rate_events.insert().values(name=self._name, at=now + wait))
            connection.execute(
                delete(rate_events).where(rate_events.c.name == self._name, rate_events.c.at < now - 60.0)
            )
            return wait, True

    def _pause(self, seconds: float) -> None:
        with self._db.tx() as connection:
            paused_until = self._lock_row(connection)
            until = self._db.now(connection) + seconds
            if paused_until < until:
                connection.execute(update(rate_limits).where(rate_limits.c.name == self._name).values(next_slot=until))

    def _lock_row(self, connection: Connection) -> float:
        """Lock this tenant's row (creating it) for the transaction; returns its pause-until time."""
        connection.execute(
            self._db.insert(rate_limits)
            .values(name=self._name, next_slot=0.0)
            .on_conflict_do_nothing(index_elements=["name"])
        )
        query = select(rate_limits.c.next_slot).where(rate_limits.c.name == self._name)
        if self._db.postgres:
            query = query.with_for_update()
        return float(connection.execute(query).scalar_one())


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
