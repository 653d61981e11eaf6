"""The simulated org's event bus: platform event topics, their Avro schemas, and 72 hours of events.

Modelled on Salesforce's documentation of the Pub/Sub API:

- A platform event's schema is an Avro record named after the event, in ``com.sforce.eventbus``,
  with ``CreatedDate`` (epoch milliseconds, a long) and ``CreatedById`` (a string) first and each
  custom field as a ``["null", type]`` union defaulting to null. Its id is the MD5 fingerprint of
  the schema's Parsing Canonical Form, in URL-safe base64 ("Platform Event Schema by Schema ID").
- ``EventUuid`` is not a schema field: "for Pub/Sub API clients, the event id field contains the
  event UUID value" (ConsumerEvent.event.id).
- Replay ids are opaque bytes (here 8 bytes, big-endian, as the Java examples build them); events
  are kept 72 hours, and a replay id from before what is retained (or one this bus never issued)
  is refused.

Publishing may come from any thread; subscribers waiting on the bus are woken on their own loop.
"""

from __future__ import annotations

import asyncio
import base64
import bisect
import hashlib
import io
import json
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import fastavro
from fastavro.types import Schema

RETENTION_SECONDS = 72 * 3600.0
REPLAY_ID_BYTES = 8
SANDBOX_USER_ID = "0055g00000SBXUSAA2"  # who "published" events the sandbox makes up

FieldType = Literal["string", "boolean", "double", "long"]
_FIELD_DOCS: dict[FieldType, str] = {
    "string": "Data:Text",
    "boolean": "Data:Boolean",
    "double": "Data:Double",
    "long": "Data:Long",
}


@dataclass(frozen=True)
class EventField:
    """A custom field of a platform event, as its Avro schema carries it."""

    name: str
    type: FieldType


def platform_event_schema(api_name: str, fields: Sequence[EventField]) -> dict[str, Any]:
    """The Avro schema Salesforce gives a platform event with these custom fields."""
    return {
        "type": "record",
        "name": api_name,
        "namespace": "com.sforce.eventbus",
        "fields": [
            {"name": "CreatedDate", "type": "long", "doc": "CreatedDate:DateTime"},
            {"name": "CreatedById", "type": "string", "doc": "CreatedBy:EntityId"},
            *({"name": f.name, "type": ["null", f.type], "doc": _FIELD_DOCS[f.type], "default": None} for f in fields),
        ],
    }


def schema_id(schema: Mapping[str, Any]) -> str:
    """URL-safe base64 of the MD5 fingerprint of the schema's Parsing Canonical Form."""
    canonical = fastavro.schema.to_parsing_canonical_form(dict(schema))
    return base64.urlsafe_b64encode(hashlib.md5(canonical.encode()).digest()).decode().rstrip("=")  # noqa: S324


def replay_bytes(position: int) -> bytes:
    return position.to_bytes(REPLAY_ID_BYTES, "big")


def replay_position(replay_id: bytes) -> int | None:
    """The bus position a replay id names, or None when it is not one this bus could have issued."""
    if len(replay_id) != REPLAY_ID_BYTES:
        return None
    return int.from_bytes(replay_id, "big")


@dataclass(frozen=True)
class BusEvent:
    replay: int
    uuid: str
    schema_id: str
    payload: bytes
    published_at: float


@dataclass
class Topic:
    """One platform event channel (``/event/Name__e``) and the events it retains."""

    name: str
    schema: dict[str, Any]
    schema_id: str
    parsed: Schema
    can_subscribe: bool = True
    events: list[BusEvent] = field(default_factory=list)
    purged_through: int = 0  # the newest position the retention period has dropped

    @property
    def schema_json(self) -> str:
        return json.dumps(self.schema)


class PublishRefused(ValueError):
    """The event does not fit its topic (schema id or payload): the publish result carries the reason."""


