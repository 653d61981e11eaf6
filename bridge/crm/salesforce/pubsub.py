"""The Salesforce Pub/Sub API subscriber: one topic's events, committed one batch at a time.

The stream is ``Subscribe`` (bidirectional gRPC). Flow control is ours: the first request asks for
``batch_size`` events (at most 100), and each later request asks only for as many as were just
committed, so no more than one batch is ever in hand or on its way, however far behind we are.

Nothing is acknowledged to Salesforce: where we are is the replay id the :class:`EventSink` stored
with the last events it committed. Every (re)connection starts from it (``CUSTOM``); with none
stored, from the configured preset. A replay id the server refuses (older than the 72 hours events
are kept, or from another org) falls back to ``EARLIEST``: the sink dedupes on ``EventUuid``, and
the events it had already seen are counted and logged.

A stream can die without a word (a proxy, a half-open connection, a stuck server). The server
answers an idle stream with an empty response within about 270 s, so a stream silent for longer
than ``dead_after`` is dead: it is dropped and a new one opened, on a new connection, with backoff.
``UNAUTHENTICATED`` gets a new session from the :class:`LoginSource` and reconnects at once.

Built on ``grpc.aio``: the worker runs on asyncio, every wait here (a read, the watchdog, a
backoff) is a cancellable coroutine, and stopping the worker cancels the call cleanly.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal, Protocol

import anyio
import grpc
import grpc.aio

from bridge import _backoff
from bridge.crm.salesforce._pubsub import pubsub_api_pb2 as pb2
from bridge.crm.salesforce._pubsub import pubsub_api_pb2_grpc as pb2_grpc
from bridge.crm.salesforce.pubsub_events import EventDecoder, PlatformEvent, UnknownSchema
from bridge.errors import BridgeError, CRMAuthError, CRMError, CRMRequestError, CRMUnavailable, LeaseLost

logger = logging.getLogger(__name__)

PUBSUB_TARGET = "api.pubsub.salesforce.com:7443"
MAX_BATCH = 100  # the most num_requested Salesforce honours on one stream
KEEPALIVE_BOUND_SECONDS = 270.0  # Salesforce answers an idle stream within this
ReplayPreset = Literal["LATEST", "EARLIEST"]
StreamState = Literal["starting", "connecting", "live", "reconnecting", "stopped"]
_Fault = Literal["auth", "replay_refused", "config", "transient"]
_ERROR_PREFIX = "sfdc.platform.eventbus.grpc."
_REPLAY_REFUSED = {"subscription.fetch.replayid.corrupted", "subscription.fetch.replayid.validation.failed"}
# Errors an admin has to fix (a topic that does not exist, a user who may not subscribe, an org out of
# its daily delivery allocation): still retried, slowly, since fixing them needs no restart.
_CONFIG_STATUSES = {grpc.StatusCode.NOT_FOUND, grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.INVALID_ARGUMENT}
_MAX_MESSAGE_BYTES = 32 * 1024 * 1024  # 100 events of up to 1 MB may not fit gRPC's 4 MB default


@dataclass(frozen=True)
class PubSubLogin:
    """What the Pub/Sub API authenticates a call with. ``repr`` never shows the token."""

    access_token: str
    instance_url: str
    org_id: str  # 18 characters: the tenant id

    def __repr__(self) -> str:
        return f"PubSubLogin(instance_url={self.instance_url!r}, org_id={self.org_id!r})"

    def metadata(self) -> tuple[tuple[str, str], ...]:
        return (("accesstoken", self.access_token), ("instanceurl", self.instance_url), ("tenantid", self.org_id))


class LoginSource(Protocol):
    """The bridge's Salesforce login, seen from the subscriber."""

    async def login(self) -> PubSubLogin:
        """The current session (logging in if there is none yet)."""
        ...

    async def renew(self, refused: PubSubLogin) -> PubSubLogin:
        """Salesforce refused ``refused``: a new session (unless another caller already got one)."""
        ...


@dataclass(frozen=True)
class ResumePoint:
    """Where a subscription resumes: after ``replay_id`` (None: nothing stored yet), and when the
    bridge first subscribed to the stream (what ``LATEST`` counts from)."""

    replay_id: bytes | None
    first_subscribed_at: float


