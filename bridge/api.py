"""The JSON send API for agent buttons, Flow HTTP callouts and Apex.

``POST /api/v1/sends`` queues a send for a Case (optionally waiting for its outcome) and
``GET /api/v1/sends/{id}`` reads one. Callers authenticate with ``Authorization: Bearer <key>``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import uuid
from collections.abc import Sequence
from typing import Any

import anyio.to_thread
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from bridge._secrets import matches_any
from bridge.errors import ApiConflict, ApiDisabled, ApiError, ApiNotFound, ApiUnauthorized
from bridge.metrics import Metrics
from bridge.model import NewSend
from bridge.phones import us_e164
from bridge.record_ids import is_record_id, to18
from bridge.sends import FINAL, public_view, wait_for_outcome
from bridge.store import Store

logger = logging.getLogger(__name__)

MAX_WAIT_SECONDS = 25.0
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]{1,200}$")


class SendRequest(BaseModel):
    """The body of ``POST /api/v1/sends``."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    ticket_id: str
    message: str | None = Field(default=None, min_length=1, max_length=1600)
    agent_email: str | None = Field(default=None, max_length=254)
    agent_id: int | None = Field(default=None, ge=1)
    end_user_number: str | None = None
    outbound_number: str | None = None

    @field_validator("ticket_id")
    @classmethod
    def _case_id(cls, value: str) -> str:
        if not is_record_id(value) or not value.startswith("500"):
            raise ValueError("must be a Case id (15 or 18 letters and digits, starting 500)")
        return to18(value)

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


class SendApi:
    """The API's handlers, built with the store, the keys and a way to wake the worker."""

    def __init__(
        self, *, store: Store, api_keys: Sequence[str], wake: Any, max_body_bytes: int, metrics: Metrics
    ) -> None:
        self._metrics = metrics
        self._store = store
        self._keys = [key for key in api_keys if key]
        self._wake = wake
        self._max_body = max_body_bytes

    def _authenticate(self, request: Request) -> None:
        if not self._keys:
            raise ApiDisabled("The send API is not enabled: set BRIDGE_API_KEY.")
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not matches_any(given.strip(), self._keys):
            self._metrics.auth_failures.labels("api").inc()
            raise ApiUnauthorized("Missing or wrong API key (Authorization: Bearer <key>).")

    async def create(self, request: Request) -> Response:
        self._authenticate(request)
        body = await _json_body(request, self._max_body)
        try:
            send = SendRequest.model_validate(body)
        except ValidationError as exc:
            raise ApiError(_first_problem(exc)) from exc
        wait = _wait_seconds(request)
        key = request.headers.get("idempotency-key")
        if key is not None and not _IDEMPOTENCY_KEY.match(key):
            raise ApiError("Idempotency-Key must be 1 to 200 visible ASCII characters.")
        overrides = send.model_dump(exclude={"ticket_id"}, exclude_none=True)
        fingerprint = hashlib.sha256(json.dumps(send.model_dump(), sort_keys=True).encode()).hexdigest()
        new = NewSend(
            dedupe_key=f"api:{key}" if key else f"api:auto:{uuid.uuid4().hex}",
            source="api",
            ticket_id=send.ticket_id,
            overrides=overrides,
        )
        send_id, stored_hash, created = await anyio.to_thread.run_sync(
            lambda: self._store.create(new, request_hash=fingerprint)
        )
        if not created and stored_hash != fingerprint:
            raise ApiConflict("This Idempotency-Key was already used with a different request body.")
        self._metrics.events_received.labels("api").inc()
        if not created:
            self._metrics.events_duplicate.labels("api").inc()
        if created:
            logger.info("API send %s queued for ticket %s", send_id, send.ticket_id)
            self._wake()
        return await self._answer(send_id, wait)

    async def read(self, request: Request) -> Response:
        self._authenticate(request)
        raw = request.path_params["send_id"]
        row = await anyio.to_thread.run_sync(self._store.get, int(raw)) if raw.isdigit() else None
        if row is None:
            raise ApiNotFound(f"There is no send {raw}.")
        return JSONResponse(public_view(row))

    async def _answer(self, send_id: int, wait: float) -> Response:
        row = await wait_for_outcome(self._store, send_id, timeout=wait)
        # Sent: 200. Final without an SMS (or not knowably one): 422 with the reason. Pending: 202.
        status = 200 if row["status"] == "sent" else 422 if row["status"] in FINAL else 202
        return JSONResponse(public_view(row), status_code=status)


async def _json_body(request: Request, limit: int) -> Any:
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type != "application/json":
        raise ApiError("The body must be JSON (Content-Type: application/json).")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise ApiError(f"The body is larger than {limit} bytes.")
    try:
        value = json.loads(body)
    except ValueError as exc:
        raise ApiError("The body is not valid JSON.") from exc
    if not isinstance(value, dict):
        raise ApiError("The body must be a JSON object.")
    return value


def _wait_seconds(request: Request) -> float:
    raw = request.query_params.get("wait")
    if raw is None:
        return 0.0
    try:
        seconds = float(raw)
    except ValueError:
        raise ApiError("wait must be a number of seconds (at most 25).") from None
    if not 0 <= seconds <= MAX_WAIT_SECONDS:
        raise ApiError("wait must be between 0 and 25 seconds.")
    return seconds


def _first_problem(exc: ValidationError) -> str:
    error = exc.errors()[0]
    field = ".".join(str(part) for part in error["loc"])
    if error["type"] == "extra_forbidden":
        return f"Unknown field {field!r}."
    if error["type"] == "missing":
        return f"{field} is required."
    message = str(error["msg"]).removeprefix("Value error, ").rstrip(".")
    return f"{field}: {message}." if field else f"{message}."
