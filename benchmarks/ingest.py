"""``python -m benchmarks ingest``: outbound messages acknowledged by one ``bridge serve`` on SQLite,
against a bare Starlette endpoint on uvicorn (the ceiling), both loaded in the same run by a
separate load process. With ``--grow N`` it measures again after N finished sends fill the store.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from subprocess import Popen
from typing import Any

from sqlalchemy import insert

from benchmarks._procs import start, stop, wait_until_up
from bridge.crm.salesforce.ids import to18
from bridge.sandbox.cases import SANDBOX_ORG_ID
from bridge.sandbox.servers import free_port
from bridge.store import Store
from bridge.store.schema import sends

TOKEN = "bench-token"  # noqa: S105 - a local benchmark's own secret


def run_ingest(*, seconds: float, concurrency: int, grow: int) -> dict[str, Any]:
    directory = Path(tempfile.mkdtemp(prefix="bridge-bench-ingest-"))
    database = directory / "bridge.db"
    processes: list[Popen[Any]] = []
    try:
        ceiling_url = _start_ceiling(processes, "benchmarks._ceiling:app")
        stored_url = _start_ceiling(
            processes, "benchmarks._ceiling:stored_app", CEILING_DATABASE=str(directory / "ceiling.db")
        )
        bridge, bridge_url = _start_bridge(database, directory)
        processes.append(bridge)

        # In short rounds taking turns, so that a shared machine's load falls on every target alike.
        ceiling, fair, empty, fair_hundred, hundred = _rounds(
            [(ceiling_url, 1), (stored_url, 1), (bridge_url, 1), (stored_url, 100), (bridge_url, 100)],
            seconds=seconds,
            concurrency=concurrency,
        )
        figures: dict[str, Any] = {
            "concurrency": concurrency,
            "bare_ceiling_acks_per_s": ceiling["per_second"],
            "fair_ceiling_acks_per_s": fair["per_second"],
            "bridge_acks_per_s": empty["per_second"],
            "share_of_bare_ceiling": round(empty["per_second"] / ceiling["per_second"], 3),
            "share_of_fair_ceiling": round(empty["per_second"] / fair["per_second"], 3),
            "fair_ceiling_ack_p99_ms": fair["p99_ms"],
            "bridge_ack_p50_ms": empty["p50_ms"],
            "bridge_ack_p99_ms": empty["p99_ms"],
            "fair_ceiling_100_notifications_acks_per_s": fair_hundred["per_second"],
            "bridge_100_notifications_acks_per_s": hundred["per_second"],
            "share_of_fair_ceiling_100_notifications": round(hundred["per_second"] / fair_hundred["per_second"], 3),
            "ack_100_notifications_p50_ms": hundred["p50_ms"],
            "ack_100_notifications_p99_ms": hundred["p99_ms"],
        }
        if grow:
            stop([bridge])
            processes.remove(bridge)
            started = time.monotonic()
            _fill(database, grow)
            figures["filled_records"] = grow
            figures["fill_seconds"] = round(time.monotonic() - started, 1)
            bridge, bridge_url = _start_bridge(database, directory)
            processes.append(bridge)
            full = _load(bridge_url, seconds=seconds, concurrency=concurrency)
            figures["full_store_acks_per_s"] = full["per_second"]
            figures["full_store_ack_p99_ms"] = full["p99_ms"]
            figures["p99_full_over_empty"] = round(full["p99_ms"] / empty["p99_ms"], 2)
        return figures
    finally:
        stop(processes)


def _start_ceiling(processes: list[Popen[Any]], app: str, **env: str) -> str:
    port = free_port()
    command = ["-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(port), "--no-access-log"]
    processes.append(start([*command, "--log-level", "warning"], env={**os.environ, **env} if env else None))
    url = f"http://127.0.0.1:{port}/salesforce/outbound-message"
    wait_until_up(url)
    return url


def _start_bridge(database: Path, directory: Path) -> tuple[Popen[Any], str]:
    """``bridge serve`` alone: no worker (this measures ingest), platforms that are never called."""
    port = free_port()
    env = {
        "PATH": "/usr/bin:/bin",
        "DATABASE_URL": f"sqlite:///{database}",
        "BRIDGE_EMBEDDED_WORKER": "false",
        "BRIDGE_WEBHOOK_TOKEN": TOKEN,
        "SALESFORCE_ORG_IDS": SANDBOX_ORG_ID,
        "SALESFORCE_INSTANCE_URL": "https://127.0.0.1:9",
        "SALESFORCE_ACCESS_TOKEN": "unused",
        "CCAI_SUBDOMAIN": "bench",
        "CCAI_API_TOKEN": "unused",
        "CCAI_BASE_URL": "http://127.0.0.1:9/apps/api/v1",
        "CCAI_OUTBOUND_NUMBER": "+1 628-555-0199",
        "LOG_LEVEL": "WARNING",
    }
    process = start(["serve", "--host", "127.0.0.1", "--port", str(port)], env=env, log=directory / "bridge.log")
    wait_until_up(f"http://127.0.0.1:{port}/healthz")
    return process, f"http://127.0.0.1:{port}/salesforce/outbound-message?token={TOKEN}"


def _rounds(
    targets: list[tuple[str, int]], *, seconds: float, concurrency: int, rounds: int = 4
) -> list[dict[str, Any]]:
    """Each (url, notifications) loaded for ``seconds`` in all, a quarter at a time in turn."""
    runs: list[list[dict[str, Any]]] = [[] for _ in targets]
    for _ in range(rounds):
        for i, (url, notifications) in enumerate(targets):
            runs[i].append(_load(url, seconds=seconds / rounds, concurrency=concurrency, notifications=notifications))
    merged = []
    for parts in runs:
        latencies = sorted(x for part in parts for x in part["latencies_ms"])
        merged.append(
            {
                "per_second": round(len(latencies) / sum(part["elapsed"] for part in parts), 1),
                "p50_ms": latencies[len(latencies) // 2],
                "p99_ms": latencies[max(0, int(len(latencies) * 0.99) - 1)],
            }
        )
    return merged


def _load(url: str, *, seconds: float, concurrency: int, notifications: int = 1) -> dict[str, Any]:
    command = [
        sys.executable,
        "-m",
        "benchmarks._loadgen",
        url,
        "--seconds",
        str(seconds),
        "--concurrency",
        str(concurrency),
        "--notifications",
        str(notifications),
    ]
    result = subprocess.run(command, capture_output=True, text=True, check=True)  # noqa: S603 - this program
    figures: dict[str, Any] = json.loads(result.stdout)
    return figures


def _fill(database: Path, count: int) -> None:
    """Add ``count`` finished, written-back sends, as months of traffic would leave them (through the
    store's own table definition, so the rows always match the schema)."""
    day_ago = time.time() - 86400
    store = Store.from_url(f"sqlite:///{database}")
    try:
        for start in range(0, count, 10_000):
            rows = [
                {
                    "dedupe_key": f"om:{SANDBOX_ORG_ID[:15]}:old{i:012d}",
                    "source": "outbound_message",
                    "org_id": SANDBOX_ORG_ID,
                    "ticket_id": to18(f"5005g0000H{i % 90000:05d}"),
                    "status": "sent",
                    "chat_id": str(1000 + i),
                    "end_user_hint": "*******0100",
                    "attempts": 1,
                    "not_before": day_ago,
                    "inflight": False,
                    "may_have_sent": False,
                    "created_at": day_ago,
                    "first_attempt_at": day_ago,
                    "finished_at": day_ago,
                    "writeback": "done",
                    "writeback_task": "done",
                    "writeback_attempts": 1,
                }
                for i in range(start, min(count, start + 10_000))
            ]
            with store.db.tx() as connection:
                connection.execute(insert(sends), rows)
    finally:
        store.close()
