"""What a web dyno serves while its settings are incomplete (``bridge serve`` with ``DYNO`` set).

A Heroku deploy starts the web dyno before anyone has set the CRM's or CCAI's credentials. Exiting
would show the deployer Heroku's "Application error" page and a crash loop; instead the dyno
serves one page naming what is missing (names of settings only, never values), ``/readyz`` says
not ready, and every door answers 503 so that the CRM keeps its events and delivers them again
(Salesforce retries an outbound message for 24 hours; Zendesk retries a webhook a few times on a
503 with a short ``Retry-After``).
Nothing is stored and nothing is sent until the settings are complete and the dyno restarts,
which Heroku does by itself when a config var changes.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import jinja2
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from bridge._secrets import basic_credentials, matches_any
from bridge.ops.dashboard import SECURITY_HEADERS, TEMPLATES, USER

logger = logging.getLogger(__name__)


def not_set_up_app(problems: Sequence[str], *, dashboard_password: str) -> Starlette:
    """The app a web dyno serves until ``problems`` (sentences naming settings) are solved. The page
    is behind the dashboard's password when one is set (Heroku's deploy generates one)."""
    templates = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True)
    credentials = f"{USER}:{dashboard_password}"

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})  # the process is up: only readiness is refused

    async def readyz(request: Request) -> Response:
        return JSONResponse({"ready": False, "problems": ["the bridge is not set up: " + " ".join(problems)]}, 503)

    async def page(request: Request) -> Response:
        given = basic_credentials(request.headers.get("authorization", ""))
        if dashboard_password and not matches_any(given, [credentials]):
            return PlainTextResponse(
                "The bridge is not set up yet: sign in as operator to see what is missing.\n",
                status_code=401,
                headers={"WWW-Authenticate": 'Basic realm="bridge dashboard", charset="UTF-8"'},
            )
        body = templates.get_template("not_set_up.html").render(request=request, problems=problems)
        return HTMLResponse(body, status_code=503, headers={**SECURITY_HEADERS, "Retry-After": "30"})

    async def door(request: Request) -> Response:
        # 503, never 401 or 404: the CRM keeps the event and delivers it again once the bridge is set up.
        return PlainTextResponse("The bridge is not set up yet; try again later.\n", 503, {"Retry-After": "30"})

    return Starlette(
        routes=[
            Route("/healthz", healthz, methods=["GET", "HEAD"]),
            Route("/readyz", readyz, methods=["GET", "HEAD"]),
            Route("/", page, methods=["GET", "HEAD"]),
            Route("/dashboard", page, methods=["GET", "HEAD"]),
            Route("/dashboard/{path:path}", page, methods=["GET", "HEAD"]),
            Route("/{path:path}", door, methods=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]),
        ]
    )
