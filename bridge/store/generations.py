"""Noticing a store that went back in time, before anyone is texted from it again.

``synchronous_commit`` makes a commit durable on the server that answered; with asynchronous
replication, a failover to a replica that had not caught up (or a restore from a backup) brings back
an older store. In it, sends that were texted are queued again, and nothing in the store itself says
so. What can tell is a process that lived across the change: each worker counts the decisive writes
it makes (a send cleared to leave), in the store and in its own memory, in the same transaction. A
store whose count for a worker is below what that worker remembers has lost its writes.

The worker that notices raises :class:`~bridge.errors.StoreWentBack`; the send step then treats every
send not yet finished as possibly delivered (looked up in CCAI before anything is sent), records the
event for operators (``bridge status``, ``/readyz``), and counts on from what it remembers. A process
started after the change cannot tell; README: What is guaranteed says which replication settings keep
the store from going back at all.
"""

from __future__ import annotations

import threading
from typing import Any

from sqlalchemy import Connection, delete, select, update

from bridge.errors import StoreWentBack
from bridge.store.database import Database
from bridge.store.schema import generations, workers


class Generations:
    """Each worker's count, as the store holds it and as this process remembers it."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._remembered: dict[str, int] = {}
        self._lock = threading.Lock()

    def check(self, connection: Connection, owner: str) -> int:
        """The store's count for ``owner`` (read in the caller's transaction, and held until it ends);
        raises :class:`StoreWentBack` if it is below what this process counted."""
        # The row first (at 0 when new), so that FOR UPDATE has a row to lock: two of one worker's
        # sends clearing at once both found none and both inserted one, and the second failed on the key.
        connection.execute(
            self._db.insert(generations)
            .values(owner=owner, generation=0, updated_at=0.0)
            .on_conflict_do_nothing(index_elements=["owner"])
        )
        stored = connection.execute(
            select(generations.c.generation).where(generations.c.owner == owner).with_for_update()
        ).scalar()
        stored = int(stored or 0)
        with self._lock:
            remembered = self._remembered.get(owner, 0)
        if stored < remembered:
            raise StoreWentBack(
                f"The store went back in time: it holds {stored} of the {remembered} sends worker {owner} cleared "
                "to leave (a failover to a replica that was behind, or a restore from a backup?)."
            )
        return stored

    def advance(self, connection: Connection, owner: str, *, now: float) -> int:
        """Count one more decisive write by ``owner`` in the caller's transaction; returns the new count,
        which the caller remembers (:meth:`remember`) once that transaction has committed."""
        count = self.check(connection, owner) + 1
        values: dict[str, Any] = {"generation": count, "updated_at": now}
        connection.execute(update(generations).where(generations.c.owner == owner).values(values))
        return count

    def remember(self, owner: str, count: int) -> None:
        with self._lock:
            self._remembered[owner] = max(count, self._remembered.get(owner, 0))

    def restart_from_memory(self, connection: Connection, owner: str, *, now: float) -> None:
        """After the store went back: store what this process remembers, so that it counts on from there."""
        with self._lock:
            remembered = self._remembered.get(owner, 0)
        values = {"generation": remembered, "updated_at": now}
        if not connection.execute(update(generations).where(generations.c.owner == owner).values(values)).rowcount:
            connection.execute(generations.insert().values(owner=owner, **values))

    def forget(self, older_than: float) -> int:
        """Drop the counts of workers that wrote nothing for ``older_than`` seconds and that the status
        board no longer lists (gone long ago); a live worker's count stays, however idle it is."""
        with self._db.tx() as connection:
            cutoff = self._db.now(connection) - older_than
            gone = delete(generations).where(
                generations.c.updated_at < cutoff, generations.c.owner.not_in(select(workers.c.id))
            )
            return int(connection.execute(gone).rowcount)
