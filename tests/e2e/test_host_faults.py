"""Faults of the bridge's hosts and inputs, found by the reliability audit, as real processes on
127.0.0.1 and a real PostgreSQL: a long hostname, a NUL in Case text. Each test broke a promise on
the code before the fix.
"""

from __future__ import annotations

import time

import httpx
import pytest

from bridge.sandbox.cases import outbound_message
from bridge.sandbox.servers import SANDBOX_API_KEY
from tests._processes import (
    ClusterFactory,
    SandboxProcess,
    all_written,
    chats_created,
    extra_cases,
    wait_for,
    worker_with,
)

pytestmark = pytest.mark.e2e

KEY = SANDBOX_API_KEY


def test_a_long_hostname_stops_nothing(sandbox: SandboxProcess, cluster_on: ClusterFactory) -> None:
    """A8: a worker owner id built from a 68-character FQDN no longer overflows a column."""
    cluster = cluster_on(sandbox)
    cases = extra_cases(sandbox, 3, start=940)
    web = cluster.start_web()
    host = "a-very-long-host-name-of-a-container." + "x" * 24 + ".internal"
    assert len(host) >= 68
    cluster.start_worker(command=worker_with(f"import socket\nsocket.gethostname = lambda: {host!r}"))
    assert web.post_xml(outbound_message(cases)).status_code == 200
    wait_for(lambda: all_written(sandbox, cases), timeout=30, what="the sends of the long-named worker")
    assert chats_created(sandbox) == 3


def test_a_nul_in_case_text_is_texted_once(sandbox: SandboxProcess, cluster_on: ClusterFactory) -> None:
    """A1: PostgreSQL cannot store NUL; the bridge used to re-send such a message every lease."""
    cluster = cluster_on(sandbox)
    case = "5005g00000NULL1AAA"
    sandbox.salesforce_control(
        cases=[{"Id": case, "CaseNumber": "0000\u00001001", "ContactMobile": "+1 415 555 0177", "Owner.Type": "Queue"}]
    )
    web = cluster.start_web()
    cluster.start_worker()
    assert web.post_xml(outbound_message([case])).status_code == 200
    wait_for(lambda: all_written(sandbox, [case]), timeout=30, what="the Case update")
    assert sandbox.case(case)["CCAI_SMS_Status__c"] == "Sent"
    [sms] = sandbox.ccai_state()["accepted"]
    assert "\u0000" not in sms["message"]
    sandbox.ccai_control(end_sessions=True)
    time.sleep(4)  # longer than a lease: nothing is taken up again
    assert chats_created(sandbox) == 1
    refused = httpx.post(
        f"{web.url}/api/v1/sends",
        json={"ticket_id": case, "message": "a\u0000b"},
        headers={"Authorization": f"Bearer {KEY}"},
    )
    assert refused.status_code == 400
