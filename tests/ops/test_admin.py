"""The operator commands in-process (``main([...])``) on a store the test fills through ``Store``:
``bridge send``, ``bridge sends list|show|retry``, ``bridge status``, ``bridge purge``."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from bridge.model import NewSend, Outcome, Overrides
from bridge.sandbox.cases import sample_cases
from bridge.store import Store
from tests._apps import Bridge, clean_environment, command_line
from tests._clock import Clock
from tests._sends import depart

MOBILE, _, _, UK = (c["Id"] for c in sample_cases()[:4])
THROTTLED = "CCAI Platform is rate-limiting requests (HTTP 429)."
UK_REASON = "The Case's ContactMobile (********0958) is a GB number; only US numbers can be texted."


@pytest.fixture
def bridge(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Bridge:
    """``bridge(*args)`` runs the command line in-process in a clean environment and captures it."""
    clean_environment(monkeypatch, tmp_path)
    return command_line(capsys)


@pytest.fixture
def db_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    url = f"sqlite:///{tmp_path / 'bridge.db'}"
    monkeypatch.setenv("DATABASE_URL", url)
    return url


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    """The running bridge's store (no test clock: the commands read it with the real one)."""
    s = Store.from_url(db_url)
    s.migrate()
    yield s
    s.close()


def sent(store: Store, case_id: str = MOBILE) -> int:
    send_id = store.sends.create(
        NewSend(dedupe_key=f"cli:{uuid.uuid4().hex}", source="cli", origin="person", ticket_id=case_id)
    ).id
    [job] = store.sends.claim("w", limit=1, lease_seconds=30)
    outcome = Outcome(status="sent", chat_id="114", end_user_hint="*******0100", write_back=False)
    assert store.sends.finish(job.id, outcome, token=job.token, create_task=False)
    return send_id


def refused(store: Store, case_id: str = UK, reason: str = UK_REASON) -> int:
    failed = Outcome(status="failed", reason=reason, write_back=False)
    new = NewSend(
        dedupe_key=f"api:{uuid.uuid4().hex}", source="api", origin="person", ticket_id=case_id, finished=failed
    )
    assert store.sends.ingest([new]) == 1
    return store.history.find(limit=1)[0].id


# -- sends --------------------------------------------------------------------------------------


def test_send_list_show_and_retry_as_an_operator(bridge: Bridge, store: Store) -> None:
    texted, failed = sent(store), refused(store)

    listing = bridge("sends", "list")
    assert listing.code == 0
    assert listing.out.splitlines()[0].split()[:3] == ["ID", "CREATED", "AT"]
    assert len(listing.out.splitlines()) == 3
    rows = bridge("sends", "list", "--status", "failed", "--json").json()
    assert [(r["id"], r["ticket_id"], r["status"]) for r in rows] == [(failed, UK, "failed")]
    shown = bridge("sends", "show", str(failed), "--json").json()
    assert shown["error"].startswith("The Case's ContactMobile")
    assert "status: failed" in bridge("sends", "show", str(failed)).out

    again_sent = bridge("sends", "retry", str(texted))
    assert again_sent.code == 1
    assert "--force" in again_sent.err
    everything_sent = bridge("sends", "retry", "--status", "sent")
    assert (everything_sent.code, "--force" in everything_sent.err) == (1, True)
    # In bulk, a send a retry cannot change (a GB number) is left alone; by its id, the operator decides.
    again = bridge("sends", "retry", "--status", "failed")
    assert (again.code, again.out.strip().splitlines()[-1]) == (0, "0 failed send(s) queued again.")
    assert "--dry-run` lists each and why" in again.err
    assert bridge("sends", "retry", str(failed)).code == 0
    record = store.history.get(failed)
    assert record is not None
    assert record.status == "queued"
    missing = bridge("sends", "show", "9")
    assert (missing.code, missing.err.strip()) == (1, "There is no send 9.")


