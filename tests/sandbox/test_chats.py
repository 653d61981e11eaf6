"""The simulated CCAI's chats in-process: the Manager API list, lifecycles, hand moves, session events."""

from __future__ import annotations

import base64
import math
import time
from collections.abc import AsyncIterator
from typing import Any

import anyio
import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bridge.sandbox.ccai import ACTIVE_SESSION, CCAISimulator, create_ccai_app
from bridge.sandbox.chats import LifeStep, iso, parse_lifecycle
from tests._clock import Clock

pytestmark = pytest.mark.anyio

CHATS = "/manager/api/v1/chats"
T0 = 1_800_000_000.0  # the conftest clock's start: 2027-01-15T08:00:00Z


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def sim(clock: Clock) -> AsyncIterator[CCAISimulator]:
    simulator = CCAISimulator(
        subdomain="acme", api_token="token", outbound_numbers={"+16285550199"}, rate_limit=1000, clock=clock
    )
    yield simulator
    await simulator.aclose()


@pytest.fixture
async def ccai(sim: CCAISimulator) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_ccai_app(sim))
    async with httpx.AsyncClient(transport=transport, base_url="http://ccai.test", auth=("acme", "token")) as client:
        yield client


async def send(ccai: httpx.AsyncClient, n: int = 0, **extra: Any) -> httpx.Response:
    body = {
        "chat_type": "Messaging (SMS)",
        "end_user_number": f"+1 415-555-01{n:02d}",
        "outbound_number": "+1 628-555-0199",
        "message": "Your case was updated.",
        "ticket_id": f"5005g00000SBX{n:02d}AAH",
        **extra,
    }
    return await ccai.post("/apps/api/v1/sms", json=body)


async def listed(ccai: httpx.AsyncClient, **params: Any) -> list[dict[str, Any]]:
    response = await ccai.get(CHATS, params=params)
    assert response.status_code == 200, response.text
    chats: list[dict[str, Any]] = response.json()
    return chats


async def control(ccai: httpx.AsyncClient, **changes: Any) -> None:
    (await ccai.post("/_sandbox/control", json=changes)).raise_for_status()


async def make_chats(ccai: httpx.AsyncClient, clock: Clock, count: int) -> list[int]:
    ids = []
    for n in range(count):
        ids.append((await send(ccai, n)).json()["id"])
        clock.advance(1)
    return ids


# -- the Manager API chat list --------------------------------------------------------------------


async def test_the_chat_list_wants_the_sms_credentials(ccai: httpx.AsyncClient) -> None:
    await send(ccai)
    assert (await ccai.get(CHATS, auth=None)).status_code == 401
    assert (await ccai.get(CHATS, auth=("acme", "wrong"))).status_code == 401
    [chat] = await listed(ccai)
    assert chat["out_ticket_id"] == "5005g00000SBX00AAH"


async def test_the_chat_list_pages_with_a_link_to_the_next_page(ccai: httpx.AsyncClient, clock: Clock) -> None:
    ids = await make_chats(ccai, clock, 5)
    params = {"created_at[from]": iso(T0), "sort_column": "created_at", "sort_direction": "ASC", "per": "2"}
    response = await ccai.get(CHATS, params=params)
    pages, headers = [], []
    while True:
        assert response.status_code == 200
        pages.append([chat["id"] for chat in response.json()])
        headers.append(response.headers)
        if "next" not in response.links:
            break
        next_url = httpx.URL(response.links["next"]["url"])
        assert next_url.host == "ccai.test"  # absolute, and with the same filters
        assert {k: v for k, v in next_url.params.items() if k != "page"} == params
        response = await ccai.get(next_url)
    assert pages == [ids[0:2], ids[2:4], ids[4:5]]
    assert [h["Total"] for h in headers] == ["5", "5", "5"]
    assert httpx.URL(response.links["last"]["url"]).params["page"] == "3"


async def test_per_is_capped_at_100_and_a_page_past_the_end_is_empty(ccai: httpx.AsyncClient, clock: Clock) -> None:
    await make_chats(ccai, clock, 2)
    response = await ccai.get(CHATS, params={"per": "500"})
    assert response.headers["Per-Page"] == "100"
    assert len(response.json()) == 2
    assert "next" not in response.links
    assert await listed(ccai, page="2") == []


async def test_updated_at_from_lists_only_chats_that_changed_since(ccai: httpx.AsyncClient, clock: Clock) -> None:
    first, second = await make_chats(ccai, clock, 2)
    clock.advance(10)  # both are assigned by their schedule (5 s after creation)
    await ccai.post(f"/_sandbox/chats/{first}", json={"customer_replied": True})
    since = iso(clock.now)
    assert [c["id"] for c in await listed(ccai, **{"updated_at[from]": since})] == [first]
    # Offsets and fractions are understood: 08:00:06.5+00:00 is 09:00:06.5+01:00.
    assigned = await listed(ccai, **{"updated_at[from]": "2027-01-15T09:00:05.5+01:00", "sort_column": "updated_at"})
    assert [c["id"] for c in assigned] == [second, first]
    assert all(c["status"] == "assigned" for c in assigned)


