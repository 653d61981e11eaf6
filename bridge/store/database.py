"""The database: engine, transactions, the clock every lease is measured with, and migrating it.

SQLite by default (one file, WAL, fsync on commit); PostgreSQL when ``DATABASE_URL`` says so.
Calls are synchronous; async code runs them in a worker thread. SQLAlchemy's errors are
translated here and nowhere else: an outage becomes :class:`StoreUnavailable` (try again later,
never ack), a refusal of the data itself :class:`StoreRejected` (retrying cannot help).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, Table, create_engine, event, select, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import (
    DataError,
    DBAPIError,
    DisconnectionError,
    IntegrityError,
    NotSupportedError,
    ProgrammingError,
    SQLAlchemyError,
    StatementError,
)
from sqlalchemy.pool import ConnectionPoolEntry, PoolProxiedConnection

from bridge.errors import ConfigError, StoreRejected, StoreUnavailable
from bridge.store._sqlite_file import SQLiteFile
from bridge.store._watchdog import WATCHDOG
from bridge.store.migrations import current_version, upgrade

Clock = Callable[[], float]
logger = logging.getLogger(__name__)

# PostgreSQL refuses these whatever the server's state: the statement or its data is at fault.
_PERMANENT = (DataError, IntegrityError, ProgrammingError, NotSupportedError)
LOCK_TIMEOUT = "10s"
IDLE_IN_TRANSACTION_TIMEOUT = "60s"
# How long one store transaction may take, end to end, before it counts as an outage
# (BRIDGE_STORE_TIMEOUT_SECONDS): well above the lock timeout, far below TCP's own limits.
DEFAULT_TIMEOUT_SECONDS = 30.0
# The deadline of the transaction the current thread is opening (read by the checkout hook).
_BOUNDS = threading.local()


def engine_for(url: str, *, timeout: float = DEFAULT_TIMEOUT_SECONDS, sqlite_file: SQLiteFile | None = None) -> Engine:
    """Create the engine for a ``DATABASE_URL`` (accepts Heroku's ``postgres://`` spelling).

    ``timeout`` bounds every conversation with PostgreSQL, from the client's side as well as the
    server's: see :mod:`bridge.store._watchdog`.
    """
    if url.startswith("postgres://"):
        url = "postgresql+psycopg://" + url[len("postgres://") :]
    elif url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    if url.startswith("sqlite:") and not url.startswith("sqlite:///") and url != "sqlite://":
        raise ConfigError(
            f"DATABASE_URL {url!r} is not a SQLite URL SQLAlchemy understands: write sqlite:/// followed by "
            "the file's path (sqlite:///bridge.db, or sqlite:////absolute/path.db)."
        )
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30})
        _tune_sqlite(engine, sqlite_file)
        return engine
    if url.startswith("postgresql+psycopg://"):
        engine = create_engine(url, pool_size=5, max_overflow=5, connect_args=_libpq_limits(timeout))
        _tune_postgres(engine, timeout)
        return engine
    raise ConfigError(f"DATABASE_URL must be a sqlite:/// or postgresql:// URL, not {url.split(':', 1)[0]}:...")


def _libpq_limits(timeout: float) -> dict[str, Any]:
    """libpq's own bounds (a URL's parameters still win): connecting, and noticing a dead peer both
    when a request goes unacknowledged (``tcp_user_timeout``) and when an idle connection's path died
    (keepalives; Linux would wait two hours before its first probe)."""
    return {
        "connect_timeout": max(2, min(10, round(timeout))),
        "keepalives": 1,
        "keepalives_idle": 15,
        "keepalives_interval": 5,
        "keepalives_count": 3,
        "tcp_user_timeout": round(timeout * 1000),
    }


def _tune_sqlite(engine: Engine, sqlite_file: SQLiteFile | None) -> None:
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
        for pragma in sqlite_file.pragmas() if sqlite_file is not None else ():
            cursor.execute(pragma)  # how large the write-ahead log may grow (see _sqlite_file)
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def _tune_postgres(engine: Engine, timeout: float) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
        with dbapi_connection.cursor() as cursor:
            # An ack promises the event is on disk. A role or database may set synchronous_commit off
            # (commits then return before they are durable), so the bridge asks for it explicitly.
            cursor.execute("SET synchronous_commit TO on")
            # A process frozen while it holds a lock (SIGSTOP, a paused VM) must not stall the others
            # for good: a lock wait ends as an outage (the pass is retried), and the server ends a
            # session that sits in a transaction (the bridge's transactions take milliseconds).
            cursor.execute(f"SET lock_timeout TO '{LOCK_TIMEOUT}'")
            cursor.execute(f"SET idle_in_transaction_session_timeout TO '{IDLE_IN_TRANSACTION_TIMEOUT}'")
            # The server's side of the store's deadline (the watchdog is the client's).
            cursor.execute(f"SET statement_timeout TO '{round(timeout * 1000)}ms'")
        dbapi_connection.commit()

    @event.listens_for(engine, "checkout")
    def _on_checkout(dbapi_connection: Any, _record: ConnectionPoolEntry, _proxy: PoolProxiedConnection) -> None:
        # The transaction's deadline starts before the check that a pooled connection still works
        # (SQLAlchemy's own pre-ping would be unbounded): one whose path died silently would block
        # that check forever.
        seconds = getattr(_BOUNDS, "seconds", None)
        if seconds is None:
            return
        WATCHDOG.arm(dbapi_connection, seconds)
        try:
            with dbapi_connection.cursor() as cursor:
                cursor.execute("SELECT 1")
        except Exception as exc:
            WATCHDOG.disarm(dbapi_connection)
            # The pool drops this connection and tries a new one (bounded by connect_timeout).
            raise DisconnectionError(f"The pooled connection no longer answers ({type(exc).__name__}).") from exc


def sqlite_path(url: str) -> Path | None:
    """The file of a ``sqlite:///`` URL (None for other databases and in-memory SQLite)."""
    if not url.startswith("sqlite:///"):
        return None
    path = url.removeprefix("sqlite:///").split("?", 1)[0]
    return Path(path) if path and path != ":memory:" else None


