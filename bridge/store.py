"""The durable store: inbox with dedupe, jobs claimed with leases, write-back state.

SQLite by default (one file, WAL, fsync on commit); PostgreSQL when ``DATABASE_URL`` says so.
Calls are synchronous; async code runs them in a worker thread. Every database failure surfaces
as :class:`StoreUnavailable`, so the web layer can refuse to ack.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    and_,
    case,
    create_engine,
    delete,
    event,
    func,
    insert,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import DBAPIError, IntegrityError, SQLAlchemyError
from sqlalchemy.pool import ConnectionPoolEntry

from bridge._schema import (
    LATEST_VERSION,
    MIGRATIONS,
    bridge_status,
    current_version,
    rate_limits,
    schema_version,
    sends,
)
from bridge.errors import ConfigError, StoreUnavailable
from bridge.model import ClaimedSend, NewSend, Outcome, PendingWriteback

Clock = Callable[[], float]


def engine_for(url: str) -> Engine:
    """Create the engine for a ``DATABASE_URL`` (accepts Heroku's ``postgres://`` spelling)."""
    if url.startswith("postgres://"):
        url = "postgresql+psycopg://" + url[len("postgres://") :]
    elif url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30})
        _tune_sqlite(engine)
        return engine
    if url.startswith("postgresql+psycopg://"):
        return create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=5)
    raise ConfigError(f"DATABASE_URL must be a sqlite:/// or postgresql:// URL, not {url.split(':', 1)[0]}:...")


def _tune_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
        # Let SQLAlchemy's "begin" hook issue BEGIN IMMEDIATE itself: claims then take the write
        # lock up front instead of failing to upgrade a read lock half-way through.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        # FULL: a commit (and so an ack) survives power loss, not only a process crash.
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


