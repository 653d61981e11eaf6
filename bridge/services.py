"""Wiring: the settings read once, every collaborator built from them, and the shutdown that stops
them in time.

:func:`build_services` is the composition root (as Uvicorn's ``Config.load()`` builds what its
``Server`` runs): the web app, ``bridge worker``, ``bridge check`` and the benchmarks all get their
store, clients, CRM (the plugin ``BRIDGE_CRM`` names), limiter and worker from here.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import anyio
import anyio.abc
from pydantic import ValidationError
from pydantic_settings import BaseSettings, TomlConfigSettingsSource

from bridge import departure, policy
from bridge.ccai.client import CCAIClient
from bridge.ccai.pacing import Pace, RateLimiter
from bridge.chatsync import ChatSync, SyncOptions
from bridge.consent import ConsentCheck
from bridge.crm import CRMS, CRMGateway, Words
from bridge.crm.plugin import CRMPlugin, Input, InputContext, load_plugin
from bridge.errors import ConfigError
from bridge.mapping import TicketMapper
from bridge.message_templates import TemplateBook
from bridge.metrics import Metrics
from bridge.ops.alerts import Alerter, StoreLedger, WebhookSender
from bridge.ops.health import limits_for, read_verdict
from bridge.ops.overview import publish_gauges, read_overview
from bridge.preview import Previewer
from bridge.sending import SendOptions, SendStep
from bridge.settings import CRMSettings, FileBacked, Location, Settings, describe, section_fields, unknown_keys
from bridge.store import Store
from bridge.store.database import Database
from bridge.store.opt_outs import OptOuts
from bridge.store.pacing import SharedRateLimiter
from bridge.worker import StepContext, Worker, WorkerOptions
from bridge.writeback import Writeback, WritebackOptions

logger = logging.getLogger(__name__)

S = TypeVar("S", bound=BaseSettings)


# -- settings -------------------------------------------------------------------------------------


def load_settings(**overrides: Any) -> Settings:
    """The settings from the values given, the environment, ``.env`` and the mapping file, with the
    chosen CRM's own settings in ``crm``.

    ``overrides`` take precedence over the environment (``--sandbox`` and tests use them); they are
    named as the environment names them, lower-cased (``salesforce_instance_url``).
    """
    location = _read(Location, {k: v for k, v in overrides.items() if k in Location.model_fields})
    explicit = "bridge_config" in overrides or location.bridge_config != Location.model_fields["bridge_config"].default
    if explicit and not location.bridge_config.is_file():
        raise ConfigError(f"BRIDGE_CONFIG names {location.bridge_config}, which does not exist.")
    plugin = load_plugin(location.bridge_crm)
    # Unset, the mapping file is the chosen CRM's own (config/zendesk.toml for Zendesk): the core's
    # defaults name Salesforce fields, which another CRM's tickets do not have.
    path = location.bridge_config if explicit else plugin.default_config
    model = plugin.settings_model
    crm = _read(model, {"bridge_config": path, **_crm_overrides(model, overrides)})
    core = {k: v for k, v in overrides.items() if k in Settings.model_fields}
    settings = _read(Settings, {**core, "bridge_config": path, "crm": crm})
    _refuse_unknown_keys(path, [Settings, model])
    return settings


def environment_names() -> set[str]:
    """Every environment variable the bridge reads: the core's and every CRM's (upper-cased)."""
    names = set()
    models: list[type[FileBacked]] = [Settings, *(load_plugin(name).settings_model for name in CRMS)]
    for model in models:
        prefix = str(model.model_config.get("env_prefix") or "")
        for name, info in model.model_fields.items():
            if name in model.not_from_environment or name in section_fields(model):
                continue
            names.add(str(info.validation_alias or prefix + name).upper())
    return names


def _read(model: type[S], values: dict[str, Any]) -> S:
    prefix = str(model.model_config.get("env_prefix") or "")
    try:
        return model(**values)
    except ValidationError as exc:
        tables = set(section_fields(model))
        in_file = all(error["loc"] and str(error["loc"][0]) in tables for error in exc.errors())
        what = f"The mapping file {values.get('bridge_config')}" if in_file else "The configuration"
        raise ConfigError(f"{what} is not valid: {describe(exc, model, prefix=prefix)}") from exc
    except (OSError, ValueError) as exc:  # the mapping file cannot be read, or is not TOML
        raise ConfigError(f"Cannot read the mapping file {values.get('bridge_config')}: {exc}.") from exc


def _crm_overrides(model: type[CRMSettings], overrides: dict[str, Any]) -> dict[str, Any]:
    """The overrides that are the CRM's settings, by its field names (or their aliases)."""
    prefix = str(model.model_config.get("env_prefix") or "").lower()
    aliases = {str(f.validation_alias) for f in model.model_fields.values() if f.validation_alias}
    found = {}
    for key, value in overrides.items():
        if key in aliases:
            found[key] = value
        elif prefix and key.startswith(prefix) and key.removeprefix(prefix) in model.model_fields:
            found[key.removeprefix(prefix)] = value
    return found


