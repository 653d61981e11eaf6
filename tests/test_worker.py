from __future__ import annotations

import random
import uuid
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from bridge.ccai import CCAIClient
from bridge.errors import SalesforceRequestError, SalesforceUnavailable
from bridge.mapping import TicketMapper
from bridge.model import NewSend, RecordResult
from bridge.ratelimit import LocalRateLimiter
from bridge.sandbox.ccai import ACTIVE_SESSION, CCAISimulator, create_ccai_app
from bridge.settings import MappingConfig, WritebackConfig
from bridge.store import Store
from bridge.worker import Worker, WorkerOptions
from bridge.writeback import Writeback
from tests.ccai_errors import DOCUMENTED_ERRORS
from tests.conftest import Clock, FakeGateway

pytestmark = pytest.mark.anyio

MOBILE_CASE = "5005g00000SBX01AAH"
QUEUE_CASE = "5005g00000SBX02AAH"
NO_PHONE_CASE = "5005g00000SBX03AAH"
CASES: dict[str, dict[str, Any]] = {
    MOBILE_CASE: {
        "Id": MOBILE_CASE,
        "CaseNumber": "00001001",
        "ContactMobile": "+1 415-555-0100",
        "Owner.Type": "User",
        "Owner.Email": "ana@example.com",
    },
    QUEUE_CASE: {
        "Id": QUEUE_CASE,
        "CaseNumber": "00001002",
        "ContactPhone": "(212) 555-0142",
        "Owner.Type": "Queue",
        "Owner.Email": None,
    },
    NO_PHONE_CASE: {"Id": NO_PHONE_CASE, "CaseNumber": "00001003", "Owner.Type": "User", "Owner.Email": "a@b.c"},
}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@dataclass
class Harness:
    store: Store
    gateway: FakeGateway
    sim: CCAISimulator
    worker: Worker
    clock: Clock

    def ingest(self, *case_ids: str) -> None:
        self.store.ingest(
            [NewSend(dedupe_key=f"om:x:{uuid.uuid4().hex}", source="outbound_message", ticket_id=c) for c in case_ids]
        )

    async def drain(self, *, advance: float = 0.0, rounds: int = 30) -> None:
        """Run the worker until nothing is due; ``advance`` moves the clock between rounds (retries)."""
        for _ in range(rounds):
            if not await self.worker.run_once():
                if not advance:
                    return
                self.clock.advance(advance)

    def row(self, case_id: str) -> dict[str, Any]:
        [row] = self.store.find(ticket_id=case_id, limit=1)
        return row


def make_harness(
    store: Store, clock: Clock, transport: httpx.AsyncBaseTransport | None = None, **options: Any
) -> Harness:
    sim = CCAISimulator(subdomain="acme", api_token="token", outbound_numbers={"+16285550199"}, rate_limit=1000)
    gateway = FakeGateway(cases={k: dict(v) for k, v in CASES.items()})
    ccai = CCAIClient(
        base_url="http://ccai.test/apps/api/v1",
        subdomain="acme",
        api_token="token",
        timeout=2,
        transport=transport or httpx.ASGITransport(app=create_ccai_app(sim)),
    )
    writeback = Writeback(
        store=store,
        gateway=gateway,
        config=WritebackConfig(),
        lease_seconds=30,
        retry_for=3600,
        clock=clock,
        rng=random.Random(1),
    )
    worker = Worker(
        store=store,
        gateway=gateway,
        ccai=ccai,
        mapper=TicketMapper(config=MappingConfig(), outbound_number="+16285550199", chat_type="Messaging (SMS)"),
        limiter=LocalRateLimiter(1000),
        writeback=writeback,
        options=WorkerOptions(**{"ccai_retry_for": 600, "lease_seconds": 30, **options}),
        clock=clock,
        rng=random.Random(1),
    )
    return Harness(store=store, gateway=gateway, sim=sim, worker=worker, clock=clock)


@pytest.fixture
def h(sqlite_store: Store, clock: Clock) -> Harness:
    return make_harness(sqlite_store, clock)


