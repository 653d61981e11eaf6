"""The ``bridge`` command against running platforms: ``bridge check`` as a user runs it (a real
process), and the operator commands beside a running ``bridge serve`` on the same store."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from bridge.sandbox.cases import sample_cases
from tests._apps import Bridge, clean_environment, command_line
from tests._processes import BridgeProcess, SandboxProcess, python_command, wait_for

pytestmark = pytest.mark.e2e

MOBILE, _, _, UK = (c["Id"] for c in sample_cases()[:4])


def run(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("CCAI_", "SALESFORCE_", "BRIDGE_", "DATABASE"))}
    return subprocess.run(
        python_command(*args), cwd=cwd, env={**base, **env}, capture_output=True, text=True, timeout=60, check=False
    )


def test_check_passes_against_working_platforms(bridge_env: dict[str, str], tmp_path: Path) -> None:
    assert run("migrate", cwd=tmp_path, **bridge_env).returncode == 0
    result = run("check", cwd=tmp_path, **bridge_env)
    assert result.returncode == 0, result.stdout + result.stderr
    for area in ("Settings", "Store", "CCAI", "Salesforce", "Write-back fields", "Mapping fields", "Tasks"):
        assert re.search(rf"^ok\s+{area}\s", result.stdout, re.M), area
    assert "All checks passed." in result.stdout
    assert "sandbox-api-token" not in result.stdout + result.stderr


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


def test_check_reads_the_chat_list_and_names_the_host_and_the_cause(
    sandbox: SandboxProcess, bridge_env: dict[str, str], tmp_path: Path
) -> None:
    """Issue 20 item 6: a broken Manager API URL passed `bridge check` (only the SMS endpoint was probed)."""
    assert run("migrate", cwd=tmp_path, **bridge_env).returncode == 0
    good = json.loads(run("check", "--json", cwd=tmp_path, **bridge_env).stdout)
    findings = {f["area"]: f for f in good}
    assert findings["CCAI chat list"]["ok"], findings["CCAI chat list"]
    assert findings["Lost-answer lookup"]["ok"]
    assert "unproven" in findings["Lost-answer lookup"]["detail"]
    ccai = sandbox.info["ccai_url"]
    causes = {
        f"{ccai}/wrong/api/v1": ("127.0.0.1", "HTTP 404"),
        "http://ccai-bridge-check.invalid/manager/api/v1": ("ccai-bridge-check.invalid", "DNS"),
        "http://127.0.0.1:9/manager/api/v1": ("127.0.0.1", "refused"),
        f"{sandbox.info['salesforce_url']}/manager/api/v1": ("127.0.0.1", "TLS"),
    }
    for url, (host, cause) in causes.items():
        result = run("check", "--json", cwd=tmp_path, **{**bridge_env, "CCAI_MANAGER_URL": url})
        assert result.returncode == 1, url
        finding = {f["area"]: f for f in json.loads(result.stdout)}["CCAI chat list"]
        assert not finding["ok"]
        assert host in finding["detail"], finding
        assert cause in finding["detail"], finding
    wrong_token = run("check", "--json", cwd=tmp_path, **{**bridge_env, "CCAI_API_TOKEN": "wrong"})
    finding = {f["area"]: f for f in json.loads(wrong_token.stdout)}["CCAI chat list"]
    assert "HTTP 401" in finding["detail"]
    assert "CCAI_API_TOKEN" in finding["detail"]


def test_check_makes_no_call_to_ccai_while_its_settings_are_incomplete(
    bridge_env: dict[str, str], tmp_path: Path
) -> None:
    """Issue 20 item 6: with CCAI_API_TOKEN empty, `bridge check` still sent its probe (anonymously)."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    calls: list[object] = []
    done = threading.Event()

    def count() -> None:
        while not done.is_set():
            try:
                connection, _ = listener.accept()
            except OSError:
                continue
            calls.append(connection)
            connection.close()

    counter = threading.Thread(target=count, daemon=True)
    counter.start()
    try:
        port = listener.getsockname()[1]
        env = {**bridge_env, "CCAI_API_TOKEN": "", "CCAI_BASE_URL": f"http://127.0.0.1:{port}/apps/api/v1"}
        env.pop("CCAI_MANAGER_URL", None)
        result = run("check", "--json", cwd=tmp_path, **env)
    finally:
        done.set()
        counter.join()
        listener.close()
    assert result.returncode == 1
    finding = {f["area"]: f for f in json.loads(result.stdout)}["CCAI"]
    assert "CCAI_API_TOKEN" in finding["detail"]
    assert calls == []


# -- the operator commands, in-process, beside a running bridge ---------------------------------


@pytest.fixture
def operator(
    bridge_env: dict[str, str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Bridge:
    """``operator(*args)``: the command line in-process, configured like the running bridge."""
    workdir = tmp_path / "operator"
    workdir.mkdir()

    def like_the_bridge() -> None:
        # Set up at the call, not before: bridges started earlier keep the test's environment and directory.
        clean_environment(monkeypatch, workdir)
        for name, value in bridge_env.items():
            if name.startswith(("CCAI_", "SALESFORCE_", "BRIDGE_", "DATABASE_URL")):
                monkeypatch.setenv(name, value)

    return command_line(capsys, like_the_bridge)


def test_send_list_show_and_retry_as_an_operator(start_bridge: Callable[..., BridgeProcess], operator: Bridge) -> None:
    start_bridge()
    sent = operator("send", MOBILE, "--message", "Hello from the CLI", "--wait", "10")
    assert sent.code == 0, sent.out + sent.err
    assert re.search(r"Send (\d+) for Case 5005g00000SBX01AAH: sent", sent.out)
    failed = operator("send", UK, "--wait", "10")
    assert failed.code == 1
    assert "only US numbers can be texted" in failed.out

    listing = operator("sends", "list")
    assert listing.out.splitlines()[0].split()[:3] == ["ID", "CREATED", "AT"]
    assert len(listing.out.splitlines()) == 3
    rows = operator("sends", "list", "--status", "failed", "--json").json()
    assert [(r["ticket_id"], r["status"]) for r in rows] == [(UK, "failed")]
    shown = operator("sends", "show", str(rows[0]["id"]), "--json").json()
    assert shown["error"].startswith("The Case's ContactMobile")

    refused = operator("sends", "retry", "1")
    assert refused.code == 1
    assert "--force" in refused.err
    # In bulk, a GB number is left alone (no retry can change it); by its id the operator decides.
    plan = operator("sends", "retry", "--status", "failed", "--dry-run", "--json").json()
    assert (plan["would_retry"], plan["sends"][0]["why_not"]) == (
        0,
        "a retry cannot help: the number cannot be texted (not a US number)",
    )
    again = operator("sends", "retry", "--status", "failed")
    assert again.out.strip().endswith("0 failed send(s) queued again.")
    assert operator("sends", "retry", str(rows[0]["id"])).out.strip().endswith("is queued again.")
    assert operator("sends", "show", "9").code == 1

    status = wait_for(
        lambda: (s := operator("status", "--json").json())["salesforce_api_usage"] and s, what="the API usage"
    )
    assert status["by_status"]["sent"] == 1
    assert isinstance(status["workers"], dict)
    assert len(status["workers"]) == 1  # the running bridge's embedded worker, keyed by its id
    assert status["salesforce_api_usage"]["total"] == 100_000
    assert "Workers alive:       1" in operator("status").out
