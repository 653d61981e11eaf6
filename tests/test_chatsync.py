"""Closing the loop: what happened to each chat reaches its ticket, by poll and by push, in order."""

from __future__ import annotations

import contextlib
import json
import logging
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from starlette.applications import Starlette
from starlette.routing import Route

from bridge.app import refused
from bridge.ccai.chats import ChatState, parse
from bridge.ccai.session_events import SessionEventsEndpoint
from bridge.chatsync import ChatSync, SyncOptions
from bridge.crm import ChatUpdate, FollowUp
from bridge.errors import CRMUnavailable, InboundError, StoreRejected
from bridge.store import Store
from bridge.store.chat_rows import apply_state
from bridge.store.schema import chats, session_events
from bridge.store.status import CHAT_SYNC_KEY
from tests._clock import Clock
from tests._harness import MOBILE_CASE, MOBILE_NUMBER, QUEUE_CASE, Harness, make_harness

pytestmark = pytest.mark.anyio

OPTIONS = SyncOptions(interval=60, follow_seconds=7 * 86400, no_reply_seconds=24 * 3600, lease_seconds=30)


@pytest.fixture
def h(store: Store, clock: Clock) -> Harness:
    return make_harness(store, clock, bridge_chat_sync_seconds=0)  # the worker never polls: the tests do


def sync_for(h: Harness, *, owner: str = "sync-a", options: SyncOptions = OPTIONS) -> ChatSync:
    return h.chat_sync(options, owner=owner)


async def sent_chat(h: Harness, case: str = MOBILE_CASE) -> int:
    h.ingest(case)
    await h.drain()
    row = h.row(case)
    assert row.status == "sent"
    return int(str(row.chat_id))


def move(h: Harness, chat_id: int, **values: object) -> None:
    h.clock.advance(1)
    h.sim.chats.update(chat_id, values, now=h.clock())


async def test_the_ticket_follows_the_chat_to_its_end_and_the_note_is_completed(h: Harness) -> None:
    chat = await sent_chat(h)
    note = [n for n in h.gateway.notes if n.ticket_id == MOBILE_CASE][-1]
    assert note.awaits_follow_up  # the Task stays open while the chat is followed
    sync = sync_for(h)
    move(h, chat, status="assigned", agent_info={"id": 7, "name": "Ana Lopez", "email": "ana@example.com"})
    await sync.poll()
    await sync.write()
    assert [(u.status, u.agent) for u in h.gateway.chat_updates] == [("assigned", "Ana Lopez")]
    move(h, chat, status="finished", finish_reason="Resolved by agent")
    await sync.poll()
    await sync.write()
    last = h.gateway.chat_updates[-1]
    assert (last.ticket_id, last.status, last.outcome, last.ended_at) == (
        MOBILE_CASE,
        "finished",
        "Resolved by agent",
        h.clock(),
    )
    [follow_up] = h.gateway.follow_ups
    assert (follow_up.ticket_id, follow_up.key, follow_up.note_ref) == (MOBILE_CASE, "send 1", "00T000000000000000")
    assert "Chat outcome: finished" in follow_up.body
    assert "Resolved by agent" in follow_up.body
    # An ended chat is no longer followed: the next poll makes no request at all.
    requests = h.sim.manager_requests
    await sync.poll()
    assert h.sim.manager_requests == requests
    assert await sync.write() == 0  # and nothing is written again


async def test_only_changes_are_written(h: Harness) -> None:
    chat = await sent_chat(h)
    sync = sync_for(h)
    move(h, chat, status="assigned")
    await sync.poll()
    await sync.write()
    writes = h.gateway.chat_writes
    move(h, chat, sub_status=None)  # updated_at moves, nothing the ticket shows changes
    await sync.poll()
    assert await sync.write() == 0
    assert h.gateway.chat_writes == writes


