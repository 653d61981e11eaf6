"""The JSON send API in-process (Starlette's test client, no worker): keys, validation, reading,
idempotency, waiting. What needs CCAI and a running worker is in ``tests/e2e/test_api_wire.py``."""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Iterator
from typing import Any

import httpx2
import pytest
from starlette.testclient import TestClient

from bridge.api.sends import SendRequest
from bridge.app import create_app
from bridge.crm.salesforce.ids import normalize_case_id
from bridge.errors import StoreUnavailable
from bridge.model import Overrides
from bridge.sandbox.cases import sample_cases
from bridge.services import Services
from bridge.store import Store
from tests._apps import API_KEY, MAX_BODY_BYTES, services

MOBILE = sample_cases()[0]["Id"]
URL = "/api/v1/sends"
AUTH = {"Authorization": f"Bearer {API_KEY}"}


def post(client: TestClient, body: Any, *, key: str | None = API_KEY, **params: str) -> httpx2.Response:
    headers = {"Authorization": f"Bearer {key}"} if key is not None else {}
    return client.post(URL, json=body, params=params, headers=headers)


@pytest.fixture
def client(sqlite_store: Store) -> Iterator[TestClient]:
    with TestClient(create_app(services=services(sqlite_store, run_worker=False))) as c:
        yield c


def test_a_key_is_required_and_either_rotated_key_works(
    client: TestClient, caplog: pytest.LogCaptureFixture, sqlite_store: Store
) -> None:
    caplog.set_level("DEBUG")
    assert post(client, {"ticket_id": MOBILE}, key=None).status_code == 401
    refused = post(client, {"ticket_id": MOBILE}, key="wrong-key")
    assert (refused.status_code, refused.json()) == (
        401,
        {"error": "Missing or wrong API key (Authorization: Bearer <key>)."},
    )
    assert client.get(f"{URL}/1", headers={"Authorization": "Bearer wrong-key"}).status_code == 401
    assert client.post(URL, json={"ticket_id": MOBILE}, headers={"Authorization": API_KEY}).status_code == 401
    assert dict(sqlite_store.history.queue_summary().by_status) == {}
    assert post(client, {"ticket_id": MOBILE}, key="previous-key").status_code == 202
    ours = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("bridge"))
    assert "Refused a request to /api/v1/sends: wrong or missing credentials" in ours
    assert "wrong-key" not in ours


def test_a_send_is_queued_for_the_18_character_case_and_can_be_read(client: TestClient, sqlite_store: Store) -> None:
    response = post(client, {"ticket_id": MOBILE[:15], "message": "Hello", "agent_id": 7})
    assert response.status_code == 202
    body = response.json()
    assert (body["status"], body["ticket_id"], body["source"], body["attempts"]) == ("queued", MOBILE, "api", 0)
    assert "Hello" not in response.text  # the message text is never shown back
    stored = sqlite_store.history.get(body["id"])
    assert stored is not None
    assert stored.overrides == Overrides(message="Hello", agent_id=7)
    read = client.get(f"{URL}/{body['id']}", headers=AUTH)
    assert (read.status_code, read.json()) == (200, body)


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ({"ticket_id": MOBILE, "colour": "red"}, "Unknown field 'colour'."),
        ({}, "ticket_id is required."),
        ({"ticket_id": 500}, "ticket_id: Input should be a valid string."),
        ({"ticket_id": "003000000000001"}, "ticket_id: must be a Case id"),
        ({"ticket_id": MOBILE[:15] + "AAA"}, "ticket_id: must be a Case id"),  # a wrong checksum suffix
        ({"ticket_id": MOBILE, "agent_email": "not-an-email"}, "agent_email: must be an email address."),
        ({"ticket_id": MOBILE, "agent_id": "7"}, "agent_id: Input should be a valid integer."),
        ({"ticket_id": MOBILE, "agent_id": 7, "agent_email": "a@b.co"}, "give agent_email or agent_id, not both."),
        ({"ticket_id": MOBILE, "end_user_number": "12345"}, "end_user_number: The number (***45) is not a valid"),
        ({"ticket_id": MOBILE, "message": ""}, "message: String should have at least 1 character."),
        (["not", "an", "object"], "The body must be a JSON object."),
    ],
)
def test_bad_bodies_get_400_naming_the_field(client: TestClient, sqlite_store: Store, body: Any, error: str) -> None:
    response = post(client, body)
    assert response.status_code == 400
    assert response.json()["error"].startswith(error)
    assert dict(sqlite_store.history.queue_summary().by_status) == {}


