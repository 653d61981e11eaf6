"""What people read about sends: one send, a list, the timeline, the activity and the queue.

The API, the operator commands and the dashboard read through :class:`History`; nothing here writes.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, Connection, Integer, RowMapping, Select, cast, func, select

from bridge.model import ActivityCount, LogEntry, QueueSummary, SendRecord
from bridge.store._rows import PENDING_WRITEBACK, overrides_of
from bridge.store.database import Database
from bridge.store.schema import chats, send_log, sends


class History:
    """Reads of the ``sends`` table and its ``send_log``, for people."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def get(self, send_id: int) -> SendRecord | None:
        with self.db.tx() as connection:
            row = connection.execute(_with_chat().where(sends.c.id == send_id)).mappings().first()
        return _record(row) if row else None

    def find(
        self,
        *,
        ticket_id: str | None = None,
        ticket_number: str | None = None,
        status: str | None = None,
        limit: int = 100,
        before_id: int | None = None,
        since: float | None = None,
        until: float | None = None,
        within: float | None = None,
    ) -> list[SendRecord]:
        """Sends, newest first; ``before_id`` pages back from there; ``since``/``until`` keep only
        sends created in that range (``until`` excluded), ``within`` those created in the last so
        many seconds (by the clock the sends were stamped with)."""
        query = _with_chat().order_by(sends.c.id.desc()).limit(limit)
        if before_id is not None:
            query = query.where(sends.c.id < before_id)
        with self.db.tx() as connection:
            query = query.where(*self._matching(connection, ticket_id, ticket_number, status, since, until, within))
            return [_record(row) for row in connection.execute(query).mappings()]

    def count(
        self,
        *,
        ticket_id: str | None = None,
        ticket_number: str | None = None,
        status: str | None = None,
        since: float | None = None,
        until: float | None = None,
        within: float | None = None,
    ) -> int:
        """How many sends :meth:`find` would list with these filters and no limit."""
        with self.db.tx() as connection:
            conditions = self._matching(connection, ticket_id, ticket_number, status, since, until, within)
            return int(connection.execute(select(func.count()).select_from(sends).where(*conditions)).scalar_one())

    def _matching(
        self,
        connection: Connection,
        ticket_id: str | None,
        ticket_number: str | None,
        status: str | None,
        since: float | None,
        until: float | None,
        within: float | None,
    ) -> list[ColumnElement[bool]]:
        conditions: list[ColumnElement[bool]] = []
        if ticket_id:
            conditions.append(sends.c.ticket_id == ticket_id)
        if ticket_number:
            # Agents quote 1026 for 00001026: compared without the leading zeros.
            conditions.append(func.ltrim(sends.c.ticket_number, "0") == ticket_number.lstrip("0"))
        if status:
            conditions.append(sends.c.status == status)
        if since is not None:
            conditions.append(sends.c.created_at >= since)
        if until is not None:
            conditions.append(sends.c.created_at < until)
        if within is not None:
            conditions.append(sends.c.created_at >= self.db.now(connection) - within)
        return conditions

    def activity(self, *, hours: int = 24) -> tuple[float, list[ActivityCount]]:
        """Sends created in each of the last ``hours`` whole hours (by the store's clock), by their
        status now; and the start of the first hour. Counted in the database, whatever the volume."""
        with self.db.tx() as connection:
            now = self.db.now(connection)
            start = (now // 3600 - (hours - 1)) * 3600
            position = (sends.c.created_at - start) / 3600
            # Positive values: truncation is the floor. PostgreSQL's integer cast would round instead.
            hour = func.floor(position) if self.db.postgres else cast(position, Integer)
            rows = connection.execute(
                select(hour.label("hour"), sends.c.status, func.count())
                .where(sends.c.created_at >= start)
                .group_by(hour, sends.c.status)
            ).all()
        return start, [ActivityCount(hour=int(h), status=status, count=int(n)) for h, status, n in rows]

    def timeline(self, send_id: int) -> list[LogEntry]:
        """What happened to the send, oldest first."""
        with self.db.tx() as connection:
            rows = connection.execute(
                select(send_log.c.at, send_log.c.event, send_log.c.detail)
                .where(send_log.c.send_id == send_id)
                .order_by(send_log.c.id)
            ).all()
        return [LogEntry(at=row.at, event=row.event, detail=row.detail) for row in rows]

    def queue_summary(self) -> QueueSummary:
        """Counts by status, the oldest queued send's age and pending write-backs."""
        with self.db.tx() as connection:
            now = self.db.now(connection)
            by_status = connection.execute(select(sends.c.status, func.count()).group_by(sends.c.status)).all()
            oldest = connection.execute(select(func.min(sends.c.created_at)).where(sends.c.status == "queued")).scalar()
            writebacks = connection.execute(select(func.count()).where(PENDING_WRITEBACK)).scalar_one()
        return QueueSummary(
            by_status={status: int(count) for status, count in by_status},
            oldest_queued_seconds=None if oldest is None else max(0.0, now - oldest),
            writebacks_pending=int(writebacks),
        )


def _with_chat() -> Select[Any]:
    """Sends with what is known of the chat each started (for people to read)."""
    return select(sends, chats.c.status.label("chat_status"), chats.c.synced_at.label("chat_synced_at")).outerjoin(
        chats, chats.c.send_id == sends.c.id
    )


def _record(row: RowMapping) -> SendRecord:
    return SendRecord(
        id=row["id"],
        dedupe_key=row["dedupe_key"],
        source=row["source"],
        origin=row["origin"],
        ticket_id=row["ticket_id"],
        status=row["status"],
        reason=row["reason"],
        chat_id=row["chat_id"],
        message=row["message"],
        end_user_hint=row["end_user_hint"],
        attempts=row["attempts"],
        may_have_sent=bool(row["may_have_sent"]),
        created_at=row["created_at"],
        first_attempt_at=row["first_attempt_at"],
        finished_at=row["finished_at"],
        not_before=row["not_before"],
        writeback=row["writeback"],
        writeback_task=row["writeback_task"],
        writeback_attempts=row["writeback_attempts"],
        writeback_error=row["writeback_error"],
        request_hash=row["request_hash"],
        requeued_at=row["requeued_at"],
        overrides=overrides_of(row),
        segments=row["segments"],
        template=row["template"],
        template_version=row["template_version"],
        chat_status=row.get("chat_status"),
        chat_synced_at=row.get("chat_synced_at"),
        ticket_number=row.get("ticket_number"),
    )
