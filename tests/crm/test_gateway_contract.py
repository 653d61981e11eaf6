"""What every CRM gateway promises the pipeline (:class:`bridge.crm.CRMGateway`), checked the same
way against the in-memory gateway the in-process tests use and against the Salesforce gateway over
TLS to the simulated org: the fake is only as good as its agreement with the real thing."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest

from bridge.crm import ChatUpdate, CRMGateway, FollowUp, Note, TicketUpdate
from bridge.sandbox.cases import sample_cases
from tests._fakes import FakeGateway
from tests._org import Org

PERSON_OWNED, QUEUE_OWNED = (c["Id"] for c in sample_cases()[:2])
MISSING = "5005g00000SBX99AAH"
FIELDS = ["Id", "CaseNumber", "ContactMobile", "ContactPhone"]
AT = dt.datetime(2026, 11, 25, 9, tzinfo=dt.UTC).timestamp()


@pytest.fixture(params=["in_memory", "salesforce"])
def gateway(request: pytest.FixtureRequest) -> Iterator[CRMGateway]:
    if request.param == "in_memory":
        yield FakeGateway(cases={c["Id"]: dict(c) for c in sample_cases()})
        return
    org: Org = request.getfixturevalue("org")
    org.sim.cases.clear()
    org.sim.add_cases(sample_cases())
    org.sim.tasks.clear()
    yield org.gateway()
    org.close_gateways()


def note(ticket_id: str, key: str, *, awaits_follow_up: bool = False) -> Note:
    return Note(
        ticket_id=ticket_id, key=key, subject="SMS sent", body="Texted.", at=AT, awaits_follow_up=awaits_follow_up
    )


def test_tickets_are_read_by_id_and_missing_ones_are_absent(gateway: CRMGateway) -> None:
    tickets = gateway.read_tickets([PERSON_OWNED, QUEUE_OWNED, MISSING, "not-an-id"], FIELDS)
    assert set(tickets) == {PERSON_OWNED, QUEUE_OWNED}
    assert tickets[PERSON_OWNED].id == PERSON_OWNED
    assert tickets[PERSON_OWNED].get("CaseNumber") is not None


def test_the_owner_is_named_only_when_a_person_owns_the_ticket(gateway: CRMGateway) -> None:
    tickets = gateway.read_tickets([PERSON_OWNED, QUEUE_OWNED], FIELDS)
    assert tickets[PERSON_OWNED].owner_email
    assert tickets[QUEUE_OWNED].owner_email is None


def test_outcomes_and_notes_are_answered_in_order_and_a_missing_ticket_fails_for_good(gateway: CRMGateway) -> None:
    updates = [
        TicketUpdate(ticket_id=PERSON_OWNED, status="sent", reason=None, chat_id="114"),
        TicketUpdate(ticket_id=MISSING, status="failed", reason="x", chat_id=None),
        TicketUpdate(ticket_id=QUEUE_OWNED, status="failed", reason="Refused.", chat_id=None),
    ]
    tickets, notes = gateway.write_outcomes(updates, [note(PERSON_OWNED, "send 1"), note(QUEUE_OWNED, "send 2")])
    assert [(r.ok, r.retryable) for r in tickets] == [(True, False), (False, False), (True, False)]
    assert tickets[1].message
    assert [r.ok for r in notes] == [True, True]
    assert all(r.ref for r in notes)  # the id each note was given, to follow it up by


def test_a_note_written_once_is_found_again_by_its_key(gateway: CRMGateway) -> None:
    _, [written] = gateway.write_outcomes([], [note(PERSON_OWNED, "send 7")])
    found = gateway.existing_notes([note(PERSON_OWNED, "send 7"), note(PERSON_OWNED, "send 8")])
    assert found == {"send 7": written.ref}


def test_chat_news_lands_and_a_note_is_followed_up_by_its_id_or_its_key(gateway: CRMGateway) -> None:
    _, [first, _] = gateway.write_outcomes(
        [], [note(PERSON_OWNED, "send 1", awaits_follow_up=True), note(QUEUE_OWNED, "send 2", awaits_follow_up=True)]
    )
    news = [
        ChatUpdate(PERSON_OWNED, "finished", "Ana Lopez", AT, "Resolved"),
        ChatUpdate(QUEUE_OWNED, "assigned", None, None, None),
    ]
    follow_ups = [
        FollowUp(ticket_id=PERSON_OWNED, key="send 1", body="Chat finished.", note_ref=first.ref),
        FollowUp(ticket_id=QUEUE_OWNED, key="send 2", body="Chat finished."),  # found by its key
        FollowUp(ticket_id=QUEUE_OWNED, key="send 3", body="Chat finished."),  # no such note
    ]
    tickets, followed = gateway.write_chats(news, follow_ups)
    assert [r.ok for r in tickets] == [True, True]
    assert [r.ok for r in followed] == [True, True, False]
    assert not followed[2].retryable


def test_api_usage_is_unknown_or_within_the_allowance(gateway: CRMGateway) -> None:
    gateway.read_tickets([PERSON_OWNED], FIELDS)
    usage = gateway.api_usage()
    assert usage is None or 0 <= usage.used <= usage.total
