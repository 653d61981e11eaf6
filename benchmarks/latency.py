"""``python -m benchmarks latency``: event -> SMS, one event at a time, in two deployments side by side.

- *embedded*: one ``bridge serve`` with its embedded worker on SQLite (the single-dyno shape);
- *separate*: one ``bridge serve`` without a worker and two ``bridge worker`` processes on PostgreSQL
  (the Heroku shape), where the web process's new sends reach a worker in another process.

Both run at once beside one set of simulated platforms and take their samples in turns, so a busy
moment of the (shared, noisy) machine falls on both alike: the ratios are the figures to compare.
An event's latency runs from its outbound message's ack to the moment the simulated CCAI accepted
its SMS. An agent send's is the round trip of ``POST /api/v1/sends?wait=20`` (stored, sent, and
answered with the outcome). Nothing here runs in the test suite.
"""

from __future__ import annotations

import statistics
import tempfile
import time
import uuid
from pathlib import Path
from subprocess import Popen
from typing import Any

import httpx
from sqlalchemy import text

from benchmarks._procs import bridge_env, seed_cases, start, start_sandbox, stop, wait_until_up
from bridge.errors import ConfigError
from bridge.sandbox.cases import outbound_message
from bridge.sandbox.servers import SANDBOX_API_KEY, SANDBOX_WEBHOOK_TOKEN, free_port
from bridge.store import Store

SHAPES = ("embedded", "separate")


def run_latency(*, database_url: str, events: int, agent_sends: int, interval: float) -> dict[str, Any]:
    if not database_url.startswith(("postgres://", "postgresql://")):
        raise ConfigError("The benchmark needs PostgreSQL: pass --database-url postgresql://...")
    directory = Path(tempfile.mkdtemp(prefix="bridge-bench-latency-"))
    schema = f"bench_{uuid.uuid4().hex[:8]}"
    admin = Store.from_url(database_url)
    with admin.db.engine.begin() as connection:
        connection.execute(text(f"CREATE SCHEMA {schema}"))
    pg_url = f"{database_url}{'&' if '?' in database_url else '?'}options=-csearch_path%3D{schema}"
    processes: list[Popen[Any]] = []
    try:
        # A limit no sample comes near: one event at a time measures the wake-up, not the pacing.
        sandbox, info = start_sandbox(directory, rate=100.0)
        processes.append(sandbox)
        count = 2 * (events + agent_sends + 1)
        cases = seed_cases(info, tag="L", count=count)
        bases = {}
        common = {"CCAI_RATE_LIMIT": "100", "BRIDGE_CHAT_SYNC_SECONDS": "0"}
        env = bridge_env(info, DATABASE_URL=f"sqlite:///{directory / 'bridge.db'}", **common)
        bases["embedded"], web = _serve(env, directory / "embedded.log")
        processes.append(web)
        store = Store.from_url(pg_url)
        store.migrate()
        store.close()
        env = bridge_env(info, DATABASE_URL=pg_url, BRIDGE_EMBEDDED_WORKER="false", **common)
        bases["separate"], web = _serve(env, directory / "separate.log")
        processes.append(web)
        processes += [start(["worker"], env=env, log=directory / f"worker{i}.log") for i in range(2)]
        ccai = httpx.Client(base_url=info["ccai_url"], timeout=30)
        client = httpx.Client(timeout=60)
        queue = iter(cases)
        for shape in SHAPES:  # untimed: every process is up, connected and idle before the first sample
            _event(client, ccai, bases[shape], next(queue))
        time.sleep(2.0)
        event_ms: dict[str, list[float]] = {shape: [] for shape in SHAPES}
        agent_ms: dict[str, list[float]] = {shape: [] for shape in SHAPES}
        for _ in range(events):
            for shape in SHAPES:
                time.sleep(interval)  # the worker goes idle between samples
                event_ms[shape].append(_event(client, ccai, bases[shape], next(queue)))
        for _ in range(agent_sends):
            for shape in SHAPES:
                time.sleep(interval)
                agent_ms[shape].append(_agent_send(client, bases[shape], next(queue)))
        figures: dict[str, Any] = {"events_per_shape": events, "agent_sends_per_shape": agent_sends}
        for shape in SHAPES:
            figures[f"{shape}_event_to_sms_p50_ms"] = _percentile(event_ms[shape], 50)
            figures[f"{shape}_event_to_sms_p99_ms"] = _percentile(event_ms[shape], 99)
        figures["separate_over_embedded_p50"] = round(
            figures["separate_event_to_sms_p50_ms"] / figures["embedded_event_to_sms_p50_ms"], 2
        )
        for shape in SHAPES:
            figures[f"{shape}_agent_send_wait_p50_ms"] = _percentile(agent_ms[shape], 50)
            figures[f"{shape}_agent_send_wait_p99_ms"] = _percentile(agent_ms[shape], 99)
        if agent_sends:
            figures["agent_send_separate_over_embedded_p50"] = round(
                figures["separate_agent_send_wait_p50_ms"] / figures["embedded_agent_send_wait_p50_ms"], 2
            )
        duplicates = len(ccai.get("/_sandbox/state").json()["accepted"]) - (events + agent_sends + 1) * len(SHAPES)
        figures["extra_sms"] = duplicates
        return figures
    finally:
        stop(processes)
        with admin.db.engine.begin() as connection:
            connection.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.close()


def _serve(env: dict[str, str], log: Path) -> tuple[str, Popen[Any]]:
    port = free_port()
    process = start(["serve", "--host", "127.0.0.1", "--port", str(port)], env=env, log=log)
    base = f"http://127.0.0.1:{port}"
    wait_until_up(f"{base}/healthz")
    return base, process


def _event(client: httpx.Client, ccai: httpx.Client, base: str, case_id: str) -> float:
    """One outbound message: milliseconds from its ack to its SMS at the simulated CCAI."""
    client.post(
        f"{base}/salesforce/outbound-message",
        params={"token": SANDBOX_WEBHOOK_TOKEN},
        content=outbound_message([case_id]),
        headers={"Content-Type": "text/xml"},
    ).raise_for_status()
    acked = time.time()
    return (_accepted_at(ccai, case_id) - acked) * 1000


def _agent_send(client: httpx.Client, base: str, case_id: str) -> float:
    """One agent send that waits for its outcome: milliseconds until the answer."""
    started = time.perf_counter()
    answer = client.post(
        f"{base}/api/v1/sends",
        params={"wait": "20"},
        json={"ticket_id": case_id},
        headers={"Authorization": f"Bearer {SANDBOX_API_KEY}"},
    )
    elapsed = (time.perf_counter() - started) * 1000
    if answer.status_code != 200:
        raise RuntimeError(f"an agent send was answered {answer.status_code}: {answer.text[:200]}")
    return elapsed


def _accepted_at(ccai: httpx.Client, case_id: str, timeout: float = 30) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for sms in reversed(ccai.get("/_sandbox/state").json()["accepted"]):
            if sms["ticket_id"] == case_id:
                return float(sms["at"])
        time.sleep(0.01)
    raise RuntimeError("the SMS did not reach the simulated CCAI in time")


def _percentile(values: list[float], percent: int) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return round(values[0], 1)
    return round(statistics.quantiles(values, n=100, method="inclusive")[percent - 1], 1)
