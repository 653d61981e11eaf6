"""``python -m benchmarks pipeline``: the send pipeline against its ceiling, measured with real processes.

It starts the simulated platforms (CCAI with the given latency and per-tenant rate limit), queues
a backlog of events in a fresh PostgreSQL schema, starts worker processes, and reports the SMS
rate CCAI saw, the 429s it answered and any duplicate SMS. Nothing here runs in the test suite.
"""

from __future__ import annotations

import bisect
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from subprocess import Popen
from typing import Any

import httpx
from sqlalchemy import text

from benchmarks._procs import AREAS, bridge_env, peak_rss_mb, seed_cases, start, start_sandbox, stop
from bridge.errors import ConfigError
from bridge.model import NewSend
from bridge.store import Store

# 555 numbers across area codes, so every Case has its own valid US number (1,000 per area code).


def run_pipeline(
    *,
    database_url: str,
    events: int,
    workers: int,
    latency: float,
    rate: float,
    jitter: float = 0.0,
    window: str = "bucket",
    max_seconds: float | None = None,
    cpu_load: bool = False,
    headroom: float | None = None,
) -> dict[str, Any]:
    """Queue ``events`` and let ``workers`` send them; stop after ``max_seconds`` if given (a large
    backlog then measures memory and rate without waiting for the last SMS).
    """
    if not database_url.startswith(("postgres://", "postgresql://")):
        raise ConfigError("The benchmark needs PostgreSQL: pass --database-url postgresql://...")
    if events > 1000 * len(AREAS):
        raise ConfigError(f"At most {1000 * len(AREAS)} events (distinct numbers run out).")
    directory = Path(tempfile.mkdtemp(prefix="bridge-bench-"))
    schema = f"bench_{uuid.uuid4().hex[:8]}"
    admin = Store.from_url(database_url)
    with admin.db.engine.begin() as connection:
        connection.execute(text(f"CREATE SCHEMA {schema}"))
    url = f"{database_url}{'&' if '?' in database_url else '?'}options=-csearch_path%3D{schema}"
    processes: list[Popen[Any]] = []
    try:
        sandbox, info = start_sandbox(directory, latency=latency, rate=rate, jitter=jitter, window=window)
        processes.append(sandbox)
        env = bridge_env(info, DATABASE_URL=url, CCAI_RATE_LIMIT=str(rate))
        if headroom is not None:
            env["CCAI_RATE_HEADROOM"] = str(headroom)
        if cpu_load:  # a busy process on one core: the workers, the database and CCAI share the rest
            processes.append(Popen([sys.executable, "-c", "while True: pass"]))
        ccai = httpx.Client(base_url=info["ccai_url"], timeout=30)
        cases = seed_cases(info, tag="B", count=events)
        store = Store.from_url(url)
        store.migrate()
        store.sends.ingest(
            [
                NewSend(dedupe_key=f"bench:{c}", source="outbound_message", origin="crm_event", ticket_id=c)
                for c in cases
            ]
        )
        store.close()
        started = time.time()
        worker_processes = [start(["worker"], env=env, log=directory / f"worker{i}.log") for i in range(workers)]
        processes += worker_processes
        deadline = started + (max_seconds if max_seconds is not None else 60 + 3 * events / rate)
        state = _wait_for_all(ccai, events, deadline=deadline)
        finished = time.time()
        figures = _figures(state, events=events, workers=workers, latency=latency, rate=rate, wall=finished - started)
        figures["jitter_s"] = jitter
        figures["window"] = window
        figures["cpu_load"] = cpu_load
        figures["physical_ceiling_per_s"] = round(rate / (1 + jitter), 2)  # no sender does better without a 429
        figures["share_of_physical_ceiling"] = round(figures["sms_per_s_sustained"] / (rate / (1 + jitter)), 3)
        figures.update(_lateness(admin, schema, window=1.0 + jitter))
        figures["worker_peak_rss_mb"] = max(peak_rss_mb(p.pid) for p in worker_processes)
        return figures
    finally:
        stop(processes)
        with admin.db.engine.begin() as connection:
            connection.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.close()


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
    arrivals = sorted(state["request_times"])
    sustained = (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 else 0.0
    return {
        "events": events,
        "workers": workers,
        "ccai_latency_s": latency,
        "ccai_limit_per_s": rate,
        "sms_accepted": len(times),
        "backlog_left": events - len(times),
        "sms_per_s_sustained": round(sustained, 2),
        "share_of_limit": round(sustained / rate, 3),
        "http_429": int(state["answered"].get("429", 0)),
        "busiest_1s_window": _busiest(arrivals, 1.0),
        "windows_over_limit": sum(1 for i in range(len(arrivals)) if _count_from(arrivals, i, 1.0) > rate),
        "duplicates": sum(n - 1 for n in per_case.values()),
        "wall_seconds": round(wall, 1),
    }


def _lateness(admin: Store, schema: str, *, window: float) -> dict[str, Any]:
    """How long after their planned slots the requests left (what the pacing counted), in ms, and
    the most that left in any ``window`` by the pacing's own record: above the limit, the pacing
    broke its rule; at most the limit while CCAI still saw more, the rest of the way (the event
    loop before the bytes left, the network, CCAI's own host) added more than the jitter."""
    with admin.db.engine.begin() as connection:
        rows = connection.execute(text(f"SELECT at, left_at FROM {schema}.rate_events")).all()  # noqa: S608 (our own schema name)
    late = sorted((left - at) * 1000 for at, left in rows if left is not None)
    if not late:
        return {"departures_recorded": 0}
    left_at = sorted(left for _, left in rows if left is not None)
    return {
        "departures_recorded": len(late),
        "busiest_window_by_record": _busiest(left_at, window),
        "left_late_ms_p50": round(late[len(late) // 2], 1),
        "left_late_ms_p99": round(late[min(len(late) - 1, len(late) * 99 // 100)], 1),
        "left_late_ms_mean": round(sum(late) / len(late), 1),
    }


def _count_from(times: list[float], index: int, window: float) -> int:
    return bisect.bisect_left(times, times[index] + window) - index


def _busiest(times: list[float], window: float) -> int:
    """The most requests CCAI saw in any sliding window (what a strict limiter counts)."""
    return max((_count_from(times, i, window) for i in range(len(times))), default=0)
