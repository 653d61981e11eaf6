"""Which template an outbound message asks for (its ActionId, or the Case's template field as the
notification carried it), and the note of when the last one arrived."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import pytest
from starlette.testclient import TestClient

from bridge.app import create_app
from bridge.crm.plugin import LAST_PUSH_KEY
from bridge.crm.salesforce.outbound_message import parse_outbound_message
from bridge.message_templates import TemplateBook, TemplateEntry, build_book
from bridge.sandbox.cases import outbound_message
from bridge.store import Store
from tests._apps import OUTBOUND_URL, XML, services

CASE = "5005g00000SBX01AAH"
ACTION_ID = "04k5g00000SBXACAA5"  # what the sandbox's outbound message carries as its ActionId


@pytest.fixture
def book() -> TemplateBook:
    return build_book(
        "Hello {CaseNumber}",
        {
            "case_opened": TemplateEntry(text="Opened {CaseNumber}", action_ids=(ACTION_ID[:15],)),
            "resolved": TemplateEntry(text="Resolved {CaseNumber}"),
        },
        template_field="CCAI_SMS_Template__c",
    )


@pytest.fixture
def client(sqlite_store: Store, book: TemplateBook) -> Iterator[TestClient]:
    built = services(sqlite_store, run_worker=False)
    built = replace(built, doors=replace(built.doors, templates=book))
    with TestClient(create_app(services=built)) as c:
        yield c


def test_the_notification_carries_the_action_and_the_cases_template_field() -> None:
    body = outbound_message([CASE], extra_fields={"CCAI_SMS_Template__c": "resolved"})
    _, (note,) = parse_outbound_message(body, template_field="CCAI_SMS_Template__c")
    assert (note.action_id, note.template) == (ACTION_ID, "resolved")
    _, (plain,) = parse_outbound_message(body)
    assert plain.template is None


def test_the_outbound_messages_own_template_beats_the_field_it_carried(client: TestClient, sqlite_store: Store) -> None:
    body = outbound_message([CASE], extra_fields={"CCAI_SMS_Template__c": "resolved"})
    assert client.post(OUTBOUND_URL, params={"token": "current-token"}, content=body, headers=XML).status_code == 200
    (send,) = sqlite_store.history.find()
    assert send.overrides.template == "case_opened"


def test_without_an_action_of_its_own_the_field_it_carried_chooses(
    client: TestClient, sqlite_store: Store, book: TemplateBook
) -> None:
    unmapped = build_book("Hello", {"resolved": TemplateEntry(text="Resolved")}, template_field="CCAI_SMS_Template__c")
    assert unmapped.for_rule(ACTION_ID, lambda a, b: a[:15] == b[:15]) is None
    body = outbound_message([CASE], extra_fields={"CCAI_SMS_Template__c": "resolved"}).replace(
        b"04k5g00000SBXAC", b"04k5g00000SBXZZ"
    )
    assert client.post(OUTBOUND_URL, params={"token": "current-token"}, content=body, headers=XML).status_code == 200
    (send,) = sqlite_store.history.find()
    assert send.overrides.template == "resolved"


def test_the_last_arrival_is_noted_for_operators(client: TestClient, sqlite_store: Store) -> None:
    assert sqlite_store.status.get(LAST_PUSH_KEY) is None
    body = outbound_message([CASE, CASE.replace("01", "02")])
    assert client.post(OUTBOUND_URL, params={"token": "current-token"}, content=body, headers=XML).status_code == 200
    noted = sqlite_store.status.get(LAST_PUSH_KEY)
    assert noted is not None
    value, at = noted
    assert value == {
        "door": "outbound_message",
        "org_id": "00D5g00000SBXRG",
        "notifications": 2,
        "action_id": ACTION_ID,
    }
    assert at > 0
