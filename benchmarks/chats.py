"""``python -m benchmarks chats``: the chat sync with many chats ending at once.

It sends one SMS to each of ``chats`` Cases at the tenant's own pace (10/s, as a real CCAI allows),
then finishes every chat within one minute (through the simulator's control route), and measures
what the sync costs and how soon the Cases show it: Manager API requests (the list read by
tailing) per poll against the chats that changed and per 1,000 changed chats, Salesforce calls per
200 Case updates, and the delay from CCAI's change to the Case.
"""

from __future__ import annotations

import datetime as dt
import ssl
import statistics
import tempfile
import threading
import time
from pathlib import Path
from subprocess import Popen
from typing import Any

import httpx

from benchmarks._procs import bridge_env, seed_cases, start, start_sandbox, stop, wait_until_up
from bridge.sandbox.cases import outbound_message
from bridge.sandbox.servers import SANDBOX_WEBHOOK_TOKEN, free_port


def run_chats(*, chats: int = 1000, interval: float = 10.0) -> dict[str, Any]:
    directory = Path(tempfile.mkdtemp(prefix="bridge-bench-chats-"))
    processes: list[Popen[Any]] = []
    try:
        # Chats assigned at once; the benchmark finishes them itself, all within one minute.
        sandbox, info = start_sandbox(directory, chat_life="assigned@0")
        processes.append(sandbox)
        org = httpx.Client(
            base_url=info["salesforce_url"], verify=ssl.create_default_context(cafile=info["ca_file"]), timeout=120
        )
        ccai = httpx.Client(base_url=info["ccai_url"], timeout=60)
        case_ids = seed_cases(info, tag="D", count=chats, owner="Queue")
        port = free_port()
        env = bridge_env(
            info,
            DATABASE_URL=f"sqlite:///{directory / 'bridge.db'}",
            BRIDGE_CHAT_SYNC_SECONDS=str(interval),
            BRIDGE_LOOP_GUARD_SECONDS="0",
        )
        processes.append(start(["serve", "--host", "127.0.0.1", "--port", str(port)], env=env, log=directory / "b.log"))
        base = f"http://127.0.0.1:{port}"
        wait_until_up(f"{base}/healthz")
        ids = case_ids
        for start_at in range(0, len(ids), 100):
            httpx.post(
                f"{base}/salesforce/outbound-message",
                params={"token": SANDBOX_WEBHOOK_TOKEN},
                content=outbound_message(ids[start_at : start_at + 100]),
                headers={"Content-Type": "text/xml"},
                timeout=60,
            ).raise_for_status()
        _until(lambda: len(ccai.get("/_sandbox/state").json()["accepted"]) >= chats, seconds=60 + chats / 5)
        time.sleep(2 * interval)  # the first polls read the new chats; measure the finishing wave only
        before = ccai.get("/_sandbox/state").json()
        calls_before = _chat_calls(org)
        chat_ids = [int(c["id"]) for c in before["chats"]]
        finisher = threading.Thread(target=_finish_within_a_minute, args=(info["ccai_url"], chat_ids), daemon=True)
        finisher.start()
        seen: dict[str, float] = {}
        deadline = time.time() + 60 + 2 * interval + 120
        while len(seen) < chats and time.time() < deadline:
            now = time.time()
            for case_id, case in org.get("/_sandbox/state").json()["cases"].items():
                if case.get("CCAI_Chat_Status__c") == "finished" and case_id not in seen:
                    seen[case_id] = now
            time.sleep(0.5)
        state = ccai.get("/_sandbox/state").json()
        ended = {str(c["out_ticket_id"]): _epoch(c["ends_at"]) for c in state["chats"] if c.get("ends_at")}
        delays = [seen[case] - ended[case] for case in seen if case in ended]
        last_before = before["manager_request_times"][-1]
        polls = _polls(sorted(t for t in state["manager_request_times"] if t > last_before), interval)
        finished = sorted(ended.values())
        per_poll = []
        previous = last_before
        for poll in polls:
            changed = sum(1 for t in finished if previous < t <= poll[0])
            per_poll.append((len(poll), changed))
            previous = poll[0]
        worst = max((requests / max(1, -(-changed // 100)) for requests, changed in per_poll), default=0.0)
        calls = _chat_calls(org) - calls_before
        requests = sum(r for r, _ in per_poll)
        return {
            "chats_ending_within_a_minute": chats,
            "sync_interval_s": interval,
            "cases_showing_finished": len(seen),
            "polls": len(polls),
            "manager_api_requests": requests,
            # Tailing (ask again from the last row's updated_at) rather than paging by number.
            "manager_api_requests_per_1000_changed_chats": round(requests * 1000 / len(ended), 1) if ended else None,
            "requests_and_changed_chats_per_poll": per_poll,
            "max_requests_per_100_changed_chats_in_a_poll": round(worst, 2),
            "salesforce_calls_for_chat_fields": calls,
            "salesforce_calls_per_200_case_updates": round(calls / (len(seen) / 200), 2) if seen else None,
            "change_to_case_p50_s": round(statistics.median(delays), 1) if delays else None,
            "change_to_case_max_s": round(max(delays), 1) if delays else None,
            "change_to_case_target_s": interval + 5,
        }
    finally:
        stop(processes)


def _finish_within_a_minute(ccai_url: str, chat_ids: list[int]) -> None:
    with httpx.Client(base_url=ccai_url, timeout=30) as ccai:
        started = time.time()
        for index, chat_id in enumerate(chat_ids):
            time.sleep(max(0.0, started + index * 60 / len(chat_ids) - time.time()))
            ccai.post(f"/_sandbox/chats/{chat_id}", json={"status": "finished"}).raise_for_status()


def _polls(times: list[float], interval: float) -> list[list[float]]:
    """Requests grouped by poll: one closer than half an interval to the previous belongs to its poll."""
    polls: list[list[float]] = []
    for t in times:
        if polls and t - polls[-1][-1] < interval / 2:
            polls[-1].append(t)
        else:
            polls.append([t])
    return polls


def _chat_calls(org: httpx.Client) -> int:
    """Composite calls that wrote chat fields (not the SMS outcome write-backs)."""
    return sum(1 for call in org.get("/_sandbox/state").json()["calls"] if call.get("chat"))


def _epoch(value: str) -> float:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def _until(predicate: Any, *, seconds: float) -> None:
    deadline = time.time() + seconds
    while not predicate():
        if time.time() > deadline:
            raise RuntimeError("timed out seeding the chats")
        time.sleep(0.5)
