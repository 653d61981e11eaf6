"""``python -m benchmarks SCENARIO``: measure the bridge against its ceilings (not a test)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from benchmarks.calls import run_calls
from benchmarks.chats import run_chats
from benchmarks.faults import FAULTS, run_faults, run_recovery
from benchmarks.ingest import run_ingest
from benchmarks.latency import run_latency as run_event_latency
from benchmarks.pipeline import run_pipeline
from benchmarks.pubsub import run_decode, run_latency, run_replay, run_silence
from benchmarks.zendesk import run_zendesk


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    scenarios = parser.add_subparsers(required=True, metavar="SCENARIO")
    pipeline = scenarios.add_parser("pipeline", help="queued events sent by worker processes on PostgreSQL")
    pipeline.add_argument("--database-url", required=True, help="a PostgreSQL URL; a throw-away schema is used")
    pipeline.add_argument("--events", type=int, default=1000)
    pipeline.add_argument("--workers", type=int, default=3)
    pipeline.add_argument("--latency", type=float, default=0.2, help="simulated CCAI latency in seconds")
    pipeline.add_argument("--jitter", type=float, default=0.0, help="extra random latency before CCAI counts a request")
    pipeline.add_argument("--rate", type=float, default=10.0, help="the simulated tenant's limit per second")
    pipeline.add_argument(
        "--window", choices=("bucket", "sliding"), default="bucket", help="how the simulated CCAI counts its limit"
    )
    pipeline.add_argument("--max-seconds", type=float, help="stop measuring after this long")
    pipeline.add_argument("--cpu-load", action="store_true", help="keep one core busy with another process meanwhile")
    pipeline.add_argument("--headroom", type=float, help="CCAI_RATE_HEADROOM for the workers (default: the setting's)")
    pipeline.set_defaults(
        run=lambda a: run_pipeline(
            database_url=a.database_url,
            events=a.events,
            workers=a.workers,
            latency=a.latency,
            jitter=a.jitter,
            rate=a.rate,
            window=a.window,
            max_seconds=a.max_seconds,
            cpu_load=a.cpu_load,
            headroom=a.headroom,
        )
    )
    latency = scenarios.add_parser(
        "latency", help="event -> SMS and agent sends with ?wait=, embedded worker on SQLite vs separate workers"
    )
    latency.add_argument("--database-url", required=True, help="a PostgreSQL URL; a throw-away schema is used")
    latency.add_argument("--events", type=int, default=60, help="outbound messages timed per deployment")
    latency.add_argument("--agent-sends", type=int, default=20, help="agent sends with ?wait= timed per deployment")
    latency.add_argument("--interval", type=float, default=0.3, help="seconds between two samples")
    latency.set_defaults(
        run=lambda a: run_event_latency(
            database_url=a.database_url, events=a.events, agent_sends=a.agent_sends, interval=a.interval
        )
    )
    ingest = scenarios.add_parser("ingest", help="acks per second of one bridge serve on SQLite vs a bare ceiling")
    ingest.add_argument("--seconds", type=float, default=10.0, help="load duration per measurement")
    ingest.add_argument("--concurrency", type=int, default=16)
    ingest.add_argument("--grow", type=int, default=0, metavar="N", help="measure again with N finished records")
    ingest.set_defaults(run=lambda a: run_ingest(seconds=a.seconds, concurrency=a.concurrency, grow=a.grow))
    chats = scenarios.add_parser("chats", help="the chat sync with many chats ending within one minute")
    chats.add_argument("--chats", type=int, default=1000)
    chats.add_argument("--interval", type=float, default=10.0, help="BRIDGE_CHAT_SYNC_SECONDS")
    chats.set_defaults(run=lambda a: run_chats(chats=a.chats, interval=a.interval))
    calls = scenarios.add_parser("calls", help="Salesforce API calls per SMS, counted at the simulated org")
    calls.add_argument("--burst", type=int, default=100)
    calls.set_defaults(run=lambda a: run_calls(burst=a.burst))
    faults = scenarios.add_parser("faults", help="a long random mix of process, link and clock faults on PostgreSQL")
    faults.add_argument("--database-url", required=True, help="a PostgreSQL URL; a throw-away schema is used")
    faults.add_argument("--workers", type=int, default=3)
    faults.add_argument("--cases", type=int, default=120)
    faults.add_argument("--seconds", type=float, default=90.0, help="how long faults are injected")
    faults.add_argument("--seed", type=int, default=1)
    faults.add_argument("--faults", default=",".join(FAULTS), help=f"a comma-separated choice of {', '.join(FAULTS)}")
    faults.set_defaults(
        run=lambda a: run_faults(
            database_url=a.database_url,
            workers=a.workers,
            cases=a.cases,
            seconds=a.seconds,
            seed=a.seed,
            faults=tuple(f.strip() for f in a.faults.split(",") if f.strip()),
        )
    )
    recovery = scenarios.add_parser("recovery", help="kill -9 of the worker holding the work, beside a live one")
    recovery.add_argument("--database-url", required=True, help="a PostgreSQL URL; a throw-away schema is used")
    recovery.add_argument("--sends", type=int, default=20)
    recovery.add_argument("--lease", type=float, default=20.0, help="BRIDGE_LEASE_SECONDS (the default: 20)")
    recovery.set_defaults(run=lambda a: run_recovery(database_url=a.database_url, sends=a.sends, lease=a.lease))
    zendesk = scenarios.add_parser("zendesk", help="Zendesk API calls per SMS, and the webhook door's ack times")
    zendesk.add_argument("--burst", type=int, default=100)
    zendesk.add_argument("--acks", type=int, default=300, help="signed webhooks timed, one at a time and concurrently")
    zendesk.add_argument("--concurrency", type=int, default=8)
    zendesk.set_defaults(run=lambda a: run_zendesk(burst=a.burst, acks=a.acks, concurrency=a.concurrency))
    pubsub = scenarios.add_parser("pubsub", help="the Salesforce Pub/Sub trigger against the simulated API")
    kinds = pubsub.add_subparsers(required=True, metavar="KIND")
    latency = kinds.add_parser("latency", help="event published -> SMS accepted by CCAI, p50/p99")
    latency.add_argument("--events", type=int, default=100)
    latency.add_argument("--interval", type=float, default=0.2, help="seconds between two publications")
    latency.set_defaults(run=lambda a: run_latency(events=a.events, interval=a.interval))
    decode = kinds.add_parser("decode", help="events received and decoded per second")
    decode.add_argument("--events", type=int, default=20_000)
    decode.set_defaults(run=lambda a: run_decode(events=a.events))
    silence = kinds.add_parser("silence", help="time to notice and recover from a silent stream")
    silence.add_argument("--rounds", type=int, default=5)
    silence.add_argument("--scale", type=float, default=0.01, help="of Salesforce's 270 s keepalive bound")
    silence.set_defaults(run=lambda a: run_silence(rounds=a.rounds, scale=a.scale))
    replay = kinds.add_parser("replay", help="events published during an outage, a worker killed part-way")
    replay.add_argument("--events", type=int, default=10_000)
    replay.add_argument("--cases", type=int, default=200)
    replay.add_argument("--database-url", help="a PostgreSQL URL (default: SQLite in a temporary folder)")
    replay.set_defaults(run=lambda a: run_replay(events=a.events, cases=a.cases, database_url=a.database_url))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    figures: dict[str, Any] = args.run(args)
    width = max(len(k) for k in figures)
    print("\n".join(f"{name:<{width}}  {value}" for name, value in figures.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
