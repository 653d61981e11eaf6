"""``bridge sandbox publish CASE``: ask for an SMS as the Salesforce project's Flow does, by publishing
an SMS request platform event with the Pub/Sub API's ``Publish`` (GetTopic for the schema id,
GetSchema for the schema, the payload Avro-encoded with it).

It speaks to the Pub/Sub API the bridge's settings name, with their access token: the sandbox's,
whose settings (``sandbox.env``) have both.
"""

from __future__ import annotations

import io
import json
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import fastavro
import grpc
import grpc.aio
from pydantic import SecretStr

from bridge.crm.salesforce._pubsub import pubsub_api_pb2 as pb2
from bridge.crm.salesforce._pubsub import pubsub_api_pb2_grpc as pb2_grpc
from bridge.errors import UsageError
from bridge.sandbox._eventbus import SANDBOX_USER_ID


@runtime_checkable
class PubSubTarget(Protocol):
    """What publishing needs from the Salesforce settings (the sandbox's, as ``sandbox.env`` sets them)."""

    instance_url: str
    access_token: SecretStr
    ca_bundle: str
    org_ids: tuple[str, ...]
    pubsub_topic: str
    pubsub_endpoint: str


@dataclass(frozen=True)
class Published:
    event_uuid: str
    replay_id: str  # hex
    topic: str


async def publish_request(
    target: PubSubTarget,
    case_id: str,
    *,
    idempotency_key: str | None = None,
    template: str | None = None,
    ignore_send_window: bool = False,
) -> Published:
    if not (target.pubsub_topic and target.access_token.get_secret_value() and target.org_ids):
        raise UsageError(
            "Publishing needs SALESFORCE_PUBSUB_TOPIC, SALESFORCE_ACCESS_TOKEN and SALESFORCE_ORG_IDS: load the "
            "sandbox's settings first (set -a; . <sandbox.env>; set +a)."
        )
    metadata = (
        ("accesstoken", target.access_token.get_secret_value()),
        ("instanceurl", target.instance_url.rstrip("/")),
        ("tenantid", target.org_ids[0]),
    )
    roots = Path(target.ca_bundle).read_bytes() if target.ca_bundle else None
    values: dict[str, Any] = {
        "CreatedDate": int(time.time() * 1000),
        "CreatedById": SANDBOX_USER_ID,
        "Case_Id__c": case_id,
        "Template__c": template,
        "Requested_By__c": SANDBOX_USER_ID,
        "Idempotency_Key__c": idempotency_key,
        "Ignore_Send_Window__c": ignore_send_window,
    }
    credentials = grpc.ssl_channel_credentials(root_certificates=roots)
    async with grpc.aio.secure_channel(target.pubsub_endpoint, credentials) as channel:
        stub = pb2_grpc.PubSubStub(channel)
        try:
            topic = await stub.GetTopic(pb2.TopicRequest(topic_name=target.pubsub_topic), metadata=metadata, timeout=30)
            schema = await stub.GetSchema(pb2.SchemaRequest(schema_id=topic.schema_id), metadata=metadata, timeout=30)
            buffer = io.BytesIO()
            fastavro.schemaless_writer(buffer, fastavro.parse_schema(json.loads(schema.schema_json)), values)
            event = pb2.ProducerEvent(id=str(uuid.uuid4()), schema_id=topic.schema_id, payload=buffer.getvalue())
            request = pb2.PublishRequest(topic_name=target.pubsub_topic, events=[event])
            answer = await stub.Publish(request, metadata=metadata, timeout=30)
        except grpc.aio.AioRpcError as exc:
            raise UsageError(
                f"The Pub/Sub API at {target.pubsub_endpoint} refused: {exc.code().name}: {exc.details()}"
            ) from exc
    (result,) = answer.results
    if result.HasField("error"):
        raise UsageError(f"The event was not published: {result.error.msg}")
    return Published(event_uuid=result.correlation_key, replay_id=result.replay_id.hex(), topic=target.pubsub_topic)
