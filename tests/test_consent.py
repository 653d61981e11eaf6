"""Texting only when it is allowed: every consent source blocks before CCAI, on SQLite and
PostgreSQL; held sends go out when the recipient's window opens, not before (an injected clock)."""

from __future__ import annotations

import datetime as dt

import pytest

from bridge.ccai.pacing import Slot
from bridge.consent import Allow, Block, Hold, decide
from bridge.crm import Ticket
from bridge.crm.salesforce import plugin as salesforce
from bridge.model import OptOut
from bridge.ops.retries import retry
from bridge.send_window import WindowRules, parse_window
from bridge.store import Store
from tests._clock import Clock
from tests._harness import MOBILE_CASE, MOBILE_NUMBER, QUEUE_CASE, Harness, make_harness

pytestmark = pytest.mark.anyio

LA_NUMBER = MOBILE_NUMBER  # 415: San Francisco, America/Los_Angeles
RULES = WindowRules(default=parse_window("08:00-21:00"), states={"FL": parse_window("08:00-20:00")})
TICKET = Ticket(id=MOBILE_CASE, fields={})

WORDS = salesforce.words


def at(text: str) -> float:
    """An instant given in UTC, e.g. "2026-11-25 15:00"."""
    return dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC).timestamp()


def check(ticket: Ticket = TICKET, number: str = LA_NUMBER, *, now: float, **kwargs: object) -> object:
    values: dict[str, object] = {
        "block_if_true": ("Contact.DoNotCall",),
        "opted_out": None,
        "rules": RULES,
        "words": salesforce.words,
    }
    values.update(kwargs)
    return decide(ticket, number, now=now, **values)  # type: ignore[arg-type]


# -- the decision -------------------------------------------------------------------------------


def test_do_not_call_blocks_with_a_reason_the_agent_understands() -> None:
    verdict = check(Ticket(id=MOBILE_CASE, fields={"Contact.DoNotCall": True}), now=at("2026-11-25 20:00"))
    assert verdict == Block("opted_out", "Not sent: the Contact is marked Do Not Call.")


def test_any_configured_field_blocks_and_an_empty_one_does_not() -> None:
    ticket = Ticket(id=MOBILE_CASE, fields={"Contact.SMS_Opt_Out__c": "true", "Contact.DoNotCall": None})
    verdict = check(ticket, now=at("2026-11-25 20:00"), block_if_true=("Contact.DoNotCall", "Contact.SMS_Opt_Out__c"))
    assert verdict == Block("opted_out", "Not sent: the Case field Contact.SMS_Opt_Out__c is true.")
    assert check(Ticket(id=MOBILE_CASE, fields={"Contact.DoNotCall": False}), now=at("2026-11-25 20:00")) == Allow()


def test_the_opt_out_list_blocks_and_says_since_when_and_why() -> None:
    entry = OptOut(number=LA_NUMBER, source="agent", note="said stop", created_at=at("2026-11-02 10:00"))
    verdict = check(now=at("2026-11-25 20:00"), opted_out=entry)
    assert verdict == Block(
        "opted_out", "Not sent: the number is on the opt-out list since 2026-11-02 (agent: said stop).", from_list=True
    )


@pytest.mark.parametrize(
    ("utc", "open_now"),
    [
        ("2026-11-25 16:00", True),  # 08:00 in Los Angeles: the window's first minute
        ("2026-11-25 15:59", False),  # 07:59 there
        ("2026-11-26 04:59", True),  # 20:59
        ("2026-11-26 05:00", False),  # 21:00: the end is not inside
        ("2026-11-26 11:00", False),  # 03:00
    ],
)
def test_the_window_is_the_recipients_local_time(utc: str, open_now: bool) -> None:
    verdict = check(now=at(utc))
    if open_now:
        assert verdict == Allow()
        return
    assert isinstance(verdict, Hold)
    assert verdict.reason == "Scheduled for 08:00 America/Los_Angeles (send window 08:00-21:00)"
    assert dt.datetime.fromtimestamp(verdict.until, tz=dt.UTC).strftime("%H:%M") == "16:00"


