"""A send's timeline as people read it: repeated retries folded into one line, the CRM's own words.

The store keeps every step (a 429 storm leaves an attempt and a retry line per second); the CLI,
the API and the dashboard show :func:`readable`'s lines instead: a storm is one line ("throttled
12 times between 16:43:26 and 16:44:37"), and a write-back says "Case done, Task pending" rather
than the store's neutral "ticket" and "note".
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from dataclasses import dataclass

from bridge.crm import Words
from bridge.model import LogEntry

# The store words a retry "Retried in 3 s: <reason>"; the delay varies, the reason is what repeats.
_RETRY = re.compile(r"^Retried in \d+ s: (?P<reason>.*)$", re.S)
_THROTTLED = "HTTP 429"
_EVENTS = {
    "received": "received",
    "attempt": "sent to CCAI",
    "retry": "retry",
    "held": "held for the send window",
    "requeued": "queued again",
    "finished": "finished",
    "written back": "written back",
}


@dataclass(frozen=True)
class Step:
    """One line of a readable timeline; ``count`` > 1 when it stands for a run of retries."""

    at: float
    event: str
    detail: str | None
    until: float | None = None
    count: int = 1


def readable(entries: Sequence[LogEntry], words: Words) -> list[Step]:
    """``entries`` (oldest first) with every run of two or more retries for the same reason, and the
    attempts between them, folded into one line."""
    steps: list[Step] = []
    index = 0
    while index < len(entries):
        run_end, retries = _retry_run(entries, index)
        if retries >= 2:
            steps.append(_folded(entries[index:run_end], retries))
            index = run_end
            continue
        entry = entries[index]
        steps.append(Step(at=entry.at, event=_EVENTS.get(entry.event, entry.event), detail=_worded(entry, words)))
        index += 1
    return steps


def _retry_run(entries: Sequence[LogEntry], start: int) -> tuple[int, int]:
    """Where the run of same-reason retries starting at ``start`` ends, and how many retries it holds.
    An attempt belongs to the run when a retry for the same reason follows it."""
    reason: str | None = None
    index, retries, end = start, 0, start
    while index < len(entries):
        entry = entries[index]
        if entry.event == "attempt" and index + 1 < len(entries) and entries[index + 1].event == "retry":
            index += 1
            continue
        found = _RETRY.match(entry.detail or "") if entry.event == "retry" else None
        if found is None or (reason is not None and found["reason"] != reason):
            break
        reason, retries, index = found["reason"], retries + 1, index + 1
        end = index
    return end, retries


def _folded(run: Sequence[LogEntry], retries: int) -> Step:
    last_retry = next(entry for entry in reversed(run) if entry.event == "retry")
    reason = _RETRY.match(last_retry.detail or "")
    assert reason is not None
    first, last = run[0].at, last_retry.at
    throttled = _THROTTLED in reason["reason"]
    what = "throttled" if throttled else "retried"
    detail = f"{what} {retries}× between {_hms(first)} and {_hms(last)} UTC: {reason['reason']}"
    return Step(at=first, event="throttled" if throttled else "retry", detail=detail, until=last, count=retries)


def _worded(entry: LogEntry, words: Words) -> str | None:
    if entry.event != "written back" or not entry.detail:
        return entry.detail
    # The store names the parts neutrally ("ticket done, note pending"); people read the CRM's words.
    detail = re.sub(r"\bticket\b", words.ticket, entry.detail, count=1)
    return re.sub(r"\bnote\b", words.note, detail, count=1)


def _hms(timestamp: float) -> str:
    return dt.datetime.fromtimestamp(timestamp, tz=dt.UTC).strftime("%H:%M:%S")
