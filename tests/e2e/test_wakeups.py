"""Issue 22.1: a send stored by ``bridge serve`` wakes a ``bridge worker`` in another process at once,
long before its poll; a missed notification falls back to the poll; the worker listens again after
its session is ended. Real processes on PostgreSQL. The timings here only tell a wake-up from a poll
(seconds apart); the latency itself is measured by ``python -m benchmarks latency``."""

from __future__ import annotations

import time

from sqlalchemy import insert, text

from bridge.model import NewSend
from bridge.sandbox.cases import outbound_message
from bridge.store import Store
from bridge.store._rows import new_row
from bridge.store.schema import sends
from tests._processes import (
    Cluster,
    ClusterFactory,
    SandboxProcess,
    assert_at_most_one_sms_each,
    extra_cases,
    sms_per_case,
    wait_for,
)

LONG_POLL = "60"  # far longer than any test waits: only a wake-up can explain a prompt SMS


def _sent_within(sandbox: SandboxProcess, case_id: str, seconds: float) -> float:
    started = time.monotonic()
    wait_for(lambda: sms_per_case(sandbox)[case_id] >= 1, timeout=seconds, interval=0.02, what=f"the SMS of {case_id}")
    return time.monotonic() - started


def _listening(cluster: Cluster) -> list[int]:
    """The sessions listening on this cluster's channel (one per worker)."""
    store = Store.from_url(cluster.env["DATABASE_URL"])
    try:
        with store.db.tx() as connection:
            rows = connection.execute(
                text(
                    "SELECT pid FROM pg_stat_activity WHERE query LIKE 'LISTEN %' "
                    "AND query LIKE '%' || current_schema() || '%'"
                )
            ).all()
        return [int(row[0]) for row in rows]
    finally:
        store.close()


def _idle_worker(sandbox: SandboxProcess, cluster_on: ClusterFactory, **env: str) -> Cluster:
    cluster = cluster_on(sandbox, **{"BRIDGE_POLL_SECONDS": LONG_POLL, "BRIDGE_CHAT_SYNC_SECONDS": "0", **env})
    cluster.start_web()
    cluster.start_worker()
    wait_for(lambda: len(_listening(cluster)) == 1, timeout=30, what="the worker to listen")
    time.sleep(1.0)  # its first pass is over: it sleeps for the poll interval now
    return cluster


def test_a_send_stored_by_the_web_process_wakes_a_worker_in_another_process(
    sandbox: SandboxProcess, cluster_on: ClusterFactory
) -> None:
    cluster = _idle_worker(sandbox, cluster_on)
    assert cluster.web is not None
    for case_id in extra_cases(sandbox, 3, start=2210):
        assert cluster.web.post_xml(outbound_message([case_id])).status_code == 200
        assert _sent_within(sandbox, case_id, 10) < 10  # the poll would take 60 s
        time.sleep(0.3)  # idle again
    assert_at_most_one_sms_each(sandbox)


def test_work_stored_without_a_notification_is_found_by_the_poll(
    sandbox: SandboxProcess, cluster_on: ClusterFactory
) -> None:
    """A notification that never arrived (stored while nobody listened, or lost) costs only the poll."""
    cluster = _idle_worker(sandbox, cluster_on, BRIDGE_POLL_SECONDS="3")
    [case_id] = extra_cases(sandbox, 1, start=2220)
    store = Store.from_url(cluster.env["DATABASE_URL"])
    try:
        with store.db.tx() as connection:  # the table written directly: nothing announces it
            new = NewSend(dedupe_key="silent:1", source="api", origin="person", ticket_id=case_id)
            connection.execute(insert(sends).values(new_row(new, time.time())))
    finally:
        store.close()
    time.sleep(1.0)
    assert sms_per_case(sandbox)[case_id] == 0  # nobody was told
    _sent_within(sandbox, case_id, 10)  # the poll (3 s) found it
    assert_at_most_one_sms_each(sandbox)


def test_a_worker_listens_again_after_its_session_is_ended(sandbox: SandboxProcess, cluster_on: ClusterFactory) -> None:
    """pg_terminate_backend stands for a database restart or a dropped link: the worker opens a new
    listening session by itself, and the next send stored wakes it as before."""
    cluster = _idle_worker(sandbox, cluster_on)
    assert cluster.web is not None
    [before] = _listening(cluster)
    store = Store.from_url(cluster.env["DATABASE_URL"])
    try:
        with store.db.tx() as connection:
            connection.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": before})
    finally:
        store.close()
    after = wait_for(lambda: [pid for pid in _listening(cluster) if pid != before], timeout=15, what="a new session")
    assert len(after) == 1
    time.sleep(0.5)
    [case_id] = extra_cases(sandbox, 1, start=2230)
    assert cluster.web.post_xml(outbound_message([case_id])).status_code == 200
    _sent_within(sandbox, case_id, 10)  # the poll would take 60 s
    assert "Stopped listening for new work" in cluster.logs()
    assert_at_most_one_sms_each(sandbox)
