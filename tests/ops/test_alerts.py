"""The alert webhook against a real HTTPS receiver on 127.0.0.1 (the simulated Slack incoming webhook,
TLS with a test CA): what it posts, that it posts once, and how it rides out a receiver that fails."""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import anyio
import httpx
import pytest
import uvicorn
from pydantic import SecretStr

from bridge.crm.salesforce import SalesforcePlugin
from bridge.errors import ConfigError
from bridge.ops.alert_state import Alert, AlertPolicy, AlertState
from bridge.ops.alerts import Alerter, AlertLedger, MemoryLedger, StoreLedger, WebhookSender, payload
from bridge.ops.verdict import RULES, Backlog, Reason, Snapshot, Streak, Verdict, WorkerHealth, judge
from bridge.sandbox._faults import QuietCuts
from bridge.sandbox.servers import TlsFiles, free_port, make_tls_files
from bridge.sandbox.slack import WEBHOOK_PATH, SlackWebhook, create_slack_app
from bridge.services import alert_input, load_settings
from bridge.settings import Settings
from bridge.store import Store
from tests._clock import Clock
from tests._processes import wait_for

POLICY = AlertPolicy(hold_down=60, min_interval=300, repeat_after=0, give_up_after=3600, claim_seconds=30)
STUCK = Backlog(queued=4, sending=3, throttled=4, oldest_seconds=75.0)


@dataclass
class Receiver:
    hook: SlackWebhook
    base: str
    tls: TlsFiles

    @property
    def url(self) -> str:
        return self.base + WEBHOOK_PATH


@pytest.fixture(scope="module")
def receiver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Receiver]:
    tls = make_tls_files(Path(tmp_path_factory.mktemp("tls")))
    hook = SlackWebhook()
    port = free_port()
    config = uvicorn.Config(
        create_slack_app(hook),
        host="127.0.0.1",
        port=port,
        ssl_certfile=str(tls.cert),
        ssl_keyfile=str(tls.key),
        log_level="warning",
        lifespan="off",
        timeout_graceful_shutdown=1,
    )
    server = uvicorn.Server(config)
    cuts = QuietCuts()
    logging.getLogger("uvicorn.error").addFilter(cuts)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for(lambda: server.started, what="the simulated Slack webhook")
    yield Receiver(hook=hook, base=f"https://127.0.0.1:{port}", tls=tls)
    server.should_exit = True
    thread.join(timeout=10)
    logging.getLogger("uvicorn.error").removeFilter(cuts)


@pytest.fixture(autouse=True)
def fresh(receiver: Receiver) -> None:
    receiver.hook.received.clear()
    receiver.hook.answers.clear()
    receiver.hook.script.clear()
    receiver.hook.fault = None


