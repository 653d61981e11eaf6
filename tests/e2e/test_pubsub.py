"""The Salesforce Pub/Sub trigger with real processes: ``bridge sandbox`` (its Pub/Sub API over gRPC
and TLS) and ``bridge worker`` processes on PostgreSQL. A worker killed between receiving events and
committing them loses none and repeats none; another takes the stream over within 30 s."""

from __future__ import annotations

import time

import pytest

from bridge.store import Store
from tests._processes import (
    Cluster,
    SandboxProcess,
    assert_at_most_one_sms_each,
    extra_cases,
    sms_per_case,
    wait_for,
    worker_with,
)

pytestmark = pytest.mark.e2e
INPUT_LEASE = "input:salesforce-pubsub"
# A worker that receives events and then hangs before committing them, until it is killed.
HANG_BEFORE_COMMIT = """
import time
from bridge.store import streams
_commit = streams.Streams.commit
def _hang(self, *args, **kwargs):
    print("received, not committed", flush=True)
    time.sleep(3600)
streams.Streams.commit = _hang
"""


def requests_for(cases: list[str]) -> list[dict[str, object]]:
    return [{"values": {"Case_Id__c": case, "Idempotency_Key__c": f"save-{case}"}} for case in cases]


def holder_pid(store: Store) -> int | None:
    holder = store.status.lease_holder(INPUT_LEASE)
    return next((w.pid for w in store.status.workers() if w.id == holder), None)


def test_a_worker_killed_between_receiving_and_committing_loses_no_event_and_repeats_none(
    sandbox: SandboxProcess, cluster: Cluster
) -> None:
    cases = extra_cases(sandbox, 20)
    store = Store.from_url(cluster.env["DATABASE_URL"])
    try:
        hanging = cluster.start_worker(command=worker_with(HANG_BEFORE_COMMIT))
        wait_for(lambda: holder_pid(store) == hanging.pid, timeout=60, what="the hanging worker to hold the stream")
        wait_for(lambda: sandbox.pubsub()["stats"]["open_streams"] == 1, timeout=30, what="its subscription")
        sandbox.pubsub(publish=requests_for(cases))
        wait_for(lambda: sandbox.pubsub()["stats"]["delivered"] >= 20, timeout=30, what="the events to be delivered")
        time.sleep(0.5)  # it now hangs in its commit, the events in hand
        assert store.streams.position("/event/CCAI_SMS_Request__e") is None
        cluster.start_worker()
        hanging.kill()  # SIGKILL: a crash between receiving and committing
        killed_at = time.monotonic()
        wait_for(lambda: len(sms_per_case(sandbox)) == 20, timeout=90, what="every Case texted")
        taken_over_after = time.monotonic() - killed_at
        time.sleep(1.0)  # anything repeated would show by now
        sends = store.history.find(limit=100)
    finally:
        store.close()
    assert sorted(r.ticket_id for r in sends) == sorted(cases)
    assert_at_most_one_sms_each(sandbox)
    # The input's lease is 20 s: the second worker holds the stream within about 25 s of the crash.
    assert taken_over_after < 45, taken_over_after


def test_a_stream_cut_by_a_server_restart_resumes_from_the_stored_position(
    sandbox: SandboxProcess, cluster: Cluster
) -> None:
    cases = extra_cases(sandbox, 10, start=40)
    store = Store.from_url(cluster.env["DATABASE_URL"])
    try:
        cluster.start_worker()
        wait_for(lambda: sandbox.pubsub()["stats"]["open_streams"] == 1, timeout=60, what="a subscription")
        sandbox.pubsub(publish=requests_for(cases[:5]))
        wait_for(lambda: len(store.history.find(limit=100)) == 5, timeout=30, what="the first five sends")
        sandbox.pubsub(stop=True)
        sandbox.pubsub(publish=requests_for(cases[5:]))  # kept by the org while nobody can read them
        sandbox.pubsub(start=True)
        wait_for(lambda: len(store.history.find(limit=100)) == 10, timeout=60, what="the events of the outage")
        wait_for(lambda: len(sms_per_case(sandbox)) == 10, timeout=60, what="every Case texted")
    finally:
        store.close()
    assert_at_most_one_sms_each(sandbox)
    assert sandbox.pubsub()["stats"]["subscribes"] >= 2
