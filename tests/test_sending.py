"""The send step in-process: a real store, the simulated CCAI, an in-memory CRM, a moved clock."""

from __future__ import annotations

from typing import Any

import anyio
import httpx
import pytest

from bridge.crm import Ticket, TicketUpdate
from bridge.errors import CRMRequestError, CRMUnavailable
from bridge.mapping import TicketMapper
from bridge.sandbox.ccai import ACTIVE_SESSION
from bridge.sandbox.chats import parse_lifecycle
from bridge.store import Store
from tests._ccai_errors import DOCUMENTED_ERRORS
from tests._clock import Clock
from tests._harness import CASES, MOBILE_CASE, MOBILE_NUMBER, NO_PHONE_CASE, QUEUE_CASE, Harness, make_harness
from tests._sends import depart

pytestmark = pytest.mark.anyio


@pytest.fixture
def h(sqlite_store: Store, clock: Clock) -> Harness:
    return make_harness(sqlite_store, clock)


class Faults(httpx.AsyncBaseTransport):
    """A stand-in in front of the simulated CCAI: it can lose the answer of SMS requests after CCAI
    created the chat, cut them before CCAI saw them, fail the chat list, or blow up for one ticket."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.lose_answers = 0
        self.cut_before = 0
        self.list_down = False
        self.explode_for: str | None = None
        self.paths: list[str] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.paths.append(request.url.path)
        sms = request.url.path.endswith("/sms")
        if sms and self.explode_for and self.explode_for.encode() in request.content:
            raise RuntimeError("a bug in the bridge")
        if sms and self.cut_before:
            self.cut_before -= 1
            raise httpx.ReadError("reset before CCAI acted", request=request)
        if not sms and self.list_down:
            return httpx.Response(503, text="<html>Service Unavailable</html>")
        response = await self.inner.handle_async_request(request)
        if sms and self.lose_answers:
            self.lose_answers -= 1
            raise httpx.ReadTimeout("answer lost", request=request)
        return response


def faulty(store: Store, clock: Clock, *, lookup_proven: bool = True, **settings: Any) -> tuple[Harness, Faults]:
    holder: list[Faults] = []

    def wrap(inner: httpx.AsyncBaseTransport) -> httpx.AsyncBaseTransport:
        holder.append(Faults(inner))
        return holder[0]

    return make_harness(store, clock, wrap=wrap, lookup_proven=lookup_proven, **settings), holder[0]


async def test_three_cases_give_two_sms_and_three_ticket_updates(h: Harness) -> None:
    h.ingest(MOBILE_CASE, QUEUE_CASE, NO_PHONE_CASE)
    await h.drain()
    sent = {s["ticket_id"]: s for s in h.sim.accepted}
    assert set(sent) == {MOBILE_CASE, QUEUE_CASE}
    assert sent[MOBILE_CASE]["end_user_number"] == MOBILE_NUMBER
    assert sent[MOBILE_CASE]["agentEmail"] == "ana@example.com"
    assert sent[QUEUE_CASE]["end_user_number"] == "+12125550142"
    assert "agentEmail" not in sent[QUEUE_CASE]
    # The Case's template trigger is emptied with the outcome of the request the CRM's rule made.
    assert h.gateway.latest(MOBILE_CASE) == TicketUpdate(
        ticket_id=MOBILE_CASE,
        status="sent",
        reason=None,
        chat_id=str(sent[MOBILE_CASE]["chat_id"]),
        clear=("CCAI_SMS_Template__c",),
    )
    assert h.gateway.latest(QUEUE_CASE).status == "sent"
    assert h.gateway.latest(NO_PHONE_CASE).status == "skipped"
    assert "no phone number" in (h.gateway.latest(NO_PHONE_CASE).reason or "")
    assert h.gateway.reads == 1  # one query for the batch
    notes = {n.ticket_id: n for n in h.gateway.notes}
    assert sent[MOBILE_CASE]["message"] in notes[MOBILE_CASE].body


async def test_the_casenumber_read_for_a_send_is_noted_for_people_to_find_it(h: Harness) -> None:
    h.gateway.cases[MOBILE_CASE]["CaseNumber"] = "00001026"
    h.ingest(MOBILE_CASE, NO_PHONE_CASE)
    await h.drain()
    by_ticket = {s.ticket_id: s for s in h.store.history.find()}
    assert by_ticket[MOBILE_CASE].ticket_number == "00001026"  # sent
    assert by_ticket[NO_PHONE_CASE].ticket_number == "00001003"  # skipped: no phone number
    assert [s.id for s in h.store.history.find(ticket_number="1026")] == [by_ticket[MOBILE_CASE].id]


@pytest.mark.parametrize("message", DOCUMENTED_ERRORS)
async def test_a_documented_ccai_error_fails_the_send_once_with_its_message(h: Harness, message: str) -> None:
    h.sim.script.append({"status": 400, "message": message})
    h.ingest(MOBILE_CASE)
    await h.drain(advance=120, rounds=5)
    row = h.row(MOBILE_CASE)
    assert (row.status, row.reason, row.attempts) == ("failed", message, 1)
    assert (h.gateway.latest(MOBILE_CASE).status, h.gateway.latest(MOBILE_CASE).reason) == ("failed", message)
    assert h.sim.accepted == []


async def test_server_errors_are_retried_with_backoff_then_sent(h: Harness) -> None:
    h.sim.script.extend([{"status": 503}, {"status": 500}])
    h.ingest(MOBILE_CASE)
    await h.drain()
    assert h.row(MOBILE_CASE).status == "queued"  # waiting for its backoff
    await h.drain(advance=15)
    row = h.row(MOBILE_CASE)
    assert (row.status, row.attempts) == ("sent", 3)
    assert len(h.sim.accepted) == 1


async def test_retries_stop_after_the_bounded_time_with_a_clear_reason(sqlite_store: Store, clock: Clock) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    h = make_harness(sqlite_store, clock, transport=httpx.MockTransport(refuse), ccai_retry_for_seconds=60)
    h.ingest(MOBILE_CASE)
    await h.drain(advance=15, rounds=40)
    row = h.row(MOBILE_CASE)
    assert row.status == "failed"
    assert (row.reason or "").startswith("Gave up after trying for 1 minute(s): Could not connect to CCAI Platform")
    assert 3 <= row.attempts <= 10
    assert h.gateway.latest(MOBILE_CASE).status == "failed"


async def test_server_errors_until_the_deadline_give_up_as_failed_once_the_lookup_shows_nothing(
    sqlite_store: Store, clock: Clock
) -> None:
    h = make_harness(sqlite_store, clock, ccai_retry_for_seconds=60)
    h.sim.script.extend([{"status": 503}] * 50)
    h.ingest(MOBILE_CASE)
    await h.drain(advance=15, rounds=40)
    row = h.row(MOBILE_CASE)
    assert row.status == "failed"
    assert "HTTP 503" in (row.reason or "") or "never created" in (row.reason or "")
    assert "may have reached" not in (row.reason or "")
    assert not row.may_have_sent


async def test_a_lost_answer_is_looked_up_not_sent_again(sqlite_store: Store, clock: Clock) -> None:
    """A9: the first request reaches CCAI but the answer is lost; the chat list has the chat."""
    h, faults = faulty(sqlite_store, clock)
    faults.lose_answers = 1
    h.ingest(MOBILE_CASE)
    await h.drain(advance=15)
    row = h.row(MOBILE_CASE)
    assert (row.status, row.chat_id) == ("sent", str(h.sim.accepted[0]["chat_id"]))
    assert len(h.sim.accepted) == 1
    assert row.attempts == 1  # looked up, never posted again
    assert h.lookups("found") == 1
    assert h.gateway.latest(MOBILE_CASE).chat_id == row.chat_id


async def test_with_resend_never_a_lost_answer_is_left_to_an_operator(sqlite_store: Store, clock: Clock) -> None:
    h, faults = faulty(sqlite_store, clock, bridge_resend_possibly_delivered="never")
    faults.lose_answers = 1
    h.ingest(MOBILE_CASE)
    await h.drain(advance=15)
    row = h.row(MOBILE_CASE)
    assert row.status == "unknown"
    assert "BRIDGE_RESEND_POSSIBLY_DELIVERED=never" in (row.reason or "")
    assert len(h.sim.accepted) == 1
    assert h.gateway.latest(MOBILE_CASE).status == "unknown"


async def test_a_lost_answer_whose_chat_is_not_in_the_list_is_sent(sqlite_store: Store, clock: Clock) -> None:
    """The request died before CCAI created anything: the lookup finds nothing, so it is sent."""
    h, faults = faulty(sqlite_store, clock)
    faults.cut_before = 1
    h.ingest(MOBILE_CASE)
    await h.drain(advance=15)
    row = h.row(MOBILE_CASE)
    assert (row.status, row.attempts, row.may_have_sent) == ("sent", 2, False)
    assert len(h.sim.accepted) == 1
    assert h.lookups("not_found") == 1
    assert faults.paths.index("/manager/api/v1/chats") < len(faults.paths) - 1  # looked up before the resend


async def test_a_failing_lookup_is_retried_and_never_answered_by_sending(sqlite_store: Store, clock: Clock) -> None:
    h, faults = faulty(sqlite_store, clock)
    faults.lose_answers = 1
    faults.list_down = True
    h.ingest(MOBILE_CASE)
    await h.drain(advance=15, rounds=8)
    assert len(h.sim.accepted) == 1
    assert (h.row(MOBILE_CASE).status, h.row(MOBILE_CASE).may_have_sent) == ("queued", True)
    assert h.row(MOBILE_CASE).attempts == 1
    faults.list_down = False
    await h.drain(advance=15)
    assert (h.row(MOBILE_CASE).status, len(h.sim.accepted)) == ("sent", 1)


async def test_active_session_on_a_first_attempt_is_a_plain_failure_naming_the_known_chat(h: Harness) -> None:
    h.ingest(MOBILE_CASE, origin="person")
    await h.drain()
    first_chat = h.row(MOBILE_CASE).chat_id
    h.ingest(MOBILE_CASE, origin="person")  # the agent clicks again during the live chat
    await h.drain()
    row = h.row(MOBILE_CASE)
    assert row.status == "failed"
    assert (row.reason or "").startswith(ACTIVE_SESSION)
    assert f"chat {first_chat}" in (row.reason or "")
    # A10: the refusal does not erase the chat id the success wrote to the ticket.
    assert (h.gateway.latest(MOBILE_CASE).status, h.gateway.latest(MOBILE_CASE).chat_id) == ("failed", first_chat)


async def test_a_send_interrupted_by_a_crash_is_looked_up_then_recorded(h: Harness) -> None:
    h.ingest(MOBILE_CASE)
    [job] = h.store.sends.claim("crashed-worker", limit=1, lease_seconds=30)
    h.store.sends.start_attempt(job.id, job.ticket_id, token=job.token, cooldown=600)
    depart(h.store, job.id, token=job.token, lease_seconds=30)
    h.sim.sessions.add(MOBILE_NUMBER)  # the crashed worker's request did reach CCAI (no chat listed)
    h.clock.advance(31)
    await h.drain(advance=5)  # taken over, it waits for the crashed worker's request to settle, then is looked up
    row = h.row(MOBILE_CASE)
    assert row.status == "unknown"
    assert row.attempts == 2


async def test_429_pauses_without_counting_a_failed_attempt(h: Harness) -> None:
    h.sim.script.append({"status": 429})
    h.ingest(MOBILE_CASE)
    await h.drain(advance=2)
    row = h.row(MOBILE_CASE)
    assert (row.status, row.attempts) == ("sent", 1)


async def test_a_crm_outage_while_reading_is_retried_as_one_query(h: Harness) -> None:
    h.gateway.failures.append(CRMUnavailable("down"))
    h.ingest(MOBILE_CASE, QUEUE_CASE)
    await h.drain(advance=10)
    assert {h.row(c).status for c in (MOBILE_CASE, QUEUE_CASE)} == {"sent"}
    assert h.gateway.reads == 2


async def test_a_refused_query_fails_the_sends_with_the_reason(h: Harness) -> None:
    h.gateway.failures.append(CRMRequestError("Salesforce could not read the Case: INVALID_FIELD: No such column"))
    h.ingest(MOBILE_CASE)
    await h.drain()
    row = h.row(MOBILE_CASE)
    assert (row.status, row.reason) == ("failed", "Salesforce could not read the Case: INVALID_FIELD: No such column")


async def test_a_deleted_case_fails_without_a_write_back(h: Harness) -> None:
    h.ingest("5005g00000SBX09AAH")
    await h.drain()
    row = h.row("5005g00000SBX09AAH")
    assert (row.status, row.writeback) == ("failed", "none")
    assert "not found" in (row.reason or "")


async def test_the_loop_guard_suppresses_a_repeat_event_without_touching_the_ticket(h: Harness) -> None:
    h.ingest(MOBILE_CASE)
    await h.drain()
    h.clock.advance(60)
    h.ingest(MOBILE_CASE)  # e.g. fired by the bridge's own Case update
    await h.drain()
    suppressed = h.row(MOBILE_CASE)
    assert suppressed.status == "suppressed"
    assert "less than 10 minute(s) ago" in (suppressed.reason or "")
    assert len(h.gateway.updates) == 1
    assert len(h.sim.accepted) == 1
    assert h.gateway.reads == 1  # suppressing needed no CRM call


async def test_the_loop_guard_holds_through_a_long_ccai_outage(sqlite_store: Store, clock: Clock) -> None:
    """A2: CCAI answers 503 for longer than the cooldown; the eventual update's echo is suppressed."""
    h = make_harness(sqlite_store, clock, ccai_retry_for_seconds=3600)
    h.sim.script.extend([{"status": 503}] * 6)
    h.ingest(MOBILE_CASE)
    for _ in range(60):  # about 15 minutes of retries, then sent and written back
        await h.worker.run_once()
        if h.row(MOBILE_CASE).writeback == "done":
            break
        h.clock.advance(60)
    first = h.row(MOBILE_CASE)
    assert first.status == "sent"
    assert first.first_attempt_at is not None
    assert h.clock.now - first.first_attempt_at > 600
    h.clock.advance(30)
    h.sim.sessions.clear()  # the customer's chat has ended: only the guard stands in the way
    h.ingest(MOBILE_CASE)  # the echo of the bridge's Case update
    await h.drain()
    assert h.row(MOBILE_CASE).status == "suppressed"
    assert len(h.sim.accepted) == 1


