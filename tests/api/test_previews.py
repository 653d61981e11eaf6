"""``POST /api/v1/previews``: what the agent's Send SMS action shows before sending."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import replace

import pytest
from starlette.testclient import TestClient

from bridge.app import create_app
from bridge.consent import ConsentCheck
from bridge.crm.salesforce import plugin as salesforce
from bridge.errors import CRMUnavailable
from bridge.mapping import TicketMapper
from bridge.model import NewSend, Outcome
from bridge.preview import Previewer
from bridge.send_window import WindowRules, parse_window
from bridge.settings import MappingConfig
from bridge.store import Store
from tests import _apps
from tests._clock import Clock
from tests._fakes import FakeGateway
from tests._harness import CASES, MOBILE_CASE, NO_PHONE_CASE

AUTH = {"Authorization": "Bearer key"}
RULES = WindowRules(default=parse_window("08:00-21:00"), states={})


@pytest.fixture
def gateway() -> FakeGateway:
    return FakeGateway(cases={k: dict(v) for k, v in CASES.items()})


@pytest.fixture
def client(sqlite_store: Store, gateway: FakeGateway, clock: Clock) -> Iterator[TestClient]:
    opt_outs = sqlite_store.opt_outs
    words = salesforce.words
    previewer = Previewer(
        gateway=gateway,
        mapper=TicketMapper(
            config=MappingConfig(), words=words, outbound_number="+16285550199", chat_type="Messaging (SMS)"
        ),
        consent=ConsentCheck(opt_outs=opt_outs, block_if_true=("Contact.DoNotCall",), rules=RULES, words=words),
        rules=RULES,
        max_segments=10,
        words=words,
        chats=sqlite_store.chats,
        clock=clock,
    )
    services = replace(_apps.services(sqlite_store, api_keys=["key"]), previewer=previewer)
    with TestClient(create_app(services=services)) as c:
        yield c


def preview(client: TestClient, case: str) -> dict[str, object]:
    response = client.post("/api/v1/previews", json={"ticket_id": case}, headers=AUTH)
    assert response.status_code == 200, response.text
    return dict(response.json())


def test_a_sendable_case_shows_the_masked_number_the_message_and_its_segments(client: TestClient, clock: Clock) -> None:
    clock.now = dt.datetime(2026, 11, 25, 20, 0, tzinfo=dt.UTC).timestamp()  # noon in Los Angeles
    shown = preview(client, MOBILE_CASE[:15])
    assert shown["ticket_id"] == MOBILE_CASE
    assert shown["end_user_number"] == "*******0100"
    assert (
        shown["message"]
        == "Hello from our support team about your case 00001001. Reply to this message to chat with us."
    )
    assert shown["segments"] == {"encoding": "GSM-7", "characters": 92, "units": 92, "segments": 1, "max_segments": 10}
    assert (shown["can_send"], shown["blocked"]) == (True, None)
    assert shown["send_window"] == {
        "open": True,
        "window": "08:00-21:00",
        "time_zone": "America/Los_Angeles",
        "local_time": "12:00",
        "opens_at": None,
        "reason": None,
    }


def test_no_number_do_not_call_and_the_opt_out_list_are_explained(
    client: TestClient, gateway: FakeGateway, sqlite_store: Store
) -> None:
    assert preview(client, NO_PHONE_CASE)["blocked"] == {
        "status": "skipped",
        "reason": "The Case has no phone number to text (ContactMobile and ContactPhone are empty).",
    }
    gateway.cases[MOBILE_CASE]["Contact.DoNotCall"] = True
    assert preview(client, MOBILE_CASE)["blocked"] == {
        "status": "opted_out",
        "reason": "Not sent: the Contact is marked Do Not Call.",
    }
    gateway.cases[MOBILE_CASE]["Contact.DoNotCall"] = False
    sqlite_store.opt_outs.add("+14155550100", source="agent", note="said stop")
    shown = preview(client, MOBILE_CASE)
    assert shown["can_send"] is False
    assert "opt-out list" in str(shown["blocked"])


def test_outside_the_window_it_says_when_the_text_would_go(client: TestClient, clock: Clock) -> None:
    clock.now = dt.datetime(2026, 11, 26, 11, 12, tzinfo=dt.UTC).timestamp()  # 03:12 in Los Angeles
    shown = preview(client, MOBILE_CASE)
    assert shown["can_send"] is True  # it can be asked for: it will be held, or the agent overrides
    window = shown["send_window"]
    assert isinstance(window, dict)
    assert (window["open"], window["local_time"], window["opens_at"]) == (False, "03:12", "2026-11-26T16:00:00Z")
    assert window["reason"] == "Scheduled for 08:00 America/Los_Angeles (send window 08:00-21:00)"


def test_unknown_cases_bad_ids_and_a_crm_outage(client: TestClient, gateway: FakeGateway) -> None:
    missing = client.post("/api/v1/previews", json={"ticket_id": "5005g00000XXXXXAAA"}, headers=AUTH)
    assert missing.status_code in (400, 404)
    assert client.post("/api/v1/previews", json={"ticket_id": "003000000000001"}, headers=AUTH).status_code == 400
    gateway.failures.append(CRMUnavailable("Salesforce is down"))
    down = client.post("/api/v1/previews", json={"ticket_id": MOBILE_CASE}, headers=AUTH)
    assert down.status_code == 503
    assert "Salesforce is down" in down.json()["error"]
    assert client.post("/api/v1/previews", json={"ticket_id": MOBILE_CASE}).status_code == 401


def test_a_customer_in_a_live_chat_is_warned_about_before_sending(client: TestClient, sqlite_store: Store) -> None:
    assert preview(client, MOBILE_CASE)["live_chat"] is None
    sent = sqlite_store.sends.create(
        NewSend(dedupe_key="api:live", source="api", origin="person", ticket_id=MOBILE_CASE)
    )
    [job] = sqlite_store.sends.claim("w", limit=1, lease_seconds=30)
    assert job.id == sent.id
    sqlite_store.sends.finish(
        job.id, Outcome(status="sent", chat_id="881", write_back=False), token=job.token, create_task=False
    )
    live = preview(client, MOBILE_CASE)["live_chat"]
    assert isinstance(live, dict)
    assert live["chat_id"] == "881"
    assert "CCAI refuses another SMS until it ends" in live["warning"]
