"""The rule the bridge exists for, as pure decisions: what is final, what is retried and when, and
what is never blindly repeated.

Input: what an attempt produced and the send's history (:class:`ClaimedSend`); output: a
:class:`Finish` (the outcome to record), a :class:`Retry` (when to try again, and what is now known
about whether the customer may have the SMS), or, before sending, whether to look the chat up
first. The worker carries these out; nothing here does I/O.

The ambiguous case: when CCAI may have acted on a request without our hearing the answer (a
timeout, a dropped connection, a 5xx, a crash mid-request), the send is *possibly delivered*.
It is not sent again until CCAI's chat list has been searched for it (``lookup``), or never
(``never``: an operator decides).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace
from typing import assert_never

from bridge import _backoff
from bridge.errors import CCAIBadResponse, CCAIError, CCAIRejected, CCAIUnavailable, CRMError, CRMRequestError
from bridge.model import Chat, ClaimedSend, FinalStatus, Origin, ResendPolicy

MAYBE_DELIVERED = " An earlier attempt got no answer and may have reached the customer."


@dataclass(frozen=True)
class Limits:
    """The settings the decisions depend on."""

    retry_for: float
    resend: ResendPolicy = "lookup"
    # A request whose answer was lost may still be being processed by CCAI; its chat can only be
    # trusted to be missing from the chat list once CCAI has had this long (the request deadline).
    settle_seconds: float = 15.0
    max_takeovers: int = 3
    opt_out_phrases: tuple[str, ...] = ("opted out", "opt-out", "unsubscribed")


@dataclass(frozen=True)
class Finish:
    status: FinalStatus
    reason: str | None = None
    chat_id: str | None = None
    write_back: bool = True
    live_chat: bool = False  # CCAI refused: the customer is in a chat already (the reason names it if known)


@dataclass(frozen=True)
class Retry:
    """Queue the send again in ``delay`` seconds. ``ambiguous``: this attempt's answer was lost;
    ``refund``: it does not count as a failed attempt (a 429)."""

    delay: float
    reason: str
    may_have_sent: bool
    ambiguous: bool = False
    refund: bool = False


@dataclass(frozen=True)
class Proceed:
    """Go on towards sending."""


@dataclass(frozen=True)
class LookUp:
    """Search CCAI's chat list for the earlier attempt's chat before sending anything."""


PROCEED = Proceed()
LOOK_UP = LookUp()


def loop_guarded(origin: Origin) -> bool:
    """Whether the loop guard applies: to what the CRM fired (the bridge's own update of the ticket
    can fire the same rule again), never to a person's explicit send."""
    match origin:
        case "crm_event":
            return True
        case "person":
            return False
        case _:
            assert_never(origin)


def may_ignore_window(origin: Origin) -> bool:
    """Whether a send may ask to go out outside the recipient's send window: only a person (an
    agent answering a customer who just wrote) may; an event the CRM fired never can."""
    match origin:
        case "person":
            return True
        case "crm_event":
            return False
        case _:
            assert_never(origin)


def on_claim(job: ClaimedSend, limits: Limits) -> Finish | LookUp | Proceed:
    """Before anything else: stop a send that keeps being taken over, and never re-send blindly."""
    if job.takeovers > limits.max_takeovers:
        reason = (
            f"The send was taken over {job.takeovers} times while its request to CCAI may have been under way "
            "(its workers died or hung mid-request); it was stopped rather than risk texting the customer again."
        )
        return settle("failed", reason, job)
    if not job.may_have_sent:
        return PROCEED
    match limits.resend:
        case "lookup":
            return LOOK_UP
        case "never":
            reason = (
                "An earlier attempt got no answer and may have reached the customer; with "
                "BRIDGE_RESEND_POSSIBLY_DELIVERED=never it was not sent again. Check the customer's chats in CCAI "
                "Platform, then retry with --force if nothing arrived."
            )
            return Finish("unknown", reason)
        case _:
            assert_never(limits.resend)


def after_lookup(
    found: Chat | CCAIUnavailable | None, job: ClaimedSend, limits: Limits, *, rng: random.Random
) -> Finish | Retry | Proceed:
    """The chat list searched: found means sent; not found means send; a failed search is retried,
    never answered by sending."""
    if isinstance(found, Chat):
        return Finish("sent", chat_id=found.id)
    if found is None and job.retrying_for >= limits.retry_for:
        # The last look, after the retry time ran out on an unanswered attempt: it never arrived.
        return Finish("failed", _gave_up_text(job, "CCAI Platform's chat list shows the SMS was never created."))
    if found is None:
        return PROCEED
    return _retry_or_give_up(f"Looking the chat up failed: {found.reason}", job, limits, rng=rng, may_have_sent=True)


