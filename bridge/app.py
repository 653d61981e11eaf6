"""The web application: the outbound-message listener, health, and the embedded worker.

``create_app(settings)`` builds every collaborator from the settings; tests pass their own
``services`` instead. The listener never calls anything remote: it authenticates, parses,
commits to the store and only then acks.
"""

from __future__ import annotations

import contextlib
import logging
import re
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field

import anyio
import anyio.abc
import anyio.to_thread
from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bridge import logs
from bridge._schema import LATEST_VERSION
from bridge._secrets import matches_any
from bridge.api import SendApi
from bridge.ccai import CCAIClient
from bridge.errors import (
    ApiError,
    AuthenticationFailed,
    InboundError,
    MalformedMessage,
    OrganizationNotAllowed,
    StoreUnavailable,
    UnsupportedMediaType,
)
from bridge.mapping import TicketMapper
from bridge.metrics import Metrics
from bridge.model import NewSend
from bridge.ratelimit import SharedRateLimiter
from bridge.record_ids import org_prefix
from bridge.salesforce import SalesforceGateway
from bridge.salesforce_om import ACK, parse_outbound_message
from bridge.settings import Settings
from bridge.store import Store
from bridge.worker import Worker, WorkerOptions
from bridge.writeback import Writeback

logger = logging.getLogger(__name__)

XML_TYPES = ("text/xml", "application/xml", "application/soap+xml")
WORKER_SILENT_SECONDS = 60.0
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class BodyTooLarge(InboundError):
    status = 413


@dataclass
class Services:
    """What the routes and the lifespan use; built from settings or handed in by tests."""

    store: Store
    worker: Worker | None
    webhook_tokens: Sequence[str]
    org_ids: Sequence[str]
    max_body_bytes: int
    api_keys: Sequence[str] = ()
    shutdown_seconds: float = 20.0
    metrics: Metrics = field(default_factory=Metrics)
    metrics_key: str = ""
    run_worker: bool = True
    ccai: CCAIClient | None = None


def ccai_client(settings: Settings, metrics: Metrics | None = None) -> CCAIClient:
    return CCAIClient(
        metrics=metrics,
        base_url=settings.ccai_base_url,
        subdomain=settings.ccai_subdomain,
        api_token=settings.ccai_api_token.get_secret_value(),
        timeout=settings.ccai_timeout_seconds,
    )


def salesforce_gateway(settings: Settings, metrics: Metrics | None = None) -> SalesforceGateway:
    return SalesforceGateway(
        metrics=metrics,
        credentials=settings.salesforce_credentials(),
        api_version=settings.salesforce_api_version,
        timeout=settings.salesforce_timeout_seconds,
        ca_bundle=settings.salesforce_ca_bundle or None,
    )


def build_services(settings: Settings, *, run_worker: bool | None = None) -> Services:
    """Wire the real collaborators from the settings."""
    metrics = Metrics()
    store = Store.from_url(settings.database_url)
    metrics.watch_store(store)
    ccai = ccai_client(settings, metrics)
    gateway = salesforce_gateway(settings, metrics)
    mapper = TicketMapper(
        config=settings.mapping, outbound_number=settings.ccai_outbound_number, chat_type=settings.ccai_chat_type
    )
    writeback = Writeback(
        metrics=metrics,
        store=store,
        gateway=gateway,
        config=settings.writeback,
        lease_seconds=settings.bridge_lease_seconds,
        retry_for=settings.bridge_writeback_retry_for_seconds,
    )
    worker = Worker(
        metrics=metrics,
        store=store,
        gateway=gateway,
        ccai=ccai,
        mapper=mapper,
        limiter=SharedRateLimiter(store, tenant=settings.ccai_subdomain, rate=settings.ccai_rate_limit),
        writeback=writeback,
        options=WorkerOptions(
            batch_size=settings.bridge_batch_size,
            lease_seconds=settings.bridge_lease_seconds,
            poll_seconds=settings.bridge_poll_seconds,
            loop_guard_seconds=settings.bridge_loop_guard_seconds,
            ccai_retry_for=settings.ccai_retry_for_seconds,
            ccai_timeout=settings.ccai_timeout_seconds,
            max_concurrency=settings.ccai_max_concurrency,
            create_task=settings.writeback.create_task,
            retention_seconds=settings.bridge_retention_days * 86400,
        ),
    )
    return Services(
        store=store,
        worker=worker,
        webhook_tokens=[t.get_secret_value() for t in settings.bridge_webhook_token],
        api_keys=[k.get_secret_value() for k in settings.bridge_api_key],
        shutdown_seconds=settings.bridge_shutdown_seconds,
        metrics=metrics,
        metrics_key=settings.bridge_metrics_key.get_secret_value(),
        org_ids=settings.salesforce_org_ids,
        max_body_bytes=settings.bridge_max_body_bytes,
        run_worker=settings.bridge_embedded_worker if run_worker is None else run_worker,
        ccai=ccai,
    )


