"""CRM event streams (the Salesforce Pub/Sub topic): how far each has been read, and which of its
events were seen, written in one transaction with the sends its events became.

That one transaction is the promise: an event is never a send without its position moving past it,
nor past it without being a send. A crash before the commit replays the event (the stream resumes
from the stored position); its id, recorded here, makes the replay a no-op.

Writes can be fenced on the singleton lease of the input that reads the stream: a process that lost
the lease (it froze, and another took over) cannot move the position or add sends.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence

from sqlalchemy import Connection, delete, func, select

from bridge.errors import LeaseLost
from bridge.model import NewSend, StreamCommit, StreamLease
from bridge.store._rows import insert_new
from bridge.store.database import Database
from bridge.store.schema import singletons, stream_events, stream_positions

EVENT_MEMORY_SECONDS = 7 * 86400.0


class Streams:
    """The ``stream_positions`` and ``stream_events`` tables."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def position(self, stream: str) -> bytes | None:
        with self.db.tx() as connection:
            stored = connection.execute(
                select(stream_positions.c.position).where(stream_positions.c.stream == stream)
            ).scalar()
        return base64.b64decode(stored) if stored else None

    def resume(self, stream: str) -> tuple[bytes | None, float]:
        """Where to resume ``stream``: its position (None before its first event) and when it was
        first subscribed to, recorded now if this is the first time."""
        with self.db.tx() as connection:
            now = self.db.now(connection)
            first = self.db.insert(stream_positions).on_conflict_do_nothing(index_elements=["stream"])
            connection.execute(first.values(stream=stream, position=None, started_at=now, updated_at=now))
            row = connection.execute(
                select(stream_positions.c.position, stream_positions.c.started_at).where(
                    stream_positions.c.stream == stream
                )
            ).one()
        return (base64.b64decode(row.position) if row.position else None), float(row.started_at)

    def commit(
        self,
        stream: str,
        events: Sequence[tuple[str, NewSend]],
        position: bytes,
        *,
        lease: StreamLease | None = None,
    ) -> StreamCommit:
        """Record ``events`` (each its id and the send it asks for) and the stream's new position.

        Events whose id was recorded before add nothing; the others' sends are added as the inbox
        adds any (a dedupe key already taken adds nothing either).
        """
        with self.db.tx() as connection:
            now = self.db.now(connection)
            _fence(connection, lease, now)
            # RETURNING, not rowcount: psycopg counts a row that ON CONFLICT DO NOTHING did not insert.
            remember = (
                self.db.insert(stream_events)
                .on_conflict_do_nothing(index_elements=["stream", "event_id"])
                .returning(stream_events.c.event_id)
            )
            fresh: list[NewSend] = []
            for event_id, send in events:
                row = {"stream": stream, "event_id": event_id, "received_at": now}
                if connection.execute(remember.values(**row)).first() is not None:
                    fresh.append(send)
            sends_new = insert_new(self.db, connection, fresh, now)
            self._move(connection, stream, position, now)
        return StreamCommit(events_new=len(fresh), sends_new=sends_new)

    def checkpoint(self, stream: str, position: bytes, *, lease: StreamLease | None = None) -> None:
        """Move the position without events (an idle stream's keepalive named a newer one)."""
        with self.db.tx() as connection:
            now = self.db.now(connection)
            _fence(connection, lease, now)
            self._move(connection, stream, position, now)

    def _move(self, connection: Connection, stream: str, position: bytes, now: float) -> None:
        encoded = base64.b64encode(position).decode()
        upsert = self.db.insert(stream_positions).on_conflict_do_update(
            index_elements=["stream"], set_={"position": encoded, "updated_at": now}
        )
        connection.execute(upsert.values(stream=stream, position=encoded, started_at=now, updated_at=now))

    def events_seen(self, stream: str) -> int:
        """How many of the stream's events are remembered (a week's worth)."""
        with self.db.tx() as connection:
            return int(
                connection.execute(
                    select(func.count()).select_from(stream_events).where(stream_events.c.stream == stream)
                ).scalar_one()
            )

    def purge(self, older_than: float = EVENT_MEMORY_SECONDS) -> int:
        """Forget event ids older than ``older_than`` seconds (no stream replays that far back)."""
        with self.db.tx() as connection:
            now = self.db.now(connection)
            result = connection.execute(delete(stream_events).where(stream_events.c.received_at < now - older_than))
        return int(result.rowcount or 0)


def _fence(connection: Connection, lease: StreamLease | None, now: float) -> None:
    if lease is None:
        return
    # FOR UPDATE: a takeover (which updates this row) waits until this transaction has committed.
    held = connection.execute(
        select(singletons.c.owner)
        .where(singletons.c.name == lease.name, singletons.c.owner == lease.owner, singletons.c.until >= now)
        .with_for_update()
    ).first()
    if held is None:
        raise LeaseLost(f"This process no longer holds {lease.name}: another has taken the stream over.")
