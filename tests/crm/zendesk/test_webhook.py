"""The Zendesk webhook door in-process: signature, replay window, invocation ids, ack after commit."""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient

from bridge.app import create_app
from bridge.crm.zendesk import plugin as zendesk
from bridge.crm.zendesk.settings import ZendeskSettings
from bridge.crm.zendesk.webhook import signature, signed_at
from bridge.message_templates import TemplateEntry, build_book
from bridge.metrics import Metrics
from bridge.sandbox.zendesk_account import stamp
from bridge.store import Store
from tests._apps import UNREACHABLE_STORE, services

URL = "/zendesk/webhook"
SECRETS = ("current-secret", "previous-secret")


def zendesk_services(store: Store, metrics: Metrics | None = None) -> Any:
    values: dict[str, Any] = {"bridge_config": "/nonexistent/bridge.toml", "webhook_secret": ",".join(SECRETS)}
    settings = ZendeskSettings(subdomain="acme", **values)
    return dataclasses.replace(services(store, metrics=metrics), crm=zendesk, crm_settings=settings)


def delivery(
    body: dict[str, Any] | bytes,
    *,
    invocation: str = "01HANA2B5D5W9XSJS3NE5SQA1J",
    secret: str = SECRETS[0],
    at: float | None = None,
    sign: bool = True,
) -> tuple[bytes, dict[str, str]]:
    """A request as Zendesk sends it (headers recorded from a real account's attempts)."""
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    timestamp = stamp(time.time() if at is None else at)
    headers = {
        "Content-Type": "application/json; charset=utf-8",
        "User-Agent": "Zendesk Webhook",
        "X-Zendesk-Account-Id": "18525119",
        "X-Zendesk-Webhook-Id": "01HAN96XNH1J7DY8D7RZ22QMT9",
        "X-Zendesk-Webhook-Invocation-Id": invocation,
        "X-Zendesk-Webhook-Signature-Timestamp": timestamp,
    }
    if sign:
        headers["X-Zendesk-Webhook-Signature"] = signature(secret, timestamp, raw)
    return raw, headers


@pytest.fixture
def metrics() -> Metrics:
    return Metrics()


@pytest.fixture
def client(sqlite_store: Store, metrics: Metrics) -> Iterator[TestClient]:
    with TestClient(create_app(services=zendesk_services(sqlite_store, metrics))) as c:
        yield c


def stored(store: Store) -> dict[str, int]:
    return dict(store.history.queue_summary().by_status)


def refusals(metrics: Metrics, reason: str) -> float:
    return float(metrics.refusals.labels("zendesk_webhook", reason)._value.get())


def test_a_signed_delivery_is_stored_then_acknowledged(client: TestClient, sqlite_store: Store) -> None:
    raw, headers = delivery({"ticket_id": "1001", "requester": "ignored"})
    response = client.post(URL, content=raw, headers=headers)
    assert (response.status_code, response.json()) == (200, {"ok": True, "ticket_id": "1001", "new": True})
    assert stored(sqlite_store) == {"queued": 1}
    send = sqlite_store.history.get(1)
    assert send is not None
    # Fired by a CRM rule: the loop guard applies and the send window cannot be overridden.
    assert (send.ticket_id, send.origin, send.source) == ("1001", "crm_event", "zendesk_webhook")


def test_a_redelivery_of_one_invocation_is_the_same_send(client: TestClient, sqlite_store: Store) -> None:
    first = client.post(URL, content=delivery({"ticket_id": 1001})[0], headers=delivery({"ticket_id": 1001})[1])
    # Zendesk signs each attempt anew: a later timestamp, another signature, the same invocation id.
    raw, headers = delivery({"ticket_id": 1001}, at=time.time() + 30)
    again = client.post(URL, content=raw, headers=headers)
    assert (first.json()["new"], again.status_code, again.json()["new"]) == (True, 200, False)
    other = client.post(
        URL,
        content=delivery({"ticket_id": 1001}, invocation="01HANA2B5D5W9XSJS3NE5SQA2K")[0],
        headers=delivery({"ticket_id": 1001}, invocation="01HANA2B5D5W9XSJS3NE5SQA2K")[1],
    )
    assert other.json()["new"] is True
    assert stored(sqlite_store) == {"queued": 2}


def test_the_previous_secret_still_verifies_while_rotating(client: TestClient, sqlite_store: Store) -> None:
    raw, headers = delivery({"ticket_id": "7"}, secret=SECRETS[1])
    assert client.post(URL, content=raw, headers=headers).status_code == 200


