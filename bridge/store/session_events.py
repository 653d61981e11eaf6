"""Session events CCAI pushed, kept (deduplicated on their id) until the chat sync applies them.

Only what applying needs is stored: the chat state parsed from the event, never the event itself
(it carries the customer's number, and more), and only until it is applied; then just its id stays,
against redelivery. An event about a chat the bridge does not follow waits, applied in vain, for
``UNKNOWN_CHAT_SECONDS``: CCAI can push a chat's first event before its answer to the SMS request
reaches the bridge, and :func:`bridge.store.chats.follow` then puts it back in the queue.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import Connection, delete, select, update

from bridge.ccai.chats import ChatState, loggable
from bridge.errors import StoreRejected
from bridge.store.chat_rows import apply_each, apply_state, current_row, kept_state, read_kept_state
from bridge.store.chats import FOLLOW_LOCK, UNKNOWN_CHAT_SECONDS
from bridge.store.database import Database
from bridge.store.schema import session_events
from bridge.store.wakeups import announce

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SessionEvent:
    """One pushed event as it is kept: its id, CCAI's timestamp, and the chat state it tells of."""

    event_id: str
    timestamp: float | None
    state: ChatState | None


@dataclass(frozen=True)
class _Kept:
    event_id: str
    received_at: float
    state: ChatState | None


class SessionEvents:
    """The ``session_events`` table: pushed events kept until they are applied."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def record(self, events: Sequence[SessionEvent]) -> int:
        """Keep events until they are applied; an event already kept is ignored, one without a
        state is kept only as its id. Returns how many were new."""
        if not events:
            return 0
        with self._db.tx() as connection:
            now = self._db.now(connection)
            new = 0
            for event in events:
                state = event.state
                values = {
                    "event_id": event.event_id,
                    "received_at": now,
                    "timestamp": event.timestamp if event.timestamp is not None or state is None else state.updated_at,
                    "payload": kept_state(state) if state is not None else "",
                    "applied": state is None,
                }
                statement = (
                    self._db.insert(session_events)
                    .values(values)
                    .on_conflict_do_nothing(index_elements=["event_id"])
                    .returning(session_events.c.event_id)
                )
                new += connection.execute(statement).first() is not None
            if new:
                announce(self._db, connection)  # the chat sync applies them at once
        return new

    def apply(self, *, limit: int, seen: list[ChatState] | None = None) -> tuple[int, int]:
        """Apply kept events, oldest by CCAI's timestamp first; returns how many were handled and
        how many changed what a ticket shows. One the store refuses is skipped (logged). ``seen``
        gets the states of those about a chat the bridge follows (older ones too)."""
        with self._db.tx() as connection:
            rows = connection.execute(
                select(
                    session_events.c.event_id,
                    session_events.c.received_at,
                    session_events.c.timestamp,
                    session_events.c.payload,
                )
                .where(session_events.c.applied.is_(False))
                .order_by(session_events.c.timestamp, session_events.c.received_at)
                .limit(limit)
            ).all()
        events = [_Kept(str(r[0]), float(r[1]), read_kept_state(str(r[3]), r[2])) for r in rows]
        found: list[ChatState] = []

        def step(connection: Connection, event: _Kept, now: float) -> int:
            return _apply(connection, event, now, found)

        changed = apply_each(self._db, events, step, self._skip, lock=FOLLOW_LOCK)
        if seen is not None:
            seen.extend({id(state): state for state in found}.values())  # a retried batch finds them twice
        return len(events), changed

    def forget(self, *, forget_before: float) -> None:
        """Drop applied events received more than ``forget_before`` seconds ago (the poll has long
        since covered them; their ids only guard against redelivery), and the states kept for
        chats nobody started following in time."""
        with self._db.tx() as connection:
            now = self._db.now(connection)
            connection.execute(
                delete(session_events).where(
                    session_events.c.applied.is_(True), session_events.c.received_at < now - forget_before
                )
            )
            connection.execute(
                update(session_events)
                .where(
                    session_events.c.applied.is_(True),
                    session_events.c.payload != "",
                    session_events.c.received_at < now - UNKNOWN_CHAT_SECONDS,
                )
                .values(payload="")
            )

    def _skip(self, event: _Kept, exc: StoreRejected) -> None:
        event_id, state = event.event_id, event.state
        chat = loggable(state.chat_id) if state else "unknown"
        logger.warning(
            "Session event %s (chat %s) was refused by the store and skipped: %s",
            loggable(event_id),
            chat,
            loggable(exc),
        )
        with self._db.tx() as connection:
            connection.execute(
                update(session_events).where(session_events.c.event_id == event_id).values(applied=True, payload="")
            )


def _apply(connection: Connection, event: _Kept, now: float, found: list[ChatState]) -> int:
    event_id, received_at, state = event.event_id, event.received_at, event.state
    row = None
    if state is not None:
        row = current_row(connection, state.chat_id)
    changed = 0 if row is None or state is None else apply_state(connection, row, state, now, pushed=True)
    if row is not None and state is not None:
        found.append(state)
    # Not followed (yet), and recent: its chat may be one whose send is being recorded as sent.
    keep = row is None and state is not None and received_at >= now - UNKNOWN_CHAT_SECONDS
    connection.execute(
        update(session_events)
        .where(session_events.c.event_id == event_id)
        .values(applied=True, payload=session_events.c.payload if keep else "")
    )
    return changed
