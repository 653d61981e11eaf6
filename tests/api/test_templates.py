"""Named templates through the API: listed for the Send SMS action's picker, previewed for a Case,
and recorded with the send that used them."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import replace

import pytest
from starlette.testclient import TestClient

from bridge.app import create_app
from bridge.consent import ConsentCheck
from bridge.crm.salesforce import plugin as salesforce
from bridge.mapping import TicketMapper
from bridge.message_templates import TemplateBook, TemplateEntry, build_book
from bridge.preview import Previewer
from bridge.send_window import WindowRules, parse_window
from bridge.settings import MappingConfig
from bridge.store import Store
from tests import _apps
from tests._clock import Clock
from tests._fakes import FakeGateway
from tests._harness import CASES, MOBILE_CASE

AUTH = {"Authorization": "Bearer key"}
RULES = WindowRules(default=parse_window("08:00-21:00"), states={})


@pytest.fixture
def book() -> TemplateBook:
    config = MappingConfig(language_field="Contact.Language__c")
    return build_book(
        config.message_template,
        {
            "awaiting_customer": TemplateEntry(
                text="We need your reply on case {CaseNumber}.",
                label="Awaiting the customer",
                description="We need an answer to go on.",
                languages={"es": "Necesitamos su respuesta sobre el caso {CaseNumber}."},
            ),
        },
        template_field=config.template_field,
        language_field=config.language_field,
    )


@pytest.fixture
def gateway() -> FakeGateway:
    cases = {k: dict(v) for k, v in CASES.items()}
    cases[MOBILE_CASE]["Contact.Language__c"] = "es-MX"
    return FakeGateway(cases=cases)


@pytest.fixture
def client(sqlite_store: Store, gateway: FakeGateway, clock: Clock, book: TemplateBook) -> Iterator[TestClient]:
    clock.now = dt.datetime(2026, 11, 25, 20, 0, tzinfo=dt.UTC).timestamp()
    words = salesforce.words
    previewer = Previewer(
        gateway=gateway,
        mapper=TicketMapper(
            config=MappingConfig(language_field="Contact.Language__c"),
            words=words,
            outbound_number="+16285550199",
            chat_type="Messaging (SMS)",
            templates=book,
        ),
        consent=ConsentCheck(opt_outs=sqlite_store.opt_outs, block_if_true=(), rules=RULES, words=words),
        rules=RULES,
        max_segments=10,
        words=words,
        clock=clock,
    )
    services = _apps.services(sqlite_store, api_keys=["key"], run_worker=False)
    services = replace(services, previewer=previewer, doors=replace(services.doors, templates=book))
    with TestClient(create_app(services=services)) as c:
        yield c


def test_the_templates_are_listed_with_the_default_first(client: TestClient, book: TemplateBook) -> None:
    response = client.get("/api/v1/templates", headers=AUTH)
    assert response.status_code == 200
    awaiting = book.get("awaiting_customer")
    assert awaiting is not None
    assert response.json() == {
        "templates": [
            {
                "name": "default",
                "label": "Default",
                "description": None,
                "default": True,
                "version": book.default.version,
                "languages": [],
            },
            {
                "name": "awaiting_customer",
                "label": "Awaiting the customer",
                "description": "We need an answer to go on.",
                "default": False,
                "version": awaiting.version,
                "languages": ["es"],
            },
        ]
    }
    assert client.get("/api/v1/templates").status_code == 401


def test_a_preview_renders_the_chosen_template_in_the_customers_language(
    client: TestClient, book: TemplateBook
) -> None:
    response = client.post(
        "/api/v1/previews", json={"ticket_id": MOBILE_CASE, "template": "awaiting_customer"}, headers=AUTH
    )
    assert response.status_code == 200, response.text
    shown = response.json()
    assert shown["message"] == "Necesitamos su respuesta sobre el caso 00001001."
    awaiting = book.get("awaiting_customer")
    assert awaiting is not None
    assert shown["template"] == {"name": "awaiting_customer", "version": awaiting.version, "language": "es"}
    assert shown["segments"]["segments"] == 1
    default = client.post("/api/v1/previews", json={"ticket_id": MOBILE_CASE}, headers=AUTH).json()
    assert default["template"] == {"name": "default", "version": book.default.version, "language": None}


@pytest.mark.parametrize("path", ["/api/v1/previews", "/api/v1/sends"])
def test_an_unknown_template_is_refused_before_anything_is_read_or_stored(
    client: TestClient, gateway: FakeGateway, sqlite_store: Store, path: str
) -> None:
    response = client.post(path, json={"ticket_id": MOBILE_CASE, "template": "resolvd"}, headers=AUTH)
    assert response.status_code == 422
    assert response.json()["error"] == (
        "template: there is no message template 'resolvd' (the templates are default, awaiting_customer)."
    )
    assert gateway.reads == 0
    assert sqlite_store.history.find() == []


def test_a_send_records_the_template_asked_for(client: TestClient, sqlite_store: Store) -> None:
    response = client.post(
        "/api/v1/sends", json={"ticket_id": MOBILE_CASE, "template": "awaiting_customer"}, headers=AUTH
    )
    assert response.status_code == 202, response.text
    assert response.json()["template"] == "awaiting_customer"
    (send,) = sqlite_store.history.find()
    assert send.overrides.template == "awaiting_customer"
