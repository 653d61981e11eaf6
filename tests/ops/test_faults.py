"""``bridge sandbox fault``: the switches reach the simulated CCAI and make it answer as asked."""

from __future__ import annotations

import base64

import pytest
from starlette.testclient import TestClient

from bridge.errors import UsageError
from bridge.ops.faults import control_body, control_url
from bridge.sandbox.ccai import CCAISimulator, create_ccai_app

SMS = {
    "end_user_number": "+14155550100",
    "outbound_number": "+16285550199",
    "message": "hi",
    "chat_type": "Messaging (SMS)",
}
AUTH = {"Authorization": "Basic " + base64.b64encode(b"acme:token").decode()}


def test_the_switches_are_the_simulators_own_steps() -> None:
    assert control_body("429", times=None, seconds=60) == {"fault": {"status": 429, "message": "Too Many Requests"}}
    assert control_body("503", times=2, seconds=60)["script"] == [{"status": 503, "message": "Service Unavailable"}] * 2
    assert control_body("outage", times=None, seconds=30) == {"outage": {"seconds": 30}}
    assert control_body("off", times=None, seconds=60)["fault"] is None


def test_the_sandbox_is_found_through_its_settings_or_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CCAI_BASE_URL", "http://127.0.0.1:41234/apps/api/v1")
    assert control_url(None) == "http://127.0.0.1:41234/_sandbox/control"
    monkeypatch.delenv("CCAI_BASE_URL")
    with pytest.raises(UsageError, match="Which sandbox"):
        control_url(None)


def test_a_429_switch_makes_the_simulated_ccai_throttle_until_off() -> None:
    sim = CCAISimulator(subdomain="acme", api_token="token", outbound_numbers={"+16285550199"}, rate_limit=1000)
    client = TestClient(create_ccai_app(sim))
    assert client.post("/_sandbox/control", json=control_body("429", times=None, seconds=60)).status_code == 200
    assert client.post("/apps/api/v1/sms", json=SMS, headers=AUTH).status_code == 429
    assert client.post("/_sandbox/control", json=control_body("off", times=None, seconds=60)).status_code == 200
    assert client.post("/apps/api/v1/sms", json=SMS, headers=AUTH).status_code != 429
