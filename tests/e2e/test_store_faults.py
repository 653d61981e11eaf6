"""The database link under faults (reliability audit 2: R2, R6, R8), as real processes on 127.0.0.1
and a real PostgreSQL behind a proxy: a COMMIT whose answer is lost, a failover to a copy of the
store that is behind, a link that silently drops every byte. Each test doubled an SMS, or left
acknowledged events unsent, on the code before the fix.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from bridge.sandbox.cases import outbound_message
from bridge.sandbox.servers import SANDBOX_API_KEY
from bridge.store import Store
from tests._faults import drop_schema, schema_of, snapshot_schema
from tests._pgproxy import PgProxy
from tests._processes import (
    LOCAL,
    ClusterFactory,
    SandboxProcess,
    all_written,
    chats_created,
    extra_cases,
    run_sandbox,
    sms_per_case,
    wait_for,
)

pytestmark = pytest.mark.e2e


@pytest.fixture
def quick_chats(tmp_path: Path) -> Iterator[SandboxProcess]:
    """Chats that end at once, so that CCAI's "active session" refusal cannot hide a second SMS."""
    yield from run_sandbox(tmp_path, "--chat-life", "selecting@0,finished@0.2")


@pytest.fixture
def proxy(pg_schema_url: str) -> Iterator[PgProxy]:
    proxy = PgProxy.for_url(pg_schema_url)
    yield proxy
    proxy.close()


def _post_send(url: str, ticket_id: str) -> httpx.Response:
    """An API send as a Flow's HTTP callout makes it: no Idempotency-Key."""
    return LOCAL.post(
        f"{url}/api/v1/sends",
        json={"ticket_id": ticket_id, "message": "Your technician is on the way."},
        headers={"Authorization": f"Bearer {SANDBOX_API_KEY}"},
    )


def test_an_api_send_whose_commit_answer_is_lost_is_not_created_twice(
    quick_chats: SandboxProcess, cluster_on: ClusterFactory, proxy: PgProxy, pg_schema_url: str
) -> None:
    """R2: the send's COMMIT reaches PostgreSQL but its answer never comes back. A caller without an
    Idempotency-Key that is told to try again creates a second send: the customer is texted twice."""
    sandbox = quick_chats
    cluster = cluster_on(sandbox)
    [case] = extra_cases(sandbox, 1, start=1200)
    web = cluster.start_web(DATABASE_URL=proxy.url(pg_schema_url))
    cluster.start_worker()
    proxy.cut_after_commit(r"INSERT INTO sends ")
    answers = [_post_send(web.url, case)]
    proxy.wait_for("commit")
    if answers[0].status_code == 503:  # the caller does what it was told: tries again
        wait_for(lambda: sandbox.ccai_state()["sessions"] == 0 and chats_created(sandbox), timeout=20)
        answers.append(_post_send(web.url, case))
    wait_for(lambda: all_written(sandbox, [case]), timeout=30, what="the Case update")
    time.sleep(1)
    store = Store.from_url(pg_schema_url)
    try:
        stored = store.history.find(ticket_id=case)
    finally:
        store.close()
    assert chats_created(sandbox) == 1
    assert len(stored) == 1
    assert [a.status_code for a in answers] == [202]
    assert answers[0].json()["id"] == stored[0].id


def test_a_failover_to_a_store_that_is_behind_never_texts_anyone_again(
    quick_chats: SandboxProcess, cluster_on: ClusterFactory, proxy: PgProxy, pg_schema_url: str
) -> None:
    """R6: the bridge fails over to a copy of its store taken before five Cases were texted (an
    asynchronous replica that fell behind). The copy says those sends are still queued; the bridge
    must notice that its store went back in time, say so, and not text those customers again: each
    send is looked up in CCAI, which finds the chat it already has."""
    sandbox = quick_chats
    cluster = cluster_on(sandbox, DATABASE_URL=proxy.url(pg_schema_url))
    cases = extra_cases(sandbox, 5, start=1210)
    web = cluster.start_web()
    assert web.post_xml(outbound_message(cases)).status_code == 200
    replica = snapshot_schema(pg_schema_url)  # what the replica had: the five sends, queued
    try:
        cluster.start_worker()
        wait_for(lambda: all_written(sandbox, cases), timeout=30, what="the five Cases texted")
        later = extra_cases(sandbox, 2, start=1220)
        assert web.post_xml(outbound_message(later)).status_code == 200  # acked; the replica never gets them
        proxy.failover({schema_of(pg_schema_url): schema_of(replica)})
        # Before the fix the worker texted the five again within a second or two of the failover.
        ready = wait_for(
            lambda: (
                (answer := LOCAL.get(f"{web.url}/readyz")).status_code == 503 and "went back in time" in answer.text
            ),
            timeout=20,
            what="/readyz to say the store went back in time",
        )
        assert ready
        store = Store.from_url(replica)
        try:
            wait_for(
                lambda: {s.status for s in store.history.find(limit=10)} == {"sent"},
                timeout=40,
                what="the replica's sends to be looked up",
            )
            chats = {s.ticket_id: s.chat_id for s in store.history.find(limit=10)}
        finally:
            store.close()
        accepted = {sms["ticket_id"]: str(sms["chat_id"]) for sms in sandbox.ccai_state()["accepted"]}
        assert chats == {case: accepted[case] for case in cases}  # each found the chat it already had
        assert max(sms_per_case(sandbox).values()) == 1, sms_per_case(sandbox)
        wait_for(lambda: LOCAL.get(f"{web.url}/readyz").status_code == 200, timeout=20, what="/readyz to recover")
    finally:
        cluster.stop()
        drop_schema(replica)


def test_a_database_link_that_drops_every_byte_for_a_while_does_not_wedge_the_worker(
    sandbox: SandboxProcess, cluster_on: ClusterFactory, proxy: PgProxy, pg_schema_url: str
) -> None:
    """R8: the worker's link to PostgreSQL silently drops every byte for 4 s (no RST, no FIN: a
    middlebox that lost its state), then works again. The worker must get going again, not wait for
    answers that will never come while the web door goes on acknowledging events."""
    cluster = cluster_on(sandbox, BRIDGE_STORE_TIMEOUT_SECONDS="3", CCAI_RATE_LIMIT="4")
    cases = extra_cases(sandbox, 12, start=1230)
    web = cluster.start_web()
    cluster.start_worker(DATABASE_URL=proxy.url(pg_schema_url))
    assert web.post_xml(outbound_message(cases)).status_code == 200
    wait_for(lambda: chats_created(sandbox) >= 3, timeout=30, what="sending under way")
    proxy.set_mode("blackhole")
    time.sleep(4)
    proxy.set_mode("pass")
    wait_for(lambda: all_written(sandbox, cases), timeout=40, what="every Case after the link came back")
    assert chats_created(sandbox) == len(cases)
