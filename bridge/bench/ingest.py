"""``bridge benchmark ingest``: outbound messages acknowledged by one ``bridge serve`` on SQLite,
against a bare Starlette endpoint on uvicorn (the ceiling), both loaded in the same run by a
separate load process. With ``--grow N`` it measures again after N finished sends fill the store.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from subprocess import Popen
from typing import Any

from bridge.bench._procs import start, stop, wait_until_up
from bridge.record_ids import to18
from bridge.sandbox.cases import SANDBOX_ORG_ID
from bridge.sandbox.servers import free_port

TOKEN = "bench-token"  # noqa: S105 - a local benchmark's own secret


def run_ingest(*, seconds: float, concurrency: int, grow: int) -> dict[str, Any]:
    directory = Path(tempfile.mkdtemp(prefix="bridge-bench-ingest-"))
    database = directory / "bridge.db"
    processes: list[Popen[Any]] = []
    try:
        ceiling_port = free_port()
        processes.append(
            start(
                [
                    "-m",
                    "uvicorn",
                    "bridge.bench._ceiling:app",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(ceiling_port),
                    "--no-access-log",
                    "--log-level",
                    "warning",
                ]
            )
        )
        ceiling_url = f"http://127.0.0.1:{ceiling_port}/salesforce/outbound-message"
        wait_until_up(ceiling_url)
        bridge, bridge_url = _start_bridge(database, directory)
        processes.append(bridge)

        ceiling = _load(ceiling_url, seconds=seconds, concurrency=concurrency)
        empty = _load(bridge_url, seconds=seconds, concurrency=concurrency)
        hundred = _load(bridge_url, seconds=seconds, concurrency=1, notifications=100)
        figures: dict[str, Any] = {
            "ceiling_acks_per_s": ceiling["per_second"],
            "bridge_acks_per_s": empty["per_second"],
            "share_of_ceiling": round(empty["per_second"] / ceiling["per_second"], 3),
            "bridge_ack_p50_ms": empty["p50_ms"],
            "bridge_ack_p99_ms": empty["p99_ms"],
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


def _load(url: str, *, seconds: float, concurrency: int, notifications: int = 1) -> dict[str, Any]:
    command = [
        sys.executable,
        "-m",
        "bridge.bench._loadgen",
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
    """Add ``count`` finished, written-back sends, as months of traffic would leave them."""
    now = time.time()
    rows = (
        (
            f"om:{SANDBOX_ORG_ID[:15]}:old{i:012d}",
            "outbound_message",
            SANDBOX_ORG_ID,
            to18(f"5005g0000H{i % 90000:05d}"),
            "sent",
            str(1000 + i),
            "*******0100",
            1,
            now - 86400,
            0,
            0,
            now - 86400,
            now - 86400,
            now - 86400,
            "done",
            "done",
            1,
        )
        for i in range(count)
    )
    connection = sqlite3.connect(database)
    try:
        connection.executemany(
            "INSERT INTO sends (dedupe_key, source, org_id, ticket_id, status, chat_id, end_user_hint, attempts, "
            "not_before, inflight, may_have_sent, created_at, first_attempt_at, finished_at, writeback, "
            "writeback_task, writeback_attempts) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
        connection.commit()
    finally:
        connection.close()
