"""Answers that go wrong on the wire, for the simulated CCAI's fault steps."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import httpx
from starlette.responses import HTMLResponse, Response, StreamingResponse
from starlette.types import Receive, Scope, Send

_GATEWAY_TITLES = {502: "502 Bad Gateway", 503: "503 Service Temporarily Unavailable", 504: "504 Gateway Time-out"}


class ConnectionCut(httpx.RemoteProtocolError):
    """Raised by :class:`CutResponse`; in-process clients (``httpx.ASGITransport``) see it as is."""


class CutResponse(Response):
    """Promise a body, then end the exchange without sending it.

    Over a real server, uvicorn closes the connection when the application fails after starting
    its response, so the client sees a dropped connection (httpx's ``RemoteProtocolError``), not an
    HTTP error status. In-process, the raised :class:`ConnectionCut` is the same kind of error.
    """

    def __init__(self, promised: int) -> None:
        super().__init__(status_code=200, media_type="application/json", headers={"Content-Length": str(promised)})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        raise ConnectionCut("The simulated CCAI cut the connection after creating the chat.")


class QuietCuts(logging.Filter):
    """Keeps uvicorn from logging a traceback for every connection a fault step cuts on purpose."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], ConnectionCut))


def gateway_page(status: int) -> Response:
    """What a load balancer answers for a backend it gave up on: HTML, not the API's JSON."""
    title = _GATEWAY_TITLES.get(status, f"{status} Error")
    page = f"<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n<center><h1>{title}</h1></center>\r\n"
    page += "</body>\r\n</html>\r\n"
    return HTMLResponse(page, status_code=status)


def trickle(content: Any, *, interval: float, chunk: int) -> Response:
    """A 200 whose JSON body arrives ``chunk`` bytes every ``interval`` seconds.

    Each read gets data well within any per-read timeout, while the whole answer takes as long
    as the body is long: a deadline on the whole request is the only thing that stops it.
    """
    body = json.dumps(content).encode()

    async def pieces() -> AsyncIterator[bytes]:
        for start in range(0, len(body), chunk):
            if start:
                await asyncio.sleep(interval)
            yield body[start : start + chunk]

    return StreamingResponse(pieces(), media_type="application/json", headers={"Content-Length": str(len(body))})
