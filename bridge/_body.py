"""Reading a request body under the one size cap both doors share."""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request

from bridge.errors import BodyTooLarge, MalformedMessage


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
