"""Pushing CCAI-style "External Session Events" about the simulated tenant's chats.

Documented (https://docs.cloud.google.com/contact-center/ccai-platform/docs/external-session-events):
the platform POSTs JSON to one HTTPS URL configured under Settings > Developer Settings > Session
Data Export, with HTTP Basic auth from a username and password entered there, whenever a chat or
call changes state (started, routed, assigned, active, ended, disposition). The body is
``{"count": n, "events": [...]}``: ``count`` is the number of events in this payload; each event
has ``event_id`` (a UUID) and ``timestamp`` (epoch milliseconds) and an ``item`` object, the
session, enriched with more data at each update; session times such as ``connected_at`` and
``ends_at`` are ISO 8601; the session state goes ``connected`` → ``disconnected``.

Documented too (the page's state progression table): the ``item`` is enriched at each update:
start (end user ``connected``, with the customer's ``dn``), routed (``queue_path_names``,
``initiator``), assigned (agent ``accepted``, with the live agent's name and id), active (agent
``connected``), ended (state ``disconnected``, both participants ``disconnected``, ``ends_at``
filled), final (agent ``dispositionSubmitted``, with ``dispositions {code, custom_code_id,
note}``). The Manager API's names (``status``, ``agent_info``, ``fail_reason``) are not sent.

Assumed: the item's chat id is ``id``; participants are spelled as the Manager API's are in the SMS
page's examples (``type``, ``status``) plus ``name``/``id`` for the agent and ``dn`` for the
customer; a failed chat's reason rides on the customer's participant (``fail_reason``, as there);
the wrap-up comes one second after the end, with the target's ``disposition`` code (default
``resolved``) and the chat's sub-status as its note; the timestamp is when the move happened, so a
receiver can order events whatever order they arrive in; any 2xx answer is a delivery; a failed
delivery is retried a few times, then dropped.

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
    disposition: str = "resolved"  # the wrap-up code agents submit (try an opt-out code by hand)

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
        return {
            "url": self.url,
            "shuffle": self.shuffle,
            "duplicate": self.duplicate,
            "batch": self.batch,
            "disposition": self.disposition,
        }


def session_events(change: Change, *, disposition: str = "resolved") -> list[dict[str, Any]]:
    """The documented events that tell of one move of a chat: one, or at its end two (ended, then
    the agent's wrap-up) when an agent had it."""
    chat, ended = change.chat, change.ended
    agent = chat.get("agent_info") if isinstance(chat.get("agent_info"), Mapping) else None
    customer: dict[str, Any] = {
        "type": "end_user",
        "status": "disconnected" if ended else "connected",
        "dn": change.end_user_number,
    }
    if chat.get("fail_reason"):
        customer["fail_reason"] = chat["fail_reason"]
    participants = [customer]
    if agent is not None:
        status = "disconnected" if ended else ("accepted" if change.event in ("assigned", "created") else "connected")
        participants.append({"type": "agent", "status": status, "id": agent.get("id"), "name": _name(agent)})
    item: dict[str, Any] = {
        "id": chat["id"],
        "state": "disconnected" if ended else "connected",
        "connected_at": chat.get("created_at"),
        "ends_at": chat.get("ends_at") if ended else None,
        "initiator": f"agent_{agent.get('id')}" if agent is not None else "virtual_agent_1",
        "queue_path_names": ["SMS"],
        "participants": participants,
    }
    events = [_event(change.at, item)]
    if ended and agent is not None:
        wrap_up = {**participants[-1], "status": "dispositionSubmitted"}
        note = chat.get("sub_status")
        final = {
            **item,
            "participants": [customer, wrap_up],
            "dispositions": {"code": disposition, "custom_code_id": None, "note": note},
        }
        events.append(_event(change.at + 1, final))
    return events


def _event(at: float, item: dict[str, Any]) -> dict[str, Any]:
    return {"event_id": str(uuid.uuid4()), "timestamp": int(at * 1000), "item": item}


def _name(agent: Mapping[str, Any]) -> str | None:
    name = agent.get("name") or " ".join(str(agent.get(k) or "") for k in ("first_name", "last_name")).strip()
    return str(name or agent.get("email") or "") or None


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
        self.pending.extend(e for c in changes for e in session_events(c, disposition=self.target.disposition))
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
