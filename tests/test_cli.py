"""The ``bridge`` command as a user runs it (a real subprocess)."""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from bridge._schema import LATEST_VERSION
from bridge.salesforce_om import parse_outbound_message
from bridge.sandbox.cases import sample_cases
from tests.conftest import BridgeProcess, python_command

MOBILE, _, _, UK = (c["Id"] for c in sample_cases())


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


# -- against a running bridge and the sandbox platforms ------------------------------------------


@pytest.mark.e2e
def test_check_passes_against_working_platforms(bridge_env: dict[str, str], tmp_path: Path) -> None:
    assert run("migrate", cwd=tmp_path, **bridge_env).returncode == 0
    result = run("check", cwd=tmp_path, **bridge_env)
    assert result.returncode == 0, result.stdout + result.stderr
    for area in ("Settings", "Store", "CCAI", "Salesforce", "Write-back fields", "Mapping fields", "Tasks"):
        assert re.search(rf"^ok\s+{area}\s", result.stdout, re.M), area
    assert "All checks passed." in result.stdout
    assert "sandbox-api-token" not in result.stdout + result.stderr


@pytest.mark.e2e
def test_check_names_what_is_wrong(bridge_env: dict[str, str], tmp_path: Path) -> None:
    mapping = tmp_path / "bridge.toml"
    mapping.write_text(
        '[mapping]\nmessage_template = "Hi {Contact.Nickname__c}"\n[writeback]\nchat_id_field = "Chat__c"\n'
    )
    env = {**bridge_env, "BRIDGE_CONFIG": str(mapping), "CCAI_OUTBOUND_NUMBER": "+1 212 555 0142"}
    result = run("check", "--json", cwd=tmp_path, **env)
    assert result.returncode == 1
    findings = {f["area"]: f for f in json.loads(result.stdout)}
    assert not findings["CCAI"]["ok"]
    assert "outbound_number is not found" in findings["CCAI"]["detail"]
    assert not findings["Write-back fields"]["ok"]
    assert "Chat__c" in findings["Write-back fields"]["detail"]
    assert findings["Mapping fields"]["ok"]  # Contact is a relationship of Case; its fields are not described
    wrong_token = run("check", cwd=tmp_path, **{**bridge_env, "CCAI_API_TOKEN": "wrong"})
    assert re.search(r"^FAIL\s+CCAI\s+.*credentials", wrong_token.stdout, re.M)


@pytest.mark.e2e
def test_send_list_show_and_retry_as_an_operator(
    start_bridge: Callable[..., BridgeProcess], bridge_env: dict[str, str], tmp_path: Path
) -> None:
    start_bridge()
    sent = run("send", MOBILE, "--message", "Hello from the CLI", "--wait", "10", cwd=tmp_path, **bridge_env)
    assert sent.returncode == 0, sent.stdout + sent.stderr
    assert re.search(r"Send (\d+) for Case 5005g00000SBX01AAH: sent", sent.stdout)
    failed = run("send", UK, "--wait", "10", cwd=tmp_path, **bridge_env)
    assert failed.returncode == 1
    assert "only US numbers can be texted" in failed.stdout

    listing = run("sends", "list", cwd=tmp_path, **bridge_env)
    assert listing.stdout.splitlines()[0].split()[:3] == ["ID", "CREATED", "AT"]
    assert len(listing.stdout.splitlines()) == 3
    rows = json.loads(run("sends", "list", "--status", "failed", "--json", cwd=tmp_path, **bridge_env).stdout)
    assert [(r["ticket_id"], r["status"]) for r in rows] == [(UK, "failed")]
    shown = json.loads(run("sends", "show", str(rows[0]["id"]), "--json", cwd=tmp_path, **bridge_env).stdout)
    assert shown["error"].startswith("The Case's ContactMobile")

    refused = run("sends", "retry", "1", cwd=tmp_path, **bridge_env)
    assert refused.returncode == 1
    assert "--force" in refused.stdout
    again = run("sends", "retry", "--status", "failed", cwd=tmp_path, **bridge_env)
    assert again.stdout.strip().endswith("1 failed send(s) queued again.")
    assert run("sends", "show", "9", cwd=tmp_path, **bridge_env).returncode == 1

    status = json.loads(run("status", "--json", cwd=tmp_path, **bridge_env).stdout)
    assert status["by_status"]["sent"] == 1
    assert len(status["workers"]) == 1  # the running bridge's embedded worker
    assert status["salesforce_api_usage"]["total"] == 100_000
    assert "Workers alive:       1" in run("status", cwd=tmp_path, **bridge_env).stdout
