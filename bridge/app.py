"""The web application: the inbound doors, the dashboard, health, readiness and metrics, and the
embedded worker.

``create_app(settings)`` wires everything through :func:`bridge.services.build_services`; tests
pass their own ``services`` instead. Each door lives in its own module: the CRM's come from its
plugin (``bridge/crm/<name>/``), CCAI's session events from ``bridge/ccai/``, the JSON API from
``bridge/api/``, the dashboard from ``bridge/ops/``. HTTP statuses for refusals are chosen here,
once, from the errors' ``status``.
"""

from __future__ import annotations

import contextlib
import logging
import re
import uuid
from collections.abc import AsyncIterator, Callable

import anyio
import anyio.to_thread
from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bridge import logs
from bridge._secrets import matches_any
from bridge.api.opt_outs import OptOutAPI
from bridge.api.previews import PreviewAPI
from bridge.api.sends import SendAPI
from bridge.api.templates import TemplatesAPI
from bridge.ccai.session_events import SessionEventsEndpoint
from bridge.crm.plugin import DoorContext
from bridge.errors import AuthenticationFailed, InboundError, StoreError, StoreRejected
from bridge.ops.dashboard import Dashboard
from bridge.ops.overview import read_went_back, workers_problem
from bridge.phones import mask_numbers
from bridge.services import Services, build_services, drain_worker, start_worker
from bridge.settings import Settings
from bridge.store.migrations import latest_version

logger = logging.getLogger(__name__)

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def create_app(settings: Settings | None = None, *, services: Services | None = None) -> Starlette:
    if services is None:
        if settings is None:
            raise TypeError("create_app needs settings or services")
        services = build_services(settings)
    probes = Probes(services)
    return Starlette(
        routes=[
            *dashboard_routes(services),
            Route("/healthz", probes.healthz),
            Route("/readyz", probes.readyz),
            Route("/metrics", probes.metrics),
            *door_routes(services),
        ],
        exception_handlers={InboundError: refused, StoreError: store_failed},
        middleware=[Middleware(RequestIdMiddleware)],
        lifespan=_lifespan(services),
    )


def _lifespan(svc: Services) -> Callable[[Starlette], contextlib.AbstractAsyncContextManager[None]]:
    """Migrate the store, run the embedded worker; at shutdown drain it within the deadline, close everything."""
    worker = svc.worker if svc.run_worker else None

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        await anyio.to_thread.run_sync(svc.store.migrate)
        async with anyio.create_task_group() as group:
            if worker is not None:
                stopped = await start_worker(group, worker)
            try:
                yield
            finally:
                if worker is not None:
                    await drain_worker(worker, stopped, svc.shutdown)
                group.cancel_scope.cancel()
        await svc.aclose()

    return lifespan


