"""``POST /api/v1/sends`` queues a send for a ticket (optionally waiting for its outcome) and
``GET /api/v1/sends/{id}`` reads one, as :func:`public_view` shows a send: no full number, no text.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any, Literal

import anyio
import anyio.to_thread
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from bridge.api._door import ApiDoor, first_problem, ticket_id
from bridge.crm import TicketIds
from bridge.errors import Conflict, MalformedMessage, NotFound, StoreRejected, StoreUnavailable, Unprocessable
from bridge.inbound import positive_int
from bridge.logs import request_id
from bridge.message_templates import TemplateBook
from bridge.metrics import Metrics
from bridge.model import MAX_SEND_ID, NewSend, Overrides, SendRecord
from bridge.phones import mask, us_e164
from bridge.segments import count_segments, over_limit
from bridge.store import Store
from bridge.text import forbidden_characters, sanitize
from bridge.times import iso

logger = logging.getLogger(__name__)

MAX_WAIT_SECONDS = 25.0
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]{1,200}$")


class SendRequest(BaseModel):
    """The body of ``POST /api/v1/sends``. Validate with ``context={"ticket_ids": ...}``."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    ticket_id: str
    # Its length is limited in SMS segments, the one limit every message source shares (see SendAPI).
    message: str | None = Field(default=None, min_length=1)
    agent_email: str | None = Field(default=None, max_length=254)
    agent_id: int | None = Field(default=None, ge=1, le=2**31 - 1)
    end_user_number: str | None = None
    outbound_number: str | None = None
    # "ignore": an agent answering a customer who just wrote may text outside the send window.
    send_window: Literal["ignore"] | None = None
    # A message template by name ([templates.<name>]): rendered for the ticket, or, with "message",
    # the template the person's text was written from (recorded with the send).
    template: str | None = Field(default=None, min_length=1, max_length=40)

    @field_validator("ticket_id")
    @classmethod
    def _ticket_id(cls, value: str, info: ValidationInfo) -> str:
        return ticket_id(value, info.context)

    @field_validator("message", "agent_email")
    @classmethod
    def _no_control_characters(cls, value: str | None) -> str | None:
        bad = forbidden_characters(value) if value is not None else []
        if bad:
            raise ValueError(f"contains characters that cannot be texted or stored: {', '.join(bad)}")
        return value

    @field_validator("agent_email")
    @classmethod
    def _email(cls, value: str | None) -> str | None:
        if value is not None and not _EMAIL.match(value):
            raise ValueError("must be an email address")
        return value

    @field_validator("end_user_number", "outbound_number")
    @classmethod
    def _us_number(cls, value: str | None) -> str | None:
        return None if value is None else us_e164(value, label="The number")

    @model_validator(mode="after")
    def _one_agent(self) -> SendRequest:
        if self.agent_email is not None and self.agent_id is not None:
            raise ValueError("give agent_email or agent_id, not both")
        return self


def public_view(send: SendRecord) -> dict[str, Any]:
    """What the API and ``bridge sends show`` reveal: no full number, no message text."""
    return {
        "id": send.id,
        "status": send.status,
        "ticket_id": send.ticket_id,
        "ticket_number": send.ticket_number,
        "source": send.source,
        "attempts": send.attempts,
        "reached_customer": send.reached,
        "may_have_sent": send.may_have_sent,
        "chat_id": send.chat_id,
        "error": send.reason if send.status != "sent" else None,
        "end_user_number": send.end_user_hint,
        "write_back": send.write_back_state,
        "write_back_error": send.writeback_error,
        "created_at": iso(send.created_at),
        "first_attempt_at": iso(send.first_attempt_at),
        "finished_at": iso(send.finished_at),
        "next_attempt_at": iso(send.not_before) if send.status == "queued" else None,
        "scheduled_for": iso(send.not_before) if send.status == "scheduled" else None,
        "segments": send.segments,
        "template": send.template or send.overrides.template,
        "template_version": send.template_version,
        "chat_status": send.chat_status,
        "chat_synced_at": iso(send.chat_synced_at),
        "send_window": "ignored" if send.overrides.window_ignored else None,
    }


def http_status(send: SendRecord) -> int:
    """Sent: 200. Final without an SMS (or not knowably one): 422 with the reason. Pending: 202."""
    if send.status == "sent":
        return 200
    return 422 if send.final else 202


async def wait_for_outcome(
    store: Store, send_id: int, *, timeout: float, poll: float = 0.05, stop: anyio.Event | None = None
) -> SendRecord:
    """Poll the store until the send is final, ``timeout`` passes or ``stop`` is set (a shutting
    down server answers at once rather than hold its connection); return the latest record.

    The first looks come sooner (10, 20, 40 ms, then every ``poll``): a send a worker starts at once
    is often done within a few tens of milliseconds, and the agent waiting should not wait for the
    poll on top of it."""
    deadline = time.monotonic() + timeout
    interval = min(0.01, poll)
    while True:
        send = await anyio.to_thread.run_sync(store.history.get, send_id)
        assert send is not None
        if send.final or time.monotonic() >= deadline or (stop is not None and stop.is_set()):
            return send
        await anyio.sleep(min(interval, max(0.0, deadline - time.monotonic())))
        interval = min(poll, interval * 2)


