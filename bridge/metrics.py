"""Prometheus metrics: counters kept by this process, and gauges read from the store at scrape time.

The gauges (queue depth, oldest queued send, sends by status, CRM API usage, live workers) come
from the store, so they cover every process; they are cached for a few seconds, so that frequent
or concurrent scrapes cost the store one read, not one each. The counters and the CCAI latency
histogram cover the process that serves ``/metrics`` (the web process and its embedded worker).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from bridge.errors import AuthenticationFailed, StoreError

if TYPE_CHECKING:
    from bridge.overview import Overview

CACHE_SECONDS = 5.0
UNAUTHORIZED = AuthenticationFailed.reason


class Metrics:
    """Every metric the bridge keeps; each instance has its own registry (tests build many apps)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.events_received = Counter("bridge_events_received", "Events received, by source", ["source"], registry=r)
        self.events_duplicate = Counter(
            "bridge_events_duplicate", "Events already known (redeliveries), by source", ["source"], registry=r
        )
        self.auth_failures = Counter("bridge_auth_failures", "Refused credentials, by door", ["door"], registry=r)
        self.refusals = Counter(
            "bridge_refusals", "Requests refused, by door and reason (401s included)", ["door", "reason"], registry=r
        )
        self.sends_finished = Counter("bridge_sends_finished", "Sends finished, by outcome", ["status"], registry=r)
        self.retries = Counter("bridge_send_retries", "Sends put back for a retry, by cause", ["cause"], registry=r)
        self.ccai_latency = Histogram(
            "bridge_ccai_request_seconds",
            "CCAI SMS request latency",
            buckets=(0.05, 0.1, 0.2, 0.3, 0.5, 1, 2, 5, 10, 15, 30),
            registry=r,
        )
        self.ccai_responses = Counter(
            "bridge_ccai_responses", "CCAI answers by HTTP status ('error' when none came)", ["code"], registry=r
        )
        self.ccai_lookups = Counter(
            "bridge_ccai_chat_lookups",
            "Chat lookups after a lost answer, by result (found, not_found, error)",
            ["result"],
            registry=r,
        )
        self.salesforce_calls = Counter(
            "bridge_salesforce_calls",
            "Salesforce API calls, by operation and result",
            ["operation", "result"],
            registry=r,
        )
        self.chat_syncs = Counter(
            "bridge_chat_syncs", "Chat sync polls, by outcome (ok, error)", ["outcome"], registry=r
        )
        self.chats_updated = Counter(
            "bridge_chats_updated",
            "Chats whose news changed what their ticket shows, by source",
            ["source"],
            registry=r,
        )
        self.writeback_failures = Counter(
            "bridge_writeback_failures", "Write-back attempts that failed, by part", ["part"], registry=r
        )

    def refused(self, door: str, reason: str) -> None:
        """Count a refused request; wrong credentials also count as an authentication failure."""
        self.refusals.labels(door, reason).inc()
        if reason == UNAUTHORIZED:
            self.auth_failures.labels(door).inc()

    def watch(self, read: Callable[[], Overview]) -> None:
        """Publish gauges from ``read`` (called at most every few seconds)."""
        self.registry.register(_StoreCollector(read))

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _StoreCollector(Collector):
    def __init__(self, read: Callable[[], Overview], *, clock: Callable[[], float] = time.monotonic) -> None:
        self._read = read
        self._clock = clock
        self._lock = threading.Lock()
        self._cached: tuple[float, Overview | None] = (-CACHE_SECONDS, None)

    def _gauges(self) -> Overview | None:
        with self._lock:  # concurrent scrapes wait for one read instead of each making their own
            read_at, gauges = self._cached
            if self._clock() - read_at >= CACHE_SECONDS:
                try:
                    gauges = self._read()
                except StoreError:
                    gauges = None
                self._cached = (self._clock(), gauges)
            return gauges

    def collect(self) -> Iterator[Metric]:
        overview = self._gauges()
        if overview is None:
            return
        queue = overview.queue
        by_status = GaugeMetricFamily("bridge_sends", "Sends in the store, by status", labels=["status"])
        for status, count in sorted(queue.by_status.items()):
            by_status.add_metric([status], count)
        yield by_status
        queued = queue.by_status.get("queued", 0)
        yield GaugeMetricFamily("bridge_queue_depth", "Sends waiting to be sent", value=queued)
        yield GaugeMetricFamily(
            "bridge_oldest_queued_seconds", "Age of the oldest queued send", value=queue.oldest_queued_seconds or 0
        )
        yield GaugeMetricFamily(
            "bridge_writebacks_pending", "Outcomes waiting to reach Salesforce", value=queue.writebacks_pending
        )
        yield GaugeMetricFamily("bridge_workers_alive", "Workers with a recent heartbeat", value=len(overview.workers))
        if overview.chat_sync is not None and overview.chat_sync.polled_at is not None:
            yield GaugeMetricFamily(
                "bridge_chat_sync_lag_seconds",
                "Seconds since the chat sync last read CCAI",
                value=time.time() - overview.chat_sync.polled_at,
            )
        if overview.api_usage is not None:
            api = GaugeMetricFamily("bridge_salesforce_api_usage", "Salesforce API calls today", labels=["kind"])
            api.add_metric(["used"], overview.api_usage.used)
            api.add_metric(["allowed"], overview.api_usage.total)
            yield api
