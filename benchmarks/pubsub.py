"""``python -m benchmarks pubsub``: the Salesforce Pub/Sub trigger, measured against the simulated API.

- ``decode``: events received, decoded and handed to a sink per second, over real gRPC and TLS on
  loopback (batches of 100, as fast as the stream allows), beside fastavro decoding alone.
- ``silence``: a stream that goes quiet (as over a connection that died without a word): how long
  the subscriber takes to notice, against its ``dead_after`` bound, and to be live again with the
  events published meanwhile. Salesforce's keepalive bound (270 s) is scaled down by ``--scale``.
"""

from __future__ import annotations

import io
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import anyio
import fastavro

from bridge.crm.salesforce.pubsub import KEEPALIVE_BOUND_SECONDS, PubSubSubscriber
from bridge.crm.salesforce.pubsub_events import PlatformEvent
from tests._pubsub import MemorySink, pubsub_sandbox, wait_for


class _CountingSink(MemorySink):
    """Keeps only the count and the replay id: the benchmark measures the stream, not a store."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    async def commit(self, events: Sequence[PlatformEvent]) -> int:
        self.count += len(events)
        self.replay_id = events[-1].replay_id
        return len(events)


def run_decode(*, events: int = 20_000) -> dict[str, Any]:
    return anyio.run(_decode, events)


async def _decode(events: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bridge-bench-pubsub-") as directory:
        async with pubsub_sandbox(Path(directory)) as sandbox:
            sandbox.publish(events, Template__c="welcome", Requested_By__c="0055g00000SBXUSAA2")
            sink = _CountingSink()
            options = sandbox.options(batch_size=100, initial_preset="EARLIEST")
            subscriber = PubSubSubscriber(options=options, login=sandbox.login(), sink=sink)
            started = time.perf_counter()
            async with anyio.create_task_group() as group:
                group.start_soon(subscriber.run)
                await wait_for(lambda: sink.count >= events, timeout=600, what=f"{events} events")
                group.cancel_scope.cancel()
            streamed = time.perf_counter() - started
            payloads = [e.payload for e in sandbox.topic.events]
            parsed = sandbox.topic.parsed
    started = time.perf_counter()
    for payload in payloads:
        fastavro.schemaless_reader(io.BytesIO(payload), parsed, None)
    decode_only = time.perf_counter() - started
    return {
        "events": events,
        "streamed events/s (gRPC+TLS, decode, sink)": round(events / streamed),
        "fastavro decode only events/s": round(len(payloads) / decode_only),
        "stream share of decode-only rate": f"{(events / streamed) / (len(payloads) / decode_only):.2f}",
    }


def run_silence(*, rounds: int = 5, scale: float = 0.01) -> dict[str, Any]:
    return anyio.run(_silence, rounds, scale)


async def _silence(rounds: int, scale: float) -> dict[str, Any]:
    keepalive = KEEPALIVE_BOUND_SECONDS * scale
    dead_after = keepalive + 30.0 * scale
    notice: list[float] = []
    recover: list[float] = []
    with tempfile.TemporaryDirectory(prefix="bridge-bench-pubsub-") as directory:
        async with pubsub_sandbox(Path(directory), keepalive_seconds=keepalive) as sandbox:
            sink = MemorySink()
            options = sandbox.options(dead_after=dead_after, backoff_base=0.05, backoff_cap=0.5)
            subscriber = PubSubSubscriber(options=options, login=sandbox.login(), sink=sink)
            async with anyio.create_task_group() as group:
                group.start_soon(subscriber.run)
                await wait_for(lambda: subscriber.status().state == "live", what="a live stream")
                for _ in range(rounds):
                    # The last response resets the watchdog: measure from it, as an operator would.
                    await wait_for(lambda: subscriber.status().last_response_at is not None)
                    noticed_dead = _more_dead_streams(subscriber)
                    silenced = time.monotonic()
                    sandbox.simulator.silence_open_streams()
                    arrived = _events_beyond(sink, len(sink.events) + 2)
                    sandbox.publish(3)
                    await wait_for(noticed_dead, timeout=dead_after * 4)
                    noticed = time.monotonic()
                    await wait_for(arrived, timeout=dead_after * 4)
                    notice.append(noticed - silenced)
                    recover.append(time.monotonic() - noticed)
                group.cancel_scope.cancel()
    return {
        "rounds": rounds,
        "keepalive bound (scaled) s": round(keepalive, 3),
        "dead_after (scaled) s": round(dead_after, 3),
        "time to notice p50 s": round(statistics.median(notice), 3),
        "time to notice max s": round(max(notice), 3),
        "notice / dead_after": f"{statistics.median(notice) / dead_after:.2f}",
        "time to recover (live, events in) p50 s": round(statistics.median(recover), 3),
        "at full scale: notice within s": round(dead_after / scale),
    }


def _more_dead_streams(subscriber: PubSubSubscriber) -> Callable[[], bool]:
    before = subscriber.status().dead_streams
    return lambda: subscriber.status().dead_streams > before


def _events_beyond(sink: MemorySink, count: int) -> Callable[[], bool]:
    return lambda: len(sink.events) > count
