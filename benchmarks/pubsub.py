"""``python -m benchmarks pubsub KIND``: the Salesforce Pub/Sub trigger against the simulated API.

- ``latency``: ``bridge sandbox`` and ``bridge serve`` as processes; requests published one by one
  (below CCAI's 10/s): from the event's publication to CCAI accepting its SMS, p50 and p99.
- ``decode``: events received, decoded and handed to a sink per second, over real gRPC and TLS on
  loopback (batches of 100), beside fastavro decoding alone.
- ``silence``: a stream gone quiet (as over a connection that died without a word): how long the
  subscriber takes to notice, against its bound, and to be live again with the events published
  meanwhile. Salesforce's keepalive bound (270 s) is scaled down by ``--scale``.
- ``replay``: ``--events`` requests published while no worker runs (an outage); a worker reads
  them, is killed (SIGKILL) part-way, another takes the stream over and finishes: every event one
  send, none twice, at most one SMS per Case.
"""

from __future__ import annotations

import asyncio
import io
import secrets
import ssl
import statistics
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from subprocess import Popen
from typing import Any

import fastavro
import httpx

from benchmarks._procs import bridge_env, start, start_sandbox, stop, wait_until_up
from bridge.crm.salesforce.ids import to18
from bridge.crm.salesforce.pubsub import (
    KEEPALIVE_BOUND_SECONDS,
    PubSubLogin,
    PubSubSubscriber,
    ResumePoint,
    SubscriberOptions,
)
from bridge.crm.salesforce.pubsub_events import PlatformEvent
from bridge.sandbox.cases import SANDBOX_ORG_ID
from bridge.sandbox.pubsub import PubSubServer, PubSubSimulator, sms_request_bus
from bridge.sandbox.servers import free_port, make_tls_files
from bridge.store import Store

_INSTANCE = "https://127.0.0.1:9"
_TOPIC = "/event/CCAI_SMS_Request__e"


# -- in process: the subscriber against the simulator ------------------------------------------


class _Login:
    def __init__(self, tokens: set[str]) -> None:
        token = secrets.token_urlsafe(16)
        tokens.add(token)
        self.current = PubSubLogin(access_token=token, instance_url=_INSTANCE, org_id=SANDBOX_ORG_ID)

    async def login(self) -> PubSubLogin:
        return self.current

    async def renew(self, refused: PubSubLogin) -> PubSubLogin:
        return self.current


class _CountingSink:
    """Counts what it is given: the benchmark measures the stream, not a store."""

    def __init__(self) -> None:
        self.count = 0
        self.replay_id: bytes | None = None

    async def resume_point(self) -> ResumePoint:
        return ResumePoint(self.replay_id, 0.0)

    async def commit(self, events: Sequence[PlatformEvent]) -> int:
        self.count += len(events)
        self.replay_id = events[-1].replay_id
        return len(events)

    async def checkpoint(self, replay_id: bytes) -> None:
        self.replay_id = replay_id


@asynccontextmanager
async def _simulator(keepalive: float) -> AsyncIterator[tuple[PubSubServer, bytes, set[str]]]:
    with tempfile.TemporaryDirectory(prefix="bridge-bench-pubsub-") as directory:
        tls = make_tls_files(Path(directory))
        tokens: set[str] = set()
        simulator = PubSubSimulator(
            bus=sms_request_bus(),
            org_id=SANDBOX_ORG_ID,
            instance_url=_INSTANCE,
            valid_tokens=tokens,
            keepalive_seconds=keepalive,
        )
        server = PubSubServer(simulator, cert=tls.cert.read_bytes(), key=tls.key.read_bytes())
        await server.start()
        try:
            yield server, tls.ca.read_bytes(), tokens
        finally:
            await server.stop()


async def _until(condition: Callable[[], bool], *, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"Timed out waiting for {what}")
        await asyncio.sleep(0.01)


def run_decode(*, events: int = 20_000) -> dict[str, Any]:
    return asyncio.run(_decode(events))


