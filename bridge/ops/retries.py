"""Operators' retries: whether a finished send may be queued again, and what that risks.

One :class:`RetryOffer` decides for every surface (``bridge sends retry``, the dashboard's Retry
button); each words it in its own sentence around the same clauses. A send that may have reached
the customer is retried only when the operator insists (``--force``, a ticked box), and then it
is looked up in CCAI before anything is sent again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from bridge.crm import Words
from bridge.model import FINAL_STATUSES, NOTHING_SENT, SendRecord, SendStatus
from bridge.store import Store


@dataclass(frozen=True)
class RetryOffer:
    """What a retry of one send would do.

    ``why_not``: why it cannot be retried at all (a clause after "Send 7 ..." or "It ...").
    ``risk``: why a retry can text the customer a second time (a clause such as "it reached the
    customer"); such a retry needs the operator to insist.
    """

    allowed: bool
    why_not: str | None = None
    risk: str | None = None


@dataclass(frozen=True)
class RetryResult:
    queued: bool
    message: str
    offer: RetryOffer | None = None  # None: there is no such send


# Outcomes no retry can change, by the words the pipeline records them with (phones.py, sending.py,
# and CCAI's own refusal): the number is not one that can be texted, or the ticket is gone.
_UNFIXABLE = (
    ("numbers can be texted", "the number cannot be texted (not a US number)"),
    ("Non-US phone number not allowed", "CCAI refuses the number (not a US number)"),
    ("was not found in", "the ticket no longer exists (or the bridge may not see it)"),
)


def cannot_fix(send: SendRecord) -> str | None:
    """Why a retry would end exactly as this send did, or None when it might not."""
    reason = send.reason or ""
    return next((why for phrase, why in _UNFIXABLE if phrase in reason), None)


@dataclass(frozen=True)
class Planned:
    """One send of a bulk retry: whether it is queued again, and if not, why."""

    send: SendRecord
    queue: bool
    why: str | None = None


def bulk_plan(sends: Sequence[SendRecord], *, force: bool, words: Words) -> list[Planned]:
    """What ``bridge sends retry --status ...`` does with each send: retries that cannot change the
    outcome are skipped, and those that may text the customer again only with ``force``."""
    planned = []
    for send in sends:
        offer = retry_offer(send, words)
        if not offer.allowed:
            planned.append(Planned(send, False, offer.why_not))
        elif (unfixable := cannot_fix(send)) is not None:
            planned.append(Planned(send, False, f"a retry cannot help: {unfixable}"))
        elif offer.risk is not None and not force:
            planned.append(Planned(send, False, f"{offer.risk} (--force retries it)"))
        else:
            planned.append(Planned(send, True))
    return planned


def retry_offer(send: SendRecord, words: Words) -> RetryOffer:
    if not send.final:
        return RetryOffer(False, why_not=f"is {send.status}: the bridge is still working on it")
    if not send.ticket_id:
        return RetryOffer(False, why_not=f"names no record: it was deleted before {words.crm} delivered it")
    if send.overrides.number_removed:
        return RetryOffer(
            False,
            why_not="was made for a number given in its request, which the bridge does not keep once a send is "
            "finished: make a new send instead",
        )
    if send.status == "sent":
        return RetryOffer(True, risk="it reached the customer")
    if send.chat_id is not None:  # the record keeps the chat an earlier attempt created
        return RetryOffer(True, risk=f"it reached the customer earlier (chat {send.chat_id})")
    if maybe_reached(send):
        return RetryOffer(True, risk="it may already have reached the customer")
    if send.status == "suppressed":
        return RetryOffer(True, risk=f"another send for the {words.ticket} had just texted the customer")
    if send.status not in NOTHING_SENT:  # a status this module does not know yet: ask all the same
        return RetryOffer(True, risk=f"it is {send.status}")
    return RetryOffer(True)


def maybe_reached(send: SendRecord) -> bool:
    """Whether a send that is not known to be sent may nevertheless have texted the customer."""
    return send.status != "sent" and (send.may_have_sent or send.status == "unknown")


def reached(send: SendRecord, words: Words) -> str:
    """Whether the send texted the customer, in words."""
    if send.status == "sent":
        return "yes"
    if send.chat_id is not None:
        return f"yes, before it was retried (chat {send.chat_id})"
    if maybe_reached(send):
        return "maybe: an attempt's answer was lost"
    if send.status == "suppressed":
        return f"no (another send for the {words.ticket} had just texted them)"
    return "no" if send.status in NOTHING_SENT else "not yet"


def retry(store: Store, send_id: int, *, force: bool, words: Words) -> RetryResult:
    """Re-queue one finished send, if that cannot text the customer twice (or ``force``)."""
    send = store.history.get(send_id)
    if send is None:
        return RetryResult(False, f"Send {send_id} does not exist.")
    offer = retry_offer(send, words)
    if not offer.allowed:
        return RetryResult(False, f"Send {send_id} {offer.why_not}.", offer)
    if offer.risk is not None and not force:
        return RetryResult(
            False,
            f"Send {send_id} is {send.status}: {offer.risk}. Retrying it can text them a second time; add --force to "
            "do it anyway (a send that may have been delivered is first looked up in CCAI Platform).",
            offer,
        )
    statuses: tuple[SendStatus, ...] = FINAL_STATUSES if force else NOTHING_SENT
    if store.sends.requeue_finished(send_id, statuses=statuses):
        return RetryResult(True, f"Send {send_id} ({send.status}) is queued again.", offer)
    return RetryResult(False, f"Send {send_id} changed meanwhile and was not retried.", offer)


def sentence(clause: str) -> str:
    """A clause of an offer as a sentence of its own."""
    return clause[:1].upper() + clause[1:] + "."
