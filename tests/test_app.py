from __future__ import annotations

from collections.abc import Iterator

import pytest
from starlette.testclient import TestClient

from bridge.app import Services, create_app
from bridge.salesforce_om import ACK
from bridge.sandbox.cases import outbound_message
from bridge.store import Store
from tests.conftest import FIXTURES

URL = "/salesforce/outbound-message"
XML = {"Content-Type": "text/xml; charset=utf-8", "SOAPAction": '""'}
BODY = (FIXTURES / "outbound_message_3.xml").read_bytes()


def services(store: Store, **kwargs: object) -> Services:
    values: dict[str, object] = {
        "store": store,
        "worker": None,
        "webhook_tokens": ["current-token", "previous-token"],
        "org_ids": ["00D5g00000SBXRG"],  # 15 characters, as admins paste them
        "max_body_bytes": 64 * 1024,
        **kwargs,
    }
    return Services(**values)  # type: ignore[arg-type]


@pytest.fixture
def client(sqlite_store: Store) -> Iterator[TestClient]:
    with TestClient(create_app(services=services(sqlite_store))) as c:
        yield c


def test_acks_only_after_storing_every_notification(client: TestClient, sqlite_store: Store) -> None:
    response = client.post(URL, params={"token": "current-token"}, content=BODY, headers=XML)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/xml")
    assert response.content == ACK
    assert sqlite_store.counts() == {"queued": 3}


def test_a_redelivered_message_is_acked_and_stores_nothing_new(client: TestClient, sqlite_store: Store) -> None:
    for token in ("current-token", "previous-token"):  # either token of a rotation works
        assert client.post(URL, params={"token": token}, content=BODY, headers=XML).content == ACK
    assert sqlite_store.counts() == {"queued": 3}


@pytest.mark.parametrize(
    ("params", "body", "headers", "status", "text"),
    [
        ({}, BODY, XML, 401, "Missing or wrong token"),
        ({"token": "wrong"}, BODY, XML, 401, "Missing or wrong token"),
        (
            {"token": "current-token"},
            outbound_message(["5005g00000SBX01AAH"], org_id="00D5g00000OTHERXYZ"),
            XML,
            403,
            "not in SALESFORCE_ORG_IDS",
        ),
        ({"token": "current-token"}, b"<notSoap/>", XML, 400, "not a SOAP 1.1 envelope"),
        ({"token": "current-token"}, b"", XML, 400, "empty"),
        ({"token": "current-token"}, BODY, {"Content-Type": "application/json"}, 415, "Expected an XML body"),
        ({"token": "current-token"}, BODY + b" " * 70_000, XML, 413, "larger than"),
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
    response = client.post(URL, params=params, content=body, headers=headers)
    assert response.status_code == status
    assert text in response.text
    assert response.text.count("\n") == 1
    assert b"<Ack>" not in response.content
    assert sqlite_store.counts() == {}


def test_store_unavailable_answers_503_without_ack() -> None:
    store = Store.from_url("postgresql://nobody@127.0.0.1:9/none?connect_timeout=2")
    client = TestClient(create_app(services=services(store)))  # no lifespan: the store is down from the start
    response = client.post(URL, params={"token": "current-token"}, content=BODY, headers=XML)
    assert response.status_code == 503
    assert b"<Ack>" not in response.content


def test_healthz(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}


def test_the_token_never_reaches_the_logs(client: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("DEBUG")
    client.post(URL, params={"token": "current-token"}, content=BODY, headers=XML)
    client.post(URL, params={"token": "wrong-secret"}, content=BODY, headers=XML)
    # Only what the bridge (and its server) logs; the test client logs its own request URLs.
    ours = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith(("bridge", "uvicorn")))
    assert "Refused an outbound message" in ours
    assert "current-token" not in ours
    assert "wrong-secret" not in ours