async def test_sorting_and_created_at_from(ccai: httpx.AsyncClient, clock: Clock) -> None:
    ids = await make_chats(ccai, clock, 4)
    newest_first = await listed(ccai, sort_column="created_at", sort_direction="DESC")
    assert [c["id"] for c in newest_first] == ids[::-1]
    later = await listed(ccai, **{"created_at[from]": iso(T0 + 2), "sort_direction": "desc"})
    assert [c["id"] for c in later] == [ids[3], ids[2]]
    assert later[0]["created_at"] == "2027-01-15T08:00:03.000Z"


@pytest.mark.parametrize(
    ("params", "named"),
    [
        ({"sort_column": "status"}, "sort_column"),
        ({"sort_direction": "UP"}, "sort_direction"),
        ({"updated_at[from]": "yesterday"}, "updated_at[from]"),
        ({"created_at[from]": "2027-01-15 08:00:00 00:00"}, "created_at[from]"),  # an unencoded "+"
        ({"per": "0"}, "per"),
        ({"page": "-1"}, "page"),
    ],
)
async def test_a_malformed_query_is_refused_with_its_name(
    ccai: httpx.AsyncClient, params: dict[str, str], named: str
) -> None:
    response = await ccai.get(CHATS, params=params)
    assert response.status_code == 400
    assert named in response.json()["message"]


async def test_manager_requests_share_the_tenant_limit_and_are_recorded(
    ccai: httpx.AsyncClient, sim: CCAISimulator
) -> None:
    await control(ccai, rate_limit=2, rate_window="sliding")
    assert [(await ccai.get(CHATS)).status_code for _ in range(3)] == [200, 200, 429]
    assert (await send(ccai)).status_code == 429
    state = (await ccai.get("/_sandbox/state")).json()
    assert state["manager_requests"] == 3
    assert state["manager_request_times"] == [T0] * 3
    assert state["manager_answered"] == {"200": 2, "429": 1}
    assert state["answered"] == {"429": 1}


# -- lifecycles ------------------------------------------------------------------------------------


async def test_a_chat_moves_through_its_lifecycle_on_the_clock(ccai: httpx.AsyncClient, clock: Clock) -> None:
    await control(ccai, chat_lifecycle="selecting@0,assigned@5,finished@60")
    created = (await send(ccai)).json()
    assert (created["status"], created["agent_info"]) == ("selecting", None)

    clock.advance(5)
    [chat] = await listed(ccai)
    assert chat["status"] == "assigned"
    assert chat["agent_info"]["email"]
    assert chat["agent_info"]["name"]
    assert chat["assigned_at"] == chat["updated_at"] == iso(T0 + 5)
    assert (await send(ccai)).json() == {"message": ACTIVE_SESSION}

    clock.advance(55)
    [chat] = await listed(ccai)
    assert (chat["status"], chat["ends_at"], chat["updated_at"]) == ("finished", iso(T0 + 60), iso(T0 + 60))
    assert (chat["finish_reason"], chat["chat_duration"]) == ("finish_reason_none", 55)
    assert (await send(ccai)).status_code == 200  # the ended chat freed the consumer


async def test_a_requested_agent_is_assigned_at_once(ccai: httpx.AsyncClient) -> None:
    answer = (await send(ccai, agentEmail="Ana.Lopez@example.com")).json()
    assert answer["status"] == "assigned"
    assert answer["agent_info"]["name"] == "Ana Lopez"
    assert answer["out_ticket_id"] is None  # only the Manager API carries the ticket id
    [chat] = await listed(ccai)
    assert chat["out_ticket_id"] == "5005g00000SBX00AAH"


def test_lifecycles_are_read_from_text_lists_and_tuples() -> None:
    expected = (LifeStep("selecting", 0), LifeStep("finished", 9, {"fail_reason": "x"}))
    assert parse_lifecycle('[{"status": "finished", "after": 9, "fail_reason": "x"}, "selecting@0"]') == expected
    assert parse_lifecycle([("selecting", 0), ("finished", 9, {"fail_reason": "x"})]) == expected
    for bad in ("", "assigned@soon", "assigned@-1", '[{"status": "x", "after": 1, "colour": "red"}]'):
        with pytest.raises(ValueError, match="lifecycle"):
            parse_lifecycle(bad)


async def test_a_bad_control_request_changes_nothing(ccai: httpx.AsyncClient, sim: CCAISimulator) -> None:
    before = sim.settings()
    response = await ccai.post("/_sandbox/control", json={"latency": 5, "chat_lifecycle": "assigned@later"})
    assert response.status_code == 400
    assert "assigned@later" in response.json()["message"]
    assert sim.settings() == before


