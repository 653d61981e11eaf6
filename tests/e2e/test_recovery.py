"""Work held by a process that died (reliability audit 2: R13; issue 22 item 3), as real processes on
127.0.0.1 and a real PostgreSQL or SQLite: a worker crash loop, and kill -9 of the only process with
work in hand while another is alive. Each test lost sends or took too long on the code before the
fix; the last one guards the other side: a worker that is only slow keeps its work.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from bridge.sandbox.cases import outbound_message
from tests._faults import pause, resume
from tests._processes import (
    BridgeProcess,
    ClusterFactory,
    SandboxProcess,
    all_written,
    assert_at_most_one_sms_each,
    bridge_environment,
    extra_cases,
    statuses,
    wait_for,
)

pytestmark = pytest.mark.e2e


def _case_reads(sandbox: SandboxProcess) -> int:
    """How many times the bridge has started reading Cases (a slow read is counted as it starts)."""
    return sum(1 for call in sandbox.salesforce_state()["calls"] if "/query" in call["path"])


def test_a_worker_crash_loop_never_fails_sends_that_were_never_attempted(
    sandbox: SandboxProcess, cluster_on: ClusterFactory
) -> None:
    """R13: two workers in a row claim a batch and die (kill -9) while reading its Cases, before any
    request left. Those sends were never attempted: the takeover cap, which stops a send that keeps
    killing its workers mid-request, must not fail them; the next healthy worker texts them once."""
    cluster = cluster_on(sandbox, BRIDGE_MAX_TAKEOVERS="1", BRIDGE_LEASE_SECONDS="2")
    cases = extra_cases(sandbox, 8, start=1300)
    sandbox.salesforce_control(slow_next=[{"path": "/query", "seconds": 60}] * 2)
    web = cluster.start_web()
    assert web.post_xml(outbound_message(cases)).status_code == 200
    for crash in (1, 2):
        worker = cluster.start_worker()
        wait_for(lambda: _case_reads(sandbox) >= crash, timeout=30, what=f"worker {crash} to claim and read")  # noqa: B023
        worker.kill()
        worker.wait()
        time.sleep(2.5)  # its lease runs out
    cluster.start_worker()
    wait_for(lambda: all_written(sandbox, cases), timeout=40, what="every Case")
    assert set(statuses(sandbox, cases).values()) == {"Sent"}, statuses(sandbox, cases)
    assert_at_most_one_sms_each(sandbox)


def test_work_of_a_killed_worker_is_taken_up_within_seconds_on_postgresql(
    sandbox: SandboxProcess, cluster_on: ClusterFactory
) -> None:
    """Issue 22.3: with the default 20-second lease, the work a killed worker held is sent within
    10 s of the kill by a live worker, not after its lease runs out."""
    cluster = cluster_on(sandbox, BRIDGE_LEASE_SECONDS="20")
    cases = extra_cases(sandbox, 6, start=1310)
    sandbox.salesforce_control(slow_next=[{"path": "/query", "seconds": 60}])
    web = cluster.start_web()
    victim = cluster.start_worker()
    assert web.post_xml(outbound_message(cases)).status_code == 200
    wait_for(lambda: _case_reads(sandbox) >= 1, timeout=30, what="the first worker to claim the sends")
    cluster.start_worker()
    time.sleep(2)  # the live worker is up and polling
    victim.kill()
    killed = time.monotonic()
    wait_for(lambda: all_written(sandbox, cases), timeout=40, what="every Case after the kill")
    assert time.monotonic() - killed <= 10
    assert_at_most_one_sms_each(sandbox)


def test_work_of_a_killed_bridge_is_taken_up_within_seconds_on_sqlite(sandbox: SandboxProcess, tmp_path: Path) -> None:
    """Issue 22.3, on SQLite: two `bridge serve` processes share the file; the one holding the work
    is killed, the other sends it within 10 s."""
    env = {**bridge_environment(sandbox, tmp_path), "BRIDGE_LEASE_SECONDS": "20"}
    cases = extra_cases(sandbox, 6, start=1320)
    sandbox.salesforce_control(slow_next=[{"path": "/query", "seconds": 60}])
    victim = BridgeProcess(env=env, log_path=tmp_path / "victim.log").start()
    survivor = None
    try:
        assert victim.post_xml(outbound_message(cases)).status_code == 200
        wait_for(lambda: _case_reads(sandbox) >= 1, timeout=30, what="the first bridge to claim the sends")
        survivor = BridgeProcess(env=env, log_path=tmp_path / "survivor.log").start()
        time.sleep(2)
        victim.kill()
        killed = time.monotonic()
        wait_for(lambda: all_written(sandbox, cases), timeout=40, what="every Case after the kill")
        assert time.monotonic() - killed <= 10
        assert_at_most_one_sms_each(sandbox)
    finally:
        victim.stop()
        if survivor is not None:
            survivor.stop()


def test_a_paused_worker_keeps_its_work(sandbox: SandboxProcess, cluster_on: ClusterFactory) -> None:
    """The other side of fast recovery: a worker paused for 6 s (SIGSTOP: a long GC pause, a starved
    container) is alive; its work is not taken over, and it finishes it when it resumes."""
    cluster = cluster_on(sandbox, BRIDGE_LEASE_SECONDS="20")
    cases = extra_cases(sandbox, 4, start=1330)
    sandbox.salesforce_control(slow_next=[{"path": "/query", "seconds": 3}])
    web = cluster.start_web()
    slow = cluster.start_worker()
    assert web.post_xml(outbound_message(cases)).status_code == 200
    wait_for(lambda: _case_reads(sandbox) >= 1, timeout=30, what="the first worker to claim the sends")
    cluster.start_worker()
    time.sleep(1)
    pause(slow.pid)
    time.sleep(6)
    resume(slow.pid)
    wait_for(lambda: all_written(sandbox, cases), timeout=40, what="every Case")
    assert_at_most_one_sms_each(sandbox)
    assert (cluster.directory / "worker0.log").read_text().count("finished sent") == len(cases)
    assert "finished" not in (cluster.directory / "worker1.log").read_text()
