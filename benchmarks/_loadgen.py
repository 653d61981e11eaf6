"""A closed-loop load generator, run as its own process: ``python -m benchmarks._loadgen``.

``CONCURRENCY`` clients post outbound messages back to back for ``SECONDS`` seconds, each with
fresh notification ids (so the bridge's dedupe never short-cuts the work), and it prints one JSON
line: acks per second and latency percentiles.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import time
from typing import Any

import httpx

from bridge.crm.salesforce.ids import to18
from bridge.sandbox.cases import SANDBOX_ORG_ID, outbound_message

_counter = itertools.count()


def _body(notifications: int) -> bytes:
    ids = [to18(f"04l{next(_counter):012d}") for _ in range(notifications)]
    cases = [to18(f"5005g0000L{i:05d}") for i in range(notifications)]
    return outbound_message(cases, org_id=SANDBOX_ORG_ID, notification_ids=ids)


async def _client(client: httpx.AsyncClient, url: str, notifications: int, until: float, out: list[float]) -> None:
    headers = {"Content-Type": "text/xml; charset=utf-8"}
    while time.monotonic() < until:
        body = _body(notifications)
        started = time.perf_counter()
        response = await client.post(url, content=body, headers=headers)
        if response.status_code != 200:
            raise RuntimeError(f"{url} answered {response.status_code}: {response.text[:200]}")
        out.append(time.perf_counter() - started)


async def run(url: str, *, seconds: float, concurrency: int, notifications: int) -> dict[str, Any]:
    latencies: list[float] = []
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=30) as client:
        started = time.monotonic()
        until = started + seconds
        await asyncio.gather(*(_client(client, url, notifications, until, latencies) for _ in range(concurrency)))
        elapsed = time.monotonic() - started
    latencies.sort()
    return {
        "requests": len(latencies),
        "per_second": round(len(latencies) / elapsed, 1),
        "p50_ms": round(latencies[len(latencies) // 2] * 1000, 1),
        "p99_ms": round(latencies[int(len(latencies) * 0.99) - 1] * 1000, 1),
        "elapsed": elapsed,
        "latencies_ms": [round(x * 1000, 2) for x in latencies],
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--notifications", type=int, default=1)
    args = parser.parse_args()
    figures = asyncio.run(
        run(args.url, seconds=args.seconds, concurrency=args.concurrency, notifications=args.notifications)
    )
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
