"""The moment a request leaves, under faults (reliability audit 2: R1, R5, R12), as real processes on
127.0.0.1 and a real PostgreSQL: a worker whose database link stalls, or whose host pauses it, right
after it marked a send as leaving; the database's clock stepping forward while requests are in flight;
an opt-out acknowledged while the decision to send is on its way back. Each test texted a customer
twice, or without consent, on the code before the fix.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bridge.phones import us_e164
from bridge.sandbox.cases import outbound_message
from bridge.store import Store
from tests._faults import CLEARED_TO_LEAVE, CLEARED_TO_LEAVE_SQL, PgClock, faulty_env, is_stopped, resume
from tests._pgproxy import PgProxy
from tests._processes import (
    BridgeProcess,
    ClusterFactory,
    SandboxProcess,
    all_written,
    bridge_environment,
    chats_created,
    extra_cases,
    run_sandbox,
    wait_for,
)

pytestmark = pytest.mark.e2e


@pytest.fixture
def quick_chats(tmp_path: Path) -> Iterator[SandboxProcess]:
    """Chats that end at once: CCAI's "active session" refusal, which could hide a second SMS, is out
    of the way, so only the bridge stands between the customer and a duplicate."""
    yield from run_sandbox(tmp_path, "--chat-life", "selecting@0,finished@0.2")


@pytest.fixture
def pg_clock(pg_schema_url: str) -> Iterator[PgClock]:
    """Requested before ``cluster_on``, so that it is removed after the processes using it stop."""
    clock = PgClock(pg_schema_url)
    yield clock
    clock.close()


@pytest.fixture
def proxy(pg_schema_url: str) -> Iterator[PgProxy]:
    proxy = PgProxy.for_url(pg_schema_url)
    yield proxy
    proxy.close()


def test_a_worker_whose_link_stalls_after_marking_a_send_never_posts_it_after_a_takeover(
    quick_chats: SandboxProcess, cluster_on: ClusterFactory, proxy: PgProxy, pg_schema_url: str
) -> None:
    """R1: worker A's go-ahead to send (`Sends.depart`) commits, then its database link holds every byte for longer
    than the lease. Worker B takes the send over and texts the customer; when A's link heals, A must
    not post the SMS it decided to send long ago."""
    sandbox = quick_chats
    cluster = cluster_on(sandbox, BRIDGE_LEASE_SECONDS="2", CCAI_TIMEOUT_SECONDS="1")
    [case] = extra_cases(sandbox, 1, start=1100)
    web = cluster.start_web()
    proxy.hold_after_commit(CLEARED_TO_LEAVE_SQL, seconds=12)
    cluster.start_worker(DATABASE_URL=proxy.url(pg_schema_url))
    assert web.post_xml(outbound_message([case])).status_code == 200
    held = proxy.wait_for("commit", timeout=30)
    cluster.start_worker()  # B, straight to the database
    wait_for(lambda: all_written(sandbox, [case]), timeout=60, what="the Case update")
    wait_for(lambda: time.time() > held.at + 12 + 4, timeout=30, what="A's link to heal and A to carry on")
    assert chats_created(sandbox) == 1
    assert sandbox.case(case)["CCAI_SMS_Status__c"] == "Sent"


def test_a_worker_paused_after_marking_a_send_never_posts_it_after_a_takeover(
    quick_chats: SandboxProcess, tmp_path: Path
) -> None:
    """R1: the host pauses bridge A (SIGSTOP) right after its send was cleared to leave; bridge B, on the same
    SQLite store, takes the send over and texts the customer. Resumed, A must not post."""
    sandbox = quick_chats
    env = {**bridge_environment(sandbox, tmp_path), "BRIDGE_LEASE_SECONDS": "2", "CCAI_TIMEOUT_SECONDS": "1"}
    [case] = extra_cases(sandbox, 1, start=1110)
    a = BridgeProcess(env={**env, **faulty_env(stop_after=CLEARED_TO_LEAVE)}, log_path=tmp_path / "a.log").start()
    assert a.process is not None
    b = None
    try:
        assert a.post_xml(outbound_message([case])).status_code == 200
        wait_for(lambda: is_stopped(a.process.pid), timeout=20, what="A to pause after marking the send")  # type: ignore[union-attr]
        b = BridgeProcess(env=env, log_path=tmp_path / "b.log").start()
        wait_for(lambda: all_written(sandbox, [case]), timeout=60, what="B to send and write back")
        wait_for(lambda: sandbox.ccai_state()["sessions"] == 0, what="the customer's chat to end")
        resume(a.process.pid)
        time.sleep(3)  # A carries on from where it was paused: a post would reach CCAI at once
        assert chats_created(sandbox) == 1
        assert sandbox.case(case)["CCAI_SMS_Status__c"] == "Sent"
    finally:
        resume(a.process.pid)
        a.stop()
        if b is not None:
            b.stop()


def test_a_database_clock_stepping_forward_never_has_requests_in_flight_sent_again(
    quick_chats: SandboxProcess, pg_clock: PgClock, cluster_on: ClusterFactory
) -> None:
    """R5: PostgreSQL's clock steps a minute forward while four requests are in flight and CCAI takes
    a few seconds to create their chats. Every lease looks expired at once; a takeover must not look
    the chats up (and find nothing) before CCAI had its whole deadline to create them."""
    sandbox = quick_chats
    cluster = cluster_on(
        sandbox,
        DATABASE_URL=pg_clock.url,
        BRIDGE_LEASE_SECONDS="20",
        CCAI_TIMEOUT_SECONDS="6",
        CCAI_RETRY_FOR_SECONDS="300",
    )
    cases = extra_cases(sandbox, 4, start=1120)
    sandbox.ccai_control(fault={"delay": 3})
    web = cluster.start_web()
    cluster.start_worker()
    cluster.start_worker()
    assert web.post_xml(outbound_message(cases)).status_code == 200
    wait_for(lambda: len(sandbox.ccai_state()["request_times"]) >= 4, timeout=30, what="4 requests in flight")
    pg_clock.step(60)
    wait_for(lambda: all_written(sandbox, cases), timeout=60, what="every Case update")
    time.sleep(4)  # a second request would still be waiting at CCAI
    assert len(sandbox.ccai_state()["request_times"]) == 4
    assert chats_created(sandbox) == 4


def test_an_opt_out_acknowledged_while_the_decision_to_send_comes_back_is_honoured(
    quick_chats: SandboxProcess, cluster_on: ClusterFactory, proxy: PgProxy, pg_schema_url: str
) -> None:
    """R12: the worker's go-ahead to send commits, its answer takes 4 s to come back, and meanwhile an
    operator's opt-out for the number is acknowledged. The SMS must not leave seconds after that."""
    sandbox = quick_chats
    cluster = cluster_on(sandbox, BRIDGE_LEASE_SECONDS="20")
    [case] = extra_cases(sandbox, 1, start=1130)
    number = sandbox.case(case)["ContactMobile"]
    web = cluster.start_web()
    proxy.hold_after_commit(CLEARED_TO_LEAVE_SQL, seconds=4)
    cluster.start_worker(DATABASE_URL=proxy.url(pg_schema_url))
    assert web.post_xml(outbound_message([case])).status_code == 200
    proxy.wait_for("commit", timeout=30)
    store = Store.from_url(pg_schema_url)
    try:
        assert store.opt_outs.add(us_e164(number, label="number"), source="operator", note="replied STOP")
        acknowledged = time.time()
        wait_for(lambda: all_written(sandbox, [case]), timeout=30, what="the Case update")
    finally:
        store.close()
    sent_after = [sms["at"] - acknowledged for sms in sandbox.ccai_state()["accepted"]]
    assert sent_after == [], f"texted {sent_after} s after the opt-out was acknowledged"
    assert sandbox.case(case)["CCAI_SMS_Status__c"] == "Opted Out"
