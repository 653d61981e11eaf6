"""When a request may leave on the store's go-ahead (R1, R12), and how long a takeover waits (R1, R5)."""

from __future__ import annotations

from bridge.departure import FRESH_SECONDS, Yes, departure_lease, settle_after_takeover


def test_a_go_ahead_is_acted_on_only_while_it_is_fresh() -> None:
    yes = Yes(asked_at=100.0, lease_seconds=20.0)
    assert yes.fresh(100.0 + FRESH_SECONDS)
    # The answer took longer than a second (a stalled link, a paused process): not acted on.
    assert not yes.fresh(100.0 + FRESH_SECONDS + 0.01)
    assert not yes.fresh(130.0)  # well past the lease: another worker may have the send by now


def test_a_short_lease_leaves_its_margin() -> None:
    yes = Yes(asked_at=0.0, lease_seconds=1.5)
    assert yes.fresh(0.4)
    assert not yes.fresh(0.6)  # within a second, but not a second short of the lease's end


def test_asking_again_stops_once_the_attempts_lease_has_no_room_for_another_answer() -> None:
    yes = Yes(asked_at=10.0, lease_seconds=20.0)
    assert yes.worth_asking_again(12.0, first_asked_at=0.0)
    assert not yes.worth_asking_again(18.5, first_asked_at=0.0)


def test_a_departing_send_holds_at_least_the_whole_request() -> None:
    assert departure_lease(lease_seconds=20, ccai_deadline=15) == 20
    assert departure_lease(lease_seconds=3, ccai_deadline=15) == 20


def test_a_takeover_waits_out_a_live_holders_lease_but_not_a_dead_ones() -> None:
    alive = settle_after_takeover(lease_seconds=20, ccai_deadline=15, holder_alive=True)
    gone = settle_after_takeover(lease_seconds=20, ccai_deadline=15, holder_alive=False)
    assert alive == 20 + 15 + 1  # its lease, CCAI's deadline, a margin
    assert gone == FRESH_SECONDS + 15 + 1  # it sent nothing after its last fresh go-ahead
