"""The faults the reliability audit found, as real processes on 127.0.0.1 and a real PostgreSQL:
each test breaks one promise on the code before the fix. After each, CCAI created at most one chat
per event, and every acknowledged event reached a final state on its Case.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from bridge.sandbox.cases import outbound_message
from tests._processes import (
    BridgeProcess,
    Cluster,
    SandboxProcess,
    all_written,
    assert_at_most_one_sms_each,
    bridge_environment,
    extra_cases,
    python_command,
    run_sandbox,
    wait_for,
)

pytestmark = pytest.mark.e2e

KEY = "sandbox-api-key"
ClusterFactory = Callable[..., Cluster]


def chats_created(sandbox: SandboxProcess) -> int:
    return len(sandbox.ccai_state()["accepted"])


def worker_with(patch: str) -> list[str]:
    """``bridge worker`` in a process whose standard library is patched first (a fault of its host)."""
    code = f"{patch}\nimport sys\nfrom bridge.cli import main\nsys.exit(main(['worker']))"
    return [sys.executable, "-c", code]


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


def test_a_long_hostname_stops_nothing(sandbox: SandboxProcess, cluster_on: ClusterFactory) -> None:
    """A8: a worker owner id built from a 68-character FQDN no longer overflows a column."""
    cluster = cluster_on(sandbox)
    cases = extra_cases(sandbox, 3, start=940)
    web = cluster.start_web()
    host = "a-very-long-host-name-of-a-container." + "x" * 24 + ".internal"
    assert len(host) >= 68
    cluster.start_worker(command=worker_with(f"import socket\nsocket.gethostname = lambda: {host!r}"))
    assert web.post_xml(outbound_message(cases)).status_code == 200
    wait_for(lambda: all_written(sandbox, cases), timeout=30, what="the sends of the long-named worker")
    assert chats_created(sandbox) == 3


def test_a_nul_in_case_text_is_texted_once(sandbox: SandboxProcess, cluster_on: ClusterFactory) -> None:
    """A1: PostgreSQL cannot store NUL; the bridge used to re-send such a message every lease."""
    cluster = cluster_on(sandbox)
    case = "5005g00000NULL1AAA"
    sandbox.salesforce_control(
        cases=[{"Id": case, "CaseNumber": "0000\u00001001", "ContactMobile": "+1 415 555 0177", "Owner.Type": "Queue"}]
    )
    web = cluster.start_web()
    cluster.start_worker()
    assert web.post_xml(outbound_message([case])).status_code == 200
    wait_for(lambda: all_written(sandbox, [case]), timeout=30, what="the Case update")
    assert sandbox.case(case)["CCAI_SMS_Status__c"] == "Sent"
    [sms] = sandbox.ccai_state()["accepted"]
    assert "\u0000" not in sms["message"]
    sandbox.ccai_control(end_sessions=True)
    time.sleep(4)  # longer than a lease: nothing is taken up again
    assert chats_created(sandbox) == 1
    refused = httpx.post(
        f"{web.url}/api/v1/sends",
        json={"ticket_id": case, "message": "a\u0000b"},
        headers={"Authorization": f"Bearer {KEY}"},
    )
    assert refused.status_code == 400


def test_sigterm_with_an_agent_request_open_stops_sending_at_once(sandbox: SandboxProcess, tmp_path: Path) -> None:
    """A3: SIGTERM stops the worker claiming immediately, even while an agent's ?wait request is
    open, and the process exits well before Heroku's 30-second kill."""
    cases = extra_cases(sandbox, 40, start=950)
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
    restarted = BridgeProcess(env=env, log_path=tmp_path / "bridge2.log").start()
    try:
        wait_for(lambda: all_written(sandbox, cases), timeout=60, what="every Case after the restart")
        assert_at_most_one_sms_each(sandbox)
    finally:
        restarted.stop()


def test_work_of_a_killed_worker_is_taken_up_within_30_seconds(
    sandbox: SandboxProcess, cluster_on: ClusterFactory
) -> None:
    """Crash recovery with the default lease (heartbeats renew it): measured from the kill to the
    customer's SMS being recorded, it used to take the 135-second lease."""
    cluster = cluster_on(sandbox, BRIDGE_LEASE_SECONDS="20", CCAI_TIMEOUT_SECONDS="15", CCAI_RETRY_FOR_SECONDS="300")
    [case] = extra_cases(sandbox, 1, start=990)
    sandbox.ccai_control(latency=1.5)
    web = cluster.start_web()
    victim = cluster.start_worker()
    assert web.post_xml(outbound_message([case])).status_code == 200
    wait_for(lambda: sandbox.ccai_state()["request_times"], what="the request in flight")
    victim.kill()
    killed = time.monotonic()
    victim.wait()
    cluster.start_worker()
    wait_for(lambda: all_written(sandbox, [case]), timeout=45, what="the Case after the crash")
    assert time.monotonic() - killed <= 30
    assert sandbox.case(case)["CCAI_SMS_Status__c"] == "Sent"
    assert chats_created(sandbox) == 1


def test_three_workers_stay_under_a_strict_one_second_limit(tmp_path: Path, cluster_on: ClusterFactory) -> None:
    """A7: paced on departures by the database's clock, with headroom for jitter, three workers
    never exceed a strict sliding one-second window that adds up to 50 ms of latency."""
    for sandbox in run_sandbox(tmp_path, "--rate-window", "sliding", "--jitter", "0.05", "--latency", "0.1"):
        cluster = cluster_on(sandbox)
        cases = extra_cases(sandbox, 45, start=1000)
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


@pytest.fixture
def cluster_on(pg_schema_url: str, tmp_path: Path) -> Iterator[ClusterFactory]:
    """A factory: a cluster (web + workers on PostgreSQL) beside the given sandbox."""
    clusters: list[Cluster] = []

    def make(sandbox: SandboxProcess, **env: str) -> Cluster:
        settings = {**bridge_environment(sandbox, tmp_path), "DATABASE_URL": pg_schema_url, **env}
        migrated = subprocess.run(python_command("migrate"), env=settings, capture_output=True, text=True)
        assert migrated.returncode == 0, migrated.stderr
        clusters.append(Cluster(env=settings, directory=tmp_path))
        return clusters[-1]

    yield make
    for cluster in clusters:
        cluster.stop()