# -- moving a chat by hand ---------------------------------------------------------------------


async def test_a_reply_is_marked_and_the_schedule_goes_on(ccai: httpx.AsyncClient, clock: Clock) -> None:
    chat_id = (await send(ccai)).json()["id"]
    clock.advance(2)
    moved = (await ccai.post(f"/_sandbox/chats/{chat_id}", json={"customer_replied": True})).json()
    assert (moved["message_count"], moved["last_msg_sent_at"], moved["updated_at"]) == (2, iso(T0 + 2), iso(T0 + 2))
    clock.advance(3)
    [chat] = await listed(ccai)
    assert chat["status"] == "assigned"


async def test_a_chat_moved_by_hand_leaves_its_schedule(ccai: httpx.AsyncClient, clock: Clock) -> None:
    chat_id = (await send(ccai)).json()["id"]
    clock.advance(1)
    change = {"status": "failed", "fail_reason": "carrier rejected", "sub_status": "Undeliverable"}
    moved = (await ccai.post(f"/_sandbox/chats/{chat_id}", json=change)).json()
    assert (moved["status"], moved["fail_reason"], moved["ends_at"]) == ("failed", "carrier rejected", iso(T0 + 1))
    clock.advance(1000)
    [chat] = await listed(ccai)
    assert (chat["status"], chat["agent_info"]) == ("failed", None)
    assert (await send(ccai)).status_code == 200  # the failed chat freed the consumer


async def test_moving_an_unknown_chat_or_field_is_refused(ccai: httpx.AsyncClient) -> None:
    chat_id = (await send(ccai)).json()["id"]
    assert (await ccai.post("/_sandbox/chats/999", json={"status": "finished"})).status_code == 404
    response = await ccai.post(f"/_sandbox/chats/{chat_id}", json={"colour": "red"})
    assert response.status_code == 400
    assert "colour" in response.json()["message"]


async def test_end_sessions_finishes_every_open_chat(ccai: httpx.AsyncClient, sim: CCAISimulator) -> None:
    await send(ccai, 1)
    await send(ccai, 2)
    await control(ccai, end_sessions=True)
    assert {c["status"] for c in await listed(ccai)} == {"finished"}
    assert sim.sessions == set()


# -- session events ----------------------------------------------------------------------------


class Receiver:
    """An endpoint for session events that records what it gets and can fail the first posts."""

    def __init__(self, failures: int = 0) -> None:
        self.posts: list[tuple[str, dict[str, Any]]] = []
        self.failures = failures

    async def receive(self, request: Request) -> Response:
        if self.failures:
            self.failures -= 1
            return JSONResponse({"error": "down"}, status_code=500)
        self.posts.append((request.headers["authorization"], await request.json()))
        return JSONResponse({"ok": True})

    @property
    def events(self) -> list[dict[str, Any]]:
        return [event for _, body in self.posts for event in body["events"]]

    async def wait_for(self, count: int) -> list[dict[str, Any]]:
        with anyio.fail_after(3):
            while len(self.events) < count:
                await anyio.sleep(0.01)
        return self.events


@pytest.fixture
def receiver(sim: CCAISimulator) -> Receiver:
    hooks = Receiver()
    app = Starlette(routes=[Route("/events", hooks.receive, methods=["POST"])])
    sim.events_transport = httpx.ASGITransport(app=app)
    return hooks


async def test_session_events_are_pushed_with_basic_auth(
    ccai: httpx.AsyncClient, clock: Clock, receiver: Receiver
) -> None:
    await control(ccai, session_events={"url": "http://hooks.test/events", "user": "ccai", "password": "s3cret"})
    chat_id = (await send(ccai)).json()["id"]
    clock.advance(5)  # the pusher's own tick notices the scheduled assignment
    created, assigned = await receiver.wait_for(2)

    authorization, body = receiver.posts[0]
    assert authorization == "Basic " + base64.b64encode(b"ccai:s3cret").decode()
    assert body["count"] == len(body["events"])
    # The documented shape: {event_id, timestamp (epoch ms), item}; no Manager API names in the item.
    assert set(created) == {"event_id", "timestamp", "item"}
    assert (created["timestamp"], created["item"]["id"], created["item"]["state"]) == (T0 * 1000, chat_id, "connected")
    assert [(p["type"], p["status"]) for p in created["item"]["participants"]] == [("end_user", "connected")]
    assert not {"status", "agent_info", "fail_reason"} & set(created["item"])
    assert assigned["timestamp"] == (T0 + 5) * 1000
    agent = assigned["item"]["participants"][-1]
    assert (agent["type"], agent["status"], agent["name"]) == ("agent", "accepted", "John Doe")
    assert created["event_id"] != assigned["event_id"]


