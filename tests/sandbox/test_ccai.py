from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from bridge.sandbox.ccai import OPTED_OUT, CCAISimulator, validate
from tests._ccai_errors import DOCUMENTED_ERRORS
from tests._processes import SandboxProcess, run_sandbox, wait_for

GOOD = {
    "chat_type": "Messaging (SMS)",
    "end_user_number": "+1 415-555-0100",
    "outbound_number": "+1 628-555-0199",
    "message": "lorem ipsum",
    "ticket_id": "5005g00000SBX01AAH",
}


def sim(**kwargs: Any) -> CCAISimulator:
    return CCAISimulator(subdomain="s", api_token="t", outbound_numbers={"+16285550199"}, **kwargs)


@pytest.mark.parametrize(
    ("change", "simulator", "expected"),
    [
        ({"chat_type": None}, {}, DOCUMENTED_ERRORS[0]),
        ({"chat_type": "In-app"}, {}, DOCUMENTED_ERRORS[1]),
        ({}, {"sms_enabled": False}, DOCUMENTED_ERRORS[2]),
        ({}, {"outbound_enabled": False}, DOCUMENTED_ERRORS[3]),
        ({"end_user_number": None}, {}, DOCUMENTED_ERRORS[4]),
        ({"end_user_number": "12345"}, {}, DOCUMENTED_ERRORS[5]),
        ({"end_user_number": "+44 20 7946 0958"}, {}, DOCUMENTED_ERRORS[6]),
        ({"outbound_number": None}, {}, DOCUMENTED_ERRORS[7]),
        ({"outbound_number": "12345"}, {}, DOCUMENTED_ERRORS[8]),
        ({"outbound_number": "+1 212-555-0142"}, {}, DOCUMENTED_ERRORS[9]),
        ({"message": ""}, {}, DOCUMENTED_ERRORS[10]),
        ({}, {"sessions": {"+14155550100"}}, DOCUMENTED_ERRORS[11]),
    ],
)
def test_the_simulator_answers_each_documented_error(
    change: dict[str, Any], simulator: dict[str, Any], expected: str
) -> None:
    body = {k: v for k, v in {**GOOD, **change}.items() if v is not None}
    assert validate(sim(**simulator), body) == (expected, None)


def test_the_simulator_accepts_the_seed_example() -> None:
    assert validate(sim(), GOOD) == (None, "+14155550100")


def test_opted_out_numbers_are_refused_in_any_format() -> None:
    simulator = sim(opted_out={"(415) 555-0100"})
    assert validate(simulator, GOOD) == (OPTED_OUT, None)
    assert "opted out" in OPTED_OUT
    assert validate(simulator, {**GOOD, "end_user_number": "+1 415-555-0101"}) == (None, "+14155550101")


# -- over the wire: `bridge sandbox` as a real server ---------------------------------------------

OPTED_OUT_NUMBER = "415.555.0199"


@pytest.fixture(scope="module")
def ccai_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxProcess]:
    """One `bridge sandbox` for the module; every test texts its own consumer, so sessions never collide."""
    options = ("--opted-out", OPTED_OUT_NUMBER, "--chat-life", "selecting@0,assigned@1,finished@600")
    yield from run_sandbox(tmp_path_factory.mktemp("sandbox"), *options)


def sms(server: SandboxProcess, consumer: str, ticket: str, **options: Any) -> httpx.Response:
    body = {**GOOD, "end_user_number": consumer, "ticket_id": ticket}
    url = f"{server.info['ccai_url']}/apps/api/v1/sms"
    return httpx.post(url, json=body, auth=("sandbox", "sandbox-api-token"), **{"timeout": 10, **options})


def chats_for(server: SandboxProcess, ticket: str) -> list[dict[str, Any]]:
    response = httpx.get(
        f"{server.info['ccai_manager_url']}/chats",
        params={"created_at[from]": "2020-01-01T00:00:00Z", "sort_column": "created_at", "per": 100},
        auth=("sandbox", "sandbox-api-token"),
        timeout=10,
    )
    response.raise_for_status()
    return [chat for chat in response.json() if chat["out_ticket_id"] == ticket]


def test_accept_then_cut_drops_the_connection_after_creating_the_chat(ccai_server: SandboxProcess) -> None:
    ccai_server.ccai_control(script=[{"action": "accept_then_cut"}])
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        sms(ccai_server, "+1 415-555-0111", "5005g00000CUT01AAH")
    [chat] = chats_for(ccai_server, "5005g00000CUT01AAH")
    assert chat["status"] in ("selecting", "assigned")


def test_create_then_status_504_answers_html_and_leaves_the_chat(ccai_server: SandboxProcess) -> None:
    ccai_server.ccai_control(script=[{"action": "create_then_status", "status": 504}])
    response = sms(ccai_server, "+1 415-555-0112", "5005g00000GTW01AAH")
    assert response.status_code == 504
    assert response.headers["content-type"].startswith("text/html")
    assert "504 Gateway Time-out" in response.text
    assert len(chats_for(ccai_server, "5005g00000GTW01AAH")) == 1


def test_a_switch_leaves_out_ticket_id_null_in_the_chat_list_over_http(ccai_server: SandboxProcess) -> None:
    """Issue 20 item 7: the SMS page's own example answers ``out_ticket_id: null`` for a request that
    sent ``ticket_id``; the sandbox can behave so, for the lookup's self-proof to be tried."""
    ticket = "5005g00000NUL01AAH"
    ccai_server.ccai_control(fill_out_ticket_id=False)
    try:
        assert ccai_server.ccai_state()["settings"]["fill_out_ticket_id"] is False
        assert sms(ccai_server, "+1 415-555-0161", ticket).status_code == 200
        assert chats_for(ccai_server, ticket) == []
        [created] = [c for c in ccai_server.ccai_state()["accepted"] if c["ticket_id"] == ticket]
        ccai_server.ccai_control(fill_out_ticket_id=True)
        assert [c["id"] for c in chats_for(ccai_server, ticket)] == [created["chat_id"]]
    finally:
        ccai_server.ccai_control(fill_out_ticket_id=True)


def test_a_trickled_answer_outlasts_a_per_read_timeout_that_never_fires(ccai_server: SandboxProcess) -> None:
    # Reads are allowed twelve times the trickle's interval, so a busy machine does not make one time out.
    ccai_server.ccai_control(script=[{"action": "trickle", "interval": 0.05, "chunk": 20}])
    started = time.monotonic()
    response = sms(ccai_server, "+1 415-555-0113", "5005g00000TRK01AAH", timeout=httpx.Timeout(10, read=0.6))
    assert response.status_code == 200
    assert time.monotonic() - started > 2 * 0.6  # the whole answer took longer than any single read may
    assert response.json()["id"] == chats_for(ccai_server, "5005g00000TRK01AAH")[0]["id"]


def test_the_sandbox_command_sets_opted_out_numbers_and_chat_lives(ccai_server: SandboxProcess) -> None:
    settings = ccai_server.info["ccai"]
    assert settings["opted_out"] == ["+14155550199"]
    assert [step["status"] for step in settings["chat_lifecycle"]] == ["selecting", "assigned", "finished"]
    refused = sms(ccai_server, "+1 (415) 555-0199", "5005g00000OPT01AAH")
    assert refused.status_code == 400
    assert "opted out" in refused.json()["message"]

    assert sms(ccai_server, "+1 415-555-0114", "5005g00000LIF01AAH").status_code == 200
    wait_for(
        lambda: chats_for(ccai_server, "5005g00000LIF01AAH")[0]["status"] == "assigned",
        timeout=5,
        what="the chat's scheduled assignment",
    )
