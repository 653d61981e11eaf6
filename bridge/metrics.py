"""Prometheus metrics: the counters (and the CCAI latency histogram) this process keeps.

They cover the process that serves ``/metrics`` (the web process and its embedded worker). The
gauges that cover every process are read from the store at scrape time by
:mod:`bridge.ops.overview`, which registers them here. This module sits at the bottom: it imports
nothing of the bridge but its errors.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from bridge.errors import AuthenticationFailed

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

    def render(self) -> bytes:
        return generate_latest(self.registry)
