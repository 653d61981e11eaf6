"""``python -m benchmarks calls``: Salesforce API calls per SMS, counted at the simulated org.

A burst of 100 Cases in one outbound message, then one agent send through the API.
"""

from __future__ import annotations

import ssl
import tempfile
import time
from pathlib import Path
from subprocess import Popen
from typing import Any

import httpx

from benchmarks._procs import bridge_env, start, start_sandbox, stop, wait_until_up
from bridge.crm.salesforce.ids import to18
from bridge.sandbox.cases import outbound_message
from bridge.sandbox.servers import SANDBOX_API_KEY, SANDBOX_WEBHOOK_TOKEN, free_port

IDLE_SAMPLES = 11  # single messages to an idle bridge, for the ack-to-CCAI delay


def run_calls(*, burst: int = 100) -> dict[str, Any]:
    directory = Path(tempfile.mkdtemp(prefix="bridge-bench-calls-"))
    processes: list[Popen[Any]] = []
    try:
        sandbox, info = start_sandbox(directory)
        processes.append(sandbox)
        org = httpx.Client(
            base_url=info["salesforce_url"], verify=ssl.create_default_context(cafile=info["ca_file"]), timeout=60
        )
        cases = [
            {
                "Id": to18(f"5005g0000C{i:05d}"),
                "CaseNumber": f"{i:08d}",
                "ContactMobile": f"+1 415-555-{i:04d}",
                "Owner.Type": "User",
                "Owner.Email": "agent@example.com",
            }
            for i in range(burst + 1 + IDLE_SAMPLES)
        ]
        org.post("/_sandbox/control", json={"cases": cases}).raise_for_status()
        port = free_port()
        # The chat sync's own calls are measured by the chats benchmark: here, only the SMS path.
        env = bridge_env(
            info,
            DATABASE_URL=f"sqlite:///{directory / 'bridge.db'}",
            CCAI_RATE_LIMIT="10",
            BRIDGE_CHAT_SYNC_SECONDS="0",
        )
        processes.append(start(["serve", "--host", "127.0.0.1", "--port", str(port)], env=env, log=directory / "b.log"))
        base = f"http://127.0.0.1:{port}"
        wait_until_up(f"{base}/healthz")

        ids = [c["Id"] for c in cases[:burst]]
        before = _calls(org)
        httpx.post(
            f"{base}/salesforce/outbound-message",
            params={"token": SANDBOX_WEBHOOK_TOKEN},
            content=outbound_message(ids),
            headers={"Content-Type": "text/xml"},
            timeout=60,
        ).raise_for_status()
        _wait_written(org, ids, expected_tasks=burst)
        burst_calls = _calls(org) - before

        before = _calls(org)
        answer = httpx.post(
            f"{base}/api/v1/sends",
            params={"wait": "20"},
            json={"ticket_id": cases[burst]["Id"]},
            headers={"Authorization": f"Bearer {SANDBOX_API_KEY}"},
            timeout=60,
        )
        _wait_written(org, [cases[burst]["Id"]], expected_tasks=burst + 1)
        single_calls = _calls(org) - before

        idle = []
        ccai = httpx.Client(base_url=info["ccai_url"], timeout=30)
        for case in cases[burst + 1 :]:
            time.sleep(1.5)  # let the worker go idle between samples
            httpx.post(
                f"{base}/salesforce/outbound-message",
                params={"token": SANDBOX_WEBHOOK_TOKEN},
                content=outbound_message([case["Id"]]),
                headers={"Content-Type": "text/xml"},
                timeout=60,
            ).raise_for_status()
            acked = time.time()
            idle.append(_accepted_at(ccai, case["Id"]) - acked)
        idle.sort()
        return {
            "burst_cases": burst,
            "burst_salesforce_calls": burst_calls,
            "burst_calls_per_sms": round(burst_calls / burst, 3),
            "agent_send_status": answer.json().get("status"),
            "agent_send_salesforce_calls": single_calls,
            "idle_ack_to_ccai_p50_ms": round(idle[len(idle) // 2] * 1000, 1),
            "idle_ack_to_ccai_max_ms": round(idle[-1] * 1000, 1),
        }
    finally:
        stop(processes)


def _accepted_at(ccai: httpx.Client, case_id: str, timeout: float = 30) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for sms in ccai.get("/_sandbox/state").json()["accepted"]:
            if sms["ticket_id"] == case_id:
                return float(sms["at"])
        time.sleep(0.01)
    raise RuntimeError("the SMS did not reach the simulated CCAI in time")


def _calls(org: httpx.Client) -> int:
    return len(org.get("/_sandbox/state").json()["calls"])


def _wait_written(org: httpx.Client, ids: list[str], *, expected_tasks: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = org.get("/_sandbox/state").json()
        if all(state["cases"][i].get("CCAI_SMS_Status__c") for i in ids) and len(state["tasks"]) >= expected_tasks:
            return
        time.sleep(0.2)
    raise RuntimeError("the write-backs did not arrive in time")
