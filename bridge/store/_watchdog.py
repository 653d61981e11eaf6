"""A deadline on every conversation with PostgreSQL, enforced from outside the thread that waits.

libpq has no client-side limit on how long it waits for an answer. A link that silently drops
every byte (a middlebox that lost its state, a hung server, a partition its kernel has not noticed)
leaves the waiting thread blocked in ``recv`` for as long as TCP allows: about fifteen minutes for a
request it never acknowledged, forever for one a middlebox did acknowledge. Keepalives and
``tcp_user_timeout`` cover the first case only; ``statement_timeout`` is the server's, which never
sees the statement. So the store arms this watchdog before each transaction; one that outlives its
deadline has its socket shut down, the waiting thread fails at once with a connection error (an
outage: the pass is retried, the door answers 503) and the pool replaces the connection.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
from typing import Any

logger = logging.getLogger(__name__)

_TICK_SECONDS = 0.2


class Watchdog:
    """Deadlines for psycopg connections in use; one daemon thread per process enforces them."""

    def __init__(self) -> None:
        self._armed: dict[int, tuple[float, Any]] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def arm(self, connection: Any, seconds: float) -> None:
        """Cut ``connection`` (a psycopg connection) if it is still armed ``seconds`` from now."""
        with self._lock:
            self._armed[id(connection)] = (time.monotonic() + seconds, connection)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._watch, name="store-watchdog", daemon=True)
                self._thread.start()

    def disarm(self, connection: Any) -> None:
        with self._lock:
            self._armed.pop(id(connection), None)

    def _watch(self) -> None:
        while True:
            time.sleep(_TICK_SECONDS)
            now = time.monotonic()
            with self._lock:
                expired = [(key, conn) for key, (deadline, conn) in self._armed.items() if deadline <= now]
                for key, connection in expired:
                    del self._armed[key]
                    _cut(connection)


def _cut(connection: Any) -> None:
    """Shut the connection's socket down under the thread waiting on it (which then fails)."""
    if getattr(connection, "closed", True):
        return  # already closed: its descriptor may belong to another socket by now
    with contextlib.suppress(Exception):
        # A duplicate of the descriptor (psycopg keeps its own): shutting it down ends the one
        # connection both refer to.
        with socket.socket(fileno=os.dup(connection.pgconn.socket)) as duplicate:
            duplicate.shutdown(socket.SHUT_RDWR)
        logger.warning(
            "A store transaction outlived its deadline (the database, or the link to it, stopped answering): "
            "its connection was cut"
        )


WATCHDOG = Watchdog()
