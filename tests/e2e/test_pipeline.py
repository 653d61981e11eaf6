"""End to end, as deployed: ``bridge serve`` and ``bridge sandbox`` as real processes on 127.0.0.1,
Salesforce over HTTPS with a test CA, real outbound-message XML.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import httpx
import pytest

from bridge.sandbox.cases import outbound_message, sample_cases
from bridge.store import Store
from tests._ccai_errors import DOCUMENTED_ERRORS
from tests._processes import (
    FIXTURES,
    BridgeProcess,
    SandboxProcess,
    all_written,
    assert_at_most_one_sms_each,
    extra_cases,
    statuses,
    wait_for,
)

pytestmark = pytest.mark.e2e

MOBILE, NATIONAL_QUEUE, NO_PHONE, UK = (c["Id"] for c in sample_cases()[:4])
StartBridge = Callable[..., BridgeProcess]


@contextmanager
def store_of(bridge: BridgeProcess) -> Iterator[Store]:
    """The running bridge's own store, to look at what it recorded."""
    store = Store.from_url(bridge.env["DATABASE_URL"])
    try:
        yield store
    finally:
        store.close()


def test_three_notifications_give_two_sms_three_updates_and_redelivery_sends_nothing(
    sandbox: SandboxProcess, start_bridge: StartBridge
) -> None:
    bridge = start_bridge()
    body = (FIXTURES / "outbound_message_3.xml").read_bytes()
    response = bridge.post_xml(body)
    assert response.status_code == 200
    assert b"<Ack>true</Ack>" in response.content
    cases = [MOBILE, NATIONAL_QUEUE, NO_PHONE]
    wait_for(lambda: all_written(sandbox, cases), what="three Case updates")

    accepted = {sms["ticket_id"]: sms for sms in sandbox.ccai_state()["accepted"]}
    assert set(accepted) == {MOBILE, NATIONAL_QUEUE}
    assert accepted[MOBILE]["end_user_number"] == "+14155550100"
    assert accepted[MOBILE]["outbound_number"] == "+16285550199"
    assert accepted[MOBILE]["chat_type"] == "Messaging (SMS)"
    assert accepted[MOBILE]["agentEmail"] == "ana.agent@example.com"
    assert accepted[NATIONAL_QUEUE]["end_user_number"] == "+12125550142"
    assert "agentEmail" not in accepted[NATIONAL_QUEUE]
    assert "case 00001001" in accepted[MOBILE]["message"]

    state = sandbox.salesforce_state()
    case = state["cases"][MOBILE]
    assert (case["CCAI_SMS_Status__c"], case["CCAI_Chat_Id__c"], case["CCAI_SMS_Error__c"]) == (
        "Sent",
        str(accepted[MOBILE]["chat_id"]),
        None,
    )
    assert state["cases"][NATIONAL_QUEUE]["CCAI_SMS_Status__c"] == "Sent"
    assert state["cases"][NO_PHONE]["CCAI_SMS_Status__c"] == "Skipped"
    assert "no phone number" in state["cases"][NO_PHONE]["CCAI_SMS_Error__c"]
    wait_for(lambda: len(sandbox.salesforce_state()["tasks"]) == 3, what="three Tasks")
    calls = sandbox.salesforce_state()["calls"]
    case_updates = [s for c in calls for s in c.get("subrequests", []) if s["method"] == "PATCH"]
    assert case_updates
    assert all(s["auto_assign"] == "FALSE" for s in case_updates)
    assert len(calls) <= 2  # one query; one composite call updating the Cases and creating the Tasks

    # Salesforce redelivers the same message: acked again, nothing sent, nothing updated.
    assert bridge.post_xml(body).status_code == 200
    bridge.stop()
    restarted = start_bridge()
    assert restarted.post_xml(body).status_code == 200  # acked once stored, so the log line is written
    assert "0 new, 3 already known" in restarted.logs()
    with store_of(restarted) as store:
        assert sum(dict(store.history.queue_summary().by_status).values()) == 3
    assert len(sandbox.ccai_state()["accepted"]) == 2
    assert len(sandbox.salesforce_state()["calls"]) == len(calls)