class EventSink(Protocol):
    """Where events go: the store, in phase with the replay id that says how far we are."""

    async def resume_point(self) -> ResumePoint:
        """Where to resume (recording, the first time, that the stream is now subscribed to)."""
        ...

    async def commit(self, events: Sequence[PlatformEvent]) -> int:
        """Record the events and the last one's replay id in one transaction; return how many were
        new (the others' ``EventUuid`` had been committed before)."""
        ...

    async def checkpoint(self, replay_id: bytes) -> None:
        """Everything up to ``replay_id`` has been seen (an idle stream's keepalive): store it."""
        ...


@dataclass(frozen=True)
class SubscriberOptions:
    topic: str  # e.g. /event/CCAI_SMS_Request__e
    target: str = PUBSUB_TARGET
    root_certificates: bytes | None = None  # None: the system's
    batch_size: int = MAX_BATCH
    # With no stored replay id: LATEST takes only events created since the bridge first subscribed
    # (less ``start_margin`` for clocks that differ), EARLIEST all that Salesforce keeps (72 h).
    initial_preset: ReplayPreset = "LATEST"
    start_margin: float = 60.0
    dead_after: float = KEEPALIVE_BOUND_SECONDS + 30.0
    backoff_base: float = 1.0
    backoff_cap: float = 60.0
    call_timeout: float = 30.0  # GetSchema and GetTopic

    def __post_init__(self) -> None:
        if not 1 <= self.batch_size <= MAX_BATCH:
            raise ValueError(f"The Pub/Sub batch size must be 1 to {MAX_BATCH}, not {self.batch_size}.")


@dataclass(frozen=True)
class StreamStatus:
    """What the subscriber is doing and has done, for the dashboard, ``bridge status`` and /metrics."""

    topic: str
    state: StreamState = "starting"
    received: int = 0  # events received since start
    committed: int = 0  # events committed (new or seen before)
    already_seen: int = 0  # of those, events the sink had committed before (replays)
    before_start: int = 0  # events created before the bridge first subscribed (LATEST), not sent
    undecodable: int = 0
    reconnects: int = 0
    dead_streams: int = 0  # reconnects because the stream fell silent
    replay_fallbacks: int = 0  # stored replay ids refused, resumed from EARLIEST
    last_event_at: float | None = None  # when the last event arrived (seconds since the epoch)
    last_response_at: float | None = None  # events or keepalive
    lag_seconds: float | None = None  # from the last committed event's creation to its commit
    problem: str | None = None  # the last failure, until a stream is live again

    @property
    def in_hand(self) -> int:
        return self.received - self.committed


@dataclass(frozen=True)
class TopicAccess:
    name: str
    schema_id: str
    can_subscribe: bool


class _StreamFailed(Exception):
    def __init__(self, fault: _Fault, reason: str, *, dead: bool = False) -> None:
        super().__init__(reason)
        self.fault = fault
        self.reason = reason
        self.dead = dead


@dataclass
class _Fallback:
    """Tally of a replay from EARLIEST after a refused replay id, logged once it has caught up."""

    seen_before: int = 0
    new: int = 0


