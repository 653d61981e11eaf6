"""``python -m benchmarks zendesk``: Zendesk API calls per SMS, counted at the simulated account, and
how fast the webhook door acknowledges (Zendesk gives up after about 10 s).

A burst of tickets each asked for by an agent (the example trigger fires one signed webhook per
ticket), then one agent send through the API; then signed webhooks posted straight to the door,
one at a time and then concurrently, timed from request to 200 (committed).
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import ssl
import statistics
import tempfile
import time
from pathlib import Path
from subprocess import Popen
from typing import Any

import httpx

from benchmarks._procs import bridge_env, start, stop, wait_until_up
from bridge.crm.zendesk.webhook import signature
from bridge.sandbox.servers import SANDBOX_API_KEY, free_port
from bridge.sandbox.zendesk_account import (
    FIRST_BRIDGE_FIELD_ID,
    SANDBOX_ADMIN_EMAIL,
    SANDBOX_AGENT_ID,
    SANDBOX_API_TOKEN,
    stamp,
    ticket_json,
    user_json,
)

STATUS_FIELD = FIRST_BRIDGE_FIELD_ID + 1
FIRST_TICKET = 20000


def run_zendesk(*, burst: int = 100, acks: int = 300, concurrency: int = 8) -> dict[str, Any]:
    directory = Path(tempfile.mkdtemp(prefix="bridge-bench-zendesk-"))
    processes: list[Popen[Any]] = []
    try:
        sandbox = start(["sandbox", "--dir", str(directory)], env={**os.environ, "BRIDGE_CRM": "zendesk"})
        processes.append(sandbox)
        assert sandbox.stdout is not None
        info = json.loads(sandbox.stdout.readline())
        context = ssl.create_default_context(cafile=info["ca_file"])
        admin = (f"{SANDBOX_ADMIN_EMAIL}/token", SANDBOX_API_TOKEN)
        account = httpx.Client(base_url=info["zendesk_url"], verify=context, timeout=60, auth=admin)
        wait_until_up(f"{info['ccai_url']}/_sandbox/state")
        count = burst + 1
        users = [user_json(FIRST_TICKET + i, f"Customer {i}", phone=f"+1 415-555-{i:04d}") for i in range(count)]
        tickets = [
            ticket_json(FIRST_TICKET + i, f"Ticket {i}", requester_id=FIRST_TICKET + i, assignee_id=SANDBOX_AGENT_ID)
            for i in range(count)
        ]
        account.post("/_sandbox/control", json={"users": users, "tickets": tickets}).raise_for_status()

        port = free_port()
        base = f"http://127.0.0.1:{port}"
        # The chat sync's own calls are another matter (the chats benchmark): here, only the SMS path.
        env = bridge_env(info, DATABASE_URL=f"sqlite:///{directory / 'bridge.db'}", BRIDGE_CHAT_SYNC_SECONDS="0")
        processes.append(start(["serve", "--host", "127.0.0.1", "--port", str(port)], env=env, log=directory / "b.log"))
        wait_until_up(f"{base}/healthz")
        [webhook] = account.get("/api/v2/webhooks").json()["webhooks"]
        account.patch(f"/api/v2/webhooks/{webhook['id']}", json={"webhook": {"endpoint": f"{base}/zendesk/webhook"}})

        ids = [FIRST_TICKET + i for i in range(burst)]
        before = _calls(account)
        for ticket in ids:
            account.post(f"/_sandbox/tickets/{ticket}", json={"additional_tags": ["ccai_text_customer"]})
        _wait_written(account, ids)
        burst_calls = _calls(account) - before

        before = _calls(account)
        answer = httpx.post(
            f"{base}/api/v1/sends",
            params={"wait": "20"},
            json={"ticket_id": str(FIRST_TICKET + burst)},
            headers={"Authorization": f"Bearer {SANDBOX_API_KEY}"},
            timeout=60,
        )
        _wait_written(account, [FIRST_TICKET + burst])
        single_calls = _calls(account) - before

        secret = env["ZENDESK_WEBHOOK_SECRET"]
        door = httpx.Client(base_url=base, timeout=30)
        sequential = [_ack(door, secret, n, FIRST_TICKET) for n in range(acks)]
        with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
            clients = [httpx.Client(base_url=base, timeout=30) for _ in range(concurrency)]
            loaded = list(
                pool.map(lambda n: _ack(clients[n % concurrency], secret, acks + n, FIRST_TICKET), range(acks))
            )
        return {
            "burst_tickets": burst,
            "burst_zendesk_calls": burst_calls,
            "burst_calls_per_sms": round(burst_calls / burst, 3),
            "agent_send_status": answer.json().get("status"),
            "agent_send_zendesk_calls": single_calls,
            "webhook_acks": acks,
            "ack_p50_ms": _percentile(sequential, 50),
            "ack_p99_ms": _percentile(sequential, 99),
            f"ack_p50_ms_{concurrency}_concurrent": _percentile(loaded, 50),
            f"ack_p99_ms_{concurrency}_concurrent": _percentile(loaded, 99),
            "ack_mean_ms": round(statistics.mean(sequential), 1),
        }
    finally:
        stop(processes)


def _ack(client: httpx.Client, secret: str, n: int, ticket: int) -> float:
    body = json.dumps({"ticket_id": str(ticket)}).encode()
    timestamp = stamp(time.time())
    headers = {
        "Content-Type": "application/json; charset=utf-8",
        "X-Zendesk-Account-Id": "90210001",
        "X-Zendesk-Webhook-Invocation-Id": f"BENCH{n:021d}",
        "X-Zendesk-Webhook-Signature-Timestamp": timestamp,
        "X-Zendesk-Webhook-Signature": signature(secret, timestamp, body),
    }
    started = time.perf_counter()
    client.post("/zendesk/webhook", content=body, headers=headers).raise_for_status()
    return (time.perf_counter() - started) * 1000


def _percentile(samples: list[float], percent: int) -> float:
    ordered = sorted(samples)
    return round(ordered[min(len(ordered) - 1, len(ordered) * percent // 100)], 1)


def _calls(account: httpx.Client) -> int:
    return len(account.get("/_sandbox/state").json()["calls"])


def _wait_written(account: httpx.Client, ids: list[int], timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        tickets = account.get("/_sandbox/state").json()["tickets"]
        if all(_status(tickets[str(i)]) for i in ids):
            return
        time.sleep(0.2)
    raise RuntimeError("the write-backs did not arrive in time")


def _status(ticket: dict[str, Any]) -> Any:
    return next((f["value"] for f in ticket["custom_fields"] if f["id"] == STATUS_FIELD), None)