async def test_three_cases_give_two_sms_and_three_case_updates(h: Harness) -> None:
    h.ingest(MOBILE_CASE, QUEUE_CASE, NO_PHONE_CASE)
    await h.drain()
    sent = {s["ticket_id"]: s for s in h.sim.accepted}
    assert set(sent) == {MOBILE_CASE, QUEUE_CASE}
    assert sent[MOBILE_CASE]["end_user_number"] == "+14155550100"
    assert sent[MOBILE_CASE]["agentEmail"] == "ana@example.com"
    assert sent[QUEUE_CASE]["end_user_number"] == "+12125550142"
    assert "agentEmail" not in sent[QUEUE_CASE]
    updates = dict(h.gateway.updates)
    assert updates[MOBILE_CASE] == {
        "CCAI_SMS_Status__c": "Sent",
        "CCAI_Chat_Id__c": str(sent[MOBILE_CASE]["chat_id"]),
        "CCAI_SMS_Error__c": None,
    }
    assert updates[QUEUE_CASE]["CCAI_SMS_Status__c"] == "Sent"
    assert updates[NO_PHONE_CASE]["CCAI_SMS_Status__c"] == "Skipped"
    assert "no phone number" in updates[NO_PHONE_CASE]["CCAI_SMS_Error__c"]
    assert h.gateway.reads == 1  # one SOQL query for the batch
    tasks = {t["WhatId"]: t for t in h.gateway.tasks}
    assert tasks[MOBILE_CASE]["Status"] == "Completed"
    assert sent[MOBILE_CASE]["message"] in tasks[MOBILE_CASE]["Description"]


@pytest.mark.parametrize("message", DOCUMENTED_ERRORS)
async def test_a_documented_ccai_error_fails_the_send_once_with_its_message(h: Harness, message: str) -> None:
    h.sim.script.append({"status": 400, "message": message})
    h.ingest(MOBILE_CASE)
    await h.drain(advance=120, rounds=5)
    row = h.row(MOBILE_CASE)
    assert (row["status"], row["reason"], row["attempts"]) == ("failed", message, 1)
    assert dict(h.gateway.updates)[MOBILE_CASE]["CCAI_SMS_Status__c"] == "Failed"
    assert dict(h.gateway.updates)[MOBILE_CASE]["CCAI_SMS_Error__c"] == message
    assert h.sim.accepted == []


async def test_server_errors_are_retried_with_backoff_then_sent(h: Harness) -> None:
    h.sim.script.extend([{"status": 503}, {"status": 500}])
    h.ingest(MOBILE_CASE)
    await h.drain()
    assert h.row(MOBILE_CASE)["status"] == "queued"  # waiting for its backoff
    await h.drain(advance=10)
    row = h.row(MOBILE_CASE)
    assert (row["status"], row["attempts"]) == ("sent", 3)
    assert len(h.sim.accepted) == 1


async def test_retries_stop_after_the_bounded_time_with_a_clear_reason(sqlite_store: Store, clock: Clock) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    h = make_harness(sqlite_store, clock, transport=httpx.MockTransport(refuse), ccai_retry_for=60)
    h.ingest(MOBILE_CASE)
    await h.drain(advance=15, rounds=40)
    row = h.row(MOBILE_CASE)
    assert row["status"] == "failed"
    assert row["reason"].startswith("Gave up after trying for 1 minute(s): Could not connect to CCAI Platform")
    assert 3 <= row["attempts"] <= 10
    assert dict(h.gateway.updates)[MOBILE_CASE]["CCAI_SMS_Status__c"] == "Failed"


async def test_server_errors_until_the_deadline_give_up_as_failed(sqlite_store: Store, clock: Clock) -> None:
    h = make_harness(sqlite_store, clock, ccai_retry_for=60)
    h.sim.script.extend([{"status": 503}] * 50)
    h.ingest(MOBILE_CASE)
    await h.drain(advance=15, rounds=40)
    row = h.row(MOBILE_CASE)
    assert row["status"] == "failed"
    assert "CCAI Platform had a server error (HTTP 503)" in row["reason"]
    assert "may have reached" not in row["reason"]


