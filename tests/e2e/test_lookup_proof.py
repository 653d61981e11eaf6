"""The lost-answer lookup proves itself on the tenant before it is trusted (issue 20 item 5; R4 of the
second reliability review), as real processes on 127.0.0.1: ``bridge sandbox`` and ``bridge serve``.

An SMS whose answer is lost (the connection cut after CCAI created the chat) is looked up in CCAI's
chat list. Before the tenant has shown that its list carries the bridge's ticket id, finding nothing
must end the send Unknown, never text the customer again; once shown, the lookup settles it, even
when CCAI's clock is minutes off the bridge's.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bridge.sandbox.cases import outbound_message
from tests._faults import faulty_env
from tests._processes import (
    BridgeProcess,
    SandboxProcess,
    all_written,
    bridge_environment,
    chats_created,
    extra_cases,
    python_command,
    run_sandbox,
    sms_per_case,
    wait_for,
)

pytestmark = pytest.mark.e2e

QUICK_CHATS = ("--chat-life", "selecting@0,finished@1")


@pytest.fixture
def quick_chats(tmp_path: Path) -> Iterator[SandboxProcess]:
    """Chats end a second after they start, so CCAI's active-session check cannot hide a second SMS."""
    yield from run_sandbox(tmp_path, *QUICK_CHATS)


def start(sandbox: SandboxProcess, tmp_path: Path) -> tuple[BridgeProcess, dict[str, str]]:
    env = {**bridge_environment(sandbox, tmp_path), "BRIDGE_CHAT_SYNC_SECONDS": "0.5"}
    return BridgeProcess(env=env, log_path=tmp_path / "bridge.log", proven=False).start(), env


def lookup_state(env: dict[str, str]) -> dict[str, Any]:
    answer = subprocess.run(python_command("status", "--json"), env=env, capture_output=True, text=True, timeout=60)
    return dict(json.loads(answer.stdout)["lookup"])


def prove(sandbox: SandboxProcess, bridge: BridgeProcess, env: dict[str, str], *, start_at: int) -> None:
    """Three SMS sent normally; the chat sync reads them back carrying their Case ids."""
    cases = extra_cases(sandbox, 3, start=start_at)
    assert bridge.post_xml(outbound_message(cases)).status_code == 200
    wait_for(lambda: all_written(sandbox, cases), timeout=30, what="the first three Cases")
    wait_for(lambda: lookup_state(env)["state"] == "proven", timeout=30, what="the lookup to be proven")


def test_before_the_tenant_proved_its_chat_list_a_lost_answer_ends_unknown_and_is_not_sent_again(
    quick_chats: SandboxProcess, tmp_path: Path
) -> None:
    """The SMS page's own example answers ``out_ticket_id: null``: a tenant whose list never shows the
    ticket id makes every lookup find nothing. Today's code took that for "never arrived" and texted
    the customer a second time."""
    sandbox = quick_chats
    sandbox.ccai_control(fill_out_ticket_id=False)
    bridge, env = start(sandbox, tmp_path)
    try:
        [case] = extra_cases(sandbox, 1, start=1200)
        sandbox.ccai_control(script=[{"action": "accept_then_cut"}])
        assert bridge.post_xml(outbound_message([case])).status_code == 200
        wait_for(lambda: all_written(sandbox, [case]), timeout=30, what="the Case update")
        written = sandbox.case(case)
        assert written["CCAI_SMS_Status__c"] == "Unknown"
        assert "has not shown that its chat list carries our ticket id" in written["CCAI_SMS_Error__c"]
        assert chats_created(sandbox) == 1
        assert sandbox.ccai_state()["manager_requests"] >= 1  # it did look
        state = lookup_state(env)
        assert state["state"] in ("unproven", "contradicted")
    finally:
        bridge.stop()


def test_once_proven_a_lost_answer_whose_request_never_arrived_is_sent(
    quick_chats: SandboxProcess, tmp_path: Path
) -> None:
    """Today's behaviour, once the tenant has shown its list carries our ticket ids: a gateway 504
    that created nothing is looked up, not found, and sent."""
    sandbox = quick_chats
    bridge, env = start(sandbox, tmp_path)
    try:
        prove(sandbox, bridge, env, start_at=1210)
        state = lookup_state(env)
        assert state["chats_carrying"] >= 3
        assert state["latest"]["carried"] is True
        [case] = extra_cases(sandbox, 1, start=1220)
        sandbox.ccai_control(script=[{"status": 504}])
        assert bridge.post_xml(outbound_message([case])).status_code == 200
        wait_for(lambda: all_written(sandbox, [case]), timeout=30, what="the Case update")
        assert sandbox.case(case)["CCAI_SMS_Status__c"] == "Sent"
        assert sms_per_case(sandbox)[case] == 1
    finally:
        bridge.stop()


def test_a_ccai_clock_five_minutes_behind_does_not_hide_the_chat_from_the_lookup(tmp_path: Path) -> None:
    """R4: the store's clock 300 s ahead of CCAI's put the chat outside the lookup's window, and the SMS
    was sent twice. The window is now placed on CCAI's own clock (its Date header)."""
    clock_file = tmp_path / "ccai-clock"
    clock_file.write_text("-300")
    for sandbox in run_sandbox(tmp_path, *QUICK_CHATS, env=faulty_env(clock_file=clock_file)):
        bridge, env = start(sandbox, tmp_path)
        try:
            prove(sandbox, bridge, env, start_at=1230)
            [case] = extra_cases(sandbox, 1, start=1240)
            sandbox.ccai_control(script=[{"action": "accept_then_cut"}])
            assert bridge.post_xml(outbound_message([case])).status_code == 200
            wait_for(lambda: all_written(sandbox, [case]), timeout=40, what="the Case update")  # noqa: B023
            [chat] = [c for c in sandbox.ccai_state()["accepted"] if c["ticket_id"] == case]
            written = sandbox.case(case)
            assert (written["CCAI_SMS_Status__c"], written["CCAI_Chat_Id__c"]) == ("Sent", str(chat["chat_id"]))
            assert sms_per_case(sandbox)[case] == 1
        finally:
            bridge.stop()