def _refuse_unknown_keys(path: Path, models: Sequence[type[FileBacked]]) -> None:
    data = TomlConfigSettingsSource(models[0], toml_file=path).toml_data if path.is_file() else {}
    unknown = unknown_keys(data, models)
    if unknown:
        raise ConfigError(
            f"The mapping file {path} is not valid: "
            + "; ".join(f"{key}: Extra inputs are not permitted" for key in unknown)
            + "."
        )


def problems_for_serving(settings: Settings, *, web: bool = True) -> list[str]:
    """What a real (non-sandbox) deployment still lacks, as sentences; empty when it can start.
    A worker alone (``web=False``) does not need the doors' secrets."""
    required: dict[str, object] = {
        "CCAI_SUBDOMAIN": settings.ccai_subdomain,
        "CCAI_API_TOKEN": settings.ccai_api_token.get_secret_value(),
        "CCAI_BASE_URL (or CCAI_DOMAIN)": settings.ccai_base_url,
        "CCAI_OUTBOUND_NUMBER": settings.ccai_outbound_number,
    }
    missing = [name for name, value in required.items() if not value]
    crm_missing, crm_problems = load_plugin(settings.bridge_crm).problems(settings.crm, web=web)
    missing += crm_missing
    return ([f"these settings are missing: {', '.join(missing)}."] if missing else []) + crm_problems


# -- the collaborators ----------------------------------------------------------------------------


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


@dataclass(frozen=True)
class DoorOptions:
    """The doors' own secrets and limits (their CRM's door reads its secrets from the CRM's settings)."""

    max_body_bytes: int
    api_keys: Sequence[str] = ()
    max_segments: int = 10
    templates: TemplateBook | None = None  # the message templates the API lists and accepts by name
    metrics_key: str = ""
    session_events_user: str = ""
    session_events_password: str = ""
    dashboard_password: str = ""
    chat_sync_seconds: float = 60.0  # the dashboard's verdict: when the chat sync is late


@dataclass
class Services:
    """What the doors, the lifespan and the commands use; built from settings or handed in by tests."""

    store: Store
    worker: Worker | None
    crm: CRMPlugin
    crm_settings: CRMSettings
    doors: DoorOptions
    shutdown: Shutdown = field(default_factory=lambda: Shutdown(20.0))
    metrics: Metrics = field(default_factory=Metrics)
    run_worker: bool = True
    ccai: CCAIClient | None = None
    gateway: CRMGateway | None = None
    previewer: Previewer | None = None
    # /readyz fails when no pass has succeeded for this long (the embedded worker, or all of them).
    unhealthy_after: float = 60.0

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


