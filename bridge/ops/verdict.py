"""One word for the whole bridge (healthy, degraded or down) and the reasons behind it.

:func:`judge` is pure: it reads a :class:`Snapshot` (what the store says about every process, read
once) and runs each rule over it. A rule is any function from a snapshot and the :class:`Limits` to
reasons, so a part of the bridge that has something to say (the lost-answer lookup's proof, a
long-running input's stream) adds a rule rather than a branch here. The verdict is the worst
reason's severity; notes are shown but leave a bridge healthy.

The same verdict leads the dashboard's overview, is ``bridge status``'s exit code (0, 1, 2) and
JSON, and is what the alert webhook announces. Reason texts carry counts and times, never a
customer's number.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, assert_never

from bridge.crm import Words

Level = Literal["healthy", "degraded", "down"]
Severity = Literal["note", "degraded", "down"]

EXIT_CODES: Mapping[Level, int] = {"healthy": 0, "degraded": 1, "down": 2}


@dataclass(frozen=True)
class Reason:
    """One thing that makes the verdict what it is.

    ``code`` is stable (alerts and monitors match on it); ``text`` is a sentence for people;
    ``counts`` are the figures behind it, for JSON and alerts.
    """

    code: str
    severity: Severity
    text: str
    since: float | None = None
    counts: Mapping[str, float] = field(default_factory=dict)

    @property
    def sentence(self) -> str:
        """The text on its own line: a capital first letter."""
        return self.text[:1].upper() + self.text[1:]

    def as_dict(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "severity": self.severity,
            "text": self.text,
            "since": _iso(self.since),
            "counts": dict(self.counts),
        }


@dataclass(frozen=True)
class Verdict:
    level: Level
    reasons: tuple[Reason, ...]
    at: float

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.level]

    @property
    def headline(self) -> str:
        """The first sentence an operator reads."""
        serious = [r for r in self.reasons if r.severity != "note"]
        match self.level:
            case "healthy":
                return "Healthy: sends leave and outcomes reach their tickets."
            case "degraded":
                return f"Degraded: {serious[0].text}" if serious else "Degraded."
            case "down":
                return f"Down: {serious[0].text}" if serious else "Down."
            case _:
                assert_never(self.level)

    def as_dict(self) -> dict[str, Any]:
        return {
            "verdict": self.level,
            "headline": self.headline,
            "at": _iso(self.at),
            "reasons": [reason.as_dict() for reason in self.reasons],
        }


# -- what the rules read ------------------------------------------------------------------------


@dataclass(frozen=True)
class Streak:
    """A condition seen without a break since ``since``: ``count`` times, the latest at ``last``."""

    since: float
    last: float
    count: int


@dataclass(frozen=True)
class Backlog:
    """Sends accepted and not finished, and outcomes not yet on their tickets.

    ``oldest_seconds`` is the age of the oldest queued or sending send (throttled ones are queued,
    waiting for their retry). Sends held for the recipient's send window are expected to wait and
    are counted apart.
    """

    queued: int = 0
    sending: int = 0
    throttled: int = 0
    oldest_seconds: float | None = None
    scheduled: int = 0
    writebacks: int = 0
    oldest_writeback_seconds: float | None = None

    @property
    def in_hand(self) -> int:
        return self.queued + self.sending


@dataclass(frozen=True)
class WorkerHealth:
    id: str
    seconds_since_beat: float
    pass_error: str | None = None  # the latest pass failed with this (masked) message
    failing_since: float | None = None


@dataclass(frozen=True)
class ChatSyncHealth:
    polled_seconds_ago: float | None  # None: it has not run yet
    chats_waiting: int = 0  # chats whose news has not reached their ticket yet


LookupState = Literal["proven", "unproven", "contradicted", "off"]


@dataclass(frozen=True)
class LookupTrust:
    """Whether a lost answer may be settled by looking its chat up (the tenant proved its chat list
    carries our ticket ids), as the CCAI part reports it."""

    state: LookupState
    detail: str


@dataclass(frozen=True)
class StreamHealth:
    """A long-running input (e.g. a Pub/Sub subscription) as its holder reports it."""

    name: str
    connected: bool
    silent_seconds: float | None  # since the last message or keepalive
    problem: str | None = None


@dataclass(frozen=True)
class StoreRewound:
    """The store was found to have gone back in time (a failover to a replica that was behind):
    unfinished sends are looked up in CCAI before any is sent, and events acknowledged shortly
    before may be lost (:mod:`bridge.store.generations`)."""

    detected_at: float
    detail: str
    still_looking_up: int


@dataclass(frozen=True)
class Snapshot:
    """Everything the rules judge, read at ``at`` (the store's clock). Optional parts are None (or
    empty) when the bridge does not use them or nobody has reported them yet."""

    at: float
    backlog: Backlog
    workers: Sequence[WorkerHealth]
    ccai_throttled: Streak | None = None  # 429 answers since CCAI last accepted a request
    ccai_failing: Streak | None = None  # 5xx or no answer since CCAI last answered
    writebacks_failing: Streak | None = None  # failed write-backs since one last succeeded
    chat_sync: ChatSyncHealth | None = None  # None: the chat sync is off
    lookup: LookupTrust | None = None
    streams: Sequence[StreamHealth] = ()
    rewound: StoreRewound | None = None
    store_problem: str | None = None  # the store cannot be trusted (or read): nothing is judged but this


# Reasons speak the CRM's own words (its plugin's); these stand in when none is given.
NEUTRAL = Words(crm="the CRM", ticket="ticket", note="note", ticket_id="ticket id", ticket_id_example="")


@dataclass(frozen=True)
class Limits:
    """When a condition becomes a reason. The defaults suit the bridge's default settings."""

    backlog_degraded_seconds: float = 60.0
    backlog_down_seconds: float = 900.0
    ccai_down_seconds: float = 300.0  # failing without a single answer this long: nothing can leave
    ccai_stale_seconds: float = 600.0  # a streak not seen again for this long is history, not news
    writeback_degraded_seconds: float = 600.0
    chat_sync_lag_seconds: float = 300.0
    stream_silent_seconds: float = 300.0
    rewound_seconds: float = 86400.0  # how long a store that went back in time stays on the verdict
    words: Words = NEUTRAL


