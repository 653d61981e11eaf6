from __future__ import annotations

import io
import json
import logging
import time
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from bridge.app import Services, create_app
from bridge.logs import about_send, configure_logging, request_id
from bridge.metrics import Metrics
from bridge.store import Store
from tests.conftest import FIXTURES

XML = {"Content-Type": "text/xml; charset=utf-8"}
BODY = (FIXTURES / "outbound_message_3.xml").read_bytes()


def app_for(store: Store, **kwargs: Any) -> TestClient:
    metrics = Metrics()
    metrics.watch_store(store)
    values: dict[str, Any] = {
        "store": store,
        "worker": None,
        "webhook_tokens": ["hook"],
        "org_ids": [],
        "max_body_bytes": 64 * 1024,
        "api_keys": ["key"],
        "metrics": metrics,
        **kwargs,
    }
    return TestClient(create_app(services=Services(**values)))


def test_readyz_reports_the_store_and_the_embedded_worker(sqlite_store: Store) -> None:
    assert app_for(sqlite_store).get("/readyz").json() == {"ready": True, "problems": []}
    stale = SimpleNamespace(alive_at=time.monotonic() - 300, wake=lambda: None)
    response = app_for(sqlite_store, worker=stale, run_worker=True).get("/readyz")
    assert response.status_code == 503
    assert "embedded worker has shown no sign of life" in response.json()["problems"][0]
    down = Store.from_url("postgresql://nobody@127.0.0.1:9/none?connect_timeout=2")
    assert app_for(down).get("/readyz").json()["problems"] == ["the store is unreachable"]


def test_metrics_count_events_duplicates_refusals_and_read_the_queue(sqlite_store: Store) -> None:
    client = app_for(sqlite_store)
    for _ in range(2):
        client.post("/salesforce/outbound-message", params={"token": "hook"}, content=BODY, headers=XML)
    client.post("/salesforce/outbound-message", params={"token": "nope"}, content=BODY, headers=XML)
    client.post("/api/v1/sends", json={"ticket_id": "5005g00000SBX01AAH"}, headers={"Authorization": "Bearer x"})
    text = client.get("/metrics").text
    assert 'bridge_events_received_total{source="outbound_message"} 6.0' in text
    assert 'bridge_events_duplicate_total{source="outbound_message"} 3.0' in text
    assert 'bridge_auth_failures_total{door="outbound_message"} 1.0' in text
    assert 'bridge_auth_failures_total{door="api"} 1.0' in text
    assert "bridge_queue_depth 3.0" in text
    assert 'bridge_sends{status="queued"} 3.0' in text
    assert "bridge_oldest_queued_seconds" in text
    assert "bridge_ccai_request_seconds_bucket" in text


def test_metrics_can_require_a_key(sqlite_store: Store) -> None:
    client = app_for(sqlite_store, metrics_key="scrape-key")
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer scrape-key"}).status_code == 200


def test_each_response_carries_a_request_id(sqlite_store: Store) -> None:
    client = app_for(sqlite_store)
    assert len(client.get("/healthz").headers["x-request-id"]) == 16
    assert client.get("/healthz", headers={"X-Request-ID": "abc-123"}).headers["x-request-id"] == "abc-123"
    assert client.get("/healthz", headers={"X-Request-ID": "bad id\\n"}).headers["x-request-id"] != "bad id\\n"


def test_json_log_lines_carry_the_ids_they_concern() -> None:
    stream = io.StringIO()
    configure_logging("INFO", "json", stream=stream)
    try:
        token = request_id.set("req-1")
        with about_send(42):
            logging.getLogger("bridge.test").info("Send %s done", 42)
        request_id.reset(token)
        logging.getLogger("bridge.test").warning("no ids here")
    finally:
        configure_logging("INFO", "text", stream=io.StringIO())
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert (first["message"], first["send_id"], first["request_id"], first["level"]) == (
        "Send 42 done",
        42,
        "req-1",
        "info",
    )
    assert "send_id" not in second


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=30),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=15), children, max_size=5),
    max_leaves=12,
)
fields = st.sampled_from(["ticket_id", "message", "agent_email", "agent_id", "end_user_number", "outbound_number"])
bodies = json_values | st.dictionaries(fields, json_values | st.just("5005g00000SBX01AAH"), max_size=6)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=bodies)
def test_no_json_body_makes_the_api_fail_or_crash(sqlite_store: Store, body: Any) -> None:
    client = app_for(sqlite_store)
    response = client.post("/api/v1/sends", json=body, headers={"Authorization": "Bearer key"})
    assert response.status_code in (202, 400), response.text
    assert "error" in response.json() or response.json()["status"] == "queued"


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=st.binary(max_size=300))
def test_no_bytes_make_either_door_crash(sqlite_store: Store, raw: bytes) -> None:
    client = app_for(sqlite_store)
    api = client.post(
        "/api/v1/sends", content=raw, headers={"Authorization": "Bearer key", "Content-Type": "application/json"}
    )
    assert api.status_code in (202, 400)
    door = client.post("/salesforce/outbound-message", params={"token": "hook"}, content=raw, headers=XML)
    assert door.status_code == 400


@pytest.fixture(autouse=True)
def quiet_logging() -> Any:
    yield
    configure_logging("INFO", "text", stream=io.StringIO())
