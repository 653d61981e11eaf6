"""Closing the loop: what happened to each chat reaches its ticket, by poll and by push, in order."""

from __future__ import annotations

import json
import random
import uuid

import pytest

from bridge.chats import ChatStore, parse
from bridge.chatsync import STATUS_KEY, ChatSync, SyncOptions
from bridge.errors import CRMUnavailable
from bridge.status import StatusBoard
from bridge.store import Store
from tests._clock import Clock
from tests._harness import MOBILE_CASE, QUEUE_CASE, Harness, make_harness

pytestmark = pytest.mark.anyio

OPTIONS = SyncOptions(interval=60, follow_seconds=7 * 86400, no_reply_seconds=24 * 3600, lease_seconds=30)


@pytest.fixture
def h(store: Store, clock: Clock) -> Harness:
    return make_harness(store, clock, bridge_chat_sync_seconds=0)  # the worker never polls: the tests do


def sync_for(h: Harness, *, owner: str = "sync-a", options: SyncOptions = OPTIONS) -> ChatSync:
    return ChatSync(
        owner=owner,
        chats=ChatStore(h.store.db),
        board=StatusBoard(h.store.db),
        ccai=h.ccai,
        gateway=h.gateway,
        options=options,
        metrics=h.metrics,
        rng=random.Random(1),
    )


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
    assert not note.done  # the Task stays open while the chat is followed
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
    [completion] = h.gateway.completions
    assert "Chat outcome: finished" in completion.body
    assert "Resolved by agent" in completion.body
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
    for row in h.store.find(limit=200):
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
    saved = StatusBoard(h.store.db).get(STATUS_KEY)
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
    one, two = sync_for(h, owner="a"), sync_for(h, owner="b")
    for sync in (one, two):
        sync.poll_now()
    before = h.sim.manager_requests
    await one.run_batch()
    await two.run_batch()
    assert h.sim.manager_requests - before == 1  # b found the lease taken
    h.clock.advance(121)  # a stops (its lease, twice the interval, runs out): b takes over
    two.poll_now()
    await two.run_batch()
    assert h.sim.manager_requests - before == 2


async def test_a_push_event_updates_the_ticket_and_an_older_one_never_overwrites_a_newer(h: Harness) -> None:
    chat = await sent_chat(h)
    chats = ChatStore(h.store.db)
    sync = sync_for(h)

    def event(event_id: str, at: float, status: str) -> tuple[str, float, str]:
        item = {"id": chat, "status": status, "updated_at": None}
        return event_id, at, json.dumps({"event_id": event_id, "timestamp": int(at * 1000), "item": item})

    now = h.clock()
    chats.record_events([event("e2", now + 20, "finished"), event("e1", now + 10, "assigned")])
    chats.record_events([event("e2", now + 20, "finished")])  # a redelivery is ignored
    assert await sync.apply_events() == 2
    await sync.write()
    assert h.gateway.chat_updates[-1].status == "finished"
    # The poll then reads an older state (the list lags): it does not take the ticket back.
    h.sim.chats.update(chat, {"status": "assigned"}, now=now + 5)
    await sync.poll()
    assert await sync.write() == 0
    assert h.gateway.chat_updates[-1].status == "finished"


async def test_an_unknown_status_is_written_verbatim_and_unknown_keys_ignored(
    h: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    chat = await sent_chat(h)
    word = f"escalated_{uuid.uuid4().hex[:6]}"  # logged once per process: a word no other test used
    state = parse({"id": chat, "status": word, "updated_at": "2027-01-15T08:00:00Z", "brand_new": 1})
    assert state is not None
    ChatStore(h.store.db).apply([state])
    await sync_for(h).write()
    assert h.gateway.chat_updates[-1].status == word
    assert caplog.text.count(word) == 1
    ChatStore(h.store.db).apply([parse({"id": chat, "status": word, "updated_at": "2027-01-15T09:00:00Z"})])  # type: ignore[list-item]
    assert caplog.text.count(word) == 1
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
    assert ChatStore(h.store.db).followed(follow_seconds=OPTIONS.follow_seconds) == set()
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