def test_each_documented_ccai_error_lands_on_its_case(sandbox: SandboxProcess, start_bridge: StartBridge) -> None:
    cases = extra_cases(sandbox, len(DOCUMENTED_ERRORS))
    sandbox.ccai_control(script=[{"status": 400, "message": m} for m in DOCUMENTED_ERRORS])
    bridge = start_bridge()
    assert bridge.post_xml(outbound_message(cases)).status_code == 200
    wait_for(lambda: all_written(sandbox, cases), what="every Case to be updated")
    state = sandbox.salesforce_state()["cases"]
    assert {state[c]["CCAI_SMS_Status__c"] for c in cases} == {"Failed"}
    assert sorted(state[c]["CCAI_SMS_Error__c"] for c in cases) == sorted(DOCUMENTED_ERRORS)
    assert sandbox.ccai_state()["answered"] == {"400": len(DOCUMENTED_ERRORS)}  # none retried


def test_uk_number_is_refused_by_the_bridge_before_ccai(sandbox: SandboxProcess, start_bridge: StartBridge) -> None:
    bridge = start_bridge()
    bridge.post_xml(outbound_message([UK]))
    wait_for(lambda: all_written(sandbox, [UK]), what="the Case update")
    case = sandbox.case(UK)
    assert case["CCAI_SMS_Status__c"] == "Failed"
    assert "only US numbers can be texted" in case["CCAI_SMS_Error__c"]
    assert "7946" not in case["CCAI_SMS_Error__c"].replace("0958", "")
    assert sandbox.ccai_state()["accepted"] == []


def test_refused_requests_store_nothing(sandbox: SandboxProcess, start_bridge: StartBridge) -> None:
    bridge = start_bridge()
    body = outbound_message([MOBILE])
    assert bridge.post_xml(body, token="wrong").status_code == 401
    assert bridge.post_xml(outbound_message([MOBILE], org_id="00D5g00000OTHERXYZ")).status_code == 403
    assert bridge.post_xml(b"<xml/>").status_code == 400
    assert bridge.post_xml(b'<?xml version="1.0"?><!DOCTYPE a [<!ENTITY b "c">]><a>&b;</a>').status_code == 400
    with store_of(bridge) as store:
        assert dict(store.history.queue_summary().by_status) == {}
    assert bridge.post_xml(body).status_code == 200
    wait_for(lambda: all_written(sandbox, [MOBILE]), what="the one accepted message")
    assert len(sandbox.ccai_state()["accepted"]) == 1


def test_a_lost_answer_is_looked_up_and_recorded_as_sent_never_sent_twice(
    sandbox: SandboxProcess, start_bridge: StartBridge
) -> None:
    # CCAI creates the chat but the answer never comes back before the bridge's 2 s timeout; the
    # bridge then finds the chat in the Manager API's chat list instead of texting the customer again.
    sandbox.ccai_control(script=[{"action": "accept_then_hang", "seconds": 4}])
    bridge = start_bridge()
    bridge.post_xml(outbound_message([MOBILE]))
    wait_for(lambda: all_written(sandbox, [MOBILE]), timeout=30, what="the Case update")
    [sms] = sandbox.ccai_state()["accepted"]
    case = sandbox.case(MOBILE)
    assert (case["CCAI_SMS_Status__c"], case["CCAI_Chat_Id__c"]) == ("Sent", str(sms["chat_id"]))


def test_salesforce_down_during_write_back_never_resends(sandbox: SandboxProcess, start_bridge: StartBridge) -> None:
    sandbox.salesforce_control(fail_next=[{"status": 503, "path": "composite"}] * 3)
    bridge = start_bridge()
    bridge.post_xml(outbound_message([MOBILE]))
    wait_for(lambda: all_written(sandbox, [MOBILE]), timeout=40, what="the write-back to get through")
    assert sandbox.case(MOBILE)["CCAI_SMS_Status__c"] == "Sent"
    assert len(sandbox.ccai_state()["accepted"]) == 1