class Database:
    """One database: its engine, transactions and clock.

    Times stored by the bridge come from :meth:`now`: PostgreSQL's ``clock_timestamp()`` when it
    is PostgreSQL (every host then measures leases and pacing on one clock, whatever its own clock
    says), this host's clock for SQLite (one host by construction). Tests pass ``clock``.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        clock: Clock | None = None,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        sqlite_file: SQLiteFile | None = None,
    ) -> None:
        self.engine = engine
        # Where, for messages: host, port and database (the password masked), or the SQLite file.
        self.where = engine.url.render_as_string(hide_password=True).replace("+psycopg", "")
        self.postgres = engine.dialect.name == "postgresql"
        self.timeout = timeout
        self.sqlite_file = sqlite_file
        self._clock = clock

    @classmethod
    def from_url(cls, url: str, *, clock: Clock | None = None, timeout: float = DEFAULT_TIMEOUT_SECONDS) -> Database:
        path = sqlite_path(url)
        file = SQLiteFile(path) if path is not None else None
        return cls(engine_for(url, timeout=timeout, sqlite_file=file), clock=clock, timeout=timeout, sqlite_file=file)

    def problem(self) -> str | None:
        """Something about the store an operator must hear of though it answers (for /readyz)."""
        return None if self.sqlite_file is None else self.sqlite_file.problem()

    def close(self) -> None:
        self.engine.dispose()

    def recycle(self) -> None:
        """Drop every pooled connection (those in use are closed when they come back): after the
        store could not be reached, the next transaction starts on a connection made afresh."""
        self.engine.dispose(close=True)

    @contextmanager
    def tx(self, *, bounded: bool = True) -> Iterator[Connection]:
        """One transaction; database errors leave as :class:`StoreUnavailable` or :class:`StoreRejected`.

        On PostgreSQL it must end within the store's deadline (``bounded``; only migrations, which
        may rewrite a large table, are not), else its connection is cut and it fails as an outage.
        """
        if self.sqlite_file is not None and (gone := self.sqlite_file.check()) is not None:
            raise StoreUnavailable(f"The store at {self.where} is unavailable: {gone}.")
        _BOUNDS.seconds = self.timeout if bounded and self.postgres else None
        try:
            with self.engine.begin() as connection:
                armed = connection.connection.dbapi_connection if self.postgres else None
                try:
                    yield connection
                finally:
                    if armed is not None:
                        WATCHDOG.disarm(armed)
            if self.sqlite_file is not None:
                self.sqlite_file.opened()
        except (DBAPIError, SQLAlchemyError) as exc:
            if self.sqlite_file is not None and SQLiteFile.out_of_room(getattr(exc, "orig", exc)):
                self._make_room()
            raise translate(exc, where=self.where) from exc
        except UnicodeEncodeError as exc:
            # Raised by the driver itself, outside SQLAlchemy's wrapping, for a value it cannot
            # encode (a lone surrogate): the same value fails every time, so it is a refusal.
            raise StoreRejected(f"The store refused the data ({type(exc).__name__}).") from exc
        finally:
            _BOUNDS.seconds = None

    def _make_room(self) -> None:
        """A write failed for want of room: checkpoint the log now (see :mod:`._sqlite_file`), then
        start every connection afresh with the lower checkpoint size."""
        assert self.sqlite_file is not None
        try:
            raw = self.engine.raw_connection()
            try:
                self.sqlite_file.make_room(raw.dbapi_connection)
            finally:
                raw.close()
        except Exception as exc:  # the disk may be too full even for that: the next failure tries again
            logger.warning("Could not checkpoint the store's write-ahead log (%s)", exc)
        self.engine.dispose(close=True)

    def now(self, connection: Connection) -> float:
        """Seconds since the epoch by the clock all processes share (see the class docstring)."""
        if self._clock is not None:
            return self._clock()
        if self.postgres:
            return float(connection.execute(text("SELECT extract(epoch FROM clock_timestamp())")).scalar_one())
        return time.time()

    def insert(self, table: Table) -> Any:
        """The dialect's INSERT, which knows ON CONFLICT."""
        return (pg_insert if self.postgres else sqlite_insert)(table)

    def lock(self, connection: Connection, key: str) -> None:
        """Serialise transactions on ``key`` until this one ends (PostgreSQL; SQLite's BEGIN
        IMMEDIATE already serialises every writing transaction)."""
        if self.postgres:
            connection.execute(text("SELECT pg_advisory_xact_lock(hashtext(:key))"), {"key": key})

    # -- schema -------------------------------------------------------------------------------

    def migrate(self) -> int:
        """Bring the schema to the latest version; safe to run repeatedly and concurrently."""
        with self.tx(bounded=False) as connection:
            if self.postgres:
                connection.execute(text("SET LOCAL statement_timeout TO 0"))
            self.lock(connection, "bridge:migrate")
            return upgrade(connection, postgres=self.postgres, now=self.now(connection))

    def schema_version(self) -> int:
        with self.tx() as connection:
            return current_version(connection, create=False)

    def ping(self) -> None:
        with self.tx() as connection:
            connection.execute(select(1))


