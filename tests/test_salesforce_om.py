from __future__ import annotations

import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.errors import MalformedMessage
from bridge.salesforce_om import ACK, parse_outbound_message
from bridge.sandbox.cases import outbound_message
from tests.conftest import FIXTURES


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
    ids = ["5005g00000SBX01AAH"] * 101
    assert len(parse_outbound_message(outbound_message(ids[:100]))[1]) == 100
    with pytest.raises(MalformedMessage, match="101 notifications"):
        parse_outbound_message(outbound_message(ids))


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
        (outbound_message(["5005g00000SBX01AAH"], org_id="nonsense"), "no valid OrganizationId"),
        (outbound_message(["5005g00000SBX01AAH"]).replace(b"sf:Case", b"sf:Contact"), "about sf:Contact"),
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
@given(st.integers(min_value=0, max_value=len(outbound_message(["5005g00000SBX01AAH"]))))
def test_truncated_messages_are_refused_cleanly(cut: int) -> None:
    body = outbound_message(["5005g00000SBX01AAH"])
    if cut >= len(body.rstrip()):
        assert parse_outbound_message(body[:cut])[1][0].ticket_id == "5005g00000SBX01AAH"
    else:
        with pytest.raises(MalformedMessage):
            parse_outbound_message(body[:cut])
