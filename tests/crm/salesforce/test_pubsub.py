"""The Pub/Sub subscriber over real gRPC (TLS on loopback) against the simulated Pub/Sub API."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import pytest

from bridge.crm.salesforce.pubsub import PubSubSubscriber, StreamStatus, topic_access
from bridge.errors import CRMRequestError
from bridge.sandbox._eventbus import replay_bytes
from tests._pubsub import MemorySink, SandboxLogin, describe, pubsub_sandbox, wait_for

pytestmark = pytest.mark.anyio


@asynccontextmanager
async def running(subscriber: PubSubSubscriber) -> AsyncIterator[PubSubSubscriber]:
    async with anyio.create_task_group() as group:
        group.start_soon(subscriber.run)
        try:
            yield subscriber
        finally:
            group.cancel_scope.cancel()


async def live(subscriber: PubSubSubscriber) -> StreamStatus:
    """Wait until the stream has been answered once (the subscription is in place)."""
    await wait_for(lambda: subscriber.status().last_response_at is not None, what="a first response")
    return subscriber.status()


async def test_events_arrive_decoded_with_their_event_uuid_and_fields(tmp_path: Path) -> None:
    async with pubsub_sandbox(tmp_path, keepalive_seconds=0.2) as sandbox:
        sink = MemorySink()
        subscriber = PubSubSubscriber(options=sandbox.options(), login=sandbox.login(), sink=sink)
        async with running(subscriber):
            await live(subscriber)
            published = sandbox.publish(25, Template__c="welcome", Ignore_Send_Window__c=True)
            await wait_for(lambda: len(sink.events) == 25, what="25 events committed")

    first = sink.events[published[0].uuid]
    assert first.fields["Case_Id__c"] == "5005g00000SBX00"
    assert first.fields["Template__c"] == "welcome"
    assert first.fields["Ignore_Send_Window__c"] is True
    assert first.fields["Requested_By__c"] is None
    assert first.created_by == "0055g00000SBXUSAA2"
    assert first.created_at == pytest.approx(published[0].published_at, abs=0.01)
    assert first.problem is None
    assert sink.replay_id == replay_bytes(published[-1].replay)
    # One GetSchema for 25 events: the schema is cached by its id.
    assert subscriber._decoder.fetched == 1
    status = subscriber.status()
    assert (status.received, status.committed, status.already_seen, status.in_hand) == (25, 25, 0, 0)
    assert status.lag_seconds is not None
    assert status.lag_seconds < 10


async def test_no_more_events_are_asked_for_than_were_committed(tmp_path: Path) -> None:
    async with pubsub_sandbox(tmp_path) as sandbox:
        sandbox.publish(95)
        gate = anyio.Event()
        in_hand: list[int] = []
        sink = MemorySink(gate=gate)
        subscriber = PubSubSubscriber(
            options=sandbox.options(batch_size=10, initial_preset="EARLIEST"), login=sandbox.login(), sink=sink
        )
        sink.on_commit = lambda events: in_hand.append(subscriber.status().in_hand)
        async with running(subscriber):
            await wait_for(lambda: sandbox.simulator.stats.delivered > 0, what="a first batch")
            await anyio.sleep(0.5)  # time enough for the server to send more, were it allowed to
            assert sandbox.simulator.stats.delivered == 10, "the server sent past the first num_requested"
            gate.set()
            await wait_for(lambda: len(sink.events) == 95, what="all 95 events")
        stats = sandbox.simulator.stats

    assert max(in_hand) <= 10
    # The first request asks for a batch; every later one for exactly what the last commit took.
    assert stats.requested[0] == 10
    assert stats.requested[1:] == sink.commits[: len(stats.requested) - 1]
    assert sum(stats.requested) - stats.delivered <= 10


async def test_a_new_subscription_resumes_after_the_stored_replay_id(tmp_path: Path) -> None:
    async with pubsub_sandbox(tmp_path) as sandbox:
        published = sandbox.publish(12)
        sink = MemorySink(replay_id=replay_bytes(published[6].replay), first_subscribed_at=0.0)
        subscriber = PubSubSubscriber(options=sandbox.options(), login=sandbox.login(), sink=sink)
        async with running(subscriber):
            await wait_for(lambda: len(sink.events) == 5, what="the five events after the stored one")
            await anyio.sleep(0.2)

    assert set(sink.events) == {e.uuid for e in published[7:]}
    assert subscriber.status().replay_fallbacks == 0


async def test_a_refused_replay_id_falls_back_to_the_earliest_event_and_skips_those_already_seen(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with pubsub_sandbox(tmp_path, keepalive_seconds=0.2) as sandbox:
        published = sandbox.publish(8)
        # The first five were committed earlier, by a subscription whose replay id the org now refuses
        # (as for one older than 72 hours, or from another org).
        sink = MemorySink(replay_id=replay_bytes(published[4].replay), first_subscribed_at=0.0)
        for event in published[:5]:
            sink.events[event.uuid] = None  # type: ignore[assignment]
        sandbox.simulator.set_faults(refuse_replay=True)
        subscriber = PubSubSubscriber(options=sandbox.options(), login=sandbox.login(), sink=sink)
        with caplog.at_level(logging.WARNING, logger="bridge.crm.salesforce.pubsub"):
            async with running(subscriber):
                await wait_for(lambda: len(sink.commits) >= 1 and "caught up" in caplog.text, what="the catch-up")

    assert set(sink.events) == {e.uuid for e in published}
    status = subscriber.status()
    assert (status.replay_fallbacks, status.already_seen, status.committed) == (1, 5, 8)
    assert "refused the stored replay id" in caplog.text
    assert "5 event(s) already committed were skipped, 3 new" in caplog.text
    assert "subscription.fetch.replayid.corrupted" in sandbox.simulator.stats.refused


async def test_a_replay_id_older_than_the_retention_period_is_refused_and_recovered(tmp_path: Path) -> None:
    now = [1_800_000_000.0]
    from bridge.sandbox._eventbus import EventBus

    bus = EventBus(clock=lambda: now[0])
    async with pubsub_sandbox(tmp_path, bus=bus, keepalive_seconds=0.2) as sandbox:
        old = sandbox.publish(3)
        now[0] += 73 * 3600  # three days and an hour later: the stored replay id is past retention
        recent = sandbox.publish(2)
        sink = MemorySink(replay_id=replay_bytes(old[-1].replay), first_subscribed_at=0.0)
        subscriber = PubSubSubscriber(options=sandbox.options(), login=sandbox.login(), sink=sink)
        async with running(subscriber):
            await wait_for(lambda: len(sink.events) == 2, what="the two retained events")

    assert set(sink.events) == {e.uuid for e in recent}
    assert subscriber.status().replay_fallbacks == 1


async def test_a_session_refused_mid_stream_is_renewed_and_nothing_is_lost_or_repeated(tmp_path: Path) -> None:
    async with pubsub_sandbox(tmp_path, keepalive_seconds=0.2) as sandbox:
        login = sandbox.login()
        sink = MemorySink()
        subscriber = PubSubSubscriber(options=sandbox.options(batch_size=4), login=login, sink=sink)
        async with running(subscriber):
            await live(subscriber)
            sandbox.simulator.set_faults(unauthenticated_after=3)
            published = sandbox.publish(10)
            await wait_for(lambda: len(sink.events) == 10, what="all ten events")

    assert set(sink.events) == {e.uuid for e in published}
    assert sum(sink.commits) == 10, "an event was committed twice"
    assert login.renewals == 1
    assert "service.auth.error" in sandbox.simulator.stats.refused
    assert subscriber.status().reconnects == 1


async def test_a_stream_gone_silent_is_noticed_and_replaced_without_losing_events(tmp_path: Path) -> None:
    async with pubsub_sandbox(tmp_path, keepalive_seconds=0.2) as sandbox:
        sink = MemorySink()
        subscriber = PubSubSubscriber(options=sandbox.options(dead_after=1.0), login=sandbox.login(), sink=sink)
        async with running(subscriber):
            await live(subscriber)
            assert sandbox.simulator.silence_open_streams() == 1
            published = sandbox.publish(3)
            await wait_for(lambda: len(sink.events) == 3, what="the events published while the stream was silent")
            status = subscriber.status()

    assert set(sink.events) == {e.uuid for e in published}
    assert (status.dead_streams, status.reconnects) == (1, 1)
    assert status.state == "live"


async def test_a_server_that_stays_silent_is_retried_with_backoff_and_reported(tmp_path: Path) -> None:
    async with pubsub_sandbox(tmp_path, keepalive_seconds=0.2) as sandbox:
        sink = MemorySink()
        subscriber = PubSubSubscriber(options=sandbox.options(dead_after=0.5), login=sandbox.login(), sink=sink)
        sandbox.simulator.set_faults(silent=True)
        async with running(subscriber):
            await wait_for(lambda: subscriber.status().dead_streams >= 2, what="two dead streams")
            status = subscriber.status()
            assert status.state in ("connecting", "reconnecting"), describe(status)
            assert status.problem is not None
            assert "the stream is dead" in status.problem
            sandbox.simulator.set_faults(silent=False)
            await live(subscriber)
            await wait_for(lambda: subscriber.status().state == "live", what="a live stream")
            assert subscriber.status().problem is None


async def test_a_server_restart_cuts_the_stream_and_the_subscriber_resumes_where_it_was(tmp_path: Path) -> None:
    async with pubsub_sandbox(tmp_path, keepalive_seconds=0.2) as sandbox:
        sink = MemorySink()
        subscriber = PubSubSubscriber(options=sandbox.options(), login=sandbox.login(), sink=sink)
        async with running(subscriber):
            await live(subscriber)
            before = sandbox.publish(5)
            await wait_for(lambda: len(sink.events) == 5, what="the first five")
            await sandbox.server.stop()
            during = sandbox.publish(4)  # kept by the bus while nobody can subscribe
            await wait_for(lambda: subscriber.status().reconnects >= 1, what="the cut to be noticed")
            await sandbox.server.start()
            await wait_for(lambda: len(sink.events) == 9, what="the events published during the outage")

    assert set(sink.events) == {e.uuid for e in before + during}
    assert sum(sink.commits) == 9


async def test_a_consumer_too_slow_to_ask_for_more_is_closed_by_the_server_and_resumes(tmp_path: Path) -> None:
    async with pubsub_sandbox(tmp_path, keepalive_seconds=0.2, consumer_timeout=0.3) as sandbox:
        gate = anyio.Event()
        sink = MemorySink(gate=gate)
        subscriber = PubSubSubscriber(options=sandbox.options(batch_size=5), login=sandbox.login(), sink=sink)
        async with running(subscriber):
            await live(subscriber)
            published = sandbox.publish(12)
            await wait_for(lambda: sandbox.simulator.stats.idle_closed >= 1, what="the server to give up on us")
            gate.set()
            await wait_for(lambda: len(sink.events) == 12, what="all twelve events")

    assert set(sink.events) == {e.uuid for e in published}
    assert subscriber.status().reconnects >= 1


async def test_a_commit_that_fails_is_retried_from_the_stored_replay_id(tmp_path: Path) -> None:
    async with pubsub_sandbox(tmp_path, keepalive_seconds=0.2) as sandbox:
        sink = MemorySink()
        subscriber = PubSubSubscriber(options=sandbox.options(), login=sandbox.login(), sink=sink)
        async with running(subscriber):
            await live(subscriber)
            first = sandbox.publish(1)
            await wait_for(lambda: len(sink.events) == 1, what="the first event")
            sink.fail_commits = 2
            later = sandbox.publish(3)
            await wait_for(lambda: len(sink.events) == 4, what="the events whose commits failed")
            status = subscriber.status()

    assert set(sink.events) == {e.uuid for e in first + later}
    assert status.reconnects == 2
    assert status.received == 1 + 3 * 3  # the three were received three times and committed once


async def test_an_idle_stream_stores_the_latest_replay_id_from_its_keepalives(tmp_path: Path) -> None:
    async with pubsub_sandbox(tmp_path, keepalive_seconds=0.2) as sandbox:
        older = sandbox.publish(2)
        sink = MemorySink()
        subscriber = PubSubSubscriber(options=sandbox.options(), login=sandbox.login(), sink=sink)
        async with running(subscriber):
            await wait_for(lambda: bool(sink.checkpoints), what="a keepalive checkpoint")

    # Subscribed at LATEST: the older events are not delivered, and the position is kept from the start.
    assert sink.events == {}
    assert sink.replay_id == replay_bytes(older[-1].replay)
    assert len(set(sink.checkpoints)) == 1, "an unchanged replay id was stored again"


async def test_an_event_whose_payload_cannot_be_decoded_is_committed_with_its_problem(tmp_path: Path) -> None:
    async with pubsub_sandbox(tmp_path, keepalive_seconds=0.2) as sandbox:
        sink = MemorySink()
        subscriber = PubSubSubscriber(options=sandbox.options(), login=sandbox.login(), sink=sink)
        async with running(subscriber):
            await live(subscriber)
            good = sandbox.publish(1)[0]
            broken = sandbox.bus.publish(sandbox.topic, good.payload, schema_id=sandbox.topic.schema_id)
            # A payload truncated on its way in (the bus validates what it is given, so alter it after).
            sandbox.topic.events[-1] = type(broken)(**{**broken.__dict__, "payload": b"\x02"})
            await wait_for(lambda: len(sink.events) == 2, what="both events")

    assert sink.events[good.uuid].problem is None
    assert "does not decode" in str(sink.events[broken.uuid].problem)
    assert subscriber.status().undecodable == 1


async def test_topic_access_says_whether_the_topic_exists_and_may_be_subscribed_to(tmp_path: Path) -> None:
    async with pubsub_sandbox(tmp_path) as sandbox:
        login = sandbox.login()
        access = await topic_access(sandbox.options(), login)
        assert (access.name, access.schema_id, access.can_subscribe) == (
            sandbox.topic.name,
            sandbox.topic.schema_id,
            True,
        )
        sandbox.tokens.discard(login.current.access_token)  # the session expired: renewed once
        assert (await topic_access(sandbox.options(), login)).can_subscribe
        assert login.renewals == 1
        with pytest.raises(CRMRequestError, match=r"/event/Nope__e.*NOT_FOUND.*topic\.not\.found"):
            await topic_access(sandbox.options(topic="/event/Nope__e"), login)


async def test_a_session_for_another_org_keeps_failing_with_backoff_and_says_why(tmp_path: Path) -> None:
    async with pubsub_sandbox(tmp_path) as sandbox:
        login = SandboxLogin(sandbox.tokens, org_id="00D000000000001AAA")
        subscriber = PubSubSubscriber(options=sandbox.options(), login=login, sink=MemorySink())
        async with running(subscriber):
            await wait_for(lambda: subscriber.status().reconnects >= 3, what="three attempts")
            status = subscriber.status()

    assert status.problem is not None
    assert "UNAUTHENTICATED" in status.problem
    assert login.renewals >= 2
    assert status.received == 0


async def test_stopping_the_subscriber_ends_its_stream(tmp_path: Path) -> None:
    async with pubsub_sandbox(tmp_path, keepalive_seconds=0.2) as sandbox:
        subscriber = PubSubSubscriber(options=sandbox.options(), login=sandbox.login(), sink=MemorySink())
        async with running(subscriber):
            await live(subscriber)
            assert sandbox.simulator.stats.open_streams == 1
        assert subscriber.status().state == "stopped"
        await wait_for(lambda: sandbox.simulator.stats.open_streams == 0, what="the server to see the stream end")


async def test_latest_means_since_the_first_subscription_even_when_that_subscriber_died_before_committing(
    tmp_path: Path,
) -> None:
    async with pubsub_sandbox(tmp_path, keepalive_seconds=0.2) as sandbox:
        older = sandbox.publish(2)  # published before the trigger was turned on: never texted
        gate = anyio.Event()
        sink = MemorySink(gate=gate)
        first = PubSubSubscriber(options=sandbox.options(), login=sandbox.login(), sink=sink)
        async with running(first):
            await wait_for(lambda: sink.first_subscribed_at is not None, what="the first subscription")
            await anyio.sleep(0.05)
            newer = sandbox.publish(3)
            await wait_for(lambda: first.status().received >= 3, what="the new events to arrive")
        # It died with the new events in hand, none of them committed.
        assert sink.events == {}
        sink.gate = None
        second = PubSubSubscriber(options=sandbox.options(), login=sandbox.login(), sink=sink)
        async with running(second):
            await wait_for(lambda: len(sink.events) == 3, what="the three new events")
            await anyio.sleep(0.3)

    assert set(sink.events) == {e.uuid for e in newer}
    # The first skipped the older events (and stored the position past them) before it died.
    assert (first.status().before_start, second.status().before_start) == (len(older), 0)
