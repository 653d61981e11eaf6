"""Session events in the shape Google documents (``tests/fixtures/session_events``), pushed over
HTTP to the bridge's session-events endpoint, on SQLite and PostgreSQL: the Case learns the agent,
the state and the wrap-up sooner, never less than the poll gives it, and the poll still ends the
chat. Opt-outs CCAI reports (a wrap-up code, ``end_user_opt_out``) reach the opt-out list."""

from __future__ import annotations

import copy
import json
import logging
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.routing import Route

from bridge.app import refused
from bridge.ccai.chats import event_state, opted_out, parse
from bridge.ccai.session_events import SessionEventsEndpoint
from bridge.chatsync import ChatSync
from bridge.errors import InboundError
from bridge.sandbox.servers import free_port
from bridge.services import chat_sync
from bridge.store import Store
from bridge.store.chat_rows import read_kept_state
from tests._clock import Clock
from tests._harness import MOBILE_CASE, MOBILE_NUMBER, Harness, harness_settings, make_harness
from tests._processes import wait_for

pytestmark = pytest.mark.anyio

FIXTURES = Path(__file__).parent / "fixtures" / "session_events"
AUTH = ("ccai", "events-secret")


@pytest.fixture
def h(store: Store, clock: Clock) -> Harness:
    return make_harness(store, clock, bridge_chat_sync_seconds=0)


@pytest.fixture
def door(h: Harness) -> Iterator[str]:
    """The bridge's session-events endpoint, served over HTTP on 127.0.0.1; yields its URL."""
    endpoint = SessionEventsEndpoint(
        events=h.store.session_events,
        user=AUTH[0],
        password=AUTH[1],
        max_body_bytes=1 << 20,
        metrics=h.metrics,
        wake=lambda: None,
    )
    app = Starlette(
        routes=[Route("/ccai/session-events", endpoint.endpoint, methods=["POST"])],
        exception_handlers={InboundError: refused},
    )
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off", access_log=False)
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for(lambda: server.started, what="the session-events endpoint")
    yield f"http://127.0.0.1:{port}/ccai/session-events"
    server.should_exit = True
    thread.join(timeout=10)


def bodies(name: str, chat: int, start: float) -> list[dict[str, Any]]:
    """The fixture's bodies about ``chat``, their timestamps moved so that the first is ``start``."""
    loaded: list[dict[str, Any]] = json.loads((FIXTURES / name).read_text())
    first = loaded[0]["events"][0]["timestamp"]
    out = []
    for body in loaded:
        body = copy.deepcopy(body)
        for event in body["events"]:
            event["item"]["id"] = chat
            event["timestamp"] = int(start * 1000) + event["timestamp"] - first
        out.append(body)
    return out


async def post(url: str, body: dict[str, Any]) -> None:
    async with httpx.AsyncClient(auth=AUTH) as client:
        response = await client.post(url, json=body)
    assert response.status_code == 200, response.text
    assert response.json()["new"] == len(body["events"])


def sync_for(h: Harness, **settings: Any) -> ChatSync:
    """The chat sync as the bridge wires it (its opt-outs go through the consent check)."""
    return chat_sync(
        harness_settings(bridge_chat_sync_seconds=60, bridge_no_reply_hours=0, **settings),
        h.context("sync"),
        store=h.store,
        gateway=h.gateway,
        ccai=h.ccai,
    )


async def sent_chat(h: Harness) -> int:
    h.ingest(MOBILE_CASE)
    await h.drain()
    row = h.row(MOBILE_CASE)
    assert row.status == "sent"
    return int(str(row.chat_id))


def followed(h: Harness) -> set[str]:
    return h.store.chats.followed(follow_seconds=7 * 86400)


