"""What every CRM gateway promises the pipeline (:class:`bridge.crm.CRMGateway`), checked the same
way against the in-memory gateway the in-process tests use, the Salesforce gateway over TLS to the
simulated org and the Zendesk gateway over TLS to the simulated account: the fake is only as good as
its agreement with the real thing, and a second CRM keeps every promise the first one does."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from bridge.crm import ChatUpdate, CRMGateway, FollowUp, Note, TicketUpdate
from bridge.sandbox.cases import sample_cases
from tests._fakes import FakeGateway
from tests._org import Org
from tests._zendesk import Account

AT = dt.datetime(2026, 11, 25, 9, tzinfo=dt.UTC).timestamp()


@dataclass(frozen=True)
class Samples:
    """A CRM's sample tickets: one a person owns, one nobody does (a queue, a group), one that does not exist."""

    person_owned: str
    queue_owned: str
    missing: str
    fields: tuple[str, ...]  # fields every sample ticket has


PERSON_OWNED, QUEUE_OWNED = (str(c["Id"]) for c in sample_cases()[:2])
SALESFORCE = Samples(PERSON_OWNED, QUEUE_OWNED, "5005g00000SBX99AAH", ("Id", "CaseNumber", "ContactMobile"))
ZENDESK = Samples("1001", "1002", "9999", ("id", "subject", "requester.phone"))


@dataclass(frozen=True)
class Crm:
    gateway: CRMGateway
    samples: Samples


@pytest.fixture(params=["in_memory", "salesforce", "zendesk"])
def crm(request: pytest.FixtureRequest) -> Iterator[Crm]:
    if request.param == "in_memory":
        yield Crm(FakeGateway(cases={c["Id"]: dict(c) for c in sample_cases()}), SALESFORCE)
        return
    if request.param == "zendesk":
        account: Account = request.getfixturevalue("account")
        account.reset()
        yield Crm(account.gateway(), ZENDESK)
        account.close_gateways()
        return
    org: Org = request.getfixturevalue("org")
    org.sim.cases.clear()
    org.sim.add_cases(sample_cases())
    org.sim.tasks.clear()
    yield Crm(org.gateway(), SALESFORCE)
    org.close_gateways()


def note(ticket_id: str, key: str, *, awaits_follow_up: bool = False) -> Note:
    return Note(
        ticket_id=ticket_id, key=key, subject="SMS sent", body="Texted.", at=AT, awaits_follow_up=awaits_follow_up
    )


def test_tickets_are_read_by_id_and_missing_ones_are_absent(crm: Crm) -> None:
    tickets = crm.gateway.read_tickets(
        [crm.samples.person_owned, crm.samples.queue_owned, crm.samples.missing, "not-an-id"], crm.samples.fields
    )
    assert set(tickets) == {crm.samples.person_owned, crm.samples.queue_owned}
    assert tickets[crm.samples.person_owned].id == crm.samples.person_owned
    assert all(tickets[crm.samples.person_owned].get(name) is not None for name in crm.samples.fields)


def test_the_owner_is_named_only_when_a_person_owns_the_ticket(crm: Crm) -> None:
    tickets = crm.gateway.read_tickets([crm.samples.person_owned, crm.samples.queue_owned], crm.samples.fields)
    assert tickets[crm.samples.person_owned].owner_email
    assert tickets[crm.samples.queue_owned].owner_email is None


def test_outcomes_and_notes_are_answered_in_order_and_a_missing_ticket_fails_for_good(crm: Crm) -> None:
    updates = [
        TicketUpdate(ticket_id=crm.samples.person_owned, status="sent", reason=None, chat_id="114"),
        TicketUpdate(ticket_id=crm.samples.missing, status="failed", reason="x", chat_id=None),
        TicketUpdate(ticket_id=crm.samples.queue_owned, status="failed", reason="Refused.", chat_id=None),
    ]
    tickets, notes = crm.gateway.write_outcomes(
        updates, [note(crm.samples.person_owned, "send 1"), note(crm.samples.queue_owned, "send 2")]
    )
    assert [(r.ok, r.retryable) for r in tickets] == [(True, False), (False, False), (True, False)]
    assert tickets[1].message
    assert [r.ok for r in notes] == [True, True]
    assert all(r.ref for r in notes)  # the id each note was given, to follow it up by


def test_a_note_written_once_is_found_again_by_its_key(crm: Crm) -> None:
    _, [written] = crm.gateway.write_outcomes([], [note(crm.samples.person_owned, "send 7")])
    found = crm.gateway.existing_notes(
        [note(crm.samples.person_owned, "send 7"), note(crm.samples.person_owned, "send 8")]
    )
    assert found == {"send 7": written.ref}


def test_chat_news_lands_and_a_note_is_followed_up_by_its_id_or_its_key(crm: Crm) -> None:
    _, [first, _] = crm.gateway.write_outcomes(
        [],
        [
            note(crm.samples.person_owned, "send 1", awaits_follow_up=True),
            note(crm.samples.queue_owned, "send 2", awaits_follow_up=True),
        ],
    )
    news = [
        ChatUpdate(crm.samples.person_owned, "finished", "Ana Lopez", AT, "Resolved"),
        ChatUpdate(crm.samples.queue_owned, "assigned", None, None, None),
    ]
    follow_ups = [
        FollowUp(ticket_id=crm.samples.person_owned, key="send 1", body="Chat finished.", note_ref=first.ref),
        FollowUp(ticket_id=crm.samples.queue_owned, key="send 2", body="Chat finished."),  # found by its key
        FollowUp(ticket_id=crm.samples.queue_owned, key="send 3", body="Chat finished."),  # no such note
    ]
    tickets, followed = crm.gateway.write_chats(news, follow_ups)
    assert [r.ok for r in tickets] == [True, True]
    assert [r.ok for r in followed] == [True, True, False]
    assert not followed[2].retryable


def test_api_usage_is_unknown_or_within_the_allowance(crm: Crm) -> None:
    crm.gateway.read_tickets([crm.samples.person_owned], crm.samples.fields)
    usage = crm.gateway.api_usage()
    assert usage is None or 0 <= usage.used <= usage.total
