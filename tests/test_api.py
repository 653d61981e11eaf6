"""The JSON send API over the wire: ``bridge serve`` and the sandbox platforms as real processes."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from bridge.sandbox.cases import outbound_message, sample_cases
from tests.ccai_errors import DOCUMENTED_ERRORS
from tests.conftest import BridgeProcess, SandboxProcess, wait_for
from tests.test_e2e import extra_cases

pytestmark = pytest.mark.e2e

MOBILE, NATIONAL_QUEUE, NO_PHONE, UK = (c["Id"] for c in sample_cases())
KEY = "sandbox-api-key"
StartBridge = Callable[..., BridgeProcess]


def post(
    bridge: BridgeProcess, body: Any, *, key: str | None = KEY, wait: float | None = None, **headers: str
) -> httpx.Response:
    request_headers = {"Content-Type": "application/json", **headers}
    if key is not None:
        request_headers["Authorization"] = f"Bearer {key}"
    params = {"wait": str(wait)} if wait is not None else {}
    return httpx.post(f"{bridge.url}/api/v1/sends", json=body, params=params, headers=request_headers, timeout=40)


def get(bridge: BridgeProcess, send_id: object, *, key: str = KEY) -> httpx.Response:
    return httpx.get(f"{bridge.url}/api/v1/sends/{send_id}", headers={"Authorization": f"Bearer {key}"}, timeout=10)


@pytest.fixture
def bridge(sandbox: SandboxProcess, start_bridge: StartBridge) -> BridgeProcess:
    return start_bridge(BRIDGE_API_KEY=f"{KEY},previous-key")


def test_a_key_is_required_and_either_rotated_key_works(bridge: BridgeProcess) -> None:
    assert post(bridge, {"ticket_id": MOBILE}, key=None).status_code == 401
    refused = post(bridge, {"ticket_id": MOBILE}, key="wrong-key")
    assert (refused.status_code, refused.json()) == (
        401,
        {"error": "Missing or wrong API key (Authorization: Bearer <key>)."},
    )
    assert get(bridge, 1, key="wrong-key").status_code == 401
    assert post(bridge, {"ticket_id": MOBILE}, key="previous-key").status_code == 202
    assert "wrong-key" not in bridge.logs()


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ({"ticket_id": MOBILE, "colour": "red"}, "Unknown field 'colour'."),
        ({}, "ticket_id is required."),
        ({"ticket_id": 500}, "ticket_id: Input should be a valid string."),
        ({"ticket_id": "003000000000001"}, "ticket_id: must be a Case id"),
        ({"ticket_id": MOBILE, "agent_email": "not-an-email"}, "agent_email: must be an email address."),
        ({"ticket_id": MOBILE, "agent_id": "7"}, "agent_id: Input should be a valid integer."),
        ({"ticket_id": MOBILE, "agent_id": 7, "agent_email": "a@b.co"}, "give agent_email or agent_id, not both."),
        ({"ticket_id": MOBILE, "end_user_number": "12345"}, "end_user_number: The number (***45) is not a valid"),
        ({"ticket_id": MOBILE, "message": ""}, "message: String should have at least 1 character."),
        (["not", "an", "object"], "The body must be a JSON object."),
    ],
)
def test_bad_bodies_get_400_naming_the_field(module_bridge: BridgeProcess, body: Any, error: str) -> None:
    response = post(module_bridge, body)
    assert response.status_code == 400
    assert response.json()["error"].startswith(error)


def test_not_json_and_bad_wait_are_400(module_bridge: BridgeProcess) -> None:
    bridge = module_bridge
    not_json = httpx.post(
        f"{bridge.url}/api/v1/sends",
        content=b"{",
        headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"},
    )
    assert (not_json.status_code, not_json.json()["error"]) == (400, "The body is not valid JSON.")
    assert post(bridge, {"ticket_id": MOBILE}, wait=99).json()["error"] == "wait must be between 0 and 25 seconds."


def test_wait_returns_the_chat_id_quickly(bridge: BridgeProcess, sandbox: SandboxProcess) -> None:
    started = time.monotonic()
    response = post(bridge, {"ticket_id": MOBILE[:15], "agent_email": "clicker@example.com"}, wait=10)
    elapsed = time.monotonic() - started
    assert response.status_code == 200
    body = response.json()
    assert (body["status"], body["ticket_id"], body["end_user_number"]) == ("sent", MOBILE, "*******0100")
    [sms] = sandbox.ccai_state()["accepted"]
    assert body["chat_id"] == str(sms["chat_id"])
    assert sms["agentEmail"] == "clicker@example.com"  # the agent who clicked, not the owner
    assert elapsed < 2.0  # an Apex callout gives up after 10 s by default
    wait_for(lambda: get(bridge, body["id"]).json()["write_back"] == "done", what="the write-back")
    assert sandbox.case(MOBILE)["CCAI_Chat_Id__c"] == body["chat_id"]
    # The Salesforce budget of one agent send: read the Case, then one call for the Case and the Task.
    assert [c["path"] for c in sandbox.salesforce_state()["calls"]] == [
        "/services/data/v61.0/query/",
        "/services/data/v61.0/composite",
    ]


def test_message_and_agent_id_overrides_reach_ccai(bridge: BridgeProcess, sandbox: SandboxProcess) -> None:
    body = {"ticket_id": NATIONAL_QUEUE, "message": "Your technician is on the way.", "agent_id": 42}
    assert post(bridge, body, wait=10).status_code == 200
    [sms] = sandbox.ccai_state()["accepted"]
    assert (sms["message"], sms["agentId"]) == ("Your technician is on the way.", 42)


def test_each_documented_error_is_422_with_the_message_verbatim(bridge: BridgeProcess, sandbox: SandboxProcess) -> None:
    cases = extra_cases(sandbox, len(DOCUMENTED_ERRORS), start=40)
    for case_id, message in zip(cases, DOCUMENTED_ERRORS, strict=True):
        sandbox.ccai_control(script=[{"status": 400, "message": message}])
        response = post(bridge, {"ticket_id": case_id}, wait=10)
        assert response.status_code == 422, response.text
        assert (response.json()["status"], response.json()["error"]) == ("failed", message)


def test_a_case_without_a_phone_is_422_skipped(bridge: BridgeProcess) -> None:
    response = post(bridge, {"ticket_id": NO_PHONE}, wait=10)
    assert (response.status_code, response.json()["status"]) == (422, "skipped")


def test_a_slow_ccai_answers_202_then_the_send_can_be_read(bridge: BridgeProcess, sandbox: SandboxProcess) -> None:
    sandbox.ccai_control(latency=1.5)
    started = time.monotonic()
    response = post(bridge, {"ticket_id": MOBILE}, wait=0.5)
    assert response.status_code == 202
    assert response.json()["status"] in ("queued", "sending")
    assert time.monotonic() - started < 1.5
    send_id = response.json()["id"]
    final = wait_for(lambda: (r := get(bridge, send_id).json())["status"] == "sent" and r, what="the slow send")
    assert final["chat_id"] is not None
    assert final["attempts"] == 1


def test_the_same_idempotency_key_never_sends_twice(
    bridge: BridgeProcess, sandbox: SandboxProcess, start_bridge: StartBridge
) -> None:
    body = {"ticket_id": MOBILE, "message": "Hello"}
    first = post(bridge, body, wait=10, **{"Idempotency-Key": "click-1"})
    again = post(bridge, body, **{"Idempotency-Key": "click-1"})
    assert first.status_code == again.status_code == 200
    assert again.json()["id"] == first.json()["id"]
    other = post(bridge, {**body, "message": "Changed"}, **{"Idempotency-Key": "click-1"})
    assert other.status_code == 409
    bridge.stop()
    restarted = start_bridge(BRIDGE_API_KEY=KEY)
    assert post(restarted, body, **{"Idempotency-Key": "click-1"}).json()["id"] == first.json()["id"]
    assert len(sandbox.ccai_state()["accepted"]) == 1


def test_reading_an_unknown_send_is_404(module_bridge: BridgeProcess) -> None:
    bridge = module_bridge
    assert get(bridge, 999).status_code == 404
    assert get(bridge, "abc").json() == {"error": "There is no send abc."}


def test_an_agent_send_counts_for_the_loop_guard(bridge: BridgeProcess, sandbox: SandboxProcess) -> None:
    assert post(bridge, {"ticket_id": MOBILE}, wait=10).status_code == 200
    bridge.post_xml(outbound_message([MOBILE]))  # the rule fires on the bridge's own update
    wait_for(lambda: "skipped by the loop guard" in bridge.logs(), what="the loop guard")
    assert len(sandbox.ccai_state()["accepted"]) == 1


def test_the_api_is_off_without_a_key(sandbox: SandboxProcess, start_bridge: StartBridge) -> None:
    bridge = start_bridge(BRIDGE_API_KEY="")
    response = post(bridge, {"ticket_id": MOBILE})
    assert (response.status_code, response.json()["error"]) == (503, "The send API is not enabled: set BRIDGE_API_KEY.")