def test_a_stricter_state_window_applies_to_that_states_numbers() -> None:
    miami = "+13055550123"
    assert isinstance(check(number=miami, now=at("2026-11-26 00:30")), Allow)  # 19:30 in Miami
    held = check(number=miami, now=at("2026-11-26 01:30"))  # 20:30: closed in Florida, open elsewhere
    assert isinstance(held, Hold)
    assert "send window 08:00-20:00" in held.reason


def test_a_window_across_midnight() -> None:
    night_shift = WindowRules(default=parse_window("21:00-06:00"), states={})
    assert isinstance(check(now=at("2026-11-26 07:00"), rules=night_shift), Allow)  # 23:00 in LA
    assert isinstance(check(now=at("2026-11-26 13:30"), rules=night_shift), Allow)  # 05:30 in LA
    assert isinstance(check(now=at("2026-11-25 20:00"), rules=night_shift), Hold)  # noon in LA


def test_a_number_whose_area_code_spans_two_zones_waits_for_both() -> None:
    boise = "+12085550123"  # 208: America/Boise and America/Los_Angeles
    held = check(number=boise, now=at("2026-11-25 15:30"))  # 08:30 in Boise, 07:30 in Los Angeles
    assert isinstance(held, Hold)
    assert held.reason == "Scheduled for 08:00 America/Los_Angeles (send window 08:00-21:00)"


def test_a_time_zone_field_on_the_case_wins_over_the_area_code() -> None:
    rules = WindowRules(default=parse_window("08:00-21:00"), states={}, timezone_field="Contact.Time_Zone__c")
    ticket = Ticket(id=MOBILE_CASE, fields={"Contact.Time_Zone__c": "America/New_York"})
    assert isinstance(check(ticket, now=at("2026-11-25 13:30"), rules=rules), Allow)  # 08:30 in New York


def test_an_agent_may_ignore_the_window_but_never_consent() -> None:
    assert check(now=at("2026-11-26 11:00"), ignore_window=True) == Allow(window_ignored=True)
    blocked = check(
        Ticket(id=MOBILE_CASE, fields={"Contact.DoNotCall": True}), now=at("2026-11-26 11:00"), ignore_window=True
    )
    assert isinstance(blocked, Block)


def test_off_disables_the_window() -> None:
    assert check(now=at("2026-11-26 11:00"), rules=WindowRules(default=None, states={})) == Allow()


# -- through the worker, on both databases ---------------------------------------------------------


@pytest.fixture
def night(store: Store, clock: Clock) -> Harness:
    """03:00 in Los Angeles, with the default window."""
    clock.now = at("2026-11-26 11:00")
    return make_harness(store, clock, bridge_send_window="08:00-21:00")


async def test_do_not_call_blocks_before_ccai_and_says_so_on_the_case(store: Store, clock: Clock) -> None:
    h = make_harness(store, clock)
    h.gateway.cases[MOBILE_CASE]["Contact.DoNotCall"] = True
    h.ingest(MOBILE_CASE)
    await h.drain()
    row = h.row(MOBILE_CASE)
    assert (row.status, row.reason) == ("opted_out", "Not sent: the Contact is marked Do Not Call.")
    assert h.sim.request_times == []  # CCAI was never called
    assert (h.gateway.latest(MOBILE_CASE).status, h.gateway.latest(MOBILE_CASE).opted_out) == ("opted_out", False)