def create_app(settings: Settings | None = None, *, services: Services | None = None) -> Starlette:
    if services is None:
        if settings is None:
            raise TypeError("create_app needs settings or services")
        services = build_services(settings)
    svc = services

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        await anyio.to_thread.run_sync(svc.store.migrate)
        async with anyio.create_task_group() as group:
            worker = svc.worker if svc.run_worker else None
            if worker is not None:
                stopped = await start_worker(group, worker)
            try:
                yield
            finally:
                if worker is not None:
                    await drain_worker(worker, stopped, svc.shutdown_seconds)
                group.cancel_scope.cancel()
        if svc.ccai is not None:
            await svc.ccai.aclose()
        svc.store.close()

    async def healthz(_request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(_request: Request) -> Response:
        problems = []
        try:
            if await anyio.to_thread.run_sync(svc.store.schema_version) < LATEST_VERSION:
                problems.append("the store's schema is out of date: run `bridge migrate`")
        except StoreUnavailable:
            problems.append("the store is unreachable")
        if svc.run_worker and svc.worker is not None:
            silent = time.monotonic() - svc.worker.alive_at
            if silent > WORKER_SILENT_SECONDS:
                problems.append(f"the embedded worker has shown no sign of life for {silent:.0f} s")
        return JSONResponse({"ready": not problems, "problems": problems}, status_code=503 if problems else 200)

    async def metrics(request: Request) -> Response:
        if svc.metrics_key:
            _, _, given = request.headers.get("authorization", "").partition(" ")
            if not matches_any(given, [svc.metrics_key]):
                svc.metrics.auth_failures.labels("metrics").inc()
                return PlainTextResponse("Missing or wrong metrics key.\n", status_code=401)
        body = await anyio.to_thread.run_sync(svc.metrics.render)
        return Response(body, media_type="text/plain; version=0.0.4; charset=utf-8")

    async def outbound_message(request: Request) -> Response:
        try:
            _authenticate(request.query_params.get("token", ""), svc.webhook_tokens)
        except AuthenticationFailed:
            svc.metrics.auth_failures.labels("outbound_message").inc()
            raise
        media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if media_type not in XML_TYPES:
            raise UnsupportedMediaType(f"Expected an XML body (text/xml), got {media_type or 'no content type'}.")
        body = await _read_capped(request, svc.max_body_bytes)
        org_id, notifications = parse_outbound_message(body)
        if svc.org_ids and org_prefix(org_id) not in {org_prefix(o) for o in svc.org_ids}:
            raise OrganizationNotAllowed(f"Organization {org_id} is not in SALESFORCE_ORG_IDS.")
        new = [
            NewSend(
                dedupe_key=f"om:{org_prefix(n.org_id)}:{n.notification_id}",
                source="outbound_message",
                ticket_id=n.ticket_id,
                org_id=n.org_id,
            )
            for n in notifications
        ]
        stored = await anyio.to_thread.run_sync(svc.store.ingest, new)
        svc.metrics.events_received.labels("outbound_message").inc(len(new))
        svc.metrics.events_duplicate.labels("outbound_message").inc(len(new) - stored)
        logger.info(
            "Outbound message from org %s: %d notification(s), %d new, %d already known",
            org_id,
            len(new),
            stored,
            len(new) - stored,
        )
        if stored and svc.worker is not None:
            svc.worker.wake()
        return Response(ACK, media_type="text/xml", headers={"Content-Type": "text/xml; charset=utf-8"})

    async def inbound_error(_request: Request, exc: Exception) -> Response:
        assert isinstance(exc, InboundError)
        if isinstance(exc, AuthenticationFailed):
            logger.warning("Refused an outbound message: wrong or missing token")
        else:
            logger.warning("Refused an outbound message (%s): %s", exc.status, exc)
        return PlainTextResponse(str(exc) + "\n", status_code=exc.status)

    async def api_error(_request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiError)
        if exc.status >= 500 or exc.status == 401:
            logger.warning("Refused an API request (%s): %s", exc.status, exc)
        return JSONResponse({"error": str(exc)}, status_code=exc.status)

    async def store_unavailable(_request: Request, exc: Exception) -> Response:
        logger.error("Store unavailable, not acknowledging: %s", exc)
        return PlainTextResponse("The bridge cannot store events right now; try again.\n", status_code=503)

    api = SendApi(
        metrics=svc.metrics,
        store=svc.store,
        api_keys=svc.api_keys,
        wake=svc.worker.wake if svc.worker is not None else (lambda: None),
        max_body_bytes=svc.max_body_bytes,
    )
    return Starlette(
        routes=[
            Route("/healthz", healthz),
            Route("/readyz", readyz),
            Route("/metrics", metrics),
            Route("/salesforce/outbound-message", outbound_message, methods=["POST"]),
            Route("/api/v1/sends", api.create, methods=["POST"]),
            Route("/api/v1/sends/{send_id}", api.read, methods=["GET"]),
        ],
        exception_handlers={InboundError: inbound_error, ApiError: api_error, StoreUnavailable: store_unavailable},
        middleware=[Middleware(RequestIdMiddleware)],
        lifespan=lifespan,
    )


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


async def start_worker(group: anyio.abc.TaskGroup, worker: Worker) -> anyio.Event:
    """Run the worker in ``group``; the returned event is set when it has stopped."""
    stopped = anyio.Event()

    async def run() -> None:
        try:
            await worker.run()
        finally:
            stopped.set()

    group.start_soon(run)
    return stopped


async def drain_worker(worker: Worker, stopped: anyio.Event, seconds: float) -> None:
    """Ask the worker to stop and give it ``seconds`` to finish the requests under way.

    A request still unanswered after that is cancelled; its send stays flagged as possibly
    delivered, so whoever takes it up next follows the ambiguous-outcome rule.
    """
    worker.stop()
    with anyio.move_on_after(seconds):
        await stopped.wait()
    if not stopped.is_set():
        logger.warning("The worker did not finish within %.0f s; its unanswered sends will be retaken", seconds)


def _authenticate(given: str, tokens: Sequence[str]) -> None:
    if not matches_any(given, tokens):
        raise AuthenticationFailed("Missing or wrong token in the outbound-message URL.")


async def _read_capped(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
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
