"""The JSON send API over the wire, where it needs CCAI and a worker: ``bridge serve`` and the sandbox
platforms as real processes. Validation and refusals are tested in-process in ``tests/test_api.py``."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from bridge.sandbox.cases import outbound_message, sample_cases
from bridge.sandbox.servers import SANDBOX_API_KEY
from tests._ccai_errors import DOCUMENTED_ERRORS
from tests._processes import LOCAL, BridgeProcess, SandboxProcess, all_written, extra_cases, wait_for

pytestmark = pytest.mark.e2e

MOBILE, NATIONAL_QUEUE, NO_PHONE, UK = (c["Id"] for c in sample_cases()[:4])
KEY = SANDBOX_API_KEY
StartBridge = Callable[..., BridgeProcess]


def post(bridge: BridgeProcess, body: Any, *, wait: float | None = None, key: str | None = None) -> httpx.Response:
    params = {"wait": str(wait)} if wait is not None else {}
    headers = {"Authorization": f"Bearer {KEY}"} | ({"Idempotency-Key": key} if key is not None else {})
    return LOCAL.post(f"{bridge.url}/api/v1/sends", json=body, params=params, headers=headers, timeout=40)


def get(bridge: BridgeProcess, send_id: object) -> httpx.Response:
    return LOCAL.get(f"{bridge.url}/api/v1/sends/{send_id}", headers={"Authorization": f"Bearer {KEY}"}, timeout=10)


@pytest.fixture
def bridge(sandbox: SandboxProcess, start_bridge: StartBridge) -> BridgeProcess:
    return start_bridge(BRIDGE_API_KEY=KEY)


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
    first = post(bridge, body, wait=10, key="click-1")
    again = post(bridge, body, key="click-1")
    assert first.status_code == again.status_code == 200
    assert again.json()["id"] == first.json()["id"]
    other = post(bridge, {**body, "message": "Changed"}, key="click-1")
    assert other.status_code == 409
    bridge.stop()
    restarted = start_bridge(BRIDGE_API_KEY=KEY)
    assert post(restarted, body, key="click-1").json()["id"] == first.json()["id"]
    assert len(sandbox.ccai_state()["accepted"]) == 1


def test_an_agent_send_counts_for_the_loop_guard(bridge: BridgeProcess, sandbox: SandboxProcess) -> None:
    sent = post(bridge, {"ticket_id": MOBILE}, wait=10)
    assert sent.status_code == 200
    assert bridge.post_xml(outbound_message([MOBILE])).status_code == 200  # the rule fires on the bridge's own update
    repeat = sent.json()["id"] + 1  # the next send the store created
    wait_for(lambda: get(bridge, repeat).json().get("status") == "suppressed", what="the loop guard")
    assert get(bridge, repeat).json()["source"] == "outbound_message"
    assert "finished suppressed" in bridge.logs()
    assert len(sandbox.ccai_state()["accepted"]) == 1


def test_the_sandbox_banners_send_api_example_succeeds_after_the_sample_message(
    bridge: BridgeProcess, sandbox: SandboxProcess
) -> None:
    sampled = [c["Id"] for c in sample_cases()[:3]]
    assert bridge.post_xml(outbound_message(sampled)).status_code == 200
    wait_for(lambda: all_written(sandbox, sampled), what="the sample message's Cases")
    # The banner's curl names the sandbox's example ticket: a Case the sample message did not text.
    answer = post(bridge, {"ticket_id": sample_cases()[4]["Id"]}, wait=10)
    assert answer.status_code == 200, answer.text
    assert answer.json()["status"] == "sent"
    assert answer.json()["reached_customer"] == "yes"
