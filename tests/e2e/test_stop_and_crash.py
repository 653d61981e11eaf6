"""Stopping and crashing, found by the reliability audit, as real processes on 127.0.0.1 and a real
PostgreSQL: SIGTERM with an agent's request open, and kill -9 mid-batch. Each test broke a promise
on the code before the fix.
"""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

import httpx
import pytest

from bridge.sandbox.cases import outbound_message
from bridge.sandbox.servers import SANDBOX_API_KEY
from tests._processes import (
    BridgeProcess,
    ClusterFactory,
    SandboxProcess,
    all_written,
    assert_at_most_one_sms_each,
    bridge_environment,
    chats_created,
    extra_cases,
    wait_for,
)

pytestmark = pytest.mark.e2e

KEY = SANDBOX_API_KEY


def test_sigterm_with_an_agent_request_open_stops_sending_at_once(sandbox: SandboxProcess, tmp_path: Path) -> None:
    """A3: SIGTERM stops the worker claiming immediately, even while an agent's ?wait request is
    open, and the process exits well before Heroku's 30-second kill."""
    cases = extra_cases(sandbox, 20, start=950)
    sandbox.ccai_control(latency=3)
    env = {**bridge_environment(sandbox, tmp_path), "CCAI_TIMEOUT_SECONDS": "5", "CCAI_RATE_LIMIT": "4"}
    bridge = BridgeProcess(env=env, log_path=tmp_path / "bridge.log").start()
    assert bridge.post_xml(outbound_message(cases)).status_code == 200
    answers: list[httpx.Response] = []
    waiting = threading.Thread(
        target=lambda: answers.append(
            httpx.post(
                f"{bridge.url}/api/v1/sends",
                params={"wait": "25"},
                json={"ticket_id": cases[-1]},
                headers={"Authorization": f"Bearer {KEY}"},
                timeout=40,
            )
        )
    )
    waiting.start()
    wait_for(lambda: len(sandbox.ccai_state()["request_times"]) >= 3, what="sending under way")
    assert bridge.process is not None
    signalled = time.time()
    bridge.process.send_signal(signal.SIGTERM)
    # uvicorn re-raises the signal once it has shut down cleanly: the exit status says SIGTERM.
    assert bridge.process.wait(timeout=28) in (0, -signal.SIGTERM)
    exited = time.time() - signalled
    assert "given back to the queue" in bridge.logs()
    waiting.join(timeout=10)
    started_after = [t for t in sandbox.ccai_state()["request_times"] if t > signalled + 1.0]
    assert started_after == [], f"{len(started_after)} CCAI request(s) started after SIGTERM"
    assert exited < 25
    assert answers  # the agent got an answer, not a dropped connection
    assert answers[0].status_code == 202
    sandbox.ccai_control(latency=0)  # the rest is only the restart finishing the queue: no need to wait
    restarted = BridgeProcess(env={**env, "CCAI_RATE_LIMIT": "10"}, log_path=tmp_path / "bridge2.log").start()
    try:
        wait_for(lambda: all_written(sandbox, cases), timeout=60, what="every Case after the restart")
        assert_at_most_one_sms_each(sandbox)
    finally:
        restarted.stop()


def test_work_of_a_killed_worker_is_taken_up_within_30_seconds(
    sandbox: SandboxProcess, cluster_on: ClusterFactory
) -> None:
    """Crash recovery with the default lease (heartbeats renew it), killed mid-batch with requests
    in flight: measured from the kill to every customer's SMS being recorded, it used to take the
    135-second lease. Nothing acknowledged is lost and nobody is texted twice."""
    cluster = cluster_on(sandbox, BRIDGE_LEASE_SECONDS="20", CCAI_TIMEOUT_SECONDS="15", CCAI_RETRY_FOR_SECONDS="300")
    cases = extra_cases(sandbox, 24, start=990)
    sandbox.ccai_control(latency=1.5)
    web = cluster.start_web()
    victim = cluster.start_worker()
    assert web.post_xml(outbound_message(cases)).status_code == 200
    wait_for(lambda: len(sandbox.ccai_state()["request_times"]) >= 3, what="requests in flight")
    victim.kill()  # SIGKILL: it held leases on sends in flight and on sends it had not started
    killed = time.monotonic()
    victim.wait()
    assert chats_created(sandbox) < len(cases)
    sandbox.ccai_control(latency=0.2)
    cluster.start_worker()
    wait_for(lambda: all_written(sandbox, cases), timeout=45, what="every Case after the crash")
    assert time.monotonic() - killed <= 30
    assert {sandbox.case(c)["CCAI_SMS_Status__c"] for c in cases} == {"Sent"}
    assert_at_most_one_sms_each(sandbox)
    assert chats_created(sandbox) == len(cases)
