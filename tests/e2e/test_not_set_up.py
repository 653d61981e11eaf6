"""A web dyno deployed before its credentials were set (Heroku's Deploy button starts it at once):
it stays up and says what is missing instead of crashing in a loop, and keeps the CRM retrying."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from bridge.sandbox.servers import free_port
from tests._processes import python_command, wait_for

pytestmark = pytest.mark.e2e

PASSWORD = "generated-by-heroku"


@pytest.fixture
def dyno(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """``bridge serve`` as Heroku starts it after a deploy: DYNO and a database set, nothing else."""
    port = free_port()
    base = {k: v for k, v in os.environ.items() if not k.startswith(("CCAI_", "SALESFORCE_", "BRIDGE_", "DATABASE"))}
    env = {
        **base,
        "DYNO": "web.1",
        # Heroku Postgres is attached by app.json; nothing may connect to it before the settings are complete.
        "DATABASE_URL": "postgres://nobody:secret@127.0.0.1:1/never",
        "BRIDGE_DASHBOARD_PASSWORD": PASSWORD,
    }
    process = subprocess.Popen(
        python_command("serve", "--host", "127.0.0.1", "--port", str(port)),
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _answers(url), what="the dyno to answer /healthz")
        yield url, process
    finally:
        process.terminate()
        process.wait(timeout=20)


def _answers(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def test_a_dyno_without_credentials_starts_and_the_dashboard_says_what_is_missing(
    dyno: tuple[str, subprocess.Popen[str]],
) -> None:
    url, process = dyno
    ready = httpx.get(f"{url}/readyz")
    assert ready.status_code == 503
    assert "CCAI_API_TOKEN" in ready.json()["problems"][0]

    assert httpx.get(f"{url}/dashboard").status_code == 401  # the deployer's generated password first
    page = httpx.get(f"{url}/dashboard", auth=("operator", PASSWORD))
    assert page.status_code == 503
    for name in ("CCAI_API_TOKEN", "CCAI_OUTBOUND_NUMBER", "SALESFORCE_ORG_IDS", "BRIDGE_WEBHOOK_TOKEN"):
        assert name in page.text
    assert "secret" not in page.text  # names of settings, never a value
    assert page.headers["content-security-policy"].startswith("default-src 'none'")

    # The CRM's push is refused with 503, so that Salesforce delivers it again once the bridge is set up.
    pushed = httpx.post(f"{url}/salesforce/outbound-message?token=x", content=b"<x/>")
    assert pushed.status_code == 503
    assert pushed.headers["retry-after"]
    assert process.poll() is None  # still up: no crash loop


def test_outside_a_dyno_serve_still_refuses_to_start_and_lists_what_is_missing(tmp_path: Path) -> None:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("CCAI_", "SALESFORCE_", "BRIDGE_", "DATABASE"))}
    base.pop("DYNO", None)
    result = subprocess.run(
        python_command("serve", "--port", str(free_port())),
        cwd=tmp_path,
        env=base,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "CCAI_API_TOKEN" in result.stderr
