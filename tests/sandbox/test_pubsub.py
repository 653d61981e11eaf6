"""The simulated Pub/Sub API answers as Salesforce documents it, spoken to with the raw generated stubs."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import fastavro
import grpc
import grpc.aio
import pytest

from bridge.crm.salesforce._pubsub import pubsub_api_pb2 as pb2
from bridge.crm.salesforce._pubsub import pubsub_api_pb2_grpc as pb2_grpc
from bridge.sandbox._eventbus import EventBus, replay_bytes
from bridge.sandbox.publisher import publish_request
from tests._pubsub import PubSubSandbox, pubsub_sandbox

pytestmark = pytest.mark.anyio


@asynccontextmanager
async def client(sandbox: PubSubSandbox) -> AsyncIterator[tuple[pb2_grpc.PubSubAsyncStub, tuple[tuple[str, str], ...]]]:
    credentials = grpc.ssl_channel_credentials(root_certificates=sandbox.ca)
    async with grpc.aio.secure_channel(sandbox.server.target, credentials) as channel:
        yield pb2_grpc.PubSubStub(channel), sandbox.login().current.metadata()


def trailer(error: grpc.aio.AioRpcError, key: str) -> str:
    metadata: Any = error.trailing_metadata()  # grpc.aio.Metadata at run time; the stubs say otherwise
    return str(dict(metadata or ()).get(key, ""))


class Requests:
    def __init__(self, *first: pb2.FetchRequest) -> None:
        self.sent: list[pb2.FetchRequest] = list(first)
        self._more = anyio.Event()

    def send(self, request: pb2.FetchRequest) -> None:
        self.sent.append(request)
        self._more.set()

    async def __aiter__(self) -> AsyncIterator[pb2.FetchRequest]:
        done = 0
        while True:
            while done < len(self.sent):
                yield self.sent[done]
                done += 1
            await self._more.wait()
            self._more = anyio.Event()


async def test_the_schema_is_salesforces_and_its_id_is_the_md5_of_its_canonical_form(tmp_path: Path) -> None:
    async with pubsub_sandbox(tmp_path) as sandbox, client(sandbox) as (stub, metadata):
        topic = await stub.GetTopic(pb2.TopicRequest(topic_name="/event/CCAI_SMS_Request__e"), metadata=metadata)
        info = await stub.GetSchema(pb2.SchemaRequest(schema_id=topic.schema_id), metadata=metadata)

    schema = json.loads(info.schema_json)
    canonical = fastavro.schema.to_parsing_canonical_form(schema)
    expected = base64.urlsafe_b64encode(hashlib.md5(canonical.encode()).digest()).decode().rstrip("=")
    assert info.schema_id == topic.schema_id == expected
    assert len(expected) == 22
    assert (topic.topic_name, topic.tenant_guid, topic.can_subscribe) == (
        "/event/CCAI_SMS_Request__e",
        "00D5g00000SBXRGEA5",
        True,
    )
    fields = {f["name"]: f for f in schema["fields"]}
    assert (schema["name"], schema["namespace"]) == ("CCAI_SMS_Request__e", "com.sforce.eventbus")
    assert fields["CreatedDate"]["type"] == "long"
    assert fields["CreatedById"]["type"] == "string"
    assert fields["Case_Id__c"]["type"] == ["null", "string"]
    assert fields["Case_Id__c"]["default"] is None
    assert fields["Ignore_Send_Window__c"]["type"] == ["null", "boolean"]
    assert "EventUuid" not in fields  # Pub/Sub clients get the UUID as the event's id, not as a field


async def test_subscribe_sends_no_more_events_than_requested_and_keeps_an_idle_stream_alive(tmp_path: Path) -> None:
    async with pubsub_sandbox(tmp_path, keepalive_seconds=0.3) as sandbox, client(sandbox) as (stub, metadata):
        published = sandbox.publish(7)
        requests = Requests(
            pb2.FetchRequest(topic_name=sandbox.topic.name, replay_preset=pb2.EARLIEST, num_requested=3)
        )
        call = stub.Subscribe(requests.__aiter__(), metadata=metadata)
        first = await call.read()
        assert isinstance(first, pb2.FetchResponse)
        assert [e.event.id for e in first.events] == [e.uuid for e in published[:3]]
        assert first.pending_num_requested == 0
        assert first.latest_replay_id == replay_bytes(published[2].replay)
        # Nothing more was asked for: not even a keepalive comes. (Cancelling a read would cancel the
        # call, so the read is left waiting.)
        reading = asyncio.ensure_future(call.read())
        done, _ = await asyncio.wait([reading], timeout=0.6)
        assert not done
        requests.send(pb2.FetchRequest(num_requested=500))  # more than 100 counts as 100
        rest = await reading
        assert isinstance(rest, pb2.FetchResponse)
        assert len(rest.events) == 4
        assert rest.pending_num_requested == 96
        keepalive = await asyncio.wait_for(call.read(), 2)
        assert isinstance(keepalive, pb2.FetchResponse)
        assert list(keepalive.events) == []
        assert keepalive.latest_replay_id == replay_bytes(published[-1].replay)
        call.cancel()
    uuid.UUID(first.events[0].event.id)  # the EventUuid is a UUID


async def test_each_replay_preset_starts_where_salesforce_says(tmp_path: Path) -> None:
    async with pubsub_sandbox(tmp_path) as sandbox, client(sandbox) as (stub, metadata):
        published = sandbox.publish(4)

        async def first_ids(**start: object) -> list[str]:
            request = pb2.FetchRequest(topic_name=sandbox.topic.name, num_requested=10, **start)  # type: ignore[arg-type]
            call = stub.Subscribe(Requests(request).__aiter__(), metadata=metadata)
            try:
                response = await asyncio.wait_for(call.read(), 0.5)
            except TimeoutError:
                return []
            call.cancel()
            assert isinstance(response, pb2.FetchResponse)
            return [e.event.id for e in response.events]

        assert await first_ids(replay_preset=pb2.EARLIEST) == [e.uuid for e in published]
        assert await first_ids(replay_preset=pb2.LATEST) == []
        custom = {"replay_preset": pb2.CUSTOM, "replay_id": replay_bytes(published[1].replay)}
        assert await first_ids(**custom) == [e.uuid for e in published[2:]]


@pytest.mark.parametrize(
    ("start", "code"),
    [
        ({"replay_preset": pb2.CUSTOM}, "subscription.fetch.replayid.validation.failed"),
        ({"replay_preset": pb2.CUSTOM, "replay_id": b"\x00\x01"}, "subscription.fetch.replayid.corrupted"),
        ({"replay_preset": pb2.CUSTOM, "replay_id": replay_bytes(10**9)}, "subscription.fetch.replayid.corrupted"),
    ],
)
async def test_a_replay_id_it_cannot_honour_is_refused_with_salesforces_error_code(
    tmp_path: Path, start: dict[str, object], code: str
) -> None:
    async with pubsub_sandbox(tmp_path) as sandbox, client(sandbox) as (stub, metadata):
        request = pb2.FetchRequest(topic_name=sandbox.topic.name, num_requested=1, **start)  # type: ignore[arg-type]
        call = stub.Subscribe(Requests(request).__aiter__(), metadata=metadata)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await call.read()
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert trailer(refused.value, "error-code") == f"sfdc.platform.eventbus.grpc.{code}"
    assert "rpcId: " in (refused.value.details() or "")


async def test_events_older_than_72_hours_are_gone_and_so_is_their_replay_id(tmp_path: Path) -> None:
    now = [1_800_000_000.0]
    async with (
        pubsub_sandbox(tmp_path, bus=EventBus(clock=lambda: now[0])) as sandbox,
        client(sandbox) as (stub, metadata),
    ):
        old = sandbox.publish(2)
        now[0] += 71 * 3600
        kept = sandbox.publish(1)
        now[0] += 2 * 3600  # the first two are now 73 hours old
        earliest = pb2.FetchRequest(topic_name=sandbox.topic.name, replay_preset=pb2.EARLIEST, num_requested=10)
        call = stub.Subscribe(Requests(earliest).__aiter__(), metadata=metadata)
        response = await call.read()
        call.cancel()
        assert isinstance(response, pb2.FetchResponse)
        assert [e.event.id for e in response.events] == [kept[0].uuid]
        stale = pb2.FetchRequest(
            topic_name=sandbox.topic.name,
            replay_preset=pb2.CUSTOM,
            replay_id=replay_bytes(old[0].replay),
            num_requested=10,
        )
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.Subscribe(Requests(stale).__aiter__(), metadata=metadata).read()
    assert trailer(refused.value, "error-code").endswith("subscription.fetch.replayid.corrupted")


@pytest.mark.parametrize("broken", ["accesstoken", "instanceurl", "tenantid"])
async def test_calls_without_the_orgs_session_are_unauthenticated(tmp_path: Path, broken: str) -> None:
    async with pubsub_sandbox(tmp_path) as sandbox, client(sandbox) as (stub, metadata):
        wrong = tuple((key, "00D000000000001AAA" if key == broken else value) for key, value in metadata)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.GetTopic(pb2.TopicRequest(topic_name=sandbox.topic.name), metadata=wrong)
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert trailer(refused.value, "error-code") == "sfdc.platform.eventbus.grpc.service.auth.error"


async def test_publish_checks_each_event_against_the_topics_schema(tmp_path: Path) -> None:
    async with pubsub_sandbox(tmp_path) as sandbox, client(sandbox) as (stub, metadata):
        good = sandbox.bus.encode(sandbox.topic, {"Case_Id__c": "5005g00000SBX01"})
        chosen = str(uuid.uuid4())
        request = pb2.PublishRequest(
            topic_name=sandbox.topic.name,
            events=[
                pb2.ProducerEvent(id=chosen, schema_id=sandbox.topic.schema_id, payload=good),
                pb2.ProducerEvent(id="two", schema_id="not-this-schema", payload=good),
                pb2.ProducerEvent(id="three", schema_id=sandbox.topic.schema_id, payload=b"\x07"),
            ],
        )
        answer = await stub.Publish(request, metadata=metadata)
    assert [r.correlation_key for r in answer.results] == [chosen, "two", "three"]
    assert answer.results[0].replay_id
    assert not answer.results[0].HasField("error")
    assert [r.error.code for r in answer.results[1:]] == [pb2.PUBLISH, pb2.PUBLISH]
    (stored,) = sandbox.topic.events
    assert stored.uuid == chosen
    record = fastavro.schemaless_reader(io.BytesIO(stored.payload), sandbox.topic.parsed, None)
    assert record["Case_Id__c"] == "5005g00000SBX01"  # type: ignore[index, call-overload]


async def test_bridge_sandbox_publish_sends_a_request_as_the_flow_does(tmp_path: Path) -> None:
    async with pubsub_sandbox(tmp_path) as sandbox:
        published = await publish_request(
            sandbox.salesforce_settings(), "5005g00000SBX01AAH", idempotency_key="save-1", ignore_send_window=True
        )
        (stored,) = sandbox.topic.events
    assert published.event_uuid == stored.uuid
    assert published.replay_id == replay_bytes(stored.replay).hex()
    record = fastavro.schemaless_reader(io.BytesIO(stored.payload), sandbox.topic.parsed, None)
    assert record["Case_Id__c"] == "5005g00000SBX01AAH"  # type: ignore[index, call-overload]
    assert record["Idempotency_Key__c"] == "save-1"  # type: ignore[index, call-overload]
    assert record["Ignore_Send_Window__c"] is True  # type: ignore[index, call-overload]