async def test_an_opt_out_blocks_every_case_with_the_number_in_any_format(store: Store, clock: Clock) -> None:
    h = make_harness(store, clock)
    store.opt_outs.add(MOBILE_NUMBER, source="agent", note="said stop")
    h.gateway.cases[QUEUE_CASE]["ContactPhone"] = "(415) 555-0100"  # the same number, written another way
    h.ingest(MOBILE_CASE, QUEUE_CASE)
    await h.drain()
    for case in (MOBILE_CASE, QUEUE_CASE):
        assert h.row(case).status == "opted_out"
        assert "opt-out list since" in (h.row(case).reason or "")
    assert h.sim.accepted == []


async def test_ccai_refusing_an_opted_out_consumer_teaches_the_list(store: Store, clock: Clock) -> None:
    h = make_harness(store, clock)
    h.sim.script.append({"status": 400, "message": "Outbound SMS failed. Consumer has opted out of SMS."})
    h.ingest(MOBILE_CASE)
    await h.drain(advance=60, rounds=5)
    row = h.row(MOBILE_CASE)
    assert (row.status, row.attempts) == ("opted_out", 1)  # not failed, not retried
    entry = store.opt_outs.get(MOBILE_NUMBER)
    assert entry is not None
    assert entry.source == "ccai"
    assert h.gateway.latest(MOBILE_CASE).opted_out  # recorded on the Contact when configured
    h.gateway.cases[QUEUE_CASE]["ContactPhone"] = "415.555.0100"
    h.ingest(QUEUE_CASE)
    await h.drain()
    assert h.row(QUEUE_CASE).status == "opted_out"
    assert len(h.sim.request_times) == 1


async def test_a_send_outside_the_window_is_held_then_sent_when_it_opens(night: Harness, clock: Clock) -> None:
    h = night
    h.ingest(MOBILE_CASE)
    await h.drain()
    held = h.row(MOBILE_CASE)
    assert held.status == "scheduled"
    assert held.reason == "Scheduled for 08:00 America/Los_Angeles (send window 08:00-21:00)"
    assert held.not_before == at("2026-11-26 16:00")
    assert h.gateway.latest(MOBILE_CASE).status == "scheduled"  # the Case says when it will go
    assert h.sim.request_times == []
    clock.now = at("2026-11-26 15:59")
    await h.drain()
    assert (h.row(MOBILE_CASE).status, h.sim.request_times) == ("scheduled", [])  # not a minute early
    clock.now = at("2026-11-26 16:00")
    await h.drain()
    assert h.row(MOBILE_CASE).status == "sent"
    assert len(h.sim.accepted) == 1
    assert h.gateway.latest(MOBILE_CASE).status == "sent"


async def test_a_held_send_checks_consent_again_when_released(night: Harness, clock: Clock) -> None:
    h = night
    h.ingest(MOBILE_CASE)
    await h.drain()
    h.store.opt_outs.add(MOBILE_NUMBER, source="flow", note="replied STOP at 06:00")
    clock.now = at("2026-11-26 16:00")
    await h.drain()
    assert h.row(MOBILE_CASE).status == "opted_out"
    assert h.sim.accepted == []


def test_orlando_at_half_past_eight_in_july_is_outside_floridas_window() -> None:
    """689 overlays Orlando's 407 (Eastern): 20:30 there is past Florida's 20:00 close."""
    verdict = check(Ticket(id=MOBILE_CASE, fields={}), "+16892000100", now=at("2026-07-02 00:30"))
    assert isinstance(verdict, Hold)


async def test_the_window_is_checked_again_when_the_request_leaves(store: Store, clock: Clock) -> None:
    """Checked at 20:59:50 in Los Angeles, the send waited 20 s for a CCAI slot (a 429 pauses every
    worker for up to minutes): by then the window had closed, so it is held, not sent."""
    clock.now = at("2026-11-27 04:59:50")
    h = make_harness(store, clock, bridge_send_window="08:00-21:00")
    wait_for_slot = h.ccai.wait_for_slot

    async def slow_slot(*, lead: float = 0.0) -> Slot:
        clock.advance(20)
        return await wait_for_slot(lead=lead)

    h.ccai.wait_for_slot = slow_slot  # type: ignore[method-assign]
    h.ingest(MOBILE_CASE)
    await h.drain()
    row = h.row(MOBILE_CASE)
    assert (row.status, row.not_before) == ("scheduled", at("2026-11-27 16:00"))
    assert h.sim.request_times == []


