"""Whether the process behind a lease still runs, known the moment it ends, not when its lease does.

Leases alone make a trade: a short lease frees a dead worker's sends quickly but takes work away
from a worker that is only slow (a long pause, a starved container); a long one keeps work safe and
leaves a dead worker's customers waiting. This module removes the trade for the common case, a
process that ended (``kill -9``, a crash, an out-of-memory kill): each worker holds a lock that only
its own process can hold, and that is let go of by the system the moment the process ends:

- PostgreSQL: a session-level advisory lock, on a connection of its own; the server drops it when
  the session ends (the process died, or its connection did);
- SQLite: a byte-range lock on a file beside the database (``bridge.db-workers``); the kernel drops
  it when the process ends (the processes share a host and a file system by construction).

Another worker that can take the lock knows the holder is gone. A paused or slow process keeps its
lock (its session and its file stay open), so its work waits for its lease as before. Losing the lock
without dying (the session dropped, say by a database restart) only makes others free its work
early, which the send's token and the takeover's wait make safe (:mod:`bridge.departure`); the worker
takes its lock again at its next heartbeat.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import threading
import zlib
from collections.abc import Iterable
from typing import Any

import psycopg
from sqlalchemy.exc import SQLAlchemyError

from bridge.store._watchdog import WATCHDOG
from bridge.store.database import Database, sqlite_path

logger = logging.getLogger(__name__)

# The advisory lock space the bridge's liveness locks live in (their first key: "brdg").
_LOCK_CLASS = 0x62726467
# What taking or looking at a lock can run into: the database or the file system not answering.
_FAILURES = (OSError, psycopg.Error, SQLAlchemyError)


def _key(owner: str) -> int:
    """The owner's lock: a 32-bit hash (signed, as PostgreSQL's int4), or a byte offset in the file."""
    return zlib.crc32(owner.encode()) - 2**31


class Liveness:
    """This process's liveness lock, and a look at other owners' (see the module docstring)."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._owner: str | None = None
        self._lock = threading.Lock()  # one conversation at a time on the lock's connection or file
        self._connection: Any = None  # PostgreSQL: the session holding the lock
        self._fd: int | None = None  # SQLite: the lock file, opened once (closing any copy drops the locks)
        path = None if db.postgres else sqlite_path(db.engine.url.render_as_string(hide_password=False))
        self._path = None if path is None else path.with_name(path.name + "-workers")

    @property
    def available(self) -> bool:
        """Whether locks can be held here (not for an in-memory SQLite store)."""
        return self._db.postgres or self._path is not None

    def hold(self, owner: str) -> bool:
        """Hold ``owner``'s lock (again, if the session holding it was lost); True while held."""
        with self._lock:
            self._owner = owner
            try:
                if self._db.postgres:
                    return self._hold_in_postgres(owner)
                return self._hold_in_file(owner)
            except _FAILURES as exc:
                logger.warning("Could not take this worker's liveness lock (%s); its work is freed by leases only", exc)
                self._drop_connection()
                return False

    def release(self) -> None:
        with self._lock:
            self._drop_connection()
            if self._fd is not None:
                os.close(self._fd)  # drops this process's locks on the file
                self._fd = None

    def gone(self, owners: Iterable[str]) -> set[str]:
        """Which of these owners no running process holds the lock of (this process's own excepted)."""
        others = sorted({owner for owner in owners if owner != self._owner})
        if not others or not self.available:
            return set()
        with self._lock:
            try:
                if self._db.postgres:
                    return {owner for owner in others if self._free_in_postgres(owner)}
                return {owner for owner in others if self._free_in_file(owner)}
            except _FAILURES as exc:
                logger.warning("Could not look at other workers' liveness locks (%s)", exc)
                self._drop_connection()
                return set()

    # -- PostgreSQL ---------------------------------------------------------------------------

    def _hold_in_postgres(self, owner: str) -> bool:
        if self._connection is not None and self._ask("SELECT 1") is not None:
            return True  # the session lives, so does its lock
        self._drop_connection()
        pooled = self._db.engine.raw_connection()
        pooled.detach()  # its own session for the process's life, outside the pool's count
        self._connection = pooled.dbapi_connection
        self._connection.autocommit = True  # no transaction left open (the server would end the session)
        held = bool(self._ask("SELECT pg_try_advisory_lock(%s, %s)", _LOCK_CLASS, _key(owner)))
        if not held:
            logger.warning("Another session holds worker %s's liveness lock", owner)
        return held

    def _free_in_postgres(self, owner: str) -> bool:
        if self._connection is None:
            return False  # no session to look from: assume nobody is gone
        if not self._ask("SELECT pg_try_advisory_lock(%s, %s)", _LOCK_CLASS, _key(owner)):
            return False
        self._ask("SELECT pg_advisory_unlock(%s, %s)", _LOCK_CLASS, _key(owner))
        return True

    def _ask(self, query: str, *params: int) -> Any:
        """One statement on the lock's session, within the store's deadline."""
        WATCHDOG.arm(self._connection, self._db.timeout)
        try:
            with self._connection.cursor() as cursor:
                cursor.execute(query, params or None)
                row = cursor.fetchone()
        finally:
            WATCHDOG.disarm(self._connection)
        return None if row is None else row[0]

    def _drop_connection(self) -> None:
        if self._connection is not None:
            with contextlib.suppress(Exception):
                self._connection.close()
            self._connection = None

    # -- SQLite -------------------------------------------------------------------------------

    def _hold_in_file(self, owner: str) -> bool:
        if self._path is None:
            return False
        if self._fd is None:
            self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600)
        # Re-taking a lock this process holds is a no-op: POSIX locks belong to the process.
        fcntl.lockf(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, _key(owner) + 2**31)
        return True

    def _free_in_file(self, owner: str) -> bool:
        if self._fd is None:
            return False
        offset = _key(owner) + 2**31
        try:
            fcntl.lockf(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, offset)
        except OSError:
            return False  # another process holds it
        fcntl.lockf(self._fd, fcntl.LOCK_UN, 1, offset)
        return True