async def test_one_paged_request_per_hundred_changed_chats(h: Harness) -> None:
    ids = [f"5005g00000P{i:04d}AAA" for i in range(130)]
    for i, case in enumerate(ids):
        h.gateway.cases[case] = {"Id": case, "CaseNumber": f"9{i:03d}", "ContactMobile": f"+1 415 555 {2000 + i}"}
    h.ingest(*ids)
    await h.drain()
    sync = sync_for(h)
    for row in h.store.history.find(limit=200):
        h.sim.chats.update(int(str(row.chat_id)), {"status": "assigned"}, now=h.clock() + 1)
    h.clock.advance(1)
    before = h.sim.manager_requests
    assert await sync.poll() == 130
    assert h.sim.manager_requests - before == 2  # 130 changed chats: two pages of 100, never one per chat
    await sync.write()
    assert h.gateway.chat_writes == 1  # one CRM call for up to 200 tickets


async def test_the_high_water_mark_survives_a_restart_and_overlaps_ties(h: Harness) -> None:
    chat = await sent_chat(h)
    first = sync_for(h, owner="process-1")
    move(h, chat, status="assigned")
    await first.poll()
    saved = h.store.status.get(CHAT_SYNC_KEY)
    assert saved is not None
    high_water = saved[0]["high_water"]
    assert high_water == h.clock()
    # A second chat changes in the very same second as the mark (timestamps tie at whole seconds).
    other = await sent_chat(h, QUEUE_CASE)
    h.sim.chats.update(other, {"status": "assigned"}, now=high_water)
    restarted = sync_for(h, owner="process-2")  # a new process reads the mark from the store
    await restarted.poll()
    await restarted.write()
    assert any(u.ticket_id == QUEUE_CASE and u.status == "assigned" for u in h.gateway.chat_updates)


async def test_exactly_one_process_polls(h: Harness) -> None:
    await sent_chat(h)
    h.clock.advance(121)  # the harness worker's own (housekeeping) hold on the lease runs out
    one, two = sync_for(h, owner="a"), sync_for(h, owner="b")  # each polls at its first pass
    before = h.sim.manager_requests
    await one.run_batch()
    await two.run_batch()
    assert h.sim.manager_requests - before == 1  # b found the lease taken
    h.clock.advance(121)  # a stops (its lease, twice the interval, runs out): b takes over
    two = sync_for(h, owner="b")  # b's next poll is due
    await two.run_batch()
    assert h.sim.manager_requests - before == 2


async def test_a_push_event_updates_the_ticket_and_an_older_one_never_overwrites_a_newer(h: Harness) -> None:
    chat = await sent_chat(h)
    sync = sync_for(h)

    def event(event_id: str, at: float, status: str) -> dict[str, Any]:
        return {"event_id": event_id, "timestamp": int(at * 1000), "item": {"id": chat, "status": status}}

    now = h.clock()
    await push(h, event("e2", now + 20, "finished"), event("e1", now + 10, "assigned"))
    assert (await push(h, event("e2", now + 20, "finished")))["new"] == 0  # a redelivery is ignored
    assert await sync.apply_events() == 2
    await sync.write()
    assert h.gateway.chat_updates[-1].status == "finished"
    # The poll then reads an older state (the list lags): it does not take the ticket back.
    h.sim.chats.update(chat, {"status": "assigned"}, now=now + 5)
    await sync.poll()
    await sync.write()  # it may fill in what the push did not say (the agent), never the status back
    assert h.gateway.chat_updates[-1].status == "finished"


