"""Wiring: every collaborator built from the settings, and the shutdown that stops them in time.

:func:`build_services` is the composition root (as Uvicorn's ``Config.load()`` builds what its
``Server`` runs): the web app, ``bridge worker``, ``bridge check`` and the benchmarks all get their
store, clients, gateway, limiter and worker from here.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import anyio
import anyio.abc

from bridge import policy
from bridge.ccai.client import CCAIClient
from bridge.ccai.pacing import Pace, RateLimiter
from bridge.chatsync import ChatSync, SyncOptions
from bridge.consent import ConsentCheck
from bridge.crm import CRMGateway, TicketIds
from bridge.mapping import TicketMapper
from bridge.metrics import Metrics
from bridge.overview import read_overview
from bridge.preview import Previewer
from bridge.salesforce import SalesforceGateway, normalize_case_id
from bridge.sending import SendOptions, SendStep
from bridge.settings import Settings
from bridge.store import Store
from bridge.store.database import Database
from bridge.store.opt_outs import OptOuts
from bridge.store.pacing import SharedRateLimiter
from bridge.store.status import StatusBoard
from bridge.worker import Worker, WorkerOptions
from bridge.writeback import Writeback

logger = logging.getLogger(__name__)


@dataclass
class Shutdown:
    """One deadline for everything that happens after SIGTERM.

    Heroku kills a process 30 s after SIGTERM. The moment it arrives the worker stops claiming and
    waiting API requests answer; the web server then waits for open connections and the worker for
    its requests under way, all within ``seconds`` of the signal (at most 25).
    """

    seconds: float
    started: anyio.Event = field(default_factory=anyio.Event)
    _deadline: float | None = None

    def begin(self) -> None:
        if self._deadline is None:
            self._deadline = time.monotonic() + self.seconds
        self.started.set()

    def remaining(self) -> float:
        if self._deadline is None:
            return self.seconds
        return max(0.0, self._deadline - time.monotonic())


@dataclass
class Services:
    """What the doors, the lifespan and the commands use; built from settings or handed in by tests."""

    store: Store
    worker: Worker | None
    webhook_tokens: Sequence[str]
    org_ids: Sequence[str]
    max_body_bytes: int
    ticket_ids: TicketIds = normalize_case_id
    api_keys: Sequence[str] = ()
    shutdown: Shutdown = field(default_factory=lambda: Shutdown(20.0))
    metrics: Metrics = field(default_factory=Metrics)
    metrics_key: str = ""
    run_worker: bool = True
    ccai: CCAIClient | None = None
    gateway: CRMGateway | None = None
    board: StatusBoard | None = None
    max_segments: int = 10
    opt_outs: OptOuts | None = None
    previewer: Previewer | None = None
    session_events_user: str = ""
    session_events_password: str = ""
    dashboard_password: str = ""

    async def aclose(self) -> None:
        if self.ccai is not None:
            await self.ccai.aclose()
        if self.gateway is not None:
            self.gateway.close()
        self.store.close()


def rate_limiter(settings: Settings, db: Database) -> SharedRateLimiter:
    pace = Pace(limit=settings.ccai_rate_limit, share=settings.ccai_rate_share, headroom=settings.ccai_rate_headroom)
    return SharedRateLimiter(db, tenant=settings.ccai_subdomain, pace=pace)


def ccai_client(settings: Settings, limiter: RateLimiter, metrics: Metrics | None = None) -> CCAIClient:
    return CCAIClient(
        metrics=metrics,
        limiter=limiter,
        base_url=settings.ccai_base_url,
        manager_url=settings.ccai_manager_url or None,
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
        writeback=settings.writeback,
        opt_out_field=settings.consent.record_field,
        ca_bundle=settings.salesforce_ca_bundle or None,
    )


def ticket_mapper(settings: Settings) -> TicketMapper:
    return TicketMapper(
        config=settings.mapping,
        outbound_number=settings.ccai_outbound_number,
        chat_type=settings.ccai_chat_type,
        max_segments=settings.message.max_segments,
    )


def consent_check(settings: Settings, opt_outs: OptOuts) -> ConsentCheck:
    return ConsentCheck(opt_outs=opt_outs, block_if_true=settings.consent.block_if_true, rules=settings.window_rules)


def send_limits(settings: Settings) -> policy.Limits:
    """The policy's limits: how long to retry, whether to resend what may have been delivered."""
    return policy.Limits(
        retry_for=settings.ccai_retry_for_seconds,
        resend=settings.bridge_resend_possibly_delivered,
        max_takeovers=settings.bridge_max_takeovers,
        opt_out_phrases=settings.consent.opt_out_phrases,
        settle_seconds=settings.ccai_timeout_seconds,
    )


