from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Callable
from email.utils import formatdate
from typing import Any

import anyio
import httpx
import pytest

from bridge.ccai.client import MAX_RETRY_AFTER_SECONDS, CCAIClient, manager_url_for, request_body
from bridge.ccai.pacing import LocalRateLimiter
from bridge.errors import CCAIBadResponse, CCAIRejected, CCAIUnavailable
from bridge.model import SmsRequest
from bridge.times import iso_utc
from tests._ccai_errors import DOCUMENTED_ERRORS, seed_error_messages

pytestmark = pytest.mark.anyio

REQUEST = SmsRequest(
    end_user_number="+14155550100",
    outbound_number="+16285550199",
    message="lorem ipsum",
    chat_type="Messaging (SMS)",
    ticket_id="5005g00000SBX01AAH",
    agent_email="john.doe@foo.com",
)


class PauseRecorder(LocalRateLimiter):
    def __init__(self) -> None:
        super().__init__(1000)
        self.paused: list[float] = []

    async def pause(self, seconds: float) -> None:
        self.paused.append(seconds)


def client(
    handler: Callable[[httpx.Request], Any], *, timeout: float = 5, limiter: PauseRecorder | None = None
) -> CCAIClient:
    return CCAIClient(
        base_url="https://acme.uc1.ccaiplatform.com/apps/api/v1",
        subdomain="acme",
        api_token="secret-token",
        timeout=timeout,
        limiter=limiter or PauseRecorder(),
        transport=httpx.MockTransport(handler),
    )


def test_the_documented_error_list_matches_the_seed() -> None:
    from_seed = seed_error_messages()
    if from_seed is None:
        pytest.skip("the seed document is not beside this checkout")
    assert sorted(set(from_seed)) == sorted(DOCUMENTED_ERRORS)


async def test_success_returns_the_chat_and_sends_the_documented_body() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"id": 114, "status": "assigned", "a_new_key": {"ignored": True}})

    chat = await client(handler).send(REQUEST)
    assert (chat.id, chat.status) == ("114", "assigned")
    request = seen[0]
    assert request.method == "POST"
    assert str(request.url) == "https://acme.uc1.ccaiplatform.com/apps/api/v1/sms"
    assert request.headers["authorization"] == "Basic YWNtZTpzZWNyZXQtdG9rZW4="  # acme:secret-token
    assert request.headers["content-type"] == "application/json"
    assert json.loads(request.content) == {
        "chat_type": "Messaging (SMS)",
        "end_user_number": "+14155550100",
        "outbound_number": "+16285550199",
        "message": "lorem ipsum",
        "ticket_id": "5005g00000SBX01AAH",
        "agentEmail": "john.doe@foo.com",
    }


def test_agent_id_takes_precedence_and_is_sent_as_an_integer() -> None:
    body = request_body(SmsRequest("+14155550100", "+16285550199", "hi", "SMS", agent_id=7, agent_email="x@y.z"))
    assert body["agentId"] == 7
    assert "agentEmail" not in body
    assert "ticket_id" not in body


@pytest.mark.parametrize("message", DOCUMENTED_ERRORS)
async def test_every_documented_error_is_final_with_the_message_verbatim(message: str) -> None:
    with pytest.raises(CCAIRejected) as caught:
        await client(lambda r: httpx.Response(400, json={"message": message})).send(REQUEST)
    assert caught.value.message == message


async def test_429_is_a_throttle_with_retry_after_that_pauses_every_worker() -> None:
    limiter = PauseRecorder()
    with pytest.raises(CCAIUnavailable) as caught:
        await client(lambda r: httpx.Response(429, headers={"Retry-After": "3"}), limiter=limiter).send(REQUEST)
    assert caught.value.throttled
    assert caught.value.retry_after == 3
    assert not caught.value.reached
    assert limiter.paused == [3.0]


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("1e9", MAX_RETRY_AFTER_SECONDS),
        ("inf", MAX_RETRY_AFTER_SECONDS),
        ("nan", None),
        ("-5", 0.0),
        ("Wed, 21 Oct 2099 07:28:00 GMT", MAX_RETRY_AFTER_SECONDS),
    ],
)
async def test_an_absurd_retry_after_is_capped(header: str, expected: float | None) -> None:
    """A10: one bad header must not stop all sending for days, nor forever."""
    with pytest.raises(CCAIUnavailable) as caught:
        await client(lambda r: httpx.Response(429, headers={"Retry-After": header})).send(REQUEST)
    assert caught.value.retry_after == expected


