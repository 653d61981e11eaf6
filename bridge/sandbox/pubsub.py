"""A simulated Salesforce Pub/Sub API: the published ``eventbus.v1.PubSub`` service over TLS.

Answers as Salesforce documents it: auth by the ``accesstoken``, ``instanceurl`` and ``tenantid``
metadata; ``Subscribe`` is pull-based (events are sent only as far as ``num_requested`` allows,
at most 100 outstanding), an idle stream gets an empty ``FetchResponse`` (the keepalive, with the
latest replay id) within ``keepalive_seconds`` (270 s by default), and a stream whose client asks
for nothing more is closed after ``consumer_timeout`` (about a minute, per Salesforce's examples).
Errors carry Salesforce's ``error-code`` trailer (``sfdc.platform.eventbus.grpc.…``) and an
``rpcId`` in the message. ``PublishStream`` and the beta ``ManagedSubscribe`` are not simulated.

Fault switches (:class:`PubSubFaults`, changed at any time): a silent server (streams, open or
new, stay open but never send again, not even keepalives), ``UNAUTHENTICATED`` after N more events
(the session is revoked, as when a token expires mid-stream), and every stored replay id refused
(as for one from another org). :meth:`PubSubSimulator.silence_open_streams` makes the open streams
go quiet as over a connection that died without a word, while new ones work; a server restart
(:meth:`PubSubServer.restart`, or ``stop`` then ``start``) cuts every stream and keeps the events;
a consumer too slow to ask for more meets the consumer timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import uuid
from collections.abc import AsyncIterator, Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any, NoReturn

import grpc
import grpc.aio

from bridge.crm.salesforce._pubsub import pubsub_api_pb2 as pb2
from bridge.crm.salesforce._pubsub import pubsub_api_pb2_grpc as pb2_grpc
from bridge.sandbox._eventbus import (
    BusEvent,
    EventBus,
    EventField,
    PublishRefused,
    Topic,
    replay_bytes,
    replay_position,
)

logger = logging.getLogger(__name__)

ERROR_PREFIX = "sfdc.platform.eventbus.grpc."
MAX_REQUESTED = 100
KEEPALIVE_SECONDS = 270.0
CONSUMER_TIMEOUT_SECONDS = 60.0

# The platform event the Salesforce project publishes to ask for an SMS (salesforce/force-app).
SMS_REQUEST_EVENT = "CCAI_SMS_Request__e"
SMS_REQUEST_FIELDS = (
    EventField("Case_Id__c", "string"),
    EventField("Template__c", "string"),
    EventField("Requested_By__c", "string"),
    EventField("Idempotency_Key__c", "string"),
    EventField("Ignore_Send_Window__c", "boolean"),
)


@dataclass
class PubSubFaults:
    silent: bool = False
    unauthenticated_after: int | None = None  # events still delivered before the session is refused
    refuse_replay: bool = False  # every CUSTOM replay id is "corrupted", as one from another org


@dataclass
class PubSubStats:
    """What the simulator saw, for tests and the sandbox's state page."""

    subscribes: int = 0
    open_streams: int = 0
    requested: list[int] = field(default_factory=list)  # every num_requested, in order
    delivered: int = 0
    keepalives: int = 0
    idle_closed: int = 0
    refused: list[str] = field(default_factory=list)  # error codes, without the common prefix


@dataclass(eq=False)
class _Stream:
    pending: int
    error: tuple[grpc.StatusCode, str, str] | None = None
    silent: bool = False  # went quiet, as over a half-open connection