async def test_after_the_cooldown_a_new_event_is_sent(h: Harness) -> None:
    h.ingest(MOBILE_CASE)
    await h.drain()
    h.clock.advance(601)
    h.sim.sessions.clear()
    h.ingest(MOBILE_CASE)
    await h.drain()
    assert len(h.sim.accepted) == 2


async def test_one_crashing_send_does_not_cancel_the_others(sqlite_store: Store, clock: Clock) -> None:
    """B3: an unexpected error in one send fails it alone; the batch's other SMS are sent and recorded."""
    h, faults = faulty(sqlite_store, clock)
    faults.explode_for = QUEUE_CASE
    h.ingest(MOBILE_CASE, QUEUE_CASE)
    await h.drain()
    assert h.row(MOBILE_CASE).status == "sent"
    crashed = h.row(QUEUE_CASE)
    # It blew up after being marked in flight: it is not known whether CCAI got it.
    assert crashed.status == "unknown"
    assert "internal error" in (crashed.reason or "")


async def test_a_runaway_send_is_stopped_after_too_many_takeovers(h: Harness) -> None:
    h.ingest(MOBILE_CASE)
    for _ in range(4):  # its workers keep dying mid-request
        [job] = h.store.sends.claim("doomed", limit=1, lease_seconds=30)
        depart(h.store, job.id, token=job.token, lease_seconds=30)
        h.clock.advance(31)
        assert h.store.sends.claim("doomed", limit=1, lease_seconds=30) == []  # taken over
    await h.drain()
    row = h.row(MOBILE_CASE)
    assert row.status == "unknown"  # a request may have left: never a status that invites a plain retry
    assert "taken over 4 times" in (row.reason or "")
    assert h.sim.accepted == []
    assert job.takeovers == 3


