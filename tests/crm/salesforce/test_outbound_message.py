"""The outbound-message door: the SOAP parser, and the endpoint in-process (Starlette's test client)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from bridge.app import create_app
from bridge.crm.salesforce.outbound_message import ACK, DELETED_RECORD, parse_outbound_message
from bridge.errors import MalformedMessage
from bridge.sandbox.cases import outbound_message
from bridge.store import Store
from tests._apps import BODY, MAX_BODY_BYTES, OUTBOUND_URL, XML, services
from tests._processes import FIXTURES

CASE = "5005g00000SBX01AAH"

# -- the parser ---------------------------------------------------------------------------------


def test_parses_every_notification_with_18_character_case_ids() -> None:
    org_id, notes = parse_outbound_message((FIXTURES / "outbound_message_3.xml").read_bytes())
    assert org_id == "00D5g00000SBXRGEA5"
    assert [n.notification_id for n in notes] == ["04l5g00000TEST1AAA", "04l5g00000TEST2AAA", "04l5g00000TEST3AAA"]
    # The second Case arrived as a 15-character id and is keyed like the others.
    assert [n.ticket_id for n in notes] == ["5005g00000SBX01AAH", "5005g00000SBX02AAH", "5005g00000SBX03AAH"]


def test_ack_is_the_soap_notifications_response() -> None:
    text = ACK.decode()
    assert "http://schemas.xmlsoap.org/soap/envelope/" in text
    assert '<notificationsResponse xmlns="http://soap.sforce.com/2005/09/outbound"><Ack>true</Ack>' in text


def test_accepts_100_and_refuses_101_notifications() -> None:
    ids = [CASE] * 101
    assert len(parse_outbound_message(outbound_message(ids[:100]))[1]) == 100
    with pytest.raises(MalformedMessage, match="101 notifications"):
        parse_outbound_message(outbound_message(ids))


def empty_sobject(body: bytes, object_type: str = "sf:Case") -> bytes:
    """The message with its first notification's record gone, as Salesforce delivers a notification
    whose record was deleted before delivery."""
    start = body.index(b"<sObject")
    end = body.index(b"</sObject>") + len(b"</sObject>")
    sobject = f'<sObject xsi:type="{object_type}" xmlns:sf="urn:sobject.enterprise.soap.sforce.com"/>'
    return body[:start] + sobject.encode() + body[end:]


def test_a_notification_whose_record_was_deleted_has_no_ticket() -> None:
    _, notes = parse_outbound_message(empty_sobject(BODY))
    assert [n.ticket_id for n in notes] == [None, "5005g00000SBX02AAH", "5005g00000SBX03AAH"]
    assert notes[0].notification_id == "04l5g00000TEST1AAA"


BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>
<lolz>&lol3;</lolz>"""

XXE = b"""<?xml version="1.0"?>
<!DOCTYPE foo [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"><soapenv:Body>&xxe;</soapenv:Body></soapenv:Envelope>"""


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"not xml at all", "not well-formed"),
        (BILLION_LAUGHS, "DTD or entities"),
        (XXE, "DTD or entities"),
        (b"<a/>", "not a SOAP 1.1 envelope"),
        (
            b'<e:Envelope xmlns:e="http://schemas.xmlsoap.org/soap/envelope/"><e:Body><x/></e:Body></e:Envelope>',
            "no Salesforce outbound-message",
        ),
        (outbound_message([]), "no Notification"),
        (outbound_message(["not-an-id"]), "no valid Case Id"),
        (outbound_message([CASE], org_id="nonsense"), "no valid OrganizationId"),
        (outbound_message([CASE]).replace(b"sf:Case", b"sf:Contact"), "about sf:Contact"),
        # An empty record of another object is a misconfigured message, not a deleted Case.
        (empty_sobject(outbound_message([CASE]), "sf:Contact"), "about sf:Contact"),
    ],
)
def test_refuses_what_is_not_an_outbound_message(body: bytes, reason: str) -> None:
    started = time.perf_counter()
    with pytest.raises(MalformedMessage, match=reason):
        parse_outbound_message(body)
    assert time.perf_counter() - started < 0.5


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2000))
def test_arbitrary_bytes_are_refused_as_malformed_never_crash(body: bytes) -> None:
    with pytest.raises(MalformedMessage):
        parse_outbound_message(body)


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=0, max_value=len(outbound_message([CASE]))))
def test_truncated_messages_are_refused_cleanly(cut: int) -> None:
    body = outbound_message([CASE])
    if cut >= len(body.rstrip()):
        assert parse_outbound_message(body[:cut])[1][0].ticket_id == CASE
    else:
        with pytest.raises(MalformedMessage):
            parse_outbound_message(body[:cut])


# -- the endpoint -------------------------------------------------------------------------------


@pytest.fixture
def client(sqlite_store: Store) -> Iterator[TestClient]:
    with TestClient(create_app(services=services(sqlite_store))) as c:
        yield c


