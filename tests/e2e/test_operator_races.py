"""An operator's action racing the pipeline (reliability audit 2: R11), as real processes on
127.0.0.1 and a real PostgreSQL: a retry while the retried outcome is still being written to the
Case. The test left the Case saying "Failed" for an SMS that went out, on the code before the fix.
"""

from __future__ import annotations

import subprocess
import time

import pytest

from bridge.sandbox.cases import outbound_message
from tests._processes import (
    ClusterFactory,
    SandboxProcess,
    chats_created,
    extra_cases,
    python_command,
    wait_for,
)

pytestmark = pytest.mark.e2e


def _composite_writes(sandbox: SandboxProcess) -> int:
    return sum(1 for call in sandbox.salesforce_state()["calls"] if call["path"].endswith("/composite"))


def test_a_retry_racing_the_old_outcomes_write_back_leaves_the_case_showing_the_new_one(
    sandbox: SandboxProcess, cluster_on: ClusterFactory
) -> None:
    """R11: a send fails ("SMS is not enabled") and its write-back to the Case takes 5 s. Meanwhile
    the operator fixes the tenant and runs `bridge sends retry 1`; another worker sends the SMS and
    writes "Sent". The slow "Failed" lands last: the Case must still end up showing "Sent"."""
    cluster = cluster_on(sandbox)
    [case] = extra_cases(sandbox, 1, start=1400)
    sandbox.ccai_control(sms_enabled=False)
    sandbox.salesforce_control(slow_next=[{"path": "/composite", "seconds": 5}])
    web = cluster.start_web()
    cluster.start_worker()
    cluster.start_worker()
    assert web.post_xml(outbound_message([case])).status_code == 200
    wait_for(lambda: _composite_writes(sandbox) >= 1, timeout=30, what="the slow write of 'Failed'")
    slow_write_started = time.monotonic()
    sandbox.ccai_control(sms_enabled=True)
    retried = subprocess.run(
        python_command("sends", "retry", "1"), env=cluster.env, capture_output=True, text=True, timeout=60
    )
    assert "queued again" in retried.stdout, retried.stdout + retried.stderr
    wait_for(lambda: chats_created(sandbox) == 1, timeout=30, what="the retried SMS")
    wait_for(lambda: time.monotonic() > slow_write_started + 7, timeout=30, what="the slow write to land")
    wait_for(lambda: sandbox.case(case).get("CCAI_SMS_Status__c") == "Sent", timeout=15, what="the Case to show Sent")
    assert sandbox.case(case)["CCAI_Chat_Id__c"] == str(sandbox.ccai_state()["accepted"][0]["chat_id"])