class EventBus:
    """One org's topics. ``clock`` (seconds since the epoch) decides what the 72 hours retain."""

    def __init__(self, *, clock: Callable[[], float] = time.time, retention_seconds: float = RETENTION_SECONDS) -> None:
        self.clock = clock
        self.retention_seconds = retention_seconds
        self.topics: dict[str, Topic] = {}
        self.latest = 0  # the position of the newest event ever published on any topic
        self._issued: dict[int, float] = {}  # position -> when, for every event ever published
        self._lock = threading.Lock()
        self._waiters: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = set()

    # -- topics -------------------------------------------------------------------------------

    def add_platform_event(self, api_name: str, fields: Sequence[EventField]) -> Topic:
        schema = platform_event_schema(api_name, fields)
        topic = Topic(
            name=f"/event/{api_name}",
            schema=schema,
            schema_id=schema_id(schema),
            parsed=fastavro.parse_schema(schema),
        )
        self.topics[topic.name] = topic
        return topic

    def schema(self, wanted: str) -> Topic | None:
        return next((t for t in self.topics.values() if t.schema_id == wanted), None)

    # -- publishing ---------------------------------------------------------------------------

    def encode(self, topic: Topic, values: Mapping[str, Any], *, created_by: str = SANDBOX_USER_ID) -> bytes:
        """Avro-encode a custom-field map, adding the standard fields as Salesforce does."""
        record = {"CreatedDate": int(self.clock() * 1000), "CreatedById": created_by, **values}
        buffer = io.BytesIO()
        fastavro.schemaless_writer(buffer, topic.parsed, record)
        return buffer.getvalue()

    def publish(self, topic: Topic, payload: bytes, *, schema_id: str, event_uuid: str = "") -> BusEvent:
        if schema_id != topic.schema_id:
            raise PublishRefused(f"The schema id {schema_id!r} is not {topic.name}'s current schema.")
        try:
            fastavro.schemaless_reader(io.BytesIO(payload), topic.parsed, None)
        except Exception as exc:  # fastavro raises whatever the bytes lead it to
            raise PublishRefused(f"The payload does not decode with {topic.name}'s schema.") from exc
        with self._lock:
            self.latest += 1
            event = BusEvent(
                replay=self.latest,
                uuid=event_uuid or str(uuid.uuid4()),
                schema_id=schema_id,
                payload=payload,
                published_at=self.clock(),
            )
            topic.events.append(event)
            self._issued[event.replay] = event.published_at
        self._notify()
        return event

    def publish_values(self, topic: Topic, values: Mapping[str, Any]) -> BusEvent:
        return self.publish(topic, self.encode(topic, values), schema_id=topic.schema_id)

    # -- reading ------------------------------------------------------------------------------

    def purge(self, topic: Topic) -> None:
        """Drop what the retention period no longer keeps."""
        with self._lock:
            horizon = self.clock() - self.retention_seconds
            while topic.events and topic.events[0].published_at < horizon:
                topic.purged_through = topic.events.pop(0).replay

    def first_retained(self, topic: Topic) -> int:
        """The position just before the oldest event still kept: where EARLIEST starts."""
        self.purge(topic)
        return topic.events[0].replay - 1 if topic.events else self.latest

    def accepts(self, topic: Topic, position: int | None) -> bool:
        """Whether a subscription may start after ``position``: a position this bus issued, not older
        than the retention period, with nothing after it dropped."""
        if position is None or position > self.latest:
            return False
        self.purge(topic)
        issued = self._issued.get(position)
        too_old = issued is not None and issued < self.clock() - self.retention_seconds
        return position >= topic.purged_through and not too_old

    def after(self, topic: Topic, position: int, limit: int) -> list[BusEvent]:
        self.purge(topic)
        with self._lock:
            start = bisect.bisect_right(topic.events, position, key=lambda e: e.replay)
            return topic.events[start : start + limit]

    # -- waking subscribers -------------------------------------------------------------------

    def watch(self, wake: asyncio.Event) -> Callable[[], None]:
        """Set ``wake`` (on its own loop) whenever something is published; returns the way to stop."""
        entry = (asyncio.get_running_loop(), wake)
        self._waiters.add(entry)
        return lambda: self._waiters.discard(entry)

    def _notify(self) -> None:
        for loop, wake in list(self._waiters):
            if not loop.is_closed():
                loop.call_soon_threadsafe(wake.set)

    def poke(self) -> None:
        """Wake every subscriber (a fault switch changed)."""
        self._notify()