async def _decode(events: int) -> dict[str, Any]:
    async with _simulator(KEEPALIVE_BOUND_SECONDS) as (server, ca, tokens):
        bus = server.simulator.bus
        topic = bus.topics[_TOPIC]
        for n in range(events):
            bus.publish_values(topic, {"Case_Id__c": f"5005g00000E{n % 10_000:04d}", "Template__c": "welcome"})
        sink = _CountingSink()
        options = SubscriberOptions(
            topic=_TOPIC, target=server.target, root_certificates=ca, batch_size=100, initial_preset="EARLIEST"
        )
        subscriber = PubSubSubscriber(options=options, login=_Login(tokens), sink=sink)
        started = time.perf_counter()
        task = asyncio.create_task(subscriber.run())
        await _until(lambda: sink.count >= events, timeout=600, what=f"{events} events")
        streamed = time.perf_counter() - started
        task.cancel()
        payloads = [e.payload for e in topic.events]
        parsed = topic.parsed
    started = time.perf_counter()
    for payload in payloads:
        fastavro.schemaless_reader(io.BytesIO(payload), parsed, None)
    decode_only = time.perf_counter() - started
    return {
        "events": events,
        "streamed events/s (gRPC+TLS, decode, sink)": round(events / streamed),
        "fastavro decode only events/s": round(len(payloads) / decode_only),
        "stream / decode-only": f"{(events / streamed) / (len(payloads) / decode_only):.2f}",
    }


def run_silence(*, rounds: int = 5, scale: float = 0.01) -> dict[str, Any]:
    return asyncio.run(_silence(rounds, scale))


async def _silence(rounds: int, scale: float) -> dict[str, Any]:
    keepalive = KEEPALIVE_BOUND_SECONDS * scale
    dead_after = keepalive + 30.0 * scale
    notice: list[float] = []
    recover: list[float] = []
    async with _simulator(keepalive) as (server, ca, tokens):
        sink = _CountingSink()
        options = SubscriberOptions(
            topic=_TOPIC, target=server.target, root_certificates=ca, dead_after=dead_after, backoff_cap=0.5
        )
        subscriber = PubSubSubscriber(options=options, login=_Login(tokens), sink=sink)
        task = asyncio.create_task(subscriber.run())
        await _until(lambda: subscriber.status().state == "live", timeout=30, what="a live stream")
        topic = server.simulator.bus.topics[_TOPIC]
        for _ in range(rounds):
            noticed_dead, arrived = _more_dead(subscriber), _more_events(sink, 3)
            silenced = time.monotonic()
            server.simulator.silence_open_streams()
            for n in range(3):
                server.simulator.bus.publish_values(topic, {"Case_Id__c": f"5005g00000E{n:04d}"})
            await _until(noticed_dead, timeout=dead_after * 4, what="the silence to be noticed")
            noticed = time.monotonic()
            await _until(arrived, timeout=dead_after * 4, what="the events published meanwhile")
            notice.append(noticed - silenced)
            recover.append(time.monotonic() - noticed)
        task.cancel()
    return {
        "rounds": rounds,
        "keepalive bound (scaled) s": round(keepalive, 3),
        "dead_after (scaled) s": round(dead_after, 3),
        "time to notice p50 s": round(statistics.median(notice), 3),
        "time to notice max s": round(max(notice), 3),
        "notice / dead_after": f"{statistics.median(notice) / dead_after:.2f}",
        "time to recover (live again, events in) p50 s": round(statistics.median(recover), 3),
        "at full scale: noticed within s": round(dead_after / scale),
    }


def _more_dead(subscriber: PubSubSubscriber) -> Callable[[], bool]:
    before = subscriber.status().dead_streams
    return lambda: subscriber.status().dead_streams > before


def _more_events(sink: _CountingSink, count: int) -> Callable[[], bool]:
    before = sink.count
    return lambda: sink.count >= before + count


# -- real processes: bridge sandbox, bridge serve / bridge worker --------------------------------


def _cases(org: httpx.Client, count: int) -> list[str]:
    cases = [
        {
            "Id": to18(f"5005g0000P{i:05d}"),
            "CaseNumber": f"{i:08d}",
            "ContactMobile": f"+1 415-555-{i % 10_000:04d}",
            "Owner.Type": "Queue",
        }
        for i in range(count)
    ]
    org.post("/_sandbox/control", json={"cases": cases}).raise_for_status()
    return [c["Id"] for c in cases]


def _org(info: dict[str, Any]) -> httpx.Client:
    context = ssl.create_default_context(cafile=info["ca_file"])
    return httpx.Client(base_url=info["salesforce_url"], verify=context, timeout=120)