async def test_an_unanswered_send_is_not_blindly_repeated(sqlite_store: Store, clock: Clock) -> None:
    """The first request reaches CCAI but the answer is lost; the retry meets the active session."""
    sim_holder: list[CCAISimulator] = []
    inner: list[httpx.ASGITransport] = []

    async def lose_first_answer(request: httpx.Request) -> httpx.Response:
        response = await inner[0].handle_async_request(request)
        if len(sim_holder[0].accepted) == 1 and not getattr(lose_first_answer, "done", False):
            lose_first_answer.done = True  # type: ignore[attr-defined]
            raise httpx.ReadTimeout("answer lost", request=request)
        return response

    h = make_harness(sqlite_store, clock, transport=httpx.MockTransport(lose_first_answer))
    sim_holder.append(h.sim)
    inner.append(httpx.ASGITransport(app=create_ccai_app(h.sim)))
    h.ingest(MOBILE_CASE)
    await h.drain(advance=10)
    row = h.row(MOBILE_CASE)
    assert row["status"] == "unknown"
    assert "most likely reached the customer" in row["reason"]
    assert len(h.sim.accepted) == 1
    assert dict(h.gateway.updates)[MOBILE_CASE]["CCAI_SMS_Status__c"] == "Unknown"


async def test_active_session_on_a_first_attempt_is_a_plain_failure(h: Harness) -> None:
    h.sim.sessions.add("+14155550100")
    h.ingest(MOBILE_CASE)
    await h.drain()
    assert (h.row(MOBILE_CASE)["status"], h.row(MOBILE_CASE)["reason"]) == ("failed", ACTIVE_SESSION)


async def test_a_send_interrupted_by_a_crash_is_recorded_as_unknown(h: Harness) -> None:
    h.ingest(MOBILE_CASE)
    [job] = h.store.claim_sends("crashed-worker", limit=1, lease_seconds=30)
    h.store.start_attempt(job.id, job.ticket_id, cooldown=600, owner="crashed-worker")
    h.store.mark_inflight(job.id, owner="crashed-worker", lease_seconds=30)
    h.sim.sessions.add("+14155550100")  # the crashed worker's request did reach CCAI
    h.clock.advance(31)
    await h.drain()
    row = h.row(MOBILE_CASE)
    assert row["status"] == "unknown"
    assert row["attempts"] == 2


async def test_429_pauses_without_counting_a_failed_attempt(h: Harness) -> None:
    h.sim.script.append({"status": 429})
    h.ingest(MOBILE_CASE)
    await h.drain(advance=2)
    row = h.row(MOBILE_CASE)
    assert (row["status"], row["attempts"]) == ("sent", 1)


async def test_a_salesforce_outage_during_write_back_never_resends_the_sms(h: Harness) -> None:
    h.gateway.write_failures.extend([SalesforceUnavailable("down")] * 2)
    h.ingest(MOBILE_CASE)
    await h.drain()
    assert h.row(MOBILE_CASE)["status"] == "sent"
    assert h.row(MOBILE_CASE)["writeback"] == "pending"
    h.gateway.write_failures.extend([SalesforceUnavailable("still down")] * 3)
    await h.drain(advance=30)
    row = h.row(MOBILE_CASE)
    assert (row["writeback"], row["writeback_task"]) == ("done", "done")
    assert len(h.sim.accepted) == 1
    assert dict(h.gateway.updates)[MOBILE_CASE]["CCAI_SMS_Status__c"] == "Sent"


async def test_a_permanent_record_error_stops_the_write_back(h: Harness) -> None:
    h.gateway.record_errors[MOBILE_CASE] = RecordResult(ok=False, error_code="INVALID_FIELD", message="No such column")
    h.ingest(MOBILE_CASE)
    await h.drain(advance=30, rounds=5)
    row = h.row(MOBILE_CASE)
    assert (row["writeback"], row["writeback_task"]) == ("failed", "done")
    assert row["writeback_error"] == "No such column"


