"""The verdict read from a real store after the pipeline met a fault: what an operator sees."""

from __future__ import annotations

import pytest

from bridge.crm.salesforce import SalesforcePlugin
from bridge.errors import CRMUnavailable
from bridge.ops.health import read_snapshot, read_verdict
from bridge.ops.verdict import Limits
from bridge.store import Store
from tests._clock import Clock
from tests._harness import MOBILE_CASE, NO_PHONE_CASE, QUEUE_CASE, Harness, make_harness

pytestmark = pytest.mark.anyio
LIMITS = Limits(words=SalesforcePlugin.words)


def alive(h: Harness) -> None:
    """The worker's heartbeat, as its housekeeping tick writes it."""
    h.store.status.beat("web.1:7", host="web.1", pid=7, pass_ok=True, pass_error=None)


async def test_the_issues_429_storm_reads_degraded_with_the_sends_in_hand_and_the_throttling(
    store: Store, clock: Clock
) -> None:
    h = make_harness(store, clock)
    h.sim.script.extend([{"status": 429}] * 400)
    cases = [f"5005g00000SBX{n:02d}XAH" for n in range(10, 17)]
    for n, case_id in enumerate(cases):
        h.gateway.cases[case_id] = {
            **h.gateway.cases[MOBILE_CASE],
            "Id": case_id,
            "ContactMobile": f"+1 415-555-01{n:02d}",
        }
    h.ingest(*cases)
    await h.drain(advance=20, rounds=8)
    alive(h)
    verdict = read_verdict(store, LIMITS, chat_sync=False)
    assert verdict.level == "degraded", verdict.as_dict()
    backlog, throttled = (r for r in verdict.reasons if r.code in ("backlog", "ccai_throttled"))
    assert backlog.counts["queued"] + backlog.counts["sending"] == 7
    assert backlog.counts["throttled"] == 7
    assert backlog.counts["oldest_seconds"] >= 60
    assert throttled.counts["answers"] >= 7
    assert "CCAI has answered 429 (too many requests)" in throttled.text

    h.sim.script.clear()  # CCAI lets them through: sent, and the verdict recovers
    await h.drain(advance=15, rounds=4)
    alive(h)
    assert read_verdict(store, LIMITS, chat_sync=False).level == "healthy"


async def test_ccai_failing_reads_degraded_since_the_first_failure(store: Store, clock: Clock) -> None:
    h = make_harness(store, clock)
    h.sim.script.extend([{"status": 503}] * 50)
    h.ingest(MOBILE_CASE)
    started = clock()
    await h.drain(advance=5, rounds=8)
    alive(h)
    snapshot = read_snapshot(store, chat_sync=False)
    assert snapshot.ccai_failing is not None
    assert snapshot.ccai_failing.since >= started
    assert snapshot.ccai_throttled is None
    assert "ccai_failing" in [r.code for r in read_verdict(store, LIMITS, chat_sync=False).reasons]


async def test_write_backs_failing_read_degraded_with_the_outcomes_waiting(store: Store, clock: Clock) -> None:
    h = make_harness(store, clock)
    h.gateway.write_failures.extend([CRMUnavailable("Salesforce answered 503.")] * 20)
    h.ingest(NO_PHONE_CASE, QUEUE_CASE)
    await h.drain(advance=30, rounds=6)
    alive(h)
    verdict = read_verdict(store, LIMITS, chat_sync=False)
    [reason] = [r for r in verdict.reasons if r.code == "writebacks_failing"]
    assert reason.text.startswith("writing outcomes to Salesforce has failed")
    assert reason.counts["pending"] == 2


async def test_no_heartbeat_is_down_and_an_idle_bridge_is_healthy(store: Store, clock: Clock) -> None:
    h = make_harness(store, clock)
    assert read_verdict(store, LIMITS, chat_sync=False).level == "down"
    alive(h)
    assert read_verdict(store, LIMITS, chat_sync=False).level == "healthy"


async def test_a_store_that_cannot_be_read_is_the_verdict(tmp_path: object) -> None:
    broken = Store.from_url("postgresql://nobody@127.0.0.1:1/none")
    try:
        verdict = read_verdict(broken, LIMITS, chat_sync=False, now=1_800_000_000.0)
    finally:
        broken.close()
    assert verdict.level == "down"
    assert verdict.reasons[0].text.startswith("the store cannot be read:")


async def test_the_event_stream_as_its_holder_reports_it_is_part_of_the_verdict(store: Store, clock: Clock) -> None:
    h = make_harness(store, clock)
    alive(h)
    key = "stream:/event/CCAI_SMS_Request__e"
    live = {"state": "live", "holder": "web.1:7", "last_response_at": clock() - 10}
    store.status.put(key, live)
    assert read_verdict(store, LIMITS, chat_sync=False).level == "healthy"
    store.status.put(key, {**live, "last_response_at": clock() - 400})  # no keepalive for 400 s
    silent = read_verdict(store, LIMITS, chat_sync=False)
    assert [r.code for r in silent.reasons] == ["stream_silent"]
    assert "The event stream /event/CCAI_SMS_Request__e has been silent for 6 min 40 s" in silent.reasons[0].sentence
    problem = "No response on the Pub/Sub stream for 300 s: the stream is dead."
    store.status.put(key, {"state": "reconnecting", "holder": "web.1:7", "problem": problem})
    down = read_verdict(store, LIMITS, chat_sync=False)
    assert down.level == "degraded"
    assert down.reasons[0].text == (
        f"The event stream /event/CCAI_SMS_Request__e is not connected: it is reconnecting ({problem})."
    )
    store.status.put(key, {"state": "stopped"})
    assert read_verdict(store, LIMITS, chat_sync=False).level == "healthy"


async def test_the_lookup_proof_the_chat_sync_gathers_is_part_of_the_verdict(store: Store, clock: Clock) -> None:
    """Issue 20 item 5: a tenant whose chat list leaves out_ticket_id null makes the lookup untrusted
    (degraded, with the chat and what it showed); one that carries it is proven, with no reason."""
    from bridge.chatsync import SyncOptions

    h = make_harness(store, clock, lookup_proven=False, bridge_chat_sync_seconds=0)
    options = SyncOptions(interval=60, follow_seconds=7 * 86400, no_reply_seconds=0, lease_seconds=30)
    sync = h.chat_sync(options, evidence=store.lookup_evidence)
    alive(h)
    assert "lookup_unproven" in [r.code for r in read_verdict(store, LIMITS, chat_sync=False).reasons]
    h.ingest(MOBILE_CASE, QUEUE_CASE)
    await h.drain()
    clock.advance(3)
    await sync.poll()
    snapshot = read_snapshot(store, chat_sync=False)
    assert snapshot.lookup is not None
    assert snapshot.lookup.state == "unproven"
    assert "2 of the 3 chats needed" in snapshot.lookup.detail
    h.sim.fill_out_ticket_id = False
    h.gateway.cases["5005g00000SBX77XAH"] = {**h.gateway.cases[MOBILE_CASE], "ContactMobile": "+1 415-555-0177"}
    h.ingest("5005g00000SBX77XAH")
    await h.drain()
    clock.advance(130)
    await sync.poll()
    alive(h)
    verdict = read_verdict(store, LIMITS, chat_sync=False)
    assert verdict.level == "degraded", verdict.as_dict()
    [reason] = [r for r in verdict.reasons if r.code == "lookup_contradicted"]
    assert "out_ticket_id null" in reason.sentence
