"""The ``bridge`` command as a user runs it (a real subprocess)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from bridge._schema import LATEST_VERSION
from bridge.salesforce_om import parse_outbound_message
from bridge.sandbox.cases import sample_cases
from tests.conftest import python_command


def run(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("CCAI_", "SALESFORCE_", "BRIDGE_", "DATABASE"))}
    return subprocess.run(
        python_command(*args), cwd=cwd, env={**base, **env}, capture_output=True, text=True, timeout=60, check=False
    )


def test_serve_without_configuration_lists_what_is_missing(tmp_path: Path) -> None:
    result = run("serve", cwd=tmp_path)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    for name in ("CCAI_API_TOKEN", "SALESFORCE_ACCESS_TOKEN", "SALESFORCE_ORG_IDS", "BRIDGE_WEBHOOK_TOKEN"):
        assert name in result.stderr
    assert "bridge serve --sandbox" in result.stderr


def test_an_invalid_value_is_named_without_a_traceback(tmp_path: Path) -> None:
    result = run("serve", cwd=tmp_path, CCAI_OUTBOUND_NUMBER="12345")
    assert result.returncode == 2
    assert "CCAI_OUTBOUND_NUMBER" in result.stderr
    assert "Traceback" not in result.stderr


def test_migrate_creates_the_store_and_is_repeatable(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'x.db'}"
    for _ in range(2):
        result = run("migrate", cwd=tmp_path, DATABASE_URL=url)
        assert result.returncode == 0, result.stderr
        assert f"version {LATEST_VERSION}" in result.stdout
    assert (tmp_path / "x.db").exists()


def test_migrate_refuses_an_unknown_database_url(tmp_path: Path) -> None:
    result = run("migrate", cwd=tmp_path, DATABASE_URL="mysql://x")
    assert result.returncode == 2
    assert "DATABASE_URL" in result.stderr


def test_sample_message_prints_a_valid_outbound_message(tmp_path: Path) -> None:
    result = run("sample-message", cwd=tmp_path)
    assert result.returncode == 0
    _, notes = parse_outbound_message(result.stdout.encode())
    assert [n.ticket_id for n in notes] == [c["Id"] for c in sample_cases()[:3]]
