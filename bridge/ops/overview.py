"""The state of the whole bridge at a glance, read from the store: what ``bridge status`` prints,
the dashboard's overview shows and ``/metrics`` publishes as gauges. Every process writes what it
knows to the store, so any one process can tell the operator about all of them.

The gauges (queue depth, oldest queued send, sends by status, CRM API usage, live workers) are
cached for a few seconds, so that frequent or concurrent scrapes cost the store one read, not one each.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from bridge.crm.plugin import LAST_PUSH_KEY
from bridge.errors import StoreError
from bridge.lookup_proof import Proof
from bridge.lookup_proof import judge as judge_lookup
from bridge.metrics import Metrics
from bridge.model import QueueSummary
from bridge.store import Store
from bridge.store.status import API_USAGE_KEY, CHAT_SYNC_KEY, STREAM_KEY_PREFIX, WENT_BACK_KEY, StatusBoard, WorkerInfo
from bridge.times import iso_utc

CACHE_SECONDS = 5.0
# A stream's holder reports at least every 30 s: a report older than this says nobody holds it.
STREAM_STALE_SECONDS = 90.0


@dataclass(frozen=True)
class ReportedUsage:
    """The CRM's daily API requests, as it last reported them (Salesforce's ``Sforce-Limit-Info``)."""

    used: int
    total: int
    as_of: float


@dataclass(frozen=True)
class ChatSyncState:
    high_water: float | None  # CCAI's updated_at up to which chats have been read
    polled_at: float | None
    lag_seconds: float  # since the last poll
    chats_with_news_pending: int  # chats whose news has not reached their ticket yet


@dataclass(frozen=True)
class WentBack:
    """When the store was found to have gone back in time, and how many of the sends it flagged are
    still being looked up in CCAI before any is sent."""

    detected_at: float
    detail: str
    still_looking_up: int

    def alarm(self) -> str | None:
        """What /readyz says while the bridge is still resolving what the store lost."""
        if not self.still_looking_up:
            return None
        return (
            f"the store went back in time at {iso_utc(self.detected_at)} (a failover to a replica that was behind?): "
            f"{self.still_looking_up} unfinished send(s) are being looked up in CCAI before any is sent; events "
            "acknowledged shortly before may be lost"
        )


@dataclass(frozen=True)
class StreamState:
    """A CRM event stream (the Salesforce Pub/Sub topic), as the process holding it last reported.
    ``state`` is ``unreported`` when that report is older than :data:`STREAM_STALE_SECONDS`."""

    name: str
    state: str  # starting, connecting, live, reconnecting, stopped, or unreported
    holder: str | None
    received: int
    committed: int
    already_seen: int
    undecodable: int
    reconnects: int
    dead_streams: int
    replay_fallbacks: int
    last_event_at: float | None
    last_response_at: float | None
    lag_seconds: float | None
    problem: str | None
    reported_seconds_ago: float

    @property
    def live(self) -> bool:
        return self.state == "live"


@dataclass(frozen=True)
class LastPush:
    """When the CRM's push door (Salesforce: the outbound message) last delivered, and what."""

    door: str
    at: float
    notifications: int


@dataclass(frozen=True)
class Overview:
    queue: QueueSummary
    workers: Sequence[WorkerInfo]
    api_usage: ReportedUsage | None
    chat_sync: ChatSyncState | None
    went_back: WentBack | None = None
    streams: Sequence[StreamState] = ()
    last_push: LastPush | None = None
    lookup: Proof | None = None  # whether a lost answer's lookup that finds nothing is believed


def read_overview(store: Store, *, now: float | None = None) -> Overview:
    board = store.status
    usage = board.get(API_USAGE_KEY)
    sync = board.get(CHAT_SYNC_KEY)
    push = board.get(LAST_PUSH_KEY)
    now = time.time() if now is None else now
    return Overview(
        queue=store.history.queue_summary(),
        workers=board.workers(),
        api_usage=None if usage is None else ReportedUsage(int(usage[0]["used"]), int(usage[0]["total"]), usage[1]),
        chat_sync=None if sync is None else _chat_sync(sync[0], store.chats.lagging(), now),
        went_back=read_went_back(store),
        streams=read_streams(board, now),
        last_push=None
        if push is None
        else LastPush(str(push[0].get("door", "")), push[1], int(push[0].get("notifications", 0))),
        lookup=read_lookup_proof(store),
    )


def read_lookup_proof(store: Store) -> Proof:
    """What the chat list has shown of the bridge's own chats (:mod:`bridge.lookup_proof`)."""
    return judge_lookup(store.lookup_evidence.recent())


def read_streams(board: StatusBoard, now: float) -> list[StreamState]:
    """Every CRM event stream, as its holder last reported it."""
    return [_stream(key, record, at, now) for key, record, at in board.with_prefix(STREAM_KEY_PREFIX)]