def test_the_bridges_own_update_firing_the_rule_again_is_suppressed(
    sandbox: SandboxProcess, start_bridge: StartBridge
) -> None:
    # No chat sync: its news of the chat (assigned after 5 s) is a Case update of its own, not the echo's.
    bridge = start_bridge(BRIDGE_CHAT_SYNC_SECONDS="0")
    bridge.post_xml(outbound_message([MOBILE]))
    wait_for(lambda: all_written(sandbox, [MOBILE]), what="the first send")
    calls = len(sandbox.salesforce_state()["calls"])
    bridge.post_xml(outbound_message([MOBILE]))  # a new notification id for the same Case
    with store_of(bridge) as store:
        wait_for(
            lambda: dict(store.history.queue_summary().by_status) == {"sent": 1, "suppressed": 1},
            what="the repeat event to be suppressed",
        )
    assert "finished suppressed" in bridge.logs()
    assert len(sandbox.ccai_state()["accepted"]) == 1
    assert len(sandbox.salesforce_state()["calls"]) == calls  # the Case is not updated again


def test_kill_9_mid_batch_loses_nothing_and_texts_nobody_twice(
    sandbox: SandboxProcess, start_bridge: StartBridge
) -> None:
    cases = extra_cases(sandbox, 8)
    sandbox.ccai_control(latency=0.4)
    bridge = start_bridge(CCAI_RATE_LIMIT="4")
    assert bridge.post_xml(outbound_message(cases)).status_code == 200
    wait_for(lambda: len(sandbox.ccai_state()["accepted"]) >= 2, what="the first SMS")
    bridge.kill()
    sent_before_restart = len(sandbox.ccai_state()["accepted"])
    assert sent_before_restart < len(cases)

    start_bridge()
    wait_for(lambda: all_written(sandbox, cases), timeout=40, what="every Case to be finished after the restart")
    assert_at_most_one_sms_each(sandbox)
    final = statuses(sandbox, cases)
    assert set(final.values()) <= {"Sent", "Unknown"}
    assert sum(1 for s in final.values() if s == "Sent") >= len(cases) - 2


def test_no_number_or_secret_reaches_the_logs(sandbox: SandboxProcess, start_bridge: StartBridge) -> None:
    bridge = start_bridge(BRIDGE_API_KEY="sandbox-api-key", LOG_LEVEL="DEBUG")
    bridge.post_xml((FIXTURES / "outbound_message_3.xml").read_bytes())
    bridge.post_xml(outbound_message([UK]))
    bridge.post_xml(outbound_message([MOBILE]), token="wrong-token-123")
    api = f"{bridge.url}/api/v1/sends"
    headers = {"Authorization": "Bearer sandbox-api-key"}
    sandbox.ccai_control(script=[{"status": 400, "message": DOCUMENTED_ERRORS[5]}])
    answers = [
        httpx.post(
            api,
            json={"ticket_id": NO_PHONE, "end_user_number": "(646) 555-0123"},
            headers=headers,
            params={"wait": "10"},
            timeout=30,
        ),
        httpx.post(api, json={"ticket_id": MOBILE, "end_user_number": "+1 415 555 01"}, headers=headers),
        httpx.post(api, json={"ticket_id": MOBILE}, headers={"Authorization": "Bearer wrong-key-123"}),
    ]
    wait_for(lambda: all_written(sandbox, [MOBILE, NATIONAL_QUEUE, NO_PHONE, UK]), what="every Case")
    logs = bridge.logs()
    visible = logs + "".join(a.text for a in answers)
    full_numbers = [
        "4155550100",
        "415-555-0100",
        "2125550142",
        "212) 555-0142",
        "2079460958",
        "7946 0958",
        "6465550123",
        "646) 555-0123",
        "41555501",
    ]
    secrets = [
        "sandbox-webhook-token",
        "sandbox-api-key",
        "sandbox-api-token",
        "sandbox-access-token",
        "wrong-token-123",
        "wrong-key-123",
    ]
    for needle in full_numbers + secrets:
        assert needle not in visible, f"{needle!r} leaked"
    lines = [json.loads(line) for line in logs.splitlines() if line.startswith("{")]
    assert lines, "the bridge logs JSON lines when its output is not a terminal"
    assert any("send_id" in line for line in lines)
    assert any("request_id" in line for line in lines)
