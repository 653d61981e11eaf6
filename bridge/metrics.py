"""Prometheus metrics: counters kept by this process, and gauges read from the store at scrape time.

The gauges (queue depth, oldest queued send, sends by status, Salesforce API usage) come from the
store, so they cover every process. The counters and the CCAI latency histogram cover the process
that serves ``/metrics`` (the web process and its embedded worker).
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from bridge.errors import StoreUnavailable
from bridge.store import Store


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
        self.salesforce_calls = Counter(
            "bridge_salesforce_calls",
            "Salesforce API calls, by operation and result",
            ["operation", "result"],
            registry=r,
        )
        self.writeback_failures = Counter(
            "bridge_writeback_failures", "Write-back attempts that failed, by part", ["part"], registry=r
        )

    def watch_store(self, store: Store) -> None:
        self.registry.register(_StoreCollector(store))

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _StoreCollector(Collector):
    def __init__(self, store: Store) -> None:
        self._store = store

    def collect(self) -> Iterator[Metric]:
        try:
            summary = self._store.queue_summary()
            usage = self._store.status_items("salesforce:api_usage").get("salesforce:api_usage")
        except StoreUnavailable:
            return
        by_status = GaugeMetricFamily("bridge_sends", "Sends in the store, by status", labels=["status"])
        for status, count in sorted(summary["by_status"].items()):
            by_status.add_metric([status], count)
        yield by_status
        yield GaugeMetricFamily(
            "bridge_queue_depth", "Sends waiting to be sent", value=summary["by_status"].get("queued", 0)
        )
        yield GaugeMetricFamily(
            "bridge_oldest_queued_seconds", "Age of the oldest queued send", value=summary["oldest_queued_seconds"] or 0
        )
        yield GaugeMetricFamily(
            "bridge_writebacks_pending", "Outcomes waiting to reach Salesforce", value=summary["writebacks_pending"]
        )
        if usage is not None:
            api = GaugeMetricFamily("bridge_salesforce_api_usage", "Salesforce API calls today", labels=["kind"])
            api.add_metric(["used"], usage[0]["used"])
            api.add_metric(["allowed"], usage[0]["total"])
            yield api