async def test_the_loop_guard_skips_a_repeat_event_without_touching_the_case(h: Harness) -> None:
    h.ingest(MOBILE_CASE)
    await h.drain()
    h.clock.advance(60)
    h.ingest(MOBILE_CASE)  # e.g. fired by the bridge's own Case update
    await h.drain()
    skipped = h.row(MOBILE_CASE)
    assert skipped["status"] == "skipped"
    assert "less than 10 minute(s) ago" in skipped["reason"]
    assert len(h.gateway.updates) == 1
    assert len(h.sim.accepted) == 1
    assert h.gateway.reads == 1  # skipping needed no Salesforce call


async def test_after_the_cooldown_a_new_event_is_sent(h: Harness) -> None:
    h.ingest(MOBILE_CASE)
    await h.drain()
    h.clock.advance(601)
    h.sim.sessions.clear()
    h.ingest(MOBILE_CASE)
    await h.drain()
    assert len(h.sim.accepted) == 2


async def test_salesforce_outage_while_reading_is_retried_as_one_query(h: Harness) -> None:
    h.gateway.failures.append(SalesforceUnavailable("down"))
    h.ingest(MOBILE_CASE, QUEUE_CASE)
    await h.drain(advance=10)
    assert {h.row(c)["status"] for c in (MOBILE_CASE, QUEUE_CASE)} == {"sent"}
    assert h.gateway.reads == 2


async def test_a_refused_query_fails_the_sends_with_the_reason(h: Harness) -> None:
    h.gateway.failures.append(
        SalesforceRequestError("Salesforce could not read the Case: INVALID_FIELD: No such column")
    )
    h.ingest(MOBILE_CASE)
    await h.drain()
    row = h.row(MOBILE_CASE)
    assert (row["status"], row["reason"]) == (
        "failed",
        "Salesforce could not read the Case: INVALID_FIELD: No such column",
    )


async def test_a_deleted_case_fails_without_a_write_back(h: Harness) -> None:
    h.ingest("5005g00000SBX09AAH")
    await h.drain()
    row = h.row("5005g00000SBX09AAH")
    assert (row["status"], row["writeback"]) == ("failed", "none")
    assert "not found" in row["reason"]


async def test_rate_limiter_spaces_requests(anyio_backend: str) -> None:
    import time

    limiter = LocalRateLimiter(20)
    started = time.monotonic()
    for _ in range(11):
        await limiter.acquire()
    assert time.monotonic() - started >= 0.5 - 0.01


async def test_an_unexpected_error_does_not_stop_the_worker(h: Harness, caplog: pytest.LogCaptureFixture) -> None:
    import anyio

    h.gateway.failures.append(RuntimeError("a bug"))
    h.ingest(MOBILE_CASE)
    with anyio.move_on_after(1.5):
        await h.worker.run()
    assert "A worker pass failed unexpectedly" in caplog.text
    h.clock.advance(31)  # the send's lease runs out and it is taken up again
    await h.drain()
    assert h.row(MOBILE_CASE)["status"] == "sent"


async def test_stopping_finishes_requests_under_way_and_gives_back_the_rest(sqlite_store: Store, clock: Clock) -> None:
    import anyio

    started = anyio.Event()

    async def slow_ccai(request: httpx.Request) -> httpx.Response:
        started.set()
        await anyio.sleep(0.3)
        return httpx.Response(200, json={"id": 500, "status": "selecting"})

    h = make_harness(sqlite_store, clock, transport=httpx.MockTransport(slow_ccai))
    h.worker._limiter = LocalRateLimiter(2)  # one request leaves now, the next only after 0.5 s
    extra = {f"5005g00000STP{i:02d}AAA": {**CASES[MOBILE_CASE], "Id": f"5005g00000STP{i:02d}AAA"} for i in range(4)}
    h.gateway.cases.update(extra)
    h.ingest(*extra)
    async with anyio.create_task_group() as group:
        group.start_soon(h.worker.run)
        await started.wait()
        h.worker.stop()
    rows = h.store.find()
    assert sorted(r["status"] for r in rows) == ["queued", "queued", "queued", "sent"]
    assert not any(r["inflight"] or r["lease_owner"] for r in rows)
