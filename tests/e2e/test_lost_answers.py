"""Faults between the bridge and CCAI, found by the reliability audit, as real processes on 127.0.0.1
and a real PostgreSQL: answers lost, cut, trickled or refused, and clocks that disagree. Each test
broke a promise on the code before the fix. After each, CCAI created at most one chat per event, and
every acknowledged event reached a final state on its Case.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bridge.sandbox.cases import outbound_message
from tests._processes import (
    BridgeProcess,
    ClusterFactory,
    SandboxProcess,
    all_written,
    assert_at_most_one_sms_each,
    bridge_environment,
    chats_created,
    extra_cases,
    python_command,
    run_sandbox,
    wait_for,
    worker_with,
)

pytestmark = pytest.mark.e2e


@pytest.fixture
def quick_chats(tmp_path: Path) -> Iterator[SandboxProcess]:
    """A sandbox whose chats end a second after they start: CCAI's "active session" check, which
    could hide a second SMS, is then out of the way, so only the bridge stands between the customer
    and a duplicate."""
    yield from run_sandbox(tmp_path, "--chat-life", "selecting@0,finished@1")


def test_a_gateway_timeout_after_ccai_created_the_chat_is_looked_up_and_sent_once(
    quick_chats: SandboxProcess, tmp_path: Path
) -> None:
    """A5: the chat exists, the answer is a 504: the send is Sent with that chat, and nothing is
    left for `bridge sends retry --status failed` to text again."""
    sandbox = quick_chats
    env = bridge_environment(sandbox, tmp_path)
    bridge = BridgeProcess(env=env, log_path=tmp_path / "bridge.log").start()
    try:
        [case] = extra_cases(sandbox, 1, start=900)
        sandbox.ccai_control(script=[{"action": "create_then_status", "status": 504}])
        assert bridge.post_xml(outbound_message([case])).status_code == 200
        wait_for(lambda: all_written(sandbox, [case]), timeout=30, what="the Case update")
        written = sandbox.case(case)
        [chat] = sandbox.ccai_state()["accepted"]
        assert (written["CCAI_SMS_Status__c"], written["CCAI_Chat_Id__c"]) == ("Sent", str(chat["chat_id"]))
        retried = subprocess.run(
            python_command("sends", "retry", "--status", "failed"), env=env, capture_output=True, text=True
        )
        assert "0 failed send(s) queued again." in retried.stdout
        time.sleep(1)
        assert chats_created(sandbox) == 1
    finally:
        bridge.stop()


def test_a_connection_cut_after_ccai_accepted_is_never_sent_twice(quick_chats: SandboxProcess, tmp_path: Path) -> None:
    """A9: the answer is lost mid-request and the customer's chat has ended before the retry: only
    the chat lookup stands between them and a second SMS."""
    sandbox = quick_chats
    bridge = BridgeProcess(env=bridge_environment(sandbox, tmp_path), log_path=tmp_path / "bridge.log").start()
    try:
        [case] = extra_cases(sandbox, 1, start=910)
        sandbox.ccai_control(script=[{"action": "accept_then_cut"}])
        assert bridge.post_xml(outbound_message([case])).status_code == 200
        wait_for(lambda: all_written(sandbox, [case]), timeout=30, what="the Case update")
        assert sandbox.case(case)["CCAI_SMS_Status__c"] == "Sent"
        assert chats_created(sandbox) == 1
        assert sandbox.ccai_state()["manager_requests"] >= 1  # it looked the chat up
    finally:
        bridge.stop()


def test_an_answer_that_trickles_in_ends_at_the_deadline_and_is_not_taken_over(
    quick_chats: SandboxProcess, cluster_on: ClusterFactory
) -> None:
    """A4: an answer arriving a byte at a time never trips a read timeout; two workers must still
    produce one chat."""
    sandbox = quick_chats
    cluster = cluster_on(sandbox)
    [case] = extra_cases(sandbox, 1, start=920)
    sandbox.ccai_control(script=[{"action": "trickle", "interval": 0.4, "chunk": 1}])
    web = cluster.start_web()
    cluster.start_worker()
    cluster.start_worker()
    assert web.post_xml(outbound_message([case])).status_code == 200
    wait_for(lambda: all_written(sandbox, [case]), timeout=40, what="the Case update")
    assert sandbox.case(case)["CCAI_SMS_Status__c"] == "Sent"
    assert chats_created(sandbox) == 1


def test_a_worker_whose_clock_is_ahead_never_takes_over_a_request_in_flight(
    quick_chats: SandboxProcess, cluster_on: ClusterFactory
) -> None:
    """A4: leases are measured on the database's clock, whatever a host's clock says."""
    sandbox = quick_chats
    cluster = cluster_on(sandbox, CCAI_TIMEOUT_SECONDS="10")
    [case] = extra_cases(sandbox, 1, start=930)
    sandbox.ccai_control(latency=5)
    web = cluster.start_web()
    cluster.start_worker()
    assert web.post_xml(outbound_message([case])).status_code == 200
    wait_for(lambda: sandbox.ccai_state()["request_times"], what="the first request to be in flight")
    cluster.start_worker(command=worker_with("import time\n_t = time.time\ntime.time = lambda: _t() + 200"))
    wait_for(lambda: all_written(sandbox, [case]), timeout=40, what="the Case update")
    written = sandbox.case(case)
    [chat] = sandbox.ccai_state()["accepted"]
    assert (written["CCAI_SMS_Status__c"], written["CCAI_Chat_Id__c"]) == ("Sent", str(chat["chat_id"]))


@pytest.mark.serial  # a timing measurement: other tests' load on this machine's CPUs would skew it
def test_three_workers_stay_under_a_strict_one_second_limit(tmp_path: Path, cluster_on: ClusterFactory) -> None:
    """A7: paced on departures by the database's clock, with headroom for jitter, three workers
    never exceed a strict sliding one-second window that adds up to 50 ms of latency."""
    for sandbox in run_sandbox(tmp_path, "--rate-window", "sliding", "--jitter", "0.05", "--latency", "0.1"):
        cluster = cluster_on(sandbox)
        cases = extra_cases(sandbox, 30, start=1000)
        web = cluster.start_web()
        for _ in range(3):
            cluster.start_worker()
        assert web.post_xml(outbound_message(cases)).status_code == 200
        wait_for(lambda: all_written(sandbox, cases), timeout=60, what="every Case")  # noqa: B023
        state = sandbox.ccai_state()
        assert state["answered"].get("429", 0) == 0
        assert_at_most_one_sms_each(sandbox)
        times = sorted(sms["at"] for sms in state["accepted"])
        assert (len(times) - 1) / (times[-1] - times[0]) >= 8.5  # and it still uses the tenant's limit
