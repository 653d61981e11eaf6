"""Ticket → SMS request: the number, the agent and the message, or why nothing is sent."""

from __future__ import annotations

from typing import Any

from bridge.crm import Ticket, Words
from bridge.crm.salesforce import plugin as salesforce
from bridge.mapping import TicketMapper
from bridge.model import Outcome, Overrides, SmsRequest
from bridge.settings import MappingConfig

OWNER = "ana@example.com"


def mapper(words: Words = salesforce.words, **config: Any) -> TicketMapper:
    return TicketMapper(
        config=MappingConfig(**config), words=words, outbound_number="+16285550199", chat_type="Messaging (SMS)"
    )


def ticket(*, owner_email: str | None = OWNER, **fields: Any) -> Ticket:
    """A Case as the gateway reads it: ``owner_email`` is set when a person (not a queue) owns it."""
    values = {"Id": "5005g00000SBX01AAH", "CaseNumber": "00001001", **fields}
    return Ticket(id="5005g00000SBX01AAH", fields=values, owner_email=owner_email)


def test_mobile_is_preferred_and_the_owner_gets_the_chat() -> None:
    request = mapper().map(ticket(ContactMobile="(415) 555-0100", ContactPhone="212 555 0142"))
    assert request == SmsRequest(
        end_user_number="+14155550100",
        outbound_number="+16285550199",
        message="Hello from our support team about your case 00001001. Reply to this message to chat with us.",
        chat_type="Messaging (SMS)",
        ticket_id="5005g00000SBX01AAH",
        agent_email=OWNER,
    )


def test_national_phone_with_a_queue_owner_assigns_nobody() -> None:
    request = mapper().map(ticket(ContactPhone="(212) 555-0142", owner_email=None))
    assert isinstance(request, SmsRequest)
    assert request.end_user_number == "+12125550142"
    assert request.agent_email is None


def test_no_phone_is_skipped_with_the_reason() -> None:
    outcome = mapper().map(ticket(ContactMobile=" "))
    assert outcome == Outcome(
        status="skipped", reason="The Case has no phone number to text (ContactMobile and ContactPhone are empty)."
    )


def test_non_us_number_fails_with_the_reason() -> None:
    outcome = mapper().map(ticket(ContactMobile="+44 20 7946 0958"))
    assert isinstance(outcome, Outcome)
    assert outcome.status == "failed"
    assert "GB number" in (outcome.reason or "")


def test_message_field_wins_when_filled_and_template_otherwise() -> None:
    m = mapper(message_field="SMS_Message__c", message_template="Case {CaseNumber}")
    assert "SMS_Message__c" in m.fields
    with_field = m.map(ticket(ContactMobile="4155550100", SMS_Message__c="Your order shipped"))
    assert isinstance(with_field, SmsRequest)
    assert with_field.message == "Your order shipped"
    without = m.map(ticket(ContactMobile="4155550100"))
    assert isinstance(without, SmsRequest)
    assert without.message == "Case 00001001"


def test_missing_template_field_fails_instead_of_half_rendering() -> None:
    outcome = mapper(message_template="About {Subject}").map(ticket(ContactMobile="4155550100"))
    assert isinstance(outcome, Outcome)
    assert outcome.status == "failed"
    assert "Subject" in (outcome.reason or "")
    assert outcome.end_user_hint == "*******0100"


def test_agent_choice_none_never_assigns() -> None:
    request = mapper(agent="none").map(ticket(ContactMobile="4155550100"))
    assert isinstance(request, SmsRequest)
    assert request.agent_email is None


def test_an_agent_given_in_the_request_wins_over_the_owner() -> None:
    by_email = mapper().map(ticket(ContactMobile="4155550100"), Overrides(agent_email="clicker@example.com"))
    assert isinstance(by_email, SmsRequest)
    assert (by_email.agent_email, by_email.agent_id) == ("clicker@example.com", None)
    by_id = mapper().map(ticket(ContactMobile="4155550100"), Overrides(agent_id=42))
    assert isinstance(by_id, SmsRequest)
    assert (by_id.agent_email, by_id.agent_id) == (None, 42)


def test_fields_selected_are_the_phone_and_template_fields() -> None:
    """The gateway adds what every read needs (the id, who owns the ticket); the mapping asks for the rest."""
    fields = mapper(message_template="{Contact.FirstName|Hi} {CaseNumber}").fields
    assert fields == ("ContactMobile", "ContactPhone", "Contact.FirstName", "CaseNumber")


def test_reasons_name_the_ticket_as_its_crm_calls_it() -> None:
    zendesk = Words(crm="Zendesk", ticket="ticket", note="comment", ticket_id="ticket id", ticket_id_example="123")
    skipped = mapper(zendesk).map(ticket(owner_email=None))
    assert isinstance(skipped, Outcome)
    assert skipped.reason == "The ticket has no phone number to text (ContactMobile and ContactPhone are empty)."
    bad = mapper(zendesk).map(ticket(ContactMobile="12"))
    assert isinstance(bad, Outcome)
    assert (bad.reason or "").startswith("The ticket's ContactMobile")
