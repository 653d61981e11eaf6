"""``bridge salesforce setup`` as an admin runs it (a real process), against the sandbox org over
TLS, starting from the org exactly as ``sf project deploy start`` leaves it; then ``bridge check``."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from bridge.sandbox.salesforce import SANDBOX_ADMIN_TOKEN
from bridge.sandbox.servers import SANDBOX_WEBHOOK_TOKEN
from tests._processes import SandboxProcess, python_command

pytestmark = pytest.mark.e2e

INTEGRATION, AGENT, CCAI = "bridge@acme.example", "agent@acme.example", "ccai@acme.example"
PUBLIC_URL = "https://bridge.acme.example"
ENDPOINT = f"{PUBLIC_URL}/salesforce/outbound-message?token={SANDBOX_WEBHOOK_TOKEN}"


def run(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("CCAI_", "SALESFORCE_", "BRIDGE_", "DATABASE"))}
    return subprocess.run(
        python_command(*args), cwd=cwd, env={**base, **env}, capture_output=True, text=True, timeout=60, check=False
    )


@pytest.fixture
def deployed(sandbox: SandboxProcess, bridge_env: dict[str, str]) -> dict[str, str]:
    """The org right after the deploy, with the users an admin created; the bridge's settings plus
    the admin's session and the bridge's public URL."""
    sandbox.salesforce_control(setup="as_deployed", users=[INTEGRATION, AGENT, CCAI])
    return {
        **bridge_env,
        "SALESFORCE_ADMIN_ACCESS_TOKEN": SANDBOX_ADMIN_TOKEN,
        "BRIDGE_PUBLIC_URL": PUBLIC_URL,
        "BRIDGE_API_KEY": "the-send-sms-key",
    }


def setup(cwd: Path, env: dict[str, str], *extra: str) -> subprocess.CompletedProcess[str]:
    return run(
        "salesforce",
        "setup",
        "--integration-user",
        INTEGRATION,
        "--agent",
        AGENT,
        "--ccai-user",
        CCAI,
        *extra,
        cwd=cwd,
        env=env,
    )


def test_setup_finishes_a_freshly_deployed_org_and_check_then_passes(
    sandbox: SandboxProcess, deployed: dict[str, str], tmp_path: Path
) -> None:
    assert run("migrate", cwd=tmp_path, env=deployed).returncode == 0
    before = run("check", cwd=tmp_path, env=deployed)
    assert re.search(r"^FAIL\s+Flow\s+no trigger is active", before.stdout, re.M), before.stdout
    assert re.search(r"^FAIL\s+Outbound message endpoint\s+it posts to https://YOUR-BRIDGE-HOST", before.stdout, re.M)

    done = setup(tmp_path, deployed, "--activate", "outbound-message", "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    steps = {step["step"]: step for step in json.loads(done.stdout)["steps"]}
    assert {step["outcome"] for step in steps.values()} == {"done"}
    assert len(json.loads(done.stdout)["manual"]) == 3
    state = sandbox.salesforce_state()["setup"]
    assert state["assignments"] == sorted(
        [f"CCAI_Bridge_Integration:{INTEGRATION}", f"CCAI_Bridge_Agent:{AGENT}", f"CCAI_Platform_Integration:{CCAI}"]
    )
    assert state["credentials"] == {"CCAI_Bridge_Auth/Bridge": ["ApiKey"]}
    assert state["outbound_message_endpoint"] == ENDPOINT
    assert state["active_flows"] == ["CCAI_Bridge_Text_Customer"]
    # The key and the token reach Salesforce, never the command's output.
    assert "the-send-sms-key" not in done.stdout + done.stderr
    assert SANDBOX_WEBHOOK_TOKEN not in done.stdout + done.stderr

    after = run("check", cwd=tmp_path, env=deployed)
    # The one step left that bridge check can see: the Send SMS action on a Case page layout.
    assert re.search(r"^FAIL\s+Send SMS action\s+not on any Case page layout", after.stdout, re.M), after.stdout
    assert re.search(r"^ok\s+Flow\s+CCAI_Bridge_Text_Customer is active", after.stdout, re.M), after.stdout
    assert re.search(rf"^ok\s+Outbound message endpoint\s+{re.escape(PUBLIC_URL)}", after.stdout, re.M)


def test_setup_runs_again_changing_only_what_differs(
    sandbox: SandboxProcess, deployed: dict[str, str], tmp_path: Path
) -> None:
    assert setup(tmp_path, deployed, "--activate", "outbound-message").returncode == 0
    changes = len(sandbox.salesforce_state()["setup"]["changes"])
    again = setup(tmp_path, deployed, "--activate", "outbound-message")
    assert again.returncode == 0, again.stdout + again.stderr
    assert again.stdout.count("unchanged ") == 5  # three assignments, the endpoint, the trigger
    # The key is written again (Salesforce never returns it, so it cannot be compared): one change.
    assert len(sandbox.salesforce_state()["setup"]["changes"]) == changes + 1

    switched = setup(tmp_path, deployed, "--activate", "pubsub")
    assert switched.returncode == 0
    assert (
        "CCAI_Bridge_Publish_SMS_Request activated (version 1); CCAI_Bridge_Text_Customer deactivated"
        in (switched.stdout)
        or "CCAI_Bridge_Text_Customer deactivated; CCAI_Bridge_Publish_SMS_Request activated" in switched.stdout
    )
    assert sandbox.salesforce_state()["setup"]["active_flows"] == ["CCAI_Bridge_Publish_SMS_Request"]


def test_the_integration_users_session_cannot_change_setup(
    sandbox: SandboxProcess, deployed: dict[str, str], tmp_path: Path
) -> None:
    env = {**deployed, "SALESFORCE_ADMIN_ACCESS_TOKEN": deployed["SALESFORCE_ACCESS_TOKEN"]}
    refused = setup(tmp_path, env, "--activate", "outbound-message")
    assert refused.returncode == 1
    assert "failed    CCAI_Bridge_Integration for bridge@acme.example: INSUFFICIENT_ACCESS" in refused.stdout
    state = sandbox.salesforce_state()["setup"]
    assert (state["assignments"], state["active_flows"], state["credentials"]) == ([], [], {})


def test_an_unknown_user_and_a_missing_session_are_named(deployed: dict[str, str], tmp_path: Path) -> None:
    unknown = run("salesforce", "setup", "--integration-user", "nobody@acme.example", cwd=tmp_path, env=deployed)
    assert unknown.returncode == 1
    assert "failed    CCAI_Bridge_Integration for nobody@acme.example: there is no user nobody@acme.example" in (
        unknown.stdout
    )
    no_session = {k: v for k, v in deployed.items() if k != "SALESFORCE_ADMIN_ACCESS_TOKEN"}
    missing = run("salesforce", "setup", "--integration-user", INTEGRATION, cwd=tmp_path, env=no_session)
    assert missing.returncode == 2
    assert "SALESFORCE_ADMIN_ACCESS_TOKEN is not set" in missing.stderr
