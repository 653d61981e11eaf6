"""What the store knows about how the bridge is doing right now: the facts the verdict is made of.

Everything is read from what every process already records (the sends and their timelines), so
any one process can judge the whole bridge, with no bookkeeping of its own on the send path:

- the work in hand: queued and sending sends and the oldest of them, those waiting out a 429,
  those held for their send window, and outcomes not yet written back;
- runs of trouble read from the timelines of the last minutes: CCAI throttling (retries for a
  429), CCAI failing (retries for a 5xx, a timeout or a refused connection), and write-backs failing
  (attempts that recorded an error), each since the last time the same thing went right.

The timeline's wording is the store's own (:func:`bridge.store._rows.log_event`, the send step's
retry reasons): matched here, next to where it is written, and nowhere else.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import ColumnElement, Connection, and_, func, not_, select

from bridge.store._rows import PENDING_WRITEBACK
from bridge.store.database import Database
from bridge.store.schema import send_log, sends

# Runs of trouble older than this are not read (they are history, and the index keeps reads short).
LOOKBACK_SECONDS = 900.0
_RETRY = send_log.c.event == "retry"
_THROTTLED = and_(_RETRY, send_log.c.detail.like("%(HTTP 429)%"))
_CCAI_FAILED = and_(_RETRY, send_log.c.detail.like("%CCAI Platform%"), not_(send_log.c.detail.like("%(HTTP 429)%")))
_SENT = and_(send_log.c.event == "finished", send_log.c.detail.like("sent%"))
_WRITTEN = send_log.c.event == "written back"
# A write-back that recorded an error ends its line with ": <error>" (see Writebacks.record).
_WRITE_FAILED = and_(_WRITTEN, send_log.c.detail.like("%: %"))


@dataclass(frozen=True)
class Run:
    """Something seen ``count`` times without a break, from ``since`` to ``last``."""

    since: float
    last: float
    count: int


@dataclass(frozen=True)
class HealthFacts:
    at: float  # the store's clock
    queued: int
    sending: int
    throttled: int  # queued sends waiting out a 429
    scheduled: int
    oldest_in_hand_seconds: float | None
    writebacks: int
    oldest_writeback_seconds: float | None
    ccai_throttled: Run | None
    ccai_failing: Run | None
    writebacks_failing: Run | None


class Health:
    def __init__(self, db: Database) -> None:
        self.db = db

    def facts(self) -> HealthFacts:
        with self.db.tx() as connection:
            now = self.db.now(connection)
            rows = connection.execute(
                select(sends.c.status, func.count())
                .where(sends.c.status.in_(("queued", "sending", "scheduled")))
                .group_by(sends.c.status)
            ).all()
            counts = {str(status): int(count) for status, count in rows}
            throttled = connection.execute(
                select(func.count()).where(sends.c.status == "queued", sends.c.reason.like("%(HTTP 429)%"))
            ).scalar_one()
            oldest = connection.execute(
                select(func.min(sends.c.created_at)).where(sends.c.status.in_(("queued", "sending")))
            ).scalar()
            writebacks, oldest_writeback = connection.execute(
                select(func.count(), func.min(sends.c.finished_at)).where(PENDING_WRITEBACK)
            ).one()
            since = now - LOOKBACK_SECONDS
            last_sent = _last(connection, _SENT, since)
            last_written = _last(connection, and_(_WRITTEN, not_(send_log.c.detail.like("%: %"))), since)
            return HealthFacts(
                at=now,
                queued=int(counts.get("queued", 0)),
                sending=int(counts.get("sending", 0)),
                throttled=int(throttled),
                scheduled=int(counts.get("scheduled", 0)),
                oldest_in_hand_seconds=None if oldest is None else max(0.0, now - oldest),
                writebacks=int(writebacks),
                oldest_writeback_seconds=None if oldest_writeback is None else max(0.0, now - oldest_writeback),
                ccai_throttled=_run(connection, _THROTTLED, max(since, last_sent)),
                ccai_failing=_run(connection, _CCAI_FAILED, max(since, last_sent)),
                writebacks_failing=_run(connection, _WRITE_FAILED, max(since, last_written)),
            )


def _last(connection: Connection, which: ColumnElement[bool], since: float) -> float:
    found = connection.execute(select(func.max(send_log.c.at)).where(which, send_log.c.at >= since)).scalar()
    return float(found) if found is not None else since


def _run(connection: Connection, which: ColumnElement[bool], after: float) -> Run | None:
    first, last, count = connection.execute(
        select(func.min(send_log.c.at), func.max(send_log.c.at), func.count()).where(which, send_log.c.at > after)
    ).one()
    return None if not count else Run(since=float(first), last=float(last), count=int(count))