# What a driver's message means, in a few words an operator can act on.
_REASONS = (
    ("connection refused", "connection refused (is the server running, and is the port right?)"),
    ("does not exist", ""),  # keep the driver's words: database "x" does not exist
    ("password authentication failed", "authentication failed (check the user and password)"),
    ("no password supplied", "authentication failed (no password given)"),
    ("could not translate host name", "unknown host"),
    ("name or service not known", "unknown host"),
    ("timeout expired", "no answer in time"),
    ("unable to open database file", "the file cannot be opened (does its folder exist?)"),
    ("database is locked", "the file is locked by another process"),
)


def translate(exc: Exception, *, where: str = "") -> StoreUnavailable | StoreRejected:
    """Outage or refusal? Only errors that another attempt could cure count as an outage."""
    original = getattr(exc, "orig", None)
    if isinstance(exc, _PERMANENT):
        return StoreRejected(f"The store refused the data ({type(exc).__name__}: {_first_line(original)}).")
    if isinstance(exc, StatementError) and not isinstance(exc, DBAPIError):
        # Raised before the database saw anything (a value the driver cannot encode).
        return StoreRejected(f"The store refused the data ({type(original or exc).__name__}).")
    return StoreUnavailable(f"The store{f' at {where}' if where else ''} is unavailable: {_reason(original or exc)}.")


def _reason(error: object) -> str:
    text = " ".join(str(error).split())
    lowered = text.lower()
    for needle, words in _REASONS:
        if needle in lowered:
            if words:
                return words
            end = lowered.index(needle)
            start = max(lowered.rfind(word, 0, end) for word in ('database "', 'role "', "user "))
            return text[start : end + len(needle)] if start >= 0 else text[:200]
    return f"{type(error).__name__}: {_first_line(error)}" if str(error).strip() else type(error).__name__


def _first_line(error: object) -> str:
    return str(error).strip().splitlines()[0][:200] if error is not None and str(error).strip() else "no detail"