class Bridge:
    """A verdict that tests steer, read by the alerter as it would read the store."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.backlog = Backlog()
        self.throttled: Streak | None = None
        self.extra: tuple[Reason, ...] = ()

    def verdict(self) -> Verdict:
        worker = WorkerHealth(id="web.1", seconds_since_beat=1)
        snap = Snapshot(at=self.clock(), backlog=self.backlog, workers=(worker,), ccai_throttled=self.throttled)
        return judge(snap, rules=(*RULES, lambda _snapshot, _limits: self.extra))


def alerter(receiver: Receiver, bridge: Bridge, ledger: AlertLedger, *, timeout: float = 5.0) -> Alerter:
    sender = WebhookSender(url=receiver.url, timeout=timeout, ca_bundle=str(receiver.tls.ca))
    return Alerter(
        read=bridge.verdict,
        ledger=ledger,
        sender=sender,
        policy=POLICY,
        name="Acme's bridge",
        dashboard_url="https://bridge.acme.example/dashboard",
        rng=random.Random(1),
        clock=bridge.clock,
    )


async def look(alerter_: Alerter, bridge: Bridge, *, every: float, times: int) -> None:
    for _ in range(times):
        await alerter_.tick()
        bridge.clock.advance(every)


@pytest.mark.anyio
async def test_the_issues_stuck_backlog_is_posted_once_as_slack_json_with_reasons_and_counts(
    receiver: Receiver,
) -> None:
    bridge = Bridge(Clock())
    ledger = MemoryLedger()
    bridge.backlog, bridge.throttled = STUCK, Streak(since=bridge.clock() - 71, last=bridge.clock(), count=196)
    await look(alerter(receiver, bridge, ledger), bridge, every=15, times=12)  # three minutes of looking
    [message] = receiver.hook.received
    header, section, context = message["blocks"]
    assert header["text"]["text"] == ":large_orange_circle: Acme's bridge is DEGRADED (was healthy)"
    assert section["text"]["text"] == (
        "• 7 sends in hand, the oldest for 1 min 15 s (4 queued, 3 sending, 4 held back by CCAI's rate limit).\n"
        "• CCAI has answered 429 (too many requests) 196 times since 07:58:49 UTC; every worker waits for its "
        "Retry-After."
    )
    assert "<https://bridge.acme.example/dashboard|Open the dashboard>" in context["elements"][0]["text"]
    assert message["text"].startswith(":large_orange_circle: Acme's bridge is DEGRADED (was healthy)\n7 sends in hand")
    event = message["metadata"]["event_payload"]
    assert (event["kind"], event["verdict"], event["previous"]) == ("changed", "degraded", "healthy")
    assert event["reasons"][0]["counts"] == {"queued": 4, "sending": 3, "throttled": 4, "oldest_seconds": 75.0}

    bridge.backlog, bridge.throttled = Backlog(), None  # it clears: one recovery, after hold-down and interval
    await look(alerter(receiver, bridge, ledger), bridge, every=15, times=30)
    recovered = receiver.hook.received[1]
    assert recovered["blocks"][0]["text"]["text"].startswith(":large_green_circle: Acme's bridge recovered: healthy")
    assert len(receiver.hook.received) == 2


@pytest.mark.anyio
async def test_no_phone_number_reaches_the_receiver(receiver: Receiver) -> None:
    bridge = Bridge(Clock())
    bridge.extra = (
        Reason("worker_failing", "degraded", "worker w1's passes fail: CCAI refused +1 415-555-0100 & <b>"),
    )
    await look(alerter(receiver, bridge, MemoryLedger()), bridge, every=30, times=4)
    [message] = receiver.hook.received
    posted = str(message)
    assert "555-0100" not in posted
    assert "415" not in posted
    assert "*******0100" in posted
    assert "&amp; &lt;b&gt;" in message["blocks"][1]["text"]["text"]  # Slack's markup characters are escaped


@pytest.mark.anyio
async def test_two_processes_sharing_the_state_post_once(receiver: Receiver) -> None:
    bridge = Bridge(Clock())
    bridge.backlog = STUCK
    ledger = MemoryLedger()
    first, second = alerter(receiver, bridge, ledger), alerter(receiver, bridge, ledger)
    for _ in range(12):
        async with anyio.create_task_group() as group:
            group.start_soon(first.tick)
            group.start_soon(second.tick)
        bridge.clock.advance(15)
    assert len(receiver.hook.received) == 1


@pytest.mark.anyio
async def test_a_failing_receiver_is_retried_with_backoff_and_gets_the_message_once(
    receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="bridge")
    receiver.hook.script.extend([{"status": 503, "error": "rollup_error"}, {"cut": True}, {"status": 500}])
    bridge = Bridge(Clock())
    bridge.backlog = STUCK
    ledger = MemoryLedger()
    await look(alerter(receiver, bridge, ledger), bridge, every=5, times=60)  # five minutes
    assert receiver.hook.answers[:2] == [503, 500]  # the cut connection gave no answer at all
    assert len(receiver.hook.received) == 1
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(f"{receiver.base} answered 503 (rollup_error)" in w for w in warnings)
    assert any(f"{receiver.base} dropped the connection without an answer; next try in about" in w for w in warnings)
    assert WEBHOOK_PATH.rsplit("/", 1)[1] not in caplog.text  # the webhook's secret path is never logged
    state = ledger.load()
    assert state.outbox is None
    assert state.told is not None
    assert state.told.level == "degraded"


@pytest.mark.anyio
async def test_a_receiver_asking_to_wait_is_waited_for(receiver: Receiver) -> None:
    receiver.hook.script.append({"status": 429, "error": "rate_limited", "retry_after": 120})
    bridge = Bridge(Clock())
    bridge.backlog = STUCK
    ledger = MemoryLedger()
    watcher = alerter(receiver, bridge, ledger)
    await look(watcher, bridge, every=15, times=5)  # decided at 60 s, refused with Retry-After: 120
    assert receiver.hook.answers == [429]
    await look(watcher, bridge, every=15, times=7)  # 105 s later: still waiting
    assert receiver.hook.answers == [429]
    await look(watcher, bridge, every=15, times=2)
    assert receiver.hook.answers == [429, 200]


@pytest.mark.anyio
async def test_a_receiver_that_refuses_for_good_is_logged_as_an_error_and_never_hammered(
    receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    receiver.hook.fault = {"status": 404, "error": "no_service"}
    bridge = Bridge(Clock())
    bridge.backlog = STUCK
    await look(alerter(receiver, bridge, MemoryLedger()), bridge, every=15, times=60)  # 15 minutes
    assert receiver.hook.answers == [404, 404, 404]  # one fresh try per minimum interval
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert f"gave up on the changed alert (degraded): {receiver.base} answered 404 (no_service)" in errors[0]


@pytest.mark.anyio
async def test_a_receiver_that_hangs_costs_one_deadline_and_never_more(receiver: Receiver) -> None:
    receiver.hook.script.append({"hang": 30})
    bridge = Bridge(Clock())
    bridge.backlog = STUCK
    watcher = alerter(receiver, bridge, MemoryLedger(), timeout=0.5)
    await look(watcher, bridge, every=15, times=4)
    bridge.clock.advance(15)
    started = time.monotonic()
    delivery = await watcher.tick()
    assert time.monotonic() - started < 3
    assert delivery is not None
    assert not delivery.ok
    assert delivery.detail == f"{receiver.base} did not answer within 0.5 s"


@pytest.mark.anyio
async def test_the_receivers_certificate_is_checked(receiver: Receiver) -> None:
    sender = WebhookSender(url=receiver.url, timeout=5)  # the system's CAs only: the test CA is unknown
    delivery = await sender.post({"text": "hello"})
    await sender.aclose()
    assert not delivery.ok
    assert receiver.hook.received == []
    assert WEBHOOK_PATH not in delivery.detail


@pytest.mark.anyio
async def test_a_redirect_is_not_followed(receiver: Receiver) -> None:
    def redirect(request: httpx.Request) -> httpx.Response:
        return httpx.Response(302, headers={"Location": "https://elsewhere.example/collect"})

    sender = WebhookSender(url=receiver.url, transport=httpx.MockTransport(redirect))
    delivery = await sender.post({"text": "hello"})
    await sender.aclose()
    assert (delivery.ok, delivery.permanent) == (False, True)


def test_long_reasons_are_cut_to_what_slack_accepts() -> None:
    verdict = judge(Snapshot(at=1_800_000_000.0, backlog=Backlog(), workers=()))
    long = Reason("worker_failing", "degraded", "x" * 5000)
    alert = Alert("changed", "down", "healthy", (*verdict.reasons, long), decided_at=verdict.at, since=verdict.at)
    body = payload(alert, name="A" * 200)
    assert len(body["blocks"][0]["text"]["text"]) <= 150
    assert len(body["blocks"][1]["text"]["text"]) <= 3000
    assert len(body["text"]) <= 4000


def test_unused_state_is_the_default() -> None:
    assert MemoryLedger().load() == AlertState()


@pytest.mark.anyio
async def test_two_processes_on_one_store_post_once(receiver: Receiver, store_url: str) -> None:
    """Two bridges' alerters, each with its own connection to the same store, see the same verdict."""
    bridge = Bridge(Clock())
    bridge.backlog = STUCK
    first, second = Store.from_url(store_url), Store.from_url(store_url)
    first.migrate()
    try:
        alerters = [
            alerter(receiver, bridge, StoreLedger(first.status)),
            alerter(receiver, bridge, StoreLedger(second.status)),
        ]
        for _ in range(12):
            async with anyio.create_task_group() as group:
                for each in alerters:
                    group.start_soon(each.tick)
            bridge.clock.advance(15)
        assert len(receiver.hook.received) == 1
        stored = StoreLedger(second.status).load()
        assert stored.told is not None
        assert (stored.told.level, stored.outbox) == ("degraded", None)
    finally:
        first.close()
        second.close()