@pytest.mark.parametrize("status", [500, 502, 503, 504])
async def test_server_errors_are_retryable_and_may_have_reached_ccai(status: int) -> None:
    """A5: a gateway may answer 5xx after the backend created the chat: possibly delivered."""
    with pytest.raises(CCAIUnavailable) as caught:
        await client(lambda r: httpx.Response(status, text="<html>oops</html>")).send(REQUEST)
    assert caught.value.reached
    assert not caught.value.throttled
    assert f"HTTP {status}" in caught.value.reason


async def test_an_answer_that_trickles_in_is_bounded_by_one_deadline() -> None:
    """A4: httpx's timeout bounds each read; a slow trickle must still end at the deadline."""

    async def trickle(request: httpx.Request) -> httpx.Response:
        async def body() -> Any:
            for byte in b'{"id": 1}':
                await anyio.sleep(0.2)  # no read ever waits long, the whole takes 1.8 s
                yield bytes([byte])

        return httpx.Response(200, content=body())

    started = anyio.current_time()
    with pytest.raises(CCAIUnavailable) as caught:
        await client(trickle, timeout=0.5).send(REQUEST)
    assert caught.value.reached
    assert anyio.current_time() - started < 1.0


async def test_a_connection_failure_never_reached_ccai() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    with pytest.raises(CCAIUnavailable) as caught:
        await client(refuse).send(REQUEST)
    assert not caught.value.reached