@pytest.mark.parametrize(
    ("message", "named"),
    [
        ("Hello\x00", "U+0000 (NUL)"),
        ("Ring\x07", "U+0007 (BEL)"),
        ("Pay \u202eusd 001\u202c now", "U+202E"),
    ],
)
def test_control_characters_in_the_message_are_refused_by_name(
    client: TestClient, sqlite_store: Store, message: str, named: str
) -> None:
    """Audit A1: a NUL reached PostgreSQL and the send was texted again and again."""
    response = post(client, {"ticket_id": MOBILE, "message": message})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error.startswith("message: contains characters that cannot be texted or stored")
    assert named in error
    assert dict(sqlite_store.history.queue_summary().by_status) == {}


def test_a_message_over_the_segment_limit_is_422(client: TestClient, sqlite_store: Store) -> None:
    response = post(client, {"ticket_id": MOBILE, "message": "x" * 2000})
    assert response.status_code == 422
    assert response.json()["error"].startswith("message: ")
    assert "the limit is 10" in response.json()["error"]
    assert dict(sqlite_store.history.queue_summary().by_status) == {}


def test_not_json_is_415_or_400_and_a_bad_wait_is_400(client: TestClient) -> None:
    wrong_type = client.post(URL, content=b'{"ticket_id": "x"}', headers={**AUTH, "Content-Type": "text/plain"})
    assert (wrong_type.status_code, wrong_type.json()["error"]) == (
        415,
        "The body must be JSON (Content-Type: application/json).",
    )
    assert client.post(URL, content=b"{}", headers=AUTH).status_code == 415  # no Content-Type at all
    not_json = client.post(URL, content=b"{", headers={**AUTH, "Content-Type": "application/json"})
    assert (not_json.status_code, not_json.json()["error"]) == (400, "The body is not valid JSON.")
    too_long = post(client, {"ticket_id": MOBILE}, wait="99")
    assert (too_long.status_code, too_long.json()["error"]) == (400, "wait must be between 0 and 25 seconds.")
    assert post(client, {"ticket_id": MOBILE}, wait="-1").status_code == 400
    not_a_number = post(client, {"ticket_id": MOBILE}, wait="soon")
    assert (not_a_number.status_code, not_a_number.json()["error"]) == (
        400,
        "wait must be a number of seconds (at most 25).",
    )


def test_a_body_over_the_cap_is_413(client: TestClient, sqlite_store: Store) -> None:
    response = post(client, {"ticket_id": MOBILE, "message": "x" * MAX_BODY_BYTES})
    assert (response.status_code, response.json()) == (
        413,
        {"error": f"The body is larger than {MAX_BODY_BYTES} bytes."},
    )
    assert dict(sqlite_store.history.queue_summary().by_status) == {}


@pytest.mark.parametrize("send_id", ["999", "abc", "²", "2147483648", "9" * 18, "9" * 20, "9" * 5000, "-1", "1.0"])
def test_reading_an_unknown_send_is_404(store: Store, send_id: str) -> None:
    """Audit A13: ids that are not small ASCII numbers answered 500 (int('²') works; big ones overflow)."""
    client = TestClient(create_app(services=services(store)))
    response = client.get(f"{URL}/{send_id}", headers=AUTH)
    assert response.status_code == 404
    assert response.json() == {"error": f"There is no send {send_id[:40]}."}


def test_a_200_character_idempotency_key_works(store: Store) -> None:
    client = TestClient(create_app(services=services(store)))
    key = "k" * 200
    first = client.post(URL, json={"ticket_id": MOBILE}, headers={**AUTH, "Idempotency-Key": key})
    again = client.post(URL, json={"ticket_id": MOBILE}, headers={**AUTH, "Idempotency-Key": key})
    assert first.status_code == again.status_code == 202
    assert again.json()["id"] == first.json()["id"]
    assert dict(store.history.queue_summary().by_status) == {"queued": 1}
    too_long = client.post(URL, json={"ticket_id": MOBILE}, headers={**AUTH, "Idempotency-Key": key + "k"})
    assert (too_long.status_code, too_long.json()["error"]) == (
        400,
        "Idempotency-Key must be 1 to 200 visible ASCII characters.",
    )