class PubSubSimulator(pb2_grpc.PubSubServicer):
    """The service itself; :class:`PubSubServer` puts it on a port."""

    def __init__(
        self,
        *,
        bus: EventBus,
        org_id: str,
        instance_url: str,
        valid_tokens: Collection[str],
        keepalive_seconds: float = KEEPALIVE_SECONDS,
        consumer_timeout: float = CONSUMER_TIMEOUT_SECONDS,
    ) -> None:
        self.bus = bus
        self.org_id = org_id
        self.instance_url = instance_url.rstrip("/").lower()
        self.valid_tokens = valid_tokens
        self.keepalive_seconds = keepalive_seconds
        self.consumer_timeout = consumer_timeout
        self.faults = PubSubFaults()
        self.stats = PubSubStats()
        self._open: set[_Stream] = set()

    def set_faults(self, **changes: Any) -> None:
        """Change fault switches (names of :class:`PubSubFaults`); open streams notice at once."""
        for name, value in changes.items():
            if not hasattr(self.faults, name):
                raise ValueError(f"{name!r} is not a Pub/Sub fault switch.")
            setattr(self.faults, name, value)
        self.bus.poke()

    def silence_open_streams(self) -> int:
        """The streams open now stay open but never send again (as over a connection that died
        without a word); new streams work. Returns how many were silenced."""
        for stream in self._open:
            stream.silent = True
        return len(self._open)

    # -- unary calls --------------------------------------------------------------------------

    async def GetTopic(self, request: pb2.TopicRequest, context: grpc.aio.ServicerContext[Any, Any]) -> pb2.TopicInfo:
        await self._authenticate(context)
        topic = await self._topic(context, request.topic_name)
        return pb2.TopicInfo(
            topic_name=topic.name,
            tenant_guid=self.org_id,
            can_publish=True,
            can_subscribe=topic.can_subscribe,
            schema_id=topic.schema_id,
            rpc_id=_rpc_id(),
        )

    async def GetSchema(
        self, request: pb2.SchemaRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb2.SchemaInfo:
        await self._authenticate(context)
        if not request.schema_id:
            await self._refuse(context, grpc.StatusCode.INVALID_ARGUMENT, "schema.validation.failed", "No schema id.")
        topic = self.bus.schema(request.schema_id)
        if topic is None:
            await self._refuse(context, grpc.StatusCode.NOT_FOUND, "schema.meta.permission", "No such schema.")
        return pb2.SchemaInfo(schema_json=topic.schema_json, schema_id=topic.schema_id, rpc_id=_rpc_id())

    async def Publish(
        self, request: pb2.PublishRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb2.PublishResponse:
        await self._authenticate(context)
        topic = await self._topic(context, request.topic_name)
        results = []
        for event in request.events:
            try:
                published = self.bus.publish(
                    topic, event.payload, schema_id=event.schema_id, event_uuid=_uuid_or_empty(event.id)
                )
            except PublishRefused as exc:
                error = pb2.Error(code=pb2.PUBLISH, msg=str(exc))
                results.append(pb2.PublishResult(error=error, correlation_key=event.id))
            else:
                results.append(pb2.PublishResult(replay_id=replay_bytes(published.replay), correlation_key=event.id))
        return pb2.PublishResponse(results=results, schema_id=topic.schema_id, rpc_id=_rpc_id())

    # -- the stream ---------------------------------------------------------------------------

    async def Subscribe(
        self, request_iterator: AsyncIterator[pb2.FetchRequest], context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[pb2.FetchResponse]:
        token = await self._authenticate(context)
        self.stats.subscribes += 1
        first = await anext(aiter(request_iterator), None)
        if first is None:
            return
        topic = await self._topic(context, first.topic_name)
        if not topic.can_subscribe:
            await self._refuse(
                context, grpc.StatusCode.PERMISSION_DENIED, "subscription.topic.cannot.subscribe", "Not allowed."
            )
        if first.num_requested <= 0:
            await self._refuse(
                context,
                grpc.StatusCode.INVALID_ARGUMENT,
                "subscription.fetch.requested.events.invalid",
                "The number of requested events must be greater than zero.",
            )
        self.stats.requested.append(first.num_requested)
        position = await self._start(context, topic, first)
        stream = _Stream(pending=min(MAX_REQUESTED, first.num_requested))
        wake = asyncio.Event()
        unwatch = self.bus.watch(wake)
        reader = asyncio.create_task(self._read_requests(request_iterator, topic, stream, wake))
        self.stats.open_streams += 1
        self._open.add(stream)
        try:
            async for response in self._deliver(context, topic, position, stream, wake, token):
                yield response
        finally:
            reader.cancel()
            unwatch()
            self._open.discard(stream)
            self.stats.open_streams -= 1

    async def PublishStream(
        self, request_iterator: AsyncIterator[pb2.PublishRequest], context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[pb2.PublishResponse]:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "PublishStream is not simulated.")
        yield pb2.PublishResponse()  # never reached: the yield makes this a streaming handler

    async def ManagedSubscribe(
        self, request_iterator: AsyncIterator[pb2.ManagedFetchRequest], context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[pb2.ManagedFetchResponse]:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "ManagedSubscribe (beta) is not simulated.")
        yield pb2.ManagedFetchResponse()  # never reached: the yield makes this a streaming handler

    async def _start(self, context: grpc.aio.ServicerContext[Any, Any], topic: Topic, first: pb2.FetchRequest) -> int:
        if first.replay_preset == pb2.LATEST:
            return self.bus.latest
        if first.replay_preset == pb2.EARLIEST:
            return self.bus.first_retained(topic)
        if not first.replay_id:
            await self._refuse(
                context,
                grpc.StatusCode.INVALID_ARGUMENT,
                "subscription.fetch.replayid.validation.failed",
                "A CUSTOM replay needs a replay id.",
            )
        position = replay_position(first.replay_id)
        if self.faults.refuse_replay or position is None or not self.bus.accepts(topic, position):
            await self._refuse(
                context,
                grpc.StatusCode.INVALID_ARGUMENT,
                "subscription.fetch.replayid.corrupted",
                "The Replay ID validation failed. Ensure that the Replay ID is valid and within the retention window.",
            )
        return position

    async def _deliver(
        self,
        context: grpc.aio.ServicerContext[Any, Any],
        topic: Topic,
        position: int,
        stream: _Stream,
        wake: asyncio.Event,
        token: str,
    ) -> AsyncIterator[pb2.FetchResponse]:
        loop = asyncio.get_running_loop()
        last_sent = loop.time()
        idle_since: float | None = None
        while True:
            wake.clear()
            if stream.error is not None:
                await self._refuse(context, *stream.error)
            if self.faults.silent or stream.silent:
                await wake.wait()
                last_sent = loop.time()
                continue
            now = loop.time()
            if stream.pending <= 0:
                idle_since = now if idle_since is None else idle_since
                timeout = self.consumer_timeout - (now - idle_since)
                if timeout <= 0:
                    self.stats.idle_closed += 1
                    return
            else:
                idle_since = None
                batch = await self._take(context, topic, position, stream.pending, token)
                if batch:
                    position = batch[-1].replay
                    stream.pending -= len(batch)
                    self.stats.delivered += len(batch)
                    last_sent = now
                    yield _fetch_response(batch, position, stream.pending)
                    continue
                timeout = self.keepalive_seconds - (now - last_sent)
                if timeout <= 0:
                    self.stats.keepalives += 1
                    last_sent = now
                    yield _fetch_response([], position, stream.pending)
                    continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), timeout)

    async def _take(
        self, context: grpc.aio.ServicerContext[Any, Any], topic: Topic, position: int, limit: int, token: str
    ) -> list[BusEvent]:
        """The next events to send, stopping where the session is due to expire (a fault)."""
        left = self.faults.unauthenticated_after
        if left is not None and left <= 0:
            self.faults.unauthenticated_after = None
            if isinstance(self.valid_tokens, set):
                self.valid_tokens.discard(token)
            await self._refuse(context, grpc.StatusCode.UNAUTHENTICATED, "service.auth.error", _AUTH_MESSAGE)
        batch = self.bus.after(topic, position, limit if left is None else min(limit, left))
        if left is not None:
            self.faults.unauthenticated_after = left - len(batch)
        return batch

    async def _read_requests(
        self, requests: AsyncIterator[pb2.FetchRequest], topic: Topic, stream: _Stream, wake: asyncio.Event
    ) -> None:
        """Further FetchRequests add to what the server may send (at most 100 outstanding)."""
        try:
            async for request in requests:
                if request.topic_name and request.topic_name != topic.name:
                    code = "subscription.fetch.topic.mismatch"
                    stream.error = (grpc.StatusCode.INVALID_ARGUMENT, code, "The topic cannot change on a stream.")
                elif request.num_requested < 0:
                    code = "subscription.fetch.requested.events.invalid"
                    stream.error = (grpc.StatusCode.INVALID_ARGUMENT, code, "The number of events must be positive.")
                else:
                    self.stats.requested.append(request.num_requested)
                    stream.pending = min(MAX_REQUESTED, stream.pending + request.num_requested)
                wake.set()
                if stream.error is not None:
                    return
        except (grpc.aio.AioRpcError, asyncio.InvalidStateError) as exc:
            logger.debug("A simulated Pub/Sub stream stopped reading requests: %s", type(exc).__name__)

    # -- checks -------------------------------------------------------------------------------

    async def _authenticate(self, context: grpc.aio.ServicerContext[Any, Any]) -> str:
        metadata = {key: value for key, value in context.invocation_metadata() or () if isinstance(value, str)}
        token = metadata.get("accesstoken", "")
        instance = metadata.get("instanceurl", "").rstrip("/").lower()
        if not token or not instance or not metadata.get("tenantid"):
            await self._refuse(
                context, grpc.StatusCode.UNAUTHENTICATED, "service.auth.headers.invalid", "Missing auth headers."
            )
        if token not in self.valid_tokens or instance != self.instance_url or metadata["tenantid"] != self.org_id:
            await self._refuse(context, grpc.StatusCode.UNAUTHENTICATED, "service.auth.error", _AUTH_MESSAGE)
        return token

    async def _topic(self, context: grpc.aio.ServicerContext[Any, Any], name: str) -> Topic:
        if not name:
            await self._refuse(context, grpc.StatusCode.INVALID_ARGUMENT, "topic.validation.empty", "No topic name.")
        topic = self.bus.topics.get(name)
        if topic is None:
            await self._refuse(
                context, grpc.StatusCode.NOT_FOUND, "topic.not.found", f"The topic {name} was not found."
            )
        return topic

    async def _refuse(
        self, context: grpc.aio.ServicerContext[Any, Any], status: grpc.StatusCode, code: str, message: str
    ) -> NoReturn:
        self.stats.refused.append(code)
        rpc_id = _rpc_id()
        trailers = (("error-code", ERROR_PREFIX + code), ("rpc-id", rpc_id))
        await context.abort(status, f"{message} rpcId: {rpc_id}", trailing_metadata=trailers)
        raise AssertionError("abort() returned")  # it raises; this keeps the type checker's NoReturn honest


_AUTH_MESSAGE = "An authentication exception occurred. Provide valid authentication via metadata headers."


def _rpc_id() -> str:
    return str(uuid.uuid4())


def _uuid_or_empty(value: str) -> str:
    try:
        return str(uuid.UUID(value))
    except ValueError:
        return ""


def _fetch_response(events: list[BusEvent], position: int, pending: int) -> pb2.FetchResponse:
    return pb2.FetchResponse(
        events=[
            pb2.ConsumerEvent(
                event=pb2.ProducerEvent(id=e.uuid, schema_id=e.schema_id, payload=e.payload),
                replay_id=replay_bytes(e.replay),
            )
            for e in events
        ],
        latest_replay_id=replay_bytes(position),
        rpc_id=_rpc_id(),
        pending_num_requested=pending,
    )


class PubSubServer:
    """The simulator on a TLS port of 127.0.0.1, which can be stopped and started again on that port.

    Runs beside the sandbox's uvicorn servers as one of them: :meth:`serve` until ``should_exit``.
    """

    def __init__(self, simulator: PubSubSimulator, *, cert: bytes, key: bytes, port: int = 0) -> None:
        self.simulator = simulator
        self.port = port
        self.should_exit = False
        self._credentials = grpc.ssl_server_credentials([(key, cert)])
        self._server: grpc.aio.Server | None = None

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self._server is not None

    async def start(self) -> None:
        server = grpc.aio.server()
        pb2_grpc.add_PubSubServicer_to_server(self.simulator, server)
        self.port = server.add_secure_port(f"127.0.0.1:{self.port}", self._credentials)
        await server.start()
        self._server = server

    async def stop(self, grace: float | None = None) -> None:
        """Stop serving; open streams are cut (clients see ``UNAVAILABLE``). Events are kept."""
        if self._server is not None:
            server, self._server = self._server, None
            await server.stop(grace)

    async def restart(self) -> None:
        await self.stop()
        await self.start()

    async def serve(self) -> None:
        """Serve until ``should_exit`` (as uvicorn's servers do), or until cancelled."""
        await self.start()
        try:
            while not self.should_exit:
                await asyncio.sleep(0.1)
        finally:
            await self.stop(grace=1)

    async def control(self, changes: Mapping[str, Any]) -> dict[str, Any]:
        """The sandbox's control route: fault switches (``faults``), ``silence_open_streams``,
        ``stop``, ``start`` or ``restart`` the server, and ``publish`` requests as a Flow would (one
        ``{"values": {...}, "count": N}`` or a list of them). Answers with :meth:`state`."""
        if faults := changes.get("faults"):
            self.simulator.set_faults(**faults)
        if changes.get("silence_open_streams"):
            self.simulator.silence_open_streams()
        for action in ("stop", "start", "restart"):
            if changes.get(action):
                await getattr(self, action)()
        publish = changes.get("publish") or []
        for request in [publish] if isinstance(publish, Mapping) else publish:
            topic = self.simulator.bus.topics[request.get("topic", f"/event/{SMS_REQUEST_EVENT}")]
            for _ in range(int(request.get("count", 1))):
                self.simulator.bus.publish_values(topic, request.get("values", {}))
        return self.state()

    def state(self) -> dict[str, Any]:
        bus = self.simulator.bus
        return {
            "target": self.target,
            "running": self.running,
            "faults": dataclasses.asdict(self.simulator.faults),
            "stats": dataclasses.asdict(self.simulator.stats),
            "topics": {name: {"schema_id": t.schema_id, "retained": len(t.events)} for name, t in bus.topics.items()},
        }


def sms_request_bus(*, clock: Callable[[], float] | None = None) -> EventBus:
    """An event bus with the Salesforce project's SMS request event on it."""
    bus = EventBus() if clock is None else EventBus(clock=clock)
    bus.add_platform_event(SMS_REQUEST_EVENT, SMS_REQUEST_FIELDS)
    return bus