def test_sends_list_finds_a_case_by_its_15_character_id(bridge: Bridge, store: Store) -> None:
    mine, _other = sent(store, MOBILE), sent(store, sample_cases()[1]["Id"])
    rows = bridge("sends", "list", "--ticket", MOBILE[:15], "--json").json()
    assert [r["id"] for r in rows] == [mine]
    bad = bridge("sends", "list", "--ticket", "hello")
    assert bad.code == 2
    assert "--ticket 'hello': must be a Case id" in bad.err


def test_send_queues_for_the_running_bridge(bridge: Bridge, store: Store) -> None:
    queued = bridge("send", MOBILE[:15], "--message", "Hello from the CLI")
    assert queued.code == 0
    assert queued.out.strip() == f"Send 1 for Case {MOBILE}: queued"
    [record] = store.history.find()
    assert (record.source, record.origin, record.ticket_id, record.overrides) == (
        "cli",
        "person",
        MOBILE,
        Overrides(message="Hello from the CLI"),
    )
    waited = bridge("send", MOBILE, "--wait", "0.2", "--json")
    assert waited.code == 3  # still pending: no bridge is running against this store
    assert waited.json()["status"] == "queued"


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["send", "hello"], "bridge: ticket_id: must be a Case id"),
        (["send", MOBILE, "--agent-email", "bad"], "bridge: agent_email: must be an email address."),
        (
            ["send", MOBILE, "--agent-email", "a@b.co", "--agent-id", "3"],
            "bridge: give agent_email or agent_id, not both.",
        ),
        (["send", MOBILE, "--message", "Ring\x07"], "bridge: message: contains characters that cannot be texted"),
    ],
)
def test_send_refuses_what_the_api_refuses_in_a_sentence(
    bridge: Bridge, store: Store, args: list[str], error: str
) -> None:
    result = bridge(*args)
    assert result.code == 2
    assert result.err.startswith(error)
    assert "configuration error" not in result.err
    assert dict(store.history.queue_summary().by_status) == {}


# -- status and purge ---------------------------------------------------------------------------


def test_status_reports_the_queue_the_workers_and_the_api_usage(bridge: Bridge, store: Store) -> None:
    sent(store)
    refused(store)
    board = store.status
    board.beat("worker-1", host="web.1", pid=42, pass_ok=True, pass_error=None)
    board.beat("worker-2", host="worker.1", pid=43, pass_ok=True, pass_error=None)
    board.stopped("worker-2")
    board.put("salesforce:api_usage", {"used": 1234, "total": 100_000})

    report = bridge("status", "--json").json()
    assert report["by_status"] == {"sent": 1, "failed": 1}
    assert list(report["workers"]) == ["worker-1"]  # keyed by worker id; a stopped worker is not alive
    assert (report["workers"]["worker-1"]["host"], report["workers"]["worker-1"]["pid"]) == ("web.1", 42)
    assert (report["salesforce_api_usage"]["used"], report["salesforce_api_usage"]["total"]) == (1234, 100_000)
    text = bridge("status").out
    assert "Workers alive:       1" in text
    assert "worker-1 on web.1 (pid 42" in text
    assert "Salesforce API usage: 1,234 of 100,000 today" in text


def test_status_leads_with_the_verdict_and_exits_0_1_2_for_monitors(bridge: Bridge, store: Store, db_url: str) -> None:
    down = bridge("status")
    assert down.code == 2  # no worker has ever beaten
    assert down.out.startswith("Verdict:             DOWN\n  - No worker is alive, so nothing is being sent.")
    store.status.beat("worker-1", host="web.1", pid=42, pass_ok=True, pass_error=None)
    healthy = bridge("status", "--json")
    assert (healthy.code, healthy.json()["verdict"]) == (0, "healthy")
    # Notes: still healthy. A fresh bridge has not yet seen its own chats carry its ticket ids.
    assert [r["code"] for r in healthy.json()["reasons"]] == ["chat_sync_not_run", "lookup_unproven"]
    assert healthy.json()["lookup"]["state"] == "unproven"
    assert "Lost-answer lookup:  unproven: this tenant has not shown" in bridge("status").out
    # A send queued two minutes ago and still in hand: degraded, with its counts.
    past = Store.from_url(db_url, clock=Clock(time.time() - 120))
    try:
        past.sends.create(
            NewSend(dedupe_key="om:late", source="outbound_message", origin="crm_event", ticket_id=MOBILE)
        )
    finally:
        past.close()
    degraded = bridge("status", "--json")
    assert degraded.code == 1
    reason = degraded.json()["reasons"][0]
    assert (reason["code"], reason["counts"]["queued"]) == ("backlog", 1)
    assert "1 send in hand, the oldest for 2 min" in bridge("status").out


