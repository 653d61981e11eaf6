"""The Pub/Sub trigger as the worker runs it: events read over gRPC become sends in the real store
(SQLite and PostgreSQL) with the stream's position, once each, fenced on the input's lease."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import pytest

from bridge.crm.plugin import InputContext, NamedInput
from bridge.crm.salesforce import plugin
from bridge.crm.salesforce.ids import to18
from bridge.crm.salesforce.pubsub import PubSubSubscriber
from bridge.crm.salesforce.pubsub_events import PlatformEvent
from bridge.crm.salesforce.pubsub_input import INPUT_NAME, StreamSink, check_topic
from bridge.errors import LeaseLost
from bridge.metrics import Metrics
from bridge.model import Finding, StreamLease
from bridge.sandbox.cases import SANDBOX_ORG_ID
from bridge.store import Store
from bridge.store.status import STREAM_KEY_PREFIX as STATUS_PREFIX
from tests._pubsub import PubSubSandbox, pubsub_sandbox, wait_for

pytestmark = pytest.mark.anyio
CASE = "5005g00000SBX01AAH"
OWNER = "worker-a"


def context(store: Store, wakes: list[int] | None = None) -> InputContext:
    return InputContext(
        inbox=store.sends,
        memory=store.status,
        metrics=Metrics(),
        wake=lambda: (wakes if wakes is not None else []).append(1),
        streams=store.streams,
        owner=OWNER,
    )


def sends_by_ticket(store: Store) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for record in store.history.find(limit=1000):
        found.setdefault(record.ticket_id, []).append(record.status)
    return found


@asynccontextmanager
async def holding(store: Store) -> AsyncIterator[None]:
    """This test's worker holds the input's lease, as the worker's input runner would."""
    lease = StreamLease.of_input(INPUT_NAME, OWNER)
    assert store.status.take_lease(lease.name, OWNER, seconds=600)
    yield


def the_input(sandbox: PubSubSandbox, store: Store) -> NamedInput:
    own = sandbox.salesforce_settings(pubsub_replay_preset="EARLIEST")
    (named,) = plugin.inputs(own, context(store))
    assert named.name == INPUT_NAME
    return named


@asynccontextmanager
async def running_input(sandbox: PubSubSandbox, store: Store) -> AsyncIterator[None]:
    async with holding(store), anyio.create_task_group() as group:
        run = the_input(sandbox, store).run

        async def input_run() -> None:
            await run()

        group.start_soon(input_run)
        yield
        group.cancel_scope.cancel()


async def test_published_requests_become_queued_sends_once_each(tmp_path: Path, store: Store) -> None:
    async with pubsub_sandbox(tmp_path, keepalive_seconds=0.2) as sandbox:
        sandbox.bus.publish_values(sandbox.topic, {"Case_Id__c": "5005g00000SBX01", "Idempotency_Key__c": "k1"})
        # The same request again (a Flow that ran twice for one save): one send.
        sandbox.bus.publish_values(sandbox.topic, {"Case_Id__c": CASE, "Idempotency_Key__c": "k1"})
        sandbox.bus.publish_values(sandbox.topic, {"Case_Id__c": "5005g00000SBX02", "Ignore_Send_Window__c": True})
        sandbox.bus.publish_values(sandbox.topic, {"Case_Id__c": "not a case"})
        async with running_input(sandbox, store):
            await wait_for(lambda: store.streams.position(sandbox.topic.name) is not None, what="a commit")
            await wait_for(lambda: len(store.history.find(limit=10)) == 3, what="three sends")
            await wait_for(lambda: store.status.get(STATUS_PREFIX + sandbox.topic.name) is not None, what="a report")

    found = {record.ticket_id: record for record in store.history.find(limit=10)}
    assert set(found) == {CASE, "5005g00000SBX02AAH", ""}
    assert found[CASE].status == "queued"
    assert (found[CASE].source, found[CASE].origin) == ("salesforce_pubsub", "crm_event")
    assert not found["5005g00000SBX02AAH"].overrides.window_ignored  # events the CRM fires never may
    assert found[""].status == "skipped"
    assert "'not a case', not a Case id" in str(found[""].reason)
    report, _ = store.status.get(STATUS_PREFIX + sandbox.topic.name)  # type: ignore[misc]
    assert report["holder"] == OWNER
    assert (report["received"], report["committed"]) == (4, 4)