async def test_an_unknown_status_is_written_verbatim_and_unknown_keys_ignored(
    h: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    chat = await sent_chat(h)
    sync = sync_for(h)
    move(h, chat, status="escalated")
    await sync.poll()
    await sync.write()
    assert h.gateway.chat_updates[-1].status == "escalated"
    assert caplog.text.count("escalated") == 1
    move(h, chat, status="escalated")
    await sync.poll()  # read again: said once by this chat sync, not at every poll
    assert caplog.text.count("escalated") == 1
    state = parse({"id": chat, "status": "escalated", "updated_at": "2027-01-15T08:00:00Z", "brand_new": 1})
    assert state is not None
    assert state.status == "escalated"
    assert parse({"status": "x"}) is None  # no id: not a chat


async def test_no_reply_is_said_once_and_a_reply_prevents_it(h: Harness) -> None:
    quiet = await sent_chat(h)
    answered = await sent_chat(h, QUEUE_CASE)
    sync = sync_for(h)
    move(h, answered, customer_replied=True)
    await sync.poll()
    h.clock.advance(24 * 3600 + 1)
    move(h, quiet, status="assigned")  # still open, never answered
    await sync.poll()
    await sync.write()
    outcomes = {u.ticket_id: u.outcome for u in h.gateway.chat_updates}
    assert outcomes[MOBILE_CASE] == "No reply after 24 h"
    assert outcomes.get(QUEUE_CASE) != "No reply after 24 h"
    assert quiet != answered
    writes = h.gateway.chat_writes
    await sync.poll()
    await sync.write()
    assert h.gateway.chat_writes == writes  # said once


async def test_a_crm_outage_during_the_chat_write_back_never_resends_and_writes_later(h: Harness) -> None:
    chat = await sent_chat(h)
    sync = sync_for(h)
    h.gateway.chat_failures.extend([CRMUnavailable("Salesforce is down")] * 3)
    move(h, chat, status="finished")
    await sync.poll()
    for _ in range(3):
        await sync.write()
        h.clock.advance(600)
    assert h.gateway.chat_updates == []
    await sync.write()
    assert h.gateway.chat_updates[-1].status == "finished"
    assert len(h.sim.accepted) == 1


async def test_chats_started_long_ago_are_no_longer_followed(h: Harness) -> None:
    await sent_chat(h)
    sync = sync_for(h)
    h.clock.advance(8 * 86400)
    await sync.poll()
    assert h.store.chats.followed(follow_seconds=OPTIONS.follow_seconds) == set()
    before = h.sim.manager_requests
    await sync.poll()
    assert h.sim.manager_requests == before  # nothing followed: no request


def test_parse_reads_what_ccai_gives() -> None:
    state = parse(
        {
            "id": 114,
            "status": "finished",
            "updated_at": "2026-11-25T10:00:05.000Z",
            "ends_at": "2026-11-25T10:00:05.000Z",
            "finish_reason": "finish_reason_none",
            "sub_status": "Disconnected by end user",
            "agent_info": {"id": 1, "email": "john.doe@foo.com", "name": None, "first_name": None},
            "message_count": 3,
        }
    )
    assert state is not None
    assert (state.chat_id, state.status, state.ended, state.agent, state.outcome, state.replied) == (
        "114",
        "finished",
        True,
        "john.doe@foo.com",
        "Disconnected by end user",
        True,
    )


# -- a write and newer news at the same time ----------------------------------------------------


def finished_state(chat: int, at: float) -> ChatState:
    state = parse({"id": chat, "status": "finished", "updated_at": at, "ends_at": at, "finish_reason": "Resolved"})
    assert state is not None
    return state


async def assigned_chat(h: Harness, *, options: SyncOptions = OPTIONS) -> tuple[int, ChatSync]:
    """A chat the bridge started, polled as assigned: its news waits to be written to the Case."""
    chat = await sent_chat(h)
    sync = sync_for(h, options=options)
    move(h, chat, status="assigned")
    await sync.poll()
    return chat, sync


@contextlib.contextmanager
def while_writing(h: Harness, during: Callable[[], None]) -> Iterator[None]:
    """Salesforce's chat write runs ``during`` first: what happens while it takes its time (or,
    if ``during`` raises, instead of answering)."""
    write = h.gateway.write_chats

    def slow_write(updates: Sequence[ChatUpdate], follow_ups: Sequence[FollowUp]) -> Any:
        during()
        return write(updates, follow_ups)

    h.gateway.write_chats = slow_write  # type: ignore[method-assign]
    try:
        yield
    finally:
        h.gateway.write_chats = write  # type: ignore[method-assign]


async def test_news_that_arrives_while_the_ticket_is_being_written_is_written_next(h: Harness) -> None:
    chat, sync = await assigned_chat(h)

    def chat_finishes() -> None:
        # While Salesforce takes its time, another process learns that the chat finished.
        h.clock.advance(1)
        h.store.chats.apply([finished_state(chat, h.clock())])

    with while_writing(h, chat_finishes):
        await sync.write()
    assert [u.status for u in h.gateway.chat_updates] == ["assigned"]
    await sync.write()
    assert [u.status for u in h.gateway.chat_updates] == ["assigned", "finished"]
    [follow_up] = h.gateway.follow_ups
    assert "Chat outcome: finished" in follow_up.body


def lease_until(h: Harness, chat: int) -> float:
    with h.store.db.tx() as connection:
        return float(
            connection.execute(select(chats.c.case_lease_until).where(chats.c.chat_id == str(chat))).scalar_one() or 0
        )


async def test_a_slow_write_keeps_its_claim_on_the_chats(h: Harness) -> None:
    chat, sync = await assigned_chat(h, options=replace(OPTIONS, lease_seconds=0.3))
    taken: list[object] = []

    def a_second_and_another_claim() -> None:
        # Salesforce takes 1 s, longer than the 0.3 s lease: only renewals keep the chat from
        # another process. Time moves in steps, each waiting for the renewal that follows it.
        for _ in range(10):
            h.clock.advance(0.1)
            deadline = time.monotonic() + 3
            while lease_until(h, chat) < h.clock() + 0.25 and time.monotonic() < deadline:
                time.sleep(0.01)
        taken.append(h.store.chats.claim_updates(limit=10, lease_seconds=30))

    with while_writing(h, a_second_and_another_claim):
        await sync.write()
    assert len(taken) == 1
    assert not taken[0]  # nobody else could take the chat while it was being written
    assert [u.status for u in h.gateway.chat_updates] == ["assigned"]


async def test_a_writer_that_lost_its_claim_leaves_the_new_holder_alone(h: Harness) -> None:
    _, sync = await assigned_chat(h)
    taken: list[object] = []

    def stall_then_time_out() -> None:
        h.clock.advance(OPTIONS.lease_seconds + 1)  # the process stalled: its lease ran out
        taken.append(h.store.chats.claim_updates(limit=10, lease_seconds=30))
        raise CRMUnavailable("Salesforce timed out")

    with while_writing(h, stall_then_time_out):
        await sync.write()
    assert len(taken) == 1
    assert taken[0]  # another process took the chat over, and is writing it
    # The first writer's late failure must neither free the second one's claim for a third process
    # nor put off the chat: the second still holds it, for the rest of its lease.
    h.clock.advance(10)
    assert not h.store.chats.claim_updates(limit=10, lease_seconds=30)


# -- pushed session events ----------------------------------------------------------------------

EVENTS_AUTH = ("ccai", "events-secret")


def events_door(h: Harness) -> httpx.AsyncClient:
    door = SessionEventsEndpoint(
        events=h.store.session_events,
        user=EVENTS_AUTH[0],
        password=EVENTS_AUTH[1],
        max_body_bytes=1 << 20,
        metrics=h.metrics,
        wake=lambda: None,
    )
    app = Starlette(
        routes=[Route("/ccai/session-events", door.endpoint, methods=["POST"])],
        exception_handlers={InboundError: refused},  # as the bridge's app answers them
    )
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://bridge.test", auth=EVENTS_AUTH)


async def push(h: Harness, *events: dict[str, Any]) -> dict[str, Any]:
    async with events_door(h) as client:
        response = await client.post("/ccai/session-events", json={"count": len(events), "events": list(events)})
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def ccai_event(h: Harness, chat: int | str, **item: Any) -> dict[str, Any]:
    """A session event as CCAI might send it, with the customer's number and more besides."""
    return {
        "event_id": str(uuid.uuid4()),
        "timestamp": int(h.clock() * 1000),
        "type": "chat",
        "event": "chat_updated",
        "item": {
            "id": chat,
            "updated_at": None,
            "end_user": {"id": 87, "phone_number": MOBILE_NUMBER},
            "transcript": [{"from": "end_user", "text": "call me on 415 555 0100"}],
            **item,
        },
    }


def kept_events(h: Harness) -> dict[str, str]:
    with h.store.db.tx() as connection:
        rows = connection.execute(select(session_events.c.event_id, session_events.c.payload)).all()
    return {str(r[0]): str(r[1]) for r in rows}


async def test_session_events_keep_only_what_applying_them_needs(h: Harness) -> None:
    chat = await sent_chat(h)
    sync = sync_for(h)
    h.clock.advance(1)
    event = ccai_event(h, chat, status="assigned", agent_info={"name": "Ana Lopez"})
    assert (await push(h, event))["new"] == 1
    stored = kept_events(h)[event["event_id"]]
    assert "555" not in stored
    assert "transcript" not in stored
    assert await sync.apply_events() == 1
    await sync.write()
    assert [(u.status, u.agent) for u in h.gateway.chat_updates] == [("assigned", "Ana Lopez")]
    assert kept_events(h)[event["event_id"]] == ""  # applied: only the id is kept, against redelivery
    assert (await push(h, event))["new"] == 0
    assert await sync.apply_events() == 0


async def test_events_about_chats_the_bridge_did_not_start_are_not_kept(h: Harness) -> None:
    await sent_chat(h)
    sync = sync_for(h)
    event = ccai_event(h, 987654, status="assigned", agent_info={"name": "Bo Chen"})
    await push(h, event)
    await sync.apply_events()
    h.clock.advance(3600)
    await sync.poll()  # housekeeping
    assert kept_events(h) == {event["event_id"]: ""}
    assert (await push(h, event))["new"] == 0  # still recognised if CCAI delivers it again
    await sync.write()
    assert all(u.agent != "Bo Chen" for u in h.gateway.chat_updates)


async def test_an_event_that_arrives_before_the_send_is_recorded_as_sent_is_not_lost(
    store: Store, clock: Clock
) -> None:
    early: list[Harness] = []

    class EventBeforeAnswer(httpx.AsyncBaseTransport):
        """CCAI pushes the chat's first event before its answer to ``POST /sms`` reaches the bridge,
        and the worker's event pass runs in between."""

        def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
            self._inner = inner

        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            response = await self._inner.handle_async_request(request)
            if request.method == "POST" and request.url.path.endswith("/sms"):
                await response.aread()
                h = early[0]
                chat = response.json()["id"]
                await push(h, ccai_event(h, chat, status="assigned", agent_info={"name": "Ana Lopez"}))
                await sync_for(h, owner="other").apply_events()
            return response

    h = make_harness(store, clock, wrap=EventBeforeAnswer, bridge_chat_sync_seconds=0)
    early.append(h)
    await sent_chat(h)
    sync = sync_for(h)
    await sync.apply_events()
    await sync.write()
    assert [(u.status, u.agent) for u in h.gateway.chat_updates] == [("assigned", "Ana Lopez")]


@pytest.fixture
def pg_h(pg_schema_url: str, clock: Clock) -> Iterator[Harness]:
    s = Store.from_url(pg_schema_url, clock=clock)
    s.migrate()
    yield make_harness(s, clock, bridge_chat_sync_seconds=0)
    s.close()


async def test_an_event_the_store_refuses_is_skipped_and_the_others_applied(
    pg_h: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    h = pg_h
    first = await sent_chat(h)
    second = await sent_chat(h, QUEUE_CASE)
    sync = sync_for(h)
    h.clock.advance(1)
    poison = ccai_event(h, f"{first}\u0000", status="assigned")  # PostgreSQL refuses NUL, even in a lookup
    good = ccai_event(h, second, status="assigned", agent_info={"name": "Bo Chen"})
    await push(h, poison, good)
    caplog.set_level(logging.INFO)
    assert await sync.apply_events() == 2
    await sync.write()
    assert [(u.ticket_id, u.status) for u in h.gateway.chat_updates] == [(QUEUE_CASE, "assigned")]
    [skipped] = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
    assert poison["event_id"] in skipped
    assert "555" not in caplog.text  # no phone number in any log line
    # The bad event is not tried again, and later news of that chat still gets through.
    assert await sync.apply_events() == 0
    h.clock.advance(1)
    await push(h, ccai_event(h, first, status="finished", finish_reason="Resolved by agent"))
    assert await sync.apply_events() == 1
    await sync.write()
    assert (h.gateway.chat_updates[-1].ticket_id, h.gateway.chat_updates[-1].status) == (MOBILE_CASE, "finished")


async def test_text_no_store_can_hold_is_cleaned_and_an_id_no_store_can_hold_is_ignored(h: Harness) -> None:
    """A lone surrogate (a UTF-16 string cut in half) is valid JSON but no driver can encode it:
    unchecked, it failed every pass of the chat sync, on SQLite and PostgreSQL alike."""
    chat = await sent_chat(h)
    sync = sync_for(h)
    h.clock.advance(1)
    named = ccai_event(h, chat, status="assigned", agent_info={"name": "Ana\ud83d Lopez\u0000"})
    broken_id = {**ccai_event(h, chat, status="finished"), "event_id": "e\udc00"}
    async with events_door(h) as client:
        response = await client.post(
            "/ccai/session-events",
            content=json.dumps({"count": 2, "events": [named, broken_id]}),  # escaped, as a JSON producer sends it
            headers={"Content-Type": "application/json"},
        )
    assert response.status_code == 200, response.text
    assert response.json()["new"] == 1
    assert await sync.apply_events() == 1
    await sync.write()
    assert [(u.status, u.agent) for u in h.gateway.chat_updates] == [("assigned", "Ana Lopez")]
    h.clock.advance(1)
    assert parse({"id": chat, "updated_at": h.clock(), "status": "fini\ud83dshed"}) == parse(
        {"id": chat, "updated_at": h.clock(), "status": "finished"}
    )


def test_the_store_refuses_what_the_driver_cannot_encode(store: Store) -> None:
    with pytest.raises(StoreRejected), store.db.tx() as connection:
        connection.execute(select(chats.c.chat_id).where(chats.c.chat_id == "\ud83d"))


async def test_a_state_applied_against_a_stale_read_never_overwrites_a_newer_one(h: Harness) -> None:
    """The poll and the event applier each read a chat, then write it; the one that read first
    must not overwrite what the other committed in between."""
    chat = await sent_chat(h)
    h.clock.advance(10)
    newer = finished_state(chat, h.clock())
    with h.store.db.tx() as connection:
        stale = connection.execute(select(chats).where(chats.c.chat_id == str(chat))).mappings().one()
    h.store.chats.apply([newer])  # another process, between the read and the write
    older = parse({"id": chat, "status": "assigned", "updated_at": h.clock() - 5})
    assert older is not None
    with h.store.db.tx() as connection:
        assert apply_state(connection, stale, older, h.clock()) == 0
        row = connection.execute(select(chats).where(chats.c.chat_id == str(chat))).mappings().one()
    assert (row["status"], row["ccai_updated_at"]) == ("finished", newer.updated_at)


async def test_a_lease_that_ran_out_is_not_renewed(h: Harness) -> None:
    """Between a claim's read of the free chats and its write, a renewal must not revive a lease
    that ran out: two processes would then write the same ticket at once."""
    chat = await sent_chat(h)
    move(h, chat, status="assigned")
    await sync_for(h).poll()
    store = h.store.chats
    claim = store.claim_updates(limit=10, lease_seconds=5)
    assert claim is not None
    h.clock.advance(3)
    assert store.renew(claim, lease_seconds=5) == 1  # still live: renewed
    h.clock.advance(6)
    assert store.renew(claim, lease_seconds=5) == 0  # ran out: another process may be claiming it
    assert store.claim_updates(limit=10, lease_seconds=5) is not None


async def test_numbers_no_float_holds_and_nested_json_are_refused_cleanly(h: Harness) -> None:
    """A 400-digit timestamp (valid JSON) overflowed float() and a deeply nested body overflowed the
    parser's recursion: both answered 500."""
    chat = await sent_chat(h)
    huge = {**ccai_event(h, chat, status="assigned"), "timestamp": 10**400}
    huge["item"]["updated_at"] = 10**400
    async with events_door(h) as client:
        answer = await client.post(
            "/ccai/session-events",
            content=json.dumps({"count": 1, "events": [huge]}),
            headers={"Content-Type": "application/json"},
        )
        assert answer.status_code == 200, answer.text
        nested = await client.post(
            "/ccai/session-events", content="[" * 30_000 + "]" * 30_000, headers={"Content-Type": "application/json"}
        )
        assert nested.status_code == 400
    assert parse({"id": chat, "updated_at": 10**400}) is None
    assert parse({"id": chat, "updated_at": float("inf")}) is None