class Probes:
    """Liveness, readiness and metrics, for the platform's router and for monitoring."""

    def __init__(self, svc: Services) -> None:
        self._svc = svc
        self._worker = svc.worker if svc.run_worker else None

    async def healthz(self, _request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(self, _request: Request) -> Response:
        problems = []
        try:
            if await anyio.to_thread.run_sync(self._svc.store.schema_version) < latest_version():
                problems.append("the store's schema is out of date: run `bridge migrate`")
        except StoreError:
            problems.append("the store is unreachable")
        if (store_problem := self._svc.store.db.problem()) is not None:
            problems.append(store_problem)
        if self._worker is not None and (problem := self._worker.problem()):
            problems.append(problem)
        elif self._worker is None:
            try:
                unhealthy_after = self._svc.unhealthy_after
                workers = await anyio.to_thread.run_sync(
                    lambda: workers_problem(self._svc.store, unhealthy_after=unhealthy_after)
                )
            except StoreError:
                workers = None  # already said: the store is unreachable
            if workers is not None:
                problems.append(workers)
        try:
            went_back = await anyio.to_thread.run_sync(read_went_back, self._svc.store)
        except StoreError:
            went_back = None  # already said: the store is unreachable
        if went_back is not None and (alarm := went_back.alarm()):
            problems.append(alarm)
        return JSONResponse({"ready": not problems, "problems": problems}, status_code=503 if problems else 200)

    async def metrics(self, request: Request) -> Response:
        svc = self._svc
        if svc.doors.metrics_key:
            _, _, given = request.headers.get("authorization", "").partition(" ")
            if not matches_any(given, [svc.doors.metrics_key]):
                svc.metrics.refused("metrics", AuthenticationFailed.reason)  # a door without a body
                return PlainTextResponse("Missing or wrong metrics key.\n", status_code=401)
        body = await anyio.to_thread.run_sync(svc.metrics.render)
        return Response(body, media_type="text/plain; version=0.0.4; charset=utf-8")


def door_routes(svc: Services) -> list[BaseRoute]:
    """The inbound doors, each a module of its own: the CRM's (its plugin's routes), CCAI's session
    events, and the JSON API (sends, previews, opt-outs)."""
    wake = svc.worker.wake if svc.worker is not None else (lambda: None)
    doors = svc.doors
    context = DoorContext(
        inbox=svc.store.sends,
        metrics=svc.metrics,
        wake=wake,
        max_body_bytes=doors.max_body_bytes,
        memory=svc.store.status,
        templates=doors.templates,
    )
    session_events = SessionEventsEndpoint(
        events=svc.store.session_events,
        user=doors.session_events_user,
        password=doors.session_events_password,
        max_body_bytes=doors.max_body_bytes,
        metrics=svc.metrics,
        wake=wake,
    )
    api = SendAPI(
        metrics=svc.metrics,
        store=svc.store,
        api_keys=doors.api_keys,
        ticket_ids=svc.crm.ticket_ids,
        wake=wake,
        max_body_bytes=doors.max_body_bytes,
        shutting_down=svc.shutdown.started,
        max_segments=doors.max_segments,
        templates=doors.templates,
    )
    templates = TemplatesAPI(
        templates=doors.templates, api_keys=doors.api_keys, max_body_bytes=doors.max_body_bytes, metrics=svc.metrics
    )
    previews = PreviewAPI(
        previewer=svc.previewer,
        ticket_ids=svc.crm.ticket_ids,
        words=svc.crm.words,
        api_keys=doors.api_keys,
        max_body_bytes=doors.max_body_bytes,
        metrics=svc.metrics,
    )
    opt_outs = OptOutAPI(
        opt_outs=svc.store.opt_outs, api_keys=doors.api_keys, max_body_bytes=doors.max_body_bytes, metrics=svc.metrics
    )
    return [
        *svc.crm.routes(svc.crm_settings, context),
        Route("/ccai/session-events", session_events.endpoint, methods=["POST"]),
        Route("/api/v1/sends", api.create, methods=["POST"]),
        Route("/api/v1/sends/{send_id}", api.read, methods=["GET"]),
        Route("/api/v1/sends/{send_id}/cancel", api.cancel, methods=["POST"]),
        Route("/api/v1/previews", previews.preview, methods=["POST"]),
        Route("/api/v1/templates", templates.listing, methods=["GET"]),
        Route("/api/v1/opt-outs", opt_outs.add, methods=["POST"]),
        Route("/api/v1/opt-outs", opt_outs.listing, methods=["GET"]),
        Route("/api/v1/opt-outs/{number}", opt_outs.remove, methods=["DELETE"]),
    ]


def dashboard_routes(svc: Services) -> list[BaseRoute]:
    """The operator dashboard, when it has a password; otherwise its paths are 404s like any unknown path."""
    if not svc.doors.dashboard_password:
        return []
    return Dashboard(
        store=svc.store,
        password=svc.doors.dashboard_password,
        metrics=svc.metrics,
        ticket_ids=svc.crm.ticket_ids,
        words=svc.crm.words,
        chat_sync_seconds=svc.doors.chat_sync_seconds,
        ticket_link=lambda ticket_id: svc.crm.ticket_url(svc.crm_settings, ticket_id),
    ).routes()


def _masked_path(request: Request) -> str:
    """The path, for the log: some carry a number (``DELETE /api/v1/opt-outs/{number}``)."""
    return mask_numbers(request.url.path)  # already percent-decoded


def _is_api(request: Request) -> bool:
    return request.url.path.startswith(("/api/", "/ccai/"))


async def refused(request: Request, exc: Exception) -> Response:
    """A refused request: JSON ``{"error": ...}`` at the API, a plain line at the SOAP door."""
    assert isinstance(exc, InboundError)
    if isinstance(exc, AuthenticationFailed):
        logger.warning("Refused a request to %s: wrong or missing credentials", _masked_path(request))
    elif exc.status >= 500 or not _is_api(request):
        logger.warning("Refused a request to %s (%s): %s", _masked_path(request), exc.status, exc)
    if _is_api(request):
        return JSONResponse({"error": str(exc)}, status_code=exc.status)
    return PlainTextResponse(str(exc) + "\n", status_code=exc.status)


async def store_failed(request: Request, exc: Exception) -> Response:
    """Nothing is acknowledged. An outage is a 503 (try again); data the store refuses is a 422
    naming why, since sending it again fails the same way."""
    if isinstance(exc, StoreRejected):
        logger.error("The store refused a request's data, not acknowledging: %s", exc)
        message, status = f"The bridge cannot store this request: {exc}", 422
    else:
        logger.error("Store unavailable, not acknowledging: %s", exc)
        message, status = "The bridge cannot store events right now; try again.", 503
    if _is_api(request):
        return JSONResponse({"error": message}, status_code=status)
    return PlainTextResponse(message + "\n", status_code=status)


class RequestIdMiddleware:
    """Gives each request an id (the caller's X-Request-ID when it is sane) for its log lines."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = Headers(scope=scope).get("x-request-id", "")
        value = given if _REQUEST_ID.match(given) else uuid.uuid4().hex[:16]
        token = logs.request_id.set(value)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), (b"x-request-id", value.encode())]}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            logs.request_id.reset(token)