def run_latency(*, events: int = 100, interval: float = 0.2) -> dict[str, Any]:
    directory = Path(tempfile.mkdtemp(prefix="bridge-bench-pubsub-"))
    processes: list[Popen[Any]] = []
    try:
        sandbox, info = start_sandbox(directory)
        processes.append(sandbox)
        org, ccai = _org(info), httpx.Client(base_url=info["ccai_url"], timeout=60)
        cases = _cases(org, events)
        port = free_port()
        env = bridge_env(info, DATABASE_URL=f"sqlite:///{directory / 'bridge.db'}", BRIDGE_POLL_SECONDS="1")
        processes.append(start(["serve", "--port", str(port)], env=env, log=directory / "bridge.log"))
        wait_until_up(f"http://127.0.0.1:{port}/healthz")
        deadline = time.monotonic() + 60
        while org.get("/_sandbox/pubsub").json()["stats"]["open_streams"] < 1:
            if time.monotonic() > deadline:
                raise RuntimeError("The bridge never subscribed.")
            time.sleep(0.1)
        published: dict[str, float] = {}
        for case in cases:
            published[case] = time.time()
            org.post("/_sandbox/pubsub", json={"publish": {"values": {"Case_Id__c": case}}}).raise_for_status()
            time.sleep(interval)
        deadline = time.monotonic() + 120
        while len(accepted := ccai.get("/_sandbox/state").json()["accepted"]) < events:
            if time.monotonic() > deadline:
                raise RuntimeError(f"Only {len(accepted)} of {events} SMS left within 120 s.")
            time.sleep(0.2)
        latency = sorted(sms["at"] - published[sms["ticket_id"]] for sms in accepted)
    finally:
        stop(processes)
    return {
        "events": events,
        "published every s": interval,
        "published -> SMS accepted by CCAI p50 ms": round(statistics.median(latency) * 1000),
        "p99 ms": round(latency[min(len(latency) - 1, int(len(latency) * 0.99))] * 1000),
        "max ms": round(latency[-1] * 1000),
    }


def run_replay(*, events: int = 10_000, cases: int = 200, database_url: str | None = None) -> dict[str, Any]:
    directory = Path(tempfile.mkdtemp(prefix="bridge-bench-pubsub-"))
    url = database_url or f"sqlite:///{directory / 'bridge.db'}"
    processes: list[Popen[Any]] = []
    store = Store.from_url(url)
    try:
        store.migrate()
        sandbox, info = start_sandbox(directory)
        processes.append(sandbox)
        org, ccai = _org(info), httpx.Client(base_url=info["ccai_url"], timeout=60)
        ids = _cases(org, cases)
        # The outage: every request is published while no worker runs.
        requests = [{"values": {"Case_Id__c": ids[n % cases], "Idempotency_Key__c": f"r{n}"}} for n in range(events)]
        for chunk in range(0, events, 2000):
            org.post("/_sandbox/pubsub", json={"publish": requests[chunk : chunk + 2000]}).raise_for_status()
        env = bridge_env(info, DATABASE_URL=url, SALESFORCE_PUBSUB_REPLAY_PRESET="EARLIEST")
        started = time.monotonic()
        first = start(["worker"], env=env, log=directory / "worker1.log")
        processes.append(first)
        while _events_seen(store) < events // 3:
            time.sleep(0.05)
        first.kill()  # SIGKILL part-way through the replay
        killed_at = time.monotonic()
        seen_at_kill = _events_seen(store)
        processes.append(start(["worker"], env=env, log=directory / "worker2.log"))
        deadline = time.monotonic() + 600
        while _events_seen(store) < events:
            if time.monotonic() > deadline:
                raise RuntimeError(f"Only {_events_seen(store)} of {events} events were committed in 600 s.")
            time.sleep(0.2)
        done = time.monotonic()
        sends = store.history.queue_summary().by_status
        report = store.status.get(f"stream:{_TOPIC}")
        time.sleep(2.0)  # sends still leaving would show a repeat now
        per_case: dict[str, int] = {}
        for sms in ccai.get("/_sandbox/state").json()["accepted"]:
            per_case[sms["ticket_id"]] = per_case.get(sms["ticket_id"], 0) + 1
        delivered = org.get("/_sandbox/pubsub").json()["stats"]["delivered"]
    finally:
        stop(processes)
        store.close()
    total_sends = sum(sends.values())
    return {
        "events published during the outage": events,
        "events delivered by the API (with the replay after the kill)": delivered,
        "events committed when the first worker was killed": seen_at_kill,
        "sends in the store": total_sends,
        "duplicate sends (sends - events)": total_sends - events,
        "seen before, skipped by EventUuid (second worker)": (report or ({}, 0))[0].get("already_seen"),
        "most SMS to one Case": max(per_case.values(), default=0),
        "replay seconds (takeover wait included)": round(done - started, 1),
        "takeover and rest of replay s": round(done - killed_at, 1),
    }


def _events_seen(store: Store) -> int:
    return store.streams.events_seen(_TOPIC)