def test_acks_only_after_storing_every_notification(client: TestClient, sqlite_store: Store) -> None:
    response = client.post(OUTBOUND_URL, params={"token": "current-token"}, content=BODY, headers=XML)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/xml")
    assert response.content == ACK
    assert dict(sqlite_store.history.queue_summary().by_status) == {"queued": 3}
    stored = sqlite_store.history.find()
    assert {s.dedupe_key for s in stored} == {f"om:00D5g00000SBXRG:04l5g00000TEST{i}AAA" for i in (1, 2, 3)}
    assert {s.source for s in stored} == {"outbound_message"}


def test_a_redelivered_message_is_acked_and_stores_nothing_new(client: TestClient, sqlite_store: Store) -> None:
    for token in ("current-token", "previous-token"):  # either token of a rotation works
        assert client.post(OUTBOUND_URL, params={"token": token}, content=BODY, headers=XML).content == ACK
    assert dict(sqlite_store.history.queue_summary().by_status) == {"queued": 3}


def test_a_deleted_record_is_acked_and_recorded_as_skipped_while_the_rest_are_queued(
    client: TestClient, sqlite_store: Store
) -> None:
    """Audit A16: one notification about a deleted record must not make Salesforce redeliver the rest."""
    response = client.post(OUTBOUND_URL, params={"token": "current-token"}, content=empty_sobject(BODY), headers=XML)
    assert (response.status_code, response.content) == (200, ACK)
    assert dict(sqlite_store.history.queue_summary().by_status) == {"queued": 2, "skipped": 1}
    [skipped] = sqlite_store.history.find(status="skipped")
    assert skipped.final
    assert skipped.reason == DELETED_RECORD
    assert skipped.dedupe_key == "om:00D5g00000SBXRG:04l5g00000TEST1AAA"
    assert skipped.write_back_state == "none"  # there is no record to write to
    # Its redelivery is recognised like any other.
    client.post(OUTBOUND_URL, params={"token": "current-token"}, content=empty_sobject(BODY), headers=XML)
    assert dict(sqlite_store.history.queue_summary().by_status) == {"queued": 2, "skipped": 1}


@pytest.mark.parametrize(
    ("params", "body", "headers", "status", "text"),
    [
        ({}, BODY, XML, 401, "Missing or wrong token"),
        ({"token": "wrong"}, BODY, XML, 401, "Missing or wrong token"),
        (
            {"token": "current-token"},
            outbound_message([CASE], org_id="00D5g00000OTHERXYZ"),
            XML,
            403,
            "not in SALESFORCE_ORG_IDS",
        ),
        ({"token": "current-token"}, b"<notSoap/>", XML, 400, "not a SOAP 1.1 envelope"),
        ({"token": "current-token"}, b"", XML, 400, "empty"),
        ({"token": "current-token"}, BODY, {"Content-Type": "application/json"}, 415, "Expected an XML body"),
        ({"token": "current-token"}, BODY + b" " * 70_000, XML, 413, "larger than"),
        (
            {"token": "current-token"},
            outbound_message([CASE]).replace(b"sf:Case", b"sf:Contact"),
            XML,
            400,
            "about sf:Contact",
        ),
    ],
)
def test_refusals_store_nothing_and_say_why_in_one_line(
    client: TestClient,
    sqlite_store: Store,
    params: dict[str, str],
    body: bytes,
    headers: dict[str, str],
    status: int,
    text: str,
) -> None:
    response = client.post(OUTBOUND_URL, params=params, content=body, headers=headers)
    assert response.status_code == status
    assert text in response.text
    assert response.text.count("\n") == 1
    assert b"<Ack>" not in response.content
    assert dict(sqlite_store.history.queue_summary().by_status) == {}


def test_a_streamed_body_over_the_cap_is_413_too(client: TestClient, sqlite_store: Store) -> None:
    """No Content-Length to go by: the cap applies while reading."""

    def chunks() -> Iterator[bytes]:
        for _ in range(MAX_BODY_BYTES // 1024 + 2):
            yield b" " * 1024

    response = client.post(OUTBOUND_URL, params={"token": "current-token"}, content=chunks(), headers=XML)
    assert response.status_code == 413
    assert f"larger than {MAX_BODY_BYTES} bytes" in response.text
    assert dict(sqlite_store.history.queue_summary().by_status) == {}


def test_the_token_never_reaches_the_logs(client: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("DEBUG")
    client.post(OUTBOUND_URL, params={"token": "current-token"}, content=BODY, headers=XML)
    client.post(OUTBOUND_URL, params={"token": "wrong-secret"}, content=BODY, headers=XML)
    # Only what the bridge (and its server) logs; the test client logs its own request URLs.
    ours = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith(("bridge", "uvicorn")))
    assert "Outbound message from org 00D5g00000SBXRGEA5: 3 notification(s), 3 new" in ours
    assert f"Refused a request to {OUTBOUND_URL}" in ours
    assert "current-token" not in ours
    assert "wrong-secret" not in ours