async def test_documented_events_tell_the_case_more_and_the_poll_still_ends_the_chat(
    h: Harness, door: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    chat = await sent_chat(h)
    sync = sync_for(h)
    start = h.clock() + 1
    start_, routed, assigned, active, ended, final = bodies("sms_chat_lifecycle.json", chat, start)
    for body in (start_, routed, assigned, active):
        await post(door, body)
    await sync.apply_events()
    await sync.write()
    # The agent participant's name and the state, not nulls.
    assert [(u.status, u.agent, u.outcome, u.ended_at) for u in h.gateway.chat_updates] == [
        ("assigned", "Ana Lopez", None, None)
    ]
    h.clock.advance(start + 60 - h.clock())
    await post(door, ended)
    await sync.apply_events()
    await sync.write()
    last = h.gateway.chat_updates[-1]
    assert (last.status, last.agent) == ("disconnected", "Ana Lopez")
    assert str(chat) in followed(h)  # a push does not end the chat: the poll keeps following it
    assert h.gateway.follow_ups == []  # nor completes its Task
    h.sim.chats.update(chat, {"status": "finished", "sub_status": "Disconnected by end user"}, now=h.clock())
    h.clock.advance(start + 90 - h.clock())
    await post(door, final)
    await sync.apply_events()
    await sync.write()
    last = h.gateway.chat_updates[-1]
    assert (last.status, last.agent, last.outcome) == (
        "disconnected",
        "Ana Lopez",
        "appointment_confirmed: Customer confirmed Tuesday 10am",
    )
    # The poll reads the end (older than the wrap-up it was pushed): the chat ends, the wrap-up stays.
    h.clock.advance(5)
    await sync.poll()
    await sync.write()
    last = h.gateway.chat_updates[-1]
    assert (last.status, last.agent, last.outcome, last.ended_at) == (
        "finished",
        "Ana Lopez",
        "appointment_confirmed: Customer confirmed Tuesday 10am",
        start + 60,
    )
    assert str(chat) not in followed(h)
    [follow_up] = h.gateway.follow_ups
    assert "Chat outcome: finished" in follow_up.body
    assert "Customer confirmed Tuesday 10am" in follow_up.body
    assert "Agent: Ana Lopez" in follow_up.body
    assert "555" not in caplog.text
    assert h.store.opt_outs.get(MOBILE_NUMBER) is None  # not a stop code


async def test_an_event_that_says_nothing_new_leaves_the_case_alone(h: Harness, door: str) -> None:
    chat = await sent_chat(h)
    sync = sync_for(h)
    h.clock.advance(1)
    assigned = {"status": "assigned", "agent_info": {"id": 2, "name": "Bo Chen"}, "sub_status": "in_queue"}
    h.sim.chats.update(chat, assigned, now=h.clock())
    await sync.poll()
    await sync.write()
    before = h.gateway.chat_updates[-1]
    assert (before.status, before.agent) == ("assigned", "Bo Chen")
    h.clock.advance(1)
    start_, routed, *_ = bodies("sms_chat_lifecycle.json", chat, h.clock())
    await post(door, start_)
    await post(door, routed)
    await sync.apply_events()
    assert await sync.write() == 0  # nothing to tell: no write, nothing blanked
    assert h.gateway.chat_updates[-1] == before


async def test_a_stop_wrap_up_code_puts_the_number_on_the_opt_out_list(h: Harness, door: str) -> None:
    chat = await sent_chat(h)
    sync = sync_for(h, ccai_opt_out_dispositions="other_code, stop_requested")
    for body in bodies("sms_chat_opt_out.json", chat, h.clock() + 1):
        await post(door, body)
    await sync.apply_events()
    entry = h.store.opt_outs.get(MOBILE_NUMBER)
    assert entry is not None
    assert (entry.source, entry.note) == ("ccai", str(chat))
    # Without the code in the list, the same wrap-up is only an outcome.
    assert sync_for(h)._options.opt_out_dispositions == ()


async def test_a_wrap_up_code_not_in_the_list_is_no_opt_out(h: Harness, door: str) -> None:
    chat = await sent_chat(h)
    sync = sync_for(h)
    for body in bodies("sms_chat_opt_out.json", chat, h.clock() + 1):
        await post(door, body)
    await sync.apply_events()
    await sync.write()
    assert h.store.opt_outs.get(MOBILE_NUMBER) is None
    assert h.gateway.chat_updates[-1].outcome == "STOP_REQUESTED: Customer asked us not to text again"


async def test_a_chat_that_fails_with_end_user_opt_out_puts_the_number_on_the_list(h: Harness) -> None:
    chat = await sent_chat(h)
    sync = sync_for(h)
    h.clock.advance(1)
    h.sim.chats.update(chat, {"status": "failed", "fail_reason": "end_user_opt_out"}, now=h.clock())
    await sync.poll()
    entry = h.store.opt_outs.get(MOBILE_NUMBER)
    assert entry is not None
    assert (entry.source, entry.note) == ("ccai", str(chat))
    # The next send to the number is stopped before CCAI is called.
    h.clock.advance(3600)  # past the loop guard
    h.ingest(MOBILE_CASE)
    await h.drain()
    assert h.row(MOBILE_CASE).status == "opted_out"


async def test_a_wrap_up_pushed_after_the_poll_ended_the_chat_keeps_its_end(h: Harness, door: str) -> None:
    chat = await sent_chat(h)
    sync = sync_for(h)
    start = h.clock() + 1
    *_, ended, final = bodies("sms_chat_lifecycle.json", chat, start)
    h.clock.advance(start + 60 - h.clock())
    h.sim.chats.update(chat, {"status": "finished", "agent_info": {"id": 7, "name": "Ana Lopez"}}, now=h.clock())
    await sync.poll()
    await sync.write()
    assert str(chat) not in followed(h)
    await post(door, ended)  # late: the poll already said how it ended
    await post(door, final)
    await sync.apply_events()
    await sync.write()
    last = h.gateway.chat_updates[-1]
    assert (last.status, last.ended_at, last.outcome) == (
        "finished",
        start + 60,
        "appointment_confirmed: Customer confirmed Tuesday 10am",
    )


def test_event_state_reads_the_documented_item() -> None:
    state = event_state(
        {
            "event_id": "x",
            "item": {
                "id": 114,
                "state": "disconnected",
                "participants": [
                    {"type": "end_user", "status": "disconnected", "fail_reason": "end_user_opt_out"},
                    {"type": "agent", "status": "dispositionSubmitted", "id": 7, "first_name": "Ana", "last_name": "L"},
                ],
                "dispositions": [{"code": "done", "custom_code_id": 1, "note": None}],
            },
        },
        1_800_000_000.0,
    )
    assert state is not None
    assert (state.status, state.agent, state.outcome, state.disposition) == ("disconnected", "Ana L", "done", "done")
    assert opted_out(state)  # end_user_opt_out, whatever the codes
    quiet = event_state({"item": {"id": 114, "state": "connected", "participants": []}}, 1_800_000_000.0)
    assert quiet is not None
    assert (quiet.status, quiet.agent, quiet.outcome) == (None, None, None)
    nothing = parse({"id": 1, "updated_at": 1, "fail_reason": "nothing"})
    assert nothing is not None
    assert nothing.fail_reason is None
    assert not opted_out(nothing, ["nothing"])


def test_a_state_kept_by_an_earlier_version_is_still_read() -> None:
    kept = {"chat_id": "114", "status": "assigned", "updated_at": 1.0, "agent": "Ana", "ended_at": None}
    state = read_kept_state(json.dumps({**kept, "outcome": None, "replied": None}), None)
    assert state is not None
    assert (state.agent, state.fail_reason, state.disposition) == ("Ana", None, None)
