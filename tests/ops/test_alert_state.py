"""When the alert webhook speaks: hold-down, minimum interval, flaps, reminders, recovery and retries."""

from __future__ import annotations

import json
import random

from bridge.ops.alert_state import (
    AlertPolicy,
    AlertState,
    Delivery,
    Outbox,
    claim,
    decide,
    from_record,
    settle,
    to_record,
)
from bridge.ops.verdict import Level, Reason, Verdict

T0 = 1_800_000_000.0
POLICY = AlertPolicy(hold_down=60, min_interval=300, repeat_after=4 * 3600, give_up_after=3600, claim_seconds=30)
BACKLOG = Reason("backlog", "degraded", "7 sends in hand, the oldest for 1 min 15 s.", counts={"queued": 7})
NO_WORKER = Reason("no_worker", "down", "no worker is alive, so nothing is being sent.")
OK = Delivery(True, "https://hooks.example answered 200 (ok)")


def verdict(level: Level, at: float) -> Verdict:
    reasons = {"healthy": (), "degraded": (BACKLOG,), "down": (NO_WORKER,)}[level]
    return Verdict(level=level, reasons=reasons, at=at)


def watch(
    state: AlertState, timeline: list[tuple[float, Level]], *, deliver: bool = True
) -> tuple[AlertState, list[str]]:
    """Feed verdicts (seconds after T0), delivering whatever is decided at once; what was announced."""
    announced = []
    for offset, level in timeline:
        state = decide(state, verdict(level, T0 + offset), POLICY)
        held = claim(state, T0 + offset, POLICY)
        if held is not None and held.outbox is not None and deliver:
            alert = held.outbox.alert
            announced.append(f"{alert.kind}:{alert.level}@{offset:g}")
            state = settle(held, alert, OK, T0 + offset, POLICY, random.Random(1))
    return state, announced


def test_a_condition_is_announced_once_it_has_held_for_the_hold_down() -> None:
    _, announced = watch(AlertState(), [(0, "degraded"), (30, "degraded"), (59, "degraded"), (61, "degraded")])
    assert announced == ["changed:degraded@61"]


def test_a_blip_shorter_than_the_hold_down_is_never_announced() -> None:
    _, announced = watch(
        AlertState(), [(0, "degraded"), (30, "healthy"), (45, "degraded"), (90, "healthy"), (400, "healthy")]
    )
    assert announced == []


def test_recovery_is_announced_with_how_long_it_lasted() -> None:
    state, announced = watch(AlertState(), [(0, "degraded"), (60, "degraded"), (600, "healthy"), (660, "healthy")])
    assert announced == ["changed:degraded@60", "recovered:healthy@660"]
    assert state.told is not None
    assert state.told.level == "healthy"