async def test_workers_dying_before_anything_left_never_stop_a_send(h: Harness) -> None:
    """R13: a crash loop kills worker after worker while they hold a batch, before any request left.
    Those sends were never attempted; the cap on takeovers must not fail them."""
    h.ingest(MOBILE_CASE)
    for _ in range(6):
        assert h.store.sends.claim("doomed", limit=1, lease_seconds=30)
        h.clock.advance(31)
    await h.drain()
    row = h.row(MOBILE_CASE)
    assert (row.status, row.attempts) == ("sent", 1)


async def test_stopping_finishes_requests_under_way_and_gives_back_the_rest(sqlite_store: Store, clock: Clock) -> None:
    started = anyio.Event()

    async def slow_ccai(request: httpx.Request) -> httpx.Response:
        started.set()
        await anyio.sleep(0.3)
        return httpx.Response(200, json={"id": 500, "status": "selecting"})

    from bridge.ccai.pacing import LocalRateLimiter

    h = make_harness(
        sqlite_store,
        clock,
        transport=httpx.MockTransport(slow_ccai),
        limiter=LocalRateLimiter(2),  # one request leaves now, the next only after 0.5 s
    )
    extra = {f"5005g00000STP{i:02d}AAA": {**CASES[MOBILE_CASE], "Id": f"5005g00000STP{i:02d}AAA"} for i in range(4)}
    h.gateway.cases.update(extra)
    h.ingest(*extra)
    async with anyio.create_task_group() as group:
        group.start_soon(h.worker.run)
        await started.wait()
        h.worker.stop()
    records = h.store.history.find()
    assert sorted(r.status for r in records) == ["queued", "queued", "queued", "sent"]
    assert not any(r.status == "sending" for r in records)


