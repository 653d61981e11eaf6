"""What every door shares: the one body cap, the media type, JSON bodies, and counting refusals.

A door (the CRM's push doors, CCAI's session events, the JSON API, the dashboard's forms) reads its
body through :class:`Door`, so an oversized or wrongly typed body is refused the same way
everywhere, before any of it is parsed, and every refusal is counted on ``/metrics`` under the
door's name and the refusal's reason.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Collection
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from bridge.errors import BodyTooLarge, InboundError, MalformedMessage, UnsupportedMediaType
from bridge.metrics import Metrics

Handler = Callable[[Request], Awaitable[Response]]
JSON_REFUSAL = "The body must be JSON (Content-Type: application/json)."


class Door:
    """One door's shared parts. ``name`` labels its refusals (``bridge_refusals{door=...}``)."""

    def __init__(self, *, name: str, metrics: Metrics, max_body_bytes: int) -> None:
        self.name = name
        self._metrics = metrics
        self._max_body = max_body_bytes

    async def counted(self, handler: Handler, request: Request) -> Response:
        """Run ``handler``, counting a refusal (an :class:`InboundError`) under its reason."""
        try:
            return await handler(request)
        except InboundError as exc:
            self.refused(exc.reason)
            raise

    def refused(self, reason: str) -> None:
        self._metrics.refused(self.name, reason)

    async def body(self, request: Request, *, media_types: Collection[str] | None = None, refusal: str = "") -> bytes:
        """The whole body, under the cap; when ``media_types`` are given, only of one of them (else
        415 with ``refusal``, in which ``{given}`` is the media type that came)."""
        if media_types is not None:
            given = media_type(request)
            if given not in media_types:
                raise UnsupportedMediaType(refusal.format(given=given or "no content type"))
        return await read_capped(request, self._max_body)

    async def json_object(self, request: Request, *, refusal: str = JSON_REFUSAL) -> dict[str, Any]:
        """The body as a JSON object (``Content-Type: application/json``)."""
        value = parse_json(await self.body(request, media_types=("application/json",), refusal=refusal))
        if not isinstance(value, dict):
            raise MalformedMessage("The body must be a JSON object.")
        return value


def media_type(request: Request) -> str:
    """The request's media type, without parameters, lower-cased."""
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


def parse_json(body: bytes) -> Any:
    """The body as JSON, or 400: not JSON, or nested past what the parser can follow."""
    try:
        return json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise MalformedMessage("The body is not valid JSON.") from exc


async def read_capped(request: Request, limit: int) -> bytes:
    """The whole body, refused with 413 as soon as it passes ``limit`` bytes (declared or streamed),
    before any of it is parsed."""
    declared = request.headers.get("content-length", "")
    if declared.isascii() and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(f"The body is larger than {limit} bytes.")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(f"The body is larger than {limit} bytes.")
        chunks.append(chunk)
    body = b"".join(chunks)
    if not body:
        raise MalformedMessage("The body is empty.")
    return body


def positive_int(text: str, *, maximum: int) -> int | None:
    """A whole number from 1 to ``maximum`` from a path or a query (an id, a page), or None.
    Only ASCII digits: ``isdigit()`` alone accepts digits ``int()`` refuses, such as a superscript two."""
    if not (text.isascii() and text.isdigit()) or len(text) > len(str(maximum)):
        return None
    number = int(text)
    return number if 0 < number <= maximum else None
