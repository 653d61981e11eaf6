"""When to tell people about the verdict: the alerting decisions, apart from any I/O.

The state is one small record that every process shares through the store (:class:`AlertState`,
replaced by compare-and-set on its ``version``), so that whichever process sees a change first
decides the alert once, and exactly one process at a time tries to deliver it.

The rules, in the order :func:`decide` applies them:

- **hold-down**: a verdict is announced only once it has held for ``hold_down`` seconds without a
  break, so a condition that comes and goes within a minute never reaches anyone;
- **minimum interval**: at most one decision per ``min_interval`` seconds; a change during the
  quiet time is announced when it ends, if it still holds;
- **nothing the receiver already knows**: an undelivered alert is replaced by a newer verdict, and
  dropped when the verdict went back to what the receiver was last told (a flap);
- **reminders**: while the bridge stays degraded or down, the alert is repeated every
  ``repeat_after`` seconds (0: never), with the current reasons;
- **recovery**: going back to healthy is announced like any change, with how long it lasted.

Delivery outcomes are folded in by :func:`settle`: retried with backoff (or the receiver's
``Retry-After``) until ``give_up_after``, dropped at once when the receiver refuses the message
for good (then the next decision tries again with a fresh one).
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal

from bridge._backoff import delay
from bridge.ops.verdict import Level, Reason, Verdict

AlertKind = Literal["changed", "recovered", "reminder"]


@dataclass(frozen=True)
class AlertPolicy:
    hold_down: float = 60.0
    min_interval: float = 300.0
    repeat_after: float = 4 * 3600.0
    give_up_after: float = 3600.0  # an alert still undelivered after this long is dropped (and logged)
    claim_seconds: float = 30.0  # how long one process has to deliver before another may try
    max_retry_after: float = 300.0  # a receiver's Retry-After is honoured up to this


@dataclass(frozen=True)
class Alert:
    """One announcement: the verdict now, the one the receiver was last told, and why."""

    kind: AlertKind
    level: Level
    previous: Level
    reasons: tuple[Reason, ...]
    decided_at: float
    since: float  # when the verdict took this level
    previous_since: float | None = None  # when the previous level began (how long an outage lasted)


@dataclass(frozen=True)
class Outbox:
    """An alert decided and not delivered yet."""

    alert: Alert
    next_try_at: float
    attempts: int = 0
    claimed_until: float = 0.0
    last_error: str | None = None


@dataclass(frozen=True)
class Told:
    """What the receiver last heard."""

    level: Level
    at: float
    since: float


@dataclass(frozen=True)
class AlertState:
    seen: Level = "healthy"
    seen_since: float = 0.0
    told: Told | None = None
    outbox: Outbox | None = None
    decided_at: float | None = None
    version: int = 0

    @property
    def told_level(self) -> Level:
        return "healthy" if self.told is None else self.told.level


@dataclass(frozen=True)
class Delivery:
    """How the receiver answered. ``permanent``: the same message can never succeed (e.g. a 404
    for a revoked webhook). ``detail`` names the cause, never the webhook's URL (it is a secret)."""

    ok: bool
    detail: str
    permanent: bool = False
    retry_after: float | None = None