async def test_an_unexpected_error_in_one_send_leaves_the_rest_of_its_batch_alone(
    h: Harness, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Before, it failed the whole pass: every send of the batch waited out its lease, was taken over,
    and after a few rounds all were finished as if their workers had died."""
    map_ticket = TicketMapper.map

    def broken_for_one(self: TicketMapper, ticket: Ticket, overrides: Any) -> Any:
        if ticket.id == MOBILE_CASE:
            raise RuntimeError("a bug")
        return map_ticket(self, ticket, overrides)

    monkeypatch.setattr(TicketMapper, "map", broken_for_one)
    h.ingest(MOBILE_CASE, QUEUE_CASE)
    await h.drain()
    assert (h.row(MOBILE_CASE).status, h.row(QUEUE_CASE).status) == ("failed", "sent")
    assert h.row(MOBILE_CASE).reason == "The bridge hit an internal error while sending (see its log)."
    assert "A worker pass failed unexpectedly" not in caplog.text


async def test_an_event_from_any_crm_door_gets_the_loop_guard(h: Harness) -> None:
    """The guard is for what the CRM fires, whichever door it came through (a Pub/Sub event, a
    Zendesk trigger), not only Salesforce's outbound message."""
    h.ingest(MOBILE_CASE, source="salesforce_pubsub")
    await h.drain()
    h.clock.advance(60)
    h.ingest(MOBILE_CASE, source="salesforce_pubsub")  # the echo of the bridge's own Case update
    await h.drain()
    assert h.row(MOBILE_CASE).status == "suppressed"
    assert len(h.sim.accepted) == 1
    assert len(h.sim.request_times) == 1  # the echo never reached CCAI


# -- the lost-answer lookup matches on everything the bridge knows (R3), and proves itself first ----


def quick_chats(h: Harness) -> None:
    """Chats end a second after they start, so CCAI's active-session check cannot hide a second SMS."""
    h.sim.chats.lifecycle = parse_lifecycle("selecting@0,finished@1")


async def test_two_unanswered_sends_of_one_case_never_take_each_others_chat(h: Harness) -> None:
    """R3(a): send A's 504 created nothing, send B's 504 came after CCAI created B's chat. A was looked
    up first and took B's chat, then B found its chat taken and texted again."""
    quick_chats(h)
    h.sim.script.extend([{"status": 504}, {"action": "create_then_status", "status": 504}])
    [a] = h.ingest(MOBILE_CASE, origin="person")
    await h.drain()
    h.ingest(MOBILE_CASE, origin="person")
    await h.drain()
    assert len(h.sim.accepted) == 1
    await h.drain(advance=15)
    assert len(h.sim.accepted) == 1  # never texted twice
    rows = {r.id: r for r in h.store.history.find(ticket_id=MOBILE_CASE, limit=5)}
    assert rows[a].status != "sent"  # A's text never left: it must not claim B's chat
    assert rows[a].status == "unknown"
    assert "another unanswered send" in (rows[a].reason or "")


async def test_another_integrations_earlier_chat_for_the_case_is_not_taken_for_the_lost_attempt(h: Harness) -> None:
    """R3(b): a chat for the same Case created a minute before by another client of the tenant (CCAI's
    own CRM adapter) was recorded as "Sent" for a request that created nothing."""
    quick_chats(h)
    h.sim.create_chat({**{"chat_type": "SMS", "outbound_number": "+16285550199"}, "ticket_id": MOBILE_CASE}, "+1999")
    h.clock.advance(60)
    h.sim.script.append({"status": 504})
    h.ingest(MOBILE_CASE, origin="person")
    await h.drain(advance=15)
    row = h.row(MOBILE_CASE)
    assert row.status == "unknown"
    assert "another integration" in (row.reason or "")
    assert len(h.sim.accepted) == 1  # only the other integration's


async def test_before_the_lookup_is_proven_a_lost_answer_ends_unknown(sqlite_store: Store, clock: Clock) -> None:
    """Issue 20 item 5: nothing found, but the tenant never showed that its list carries our ticket id."""
    h, faults = faulty(sqlite_store, clock, lookup_proven=False)
    faults.cut_before = 1
    h.ingest(MOBILE_CASE)
    await h.drain(advance=15)
    row = h.row(MOBILE_CASE)
    assert (row.status, row.attempts) == ("unknown", 1)
    assert "has not shown that its chat list carries our ticket id" in (row.reason or "")
    assert h.sim.accepted == []


async def test_a_send_cleared_after_its_slot_passed_takes_the_next_slot(store: Store, clock: Clock) -> None:
    """The store's go-ahead came back after the slot had passed (a busy host, a slow database):
    leaving then would crowd the requests after it, so the send takes the next slot, and the
    pacing hears when it actually left."""
    from bridge.ccai.pacing import LocalRateLimiter, Slot

    class LateFirst(LocalRateLimiter):
        def __init__(self) -> None:
            super().__init__(1000)
            self.slots: list[Slot] = []
            self.departures: list[Slot] = []

        async def acquire(self, *, lead: float = 0.0) -> Slot:
            slot = await super().acquire(lead=lead)
            if not self.slots:  # the first slot is long gone by the time the go-ahead comes
                slot = Slot(slot.not_before - 10, slot.counted_until - 10, slot.until - 10, key=slot.key)
            self.slots.append(slot)
            return slot

        async def departed(self, slot: Slot, at: float) -> None:
            self.departures.append(slot)
            await super().departed(slot, at)

    limiter = LateFirst()
    h = make_harness(store, clock, limiter=limiter)
    h.ingest(MOBILE_CASE)
    await h.drain()
    assert h.row(MOBILE_CASE).status == "sent"
    assert len(h.sim.request_times) == 1
    # The missed slot, then the one it left on (later ones: the chat sync's reads).
    assert limiter.slots[1] in limiter.departures
    assert limiter.slots[0] not in limiter.departures
