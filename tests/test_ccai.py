from __future__ import annotations

import json
from collections.abc import Callable

import httpx
import pytest

from bridge.ccai import CCAIClient, request_body
from bridge.errors import CCAIBadResponse, CCAIRejected, CCAIUnavailable
from bridge.model import SmsRequest
from tests.ccai_errors import DOCUMENTED_ERRORS, seed_error_messages

pytestmark = pytest.mark.anyio

REQUEST = SmsRequest(
    end_user_number="+14155550100",
    outbound_number="+16285550199",
    message="lorem ipsum",
    chat_type="Messaging (SMS)",
    ticket_id="5005g00000SBX01AAH",
    agent_email="john.doe@foo.com",
)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def client(handler: Callable[[httpx.Request], httpx.Response]) -> CCAIClient:
    return CCAIClient(
        base_url="https://acme.uc1.ccaiplatform.com/apps/api/v1",
        subdomain="acme",
        api_token="secret-token",
        timeout=5,
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
    assert request.headers["authorization"] == httpx.BasicAuth("acme", "secret-token")._auth_header
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


async def test_429_is_a_throttle_with_retry_after() -> None:
    with pytest.raises(CCAIUnavailable) as caught:
        await client(lambda r: httpx.Response(429, headers={"Retry-After": "3"})).send(REQUEST)
    assert caught.value.throttled
    assert caught.value.retry_after == 3
    assert not caught.value.reached


@pytest.mark.parametrize("status", [500, 502, 503, 504])
async def test_server_errors_are_retryable_and_answered(status: int) -> None:
    with pytest.raises(CCAIUnavailable) as caught:
        await client(lambda r: httpx.Response(status, text="oops")).send(REQUEST)
    assert not caught.value.reached
    assert not caught.value.throttled


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
