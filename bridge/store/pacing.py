"""The CCAI pacing every process shares: departures and pauses in the store, by its clock (see
:mod:`bridge.ccai.pacing` for the rule)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

import anyio
import anyio.to_thread
from sqlalchemy import Connection, delete, or_, select, update

from bridge.ccai.pacing import MAX_PAUSE_SECONDS, Departure, Pace, Slot
from bridge.store.database import Database
from bridge.store.schema import rate_events, rate_limits


class SharedRateLimiter:
    """Paces one CCAI tenant across every process that uses the same database.

    Within a process, callers queue on a lock, so only one of them at a time polls the database.
    ``clock`` is this process's monotonic clock (tests give each "process" its own).
    """

    def __init__(
        self,
        db: Database,
        *,
        tenant: str,
        pace: Pace,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
    ) -> None:
        self._db = db
        self._name = f"ccai:{tenant}"
        self._pace = pace
        self._clock = clock
        self._sleep = sleep
        self._lock = anyio.Lock()
        self._offsets = _Offsets()

    async def acquire(self, *, lead: float = 0.0) -> Slot:
        async with self._lock:
            while True:
                wait, key, store_now, asked, answered = await anyio.to_thread.run_sync(self._try_depart)
                if key is None:
                    await self._sleep(wait)
                    continue
                early, late = self._offsets.learn(store_now, asked=asked, answered=answered)
                planned = store_now + wait
                # Leaving at local time t is leaving after t + early and before t + late by the
                # store's clock: the slot starts by the first, is checked and recorded by the
                # second. A slow answer now and then costs nothing: the bounds are the tightest of
                # the recent answers.
                slot = Slot(
                    not_before=planned - early,
                    counted_until=planned + self._pace.lateness - late,
                    until=planned + self._pace.latest - late,
                    offset=late,
                    key=key,
                    clock=self._clock,
                )
                await self._sleep(max(0.0, slot.not_before - lead - self._clock()))
                return slot

    async def departed(self, slot: Slot, at: float) -> None:
        if slot.key is not None:
            await anyio.to_thread.run_sync(self._record, slot.key, at + slot.offset)

    async def pause(self, seconds: float) -> None:
        await anyio.to_thread.run_sync(self._pause, seconds)

    def _try_depart(self) -> tuple[float, int | None, float, float, float]:
        """Record a departure if one is allowed within one gap from now (then the caller sleeps
        until it and goes: reserving that close ahead keeps the pace even without polling the
        database more often); otherwise say how long to wait before asking again.

        Returns the wait, the reserved departure's key (None: nothing reserved), the store's now, and
        this process's clock just before and after reading it (one round-trip apart, on this thread:
        the narrower, the less pace the conversion between the clocks costs).
        """
        with self._db.tx() as connection:
            paused_until = self._lock_row(connection)
            asked = self._clock()
            now = self._db.now(connection)
            answered = self._clock()
            # A departure's actual time is at most a few seconds after its plan (a late one takes
            # a new slot), so this reads every departure the window rule may count.
            recent = [
                Departure(float(at), None if left is None else float(left))
                for at, left in connection.execute(
                    select(rate_events.c.at, rate_events.c.left_at)
                    .where(rate_events.c.name == self._name, rate_events.c.at > now - self._pace.window - 5.0)
                    .order_by(rate_events.c.at)
                )
            ]
            recent = [d for d in recent if self._pace.counted(d) > now - self._pace.window]
            wait = self._pace.wait(now, recent, paused_until)
            if wait > self._pace.gap + 1e-6:  # (times are floats: a wait of exactly one gap is reserved)
                return wait - self._pace.gap, None, now, asked, answered
            inserted = connection.execute(rate_events.insert().values(name=self._name, at=now + wait))
            assert inserted.inserted_primary_key is not None
            key = inserted.inserted_primary_key[0]
            # Old departures go, and so do those a clock that stepped back left in the future (R7).
            connection.execute(
                delete(rate_events).where(
                    rate_events.c.name == self._name,
                    or_(rate_events.c.at < now - 60.0, rate_events.c.at > now + self._pace.window),
                )
            )
            return wait, int(key), now, asked, answered

    def _record(self, key: int, left_at: float) -> None:
        with self._db.tx() as connection:
            connection.execute(update(rate_events).where(rate_events.c.id == key).values(left_at=left_at))

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


class _Offsets:
    """What to add to this process's clock to get the store's, as bounds learnt from the recent
    reservations: each read the store's clock somewhere between asking and the answer."""

    def __init__(self, keep: int = 50) -> None:
        self._keep = keep
        self._seen: list[tuple[float, float]] = []

    def learn(self, store_now: float, *, asked: float, answered: float) -> tuple[float, float]:
        # Only recent answers: two clocks drift apart by parts per million, and the store's may be set.
        self._seen = [*self._seen[-(self._keep - 1) :], (store_now - answered, store_now - asked)]
        early = max(low for low, _ in self._seen)
        late = min(high for _, high in self._seen)
        if early > late:  # the clocks moved against each other: trust only this answer
            self._seen = self._seen[-1:]
            early, late = self._seen[0]
        return early, late