def test_a_reused_idempotency_key_with_another_body_is_409(client: TestClient, sqlite_store: Store) -> None:
    headers = {**AUTH, "Idempotency-Key": "click-1"}
    first = client.post(URL, json={"ticket_id": MOBILE, "message": "Hello"}, headers=headers)
    same = client.post(URL, json={"ticket_id": MOBILE[:15], "message": "Hello"}, headers=headers)
    assert same.json()["id"] == first.json()["id"]  # the same request, whichever form of the id
    other = client.post(URL, json={"ticket_id": MOBILE, "message": "Changed"}, headers=headers)
    assert (other.status_code, other.json()) == (
        409,
        {"error": "This Idempotency-Key was already used with a different request body."},
    )
    assert dict(sqlite_store.history.queue_summary().by_status) == {"queued": 1}


def test_the_api_is_off_without_a_key(sqlite_store: Store) -> None:
    client = TestClient(create_app(services=services(sqlite_store, api_keys=())))
    response = post(client, {"ticket_id": MOBILE})
    assert (response.status_code, response.json()) == (
        503,
        {"error": "The send API is not enabled: set BRIDGE_API_KEY."},
    )
    assert client.get(f"{URL}/1", headers=AUTH).status_code == 503


def test_wait_waits_for_an_outcome_and_answers_at_once_when_shutting_down(sqlite_store: Store) -> None:
    wired: Services = services(sqlite_store, run_worker=False)
    client = TestClient(create_app(services=wired))
    started = time.monotonic()
    assert post(client, {"ticket_id": MOBILE}, wait="0.5").status_code == 202  # no worker: still queued
    assert time.monotonic() - started >= 0.5
    wired.shutdown.begin()  # SIGTERM: waiting requests answer so the server can stop in time
    started = time.monotonic()
    response = post(client, {"ticket_id": MOBILE}, wait="20")
    assert (response.status_code, response.json()["status"]) == (202, "queued")
    assert time.monotonic() - started < 2.0


def test_a_send_stored_before_the_store_went_away_is_never_answered_try_again(
    client: TestClient, sqlite_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found in review: the send was committed, then reading it back failed and the caller got 503
    "try again"; a Flow retrying without an Idempotency-Key would make a second send, and text twice."""

    def unavailable(send_id: int) -> None:
        raise StoreUnavailable("The store is restarting.")

    monkeypatch.setattr(sqlite_store.history, "get", unavailable)
    response = post(client, {"ticket_id": MOBILE}, wait="2")
    assert response.status_code == 202
    assert response.json() == {"id": 1, "status": "queued", "ticket_id": MOBILE, "source": "api"}
    assert dict(sqlite_store.history.queue_summary().by_status) == {"queued": 1}


def test_the_request_fingerprint_does_not_keep_the_number(client: TestClient, sqlite_store: Store) -> None:
    """The fingerprint (to tell a reused Idempotency-Key with a different body) is stored for as long
    as the send; a plain hash of a body with a full number gives the number back by brute force over
    the ten billion US numbers. It keeps only what the send record shows anyway: the last four digits."""
    body = {"ticket_id": MOBILE, "end_user_number": "+1 415 555 0100"}
    assert post(client, body).status_code == 202
    with sqlite_store.db.tx() as connection:
        [stored] = connection.exec_driver_sql("SELECT request_hash FROM sends").one()
    parsed = SendRequest.model_validate(body, context={"ticket_ids": normalize_case_id}).model_dump()
    assert hashlib.sha256(json.dumps(parsed, sort_keys=True).encode()).hexdigest() != stored
    assert post(client, {**body, "end_user_number": "+1 212 555 0100"}, key=API_KEY).status_code == 202


def test_deeply_nested_json_is_400_at_every_json_door(sqlite_store: Store) -> None:
    nested = "[" * 30_000 + "]" * 30_000  # under the body cap; json.loads raises RecursionError, not ValueError
    svc = services(sqlite_store, run_worker=False)
    with TestClient(create_app(services=svc), raise_server_exceptions=False) as client:
        for path in ("/api/v1/sends", "/api/v1/opt-outs", "/api/v1/previews"):
            answer = client.post(path, content=nested, headers={**AUTH, "Content-Type": "application/json"})
            assert answer.status_code == 400, (path, answer.status_code)


def test_a_refused_request_logs_no_number_from_its_path(client: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    answer = client.delete("/api/v1/opt-outs/+14155550100", headers={"Authorization": "Bearer wrong"})
    assert answer.status_code == 401
    bridge_lines = [r.getMessage() for r in caplog.records if r.name.startswith("bridge")]
    assert any("Refused a request" in line for line in bridge_lines)
    assert not any("5550100" in line for line in bridge_lines)
