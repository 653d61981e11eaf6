"""The bridge's opt-out list: numbers that must never be texted, whatever ticket they come from.

Fed by the API (a Flow recording "customer said stop"), operators (``bridge opt-outs``) and CCAI
itself (a send refused because the consumer opted out). Numbers are kept in E.164, so any format of
the same number matches; the list is never purged by the retention period, and removing a number
is always an explicit act.
"""

from __future__ import annotations

import logging

from sqlalchemy import Connection, delete, func, select

from bridge.model import OptOut, OptOutReading
from bridge.phones import mask
from bridge.store.database import Database
from bridge.store.schema import opt_outs

logger = logging.getLogger(__name__)


class OptOuts:
    """Reads and writes the ``opt_outs`` table."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def add(self, number: str, *, source: str, note: str | None = None) -> bool:
        """Record an opt-out; False when the number was already on the list (the first record stays).

        Taken under the number's lock, as a send's departure is (:meth:`bridge.store.sends.Sends.depart`):
        when this returns, no request to the number can still be cleared to leave on an older reading.
        """
        with self._db.tx() as connection:
            lock_number(self._db, connection, number)
            now = self._db.now(connection)
            statement = (
                self._db.insert(opt_outs)
                .values(number=number, source=source[:64], note=note, created_at=now)
                .on_conflict_do_nothing(index_elements=["number"])
                .returning(opt_outs.c.number)
            )
            added = connection.execute(statement).first() is not None
        if added:
            logger.info("Number %s added to the opt-out list (%s)", mask(number), source)
        return added

    def remove(self, number: str, *, by: str) -> bool:
        with self._db.tx() as connection:
            removed = connection.execute(delete(opt_outs).where(opt_outs.c.number == number)).rowcount == 1
        if removed:
            logger.warning("Number %s removed from the opt-out list by %s", mask(number), by)
        return removed

    def get(self, number: str) -> OptOut | None:
        return self.read(number).entry

    def read(self, number: str) -> OptOutReading:
        """The number's entry, if any, and the store's time of the reading (what a check made right
        before a request leaves decides on)."""
        with self._db.tx() as connection:
            now = self._db.now(connection)
            return OptOutReading(entry_of(connection, number), at=now)

    def page(self, *, limit: int = 50, offset: int = 0) -> tuple[list[OptOut], int]:
        """Up to ``limit`` entries, newest first, skipping ``offset``; and the total count. (Paged by
        position, so that no number ever appears in a URL.)"""
        query = select(opt_outs).order_by(opt_outs.c.created_at.desc(), opt_outs.c.number).limit(limit).offset(offset)
        with self._db.tx() as connection:
            rows = connection.execute(query).all()
            total = int(connection.execute(select(func.count()).select_from(opt_outs)).scalar_one())
        return [OptOut(r.number, r.source, r.note, r.created_at) for r in rows], total


def lock_number(db: Database, connection: Connection, number: str) -> None:
    """Serialise, per number, adding it to the list and clearing a request to it to leave."""
    db.lock(connection, f"opt-out:{number}")


def entry_of(connection: Connection, number: str) -> OptOut | None:
    """The number's entry on the list, read in the caller's transaction."""
    row = connection.execute(select(opt_outs).where(opt_outs.c.number == number)).first()
    return OptOut(row.number, row.source, row.note, row.created_at) if row else None