Rule = Callable[[Snapshot, Limits], Iterable[Reason]]


def judge(snapshot: Snapshot, limits: Limits | None = None, rules: Sequence[Rule] | None = None) -> Verdict:
    """The verdict: the worst reason's severity, with every reason, the most serious first."""
    limits = limits or Limits()
    if snapshot.store_problem is not None:
        reason = Reason("store", "down", snapshot.store_problem)
        return Verdict(level="down", reasons=(reason,), at=snapshot.at)
    reasons = [reason for rule in (RULES if rules is None else rules) for reason in rule(snapshot, limits)]
    order: dict[Severity, int] = {"down": 0, "degraded": 1, "note": 2}
    reasons.sort(key=lambda r: order[r.severity])
    return Verdict(level=_level(reasons), reasons=tuple(reasons), at=snapshot.at)


def _level(reasons: Sequence[Reason]) -> Level:
    severities = {reason.severity for reason in reasons}
    if "down" in severities:
        return "down"
    return "degraded" if "degraded" in severities else "healthy"


# -- the rules ------------------------------------------------------------------------------------


def workers(snapshot: Snapshot, limits: Limits) -> Iterator[Reason]:
    if not snapshot.workers:
        waiting = snapshot.backlog.in_hand
        text = "no worker is alive, so nothing is being sent"
        text += f" ({_count(waiting, 'send')} waiting)." if waiting else "."
        yield Reason("no_worker", "down", text, counts={"sends_waiting": waiting})
        return
    for worker in snapshot.workers:
        if worker.pass_error:
            text = f"worker {worker.id}'s passes fail: {worker.pass_error}"
            yield Reason("worker_failing", "degraded", text, since=worker.failing_since)


def backlog(snapshot: Snapshot, limits: Limits) -> Iterator[Reason]:
    work = snapshot.backlog
    age = work.oldest_seconds
    if not work.in_hand or age is None or age < limits.backlog_degraded_seconds:
        return
    parts = [f"{work.queued} queued", f"{work.sending} sending"]
    if work.throttled:
        parts.append(f"{work.throttled} held back by CCAI's rate limit")
    text = f"{_count(work.in_hand, 'send')} in hand, the oldest for {duration(age)} ({', '.join(parts)})."
    severity: Severity = "down" if age >= limits.backlog_down_seconds else "degraded"
    counts = {"queued": work.queued, "sending": work.sending, "throttled": work.throttled, "oldest_seconds": age}
    yield Reason("backlog", severity, text, since=snapshot.at - age, counts=counts)


def ccai(snapshot: Snapshot, limits: Limits) -> Iterator[Reason]:
    now = snapshot.at
    failing = snapshot.ccai_failing
    if failing is not None and now - failing.last < limits.ccai_stale_seconds:
        text = (
            f"CCAI has failed {_count(failing.count, 'request')} (5xx or no answer) since {clock(failing.since, now)}, "
            "with no answer in between; those sends may have been delivered and are looked up before any retry."
        )
        severity: Severity = "down" if now - failing.since >= limits.ccai_down_seconds else "degraded"
        yield Reason("ccai_failing", severity, text, since=failing.since, counts={"failures": failing.count})
    throttled = snapshot.ccai_throttled
    if throttled is not None and now - throttled.last < limits.ccai_stale_seconds:
        text = (
            f"CCAI has answered 429 (too many requests) {_times(throttled.count)} since {clock(throttled.since, now)}; "
            "every worker waits for its Retry-After."
        )
        yield Reason("ccai_throttled", "degraded", text, since=throttled.since, counts={"answers": throttled.count})