@pytest.mark.parametrize(
    "tamper",
    ["wrong secret", "no signature", "body changed", "timestamp changed", "too old", "too new", "not a time"],
)
def test_a_bad_or_missing_signature_is_a_401_counted_and_nothing_is_stored(
    client: TestClient, sqlite_store: Store, metrics: Metrics, tamper: str
) -> None:
    body = {"ticket_id": "1001"}
    raw, headers = delivery(
        body,
        secret="someone-else" if tamper == "wrong secret" else SECRETS[0],
        sign=tamper != "no signature",
        at=time.time() - 301 if tamper == "too old" else time.time() + 301 if tamper == "too new" else None,
    )
    if tamper == "body changed":
        raw = json.dumps({"ticket_id": "1002"}).encode()
    if tamper == "timestamp changed":
        headers["X-Zendesk-Webhook-Signature-Timestamp"] = stamp(time.time() - 1)
    if tamper == "not a time":
        headers["X-Zendesk-Webhook-Signature-Timestamp"] = "yesterday"
        headers["X-Zendesk-Webhook-Signature"] = signature(SECRETS[0], "yesterday", raw)
    response = client.post(URL, content=raw, headers=headers)
    assert response.status_code == 401
    assert stored(sqlite_store) == {}
    assert refusals(metrics, "unauthorized") == 1


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        ({"ticket": "1001"}, 400, "ticket_id"),
        ({"ticket_id": "abc"}, 400, "ticket_id"),
        ({"ticket_id": True}, 400, "ticket_id"),
        ({"ticket_id": "1001", "message": 5}, 400, "message"),
        ({"ticket_id": "1001", "message": "a\u0000b"}, 400, "cannot be texted"),
        ({"ticket_id": "1001", "template": "opened"}, 422, "no message template named 'opened'"),
        ({"ticket_id": "1001", "template": 7}, 400, "template"),
        (b"[1, 2]", 400, "JSON object"),
        (b"{not json", 400, "not valid JSON"),
    ],
)
def test_a_body_that_cannot_be_a_send_is_refused_after_its_signature(
    client: TestClient, sqlite_store: Store, body: Any, status: int, words: str
) -> None:
    raw, headers = delivery(body)
    response = client.post(URL, content=raw, headers=headers)
    assert response.status_code == status
    assert words in response.text
    assert stored(sqlite_store) == {}


def test_a_named_template_in_the_body_is_the_one_its_send_uses(sqlite_store: Store, metrics: Metrics) -> None:
    built = zendesk_services(sqlite_store, metrics)
    book = build_book("Hello {id}", {"resolved": TemplateEntry(text="Resolved: #{id}")})
    built = dataclasses.replace(built, doors=dataclasses.replace(built.doors, templates=book))
    with TestClient(create_app(services=built)) as client:
        raw, headers = delivery({"ticket_id": "1001", "template": " resolved "})
        assert client.post(URL, content=raw, headers=headers).status_code == 200
        raw, headers = delivery({"ticket_id": "1002", "template": "opened"}, invocation="01HANA2B5D5W9XSJS3NE5SQA1K")
        refused = client.post(URL, content=raw, headers=headers)
    assert (refused.status_code, "templates: default, resolved" in refused.text) == (422, True)
    assert sqlite_store.history.get(1).overrides.template == "resolved"  # type: ignore[union-attr]
    assert stored(sqlite_store) == {"queued": 1}


def test_a_message_in_the_body_is_the_text_sent(client: TestClient, sqlite_store: Store) -> None:
    raw, headers = delivery({"ticket_id": "1001", "message": "  Your order shipped.  "})
    assert client.post(URL, content=raw, headers=headers).status_code == 200
    send = sqlite_store.history.get(1)
    assert send is not None
    assert send.overrides.message == "Your order shipped."


def test_without_an_invocation_id_nothing_is_stored(client: TestClient, sqlite_store: Store) -> None:
    raw, headers = delivery({"ticket_id": "1001"})
    del headers["X-Zendesk-Webhook-Invocation-Id"]
    assert client.post(URL, content=raw, headers=headers).status_code == 400
    assert stored(sqlite_store) == {}


def test_when_the_store_is_down_the_answer_asks_zendesk_to_retry_soon() -> None:
    down = Store.from_url(UNREACHABLE_STORE)
    try:
        client = TestClient(create_app(services=zendesk_services(down)))  # no lifespan: down from the start
        raw, headers = delivery({"ticket_id": "1001"})
        response = client.post(URL, content=raw, headers=headers)
    finally:
        down.close()
    assert response.status_code == 503
    assert 0 < int(response.headers["retry-after"]) < 60


def test_the_signature_timestamp_is_read_as_zendesk_writes_it() -> None:
    assert signed_at("2023-09-18T23:38:13Z") == 1695080293.0
    assert signed_at("1695080293") == 1695080293.0
    assert signed_at("2023-09-18T23:38:13") is None  # no zone: not a moment
    assert signed_at("") is None
