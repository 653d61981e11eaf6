"""The opt-out list on the JSON door, so that a Flow can record "the customer said stop".

``POST /api/v1/opt-outs`` ``{"number", "source", "note"}`` adds a number (201; 200 when it was
already there), ``DELETE /api/v1/opt-outs/{number}`` removes one, ``GET /api/v1/opt-outs`` lists
them with masked numbers, a page at a time. Numbers may be given in any common format.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import anyio.to_thread
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from bridge.api._door import ApiDoor, first_problem
from bridge.errors import MalformedMessage, NotFound
from bridge.inbound import positive_int
from bridge.metrics import Metrics
from bridge.model import OptOut
from bridge.phones import us_e164
from bridge.store.opt_outs import OptOuts
from bridge.text import forbidden_characters
from bridge.times import iso

logger = logging.getLogger(__name__)

MAX_PAGE = 200


class OptOutRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    number: str
    source: str = Field(default="api", min_length=1, max_length=64)
    note: str | None = Field(default=None, max_length=500)

    @field_validator("number")
    @classmethod
    def _number(cls, value: str) -> str:
        return us_e164(value, label="The number")

    @field_validator("source", "note")
    @classmethod
    def _printable(cls, value: str | None) -> str | None:
        bad = forbidden_characters(value) if value is not None else []
        if bad:
            raise ValueError(f"contains characters that cannot be stored: {', '.join(bad)}")
        return value


def view(entry: OptOut) -> dict[str, object]:
    return {"number": entry.masked, "source": entry.source, "note": entry.note, "since": iso(entry.created_at)}


class OptOutAPI:
    def __init__(self, *, opt_outs: OptOuts, api_keys: Sequence[str], max_body_bytes: int, metrics: Metrics) -> None:
        self._door = ApiDoor(api_keys=api_keys, max_body_bytes=max_body_bytes, metrics=metrics)
        self._list = opt_outs

    async def add(self, request: Request) -> Response:
        return await self._door.handle(self._add, request)

    async def remove(self, request: Request) -> Response:
        return await self._door.handle(self._remove, request)

    async def listing(self, request: Request) -> Response:
        return await self._door.handle(self._listing, request)

    async def _add(self, request: Request) -> Response:
        try:
            entry = OptOutRequest.model_validate(await self._door.json_object(request))
        except ValidationError as exc:
            raise MalformedMessage(first_problem(exc)) from exc
        added = await anyio.to_thread.run_sync(
            lambda: self._list.add(entry.number, source=entry.source, note=entry.note)
        )
        stored = await anyio.to_thread.run_sync(self._list.get, entry.number)
        assert stored is not None
        return JSONResponse(view(stored), status_code=201 if added else 200)

    async def _remove(self, request: Request) -> Response:
        number = _number(request.path_params["number"])
        by = f"the API (request {request.headers.get('x-request-id', 'without id')})"
        if not await anyio.to_thread.run_sync(lambda: self._list.remove(number, by=by)):
            raise NotFound("That number is not on the opt-out list.")
        return JSONResponse({"removed": True})

    async def _listing(self, request: Request) -> Response:
        page = _positive(request.query_params.get("page", "1"), "page")
        per = min(MAX_PAGE, _positive(request.query_params.get("per", "50"), "per"))
        entries, total = await anyio.to_thread.run_sync(lambda: self._list.page(limit=per, offset=(page - 1) * per))
        return JSONResponse(
            {"opt_outs": [view(e) for e in entries], "page": page, "per": per, "total": total},
        )


def _number(raw: str) -> str:
    try:
        return us_e164(raw, label="The number")
    except ValueError as exc:
        raise MalformedMessage(str(exc)) from exc


def _positive(raw: str, name: str) -> int:
    number = positive_int(raw, maximum=10**6 - 1)
    if number is None:
        raise MalformedMessage(f"{name} must be a whole number from 1.")
    return number
