"""The ingest ceilings, on uvicorn like ``bridge serve``, each answering every POST with the ack.

``app`` (bare) reads the body and does nothing else: what the framework and server allow on this
machine. ``stored_app`` (fair) also makes the one durable commit the bridge must make before it
acks: one insert per request into an SQLite file opened with the bridge's own settings (WAL,
``synchronous=FULL``, ``BEGIN IMMEDIATE``, through its engine), in a worker thread like the bridge's
store calls. The bridge's ingest is compared with both in the same run.
"""

from __future__ import annotations

import os
import uuid

import anyio.to_thread
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bridge.crm.salesforce.outbound_message import ACK
from bridge.store.database import Database

PATH = "/salesforce/outbound-message"


async def ack(request: Request) -> Response:
    await request.body()
    return Response(ACK, media_type="text/xml")


app = Starlette(routes=[Route(PATH, ack, methods=["POST"])])


class _Stored:
    def __init__(self, path: str) -> None:
        self._db = Database.from_url(f"sqlite:///{path}")
        with self._db.tx() as connection:
            connection.exec_driver_sql(
                "CREATE TABLE IF NOT EXISTS acks (id INTEGER PRIMARY KEY, key TEXT UNIQUE NOT NULL, body BLOB)"
            )

    def insert(self, body: bytes) -> None:
        with self._db.tx() as connection:
            connection.exec_driver_sql("INSERT INTO acks (key, body) VALUES (?, ?)", (uuid.uuid4().hex, body))

    async def ack(self, request: Request) -> Response:
        body = await request.body()
        await anyio.to_thread.run_sync(self.insert, body)
        return Response(ACK, media_type="text/xml")


def _stored_app() -> Starlette:
    path = os.environ.get("CEILING_DATABASE")
    if not path:  # imported for the bare ceiling: nothing to open
        return Starlette()
    return Starlette(routes=[Route(PATH, _Stored(path).ack, methods=["POST"])])


stored_app = _stored_app()