async def test_an_opt_out_recorded_while_a_send_waits_for_its_slot_stops_it(store: Store, clock: Clock) -> None:
    h = make_harness(store, clock)
    wait_for_slot = h.ccai.wait_for_slot

    async def slot_after_a_stop(*, lead: float = 0.0) -> Slot:
        store.opt_outs.add(MOBILE_NUMBER, source="flow", note="replied STOP")
        return await wait_for_slot(lead=lead)

    h.ccai.wait_for_slot = slot_after_a_stop  # type: ignore[method-assign]
    h.ingest(MOBILE_CASE)
    await h.drain()
    assert h.row(MOBILE_CASE).status == "opted_out"
    assert h.sim.request_times == []


async def test_an_operator_retry_is_subject_to_the_window_the_agent_ignored(night: Harness, clock: Clock) -> None:
    """The agent's "ignore the window" was for that moment (a customer who had just written); an
    operator's retry at 03:00 the customer's time must wait for the window like any other send."""
    h = night
    h.sim.script.append({"status": 400, "message": "Outbound SMS failed. Invalid outbound number."})
    [send_id] = h.ingest(MOBILE_CASE, origin="person", send_window="ignore")
    await h.drain()
    assert h.row(MOBILE_CASE).status == "failed"
    assert retry(h.store, send_id, force=False, words=WORDS).queued
    await h.drain()
    assert h.row(MOBILE_CASE).status == "scheduled"
    assert len(h.sim.request_times) == 1


async def test_an_echo_of_the_scheduled_update_is_suppressed(night: Harness, clock: Clock) -> None:
    h = night
    h.ingest(MOBILE_CASE)
    await h.drain()
    h.ingest(MOBILE_CASE)  # the "Scheduled" Case update fires the rule again
    await h.drain()
    assert h.row(MOBILE_CASE).status == "suppressed"
    clock.now = at("2026-11-26 16:00")
    await h.drain()
    assert len(h.sim.accepted) == 1


async def test_an_agent_send_may_ignore_the_window(night: Harness) -> None:
    h = night
    h.ingest(MOBILE_CASE, origin="person", send_window="ignore")
    await h.drain()
    assert h.row(MOBILE_CASE).status == "sent"
    h.ingest(QUEUE_CASE, origin="crm_event", send_window="ignore")  # an event cannot
    await h.drain()
    assert h.row(QUEUE_CASE).status == "scheduled"


async def test_an_event_from_any_crm_door_cannot_ignore_the_window(night: Harness) -> None:
    h = night
    h.ingest(QUEUE_CASE, source="salesforce_pubsub", send_window="ignore")
    await h.drain()
    assert h.row(QUEUE_CASE).status == "scheduled"
    assert h.sim.request_times == []


async def test_a_message_over_the_segment_limit_is_refused_before_ccai(store: Store, clock: Clock) -> None:
    h = make_harness(store, clock)
    h.ingest(MOBILE_CASE, origin="person", message="Bonjour 🙂 " * 70)  # 699 characters once trimmed, UCS-2
    await h.drain()
    row = h.row(MOBILE_CASE)
    assert row.status == "failed"
    assert "699 characters in UCS-2 is 12 SMS segments; the limit is 10." in (row.reason or "")
    assert h.sim.request_times == []


async def test_the_segment_count_is_recorded_on_the_send(store: Store, clock: Clock) -> None:
    h = make_harness(store, clock)
    h.ingest(MOBILE_CASE, origin="person", message="x" * 161)
    await h.drain()
    assert (h.row(MOBILE_CASE).status, h.row(MOBILE_CASE).segments) == ("sent", 2)
