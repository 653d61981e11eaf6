"""The decisions the bridge exists for, as a table: what an attempt produced and what was known
before it, and what happens next."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest

from bridge import policy
from bridge.errors import (
    CCAIBadResponse,
    CCAIRejected,
    CCAIUnavailable,
    CRMError,
    CRMRequestError,
    CRMUnavailable,
)
from bridge.model import ORIGINS, Chat, ClaimedSend, Overrides

LIMITS = policy.Limits(retry_for=3600)
FRESH = ClaimedSend(
    id=1,
    ticket_id="5005g00000SBX01AAH",
    source="outbound_message",
    origin="crm_event",
    attempts=0,
    may_have_sent=False,
    token=1,
    takeovers=0,
    retrying_for=0.0,
    first_attempt_at=None,
    ambiguous_since=None,
    overrides=Overrides(),
)
MAYBE = replace(FRESH, may_have_sent=True, attempts=1, first_attempt_at=100.0, ambiguous_since=100.0)
LOOKED_UP = replace(MAYBE, may_have_sent=False)  # the lookup found nothing; ambiguous_since stays
EXHAUSTED = replace(FRESH, retrying_for=3601.0, attempts=5)

ACTIVE_SESSION = CCAIRejected("Outbound SMS failed. Consumer is already in an active SMS session.", status=400)
OPTED_OUT = CCAIRejected("Outbound SMS failed. Consumer has opted out of SMS.", status=400)
INVALID = CCAIRejected("end_user_number is invalid", status=400)
TIMEOUT = CCAIUnavailable("no answer", reached=True)
GATEWAY_504 = CCAIUnavailable("HTTP 504", reached=True, retry_after=None)
REFUSED_CONNECTION = CCAIUnavailable("refused", reached=False)
THROTTLED = CCAIUnavailable("429", reached=False, throttled=True, retry_after=7)


@pytest.mark.parametrize(
    ("result", "job", "expected"),
    [
        (Chat("114"), FRESH, policy.Finish("sent", chat_id="114")),
        (Chat("114"), MAYBE, policy.Finish("sent", chat_id="114")),
        (INVALID, FRESH, policy.Finish("failed", INVALID.message)),
        (ACTIVE_SESSION, FRESH, policy.Finish("failed", ACTIVE_SESSION.message, live_chat=True)),
        (
            OPTED_OUT,
            FRESH,
            policy.Finish("opted_out", f"CCAI Platform refused: the customer opted out ({OPTED_OUT.message})."),
        ),
        (CCAIBadResponse("no chat id"), FRESH, policy.Finish("unknown", "no chat id")),
    ],
)
def test_final_answers(result: Chat | Exception, job: ClaimedSend, expected: policy.Finish) -> None:
    assert policy.after_send(result, job, LIMITS, rng=random.Random(1)) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize("job", [MAYBE, LOOKED_UP])
def test_an_active_session_after_a_lost_answer_is_unknown_never_failed(job: ClaimedSend) -> None:
    decision = policy.after_send(ACTIVE_SESSION, job, LIMITS, rng=random.Random(1))
    assert isinstance(decision, policy.Finish)
    assert decision.status == "unknown"
    assert "most likely reached the customer" in (decision.reason or "")


@pytest.mark.parametrize(
    ("result", "may_have_sent", "ambiguous", "refund", "minimum"),
    [
        (TIMEOUT, True, True, False, LIMITS.settle_seconds),
        (GATEWAY_504, True, True, False, LIMITS.settle_seconds),  # A5: a gateway may answer after CCAI acted
        (REFUSED_CONNECTION, False, False, False, 1.0),
        (THROTTLED, False, False, True, 7.0),
    ],
)
def test_retryable_answers(
    result: CCAIUnavailable, may_have_sent: bool, ambiguous: bool, refund: bool, minimum: float
) -> None:
    decision = policy.after_send(result, FRESH, LIMITS, rng=random.Random(1))
    assert isinstance(decision, policy.Retry)
    assert (decision.may_have_sent, decision.ambiguous, decision.refund) == (may_have_sent, ambiguous, refund)
    assert decision.delay >= minimum


@pytest.mark.parametrize(
    ("result", "job", "limits", "status", "maybe"),
    [
        (REFUSED_CONNECTION, EXHAUSTED, LIMITS, "failed", False),
        (TIMEOUT, EXHAUSTED, replace(LIMITS, resend="never"), "unknown", True),
        (REFUSED_CONNECTION, replace(EXHAUSTED, may_have_sent=True), LIMITS, "unknown", True),
    ],
)
def test_giving_up_says_whether_the_customer_may_have_it(
    result: CCAIUnavailable, job: ClaimedSend, limits: policy.Limits, status: str, maybe: bool
) -> None:
    decision = policy.after_send(result, job, limits, rng=random.Random(1))
    assert isinstance(decision, policy.Finish)
    assert decision.status == status
    assert (decision.reason or "").startswith("Gave up after trying for 60 minute(s)")
    assert ("may have reached the customer" in (decision.reason or "")) == maybe


@pytest.mark.parametrize(
    ("job", "limits", "expected"),
    [
        (FRESH, LIMITS, policy.PROCEED),
        (MAYBE, LIMITS, policy.LOOK_UP),
        (replace(FRESH, takeovers=4), LIMITS, "failed"),
        (replace(MAYBE, takeovers=4), LIMITS, "unknown"),
        (MAYBE, replace(LIMITS, resend="never"), "unknown"),
    ],
)
def test_on_claim(job: ClaimedSend, limits: policy.Limits, expected: object) -> None:
    decision = policy.on_claim(job, limits)
    if isinstance(expected, str):
        assert isinstance(decision, policy.Finish)
        assert decision.status == expected
    else:
        assert decision == expected


def test_a_lost_answer_at_the_end_of_the_retry_time_gets_one_last_lookup() -> None:
    decision = policy.after_send(TIMEOUT, EXHAUSTED, LIMITS, rng=random.Random(1))
    assert isinstance(decision, policy.Retry)
    assert (decision.may_have_sent, decision.ambiguous) == (True, True)
    settled = policy.after_lookup(None, replace(EXHAUSTED, may_have_sent=True), LIMITS, rng=random.Random(1))
    assert isinstance(settled, policy.Finish)
    assert settled.status == "failed"
    assert "never created" in (settled.reason or "")


def test_a_possibly_delivered_send_is_never_sent_again_when_told_never() -> None:
    decision = policy.on_claim(MAYBE, replace(LIMITS, resend="never"))
    assert isinstance(decision, policy.Finish)
    assert "BRIDGE_RESEND_POSSIBLY_DELIVERED=never" in (decision.reason or "")


@pytest.mark.parametrize(
    ("found", "job", "expected"),
    [
        (Chat("114"), MAYBE, policy.Finish("sent", chat_id="114")),
        (None, MAYBE, policy.PROCEED),
        (CCAIUnavailable("list down", reached=False), MAYBE, "retry"),
        (CCAIUnavailable("list down", reached=False), replace(MAYBE, retrying_for=4000), "unknown"),
    ],
)
def test_after_lookup(found: Chat | CCAIUnavailable | None, job: ClaimedSend, expected: object) -> None:
    decision = policy.after_lookup(found, job, LIMITS, rng=random.Random(1))
    if expected == "retry":
        assert isinstance(decision, policy.Retry)
        assert decision.may_have_sent  # a failed lookup never clears what is known
    elif isinstance(expected, str):
        assert isinstance(decision, policy.Finish)
        assert decision.status == expected
    else:
        assert decision == expected


@pytest.mark.parametrize(
    ("error", "job", "expected"),
    [
        (CRMRequestError("INVALID_FIELD"), FRESH, policy.Finish("failed", "INVALID_FIELD")),
        (CRMRequestError("INVALID_FIELD"), MAYBE, "unknown"),
        (CRMUnavailable("down"), FRESH, policy.Retry(delay=5.0, reason="down", may_have_sent=False)),
        (CRMUnavailable("down"), EXHAUSTED, "failed"),
    ],
)
def test_after_read_failure(error: CRMError, job: ClaimedSend, expected: object) -> None:
    decision = policy.after_read_failure(error, job, LIMITS, wait=5.0)
    if isinstance(expected, str):
        assert isinstance(decision, policy.Finish)
        assert decision.status == expected
    else:
        assert decision == expected


@pytest.mark.parametrize(
    ("status", "job", "expected"),
    [
        ("skipped", FRESH, "skipped"),
        ("failed", FRESH, "failed"),
        ("skipped", MAYBE, "unknown"),
        ("failed", MAYBE, "unknown"),
        ("opted_out", MAYBE, "opted_out"),
    ],
)
def test_settling_without_sending_keeps_what_is_known(status: str, job: ClaimedSend, expected: str) -> None:
    assert policy.settle(status, "why", job).status == expected  # type: ignore[arg-type]


def test_opt_out_phrases_are_configurable_and_case_insensitive() -> None:
    refusal = CCAIRejected("Recipient UNSUBSCRIBED from messages", status=400)
    assert policy.is_opt_out_refusal(refusal, ("unsubscribed",))
    assert not policy.is_opt_out_refusal(refusal, ("opted out",))


def test_the_loop_guard_and_the_window_rule_follow_the_origin_not_the_door() -> None:
    assert [policy.loop_guarded(origin) for origin in ORIGINS] == [True, False]
    assert [policy.may_ignore_window(origin) for origin in ORIGINS] == [False, True]
