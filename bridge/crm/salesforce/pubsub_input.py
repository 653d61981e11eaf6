"""The Salesforce Pub/Sub trigger as one of the worker's long-running inputs.

One process holds the subscription (the input's lease); it turns each batch of events into sends
and stores them with the stream's position in one transaction, fenced on that lease, and says how
the stream goes in the store every few seconds, for ``bridge status``, the dashboard and ``/metrics``.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread

from bridge.crm.plugin import InputContext, Memory, StreamStore
from bridge.crm.salesforce.pubsub import (
    PubSubSubscriber,
    ResumePoint,
    StreamStatus,
    SubscriberOptions,
    topic_access,
)
from bridge.crm.salesforce.pubsub_events import PlatformEvent
from bridge.crm.salesforce.pubsub_login import PubSubSession
from bridge.crm.salesforce.settings import SalesforceSettings
from bridge.crm.salesforce.sms_request import SOURCE, SmsRequestEvent, sms_request
from bridge.errors import CRMError, LeaseLost, StoreError
from bridge.metrics import Metrics
from bridge.model import Finding, StreamLease
from bridge.store.status import STREAM_KEY_PREFIX

logger = logging.getLogger(__name__)

INPUT_NAME = "salesforce-pubsub"
REPORT_SECONDS = 5.0
REPORT_ANYWAY_SECONDS = 30.0  # an unchanged report is still refreshed, so a silent holder shows as stale


class StreamSink:
    """The subscriber's :class:`~bridge.crm.salesforce.pubsub.EventSink`: the store's streams."""

    def __init__(
        self,
        *,
        streams: StreamStore,
        stream: str,
        org_id: str,
        lease: StreamLease | None,
        metrics: Metrics,
        wake: Callable[[], None],
    ) -> None:
        self._streams = streams
        self._stream = stream
        self._org_id = org_id
        self._lease = lease
        self._metrics = metrics
        self._wake = wake

    async def resume_point(self) -> ResumePoint:
        replay_id, first_subscribed_at = await anyio.to_thread.run_sync(self._streams.resume, self._stream)
        return ResumePoint(replay_id=replay_id, first_subscribed_at=first_subscribed_at)

    async def commit(self, events: Sequence[PlatformEvent]) -> int:
        requests = [sms_request(event, org_id=self._org_id) for event in events]
        items = [(event.uuid, request.send) for event, request in zip(events, requests, strict=True)]
        position = events[-1].replay_id
        result = await anyio.to_thread.run_sync(
            lambda: self._streams.commit(self._stream, items, position, lease=self._lease)
        )
        self._metrics.events_received.labels(SOURCE).inc(len(events))
        self._metrics.events_duplicate.labels(SOURCE).inc(len(events) - result.sends_new)
        for event, request in zip(events, requests, strict=True):
            _log(event, request)
        logger.info(
            "Pub/Sub %s: %d event(s), %d not seen before, %d send(s) queued",
            self._stream,
            len(events),
            result.events_new,
            result.sends_new,
        )
        if result.sends_new:
            self._wake()
        return result.events_new

    async def checkpoint(self, replay_id: bytes) -> None:
        await anyio.to_thread.run_sync(lambda: self._streams.checkpoint(self._stream, replay_id, lease=self._lease))


def _log(event: PlatformEvent, request: SmsRequestEvent) -> None:
    send = request.send
    if send.finished is not None:
        logger.warning("Pub/Sub event %s cannot be sent: %s", event.uuid, send.finished.reason)
        return
    logger.debug(
        "Pub/Sub event %s: Case %s, template %s, asked by %s",
        event.uuid,
        send.ticket_id,
        request.template or "(default)",
        request.requested_by or "(not said)",
    )
    if request.window_override_refused:
        logger.info(
            "Pub/Sub event %s asks to ignore the send window for Case %s: events the CRM fires never may",
            event.uuid,
            send.ticket_id,
        )


def subscriber_options(settings: SalesforceSettings) -> SubscriberOptions:
    roots = Path(settings.ca_bundle).read_bytes() if settings.ca_bundle else None
    return SubscriberOptions(
        topic=settings.pubsub_topic,
        target=settings.pubsub_endpoint,
        root_certificates=roots,
        initial_preset=settings.pubsub_replay_preset,
        dead_after=settings.pubsub_dead_after_seconds,
    )


async def check_topic(settings: SalesforceSettings) -> Finding:
    """``bridge check``: the topic exists (``GetTopic``) and the integration user may subscribe to it."""
    topic = settings.pubsub_topic
    session = _session(settings)
    try:
        access = await topic_access(subscriber_options(settings), session)
    except CRMError as exc:
        return Finding("Salesforce Pub/Sub", False, str(exc))
    finally:
        session.close()
    if not access.can_subscribe:
        return Finding(
            "Salesforce Pub/Sub",
            False,
            f"{topic} exists, but the integration user may not subscribe to it: give it read access to the "
            "platform event (the permission set the salesforce/ project deploys).",
        )
    return Finding("Salesforce Pub/Sub", True, f"{topic} exists and the integration user may subscribe to it")


def _session(settings: SalesforceSettings) -> PubSubSession:
    (org_id,) = settings.org_ids  # settings.problems() insists on exactly one
    return PubSubSession(
        credentials=settings.credentials(),
        org_id=org_id,
        api_version=settings.api_version,
        timeout=settings.timeout_seconds,
        ca_bundle=settings.ca_bundle or None,
    )


class PubSubInput:
    """Runs the subscription while this worker holds the input's lease (:meth:`run`)."""

    def __init__(self, settings: SalesforceSettings, context: InputContext) -> None:
        self._settings = settings
        self._context = context

    async def run(self) -> None:
        settings, context = self._settings, self._context
        (org_id,) = settings.org_ids
        session = _session(settings)
        sink = StreamSink(
            streams=context.streams,
            stream=settings.pubsub_topic,
            org_id=org_id,
            lease=StreamLease.of_input(INPUT_NAME, context.owner),
            metrics=context.metrics,
            wake=context.wake,
        )
        subscriber = PubSubSubscriber(options=subscriber_options(settings), login=session, sink=sink)
        reporter = StatusReporter(context.memory, owner=context.owner)
        try:
            async with anyio.create_task_group() as group:
                group.start_soon(reporter.run, subscriber.status)
                await subscriber.run()
        except* LeaseLost as lost:
            raise lost.exceptions[0] from None  # as itself, not in a group: the input runner logs it
        finally:
            session.close()
            with anyio.CancelScope(shield=True):
                await reporter.report(subscriber.status(), force=True)


class StatusReporter:
    """Writes a stream's :class:`StreamStatus` to the status board, when it changes and every half
    minute anyway (a report that stops coming says its holder is gone)."""

    def __init__(self, memory: Memory, *, owner: str) -> None:
        self._memory = memory
        self._owner = owner
        self._last: dict[str, Any] | None = None
        self._last_at = 0.0

    async def run(self, status: Callable[[], StreamStatus]) -> None:
        while True:
            await self.report(status())
            await anyio.sleep(REPORT_SECONDS)

    async def report(self, status: StreamStatus, *, force: bool = False) -> None:
        record = {**dataclasses.asdict(status), "holder": self._owner}
        due = time.monotonic() - self._last_at >= REPORT_ANYWAY_SECONDS
        if record == self._last and not due and not force:
            return
        try:
            await anyio.to_thread.run_sync(self._memory.put, STREAM_KEY_PREFIX + status.topic, record)
        except StoreError as exc:
            logger.warning("Could not report the Pub/Sub stream's state (%s)", exc)
            return
        self._last, self._last_at = record, time.monotonic()