class Store:
    """All reads and writes of the bridge's state."""

    def __init__(self, engine: Engine, *, clock: Clock = time.time) -> None:
        self.engine = engine
        self._clock = clock
        self._postgres = engine.dialect.name == "postgresql"

    @classmethod
    def from_url(cls, url: str, *, clock: Clock = time.time) -> Store:
        return cls(engine_for(url), clock=clock)

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def _tx(self) -> Iterator[Connection]:
        try:
            with self.engine.begin() as connection:
                yield connection
        except (DBAPIError, SQLAlchemyError) as exc:
            if isinstance(exc, IntegrityError):
                raise
            raise StoreUnavailable(f"The store is unavailable ({type(exc).__name__}).") from exc

    # -- schema -------------------------------------------------------------------------------

    def migrate(self) -> int:
        """Bring the schema to the latest version; safe to run repeatedly and concurrently."""
        with self._tx() as connection:
            if self._postgres:
                connection.execute(text("SELECT pg_advisory_xact_lock(7220410)"))
            version = current_version(connection)
            for number, step in MIGRATIONS:
                if number > version:
                    step(connection)
                    connection.execute(insert(schema_version).values(version=number, applied_at=self._clock()))
        return LATEST_VERSION

    def schema_version(self) -> int:
        with self._tx() as connection:
            return current_version(connection)

    # -- inbox --------------------------------------------------------------------------------

    def ingest(self, new: Sequence[NewSend]) -> int:
        """Store every send in one transaction; already-known dedupe keys are ignored.

        Returns how many were new. When this returns, all of them are durable.
        """
        if not new:
            return 0
        now = self._clock()
        rows = [_new_row(item, now) for item in new]
        dialect_insert = pg_insert if self._postgres else sqlite_insert
        statement = dialect_insert(sends).on_conflict_do_nothing(index_elements=["dedupe_key"]).returning(sends.c.id)
        with self._tx() as connection:
            # One statement per row (executemany with RETURNING is not portable), one transaction.
            return sum(len(connection.execute(statement, row).all()) for row in rows)

    def create(self, new: NewSend, *, request_hash: str | None = None) -> tuple[int, str | None, bool]:
        """Store one send. Returns ``(id, stored request hash, created)``; when the dedupe key was
        already taken, the existing send's id and hash with ``created`` False.
        """
        now = self._clock()
        dialect_insert = pg_insert if self._postgres else sqlite_insert
        statement = (
            dialect_insert(sends)
            .values(**_new_row(new, now), request_hash=request_hash)
            .on_conflict_do_nothing(index_elements=["dedupe_key"])
            .returning(sends.c.id)
        )
        with self._tx() as connection:
            inserted = connection.execute(statement).first()
            if inserted is not None:
                return int(inserted[0]), request_hash, True
            existing = connection.execute(
                select(sends.c.id, sends.c.request_hash).where(sends.c.dedupe_key == new.dedupe_key)
            ).one()
        return int(existing[0]), existing[1], False

    def requeue_finished(self, send_id: int, *, statuses: Sequence[str]) -> bool:
        """An operator's retry: queue a finished send again if its status is one of ``statuses``.

        The loop guard does not apply to it, and its retry time starts anew.
        """
        now = self._clock()
        with self._tx() as connection:
            result = connection.execute(
                update(sends)
                .where(sends.c.id == send_id, sends.c.status.in_(list(statuses)))
                .values(
                    status="queued",
                    not_before=now,
                    requeued_at=now,
                    first_attempt_at=func.coalesce(sends.c.first_attempt_at, now),
                    inflight=False,
                    may_have_sent=False,
                    lease_owner=None,
                    lease_until=None,
                    finished_at=None,
                    writeback="none",
                    writeback_task="none",
                    writeback_lease_until=None,
                )
            )
        return result.rowcount == 1

    # -- the send step ------------------------------------------------------------------------

    def claim_sends(self, owner: str, *, limit: int, lease_seconds: float) -> list[ClaimedSend]:
        """Lease up to ``limit`` due sends. A send whose worker died mid-request comes back flagged."""
        now = self._clock()
        due = or_(
            and_(sends.c.status == "queued", sends.c.not_before <= now),
            and_(sends.c.status == "sending", sends.c.lease_until < now),
        )
        query = select(sends).where(due).order_by(sends.c.not_before, sends.c.id).limit(limit)
        if self._postgres:
            query = query.with_for_update(skip_locked=True)
        with self._tx() as connection:
            rows = connection.execute(query).mappings().all()
            for row in rows:
                connection.execute(
                    update(sends)
                    .where(sends.c.id == row["id"])
                    .values(
                        status="sending",
                        lease_owner=owner,
                        lease_until=now + lease_seconds,
                        inflight=False,
                        may_have_sent=row["may_have_sent"] or row["inflight"],
                    )
                )
        return [
            ClaimedSend(
                id=row["id"],
                ticket_id=row["ticket_id"],
                source=row["source"],
                attempts=row["attempts"],
                may_have_sent=bool(row["may_have_sent"] or row["inflight"]),
                created_at=row["created_at"],
                first_attempt_at=row["first_attempt_at"],
                overrides=json.loads(row["overrides"]) if row["overrides"] else {},
                requeued_at=row["requeued_at"],
            )
            for row in rows
        ]

    def start_attempt(self, send_id: int, ticket_id: str, *, cooldown: float, owner: str) -> int | None:
        """The loop guard. Returns the id of another send for this Case attempted within ``cooldown``
        seconds (this send is then to be skipped); otherwise marks this send attempted and returns None.
        """
        now = self._clock()
        with self._tx() as connection:
            if self._postgres:
                # Serialise the check-then-mark per Case across workers.
                connection.execute(text("SELECT pg_advisory_xact_lock(hashtext(:t))"), {"t": ticket_id})
            recent = connection.execute(
                select(sends.c.id)
                .where(
                    sends.c.ticket_id == ticket_id,
                    sends.c.id != send_id,
                    sends.c.first_attempt_at >= now - cooldown,
                )
                .limit(1)
            ).first()
            if recent is not None and cooldown > 0:
                return int(recent[0])
            connection.execute(
                update(sends)
                .where(sends.c.id == send_id, sends.c.lease_owner == owner, sends.c.first_attempt_at.is_(None))
                .values(first_attempt_at=now)
            )
        return None

    def mark_inflight(self, send_id: int, *, owner: str, lease_seconds: float) -> bool:
        """Record that a CCAI request is about to leave. False if this worker lost its lease."""
        now = self._clock()
        with self._tx() as connection:
            result = connection.execute(
                update(sends)
                .where(sends.c.id == send_id, sends.c.lease_owner == owner, sends.c.status == "sending")
                .values(inflight=True, attempts=sends.c.attempts + 1, lease_until=now + lease_seconds)
            )
        return result.rowcount == 1

    def finish(self, send_id: int, outcome: Outcome, *, owner: str, create_task: bool) -> bool:
        """Record a final outcome and, unless told otherwise, queue its write-back."""
        now = self._clock()
        write_back = "pending" if outcome.write_back else "none"
        with self._tx() as connection:
            result = connection.execute(
                update(sends)
                .where(sends.c.id == send_id, sends.c.lease_owner == owner)
                .values(
                    status=outcome.status,
                    reason=outcome.reason,
                    chat_id=outcome.chat_id,
                    message=outcome.message,
                    end_user_hint=outcome.end_user_hint,
                    finished_at=now,
                    inflight=False,
                    lease_owner=None,
                    lease_until=None,
                    writeback=write_back,
                    writeback_task="pending" if outcome.write_back and create_task else "none",
                    writeback_not_before=now,
                )
            )
        return result.rowcount == 1

    def requeue(
        self, send_id: int, *, owner: str, not_before: float, reason: str, may_have_sent: bool, refund: bool = False
    ) -> None:
        """Put a send back in the queue. ``refund`` undoes the attempt count (a 429 is not a failure)."""
        values: dict[str, Any] = {
            "status": "queued",
            "reason": reason,
            "not_before": not_before,
            "inflight": False,
            "may_have_sent": may_have_sent,
            "lease_owner": None,
            "lease_until": None,
        }
        if refund:
            values["attempts"] = case((sends.c.attempts > 0, sends.c.attempts - 1), else_=0)
        with self._tx() as connection:
            connection.execute(update(sends).where(sends.c.id == send_id, sends.c.lease_owner == owner).values(values))

    # -- the write-back step ------------------------------------------------------------------

    def claim_writebacks(self, *, limit: int, lease_seconds: float) -> list[PendingWriteback]:
        now = self._clock()
        pending = or_(sends.c.writeback == "pending", sends.c.writeback_task == "pending")
        free = or_(sends.c.writeback_lease_until.is_(None), sends.c.writeback_lease_until < now)
        query = (
            select(sends)
            .where(pending, sends.c.writeback_not_before <= now, free)
            .order_by(sends.c.writeback_not_before, sends.c.id)
            .limit(limit)
        )
        if self._postgres:
            query = query.with_for_update(skip_locked=True)
        with self._tx() as connection:
            rows = connection.execute(query).mappings().all()
            if rows:
                connection.execute(
                    update(sends)
                    .where(sends.c.id.in_([row["id"] for row in rows]))
                    .values(writeback_lease_until=now + lease_seconds)
                )
        return [
            PendingWriteback(
                id=row["id"],
                ticket_id=row["ticket_id"],
                status=row["status"],
                reason=row["reason"],
                chat_id=row["chat_id"],
                message=row["message"],
                case_pending=row["writeback"] == "pending",
                task_pending=row["writeback_task"] == "pending",
                attempts=row["writeback_attempts"],
                finished_at=row["finished_at"] or row["created_at"],
            )
            for row in rows
        ]

    def record_writeback(
        self,
        send_id: int,
        *,
        case_state: str | None,
        task_state: str | None,
        error: str | None,
        retry_at: float | None,
    ) -> None:
        """Store the result of one write-back attempt; ``None`` states leave that part unchanged."""
        values: dict[str, Any] = {
            "writeback_attempts": sends.c.writeback_attempts + 1,
            "writeback_lease_until": None,
            "writeback_error": error,
        }
        if case_state is not None:
            values["writeback"] = case_state
        if task_state is not None:
            values["writeback_task"] = task_state
        if retry_at is not None:
            values["writeback_not_before"] = retry_at
        with self._tx() as connection:
            connection.execute(update(sends).where(sends.c.id == send_id).values(values))

    def release(self, owner: str) -> int:
        """Give back this worker's claimed sends whose CCAI request has not started (on shutdown)."""
        with self._tx() as connection:
            result = connection.execute(
                update(sends)
                .where(sends.c.lease_owner == owner, sends.c.status == "sending", sends.c.inflight.is_(False))
                .values(status="queued", lease_owner=None, lease_until=None)
            )
        return int(result.rowcount)

    def purge(self, cutoff: float, *, batch: int = 1000, once: bool = False) -> int:
        """Delete finished sends (write-back settled) that finished before ``cutoff``, in batches.

        Their dedupe keys go with them, so the retention must outlast every redelivery window:
        Salesforce retries for 24 hours and API idempotency keys are promised for 24 hours, hence
        the 2-day minimum on the retention setting.
        """
        settled = and_(
            sends.c.status.in_(("sent", "failed", "skipped", "unknown")),
            sends.c.writeback != "pending",
            sends.c.writeback_task != "pending",
            sends.c.finished_at < cutoff,
        )
        removed = 0
        while True:
            with self._tx() as connection:
                ids = [row[0] for row in connection.execute(select(sends.c.id).where(settled).limit(batch))]
                if ids:
                    connection.execute(delete(sends).where(sends.c.id.in_(ids)))
            removed += len(ids)
            if once or len(ids) < batch:  # ``once``: one batch per call, for callers showing progress
                return removed

    # -- the shared CCAI pacing ---------------------------------------------------------------

    def reserve_slot(self, name: str, interval: float) -> float:
        """Take the next request slot of ``name``; returns how many seconds until it.

        Slots are ``interval`` apart across every process using this store, so all workers together
        stay within the tenant's rate.
        """
        now = self._clock()
        with self._tx() as connection:
            next_slot = self._slot_row(connection, name)
            slot = max(now, next_slot)
            connection.execute(update(rate_limits).where(rate_limits.c.name == name).values(next_slot=slot + interval))
        return slot - now

    def pause_slots(self, name: str, seconds: float) -> None:
        """No slot of ``name`` before ``seconds`` from now (after a 429)."""
        until = self._clock() + seconds
        with self._tx() as connection:
            if self._slot_row(connection, name) < until:
                connection.execute(update(rate_limits).where(rate_limits.c.name == name).values(next_slot=until))

    def _slot_row(self, connection: Connection, name: str) -> float:
        dialect_insert = pg_insert if self._postgres else sqlite_insert
        connection.execute(
            dialect_insert(rate_limits).values(name=name, next_slot=0.0).on_conflict_do_nothing(index_elements=["name"])
        )
        query = select(rate_limits.c.next_slot).where(rate_limits.c.name == name)
        if self._postgres:
            query = query.with_for_update()
        return float(connection.execute(query).scalar_one())

    # -- operator status ----------------------------------------------------------------------

    def put_status(self, key: str, value: Mapping[str, Any]) -> None:
        now = self._clock()
        row = {"key": key, "value": json.dumps(dict(value)), "updated_at": now}
        dialect_insert = pg_insert if self._postgres else sqlite_insert
        statement = dialect_insert(bridge_status).values(row)
        statement = statement.on_conflict_do_update(
            index_elements=["key"],
            set_={"value": statement.excluded.value, "updated_at": statement.excluded.updated_at},
        )
        with self._tx() as connection:
            connection.execute(statement)

    def status_items(self, prefix: str = "") -> dict[str, tuple[dict[str, Any], float]]:
        query = select(bridge_status).where(bridge_status.c.key.startswith(prefix, autoescape=True))
        with self._tx() as connection:
            rows = connection.execute(query).all()
        return {row.key: (json.loads(row.value), row.updated_at) for row in rows}

    def queue_summary(self) -> dict[str, Any]:
        """Counts by status, the oldest queued send's age and pending write-backs."""
        pending_writeback = or_(sends.c.writeback == "pending", sends.c.writeback_task == "pending")
        with self._tx() as connection:
            oldest = connection.execute(select(func.min(sends.c.created_at)).where(sends.c.status == "queued")).scalar()
            writebacks = connection.execute(select(func.count()).where(pending_writeback)).scalar_one()
        return {
            "by_status": self.counts(),
            "oldest_queued_seconds": None if oldest is None else max(0.0, self._clock() - oldest),
            "writebacks_pending": int(writebacks),
        }

    # -- reading ------------------------------------------------------------------------------

    def get(self, send_id: int) -> dict[str, Any] | None:
        with self._tx() as connection:
            row = connection.execute(select(sends).where(sends.c.id == send_id)).mappings().first()
        return dict(row) if row else None

    def find(
        self, *, ticket_id: str | None = None, status: str | None = None, limit: int = 100
    ) -> list[dict[str, Any]]:
        query = select(sends).order_by(sends.c.id.desc()).limit(limit)
        if ticket_id:
            query = query.where(sends.c.ticket_id == ticket_id)
        if status:
            query = query.where(sends.c.status == status)
        with self._tx() as connection:
            return [dict(row) for row in connection.execute(query).mappings()]

    def counts(self) -> dict[str, int]:
        with self._tx() as connection:
            rows = connection.execute(select(sends.c.status, func.count()).group_by(sends.c.status)).all()
        return {status: int(count) for status, count in rows}

    def next_due(self) -> float | None:
        """When the earliest queued send or pending write-back becomes due (for the worker's sleep)."""
        with self._tx() as connection:
            send_at = connection.execute(
                select(func.min(sends.c.not_before)).where(sends.c.status == "queued")
            ).scalar()
            # A leased write-back is not due before its lease ends (else an idle worker would spin).
            lease_end = sends.c.writeback_lease_until
            due_at = case((lease_end > sends.c.writeback_not_before, lease_end), else_=sends.c.writeback_not_before)
            writeback_at = connection.execute(
                select(func.min(due_at)).where(or_(sends.c.writeback == "pending", sends.c.writeback_task == "pending"))
            ).scalar()
        candidates = [t for t in (send_at, writeback_at) if t is not None]
        return min(candidates) if candidates else None


def _new_row(item: NewSend, now: float) -> dict[str, Any]:
    return {
        "dedupe_key": item.dedupe_key,
        "source": item.source,
        "org_id": item.org_id,
        "ticket_id": item.ticket_id,
        "overrides": json.dumps(dict(item.overrides)) if item.overrides else None,
        "status": "queued",
        "attempts": 0,
        "not_before": now,
        "inflight": False,
        "may_have_sent": False,
        "created_at": now,
        "writeback": "none",
        "writeback_task": "none",
        "writeback_attempts": 0,
    }
