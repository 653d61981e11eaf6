"""``bridge benchmark``: the send pipeline against its ceiling, measured with real processes.

It starts the simulated platforms (CCAI with the given latency and per-tenant rate limit), queues
a backlog of events in a fresh PostgreSQL schema, starts worker processes, and reports the SMS
rate CCAI saw, the 429s it answered and any duplicate SMS. Nothing here runs in the test suite.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import text

from bridge.errors import ConfigError
from bridge.model import NewSend
from bridge.record_ids import to18
from bridge.store import Store

# Fictional numbers (555-01xx) across area codes, so every Case has its own valid US number.
_AREAS = ("212", "415", "628", "646", "718", "312", "305", "206", "617", "702", "213", "303", "404", "512")


def run_benchmark(*, database_url: str, events: int, workers: int, latency: float, rate: float) -> dict[str, Any]:
    if not database_url.startswith(("postgres://", "postgresql://")):
        raise ConfigError("The benchmark needs PostgreSQL: pass --database-url postgresql://...")
    if events > 100 * len(_AREAS):
        raise ConfigError(f"At most {100 * len(_AREAS)} events (distinct fictional numbers run out).")
    directory = Path(tempfile.mkdtemp(prefix="bridge-bench-"))
    schema = f"bench_{uuid.uuid4().hex[:8]}"
    admin = Store.from_url(database_url)
    with admin.engine.begin() as connection:
        connection.execute(text(f"CREATE SCHEMA {schema}"))
    url = f"{database_url}{'&' if '?' in database_url else '?'}options=-csearch_path%3D{schema}"
    processes: list[subprocess.Popen[Any]] = []
    try:
        sandbox = _start(["sandbox", "--dir", str(directory), "--latency", str(latency), "--rate-limit", str(rate)])
        processes.append(sandbox)
        assert sandbox.stdout is not None
        info = json.loads(sandbox.stdout.readline())
        env = _environment(info, url, rate)
        ccai = httpx.Client(base_url=info["ccai_url"], timeout=30)
        cases = _seed_cases(info, events)
        store = Store.from_url(url)
        store.migrate()
        store.ingest([NewSend(dedupe_key=f"bench:{c}", source="outbound_message", ticket_id=c) for c in cases])
        store.close()
        started = time.time()
        processes += [_start(["worker"], env=env, log=directory / f"worker{i}.log") for i in range(workers)]
        state = _wait_for_all(ccai, events, deadline=started + 60 + 3 * events / rate)
        finished = time.time()
        return _figures(state, events=events, workers=workers, latency=latency, rate=rate, wall=finished - started)
    finally:
        for process in reversed(processes):
            process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
        with admin.engine.begin() as connection:
            connection.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.close()


def _start(args: list[str], *, env: dict[str, str] | None = None, log: Path | None = None) -> subprocess.Popen[Any]:
    output = log.open("ab") if log else subprocess.PIPE
    return subprocess.Popen(  # noqa: S603 - runs this same program, with fixed arguments
        [sys.executable, "-m", "bridge", *args],
        env=env,
        stdout=output,
        stderr=subprocess.STDOUT if log else subprocess.DEVNULL,
        text=log is None,
    )


def _environment(info: dict[str, Any], database_url: str, rate: float) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CCAI_", "SALESFORCE_", "BRIDGE_"))}
    env.update({k.upper(): str(v) for k, v in info["settings"].items()})
    env.update({"DATABASE_URL": database_url, "LOG_LEVEL": "WARNING", "CCAI_RATE_LIMIT": str(rate)})
    return env


def _seed_cases(info: dict[str, Any], count: int) -> list[str]:
    cases = [
        {
            "Id": to18(f"5005g0000B{i:05d}"),
            "CaseNumber": f"{i:08d}",
            "ContactMobile": f"+1 {_AREAS[i // 100]}-555-01{i % 100:02d}",
            "Owner.Type": "User",
            "Owner.Email": "agent@example.com",
        }
        for i in range(count)
    ]
    with httpx.Client(base_url=info["salesforce_url"], verify=False, timeout=30) as salesforce:  # noqa: S501 - local sandbox
        salesforce.post("/_sandbox/control", json={"cases": cases}).raise_for_status()
    return [c["Id"] for c in cases]


def _wait_for_all(ccai: httpx.Client, events: int, *, deadline: float) -> dict[str, Any]:
    while True:
        state: dict[str, Any] = ccai.get("/_sandbox/state").json()
        if len(state["accepted"]) >= events or time.time() > deadline:
            return state
        time.sleep(0.5)


def _figures(
    state: dict[str, Any], *, events: int, workers: int, latency: float, rate: float, wall: float
) -> dict[str, Any]:
    times = sorted(sms["at"] for sms in state["accepted"])
    per_case = Counter(sms["ticket_id"] for sms in state["accepted"])
    sustained = (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 else 0.0
    return {
        "events": events,
        "workers": workers,
        "ccai_latency_s": latency,
        "ccai_limit_per_s": rate,
        "sms_accepted": len(times),
        "sms_per_s_sustained": round(sustained, 2),
        "share_of_limit": round(sustained / rate, 3),
        "http_429": int(state["answered"].get("429", 0)),
        "duplicates": sum(n - 1 for n in per_case.values()),
        "wall_seconds": round(wall, 1),
    }