def decide(state: AlertState, verdict: Verdict, policy: AlertPolicy) -> AlertState:
    """The state after seeing ``verdict``: possibly a new alert in the outbox."""
    now = verdict.at
    seen, seen_since = state.seen, state.seen_since
    if verdict.level != seen:
        seen, seen_since = verdict.level, now
    new = replace(state, seen=seen, seen_since=seen_since)
    outbox = state.outbox
    if outbox is not None and outbox.alert.level == seen and outbox.claimed_until <= now:
        # Not sent yet: it goes out with what is true now.
        new = replace(new, outbox=replace(outbox, alert=replace(outbox.alert, reasons=verdict.reasons)))
    held = now - seen_since >= policy.hold_down
    quiet = state.decided_at is None or now - state.decided_at >= policy.min_interval
    if not (held and quiet) or (outbox is not None and outbox.claimed_until > now):
        return new  # too soon, or a process is delivering right now: decide on the next look
    intended = outbox.alert.level if outbox is not None else state.told_level
    if seen != intended:
        if seen == state.told_level:
            return replace(new, outbox=None, decided_at=now)  # a flap the receiver never has to hear of
        alert = Alert(
            kind="recovered" if seen == "healthy" else "changed",
            level=seen,
            previous=state.told_level,
            reasons=verdict.reasons,
            decided_at=now,
            since=seen_since,
            previous_since=state.told.since if state.told is not None else None,
        )
        return replace(new, outbox=Outbox(alert=alert, next_try_at=now), decided_at=now)
    told = state.told
    reminding = told is not None and told.level != "healthy" and 0 < policy.repeat_after <= now - told.at
    if outbox is None and told is not None and reminding:
        alert = Alert(
            kind="reminder", level=seen, previous=seen, reasons=verdict.reasons, decided_at=now, since=told.since
        )
        return replace(new, outbox=Outbox(alert=alert, next_try_at=now), decided_at=now)
    return new


def claim(state: AlertState, now: float, policy: AlertPolicy) -> AlertState | None:
    """The state in which this process holds the outbox for one delivery attempt, or None when
    there is nothing due (or another process holds it)."""
    outbox = state.outbox
    if outbox is None or outbox.next_try_at > now or outbox.claimed_until > now:
        return None
    held = replace(outbox, attempts=outbox.attempts + 1, claimed_until=now + policy.claim_seconds)
    return replace(state, outbox=held)


def settle(
    state: AlertState, alert: Alert, delivery: Delivery, now: float, policy: AlertPolicy, rng: random.Random
) -> AlertState:
    """Fold a delivery attempt of ``alert`` into ``state`` (which may have moved on meanwhile)."""
    outbox = state.outbox
    if outbox is None or outbox.alert.decided_at != alert.decided_at:
        # A newer decision replaced it while it was being delivered; only the receiver's news counts.
        return replace(state, told=Told(alert.level, now, alert.since)) if delivery.ok else state
    if delivery.ok:
        return replace(state, outbox=None, told=Told(alert.level, now, alert.since))
    if delivery.permanent or now - alert.decided_at >= policy.give_up_after:
        return replace(state, outbox=None)
    wait = delay(now - alert.decided_at, rng=rng)
    if delivery.retry_after is not None:
        wait = max(wait, min(delivery.retry_after, policy.max_retry_after))
    retried = replace(outbox, next_try_at=now + wait, claimed_until=0.0, last_error=delivery.detail)
    return replace(state, outbox=retried)


# -- the stored form ------------------------------------------------------------------------------


def to_record(state: AlertState) -> dict[str, Any]:
    """A JSON-able form of ``state``, for the store."""
    outbox = state.outbox
    return {
        "seen": state.seen,
        "seen_since": state.seen_since,
        "told": None if state.told is None else vars(state.told),
        "outbox": None
        if outbox is None
        else {**vars(outbox), "alert": {**vars(outbox.alert), "reasons": [_reason(r) for r in outbox.alert.reasons]}},
        "decided_at": state.decided_at,
        "version": state.version,
    }


def from_record(record: Mapping[str, Any]) -> AlertState:
    told, outbox = record.get("told"), record.get("outbox")
    return AlertState(
        seen=record["seen"],
        seen_since=float(record["seen_since"]),
        told=None if told is None else Told(**told),
        outbox=None if outbox is None else _outbox(outbox),
        decided_at=record.get("decided_at"),
        version=int(record["version"]),
    )


def _reason(reason: Reason) -> dict[str, Any]:
    return {**vars(reason), "counts": dict(reason.counts)}


def _outbox(record: Mapping[str, Any]) -> Outbox:
    alert = dict(record["alert"])
    reasons = tuple(Reason(**r) for r in alert.pop("reasons"))
    return Outbox(**{**record, "alert": Alert(**alert, reasons=reasons)})