def after_send(result: Chat | CCAIError, job: ClaimedSend, limits: Limits, *, rng: random.Random) -> Finish | Retry:
    """What one CCAI request means for the send."""
    if isinstance(result, Chat):
        return Finish("sent", chat_id=result.id)
    if isinstance(result, CCAIRejected):
        if is_active_session_refusal(result) and (job.may_have_sent or job.ambiguous_since is not None):
            return Finish(
                "unknown",
                "CCAI Platform says the customer already has an active SMS session. An earlier attempt of this send "
                "got no answer, so it most likely reached the customer; it was not sent again.",
            )
        if is_opt_out_refusal(result, limits.opt_out_phrases):
            return Finish("opted_out", f"CCAI Platform refused: the customer opted out ({result.message}).")
        return replace(settle("failed", result.message, job), live_chat=is_active_session_refusal(result))
    if isinstance(result, CCAIBadResponse):
        return Finish("unknown", str(result))
    assert isinstance(result, CCAIUnavailable)
    if result.throttled:
        delay = result.retry_after if result.retry_after is not None else 1.0
        return Retry(delay=delay, reason=result.reason, may_have_sent=job.may_have_sent, refund=True)
    return _retry_or_give_up(
        result.reason,
        job,
        limits,
        rng=rng,
        may_have_sent=job.may_have_sent or result.reached,
        ambiguous=result.reached,
        retry_after=result.retry_after,
    )


def after_read_failure(error: CRMError, job: ClaimedSend, limits: Limits, *, wait: float) -> Finish | Retry:
    """The tickets could not be read. ``wait`` is one delay for the whole batch, so that the retry
    is again a single query."""
    if isinstance(error, CRMRequestError):
        return settle("failed", str(error), job)
    if job.retrying_for < limits.retry_for:
        return Retry(delay=wait, reason=str(error), may_have_sent=job.may_have_sent)
    return _give_up(str(error), job, may_have_sent=job.may_have_sent)


def settle(status: FinalStatus, reason: str | None, job: ClaimedSend, *, write_back: bool = True) -> Finish:
    """A final outcome reached without CCAI sending: if an earlier attempt may have reached the
    customer, it is ``unknown``, never a status that invites a retry."""
    if job.may_have_sent and status in ("failed", "skipped"):
        return Finish("unknown", (reason or "") + MAYBE_DELIVERED, write_back=write_back)
    return Finish(status, reason, write_back=write_back)


def _gave_up_text(job: ClaimedSend, reason: str) -> str:
    return f"Gave up after trying for {max(1, round(job.retrying_for / 60))} minute(s): {reason}"


def is_active_session_refusal(error: CCAIRejected) -> bool:
    return "already in an active sms session" in error.message.lower()


def is_opt_out_refusal(error: CCAIRejected, phrases: tuple[str, ...]) -> bool:
    """CCAI's words for a consumer who opted out are not documented: match the configured phrases."""
    message = error.message.lower()
    return any(phrase.lower() in message for phrase in phrases if phrase)


def _retry_or_give_up(
    reason: str,
    job: ClaimedSend,
    limits: Limits,
    *,
    rng: random.Random,
    may_have_sent: bool,
    ambiguous: bool = False,
    retry_after: float | None = None,
) -> Finish | Retry:
    if job.retrying_for >= limits.retry_for:
        if ambiguous and limits.resend == "lookup":
            # One more claim, to look the chat up: that settles "sent" or "failed" instead of "unknown".
            return Retry(delay=limits.settle_seconds, reason=reason, may_have_sent=True, ambiguous=True)
        return _give_up(reason, job, may_have_sent=may_have_sent)
    delay = max(retry_after or 0.0, _backoff.delay(job.retrying_for, rng=rng))
    if ambiguous:
        delay = max(delay, limits.settle_seconds)
    return Retry(delay=delay, reason=reason, may_have_sent=may_have_sent, ambiguous=ambiguous)


def _give_up(reason: str, job: ClaimedSend, *, may_have_sent: bool) -> Finish:
    text = _gave_up_text(job, reason)
    if may_have_sent:
        return Finish("unknown", text + MAYBE_DELIVERED)
    return Finish("failed", text)
