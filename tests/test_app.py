"""The web application in-process: health, readiness, metrics access, request ids, a store outage."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from bridge.app import create_app
from bridge.errors import StoreRejected
from bridge.store import Store
from bridge.store.opt_outs import OptOuts
from tests._apps import BODY, OUTBOUND_URL, UNREACHABLE_STORE, XML, idle_worker, services
from tests._fakes import FakeGateway


@pytest.fixture
def unreachable_store() -> Iterator[Store]:
    store = Store.from_url(UNREACHABLE_STORE)
    yield store
    store.close()


def test_healthz(sqlite_store: Store) -> None:
    assert TestClient(create_app(services=services(sqlite_store))).get("/healthz").json() == {"status": "ok"}


def test_readyz_is_ready_with_a_migrated_store_and_a_healthy_worker(sqlite_store: Store) -> None:
    app = create_app(services=services(sqlite_store, worker=idle_worker(sqlite_store)))
    response = TestClient(app).get("/readyz")
    assert (response.status_code, response.json()) == (200, {"ready": True, "problems": []})


def test_readyz_reports_an_embedded_worker_with_a_problem(sqlite_store: Store) -> None:
    stuck = idle_worker(sqlite_store, unhealthy_after=-1)
    response = TestClient(create_app(services=services(sqlite_store, worker=stuck))).get("/readyz")
    assert response.status_code == 503
    assert response.json()["ready"] is False
    assert "the embedded worker has not completed a pass" in response.json()["problems"][0]


def test_readyz_ignores_a_worker_the_web_process_does_not_run(sqlite_store: Store) -> None:
    stuck = idle_worker(sqlite_store, unhealthy_after=-1)
    app = create_app(services=services(sqlite_store, worker=stuck, run_worker=False))
    assert TestClient(app).get("/readyz").json() == {"ready": True, "problems": []}


def test_readyz_reports_an_unreachable_store(unreachable_store: Store) -> None:
    response = TestClient(create_app(services=services(unreachable_store))).get("/readyz")
    assert response.status_code == 503
    assert response.json()["problems"] == ["the store is unreachable"]


def test_readyz_reports_a_store_that_was_never_migrated(tmp_path: Path) -> None:
    store = Store.from_url(f"sqlite:///{tmp_path}/empty.db")
    try:
        problems = TestClient(create_app(services=services(store))).get("/readyz").json()["problems"]
    finally:
        store.close()
    assert problems == ["the store's schema is out of date: run `bridge migrate`"]


def test_metrics_can_require_a_key(sqlite_store: Store) -> None:
    client = TestClient(create_app(services=services(sqlite_store, metrics_key="scrape-key")))
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer scrape-key"}).status_code == 200


def test_each_response_carries_a_request_id(sqlite_store: Store) -> None:
    client = TestClient(create_app(services=services(sqlite_store)))
    assert len(client.get("/healthz").headers["x-request-id"]) == 16
    assert client.get("/healthz", headers={"X-Request-ID": "abc-123"}).headers["x-request-id"] == "abc-123"
    assert client.get("/healthz", headers={"X-Request-ID": "bad id\\n"}).headers["x-request-id"] != "bad id\\n"
    refused = client.post(OUTBOUND_URL, content=BODY, headers={**XML, "X-Request-ID": "req-7"})
    assert (refused.status_code, refused.headers["x-request-id"]) == (401, "req-7")


def test_store_unavailable_answers_503_without_ack(unreachable_store: Store) -> None:
    client = TestClient(create_app(services=services(unreachable_store)))  # no lifespan: down from the start
    response = client.post(OUTBOUND_URL, params={"token": "current-token"}, content=BODY, headers=XML)
    assert response.status_code == 503
    assert b"<Ack>" not in response.content
    assert "try again" in response.text
    api = client.post(
        "/api/v1/sends", json={"ticket_id": "5005g00000SBX01AAH"}, headers={"Authorization": "Bearer key"}
    )
    assert (api.status_code, api.json()) == (503, {"error": "The bridge cannot store events right now; try again."})


def test_data_the_store_refuses_is_a_422_naming_why_not_an_outage(
    sqlite_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Told "try again" (503), a caller would resend data that fails the same way every time. The
    doors translate a refusal themselves; any other route falls back on the app's handler."""
    refusal = StoreRejected("The store refused the data (DataError: value too long for type character varying(18)).")

    def refuse(*args: object, **kwargs: object) -> None:
        raise refusal

    monkeypatch.setattr(sqlite_store.sends, "ingest", refuse)
    monkeypatch.setattr(sqlite_store.sends, "create", refuse)
    monkeypatch.setattr(OptOuts, "add", refuse)
    client = TestClient(create_app(services=services(sqlite_store)))
    auth = {"Authorization": "Bearer key"}
    soap = client.post(OUTBOUND_URL, params={"token": "current-token"}, content=BODY, headers=XML)
    assert (soap.status_code, soap.text) == (400, f"The notifications could not be stored: {refusal}\n")
    api = client.post("/api/v1/sends", json={"ticket_id": "5005g00000SBX01AAH"}, headers=auth)
    assert (api.status_code, api.json()) == (422, {"error": f"The request could not be stored: {refusal}"})
    other = client.post("/api/v1/opt-outs", json={"number": "(415) 555-0100"}, headers=auth)
    assert (other.status_code, other.json()) == (422, {"error": f"The bridge cannot store this request: {refusal}"})


def test_the_lifespan_migrates_the_store_and_closes_what_it_opened(tmp_path: Path) -> None:
    store = Store.from_url(f"sqlite:///{tmp_path}/fresh.db")
    gateway = FakeGateway()
    with TestClient(create_app(services=replace(services(store, run_worker=False), gateway=gateway))) as client:
        assert client.get("/readyz").json() == {"ready": True, "problems": []}
        assert not gateway.closed
    assert gateway.closed
