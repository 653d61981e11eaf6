"""The session-events door: CCAI Platform pushes chat events here ("External Session Events",
Settings > Developer Settings > Session Data Export), so tickets learn of a chat's news sooner than
the next poll.

``POST /ccai/session-events`` with HTTP Basic auth (``BRIDGE_SESSION_EVENTS_USER`` and
``_PASSWORD``, compared in constant time), body ``{"count": n, "events": [{"event_id",
"timestamp", "item": {...}}]}``. Events are stored first (deduplicated on ``event_id``), then
answered 200 at once; the worker applies them. The door never calls anything remote, and the poll
stays the safety net: an event lost or refused here only delays the news.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable

import anyio.to_thread
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from bridge._body import read_capped
from bridge._secrets import basic_credentials, matches_any
from bridge.chats import ChatStore
from bridge.errors import AuthenticationFailed, InboundError, MalformedMessage, NotFound, UnsupportedMediaType
from bridge.metrics import Metrics

logger = logging.getLogger(__name__)

MAX_EVENTS = 1000


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
        self._chats = chats
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
        try:
            body = json.loads(await read_capped(request, self._max_body))
        except ValueError as exc:
            raise MalformedMessage("The body is not valid JSON.") from exc
        events = body.get("events") if isinstance(body, dict) else None
        if not isinstance(events, list) or len(events) > MAX_EVENTS:
            raise MalformedMessage(
                f'The body must be {{"count": n, "events": [...]}} with at most {MAX_EVENTS} events.'
            )
        kept = [(str(e["event_id"])[:64], _timestamp(e.get("timestamp")), json.dumps(e)) for e in events if _usable(e)]
        new = await anyio.to_thread.run_sync(self._chats.record_events, kept)
        self._metrics.events_received.labels("session_events").inc(len(kept))
        self._metrics.events_duplicate.labels("session_events").inc(len(kept) - new)
        if new:
            self._wake()
        logger.info("Session events: %d received, %d new, %d unusable", len(events), new, len(events) - len(kept))
        return JSONResponse({"received": len(events), "new": new})


def _usable(event: object) -> bool:
    return isinstance(event, dict) and bool(event.get("event_id")) and isinstance(event.get("item", event), dict)


def _timestamp(value: object) -> float | None:
    """CCAI sends epoch milliseconds."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value) / 1000.0 if value > 1e11 else float(value)
    return None