def test_a_flapping_condition_is_held_to_one_message_per_minimum_interval() -> None:
    # Degraded and healthy in turn, each for 2 minutes, for half an hour.
    timeline = [(t, "degraded" if (t // 120) % 2 == 0 else "healthy") for t in range(0, 1800, 15)]
    _, announced = watch(AlertState(), timeline)  # type: ignore[arg-type]
    assert len(announced) <= 1800 / POLICY.min_interval + 1
    assert len(announced) >= 2  # it does say so: both ways


def test_a_change_during_the_quiet_time_goes_out_when_it_ends_if_it_still_holds() -> None:
    _, announced = watch(
        AlertState(), [(0, "degraded"), (60, "degraded"), (100, "down"), (200, "down"), (359, "down"), (361, "down")]
    )
    assert announced == ["changed:degraded@60", "changed:down@361"]


def test_an_undelivered_alert_is_dropped_when_the_verdict_returns_to_what_the_receiver_knows() -> None:
    state, announced = watch(AlertState(), [(0, "degraded"), (60, "degraded")], deliver=False)
    assert state.outbox is not None
    assert announced == []
    state, announced = watch(state, [(100, "healthy"), (400, "healthy")], deliver=False)
    assert state.outbox is None  # the receiver never heard "degraded": it need not hear "recovered"


def test_an_undelivered_alert_goes_out_with_the_reasons_true_when_it_leaves() -> None:
    state, _ = watch(AlertState(), [(0, "degraded"), (60, "degraded")], deliver=False)
    worse = Verdict(level="degraded", reasons=(BACKLOG, Reason("ccai_throttled", "degraded", "429s")), at=T0 + 90)
    state = decide(state, worse, POLICY)
    assert state.outbox is not None
    assert [r.code for r in state.outbox.alert.reasons] == ["backlog", "ccai_throttled"]


def test_a_bridge_that_stays_down_is_reminded_of_every_repeat_interval() -> None:
    timeline = [(t, "down") for t in range(0, 9 * 3600, 60)]
    _, announced = watch(AlertState(), timeline)  # type: ignore[arg-type]
    assert announced == ["changed:down@60", "reminder:down@14460", "reminder:down@28860"]


def test_only_one_claim_at_a_time_and_a_lapsed_claim_can_be_taken_again() -> None:
    state, _ = watch(AlertState(), [(0, "down"), (60, "down")], deliver=False)
    first = claim(state, T0 + 60, POLICY)
    assert first is not None
    assert claim(first, T0 + 70, POLICY) is None  # another process sees it claimed
    assert decide(first, verdict("healthy", T0 + 400), POLICY).outbox == first.outbox  # not replaced mid-flight
    retaken = claim(first, T0 + 91, POLICY)  # the claimer died: the claim lapsed
    assert retaken is not None
    assert retaken.outbox is not None
    assert retaken.outbox.attempts == 2


def test_a_failed_delivery_backs_off_and_honours_retry_after() -> None:
    state, _ = watch(AlertState(), [(0, "down"), (60, "down")], deliver=False)
    held = claim(state, T0 + 60, POLICY)
    assert held is not None
    assert held.outbox is not None
    alert = held.outbox.alert
    failed = settle(held, alert, Delivery(False, "answered 503"), T0 + 61, POLICY, random.Random(1))
    assert failed.outbox is not None
    assert 1 <= failed.outbox.next_try_at - (T0 + 61) <= 2  # backoff grows from 2 s with how long it has failed
    assert failed.outbox.last_error == "answered 503"
    limited = settle(held, alert, Delivery(False, "answered 429", retry_after=30), T0 + 61, POLICY, random.Random(1))
    assert limited.outbox is not None
    assert limited.outbox.next_try_at == T0 + 91
    late = settle(held, alert, Delivery(False, "answered 503"), T0 + 1000, POLICY, random.Random(1))
    assert late.outbox is not None
    assert late.outbox.next_try_at - (T0 + 1000) >= 300 * 0.5


def test_a_receiver_that_refuses_for_good_or_for_too_long_drops_the_alert_and_the_next_decision_tries_again() -> None:
    state, _ = watch(AlertState(), [(0, "down"), (60, "down")], deliver=False)
    held = claim(state, T0 + 60, POLICY)
    assert held is not None
    assert held.outbox is not None
    refused = settle(
        held, held.outbox.alert, Delivery(False, "404 no_service", permanent=True), T0 + 61, POLICY, random.Random()
    )
    assert refused.outbox is None
    assert refused.told is None
    again = decide(refused, verdict("down", T0 + 361), POLICY)
    assert again.outbox is not None  # a fresh message after the minimum interval
    expired = settle(held, held.outbox.alert, Delivery(False, "503"), T0 + 60 + 3600, POLICY, random.Random())
    assert expired.outbox is None


def test_a_delivery_that_lands_after_a_newer_decision_still_counts_as_told() -> None:
    state, _ = watch(AlertState(), [(0, "down"), (60, "down")], deliver=False)
    held = claim(state, T0 + 60, POLICY)
    assert held is not None
    assert held.outbox is not None
    moved_on = AlertState(seen="healthy", seen_since=T0 + 70, outbox=None, decided_at=T0 + 60, version=9)
    settled = settle(moved_on, held.outbox.alert, OK, T0 + 75, POLICY, random.Random())
    assert settled.told is not None
    assert settled.told.level == "down"


def test_the_state_survives_the_store_as_json() -> None:
    state, _ = watch(AlertState(), [(0, "degraded"), (60, "degraded")], deliver=False)
    state = AlertState(
        seen=state.seen,
        seen_since=state.seen_since,
        outbox=Outbox(alert=state.outbox.alert, next_try_at=T0 + 99, attempts=2, last_error="503")
        if state.outbox
        else None,
        decided_at=state.decided_at,
        version=4,
    )
    assert from_record(json.loads(json.dumps(to_record(state)))) == state