async def test_an_event_received_but_not_committed_before_a_crash_is_replayed_and_sent_once(
    tmp_path: Path, store: Store
) -> None:
    async with pubsub_sandbox(tmp_path, keepalive_seconds=0.2) as sandbox:
        published = sandbox.publish(3)
        lease = StreamLease.of_input(INPUT_NAME, OWNER)
        options = sandbox.options(initial_preset="EARLIEST")
        async with holding(store):
            # The first process receives the events and dies before its commit (it hangs here).
            crashed = StreamSink(
                streams=store.streams,
                stream=sandbox.topic.name,
                org_id=SANDBOX_ORG_ID,
                lease=lease,
                metrics=Metrics(),
                wake=lambda: None,
            )
            received = anyio.Event()

            async def never(events: Sequence[PlatformEvent]) -> int:
                received.set()
                await anyio.sleep_forever()
                raise AssertionError

            crashed.commit = never  # type: ignore[method-assign]
            first = PubSubSubscriber(options=options, login=sandbox.login(), sink=crashed)
            async with anyio.create_task_group() as group:
                group.start_soon(first.run)
                await received.wait()
                group.cancel_scope.cancel()
            assert store.streams.position(sandbox.topic.name) is None
            # Its successor resumes from the store (nothing committed: from the start) and commits.
            sink = StreamSink(
                streams=store.streams,
                stream=sandbox.topic.name,
                org_id=SANDBOX_ORG_ID,
                lease=lease,
                metrics=Metrics(),
                wake=lambda: None,
            )
            second = PubSubSubscriber(options=options, login=sandbox.login(), sink=sink)
            async with anyio.create_task_group() as group:
                group.start_soon(second.run)
                await wait_for(lambda: second.status().committed == 3, what="the replayed events")
                # And a third process that starts from the very beginning again sees them all as known.
                store.streams.checkpoint(sandbox.topic.name, b"")
                group.cancel_scope.cancel()
            third = PubSubSubscriber(options=options, login=sandbox.login(), sink=sink)
            async with anyio.create_task_group() as group:
                group.start_soon(third.run)
                await wait_for(lambda: third.status().committed == 3, what="the events replayed once more")
                group.cancel_scope.cancel()

    assert third.status().already_seen == 3
    assert sends_by_ticket(store) == {to18(f"5005g00000SBX{n:02d}"): ["queued"] for n in range(len(published))}


async def test_a_process_that_lost_the_lease_adds_no_sends_and_stops(tmp_path: Path, store: Store) -> None:
    async with pubsub_sandbox(tmp_path, keepalive_seconds=0.2) as sandbox, holding(store):
        sandbox.publish(2)
        # Another worker took the stream over (this one froze past its lease) before the commit.
        store.status.release_lease(StreamLease.of_input(INPUT_NAME, OWNER).name, OWNER)
        assert store.status.take_lease(StreamLease.of_input(INPUT_NAME, "worker-b").name, "worker-b", seconds=600)
        with anyio.fail_after(30), pytest.raises(LeaseLost):
            await the_input(sandbox, store).run()
    assert store.history.find(limit=10) == []
    assert store.streams.position(sandbox.topic.name) is None
    report, _ = store.status.get(STATUS_PREFIX + sandbox.topic.name)  # type: ignore[misc]
    assert report["state"] == "stopped"


async def test_bridge_check_says_whether_the_topic_exists_and_may_be_subscribed_to(tmp_path: Path) -> None:
    async with pubsub_sandbox(tmp_path) as sandbox:
        assert await check_topic(sandbox.salesforce_settings()) == Finding(
            "Salesforce Pub/Sub", True, "/event/CCAI_SMS_Request__e exists and the integration user may subscribe to it"
        )
        sandbox.topic.can_subscribe = False
        refused = await check_topic(sandbox.salesforce_settings())
        assert not refused.ok
        assert "may not subscribe" in refused.detail
        missing = await check_topic(sandbox.salesforce_settings(pubsub_topic="/event/Other__e"))
        assert not missing.ok
        assert "topic.not.found" in missing.detail
