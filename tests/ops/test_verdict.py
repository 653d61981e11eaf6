"""The verdict: one word from the store's snapshot, with the reasons an operator acts on."""

from __future__ import annotations

from collections.abc import Iterator

from bridge.crm import Words
from bridge.crm.salesforce import SalesforcePlugin
from bridge.ops.verdict import (
    Backlog,
    ChatSyncHealth,
    Limits,
    LookupTrust,
    Reason,
    Snapshot,
    StoreRewound,
    Streak,
    StreamHealth,
    WorkerHealth,
    duration,
    judge,
)

SALESFORCE = SalesforcePlugin.words
ZENDESK = Words(crm="Zendesk", ticket="ticket", note="internal note", ticket_id="ticket id", ticket_id_example="")
NOW = 1_800_000_000.0  # 2027-01-15 08:00:00 UTC
ALIVE = (WorkerHealth(id="web.1:42", seconds_since_beat=2.0),)


def snapshot(**parts: object) -> Snapshot:
    values: dict[str, object] = {"at": NOW, "backlog": Backlog(), "workers": ALIVE, **parts}
    return Snapshot(**values)  # type: ignore[arg-type]


def codes(verdict_snapshot: Snapshot) -> list[str]:
    return [reason.code for reason in judge(verdict_snapshot).reasons]


def test_an_idle_bridge_with_a_live_worker_is_healthy_and_exits_0() -> None:
    verdict = judge(snapshot())
    assert (verdict.level, verdict.reasons, verdict.exit_code) == ("healthy", (), 0)
    assert verdict.headline.startswith("Healthy")


def test_the_issues_stuck_backlog_is_degraded_with_its_counts_and_age() -> None:
    # Seven sends held back by CCAI's 429s for over a minute: the overview used to say "0 queued".
    work = Backlog(queued=4, sending=3, throttled=4, oldest_seconds=75.0)
    throttled = Streak(since=NOW - 71, last=NOW - 1, count=196)
    verdict = judge(snapshot(backlog=work, ccai_throttled=throttled))
    assert (verdict.level, verdict.exit_code) == ("degraded", 1)
    backlog, ccai = verdict.reasons
    assert backlog.text == (
        "7 sends in hand, the oldest for 1 min 15 s (4 queued, 3 sending, 4 held back by CCAI's rate limit)."
    )
    assert backlog.counts == {"queued": 4, "sending": 3, "throttled": 4, "oldest_seconds": 75.0}
    assert ccai.code == "ccai_throttled"
    assert "196 times since 07:58:49 UTC" in ccai.text
    assert verdict.headline == f"Degraded: {backlog.text}"


def test_a_store_that_went_back_in_time_is_down_while_its_sends_are_looked_up_then_degraded() -> None:
    looking = judge(snapshot(rewound=StoreRewound(NOW - 60, "worker w1 counted 10 departures, the store 7", 4)))
    assert (looking.level, looking.reasons[0].code) == ("down", "store_went_back")
    assert "4 unfinished sends are looked up in CCAI before any is sent" in looking.reasons[0].text
    settled = judge(snapshot(rewound=StoreRewound(NOW - 600, "worker w1 counted 10 departures, the store 7", 0)))
    assert settled.level == "degraded"
    assert judge(snapshot(rewound=StoreRewound(NOW - 2 * 86400, "old", 0))).level == "healthy"


def test_a_young_backlog_is_not_a_problem_and_sends_held_for_their_window_never_are() -> None:
    assert judge(snapshot(backlog=Backlog(queued=30, oldest_seconds=59.0))).level == "healthy"
    assert judge(snapshot(backlog=Backlog(scheduled=500, oldest_seconds=None))).level == "healthy"


def test_a_backlog_older_than_the_down_limit_is_down() -> None:
    verdict = judge(snapshot(backlog=Backlog(queued=2, oldest_seconds=901.0)), Limits(backlog_down_seconds=900))
    assert (verdict.level, verdict.exit_code) == ("down", 2)


def test_no_live_worker_is_down_and_says_how_much_waits() -> None:
    verdict = judge(snapshot(workers=(), backlog=Backlog(queued=3, oldest_seconds=10.0)))
    assert verdict.level == "down"
    assert verdict.reasons[0].text == "no worker is alive, so nothing is being sent (3 sends waiting)."


def test_a_worker_whose_passes_fail_degrades_the_bridge() -> None:
    failing = WorkerHealth(id="w2", seconds_since_beat=1, pass_error="the store is unavailable", failing_since=NOW - 30)
    verdict = judge(snapshot(workers=(*ALIVE, failing)))
    assert verdict.level == "degraded"
    assert verdict.reasons[0].sentence == "Worker w2's passes fail: the store is unavailable"


def test_ccai_failing_is_degraded_then_down_once_nothing_has_answered_for_the_limit() -> None:
    young = Streak(since=NOW - 60, last=NOW - 2, count=12)
    old = Streak(since=NOW - 400, last=NOW - 2, count=80)
    assert judge(snapshot(ccai_failing=young)).level == "degraded"
    verdict = judge(snapshot(ccai_failing=old), Limits(ccai_down_seconds=300))
    assert verdict.level == "down"
    assert "80 requests (5xx or no answer) since 07:53:20 UTC" in verdict.reasons[0].text