def workers_problem(store: Store, *, unhealthy_after: float) -> str | None:
    """Why no worker is getting sends out, when sends have waited longer than ``unhealthy_after``
    (for /readyz of a web process whose workers run elsewhere): the door would go on acknowledging
    events nobody sends."""
    waited = store.history.queue_summary().oldest_queued_seconds
    if waited is None or waited <= unhealthy_after:
        return None
    workers = store.status.workers()
    if not workers:
        return f"sends have waited {waited:.0f} s and no worker is running (none has beaten for 30 s)"
    passes = [w.seconds_since_pass_ok for w in workers]
    if all(seconds is None or seconds > unhealthy_after for seconds in passes):
        errors = sorted({w.pass_error for w in workers if w.pass_error})
        return f"sends have waited {waited:.0f} s and no worker has completed a pass for {unhealthy_after:.0f} s" + (
            f": {errors[0]}" if errors else ""
        )
    return None


def read_went_back(store: Store) -> WentBack | None:
    """The last time the store was found to have gone back in time (:mod:`bridge.store.generations`)."""
    found = store.status.get(WENT_BACK_KEY)
    if found is None:
        return None
    record, _ = found
    detected_at = float(record.get("detected_at") or 0.0)
    return WentBack(
        detected_at=detected_at,
        detail=str(record.get("detail") or ""),
        still_looking_up=store.takeovers.looking_up_after_going_back(detected_at),
    )


def _stream(key: str, record: dict[str, object], reported_at: float, now: float) -> StreamState:
    def count(name: str) -> int:
        value = record.get(name)
        return int(value) if isinstance(value, int | float) else 0

    def text(name: str) -> str | None:
        value = record.get(name)
        return value if isinstance(value, str) else None

    ago = max(0.0, now - reported_at)
    state = text("state") or "unreported"
    return StreamState(
        name=key.removeprefix(STREAM_KEY_PREFIX),
        state="unreported" if ago > STREAM_STALE_SECONDS and state != "stopped" else state,
        holder=text("holder"),
        received=count("received"),
        committed=count("committed"),
        already_seen=count("already_seen"),
        undecodable=count("undecodable"),
        reconnects=count("reconnects"),
        dead_streams=count("dead_streams"),
        replay_fallbacks=count("replay_fallbacks"),
        last_event_at=_number(record.get("last_event_at")),
        last_response_at=_number(record.get("last_response_at")),
        lag_seconds=_number(record.get("lag_seconds")),
        problem=text("problem"),
        reported_seconds_ago=round(ago, 1),
    )


def _chat_sync(record: dict[str, object], pending: int, now: float) -> ChatSyncState:
    high_water, polled_at = _number(record.get("high_water")), _number(record.get("polled_at"))
    return ChatSyncState(
        high_water=high_water,
        polled_at=polled_at,
        lag_seconds=round(now - (polled_at or now), 1),
        chats_with_news_pending=pending,
    )


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and value else None


def publish_gauges(metrics: Metrics, read: Callable[[], Overview]) -> None:
    """Publish gauges from ``read`` (called at most every few seconds) on ``metrics``."""
    metrics.registry.register(_OverviewGauges(read))


class _OverviewGauges(Collector):
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
        yield from _stream_gauges(overview.streams)
        if overview.api_usage is not None:
            api = GaugeMetricFamily("bridge_salesforce_api_usage", "Salesforce API calls today", labels=["kind"])
            api.add_metric(["used"], overview.api_usage.used)
            api.add_metric(["allowed"], overview.api_usage.total)
            yield api


def _stream_gauges(streams: Sequence[StreamState]) -> Iterator[Metric]:
    if not streams:
        return
    events = GaugeMetricFamily(
        "bridge_stream_events", "Events of a CRM stream since its holder took it, by kind", labels=["stream", "kind"]
    )
    live = GaugeMetricFamily("bridge_stream_live", "1 while the stream is live, 0 otherwise", labels=["stream"])
    reconnects = GaugeMetricFamily(
        "bridge_stream_reconnects", "Times the stream was opened again (dead ones included)", labels=["stream"]
    )
    lag = GaugeMetricFamily(
        "bridge_stream_lag_seconds", "From the last committed event's creation to its commit", labels=["stream"]
    )
    silence = GaugeMetricFamily(
        "bridge_stream_last_event_age_seconds", "Seconds since the stream's last event arrived", labels=["stream"]
    )
    now = time.time()
    for stream in streams:
        for kind, value in (
            ("received", stream.received),
            ("committed", stream.committed),
            ("already_seen", stream.already_seen),
            ("undecodable", stream.undecodable),
        ):
            events.add_metric([stream.name, kind], value)
        live.add_metric([stream.name], 1 if stream.live else 0)
        reconnects.add_metric([stream.name], stream.reconnects)
        if stream.lag_seconds is not None:
            lag.add_metric([stream.name], stream.lag_seconds)
        if stream.last_event_at is not None:
            silence.add_metric([stream.name], max(0.0, now - stream.last_event_at))
    yield from (events, live, reconnects, lag, silence)