async def test_a_read_timeout_may_have_reached_ccai() -> None:
    def slow(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow", request=request)

    with pytest.raises(CCAIUnavailable) as caught:
        await client(slow).send(REQUEST)
    assert caught.value.reached
    assert "may have arrived" in caught.value.reason


async def test_bad_credentials_are_retryable_and_name_the_settings() -> None:
    with pytest.raises(CCAIUnavailable, match="CCAI_API_TOKEN"):
        await client(lambda r: httpx.Response(401, json={"message": "Unauthorized"})).send(REQUEST)


@pytest.mark.parametrize("answer", [httpx.Response(200, text="<html>"), httpx.Response(200, json={"status": "x"})])
async def test_a_success_without_chat_id_is_an_unknown_outcome(answer: httpx.Response) -> None:
    with pytest.raises(CCAIBadResponse):
        await client(lambda r: answer).send(REQUEST)


async def test_an_undocumented_4xx_is_final_and_says_what_ccai_answered() -> None:
    with pytest.raises(CCAIRejected, match="HTTP 404: Not Found"):
        await client(lambda r: httpx.Response(404, text="Not Found")).send(REQUEST)


@pytest.mark.parametrize(
    "answer",
    [
        httpx.Response(400, json={"message": "end_user_number +1 (415) 555-0100 is not reachable"}),
        httpx.Response(422, text="<p>Invalid number 14155550100 for tenant</p>"),
    ],
)
async def test_a_number_ccai_echoes_in_an_error_is_masked(answer: httpx.Response) -> None:
    """The reason travels to logs, the Case, its Task, the API and the dashboard: an undocumented
    error that echoes the customer's number must not carry it there in full."""
    with pytest.raises(CCAIRejected) as caught:
        await client(lambda r: answer).send(REQUEST)
    assert "0100" in caught.value.message
    assert "555" not in caught.value.message
    assert "415" not in caught.value.message


def page(chats: list[dict[str, Any]], next_url: str | None = None) -> httpx.Response:
    headers = {"Link": f'<{next_url}>; rel="next"'} if next_url else {}
    return httpx.Response(200, json=chats, headers=headers)


class ChatList:
    """A stand-in chat list that honours ``created_at[from]``, ``page`` and a page size of its own
    (``Per-Page``), and answers with ``Date`` from a clock ``skew`` seconds off ours."""

    def __init__(self, chats: list[dict[str, Any]], *, per: int = 2, skew: float = 0.0, total: int | None = None):
        self.chats, self.per, self.skew, self.total = chats, per, skew, total
        self.seen: list[httpx.URL] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.seen.append(request.url)
        since = dt.datetime.fromisoformat(request.url.params["created_at[from]"].replace("Z", "+00:00")).timestamp()
        rows = sorted((c for c in self.chats if c["created"] >= since), key=lambda c: (c["created"], c["id"]))
        number = int(request.url.params.get("page", "1"))
        chunk = rows[(number - 1) * self.per : number * self.per]
        body = [
            {"id": c["id"], "out_ticket_id": c.get("ticket"), "created_at": iso_utc(c["created"]), "chat_type": "SMS"}
            for c in chunk
        ]
        total = self.total if self.total is not None else len(rows)
        headers = {
            "Per-Page": str(self.per),
            "Total": str(total),
            "Date": formatdate(time.time() + self.skew, usegmt=True),
        }
        return httpx.Response(200, json=body, headers=headers)


async def test_the_lookup_tails_the_list_by_creation_time_and_pages_only_past_a_full_second() -> None:
    """Issue 20 item 1: ask again from the last row's created_at; page=2 only past a page of one second."""
    t = float(int(time.time()) - 60)
    ticket = str(REQUEST.ticket_id)
    chats: list[dict[str, Any]] = [{"id": i, "created": t} for i in (1, 2, 3)]
    chats += [{"id": 4, "created": t + 1}, {"id": 5, "created": t + 2}, {"id": 6, "created": t + 3, "ticket": ticket}]
    listing = ChatList(chats)
    search = await client(listing).find_chats(ticket_id=ticket, since=t, ago=60)
    assert [c.id for c in search.chats] == ["6"]
    steps = [(u.params["created_at[from]"], u.params.get("page", "1")) for u in listing.seen]
    assert steps[0][0] == iso_utc(t - 120)  # two minutes before the attempt
    assert (iso_utc(t), "2") in steps  # past the full page of one second
    assert [p for _, p in steps].count("2") == 1
    assert steps[-1][1] == "1"  # the list ends on a tail, not a page number


async def test_a_short_page_whose_total_says_rows_remain_is_never_taken_for_not_found() -> None:
    """Issue 20 item 5: ``Total`` says more rows than were read, and no ``Link`` says so."""
    listing = ChatList([], total=7)
    with pytest.raises(CCAIUnavailable, match="remain unread"):
        await client(listing).find_chats(ticket_id="x", since=time.time() - 10, ago=10)


async def test_the_lookup_window_follows_ccais_own_clock_when_it_is_behind_ours() -> None:
    """R4: CCAI's clock 300 s behind the store's: the chat, created as the attempt left on CCAI's
    clock, is still inside the window, and its departure on CCAI's clock comes back."""
    ticket = str(REQUEST.ticket_id)
    departed_ccai = time.time() - 300 - 10
    listing = ChatList([{"id": 9, "created": departed_ccai, "ticket": ticket}], skew=-300)
    search = await client(listing).find_chats(ticket_id=ticket, since=time.time() - 10, ago=10)
    assert [c.id for c in search.chats] == ["9"]
    assert search.departed_at is not None
    assert abs(search.departed_at - departed_ccai) < 2.5


async def test_a_chat_list_that_fails_is_never_taken_for_not_found() -> None:
    with pytest.raises(CCAIUnavailable):
        await client(lambda r: httpx.Response(502, text="bad gateway")).find_chats(ticket_id="x", since=0)


def test_the_manager_api_lives_beside_the_sms_endpoint() -> None:
    assert manager_url_for("https://acme.uc1.ccaiplatform.com/apps/api/v1") == (
        "https://acme.uc1.ccaiplatform.com/manager/api/v1"
    )