async def test_session_events_can_arrive_out_of_order_and_twice(
    ccai: httpx.AsyncClient, clock: Clock, receiver: Receiver
) -> None:
    await control(ccai, chat_lifecycle="selecting@0,assigned@5,finished@6")
    target = {"url": "http://hooks.test/events", "shuffle": True, "duplicate": True, "batch": 1}
    await control(ccai, session_events=target)
    await send(ccai)
    await receiver.wait_for(2)
    clock.advance(10)  # two moves fall due at once: assigned, then ended and wrapped up
    events = await receiver.wait_for(8)

    assert [body["count"] for _, body in receiver.posts] == [1] * 8
    later = events[2::2]  # each one posted twice
    assert events[2:] == [e for e in later for _ in range(2)]
    assert [e["timestamp"] for e in later] != sorted(e["timestamp"] for e in later)  # order by timestamp
    assigned, ended, final = sorted(later, key=lambda e: e["timestamp"])
    assert [p["status"] for p in assigned["item"]["participants"]] == ["connected", "accepted"]
    assert (ended["item"]["state"], ended["item"]["ends_at"]) == ("disconnected", "2027-01-15T08:00:06.000Z")
    assert final["item"]["participants"][-1]["status"] == "dispositionSubmitted"
    assert final["item"]["dispositions"] == {"code": "resolved", "custom_code_id": None, "note": None}
    assert len({e["event_id"] for e in events}) == 4


async def test_a_failed_delivery_is_retried(ccai: httpx.AsyncClient, receiver: Receiver) -> None:
    receiver.failures = 2
    await control(ccai, session_events={"url": "http://hooks.test/events"})
    await send(ccai)
    [event] = await receiver.wait_for(1)
    assert event["item"]["state"] == "connected"
    state = (await ccai.get("/_sandbox/state")).json()["session_events"]
    assert (state["attempts"], state["delivered"], state["failed"]) == (3, 1, 0)


async def test_session_events_stop_when_set_to_null(ccai: httpx.AsyncClient, receiver: Receiver) -> None:
    await control(ccai, session_events={"url": "http://hooks.test/events"})
    await send(ccai, 1)
    await receiver.wait_for(1)
    await control(ccai, session_events=None)
    await send(ccai, 2)
    await anyio.sleep(0.3)
    assert len(receiver.events) == 1


async def test_opted_out_numbers_are_set_through_control(ccai: httpx.AsyncClient) -> None:
    await control(ccai, opted_out=["415.555.0100"])
    refused = await send(ccai, 0)
    assert refused.status_code == 400
    assert refused.json() == {"message": "Outbound SMS failed. Consumer has opted out of SMS."}
    assert (await send(ccai, 1)).status_code == 200
    bad = await ccai.post("/_sandbox/control", json={"opted_out": ["12345"]})
    assert bad.status_code == 400
    assert "12345" in bad.json()["message"]


# -- pacing ----------------------------------------------------------------------------------------


async def arrivals(ccai: httpx.AsyncClient, clock: Clock, offsets: list[float]) -> list[int]:
    """POST at each offset from T0 (an empty body, refused with 400 once admitted); the statuses."""
    statuses = []
    for offset in offsets:
        clock.now = T0 + offset
        statuses.append((await ccai.post("/apps/api/v1/sms", json={})).status_code)
    return statuses


async def test_the_sliding_window_refuses_what_the_bucket_lets_through(
    ccai: httpx.AsyncClient, clock: Clock, sim: CCAISimulator
) -> None:
    ten_in_a_second = [i / 10 for i in range(10)]
    await control(ccai, rate_limit=10)
    assert await arrivals(ccai, clock, [*ten_in_a_second, 0.95]) == [400] * 11

    await control(ccai, rate_window="sliding")
    statuses = await arrivals(ccai, clock, [10 + t for t in [*ten_in_a_second, 10.95 - 10, 11.0 - 10]])
    assert statuses == [400] * 10 + [429, 400]  # at 11.0 the arrival at 10.0 has left the window
    state = (await ccai.get("/_sandbox/state")).json()
    assert state["answered"] == {"400": 22, "429": 1}
    assert state["request_times"][-2:] == [T0 + 10.95, T0 + 11.0]
    assert state["settings"]["rate_window"] == "sliding"


async def test_jitter_delays_an_arrival_before_it_counts(ccai: httpx.AsyncClient, sim: CCAISimulator) -> None:
    sim.clock = time.time
    await control(ccai, jitter=0.3)
    sim.rng.seed(3)
    delay = sim.rng.uniform(0, 0.3)
    sim.rng.seed(3)
    started = time.time()
    await ccai.post("/apps/api/v1/sms", json={})
    assert sim.request_times[0] - started >= delay > 0.01
    assert math.isclose(sim.settings()["jitter"], 0.3)
