"""Canceling a waiting send from the command line, the dashboard and the API: it ends skipped with
who canceled it, its ticket is told, and a send that may be leaving or may have reached the
customer is never canceled."""

from __future__ import annotations

import base64
import logging
import re
import uuid
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from bridge.app import create_app
from bridge.model import NewSend
from bridge.sandbox.cases import sample_cases
from bridge.store import Store
from tests._apps import API_KEY, Bridge, clean_environment, command_line, services
from tests._sends import depart

MOBILE = sample_cases()[0]["Id"]
PASSWORD = "dashboard-secret"


def waiting(store: Store) -> int:
    new = NewSend(dedupe_key=f"api:{uuid.uuid4().hex}", source="api", origin="person", ticket_id=MOBILE)
    return store.sends.create(new).id


def test_a_waiting_send_is_canceled_once_and_its_ticket_is_told(sqlite_store: Store) -> None:
    send_id = waiting(sqlite_store)
    assert sqlite_store.sends.cancel(send_id, by="ana (bridge sends cancel)")
    record = sqlite_store.history.get(send_id)
    assert record is not None
    assert (record.status, record.reason) == ("skipped", "Canceled by ana (bridge sends cancel) before it was sent.")
    assert record.writeback == "pending"  # the Case shows Skipped with that reason
    assert [e.event for e in sqlite_store.history.timeline(send_id)][-1] == "canceled"
    assert not sqlite_store.sends.cancel(send_id, by="ana")  # finished: nothing to cancel
    assert sqlite_store.sends.claim("w", limit=1, lease_seconds=30) == []  # no worker will send it


def test_a_send_a_worker_holds_or_that_may_have_reached_the_customer_is_not_canceled(sqlite_store: Store) -> None:
    held = waiting(sqlite_store)
    [job] = sqlite_store.sends.claim("w", limit=1, lease_seconds=30)
    assert not sqlite_store.sends.cancel(held, by="ana")
    depart(sqlite_store, job.id, token=job.token, lease_seconds=30)
    sqlite_store.sends.requeue(job.id, token=job.token, delay=60, reason="no answer", may_have_sent=True)
    assert not sqlite_store.sends.cancel(held, by="ana")  # queued again, but its answer was lost


def test_the_command_line_cancels_and_says_why_not(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    clean_environment(monkeypatch, tmp_path)
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'bridge.db'}")
    store = Store.from_url(f"sqlite:///{tmp_path / 'bridge.db'}")
    store.migrate()
    send_id = waiting(store)
    bridge: Bridge = command_line(capsys)
    done = bridge("sends", "cancel", str(send_id))
    assert (done.code, done.out.strip()) == (
        0,
        f"Send {send_id} canceled: it will not be sent, and its ticket is told so.",
    )
    again = bridge("sends", "cancel", str(send_id))
    assert again.code == 1
    assert "is skipped and cannot be canceled: it has finished." in again.err
    assert "(bridge sends cancel)" in (store.history.get(send_id).reason or "")  # type: ignore[union-attr]


def test_the_api_cancels_with_its_request_id_as_who(sqlite_store: Store) -> None:
    send_id = waiting(sqlite_store)
    client = TestClient(create_app(services=services(sqlite_store)))
    auth = {"Authorization": f"Bearer {API_KEY}"}
    assert client.post(f"/api/v1/sends/{send_id}/cancel").status_code == 401
    answer = client.post(f"/api/v1/sends/{send_id}/cancel", headers=auth)
    assert answer.status_code == 200
    assert answer.json()["status"] == "skipped"
    assert re.search(r"Canceled by a send API caller \(request [^)]+\)", answer.json()["error"])
    assert client.post(f"/api/v1/sends/{send_id}/cancel", headers=auth).status_code == 409
    assert client.post("/api/v1/sends/999/cancel", headers=auth).status_code == 404


def test_the_dashboard_cancels_with_the_pages_token_and_logs_who(
    sqlite_store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="bridge")
    send_id = waiting(sqlite_store)
    signed_in = {"Authorization": "Basic " + base64.b64encode(f"operator:{PASSWORD}".encode()).decode()}
    client = TestClient(create_app(services=services(sqlite_store, dashboard_password=PASSWORD)), headers=signed_in)
    page = client.get(f"/dashboard/sends/{send_id}")
    assert 'id="cancel"' in page.text
    form = r'id="cancel">\s*<input type="hidden" name="csrf" value="([^"]+)"'
    token = re.search(form, page.text)
    assert token is not None
    assert client.post(f"/dashboard/sends/{send_id}/cancel", data={"csrf": "forged"}).status_code == 403
    done = client.post(f"/dashboard/sends/{send_id}/cancel", data={"csrf": token.group(1)}, follow_redirects=True)
    assert "Canceled: it will not be sent, and the Case is told so." in done.text
    assert "operator at testclient canceled send" in caplog.text
    assert 'id="cancel"' not in done.text
