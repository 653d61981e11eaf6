"""When a request to CCAI may leave: the rule between the store's "yes, send it" and the bytes on the wire.

The store says yes in one transaction (:meth:`bridge.store.sends.Sends.depart`): the send is still
this worker's (its lease token), its number is not on the opt-out list (read under the number's lock,
so an opt-out either commits first and the answer is no, or commits after the yes), and the send
window is open by the store's clock. That yes is only as good as it is fresh. Between asking and
acting, the worker's database link can stall or its host can pause the process (SIGSTOP, a frozen
VM) for longer than the lease; meanwhile another worker can take the send over and text the
customer, or an opt-out can be acknowledged. So the worker acts on a yes only while it is *fresh*,
measured on its own monotonic clock from the moment it asked (before the question left, so the
store's yes cannot be older than that):

- at most :data:`FRESH_SECONDS` old: the answer came back promptly and nothing stalled since; and
- well inside the lease it was granted (:data:`LEASE_MARGIN_SECONDS` to spare), the condition under
  which nobody can have taken the send over.

A stale yes is asked again (the store checks the lease, the opt-out list and the window anew); when
no fresh yes comes while the lease lasts, the attempt is withdrawn: nothing left, the send is queued
again. A takeover of a send whose request may be under way waits until a request decided before it
could no longer be unseen by CCAI (:func:`settle_after_takeover`).

What no rule here can close: a pause that lands after the last check and before the request's bytes
leave (microseconds of Python, plus opening a connection to CCAI). CCAI takes no idempotency key, so
nothing downstream can refuse a request sent that late; the takeover's wait (the previous holder's
whole lease plus CCAI's deadline) is what still catches most of those. README: What is guaranteed.
"""

from __future__ import annotations

from dataclasses import dataclass

# A yes older than this is asked again. Normal store round-trips take milliseconds; a second covers
# a loaded database, and bounds how long before departure an opt-out can have been acknowledged.
FRESH_SECONDS = 1.0
# What a sender keeps to spare before its lease ends, for clocks that run at slightly different rates.
LEASE_MARGIN_SECONDS = 1.0


@dataclass(frozen=True)
class Yes:
    """The store's yes to one departure: asked at ``asked_at`` (the sender's monotonic clock),
    granting a lease of ``lease_seconds`` from the moment the store said it."""

    asked_at: float
    lease_seconds: float

    def fresh(self, now: float) -> bool:
        """Whether the request may leave at ``now`` (the same monotonic clock) on this yes."""
        return now - self.asked_at <= min(FRESH_SECONDS, self.lease_seconds - LEASE_MARGIN_SECONDS)

    def worth_asking_again(self, now: float, *, first_asked_at: float) -> bool:
        """Whether asking again can still help: the attempt's lease, counted from the first question,
        has room for another round-trip."""
        return now - first_asked_at < self.lease_seconds - LEASE_MARGIN_SECONDS - FRESH_SECONDS


def departure_lease(*, lease_seconds: float, ccai_deadline: float) -> float:
    """The lease a departing send holds: the usual one, and never shorter than the whole request
    (the heartbeat renews it while the request is under way)."""
    return max(lease_seconds, ccai_deadline + 5.0)


def settle_after_takeover(*, lease_seconds: float, ccai_deadline: float, holder_alive: bool) -> float:
    """How long a send taken over while its request may have been under way waits before its chat
    is looked up (or it is sent).

    A holder that may still be alive (its lease ran out: it hung, its link stalled, the store's
    clock jumped) can send on a yes until its lease ends by its own clock: wait that whole lease,
    then CCAI's deadline for the request to be answered and its chat listed. A holder known to be
    gone (its process ended) sent nothing after its last fresh yes: the freshness bound and CCAI's
    deadline are enough.
    """
    lease = departure_lease(lease_seconds=lease_seconds, ccai_deadline=ccai_deadline)
    waited = lease if holder_alive else FRESH_SECONDS
    return waited + ccai_deadline + LEASE_MARGIN_SECONDS


# How often a send whose slot passed while the store cleared it takes the next slot before it goes
# anyway (counted by the pacing as leaving when it does).
SLOT_TRIES = 3
# The most the go-ahead is asked for ahead of a CCAI slot: a small part of its freshness.
MAX_LEAD_SECONDS = 0.25


class Lead:
    """How long before its CCAI slot a send asks the store for its go-ahead, so that the request
    leaves on the slot rather than a round-trip after it: the slowest of the recent go-aheads,
    capped well within the freshness bound (the yes must still be fresh when the slot comes). A
    request ready early waits for its slot."""

    def __init__(self, keep: int = 20) -> None:
        self._recent: list[float] = []
        self._keep = keep

    @property
    def seconds(self) -> float:
        return min(MAX_LEAD_SECONDS, max(self._recent, default=0.0))

    def observe(self, seconds: float) -> None:
        self._recent = [*self._recent[-(self._keep - 1) :], seconds]
