"""Pushing CCAI-style "External Session Events" about the simulated tenant's chats.

Documented (https://docs.cloud.google.com/contact-center/ccai-platform/docs/external-session-events):
the platform POSTs JSON to one HTTPS URL configured under Settings > Developer Settings > Session
Data Export, with HTTP Basic auth from a username and password entered there, whenever a chat or
call changes state (started, routed, assigned, active, ended, disposition). The body is
``{"count": n, "events": [...]}``: ``count`` is the number of events in this payload; each event
has ``event_id`` (a UUID) and ``timestamp`` (epoch milliseconds) and an ``item`` object, the
session, enriched with more data at each update; session times such as ``connected_at`` and
``ends_at`` are ISO 8601; the session state goes ``connected`` → ``disconnected``.

Assumed: ``item`` for a chat is the Manager API chat object plus ``state``; ``type`` is ``"chat"``;
``event`` names the move (``chat_created``, ``chat_<new status>`` or ``chat_updated``); the
timestamp is when the move happened, so a receiver can order events whatever order they arrive
in; any 2xx answer is a delivery; a failed delivery is retried a few times, then dropped.

For tests, a target can ask for disorder: ``shuffle`` delivers the events gathered for one round
in a different order (never the original one when there are two or more; ``hold`` gathers for
longer), ``batch`` caps events per POST (1 makes every event its own request) and ``duplicate``
posts every payload twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from bridge.sandbox.chats import Change

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class EventTarget:
    """Where session events go, with what credentials, and how disorderly their delivery is."""

    url: str
    user: str
    password: str
    shuffle: bool = False
    duplicate: bool = False
    batch: int = 10
    hold: float = 0.0
    retries: int = 3

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> EventTarget:
        """Read a ``session_events`` control value. Raises ``ValueError`` naming the problem."""
        names = sorted(cls.__dataclass_fields__)
        if set(value) - set(names) or not str(value.get("url", "")).startswith(("http://", "https://")):
            raise ValueError(f"session_events needs an http(s) url and may set only {names}.")
        target = cls(**{"user": "", "password": "", **value})
        if target.batch < 1 or target.retries < 0 or target.hold < 0:
            raise ValueError("session_events batch must be at least 1, retries and hold not negative.")
        return target

    def describe(self) -> dict[str, Any]:
        return {"url": self.url, "shuffle": self.shuffle, "duplicate": self.duplicate, "batch": self.batch}


def session_event(change: Change) -> dict[str, Any]:
    state = "disconnected" if change.ended else "connected"
    return {
        "event_id": str(uuid.uuid4()),
        "timestamp": int(change.at * 1000),
        "type": "chat",
        "event": f"chat_{change.event}",
        "item": {**change.chat, "state": state},
    }


class EventPusher:
    """Delivers session events to one target from a background task (:meth:`run`)."""

    def __init__(
        self,
        target: EventTarget,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        rng: random.Random | None = None,
        retry_delay: float = 0.2,
    ) -> None:
        self.target = target
        self.pending: list[dict[str, Any]] = []
        self.delivered: list[dict[str, Any]] = []  # payloads that reached the target, in delivery order
        self.attempts = 0
        self.failed = 0
        self._transport = transport
        self._rng = rng or random.Random()
        self._retry_delay = retry_delay
        self._wake = asyncio.Event()

    def publish(self, changes: list[Change]) -> None:
        self.pending.extend(session_event(c) for c in changes)
        if changes:
            self._wake.set()

    async def run(self, tick: Callable[[], None], *, poll: float = 0.1) -> None:
        """Deliver until cancelled; ``tick`` moves chats along their schedules between rounds."""
        auth = httpx.BasicAuth(self.target.user, self.target.password)
        async with httpx.AsyncClient(transport=self._transport, auth=auth, timeout=5) as client:
            while True:
                tick()
                if not self.pending:
                    self._wake.clear()
                    # A short poll, because scheduled moves happen on the clock, not on a request.
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), poll)
                    continue
                await asyncio.sleep(self.target.hold)
                tick()
                events, self.pending = self._reorder(self.pending), []
                for start in range(0, len(events), self.target.batch):
                    await self._deliver(client, events[start : start + self.target.batch])

    def state(self) -> dict[str, Any]:
        return {
            **self.target.describe(),
            "pending": len(self.pending),
            "delivered": len(self.delivered),
            "attempts": self.attempts,
            "failed": self.failed,
        }

    def _reorder(self, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if not self.target.shuffle or len(events) < 2:
            return events
        shuffled = self._rng.sample(events, len(events))
        return shuffled if shuffled != events else events[::-1]

    async def _deliver(self, client: httpx.AsyncClient, events: list[dict[str, Any]]) -> None:
        payload = {"count": len(events), "events": events}
        for _ in range(2 if self.target.duplicate else 1):
            if not await self._post(client, payload):
                self.failed += 1
                logger.warning("sandbox CCAI: %s session event(s) could not be delivered", len(events))
                return
            self.delivered.append(payload)

    async def _post(self, client: httpx.AsyncClient, payload: dict[str, Any]) -> bool:
        for attempt in range(self.target.retries + 1):
            if attempt:
                await asyncio.sleep(self._retry_delay * attempt)
            self.attempts += 1
            try:
                response = await client.post(self.target.url, json=payload)
            except httpx.HTTPError as exc:
                logger.info("sandbox CCAI: session events POST failed (%s)", type(exc).__name__)
                continue
            if response.is_success:
                return True
            logger.info("sandbox CCAI: session events POST answered HTTP %s", response.status_code)
        return False
