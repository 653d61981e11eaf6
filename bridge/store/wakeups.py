"""Wake-ups across processes: a worker in another process starts on new work at once.

On PostgreSQL every transaction that makes a send due now (a door storing sends, an operator's
retry) sends a ``NOTIFY`` on the store's channel, delivered to the listening workers when it
commits (never before: the work is visible by the time a worker wakes). A worker keeps one session
of its own listening (:class:`Listener`) and looks for work when told, instead of at its next poll.

A notification only says "look now": it carries nothing and claims nothing, so one that is missed
(a worker reconnecting, one sent while nobody listens, a dropped session) costs only latency: the
worker's poll still finds the work, and claims (leases, tokens) stay the only thing that hands work
out, so nothing is done twice. Every (re)connection of the listener counts as a wake-up, since what
was stored meanwhile was announced to nobody.

The channel is named after the session's schema: several bridges (or test runs) sharing one
database in schemas of their own do not wake each other. On SQLite there is one host and the
embedded worker is woken in process (``Worker.wake``); this module does nothing there.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from typing import Any

import psycopg
from psycopg import sql
from sqlalchemy import Connection, text
from sqlalchemy.exc import SQLAlchemyError

from bridge.store._watchdog import WATCHDOG
from bridge.store.database import Database

logger = logging.getLogger(__name__)

CHANNEL_PREFIX = "bridge_work:"
# How often an idle listening session is asked a question (within the store's deadline): a path that
# died silently is noticed then, not when keepalives give up.
CHECK_EVERY_SECONDS = 10.0
# How long to wait before connecting again after a failure (polling covers the gap).
RETRY_SECONDS = 1.0
_FAILURES = (OSError, psycopg.Error, SQLAlchemyError)
_ANNOUNCE = text(f"SELECT pg_notify('{CHANNEL_PREFIX}' || current_schema(), '')")


def announce(db: Database, connection: Connection) -> None:
    """Tell the listening workers, when this transaction commits, that work is due (PostgreSQL)."""
    if db.postgres:
        connection.execute(_ANNOUNCE)


class Listener:
    """One session listening for :func:`announce` (PostgreSQL), used from one thread at a time.

    :meth:`wait` blocks for at most its timeout, so the thread that runs it can be given back; a
    failure closes the session and the next call connects again (meanwhile the worker polls).
    """

    def __init__(self, db: Database) -> None:
        self._db = db
        self._connection: Any = None
        self._checked = 0.0
        self._retry_at = 0.0
        self._closing = False
        self._busy = threading.Lock()
        self._failing = False  # a failure is logged once, not on every retry

    @property
    def available(self) -> bool:
        return self._db.postgres

    @property
    def listening(self) -> bool:
        return self._connection is not None

    def wait(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for a notification. True when one came, or when listening
        (re)started (what was stored meanwhile was announced to nobody); False otherwise."""
        if not self.available:
            time.sleep(timeout)
            return False
        with self._busy:
            if self._closing:
                self._drop()
                return False
            try:
                if self._connection is None:
                    return self._connect(timeout)
                if time.monotonic() - self._checked >= CHECK_EVERY_SECONDS:
                    self._check()
                return self._receive(timeout)
            except _FAILURES as exc:
                self._failed(exc)
                return False
            finally:
                if self._closing:
                    self._drop()

    def close(self) -> None:
        """Stop listening; a wait under way closes the session itself when it ends."""
        self._closing = True
        if self._busy.acquire(blocking=False):
            try:
                self._drop()
            finally:
                self._busy.release()

    def _connect(self, timeout: float) -> bool:
        pause = self._retry_at - time.monotonic()
        if pause > 0:
            time.sleep(min(pause, timeout))
            return False
        pooled = self._db.engine.raw_connection()  # the engine's connect-time limits and keepalives
        pooled.detach()  # its own session for the worker's life, outside the pool's count
        self._connection = pooled.dbapi_connection
        self._connection.autocommit = True  # LISTEN takes effect at once; no transaction left open
        schema = self._ask("SELECT current_schema()")
        self._ask(sql.SQL("LISTEN {}").format(sql.Identifier(f"{CHANNEL_PREFIX}{schema}")), fetch=False)
        self._checked = time.monotonic()
        if self._failing:
            logger.info("Listening for new work again")
            self._failing = False
        return True

    def _check(self) -> None:
        self._ask("SELECT 1")
        self._checked = time.monotonic()

    def _receive(self, timeout: float) -> bool:
        # Notifications that arrived while the session answered a question are delivered first.
        received = any(True for _ in self._connection.notifies(timeout=timeout, stop_after=1))
        if received:
            self._drain()  # after the first generator let go of the connection's lock
        return received

    def _drain(self) -> None:
        """Take the notifications already received too: one wake-up is enough for all of them."""
        for _ in self._connection.notifies(timeout=0):
            pass

    def _ask(self, query: Any, *, fetch: bool = True) -> Any:
        """One statement on the listening session, within the store's deadline (see _watchdog)."""
        WATCHDOG.arm(self._connection, self._db.timeout)
        try:
            with self._connection.cursor() as cursor:
                cursor.execute(query)
                row = cursor.fetchone() if fetch else None
        finally:
            WATCHDOG.disarm(self._connection)
        return None if row is None else row[0]

    def _failed(self, exc: BaseException) -> None:
        if not self._failing:
            logger.warning("Stopped listening for new work (%s); polling until listening again", type(exc).__name__)
            self._failing = True
        self._drop()
        self._retry_at = time.monotonic() + RETRY_SECONDS

    def _drop(self) -> None:
        if self._connection is not None:
            with contextlib.suppress(Exception):
                self._connection.close()
            self._connection = None