def writebacks(snapshot: Snapshot, limits: Limits) -> Iterator[Reason]:
    words, work = limits.words, snapshot.backlog
    failing = snapshot.writebacks_failing
    waiting = f"{_count(work.writebacks, 'outcome')} waiting"
    if work.oldest_writeback_seconds is not None:
        waiting += f", the oldest for {duration(work.oldest_writeback_seconds)}"
    counts = {"pending": work.writebacks, "oldest_seconds": work.oldest_writeback_seconds or 0.0}
    if failing is not None and work.writebacks:
        since = clock(failing.since, snapshot.at)
        text = f"writing outcomes to {words.crm} has failed {_times(failing.count)} since {since} ({waiting})."
        yield Reason("writebacks_failing", "degraded", text, since=failing.since, counts=counts)
    elif (work.oldest_writeback_seconds or 0.0) >= limits.writeback_degraded_seconds:
        text = f"outcomes are slow to reach their {words.ticket}s ({waiting})."
        yield Reason("writebacks_slow", "degraded", text, counts=counts)


def chat_sync(snapshot: Snapshot, limits: Limits) -> Iterator[Reason]:
    sync = snapshot.chat_sync
    if sync is None:
        return
    if sync.polled_seconds_ago is None:
        yield Reason("chat_sync_not_run", "note", "the chat sync has not read CCAI's chat list yet.")
    elif sync.polled_seconds_ago >= limits.chat_sync_lag_seconds:
        text = (
            f"the chat sync last read CCAI {duration(sync.polled_seconds_ago)} ago; "
            f"{_count(sync.chats_waiting, 'chat')} with news for their {limits.words.ticket}."
        )
        counts = {"lag_seconds": sync.polled_seconds_ago, "chats_waiting": sync.chats_waiting}
        yield Reason("chat_sync_lag", "degraded", text, since=snapshot.at - sync.polled_seconds_ago, counts=counts)


def lookup(snapshot: Snapshot, limits: Limits) -> Iterator[Reason]:
    trust = snapshot.lookup
    if trust is None:
        return
    match trust.state:
        case "proven" | "off":
            return
        case "unproven":
            yield Reason("lookup_unproven", "note", f"lost answers end Unknown for now: {trust.detail}")
        case "contradicted":
            text = f"the lost-answer lookup cannot be trusted: {trust.detail}"
            yield Reason("lookup_contradicted", "degraded", text)
        case _:
            assert_never(trust.state)


def streams(snapshot: Snapshot, limits: Limits) -> Iterator[Reason]:
    for stream in snapshot.streams:
        if not stream.connected:
            text = f"{stream.name} is not connected: {stream.problem or 'reconnecting'}."
            yield Reason("stream_down", "degraded", text)
        elif (stream.silent_seconds or 0.0) >= limits.stream_silent_seconds:
            silent = duration(stream.silent_seconds or 0.0)
            text = f"{stream.name} has been silent for {silent} (no event or keepalive)."
            yield Reason("stream_silent", "degraded", text)


def store_rewound(snapshot: Snapshot, limits: Limits) -> Iterator[Reason]:
    rewound = snapshot.rewound
    if rewound is None or snapshot.at - rewound.detected_at >= limits.rewound_seconds:
        return
    text = f"the store went back in time ({rewound.detail}); events acknowledged just before may be lost"
    counts = {"still_looking_up": rewound.still_looking_up}
    if rewound.still_looking_up:
        text += f", and {_count(rewound.still_looking_up, 'unfinished send')} are looked up in CCAI before any is sent."
        yield Reason("store_went_back", "down", text, since=rewound.detected_at, counts=counts)
    else:
        yield Reason("store_went_back", "degraded", text + ".", since=rewound.detected_at, counts=counts)


RULES: tuple[Rule, ...] = (store_rewound, workers, backlog, ccai, writebacks, chat_sync, lookup, streams)


# -- words ---------------------------------------------------------------------------------------


def duration(seconds: float) -> str:
    """``75`` → "1 min 15 s"; whole units only, the two largest."""
    total = round(seconds)
    if total < 60:
        return f"{total} s"
    minutes, secs = divmod(total, 60)
    if minutes < 60:
        return f"{minutes} min {secs} s" if secs else f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    return f"{hours // 24} days"


def clock(timestamp: float, now: float) -> str:
    """A moment as people read it on a status line: "16:43:26 UTC", with the date when it is not
    the same day as ``now``."""
    moment = dt.datetime.fromtimestamp(timestamp, tz=dt.UTC)
    same_day = moment.date() == dt.datetime.fromtimestamp(now, tz=dt.UTC).date()
    return moment.strftime("%H:%M:%S UTC" if same_day else "%Y-%m-%d %H:%M:%S UTC")


def _count(n: float, noun: str) -> str:
    whole = int(n)
    return f"{whole} {noun}" if whole == 1 else f"{whole} {noun}s"


def _times(n: int) -> str:
    return "once" if n == 1 else f"{n} times"


def _iso(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    return dt.datetime.fromtimestamp(timestamp, tz=dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
