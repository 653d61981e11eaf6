"""The session-events door: CCAI Platform pushes chat events here ("External Session Events",
Settings > Developer Settings > Session Data Export), so tickets learn of a chat's news sooner than
the next poll.

``POST /ccai/session-events`` with HTTP Basic auth (``BRIDGE_SESSION_EVENTS_USER`` and
``_PASSWORD``, compared in constant time), body ``{"count": n, "events": [{"event_id",
"timestamp", "item": {...}}]}``. Events are stored first (deduplicated on ``event_id``, see
:mod:`bridge.store.session_events`), then answered 200 at once; the worker applies them. The door
never calls anything remote, and the poll stays the safety net: an event lost or refused here only
delays the news.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import anyio.to_thread
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from bridge._secrets import basic_credentials, matches_any
from bridge.ccai.chats import NewStatusWords, epoch_seconds, event_state
from bridge.errors import AuthenticationFailed, MalformedMessage, NotFound
from bridge.inbound import Door, parse_json
from bridge.metrics import Metrics
from bridge.store.session_events import SessionEvent, SessionEvents
from bridge.text import forbidden_characters

logger = logging.getLogger(__name__)

MAX_EVENTS = 1000


class SessionEventsEndpoint:
    def __init__(
        self,
        *,
        events: SessionEvents,
        user: str,
        password: str,
        max_body_bytes: int,
        metrics: Metrics,
        wake: Callable[[], None],
    ) -> None:
        self._door = Door(name="session_events", metrics=metrics, max_body_bytes=max_body_bytes)
        self._events = events
        self._credentials = f"{user}:{password}" if user and password else ""
        self._metrics = metrics
        self._wake = wake
        self._new_words = NewStatusWords()

    async def endpoint(self, request: Request) -> Response:
        return await self._door.counted(self._handle, request)

    async def _handle(self, request: Request) -> Response:
        if not self._credentials:
            raise NotFound("Session events are not enabled (set BRIDGE_SESSION_EVENTS_USER and _PASSWORD).")
        if not matches_any(basic_credentials(request.headers.get("authorization", "")), [self._credentials]):
            raise AuthenticationFailed("Missing or wrong credentials for session events.")
        body = parse_json(
            await self._door.body(
                request,
                media_types=("application/json",),
                refusal="Session events must be JSON (Content-Type: application/json).",
            )
        )
        events = body.get("events") if isinstance(body, dict) else None
        if not isinstance(events, list) or len(events) > MAX_EVENTS:
            raise MalformedMessage(
                f'The body must be {{"count": n, "events": [...]}} with at most {MAX_EVENTS} events.'
            )
        kept = [
            SessionEvent(str(e["event_id"])[:64], timestamp, event_state(e, timestamp))
            for e in events
            if _usable(e)
            for timestamp in [epoch_seconds(e.get("timestamp"))]  # CCAI sends epoch milliseconds
        ]
        self._new_words.notice(event.state for event in kept)
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
