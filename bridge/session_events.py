"""The session-events door: CCAI Platform pushes chat events here ("External Session Events",
Settings > Developer Settings > Session Data Export), so tickets learn of a chat's news sooner than
the next poll.

``POST /ccai/session-events`` with HTTP Basic auth (``BRIDGE_SESSION_EVENTS_USER`` and
``_PASSWORD``, compared in constant time), body ``{"count": n, "events": [{"event_id",
"timestamp", "item": {...}}]}``. Events are stored first (deduplicated on ``event_id``), then
answered 200 at once; the worker applies them (:class:`SessionEventLog`). The door never calls
anything remote, and the poll stays the safety net: an event lost or refused here only delays the
news.

Only what applying needs is stored: the chat state parsed from the event, never the event itself
(it carries the customer's number, and more), and only until it is applied; then just its id stays,
against redelivery. An event about a chat the bridge does not follow waits, applied in vain, for
``UNKNOWN_CHAT_SECONDS``: CCAI can push a chat's first event before its answer to the SMS request
reaches the bridge, and :func:`bridge.chats.follow` then puts it back in the queue.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import anyio.to_thread
from sqlalchemy import Connection, delete, select, update
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from bridge._body import parse_json, read_capped
from bridge._schema import chats, session_events
from bridge._secrets import basic_credentials, matches_any
from bridge.chats import (
    FOLLOW_LOCK,
    UNKNOWN_CHAT_SECONDS,
    ChatState,
    ChatStore,
    apply_each,
    apply_state,
    event_state,
    finite,
    kept_state,
    read_kept_state,
)
from bridge.database import Database
from bridge.errors import (
    AuthenticationFailed,
    InboundError,
    MalformedMessage,
    NotFound,
    StoreRejected,
    UnsupportedMediaType,
)
from bridge.metrics import Metrics
from bridge.text import forbidden_characters

logger = logging.getLogger(__name__)

MAX_EVENTS = 1000

Kept = tuple[str, float, ChatState | None]  # event id, when received, the chat state it tells of


class SessionEventLog:
    """The ``session_events`` table: pushed events kept until they are applied."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def record(self, events: Sequence[tuple[str, float | None, ChatState | None]]) -> int:
        """Keep events (id, CCAI's timestamp, the chat state parsed from the event) until they are
        applied; an event already kept is ignored, one without a state is kept only as its id.
        Returns how many were new."""
        if not events:
            return 0
        with self._db.tx() as connection:
            now = self._db.now(connection)
            new = 0
            for event_id, timestamp, state in events:
                values = {
                    "event_id": event_id,
                    "received_at": now,
                    "timestamp": timestamp if timestamp is not None or state is None else state.updated_at,
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
        return new

    def apply(self, *, limit: int) -> tuple[int, int]:
        """Apply kept events, oldest by CCAI's timestamp first; returns how many were handled and
        how many changed what a ticket shows. One the store refuses is skipped (logged)."""
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
        events = [(str(r[0]), float(r[1]), read_kept_state(str(r[3]), r[2])) for r in rows]
        return len(events), apply_each(self._db, events, _apply, self._skip, lock=FOLLOW_LOCK)

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

    def _skip(self, event: Kept, exc: StoreRejected) -> None:
        event_id, _, state = event
        chat = state.chat_id if state else "unknown"
        logger.warning("Session event %s (chat %s) was refused by the store and skipped: %s", event_id, chat, exc)
        with self._db.tx() as connection:
            connection.execute(
                update(session_events).where(session_events.c.event_id == event_id).values(applied=True, payload="")
            )


def _apply(connection: Connection, event: Kept, now: float) -> int:
    event_id, received_at, state = event
    row = None
    if state is not None:
        row = (
            connection.execute(select(chats).where(chats.c.chat_id == state.chat_id).with_for_update())
            .mappings()
            .first()
        )
    changed = 0 if row is None or state is None else apply_state(connection, row, state, now)
    # Not followed (yet), and recent: its chat may be one whose send is being recorded as sent.
    keep = row is None and state is not None and received_at >= now - UNKNOWN_CHAT_SECONDS
    connection.execute(
        update(session_events)
        .where(session_events.c.event_id == event_id)
        .values(applied=True, payload=session_events.c.payload if keep else "")
    )
    return changed


class SessionEventsEndpoint:
    def __init__(
        self,
        *,
        chats: ChatStore,
        user: str,
        password: str,
        max_body_bytes: int,
        metrics: Metrics,
        wake: Callable[[], None],
    ) -> None:
        self._events = SessionEventLog(chats.db)
        self._credentials = f"{user}:{password}" if user and password else ""
        self._max_body = max_body_bytes
        self._metrics = metrics
        self._wake = wake

    async def endpoint(self, request: Request) -> Response:
        try:
            return await self._handle(request)
        except InboundError as exc:
            self._metrics.refused("session_events", exc.reason)
            raise

    async def _handle(self, request: Request) -> Response:
        if not self._credentials:
            raise NotFound("Session events are not enabled (set BRIDGE_SESSION_EVENTS_USER and _PASSWORD).")
        if not matches_any(basic_credentials(request.headers.get("authorization", "")), [self._credentials]):
            raise AuthenticationFailed("Missing or wrong credentials for session events.")
        if request.headers.get("content-type", "").split(";")[0].strip().lower() != "application/json":
            raise UnsupportedMediaType("Session events must be JSON (Content-Type: application/json).")
        body = parse_json(await read_capped(request, self._max_body))
        events = body.get("events") if isinstance(body, dict) else None
        if not isinstance(events, list) or len(events) > MAX_EVENTS:
            raise MalformedMessage(
                f'The body must be {{"count": n, "events": [...]}} with at most {MAX_EVENTS} events.'
            )
        kept = [
            (str(e["event_id"])[:64], timestamp, event_state(e, timestamp))
            for e in events
            if _usable(e)
            for timestamp in [_timestamp(e.get("timestamp"))]
        ]
        new = await anyio.to_thread.run_sync(self._events.record, kept)
        self._metrics.events_received.labels("session_events").inc(len(kept))
        self._metrics.events_duplicate.labels("session_events").inc(len(kept) - new)
        if new:
            self._wake()
        logger.info("Session events: %d received, %d new, %d unusable", len(events), new, len(events) - len(kept))
        return JSONResponse({"received": len(events), "new": new})


def _usable(event: object) -> bool:
    # An id the store cannot hold (a NUL, a lone surrogate) would fail every event of the request.
    return (
        isinstance(event, dict)
        and bool(event.get("event_id"))
        and not forbidden_characters(str(event["event_id"]))
        and isinstance(event.get("item", event), dict)
    )


def _timestamp(value: object) -> float | None:
    """CCAI sends epoch milliseconds."""
    seconds = finite(value)
    return None if seconds is None else seconds / 1000.0 if seconds > 1e11 else seconds