def test_status_reports_the_event_stream_as_its_holder_last_said(bridge: Bridge, store: Store) -> None:
    record = {
        "topic": "/event/CCAI_SMS_Request__e",
        "state": "reconnecting",
        "holder": "worker-1",
        "received": 12,
        "committed": 12,
        "already_seen": 3,
        "undecodable": 0,
        "reconnects": 2,
        "dead_streams": 1,
        "replay_fallbacks": 0,
        "last_event_at": time.time() - 4,
        "last_response_at": time.time() - 1,
        "lag_seconds": 0.3,
        "problem": "No response on the Pub/Sub stream for 300 s: the stream is dead.",
    }
    store.status.put("stream:/event/CCAI_SMS_Request__e", record)

    report = bridge("status", "--json").json()["streams"]["/event/CCAI_SMS_Request__e"]
    assert (report["state"], report["holder"], report["committed"], report["already_seen"]) == (
        "reconnecting",
        "worker-1",
        12,
        3,
    )
    text = bridge("status").out
    assert "Event stream:        /event/CCAI_SMS_Request__e reconnecting on worker-1, 12 received" in text
    assert "(3 seen before), 2 reconnect(s), last event 4 s ago, lag 0.3 s" in text
    assert "last problem: No response on the Pub/Sub stream for 300 s" in text


def test_purge_removes_finished_sends_older_than_the_retention(bridge: Bridge, store: Store, db_url: str) -> None:
    past = Store.from_url(db_url, clock=Clock(time.time() - 40 * 86400))
    try:
        refused(past)
        refused(past)
    finally:
        past.close()
    recent = refused(store)
    result = bridge("purge")
    assert (result.code, result.out.strip()) == (0, "Removed 2 finished send(s) older than 30 days.")
    assert [r.id for r in store.history.find()] == [recent]
    too_short = bridge("purge", "--older-than-days", "1")
    assert too_short.code == 2
    assert "--older-than-days must be at least 2" in too_short.err


# -- a store that is not there ------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [["sends", "list"], ["sends", "show", "1"], ["status"], ["opt-outs", "list"], ["sends", "retry", "1"]],
)
def test_commands_on_a_missing_store_say_to_migrate_and_create_nothing(
    bridge: Bridge, db_url: str, tmp_path: Path, args: list[str]
) -> None:
    result = bridge(*args)
    assert result.code == 2
    assert "run `bridge migrate`" in result.err
    assert "Traceback" not in result.err
    assert not (tmp_path / "bridge.db").exists()


def test_show_folds_a_429_storm_and_says_whether_it_reached_the_customer(bridge: Bridge, store: Store) -> None:
    send_id = store.sends.create(
        NewSend(dedupe_key="om:storm", source="outbound_message", origin="crm_event", ticket_id=MOBILE)
    ).id
    for _ in range(12):
        [job] = store.sends.claim("w", limit=1, lease_seconds=30)
        depart(store, job.id, token=job.token, lease_seconds=30)
        store.sends.requeue(job.id, token=job.token, delay=0, reason=THROTTLED, may_have_sent=False, refund=True)
    shown = bridge("sends", "show", str(send_id))
    assert "throttled 12× between" in shown.out
    assert shown.out.count("Retried in") == 0
    assert "reached_customer: no" in shown.out
    steps = bridge("sends", "show", str(send_id), "--json").json()["timeline"]
    assert [s["event"] for s in steps] == ["received", "throttled"]
    assert steps[1]["count"] == 12
    listing = bridge("sends", "list").out
    assert "REACHED CUSTOMER" in listing
    assert "MAY HAVE SENT" not in listing