def send_options(settings: Settings) -> SendOptions:
    return SendOptions(
        batch_size=settings.bridge_batch_size,
        lease_seconds=settings.bridge_lease_seconds,
        loop_guard_seconds=settings.bridge_loop_guard_seconds,
        max_concurrency=settings.ccai_max_concurrency,
        create_task=settings.writeback.create_task,
        ccai_deadline=settings.ccai_timeout_seconds,
    )


def build_worker(
    settings: Settings,
    *,
    store: Store,
    gateway: CRMGateway,
    ccai: CCAIClient,
    metrics: Metrics,
    rng: random.Random | None = None,
) -> Worker:
    """The worker with its steps: sends, then write-backs."""
    board = store.status
    worker = Worker(
        store=store,
        board=board,
        gateway=gateway,
        options=WorkerOptions(
            poll_seconds=settings.bridge_poll_seconds,
            lease_seconds=settings.bridge_lease_seconds,
            retention_seconds=settings.bridge_retention_days * 86400,
            unhealthy_after=settings.bridge_unhealthy_after_seconds,
        ),
    )
    opt_outs = store.opt_outs
    sending = SendStep(
        owner=worker.id,
        holdings=worker.holdings,
        store=store,
        gateway=gateway,
        ccai=ccai,
        mapper=ticket_mapper(settings),
        consent=consent_check(settings, opt_outs),
        opt_outs=opt_outs,
        limits=send_limits(settings),
        options=send_options(settings),
        stopping=lambda: worker.stopping,
        metrics=metrics,
        rng=rng,
    )
    writeback = Writeback(
        owner=worker.id,
        holdings=worker.holdings,
        follows_chats=True,
        metrics=metrics,
        store=store,
        gateway=gateway,
        config=settings.writeback,
        lease_seconds=settings.bridge_lease_seconds,
        retry_for=settings.bridge_writeback_retry_for_seconds,
        rng=rng,
    )
    worker.add_step(sending.run_batch)
    worker.add_step(writeback.run_batch)
    worker.add_step(
        ChatSync(
            owner=worker.id,
            chats=store.chats,
            events=store.session_events,
            board=board,
            ccai=ccai,
            gateway=gateway,
            options=SyncOptions(
                interval=settings.bridge_chat_sync_seconds,
                follow_seconds=settings.bridge_chat_follow_days * 86400,
                no_reply_seconds=settings.bridge_no_reply_hours * 3600,
                lease_seconds=settings.bridge_lease_seconds,
            ),
            metrics=metrics,
            rng=rng,
        ).run_batch
    )
    return worker


def build_services(settings: Settings, *, run_worker: bool | None = None) -> Services:
    """Wire the real collaborators from the settings."""
    metrics = Metrics()
    store = Store.from_url(settings.database_url)
    board = store.status
    ccai = ccai_client(settings, rate_limiter(settings, store.db), metrics)
    gateway = salesforce_gateway(settings, metrics)
    metrics.watch(lambda: read_overview(store))
    opt_outs = store.opt_outs
    previewer = Previewer(
        gateway=gateway,
        mapper=ticket_mapper(settings),
        consent=consent_check(settings, opt_outs),
        rules=settings.window_rules,
        max_segments=settings.message.max_segments,
    )
    return Services(
        store=store,
        worker=build_worker(settings, store=store, gateway=gateway, ccai=ccai, metrics=metrics),
        webhook_tokens=[t.get_secret_value() for t in settings.bridge_webhook_token],
        api_keys=[k.get_secret_value() for k in settings.bridge_api_key],
        shutdown=Shutdown(settings.bridge_shutdown_seconds),
        metrics=metrics,
        metrics_key=settings.bridge_metrics_key.get_secret_value(),
        org_ids=settings.salesforce_org_ids,
        max_body_bytes=settings.bridge_max_body_bytes,
        run_worker=settings.bridge_embedded_worker if run_worker is None else run_worker,
        ccai=ccai,
        gateway=gateway,
        board=board,
        max_segments=settings.message.max_segments,
        opt_outs=opt_outs,
        previewer=previewer,
        session_events_user=settings.bridge_session_events_user,
        session_events_password=settings.bridge_session_events_password.get_secret_value(),
        dashboard_password=settings.bridge_dashboard_password.get_secret_value(),
    )


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


async def drain_worker(worker: Worker, stopped: anyio.Event, shutdown: Shutdown) -> None:
    """Stop the worker and give it what is left of the shutdown deadline to finish its requests.

    A request still unanswered after that is cancelled; its send stays flagged as possibly
    delivered, so whoever takes it up next looks its chat up before sending anything.
    """
    shutdown.begin()
    worker.stop()
    with anyio.move_on_after(shutdown.remaining()):
        await stopped.wait()
    if not stopped.is_set():
        logger.warning("The worker did not finish in time; its unanswered sends will be looked up and retaken")