class SendAPI:
    """``POST /api/v1/sends`` and ``GET /api/v1/sends/{id}``."""

    def __init__(
        self,
        *,
        store: Store,
        api_keys: Sequence[str],
        ticket_ids: TicketIds,
        wake: Callable[[], None],
        max_body_bytes: int,
        metrics: Metrics,
        shutting_down: anyio.Event,
        max_segments: int = 10,
        templates: TemplateBook | None = None,
    ) -> None:
        self._door = ApiDoor(api_keys=api_keys, max_body_bytes=max_body_bytes, metrics=metrics)
        self._templates = templates
        self._metrics = metrics
        self._max_segments = max_segments
        self._store = store
        self._ticket_ids = ticket_ids
        self._wake = wake
        self._shutting_down = shutting_down

    async def create(self, request: Request) -> Response:
        return await self._door.handle(self._create, request)

    async def read(self, request: Request) -> Response:
        return await self._door.handle(self._read, request)

    async def cancel(self, request: Request) -> Response:
        return await self._door.handle(self._cancel, request)

    async def _create(self, request: Request) -> Response:
        body = await self._door.json_object(request)
        try:
            send = SendRequest.model_validate(body, context={"ticket_ids": self._ticket_ids})
        except ValidationError as exc:
            raise MalformedMessage(first_problem(exc)) from exc
        if send.message is not None:
            too_long = over_limit(count_segments(sanitize(send.message)), limit=self._max_segments)
            if too_long:
                raise Unprocessable(f"message: {too_long}")
        if send.template is not None and self._templates is not None and self._templates.get(send.template) is None:
            known = ", ".join(template.name for template in self._templates)
            raise Unprocessable(
                f"template: there is no message template {send.template!r} (the templates are {known})."
            )
        wait = _wait_seconds(request)
        key = request.headers.get("idempotency-key")
        if key is not None and not _IDEMPOTENCY_KEY.match(key):
            raise MalformedMessage("Idempotency-Key must be 1 to 200 visible ASCII characters.")
        overrides = Overrides(**send.model_dump(exclude={"ticket_id"}, exclude_none=True))
        fingerprint = _fingerprint(send)
        new = NewSend(
            dedupe_key=f"api:{key}" if key else f"api:auto:{uuid.uuid4().hex}",
            source="api",
            origin="person",
            ticket_id=send.ticket_id,
            overrides=overrides,
        )
        try:
            created = await anyio.to_thread.run_sync(lambda: self._store.sends.create(new, request_hash=fingerprint))
        except StoreRejected as exc:
            raise Unprocessable(f"The request could not be stored: {exc}") from exc
        if not created.created and created.request_hash != fingerprint:
            raise Conflict("This Idempotency-Key was already used with a different request body.")
        self._metrics.events_received.labels("api").inc()
        if created.created:
            logger.info("API send %s queued for ticket %s", created.id, send.ticket_id)
            self._wake()
        else:
            self._metrics.events_duplicate.labels("api").inc()
        try:
            record = await wait_for_outcome(self._store, created.id, timeout=wait, stop=self._shutting_down)
        except StoreUnavailable:
            # Stored and acknowledged: "try again" (503) would make a caller without an Idempotency-Key
            # create a second send. It can read this one by its id once the store is back.
            logger.warning("API send %s is stored, but the store went away before its state could be read", created.id)
            queued = {"id": created.id, "status": "queued", "ticket_id": send.ticket_id, "source": "api"}
            return JSONResponse(queued, status_code=202)
        return JSONResponse(public_view(record), status_code=http_status(record))

    async def _read(self, request: Request) -> Response:
        raw = request.path_params["send_id"]
        # Ids are positive 32-bit integers: anything else cannot name a send (and must not reach the database).
        send_id = positive_int(raw, maximum=MAX_SEND_ID)
        found = await anyio.to_thread.run_sync(self._store.history.get, send_id) if send_id is not None else None
        if found is None:
            raise NotFound(f"There is no send {raw[:40]}.")
        return JSONResponse(public_view(found))

    async def _cancel(self, request: Request) -> Response:
        """Cancel a waiting send: 200 with it (now skipped), 404, or 409 with why it cannot be."""
        raw = request.path_params["send_id"]
        send_id = positive_int(raw, maximum=MAX_SEND_ID)
        if send_id is None:
            raise NotFound(f"There is no send {raw[:40]}.")
        who = f"a send API caller (request {request_id.get() or 'unknown'})"
        canceled = await anyio.to_thread.run_sync(lambda: self._store.sends.cancel(send_id, by=who))
        found = await anyio.to_thread.run_sync(self._store.history.get, send_id)
        if found is None:
            raise NotFound(f"There is no send {raw[:40]}.")
        if not canceled:
            raise Conflict(f"Send {send_id} is {found.status} and cannot be canceled: {cancel_refusal(found)}")
        logger.info("Send %s canceled by %s", send_id, who)
        return JSONResponse(public_view(found))


def cancel_refusal(send: SendRecord) -> str:
    """Why a send cannot be canceled (any surface words the rest)."""
    if send.final:
        return "it has finished."
    if send.may_have_sent:
        return "an earlier attempt's answer was lost, so it may already have reached the customer; it is being settled."
    return "a worker is sending it right now."


def _fingerprint(send: SendRequest) -> str:
    """What tells a reused Idempotency-Key with a different body. It is stored as long as the send,
    so a number in it is reduced to what the send record shows anyway (its last digits): a hash of
    the full number would give it back by brute force over every US number."""
    body = send.model_dump()
    if body.get("end_user_number"):
        body["end_user_number"] = mask(body["end_user_number"])
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def _wait_seconds(request: Request) -> float:
    raw = request.query_params.get("wait")
    if raw is None:
        return 0.0
    try:
        seconds = float(raw)
    except ValueError:
        raise MalformedMessage("wait must be a number of seconds (at most 25).") from None
    if not 0 <= seconds <= MAX_WAIT_SECONDS:
        raise MalformedMessage("wait must be between 0 and 25 seconds.")
    return seconds
