"""The chat's life on the Case, over the wire: ``bridge serve`` polling the simulated CCAI's Manager
API (and receiving its pushed session events), Salesforce over TLS."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bridge.sandbox.cases import outbound_message
from tests._processes import BridgeProcess, SandboxProcess, bridge_environment, extra_cases, run_sandbox, wait_for

pytestmark = pytest.mark.e2e


@pytest.fixture
def lively(tmp_path: Path) -> Iterator[SandboxProcess]:
    """Chats that are assigned after a second and finished after three."""
    yield from run_sandbox(tmp_path, "--chat-life", "selecting@0,assigned@1,finished@3")


def test_the_case_follows_its_chat_to_the_end_by_polling(lively: SandboxProcess, tmp_path: Path) -> None:
    bridge = BridgeProcess(
        env={**bridge_environment(lively, tmp_path), "BRIDGE_CHAT_SYNC_SECONDS": "1"}, log_path=tmp_path / "b.log"
    ).start()
    try:
        cases = extra_cases(lively, 2, start=1200)
        assert bridge.post_xml(outbound_message(cases)).status_code == 200
        wait_for(
            lambda: all(lively.case(c).get("CCAI_Chat_Status__c") == "finished" for c in cases),
            timeout=30,
            what="both Cases to show their finished chats",
        )
        case = lively.case(cases[0])
        assert case["CCAI_SMS_Status__c"] == "Sent"
        assert case["CCAI_Chat_Agent__c"] == "ana.agent@example.com"  # the agent (an email: CCAI knows no name)
        assert case["CCAI_Chat_Ended_At__c"] is not None
        tasks = [t for t in lively.salesforce_state()["tasks"] if t["WhatId"] in cases]
        wait_for(
            lambda: all(t["Status"] == "Completed" for t in lively.salesforce_state()["tasks"] if t["WhatId"] in cases),
            timeout=15,
            what="the Tasks to be completed",
        )
        assert len(tasks) == 2  # completed, not a second Task
    finally:
        bridge.stop()


def test_pushed_session_events_update_the_case_without_polling(lively: SandboxProcess, tmp_path: Path) -> None:
    env = {
        **bridge_environment(lively, tmp_path),
        "BRIDGE_CHAT_SYNC_SECONDS": "0",
        "BRIDGE_SESSION_EVENTS_USER": "ccai",
        "BRIDGE_SESSION_EVENTS_PASSWORD": "events-secret",
    }
    bridge = BridgeProcess(env=env, log_path=tmp_path / "b.log").start()
    try:
        lively.ccai_control(
            session_events={
                "url": f"{bridge.url}/ccai/session-events",
                "user": "ccai",
                "password": "events-secret",
                "shuffle": True,
                "duplicate": True,
            }
        )
        [case] = extra_cases(lively, 1, start=1300)
        assert bridge.post_xml(outbound_message([case])).status_code == 200
        wait_for(
            lambda: lively.case(case).get("CCAI_Chat_Status__c") == "finished",
            timeout=30,
            what="the pushed events to reach the Case",
        )
        assert lively.ccai_state()["manager_requests"] == 0  # no poll: the push alone did it
        assert "events-secret" not in bridge.logs()
    finally:
        bridge.stop()
