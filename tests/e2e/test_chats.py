"""The chat's life on the Case, over the wire: ``bridge serve`` polling the simulated CCAI's Manager
API (and receiving its pushed session events), Salesforce over TLS."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bridge.sandbox.cases import outbound_message
from bridge.store import Store
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


def events_env(sandbox: SandboxProcess, tmp_path: Path, **extra: str) -> dict[str, str]:
    return {
        **bridge_environment(sandbox, tmp_path),
        "BRIDGE_SESSION_EVENTS_USER": "ccai",
        "BRIDGE_SESSION_EVENTS_PASSWORD": "events-secret",
        **extra,
    }


def push_to(sandbox: SandboxProcess, bridge: BridgeProcess, **target: object) -> None:
    """The sandbox CCAI pushes its session events (the documented shape) to the bridge, out of order and twice."""
    sandbox.ccai_control(
        session_events={
            "url": f"{bridge.url}/ccai/session-events",
            "user": "ccai",
            "password": "events-secret",
            "shuffle": True,
            "duplicate": True,
            **target,
        }
    )


def test_pushed_session_events_update_the_case_without_polling(lively: SandboxProcess, tmp_path: Path) -> None:
    """Push alone brings the agent, the state and the wrap-up; only the poll ends the chat."""
    bridge = BridgeProcess(env=events_env(lively, tmp_path, BRIDGE_CHAT_SYNC_SECONDS="0"), log_path=tmp_path / "b.log")
    bridge.start()
    try:
        push_to(lively, bridge)
        [case] = extra_cases(lively, 1, start=1300)
        assert bridge.post_xml(outbound_message([case])).status_code == 200
        wait_for(
            lambda: str(lively.case(case).get("CCAI_Chat_Outcome__c") or "").startswith("resolved"),
            timeout=30,
            what="the pushed wrap-up to reach the Case",
        )
        shown = lively.case(case)
        assert (shown["CCAI_Chat_Status__c"], shown["CCAI_Chat_Agent__c"]) == ("disconnected", "ana.agent@example.com")
        assert lively.ccai_state()["manager_requests"] == 0  # no poll: the push alone did it
        # ... but a push never ends the chat: the Task stays open for the poll to confirm the end.
        assert [t["Status"] for t in lively.salesforce_state()["tasks"] if t["WhatId"] == case] != ["Completed"]
        assert "events-secret" not in bridge.logs()
    finally:
        bridge.stop()


def test_with_push_and_poll_the_case_ends_as_ccai_says_and_a_stop_code_opts_out(
    lively: SandboxProcess, tmp_path: Path
) -> None:
    env = events_env(lively, tmp_path, BRIDGE_CHAT_SYNC_SECONDS="1", CCAI_OPT_OUT_DISPOSITIONS="stop_requested")
    bridge = BridgeProcess(env=env, log_path=tmp_path / "b.log").start()
    try:
        push_to(lively, bridge, disposition="STOP_REQUESTED")
        [case] = extra_cases(lively, 1, start=1400)
        assert bridge.post_xml(outbound_message([case])).status_code == 200
        wait_for(
            lambda: [t["Status"] for t in lively.salesforce_state()["tasks"] if t["WhatId"] == case] == ["Completed"],
            timeout=30,
            what="the poll to end the chat and complete its Task",
        )
        wait_for(
            lambda: str(lively.case(case).get("CCAI_Chat_Outcome__c") or "").startswith("STOP_REQUESTED"),
            timeout=15,
            what="the wrap-up to reach the Case",
        )
        assert lively.case(case)["CCAI_Chat_Status__c"] == "finished"
        store = Store.from_url(env["DATABASE_URL"])
        try:
            wait_for(lambda: store.opt_outs.get("+14155551500") is not None, timeout=10, what="the opt-out")
            entry = store.opt_outs.get("+14155551500")
            assert entry is not None
            assert entry.source == "ccai"
        finally:
            store.close()
        assert "555-1500" not in bridge.logs()
    finally:
        bridge.stop()
