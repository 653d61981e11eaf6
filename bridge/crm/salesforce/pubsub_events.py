"""Platform events as the bridge receives them: decoded from Avro with their writer's schema.

Each ``ConsumerEvent`` names the schema its payload was written with (``schema_id``); the schema
is fetched once with ``GetSchema`` and cached by id, since it changes only when an admin changes
the event's fields (and then the id changes too). The event's ``EventUuid`` is the event's ``id``:
Salesforce documents that Pub/Sub API clients get the UUID there, not as a field.
"""

from __future__ import annotations

import io
import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

import fastavro
from fastavro.types import Schema

from bridge.crm.salesforce._pubsub import pubsub_api_pb2 as pb2


@dataclass(frozen=True)
class PlatformEvent:
    """One received event: its ``EventUuid``, its place in the stream, and its decoded fields.

    ``problem`` says why the payload could not be decoded (then ``fields`` is empty): such an event
    is still committed, so that it is seen and counted rather than lost or retried forever.
    """

    uuid: str
    replay_id: bytes
    schema_id: str
    fields: Mapping[str, object] = field(default_factory=dict)
    problem: str | None = None

    @property
    def created_at(self) -> float | None:
        """When Salesforce created the event (seconds since the epoch), from ``CreatedDate``."""
        created = self.fields.get("CreatedDate")
        return created / 1000 if isinstance(created, int) else None

    @property
    def created_by(self) -> str | None:
        created_by = self.fields.get("CreatedById")
        return created_by if isinstance(created_by, str) else None


class UnknownSchema(LookupError):
    """Salesforce would not give the schema an event names: its events cannot be decoded."""


SchemaFetch = Callable[[str], Awaitable[str]]  # schema id -> the schema's JSON (GetSchema)


class EventDecoder:
    """Decodes events, fetching each writer schema once (by id) through ``fetch``.

    ``fetch`` raises :class:`UnknownSchema` when the schema cannot be had; other errors (a broken
    stream, an expired session) propagate, and the schema is asked for again next time.
    """

    def __init__(self, fetch: SchemaFetch) -> None:
        self._fetch = fetch
        self._schemas: dict[str, Schema] = {}
        self.fetched = 0  # GetSchema calls made, for the status page and tests

    async def decode(self, consumed: pb2.ConsumerEvent) -> PlatformEvent:
        event = consumed.event
        try:
            schema = await self._schema(event.schema_id)
            record = fastavro.schemaless_reader(io.BytesIO(event.payload), schema, None)
        except UnknownSchema as exc:
            return _received(consumed, problem=str(exc))
        except Exception as exc:  # fastavro raises whatever malformed bytes lead it to
            problem = f"The payload does not decode with schema {event.schema_id} ({type(exc).__name__})."
            return _received(consumed, problem=problem)
        if not isinstance(record, dict):
            return _received(consumed, problem=f"Schema {event.schema_id} does not describe a record.")
        return _received(consumed, fields=record)

    async def _schema(self, schema_id: str) -> Schema:
        if schema_id not in self._schemas:
            text = await self._fetch(schema_id)
            self.fetched += 1
            try:
                self._schemas[schema_id] = fastavro.parse_schema(json.loads(text))
            except (ValueError, fastavro.schema.SchemaParseException) as exc:
                raise UnknownSchema(f"Schema {schema_id} from Salesforce is not a usable Avro schema.") from exc
        return self._schemas[schema_id]


def _received(
    consumed: pb2.ConsumerEvent, *, fields: Mapping[str, object] | None = None, problem: str | None = None
) -> PlatformEvent:
    return PlatformEvent(
        uuid=consumed.event.id,
        replay_id=consumed.replay_id,
        schema_id=consumed.event.schema_id,
        fields=fields or {},
        problem=problem,
    )
