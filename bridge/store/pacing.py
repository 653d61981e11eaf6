"""The CCAI pacing every process shares: departures and pauses in the store, by its clock (see
:mod:`bridge.ccai.pacing` for the rule)."""

from __future__ import annotations

import anyio
import anyio.to_thread
from sqlalchemy import Connection, delete, or_, select, update

from bridge.ccai.pacing import MAX_PAUSE_SECONDS, Pace
from bridge.store.database import Database
from bridge.store.schema import rate_events, rate_limits


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
            # Old departures go, and so do those a clock that stepped back left in the future (R7).
            connection.execute(
                delete(rate_events).where(
                    rate_events.c.name == self._name,
                    or_(rate_events.c.at < now - 60.0, rate_events.c.at > now + self._pace.window),
                )
            )
            return wait, True

    def _pause(self, seconds: float) -> None:
        with self._db.tx() as connection:
            paused_until = self._lock_row(connection)
            now = self._db.now(connection)
            until = now + seconds
            # A pause further ahead than any the bridge sets was left by a clock that stepped back.
            if paused_until < until or paused_until > now + MAX_PAUSE_SECONDS:
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
