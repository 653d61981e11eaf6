"""The overview's gauges on ``/metrics``: read from the store at scrape time, at most once in a while."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

from bridge.metrics import Metrics
from bridge.model import NewSend, QueueSummary
from bridge.ops.overview import Overview, publish_gauges, read_overview, workers_problem
from bridge.store import Store
from tests._clock import Clock


def overview(queued: int = 2) -> Overview:
    queue = QueueSummary(by_status={"queued": queued}, oldest_queued_seconds=3.0, writebacks_pending=1)
    return Overview(queue=queue, workers=(), api_usage=None, chat_sync=None)


def test_store_gauges_are_read_at_most_once_per_few_seconds() -> None:
    reads: list[float] = []

    def read() -> Overview:
        reads.append(time.monotonic())
        time.sleep(0.05)  # a store read takes a while: concurrent scrapes overlap it
        return overview()

    metrics = Metrics()
    publish_gauges(metrics, read)
    with ThreadPoolExecutor(max_workers=8) as pool:
        pages = list(pool.map(lambda _: metrics.render().decode(), range(8)))
    pages.append(metrics.render().decode())
    assert len(reads) == 1
    for page in pages:
        assert "bridge_queue_depth 2.0" in page
        assert "bridge_writebacks_pending 1.0" in page


def test_sends_waiting_while_no_worker_gets_through_are_a_problem(sqlite_store: Store, clock: Clock) -> None:
    """R8: the web door acknowledged events while every worker was wedged on a dead database link;
    its /readyz now says so once sends have waited too long."""
    store = sqlite_store
    store.sends.create(NewSend(dedupe_key="api:auto:1", source="api", origin="person", ticket_id="5005g00000SBX01AAH"))
    assert workers_problem(store, unhealthy_after=60) is None  # nothing has waited yet
    clock.advance(90)
    assert "no worker is running" in (workers_problem(store, unhealthy_after=60) or "")
    store.status.beat("w1", host="h", pid=1, pass_ok=True, pass_error=None)
    assert workers_problem(store, unhealthy_after=60) is None
    clock.advance(25)
    store.status.beat("w1", host="h", pid=1, pass_ok=False, pass_error="the store is unavailable (no answer in time)")
    clock.advance(40)
    store.status.beat("w1", host="h", pid=1, pass_ok=False, pass_error="the store is unavailable (no answer in time)")
    problem = workers_problem(store, unhealthy_after=60) or ""
    assert "no worker has completed a pass for 60 s: the store is unavailable" in problem


def test_an_event_streams_gauges_come_from_its_holders_last_report(store: Store, clock: Clock) -> None:
    store.status.put(
        "stream:/event/CCAI_SMS_Request__e",
        {
            "state": "live",
            "holder": "w1",
            "received": 5,
            "committed": 4,
            "already_seen": 1,
            "reconnects": 2,
            "lag_seconds": 0.25,
            "last_event_at": clock.now - 10,
        },
    )
    metrics = Metrics()
    publish_gauges(metrics, lambda: read_overview(store, now=clock.now))
    page = metrics.render().decode()
    stream = 'stream="/event/CCAI_SMS_Request__e"'
    assert f'bridge_stream_events{{kind="committed",{stream}}} 4.0' in page
    assert f"bridge_stream_live{{{stream}}} 1.0" in page
    assert f"bridge_stream_reconnects{{{stream}}} 2.0" in page
    assert f"bridge_stream_lag_seconds{{{stream}}} 0.25" in page


def test_a_stream_whose_holder_stopped_reporting_is_unreported(store: Store, clock: Clock) -> None:
    store.status.put("stream:/event/X__e", {"state": "live", "holder": "w1"})
    assert [s.state for s in read_overview(store, now=clock.now + 30).streams] == ["live"]
    assert [s.state for s in read_overview(store, now=clock.now + 120).streams] == ["unreported"]