def ticket_mapper(settings: Settings, words: Words) -> TicketMapper:
    return TicketMapper(
        config=settings.mapping,
        words=words,
        outbound_number=settings.ccai_outbound_number,
        chat_type=settings.ccai_chat_type,
        max_segments=settings.message.max_segments,
        templates=settings.template_book(),
    )


def consent_check(settings: Settings, opt_outs: OptOuts, words: Words) -> ConsentCheck:
    return ConsentCheck(
        opt_outs=opt_outs, block_if_true=settings.consent.block_if_true, rules=settings.window_rules, words=words
    )


def send_limits(settings: Settings) -> policy.Limits:
    """The policy's limits: how long to retry, whether to resend what may have been delivered."""
    return policy.Limits(
        retry_for=settings.ccai_retry_for_seconds,
        resend=settings.bridge_resend_possibly_delivered,
        max_takeovers=settings.bridge_max_takeovers,
        opt_out_phrases=settings.consent.opt_out_phrases,
        settle_seconds=settings.ccai_timeout_seconds,
    )


def send_step(
    settings: Settings, context: StepContext, *, store: Store, gateway: CRMGateway, ccai: CCAIClient
) -> SendStep:
    return SendStep(
        context=context,
        sends=store.sends,
        takeovers=store.takeovers,
        gateway=gateway,
        ccai=ccai,
        mapper=ticket_mapper(settings, context.words),
        consent=consent_check(settings, store.opt_outs, context.words),
        limits=send_limits(settings),
        options=SendOptions(
            batch_size=settings.bridge_batch_size,
            lease_seconds=settings.bridge_lease_seconds,
            loop_guard_seconds=settings.bridge_loop_guard_seconds,
            max_concurrency=settings.ccai_max_concurrency,
            create_task=settings.writeback.create_task,
            chat_type=settings.ccai_chat_type,
            ccai_deadline=settings.ccai_timeout_seconds,
        ),
        evidence=store.lookup_evidence,
    )


def writeback_step(settings: Settings, context: StepContext, *, store: Store, gateway: CRMGateway) -> Writeback:
    options = WritebackOptions(
        config=settings.writeback,
        lease_seconds=settings.bridge_lease_seconds,
        retry_for=settings.bridge_writeback_retry_for_seconds,
        follows_chats=True,
        trigger_field=settings.mapping.template_field,
    )
    return Writeback(context=context, store=store, gateway=gateway, options=options)


def chat_sync(
    settings: Settings, context: StepContext, *, store: Store, gateway: CRMGateway, ccai: CCAIClient
) -> ChatSync:
    options = SyncOptions(
        interval=settings.bridge_chat_sync_seconds,
        follow_seconds=settings.bridge_chat_follow_days * 86400,
        no_reply_seconds=settings.bridge_no_reply_hours * 3600,
        lease_seconds=settings.bridge_lease_seconds,
        opt_out_dispositions=settings.ccai_opt_out_dispositions,
    )
    consent = consent_check(settings, store.opt_outs, context.words)
    return ChatSync(
        context=context,
        chats=store.chats,
        events=store.session_events,
        board=store.status,
        ccai=ccai,
        gateway=gateway,
        options=options,
        opt_out=lambda number, chat_id: consent.record_opt_out(number, reason=chat_id),
        evidence=store.lookup_evidence,
    )


def build_worker(
    settings: Settings,
    *,
    store: Store,
    gateway: CRMGateway,
    ccai: CCAIClient,
    metrics: Metrics,
    words: Words,
    rng: random.Random | None = None,
) -> Worker:
    """The worker with its steps: sends, write-backs, then the chat sync."""
    worker = Worker(
        store=store,
        board=store.status,
        gateway=gateway,
        options=WorkerOptions(
            poll_seconds=settings.bridge_poll_seconds,
            lease_seconds=settings.bridge_lease_seconds,
            retention_seconds=settings.bridge_retention_days * 86400,
            unhealthy_after=settings.bridge_unhealthy_after_seconds,
            gone_settle_seconds=departure.settle_after_takeover(
                lease_seconds=settings.bridge_lease_seconds,
                ccai_deadline=settings.ccai_timeout_seconds,
                holder_alive=False,
            ),
        ),
    )
    context = worker.context(metrics=metrics, words=words, rng=rng)
    worker.add_step(send_step(settings, context, store=store, gateway=gateway, ccai=ccai).run_batch)
    worker.add_step(writeback_step(settings, context, store=store, gateway=gateway).run_batch)
    worker.add_step(chat_sync(settings, context, store=store, gateway=gateway, ccai=ccai).run_batch)
    return worker