class PubSubSubscriber:
    """Holds one subscription open until cancelled; :meth:`status` says how it goes."""

    def __init__(
        self,
        *,
        options: SubscriberOptions,
        login: LoginSource,
        sink: EventSink,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        self._options = options
        self._login = login
        self._sink = sink
        self._clock = clock
        self._rng = rng or random.Random()
        self._status = StreamStatus(topic=options.topic)
        self._decoder = EventDecoder(self._fetch_schema)
        self._stub: pb2_grpc.PubSubAsyncStub | None = None
        self._session: PubSubLogin | None = None
        self._went_live = False
        self._stored: bytes | None = None  # the replay id the sink holds, as far as we know
        self._not_before: float | None = None  # events created earlier predate the subscription (LATEST)
        self._fallback: _Fallback | None = None

    def status(self) -> StreamStatus:
        return self._status

    def _update(self, **changes: Any) -> None:
        self._status = replace(self._status, **changes)

    # -- the reconnecting loop ----------------------------------------------------------------

    async def run(self) -> None:
        """Subscribe, and subscribe again after every failure, until cancelled."""
        failing_since: float | None = None
        auth_failures = 0  # in a row: the first is retried at once with a new session, later ones wait
        earliest = False
        try:
            while True:
                failure = await self._attempt(earliest=earliest)
                now = time.monotonic()
                if self._went_live:
                    failing_since, auth_failures = None, 0
                failing_since = failing_since or now
                auth_failures = auth_failures + 1 if failure.fault == "auth" else 0
                if failure.fault == "auth":
                    await self._renew()
                earliest = failure.fault == "replay_refused"
                if earliest:
                    self._fallback = _Fallback()
                    self._update(replay_fallbacks=self._status.replay_fallbacks + 1)
                immediate = earliest or auth_failures == 1
                wait = 0.0 if immediate else self._backoff(now - failing_since)
                self._update(
                    state="reconnecting",
                    reconnects=self._status.reconnects + 1,
                    dead_streams=self._status.dead_streams + failure.dead,
                    problem=failure.reason,
                )
                _log_failure(self._options.topic, failure, wait)
                await anyio.sleep(wait)
        finally:
            self._update(state="stopped")

    def _backoff(self, failing_for: float) -> float:
        return _backoff.delay(
            failing_for, rng=self._rng, base=self._options.backoff_base, cap=self._options.backoff_cap
        )

    async def _attempt(self, *, earliest: bool) -> _StreamFailed:
        """One subscription, from connecting to its end; returns why it ended."""
        self._went_live = False
        self._update(state="connecting")
        try:
            if self._session is None:
                self._session = await self._login.login()
            await self._subscribe(self._session, earliest=earliest)
        except _StreamFailed as failed:
            return failed
        except CRMError as exc:  # logging in failed
            return _StreamFailed("transient", f"Could not log in to Salesforce for the Pub/Sub API: {exc}")
        except LeaseLost:
            raise  # another process reads the stream now: this one stops

        except BridgeError as exc:  # the sink could not read or commit (the store is down)
            return _StreamFailed("transient", f"The events could not be committed: {exc}")
        except Exception as exc:
            # A bug must not end the subscription for good: the events are replayed from the store's
            # replay id after the backoff, and the traceback is in the log.
            logger.exception("The Pub/Sub subscriber failed unexpectedly")
            return _StreamFailed("transient", f"Unexpected {type(exc).__name__}; see the log.")
        return _StreamFailed("transient", "Salesforce closed the stream.")

    async def _renew(self) -> None:
        try:
            if self._session is not None:
                self._session = await self._login.renew(self._session)
        except CRMError as exc:
            logger.warning("Could not renew the Salesforce session for the Pub/Sub API: %s", exc)
            self._session = None

    # -- one stream ---------------------------------------------------------------------------

    async def _subscribe(self, session: PubSubLogin, *, earliest: bool) -> None:
        """Returns when the server ends the stream; raises :class:`_StreamFailed` otherwise."""
        first = await self._first_request(earliest=earliest)
        channel = _channel(self._options)
        try:
            self._stub = pb2_grpc.PubSubStub(channel)
            requests = _Requests(first)
            call = self._stub.Subscribe(requests, metadata=session.metadata())
            while (response := await self._read(call)) is not None:
                await self._handle(requests, response)
        except grpc.aio.AioRpcError as exc:
            raise _classify(exc) from exc
        finally:
            self._stub = None
            with anyio.CancelScope(shield=True):
                await channel.close(grace=None)

    async def _first_request(self, *, earliest: bool) -> pb2.FetchRequest:
        """CUSTOM after the stored replay id; with none (or one refused), EARLIEST, and for LATEST
        the events created before the first subscription are skipped. Never Salesforce's own LATEST:
        a first subscriber that died before its first commit would leave its successor starting at
        a later tip, and the events in between would be lost."""
        point = await self._sink.resume_point()
        self._stored = point.replay_id
        latest = self._options.initial_preset == "LATEST"
        self._not_before = point.first_subscribed_at - self._options.start_margin if latest else None
        batch = self._options.batch_size
        topic = self._options.topic
        if point.replay_id and not earliest:
            return pb2.FetchRequest(
                topic_name=topic, replay_preset=pb2.CUSTOM, replay_id=point.replay_id, num_requested=batch
            )
        return pb2.FetchRequest(topic_name=topic, replay_preset=pb2.EARLIEST, num_requested=batch)

    async def _read(
        self, call: grpc.aio.StreamStreamCall[pb2.FetchRequest, pb2.FetchResponse]
    ) -> pb2.FetchResponse | None:
        """The next response; None when the server ended the stream. The watchdog: a stream that stays
        silent past ``dead_after`` is declared dead."""
        # asyncio.wait_for, not an anyio cancel scope: a cancelled grpc.aio read cancels its call and
        # raises a CancelledError of its own, which an anyio scope does not recognise as its timeout.
        try:
            response = await asyncio.wait_for(call.read(), self._options.dead_after)
        except TimeoutError:
            reason = (
                f"No response on the Pub/Sub stream for {self._options.dead_after:.0f} s (Salesforce answers "
                f"an idle stream within {KEEPALIVE_BOUND_SECONDS:.0f} s): the stream is dead."
            )
            raise _StreamFailed("transient", reason, dead=True) from None
        # Anything else is grpc.aio.EOF: the server ended the stream.
        return response if isinstance(response, pb2.FetchResponse) else None

    async def _handle(self, requests: _Requests, response: pb2.FetchResponse) -> None:
        self._went_live = True
        now = self._clock()
        self._update(state="live", last_response_at=now, problem=None)
        if not response.events:
            await self._idle(response)
            return
        self._update(received=self._status.received + len(response.events), last_event_at=now)
        events = [await self._decoder.decode(consumed) for consumed in response.events]
        fresh = [e for e in events if not self._before_start(e)]
        new = await self._sink.commit(fresh) if fresh else 0
        if not fresh or fresh[-1] is not events[-1]:
            await self._sink.checkpoint(events[-1].replay_id)  # past the skipped ones too
        self._stored = events[-1].replay_id
        self._counted(fresh, new, skipped=len(events) - len(fresh))
        # Flow control: ask for exactly as many as were just handled, never more.
        requests.send(pb2.FetchRequest(num_requested=len(events)))

    def _before_start(self, event: PlatformEvent) -> bool:
        created = event.created_at
        return self._not_before is not None and created is not None and created < self._not_before

    def _counted(self, events: Sequence[PlatformEvent], new: int, *, skipped: int) -> None:
        seen = len(events) - new
        created = events[-1].created_at if events else None
        self._update(
            committed=self._status.committed + len(events),
            already_seen=self._status.already_seen + seen,
            before_start=self._status.before_start + skipped,
            undecodable=self._status.undecodable + sum(1 for e in events if e.problem),
            lag_seconds=self._status.lag_seconds if created is None else max(0.0, self._clock() - created),
        )
        if self._fallback is not None:
            self._fallback.seen_before += seen
            self._fallback.new += new

    async def _idle(self, response: pb2.FetchResponse) -> None:
        """A keepalive: nothing is left to deliver. Everything received is committed (events are
        handled one response at a time), and the server still owes us events it does not have, so
        its latest replay id is safe to resume after: storing it keeps an idle subscription's replay
        id inside the 72 hours Salesforce keeps events."""
        if self._fallback is not None:
            logger.warning(
                "Pub/Sub %s caught up after its stored replay id was refused: %d event(s) already committed "
                "were skipped, %d new",
                self._options.topic,
                self._fallback.seen_before,
                self._fallback.new,
            )
            self._fallback = None
        latest = response.latest_replay_id
        if latest and response.pending_num_requested > 0 and latest != self._stored:
            await self._sink.checkpoint(latest)
            self._stored = latest

    async def _fetch_schema(self, schema_id: str) -> str:
        if self._stub is None or self._session is None:
            raise _StreamFailed("transient", "The stream closed while a schema was fetched.")
        request = pb2.SchemaRequest(schema_id=schema_id)
        try:
            info = await self._stub.GetSchema(
                request, metadata=self._session.metadata(), timeout=self._options.call_timeout
            )
        except grpc.aio.AioRpcError as exc:
            failure = _classify(exc)
            if failure.fault == "config":
                raise UnknownSchema(f"Salesforce would not give schema {schema_id}: {failure.reason}") from exc
            raise failure from exc
        return info.schema_json


async def topic_access(options: SubscriberOptions, login: LoginSource) -> TopicAccess:
    """``GetTopic`` (for ``bridge check``): whether the topic exists and the integration user may
    subscribe to it. An expired session is renewed once."""
    session = await login.login()
    for attempt in (1, 2):
        channel = _channel(options)
        try:
            stub = pb2_grpc.PubSubStub(channel)
            request = pb2.TopicRequest(topic_name=options.topic)
            info = await stub.GetTopic(request, metadata=session.metadata(), timeout=options.call_timeout)
        except grpc.aio.AioRpcError as exc:
            failure = _classify(exc)
            if failure.fault == "auth" and attempt == 1:
                session = await login.renew(session)
                continue
            raise _translate(failure, options.topic) from exc
        finally:
            await channel.close(grace=None)
        return TopicAccess(name=info.topic_name, schema_id=info.schema_id, can_subscribe=info.can_subscribe)
    raise AssertionError("unreachable: the second attempt returns or raises")


class _Requests:
    """The client's half of the stream: FetchRequests, sent as they are queued."""

    def __init__(self, first: pb2.FetchRequest) -> None:
        self._queue: asyncio.Queue[pb2.FetchRequest] = asyncio.Queue()
        self._queue.put_nowait(first)

    def send(self, request: pb2.FetchRequest) -> None:
        self._queue.put_nowait(request)

    def __aiter__(self) -> AsyncIterator[pb2.FetchRequest]:
        return self

    async def __anext__(self) -> pb2.FetchRequest:
        return await self._queue.get()


def _channel(options: SubscriberOptions) -> grpc.aio.Channel:
    credentials = grpc.ssl_channel_credentials(root_certificates=options.root_certificates)
    return grpc.aio.secure_channel(
        options.target, credentials, options=[("grpc.max_receive_message_length", _MAX_MESSAGE_BYTES)]
    )


def _classify(exc: grpc.aio.AioRpcError) -> _StreamFailed:
    """What a failed call means for the subscription, from its status and Salesforce's error-code trailer."""
    status = exc.code()
    code = _trailer(exc, "error-code").removeprefix(_ERROR_PREFIX)
    reason = f"{status.name}: {exc.details() or 'no details'}" + (f" ({code})" if code else "")
    if status == grpc.StatusCode.UNAUTHENTICATED or code.startswith("service.auth."):
        return _StreamFailed("auth", reason)
    if code in _REPLAY_REFUSED:
        return _StreamFailed("replay_refused", reason)
    if status in _CONFIG_STATUSES:
        return _StreamFailed("config", reason)
    return _StreamFailed("transient", reason)


def _trailer(exc: grpc.aio.AioRpcError, wanted: str) -> str:
    # At run time this is a grpc.aio.Metadata of (key, value) pairs; the stubs describe the sync API's.
    metadata: Any = exc.trailing_metadata()
    for key, value in metadata or ():
        if key == wanted:
            return value.decode() if isinstance(value, bytes) else str(value)
    return ""


def _translate(failure: _StreamFailed, topic: str) -> CRMError:
    message = f"The Salesforce Pub/Sub API refused {topic}: {failure.reason}"
    if failure.fault == "auth":
        return CRMAuthError(message)
    if failure.fault == "config":
        return CRMRequestError(message)
    return CRMUnavailable(message)


def _log_failure(topic: str, failure: _StreamFailed, wait: float) -> None:
    if failure.fault == "replay_refused":
        logger.warning(
            "Pub/Sub %s refused the stored replay id (%s): resuming from the earliest retained event; "
            "events already committed are skipped by their EventUuid",
            topic,
            failure.reason,
        )
        return
    logger.warning("Pub/Sub %s: %s Reconnecting in %.1f s.", topic, failure.reason, wait)