def test_a_streak_not_seen_for_a_while_is_history() -> None:
    stale = Streak(since=NOW - 7200, last=NOW - 3600, count=3)
    assert judge(snapshot(ccai_throttled=stale, ccai_failing=stale)).level == "healthy"


def test_a_streak_from_another_day_names_the_date() -> None:
    overnight = Streak(since=NOW - 9 * 3600, last=NOW - 5, count=2)
    verdict = judge(snapshot(ccai_failing=overnight), Limits(ccai_stale_seconds=60))
    assert "since 2027-01-14 23:00:00 UTC" in verdict.reasons[0].text


def test_write_backs_failing_speak_the_crms_words() -> None:
    failing = Streak(since=NOW - 600, last=NOW - 5, count=12)
    work = Backlog(writebacks=40, oldest_writeback_seconds=610.0)
    verdict = judge(
        snapshot(backlog=work, writebacks_failing=failing),
        Limits(
            words=Words(
                crm="Zendesk", ticket="ticket", note="internal note", ticket_id="ticket id", ticket_id_example=""
            )
        ),
    )
    assert verdict.reasons[0].text == (
        "writing outcomes to Zendesk has failed 12 times since 07:50:00 UTC "
        "(40 outcomes waiting, the oldest for 10 min 10 s)."
    )
    slow = judge(snapshot(backlog=work), Limits(words=SALESFORCE))
    assert [r.code for r in slow.reasons] == ["writebacks_slow"]
    assert "reach their Cases" in slow.reasons[0].text


def test_chat_sync_lag_degrades_and_a_sync_that_never_ran_is_a_note() -> None:
    assert codes(snapshot(chat_sync=ChatSyncHealth(polled_seconds_ago=30.0))) == []
    lagging = judge(
        snapshot(chat_sync=ChatSyncHealth(polled_seconds_ago=840.0, chats_waiting=3)), Limits(words=SALESFORCE)
    )
    assert lagging.level == "degraded"
    assert lagging.reasons[0].text == "the chat sync last read CCAI 14 min ago; 3 chats with news for their Case."
    never = judge(snapshot(chat_sync=ChatSyncHealth(polled_seconds_ago=None)))
    assert (never.level, [r.severity for r in never.reasons]) == ("healthy", ["note"])


def test_the_lost_answer_lookup_unproven_is_a_note_and_contradicted_degrades() -> None:
    unproven = judge(snapshot(lookup=LookupTrust("unproven", "0 of 3 chats seen carry our ticket id")))
    assert (unproven.level, unproven.reasons[0].code) == ("healthy", "lookup_unproven")
    contradicted = judge(snapshot(lookup=LookupTrust("contradicted", "chat 991 arrived without it")))
    assert contradicted.level == "degraded"
    assert codes(snapshot(lookup=LookupTrust("proven", "5 chats"))) == []


def test_a_stream_that_is_down_or_silent_degrades() -> None:
    down = StreamHealth(
        name="The Pub/Sub subscription", connected=False, silent_seconds=None, problem="UNAUTHENTICATED"
    )
    silent = StreamHealth(name="The Pub/Sub subscription", connected=True, silent_seconds=400.0)
    assert codes(snapshot(streams=(down,))) == ["stream_down"]
    assert codes(snapshot(streams=(silent,))) == ["stream_silent"]
    assert codes(snapshot(streams=(StreamHealth("s", connected=True, silent_seconds=20.0),))) == []


def test_a_store_that_cannot_be_trusted_is_down_whatever_else_it_says() -> None:
    verdict = judge(snapshot(store_problem="the store went back in time (a lagging replica?)", workers=()))
    assert (verdict.level, [r.code for r in verdict.reasons]) == ("down", ["store"])


def test_the_most_serious_reasons_come_first() -> None:
    verdict = judge(
        snapshot(
            workers=(),
            chat_sync=ChatSyncHealth(polled_seconds_ago=None),
            ccai_throttled=Streak(since=NOW - 5, last=NOW, count=2),
        )
    )
    assert [r.severity for r in verdict.reasons] == ["down", "degraded", "note"]


def test_rules_are_pluggable() -> None:
    def quiet_crm(snap: Snapshot, limits: Limits) -> Iterator[Reason]:
        yield Reason("crm_quiet", "degraded", "no outbound message from Salesforce for 3 days.")

    verdict = judge(snapshot(), rules=(quiet_crm,))
    assert (verdict.level, verdict.reasons[0].code) == ("degraded", "crm_quiet")


def test_the_json_form_carries_everything_a_monitor_needs() -> None:
    verdict = judge(snapshot(backlog=Backlog(queued=2, oldest_seconds=120.0)))
    body = verdict.as_dict()
    assert body["verdict"] == "degraded"
    assert body["at"] == "2027-01-15T08:00:00Z"
    assert body["reasons"][0] | {"text": ""} == {
        "code": "backlog",
        "severity": "degraded",
        "text": "",
        "since": "2027-01-15T07:58:00Z",
        "counts": {"queued": 2, "sending": 0, "throttled": 0, "oldest_seconds": 120.0},
    }


def test_durations_read_as_people_say_them() -> None:
    assert [duration(s) for s in (0.4, 59, 60, 75, 3600, 3720, 86400 * 3)] == [
        "0 s", "59 s", "1 min", "1 min 15 s", "1 h", "1 h 2 min", "3 days",
    ]  # fmt: skip