def test_the_alert_state_is_swapped_only_from_what_was_read(store: Store) -> None:
    ledger = StoreLedger(store.status)
    start = ledger.load()
    first = ledger.swap(start, AlertState(seen="down", seen_since=5.0))
    assert first is not None
    assert first.version == 1
    assert ledger.swap(start, AlertState(seen="degraded")) is None  # someone else stored first
    assert ledger.swap(first, AlertState(seen="healthy")) is not None
    assert ledger.load().seen == "healthy"


def test_an_alert_webhook_must_be_https_and_is_never_echoed(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("BRIDGE_ALERT_WEBHOOK_URL", "http://hooks.example/services/T1/B2/s3cr3t")
    with pytest.raises(ConfigError) as refused:
        load_settings()
    assert "BRIDGE_ALERT_WEBHOOK_URL" in str(refused.value)
    assert "must be an https:// URL" in str(refused.value)
    assert "s3cr3t" not in str(refused.value)
    monkeypatch.setenv("BRIDGE_ALERT_WEBHOOK_URL", "https://hooks.example/services/T1/B2/s3cr3t")
    assert load_settings().bridge_alert_webhook_url.get_secret_value().endswith("s3cr3t")


def test_the_webhook_runs_as_one_long_running_input_of_the_worker(sqlite_store: Store) -> None:
    words = SalesforcePlugin.words
    assert alert_input(Settings(), sqlite_store, words) is None
    configured = Settings(bridge_alert_webhook_url=SecretStr("https://hooks.example/services/T/B/x"))
    assert callable(alert_input(configured, sqlite_store, words))
