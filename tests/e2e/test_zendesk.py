"""End to end with Zendesk, as deployed: ``bridge sandbox`` (CCAI, and Zendesk over HTTPS with a
test CA) and ``bridge serve`` as real processes on 127.0.0.1. Agents' edits fire the account's
trigger, whose signed webhook reaches the bridge; the bridge texts, and writes back with safe updates.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import os
import ssl
import subprocess
import zoneinfo
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from bridge.sandbox.zendesk_account import FIRST_BRIDGE_FIELD_ID, SANDBOX_ADMIN_EMAIL, SANDBOX_API_TOKEN
from bridge.store import Store
from tests._processes import LOCAL, BridgeProcess, python_command, stop_process, wait_for

pytestmark = pytest.mark.e2e

STATUS_FIELD, ERROR_FIELD, CHAT_ID_FIELD = FIRST_BRIDGE_FIELD_ID + 1, FIRST_BRIDGE_FIELD_ID + 2, FIRST_BRIDGE_FIELD_ID
REQUEST = {"additional_tags": ["ccai_text_customer"]}  # what the agent does: the example trigger reacts


@dataclass
class ZendeskSandbox:
    """``bridge sandbox`` with BRIDGE_CRM=zendesk in its own process."""

    process: subprocess.Popen[str]
    info: dict[str, Any]

    @functools.cached_property
    def zendesk(self) -> httpx.Client:
        context = ssl.create_default_context(cafile=str(self.info["ca_file"]))
        return httpx.Client(base_url=self.info["zendesk_url"], verify=context, timeout=10)

    def state(self) -> dict[str, Any]:
        return dict(self.zendesk.get("/_sandbox/state").json())

    def control(self, **changes: Any) -> None:
        self.zendesk.post("/_sandbox/control", json=changes).raise_for_status()

    def agent_edit(self, ticket: int, **changes: Any) -> None:
        self.zendesk.post(f"/_sandbox/tickets/{ticket}", json=changes).raise_for_status()

    def ccai(self) -> dict[str, Any]:
        return dict(LOCAL.get(f"{self.info['ccai_url']}/_sandbox/state", timeout=10).json())

    def ccai_control(self, **changes: Any) -> None:
        LOCAL.post(f"{self.info['ccai_url']}/_sandbox/control", json=changes, timeout=10).raise_for_status()

    def field(self, ticket: int, field_id: int) -> Any:
        fields = self.state()["tickets"][str(ticket)]["custom_fields"]
        return next(f["value"] for f in fields if f["id"] == field_id)

    def sms_per_ticket(self) -> Counter[str]:
        return Counter(sms["ticket_id"] for sms in self.ccai()["accepted"])


@pytest.fixture
def zendesk(tmp_path: Path) -> Iterator[ZendeskSandbox]:
    env = {**os.environ, "BRIDGE_CRM": "zendesk"}
    process = subprocess.Popen(
        python_command("sandbox", "--dir", str(tmp_path / "tls")),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    try:
        assert process.stdout is not None
        handle = ZendeskSandbox(process=process, info=json.loads(process.stdout.readline()))
        wait_for(lambda: _reachable(handle), what="the sandbox platforms")
        yield handle
    finally:
        if "handle" in locals():
            handle.zendesk.close()
        stop_process(process)


def _reachable(handle: ZendeskSandbox) -> bool:
    try:
        handle.state()
        handle.ccai()
    except httpx.HTTPError:
        return False
    return True


def environment(sandbox: ZendeskSandbox, directory: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CCAI_", "SALESFORCE_", "BRIDGE_", "ZENDESK_"))}
    env.update({k: str(v) for k, v in sandbox.info["settings"].items()})
    env.update(
        {
            "DATABASE_URL": f"sqlite:///{directory / 'bridge.db'}",
            "BRIDGE_POLL_SECONDS": "0.2",
            "BRIDGE_LEASE_SECONDS": "3",
            "CCAI_TIMEOUT_SECONDS": "2",
            "CCAI_RETRY_FOR_SECONDS": "20",
            "PYTHONUNBUFFERED": "1",
            **extra,
        }
    )
    return env


def start(sandbox: ZendeskSandbox, directory: Path, **extra: str) -> BridgeProcess:
    """The bridge, and `bridge zendesk setup` pointing the account's webhook at it."""
    bridge = BridgeProcess(env=environment(sandbox, directory, **extra), log_path=directory / "bridge.log").start()
    setup = subprocess.run(
        python_command("zendesk", "setup", "--url", bridge.url),
        env=bridge.env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert setup.returncode == 0, setup.stderr
    assert f"ZENDESK_WEBHOOK_SECRET={bridge.env['ZENDESK_WEBHOOK_SECRET']}" in setup.stdout
    return bridge


@contextmanager
def store_of(bridge: BridgeProcess) -> Iterator[Store]:
    store = Store.from_url(bridge.env["DATABASE_URL"])
    try:
        yield store
    finally:
        store.close()


def suppressed(bridge: BridgeProcess) -> int:
    with store_of(bridge) as store:
        return len(store.history.find(status="suppressed"))


def written(sandbox: ZendeskSandbox, tickets: list[int]) -> bool:
    return all(sandbox.field(t, STATUS_FIELD) for t in tickets)


def test_agents_requests_are_texted_once_written_back_and_the_echo_of_our_update_texts_nobody(
    zendesk: ZendeskSandbox, tmp_path: Path
) -> None:
    bridge = start(zendesk, tmp_path)
    try:
        # A careless trigger: any change at all calls the bridge, the bridge's own updates included.
        webhook_id = zendesk.state()["webhooks"][0]["id"]
        echo = {
            "title": "Echo everything",
            "conditions": {"all": [{"field": "update_type", "operator": "is", "value": "Change"}]},
            "actions": [{"field": "notification_webhook", "value": [webhook_id, '{"ticket_id": "{{ticket.id}}"}']}],
        }
        zendesk.zendesk.post("/api/v2/triggers", json={"trigger": echo}, auth=_admin()).raise_for_status()
        zendesk.control(webhook_faults={"redeliver_success": 3})  # Zendesk delivers some invocations twice
        for ticket in (1001, 1002, 1003, 1005):
            zendesk.agent_edit(ticket, **REQUEST)
        wait_for(lambda: written(zendesk, [1001, 1002, 1003, 1005]), timeout=30, what="four write-backs")
        # Let the echoes of the write-backs arrive and be handled.
        wait_for(lambda: all(i["status"] == "success" for i in zendesk.state()["invocations"]), what="deliveries")
        wait_for(lambda: suppressed(bridge) >= 2, timeout=30, what="the echoes of two texts to be suppressed")
        delivered = [i for i in zendesk.state()["invocations"] if i["status"] == "success"]
        with store_of(bridge) as store:
            sends = store.history.find(limit=500)
        # Each invocation acknowledged is one send, whatever its redeliveries (some were delivered
        # twice); each echo is a send of its own, suppressed. (Later echoes, of the chat's news, may
        # arrive meanwhile: sends are counted against the invocations acknowledged before.)
        keys = Counter(s.dedupe_key.rpartition(":")[2] for s in sends)
        assert all(keys[i["id"]] == 1 for i in delivered)
        assert any(i["attempts"] > 1 for i in delivered)
        assert {s.origin for s in sends} == {"crm_event"}
        assert sum(1 for s in sends if s.status == "sent") == 2

        accepted = {sms["ticket_id"]: sms for sms in zendesk.ccai()["accepted"]}
        assert set(accepted) == {"1001", "1002"}
        assert zendesk.sms_per_ticket() == Counter({"1001": 1, "1002": 1})
        assert accepted["1001"]["end_user_number"] == "+14155550100"
        assert accepted["1001"]["agentEmail"] == "ana.agent@example.com"
        assert "agentEmail" not in accepted["1002"]  # unassigned ticket: nobody in particular
        assert accepted["1001"]["message"].startswith("Hello Rosa, this is our support team about your request #1001")

        assert zendesk.field(1001, STATUS_FIELD) == "Sent"
        assert zendesk.field(1001, CHAT_ID_FIELD) == str(accepted["1001"]["chat_id"])
        assert zendesk.field(1003, STATUS_FIELD) == "Skipped"  # no phone
        assert zendesk.field(1005, STATUS_FIELD) in ("Opted Out", "Skipped")  # the opt-out tag and field
        state = zendesk.state()
        notes = state["comments"]["1001"]
        assert notes
        assert all(not n["public"] for n in notes)  # every note internal
        assert "ccai_bridge" in state["tickets"]["1001"]["tags"]
        assert "ccai_text_customer" not in state["tickets"]["1001"]["tags"]  # the trigger took its tag back
    finally:
        bridge.stop()


def test_a_bridge_killed_mid_send_never_texts_twice_and_loses_nothing_acknowledged(
    zendesk: ZendeskSandbox, tmp_path: Path
) -> None:
    bridge = start(zendesk, tmp_path)
    # CCAI creates the chat, then never answers: the bridge is killed while it waits.
    zendesk.ccai_control(script=[{"action": "accept_then_hang", "seconds": 30}])
    zendesk.agent_edit(1001, **REQUEST)
    wait_for(lambda: zendesk.ccai()["accepted"], timeout=20, what="the chat to be created")
    bridge.kill()
    assert zendesk.field(1001, STATUS_FIELD) is None
    again = BridgeProcess(env=bridge.env, log_path=tmp_path / "bridge2.log").start()
    try:
        wait_for(lambda: written(zendesk, [1001]), timeout=40, what="the write-back after the restart")
        assert zendesk.sms_per_ticket() == Counter({"1001": 1})
        assert zendesk.field(1001, STATUS_FIELD) in ("Sent", "Unknown")
    finally:
        again.stop()


def test_the_send_window_is_the_requesters_own_zone_and_otherwise_the_area_codes(
    zendesk: ZendeskSandbox, tmp_path: Path
) -> None:
    now = dt.datetime.now(dt.UTC)
    la = now.astimezone(zoneinfo.ZoneInfo("America/Los_Angeles"))
    if not 2 <= la.hour <= 21:
        pytest.skip("the window around Los Angeles' hour would cross midnight")
    # Open in Los Angeles now, closed in Tokyo and in New York.
    window = f"{la.hour - 1:02d}:{la.minute:02d}-{la.hour + 1:02d}:{la.minute:02d}"
    rosa = {"id": 361000101, "name": "Rosa Requester", "time_zone": "Tokyo", "iana_time_zone": "Asia/Tokyo"}
    ben = {"id": 361000102, "name": "Ben Billing", "phone": "(415) 555-0142"}
    users = {u["id"]: u for u in zendesk.state()["users"].values()}
    zendesk.control(users=[{**users[rosa["id"]], **rosa}, {**users[ben["id"]], **ben}])
    bridge = start(zendesk, tmp_path, BRIDGE_SEND_WINDOW=window)
    try:
        zendesk.agent_edit(1001, **REQUEST)  # Rosa set Tokyo: outside the window there
        zendesk.agent_edit(1002, **REQUEST)  # Ben has the account's default zone: his 415 area code counts
        wait_for(lambda: written(zendesk, [1001, 1002]), timeout=30, what="two write-backs")
        assert zendesk.field(1001, STATUS_FIELD) == "Scheduled"
        assert zendesk.field(1002, STATUS_FIELD) == "Sent"
        assert set(zendesk.sms_per_ticket()) == {"1002"}
    finally:
        bridge.stop()


def _admin() -> tuple[str, str]:
    return (f"{SANDBOX_ADMIN_EMAIL}/token", SANDBOX_API_TOKEN)
