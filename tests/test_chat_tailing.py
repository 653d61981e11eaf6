"""The chat sync reads CCAI's chat list by tailing it, over real HTTP (the simulated CCAI served on
127.0.0.1), on SQLite and PostgreSQL: no chat change is skipped for good when the tenant's other
chats change while the list is read, when one chat is stamped in the future, or when a chat starts
being followed while the list is read (issue 20 item 1, reliability audit 2 R9)."""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass

import httpx
import pytest
import uvicorn

from bridge.chatsync import ChatSync, SyncOptions
from bridge.sandbox.ccai import CCAISimulator, create_ccai_app
from bridge.sandbox.chats import parse_lifecycle
from bridge.sandbox.servers import free_port
from bridge.store import Store
from tests._clock import Clock
from tests._harness import MOBILE_CASE, QUEUE_CASE, Harness, make_harness
from tests._processes import wait_for

pytestmark = pytest.mark.anyio

OPTIONS = SyncOptions(interval=60, follow_seconds=7 * 86400, no_reply_seconds=0, lease_seconds=30)


@dataclass
class Served:
    sim: CCAISimulator
    url: str


@pytest.fixture
def served(clock: Clock) -> Iterator[Served]:
    """The simulated CCAI on 127.0.0.1, on the test's clock."""
    sim = CCAISimulator(
        subdomain="acme", api_token="token", outbound_numbers={"+16285550199"}, rate_limit=1000, clock=clock
    )
    port = free_port()
    config = uvicorn.Config(create_ccai_app(sim), host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    config.timeout_graceful_shutdown = 1
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for(lambda: server.started, what="the simulated CCAI on 127.0.0.1")
    yield Served(sim, f"http://127.0.0.1:{port}/apps/api/v1")
    server.should_exit = True
    thread.join(timeout=10)


class Hooked(httpx.AsyncBaseTransport):
    """Real HTTP, with ``hook`` run once just before the first chat-list request leaves."""

    def __init__(self, hook: Callable[[], Awaitable[None]]) -> None:
        self._wire = httpx.AsyncHTTPTransport()
        self._hook: Callable[[], Awaitable[None]] | None = hook

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/manager/api/v1/chats") and self._hook is not None:
            hook, self._hook = self._hook, None
            await hook()
        return await self._wire.handle_async_request(request)

    async def aclose(self) -> None:
        await self._wire.aclose()


def harness(store: Store, clock: Clock, served: Served, **kwargs: object) -> Harness:
    return make_harness(store, clock, ccai_url=served.url, sim=served.sim, bridge_chat_sync_seconds=0, **kwargs)  # type: ignore[arg-type]


def sync_for(h: Harness) -> ChatSync:
    return h.chat_sync(OPTIONS)


def many_cases(h: Harness, count: int, *, prefix: str = "P") -> list[str]:
    ids = [f"5005g00000{prefix}{i:04d}AAA" for i in range(count)]
    for i, case in enumerate(ids):
        h.gateway.cases[case] = {"Id": case, "CaseNumber": f"9{i:03d}", "ContactMobile": f"+1 415 555 {2000 + i}"}
    return ids


async def send_all(h: Harness, cases: list[str]) -> None:
    h.ingest(*cases)
    await h.drain()


def chat_of(h: Harness, case: str) -> int:
    row = h.row(case)
    assert row.status == "sent"
    return int(str(row.chat_id))


def shown(h: Harness) -> dict[str, str | None]:
    """Each ticket's chat status as last written."""
    return {u.ticket_id: u.status for u in h.gateway.chat_updates}


async def test_a_tenant_updating_chats_while_the_list_is_read_loses_no_chat_change(
    store: Store, clock: Clock, served: Served
) -> None:
    h = harness(store, clock, served)
    cases = many_cases(h, 130)
    await send_all(h, cases)
    sync = sync_for(h)
    await sync.poll()  # the new chats are read: from now on only their changes matter
    await sync.write()
    # 130 chats are assigned over 65 seconds (two a second), in a tenant whose other integrations
    # update chats all the time: after each page is read, one chat it showed changes.
    start = clock()
    for i, case in enumerate(cases):
        served.sim.chats.update(chat_of(h, case), {"status": "assigned"}, now=start + 1 + i // 2)
    clock.advance(70)
    served.sim.chat_list = frozenset({"shift"})
    before = served.sim.manager_requests
    await sync.poll()
    await sync.write()
    stale = [case for case in cases if shown(h).get(case) != "assigned"]
    assert stale == []  # paged by number, the row that moved up to page 1 was never read
    assert served.sim.manager_requests - before <= 3  # one request per 100 changed chats, plus the tail's end
    # And nothing is left for the next poll to find late.
    await sync.poll()
    assert [case for case in cases if shown(h).get(case) != "assigned"] == []


async def test_more_than_a_page_of_changes_in_one_second_is_read_again_by_the_next_poll(
    store: Store, clock: Clock, served: Served
) -> None:
    h = harness(store, clock, served)
    cases = many_cases(h, 130, prefix="S")
    await send_all(h, cases)
    sync = sync_for(h)
    await sync.poll()
    await sync.write()
    second = clock() + 1
    for case in cases:  # 130 changes within one second: only page=2 gets past the first 100
        served.sim.chats.update(chat_of(h, case), {"status": "assigned"}, now=second)
    clock.advance(10)
    served.sim.chat_list = frozenset({"shift"})  # and rows shift while that second is paged
    await sync.poll()
    clock.advance(60)
    await sync.poll()
    await sync.write()
    assert [case for case in cases if shown(h).get(case) != "assigned"] == []
    before = served.sim.manager_requests
    clock.advance(60)
    await sync.poll()
    assert served.sim.manager_requests - before == 1  # read again once, not at every poll


async def test_one_chat_stamped_in_the_future_does_not_hide_the_others(
    store: Store, clock: Clock, served: Served
) -> None:
    h = harness(store, clock, served)
    cases = many_cases(h, 4, prefix="F")
    await send_all(h, cases)
    sync = sync_for(h)
    chats = [chat_of(h, case) for case in cases]
    clock.advance(1)
    for chat in chats:
        served.sim.chats.update(chat, {"status": "assigned"}, now=clock())
    served.sim.chats.chats[chats[0]].updated_at = clock() + 600  # a CCAI node whose clock runs 10 min ahead
    clock.advance(1)
    await sync.poll()
    clock.advance(30)
    for chat in chats[1:]:
        served.sim.chats.update(chat, {"status": "finished"}, now=clock())
    clock.advance(30)
    await sync.poll()
    await sync.write()
    assert [shown(h).get(case) for case in cases[1:]] == ["finished"] * 3


async def test_a_chat_followed_while_the_list_is_read_is_read_again(store: Store, clock: Clock, served: Served) -> None:
    holder: list[Harness] = []

    async def send_meanwhile() -> None:
        # The list request waits (for a rate-limit slot, a slow Manager API): meanwhile another
        # worker's send is answered and recorded, so its chat is followed from now on.
        h = holder[0]
        h.ingest(QUEUE_CASE)
        await h.drain()
        clock.advance(2)  # and another chat changes after it
        served.sim.chats.update(chat_of(h, MOBILE_CASE), {"status": "assigned"}, now=clock())

    h = harness(store, clock, served, transport=Hooked(send_meanwhile))
    holder.append(h)
    served.sim.chats.lifecycle = parse_lifecycle("selecting@0")  # the chat will not change again for a while
    h.ingest(MOBILE_CASE)
    await h.drain()
    sync = sync_for(h)
    clock.advance(5)
    await sync.poll()  # reads the list after QUEUE_CASE's chat exists and is followed
    clock.advance(60)
    await sync.poll()
    await sync.write()
    assert shown(h).get(QUEUE_CASE) == "selecting"  # CCAI's status reached the Case


# -- the documented vocabulary, and the list's other shapes (issue 20 items 3 and 7) ------------


async def test_every_documented_final_status_ends_the_chat_and_completes_its_note(
    store: Store, clock: Clock, served: Served
) -> None:
    h = harness(store, clock, served)
    finals = ["finished", "no_response", "canceled", "failed"]
    cases = many_cases(h, len(finals), prefix="E")
    await send_all(h, cases)
    sync = sync_for(h)
    clock.advance(1)
    for case, status in zip(cases, finals, strict=True):
        served.sim.chats.update(chat_of(h, case), {"status": status}, now=clock())
    clock.advance(1)
    await sync.poll()
    await sync.write()
    assert sorted(f.ticket_id for f in h.gateway.follow_ups) == sorted(cases)  # every note completed
    assert h.store.chats.followed(follow_seconds=OPTIONS.follow_seconds) == set()  # none followed any more


async def test_fail_reason_nothing_is_no_outcome_and_a_string_agent_is_shown(
    store: Store, clock: Clock, served: Served
) -> None:
    h = harness(store, clock, served)
    h.ingest(MOBILE_CASE)
    await h.drain()
    sync = sync_for(h)
    served.sim.chat_list = frozenset({"agent_string"})  # agent_info: "Ana Lopez", as live tenants send it
    clock.advance(1)
    chat = chat_of(h, MOBILE_CASE)
    served.sim.chats.update(chat, {"status": "assigned", "agent_info": {"id": 7, "name": "Ana Lopez"}}, now=clock())
    clock.advance(1)
    await sync.poll()
    await sync.write()
    served.sim.chats.update(
        chat, {"status": "finished", "fail_reason": "nothing", "sub_status": "Disconnected by end user"}, now=clock()
    )
    clock.advance(1)
    await sync.poll()
    await sync.write()
    last = h.gateway.chat_updates[-1]
    assert (last.status, last.agent, last.outcome) == ("finished", "Ana Lopez", "Disconnected by end user")


async def test_a_list_with_total_but_no_link_is_read_to_its_end(store: Store, clock: Clock, served: Served) -> None:
    h = harness(store, clock, served)
    cases = many_cases(h, 130, prefix="L")
    await send_all(h, cases)
    sync = sync_for(h)
    await sync.poll()
    served.sim.chat_list = frozenset({"no_link"})
    start = clock()
    for i, case in enumerate(cases):
        served.sim.chats.update(chat_of(h, case), {"status": "assigned"}, now=start + 1 + i // 2)
    clock.advance(70)
    await sync.poll()
    await sync.write()
    assert [case for case in cases if shown(h).get(case) != "assigned"] == []


def test_the_sandbox_chat_list_quirks_are_switched_by_hand(served: Served) -> None:
    base = served.url.replace("/apps/api/v1", "")
    auth = ("acme", "token")
    body = {"ticket_id": "T1", "chat_type": "SMS"}
    served.sim.chats.create(chat_id=900, body=body, consumer="+14155550100", outbound="", now=0.0)
    served.sim.chats.update(900, {"status": "assigned", "agent_info": {"id": 7, "name": "Ana Lopez"}}, now=1.0)
    refused = httpx.post(f"{base}/_sandbox/control", json={"chat_list": ["sideways"]})
    assert refused.status_code == 400
    answer = httpx.post(f"{base}/_sandbox/control", json={"chat_list": "no-link,agent-string"})
    assert answer.json()["settings"]["chat_list"] == ["agent_string", "no_link"]
    listed = httpx.get(f"{base}/manager/api/v1/chats", auth=auth)
    assert "Link" not in listed.headers
    assert listed.headers["Total"] == "1"
    assert listed.json()[0]["agent_info"] == "Ana Lopez"
    httpx.post(f"{base}/_sandbox/control", json={"chat_list": []})
    assert httpx.get(f"{base}/manager/api/v1/chats", auth=auth).json()[0]["agent_info"]["name"] == "Ana Lopez"


async def test_a_chat_id_ccai_gives_again_carries_news_to_its_own_ticket(
    store: Store, clock: Clock, served: Served
) -> None:
    h = harness(store, clock, served)
    h.ingest(MOBILE_CASE)
    await h.drain()
    reused = chat_of(h, MOBILE_CASE)
    served.sim.next_chat_id = reused  # CCAI's next chat id goes back (reliability audit 2, R17)
    del served.sim.chats.chats[reused]
    clock.advance(1)
    h.ingest(QUEUE_CASE)
    await h.drain()
    assert chat_of(h, QUEUE_CASE) == reused
    sync = sync_for(h)
    clock.advance(1)
    served.sim.chats.update(reused, {"status": "assigned", "agent_info": {"id": 7, "name": "Ana Lopez"}}, now=clock())
    clock.advance(1)
    await sync.poll()
    await sync.write()
    news = [(u.ticket_id, u.agent) for u in h.gateway.chat_updates if u.agent == "Ana Lopez"]
    assert news == [(QUEUE_CASE, "Ana Lopez")]  # the new chat's ticket, never the older one