def build_services(settings: Settings, *, run_worker: bool | None = None) -> Services:
    """Wire the real collaborators from the settings."""
    crm = load_plugin(settings.bridge_crm)
    metrics = Metrics()
    store = Store.from_url(settings.database_url, timeout=settings.bridge_store_timeout_seconds)
    ccai = ccai_client(settings, rate_limiter(settings, store.db), metrics)
    gateway = crm.gateway(settings.crm, metrics=metrics)
    publish_gauges(metrics, lambda: read_overview(store))
    previewer = Previewer(
        gateway=gateway,
        mapper=ticket_mapper(settings, crm.words),
        consent=consent_check(settings, store.opt_outs, crm.words),
        rules=settings.window_rules,
        max_segments=settings.message.max_segments,
        words=crm.words,
        chats=store.chats,
    )
    worker = build_worker(settings, store=store, gateway=gateway, ccai=ccai, metrics=metrics, words=crm.words)
    context = InputContext(
        inbox=store.sends,
        memory=store.status,
        metrics=metrics,
        wake=worker.wake,
        streams=store.streams,
        owner=worker.id,
    )
    for named in crm.inputs(settings.crm, context):
        worker.add_input(named.name, named.run)
    if (alerting := alert_input(settings, store, crm.words)) is not None:
        worker.add_input("alerts", alerting)
    return Services(
        store=store,
        worker=worker,
        crm=crm,
        crm_settings=settings.crm,
        doors=DoorOptions(
            max_body_bytes=settings.bridge_max_body_bytes,
            api_keys=[k.get_secret_value() for k in settings.bridge_api_key],
            max_segments=settings.message.max_segments,
            templates=settings.template_book(),
            metrics_key=settings.bridge_metrics_key.get_secret_value(),
            session_events_user=settings.bridge_session_events_user,
            session_events_password=settings.bridge_session_events_password.get_secret_value(),
            dashboard_password=settings.bridge_dashboard_password.get_secret_value(),
            chat_sync_seconds=settings.bridge_chat_sync_seconds,
        ),
        shutdown=Shutdown(settings.bridge_shutdown_seconds),
        metrics=metrics,
        run_worker=settings.bridge_embedded_worker if run_worker is None else run_worker,
        ccai=ccai,
        gateway=gateway,
        previewer=previewer,
        unhealthy_after=settings.bridge_unhealthy_after_seconds,
    )


def alert_input(settings: Settings, store: Store, words: Words, *, interval: float = 15.0) -> Input | None:
    """The alert webhook as a long-running input of the worker (one process at a time looks and
    posts; the decision itself is shared through the store), or None without a webhook."""
    url = settings.bridge_alert_webhook_url.get_secret_value()
    if not url:
        return None
    limits = limits_for(settings, words)
    chat_sync = settings.bridge_chat_sync_seconds > 0

    async def run() -> None:
        sender = WebhookSender(url=url, ca_bundle=settings.bridge_alert_ca_bundle or None)
        alerter = Alerter(
            read=lambda: read_verdict(store, limits, chat_sync=chat_sync),
            ledger=StoreLedger(store.status),
            sender=sender,
            name="The CCAI SMS bridge",
        )
        try:
            await alerter.run(interval=interval)
        finally:
            with anyio.CancelScope(shield=True):
                await sender.aclose()

    return run


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
