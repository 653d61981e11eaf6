"""The overview's gauges on ``/metrics``: read from the store at scrape time, at most once in a while."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

from bridge.metrics import Metrics
from bridge.model import QueueSummary
from bridge.ops.overview import Overview, publish_gauges


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
