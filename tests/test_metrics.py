"""/metrics: counters of this process, store gauges read at most every few seconds, and both doors
answering anything with a clean refusal or a success (the property tests), never a 500."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from bridge.app import create_app
from bridge.errors import StoreUnavailable
from bridge.metrics import Metrics
from bridge.ops.overview import Overview, publish_gauges
from bridge.store import Store
from tests._apps import API_KEY, BODY, OUTBOUND_URL, UNREACHABLE_STORE, XML, services, watched_metrics
from tests._clock import Clock

AUTH = {"Authorization": f"Bearer {API_KEY}"}
MOBILE = "5005g00000SBX01AAH"


def test_metrics_count_events_duplicates_and_refusals_by_door_and_reason(sqlite_store: Store, clock: Clock) -> None:
    client = TestClient(create_app(services=services(sqlite_store, metrics=watched_metrics(sqlite_store))))
    for _ in range(2):
        client.post(OUTBOUND_URL, params={"token": "current-token"}, content=BODY, headers=XML)
    client.post(OUTBOUND_URL, params={"token": "nope"}, content=BODY, headers=XML)
    client.post(OUTBOUND_URL, params={"token": "current-token"}, content=BODY + b" " * 70_000, headers=XML)
    client.post("/api/v1/sends", json={"ticket_id": MOBILE}, headers={"Authorization": "Bearer x"})
    client.post("/api/v1/sends", json={"ticket_id": "nope"}, headers=AUTH)
    client.post("/api/v1/sends", content=b"{}", headers={**AUTH, "Content-Type": "text/plain"})
    for _ in range(2):
        client.post("/api/v1/sends", json={"ticket_id": MOBILE}, headers={**AUTH, "Idempotency-Key": "k"})
    clock.advance(42)
    text = client.get("/metrics").text
    for line in (
        'bridge_events_received_total{source="outbound_message"} 6.0',
        'bridge_events_duplicate_total{source="outbound_message"} 3.0',
        'bridge_events_received_total{source="api"} 2.0',
        'bridge_events_duplicate_total{source="api"} 1.0',
        'bridge_auth_failures_total{door="outbound_message"} 1.0',
        'bridge_auth_failures_total{door="api"} 1.0',
        'bridge_refusals_total{door="outbound_message",reason="unauthorized"} 1.0',
        'bridge_refusals_total{door="outbound_message",reason="too_large"} 1.0',
        'bridge_refusals_total{door="api",reason="unauthorized"} 1.0',
        'bridge_refusals_total{door="api",reason="malformed"} 1.0',
        'bridge_refusals_total{door="api",reason="media_type"} 1.0',
        "bridge_queue_depth 4.0",
        'bridge_sends{status="queued"} 4.0',
        "bridge_oldest_queued_seconds 42.0",
        "bridge_writebacks_pending 0.0",
        "bridge_workers_alive 0.0",
    ):
        assert line in text, line
    assert "bridge_ccai_request_seconds_bucket" in text


def test_workers_and_the_crm_api_usage_come_from_the_status_board(sqlite_store: Store) -> None:
    board = sqlite_store.status
    board.beat("w1", host="web.1", pid=4, pass_ok=True, pass_error=None)
    board.put("salesforce:api_usage", {"used": 1234, "total": 100_000})
    text = TestClient(create_app(services=services(sqlite_store, metrics=watched_metrics(sqlite_store)))).get(
        "/metrics"
    )
    assert "bridge_workers_alive 1.0" in text.text
    assert 'bridge_salesforce_api_usage{kind="used"} 1234.0' in text.text
    assert 'bridge_salesforce_api_usage{kind="allowed"} 100000.0' in text.text


def test_a_refused_scrape_is_counted(sqlite_store: Store) -> None:
    metrics = Metrics()
    client = TestClient(create_app(services=services(sqlite_store, metrics=metrics, metrics_key="scrape-key")))
    assert client.get("/metrics").status_code == 401
    assert (
        metrics.registry.get_sample_value("bridge_refusals_total", {"door": "metrics", "reason": "unauthorized"}) == 1
    )


def test_an_unreachable_store_leaves_the_gauges_out_not_the_page(sqlite_store: Store) -> None:
    def read() -> Overview:
        raise StoreUnavailable("The store is unavailable (OperationalError).")

    metrics = Metrics()
    publish_gauges(metrics, read)
    metrics.events_received.labels("api").inc()
    page = metrics.render().decode()
    assert 'bridge_events_received_total{source="api"} 1.0' in page
    assert "bridge_queue_depth" not in page
    down = Store.from_url(UNREACHABLE_STORE)
    try:
        response = TestClient(create_app(services=services(down, metrics=watched_metrics(down)))).get("/metrics")
    finally:
        down.close()
    assert response.status_code == 200
    assert "bridge_queue_depth" not in response.text


# -- property tests of both doors ---------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=30),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=15), children, max_size=5),
    max_leaves=12,
)
fields = st.sampled_from(["ticket_id", "message", "agent_email", "agent_id", "end_user_number", "outbound_number"])
bodies = json_values | st.dictionaries(fields, json_values | st.just(MOBILE), max_size=6)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=bodies)
def test_no_json_body_makes_the_api_fail_or_crash(sqlite_store: Store, body: Any) -> None:
    client = TestClient(create_app(services=services(sqlite_store)))
    # Sent as JSON whatever it is (httpx would send no body at all for None).
    response = client.post(
        "/api/v1/sends", content=json.dumps(body), headers={**AUTH, "Content-Type": "application/json"}
    )
    assert response.status_code in (202, 400, 422), response.text
    assert "error" in response.json() or response.json()["status"] == "queued"


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=st.binary(max_size=300))
def test_no_bytes_make_either_door_crash(sqlite_store: Store, raw: bytes) -> None:
    client = TestClient(create_app(services=services(sqlite_store)))
    api = client.post("/api/v1/sends", content=raw, headers={**AUTH, "Content-Type": "application/json"})
    assert api.status_code in (202, 400, 413, 415, 422), api.text
    assert "error" in api.json() or api.json()["status"] == "queued"
    door = client.post(OUTBOUND_URL, params={"token": "current-token"}, content=raw, headers=XML)
    assert door.status_code == 400, door.text
    assert b"<Ack>" not in door.content
