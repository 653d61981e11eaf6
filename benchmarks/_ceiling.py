"""The ingest ceiling: a bare Starlette endpoint on uvicorn that answers every POST with the ack.

It reads the body and does nothing else, so its rate is what the framework and server allow on
this machine; the bridge's ingest is compared with it in the same run.
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bridge.crm.salesforce.outbound_message import ACK


async def ack(request: Request) -> Response:
    await request.body()
    return Response(ACK, media_type="text/xml")


app = Starlette(routes=[Route("/salesforce/outbound-message", ack, methods=["POST"])])
