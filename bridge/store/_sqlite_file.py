"""The SQLite store's file, watched: deleted or replaced under the running bridge, or out of room.

- **Deleted or replaced** (an operator's mistake, a cleanup script): the bridge's open connections
  would go on writing to the unlinked file and the web door would go on acknowledging events into a
  store nobody will ever open again; after a restart every send and dedupe key is gone. Every
  transaction first checks that the path still names the file the bridge opened; once it does not,
  the store counts as unavailable (503, nothing acknowledged) until the bridge is restarted.
- **Out of room**: SQLite checkpoints its write-ahead log into the database file only once the log
  holds ``wal_autocheckpoint`` pages (about 4 MiB). On a file system with less room than that, a
  full log can never be checkpointed by a write that succeeds, so no write ever succeeds again. After
  a write fails for want of room, the log is checkpointed and truncated at once, and the automatic
  checkpoint (and the size the log is truncated to) is lowered to half of what fitted.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

DEFAULT_AUTOCHECKPOINT_PAGES = 1000  # SQLite's own default
_PAGE_BYTES = 4096
_DISK_WORDS = ("disk is full", "disk i/o error")
# How long /readyz goes on saying that the disk was full after the last write that failed for it.
FULL_REPORTED_FOR_SECONDS = 300.0


class SQLiteFile:
    """The database file a SQLite store opened, and what happened to it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.autocheckpoint_pages = DEFAULT_AUTOCHECKPOINT_PAGES
        self._identity: tuple[int, int] | None = None
        self._gone: str | None = None
        self._full_at: float | None = None
        self._lock = threading.Lock()

    def pragmas(self) -> list[str]:
        """What every new connection is told about the log's size."""
        pages = self.autocheckpoint_pages
        return [f"PRAGMA wal_autocheckpoint={pages}", f"PRAGMA journal_size_limit={pages * _PAGE_BYTES}"]

    def opened(self) -> None:
        """A transaction succeeded: the file exists now; remember which file it is (once)."""
        if self._identity is None:
            self.check()

    def check(self) -> str | None:
        """Why the store must not be written any more (its file is gone or replaced), or None."""
        if self._gone is not None:
            return self._gone
        try:
            stat = os.stat(self.path)
        except FileNotFoundError:
            if self._identity is None:
                return None  # not created yet: the first connection creates it
            return self._lost("was deleted")
        identity = (stat.st_dev, stat.st_ino)
        if self._identity is None:
            self._identity = identity
        elif identity != self._identity:
            return self._lost("was replaced by another file")
        return None

    def _lost(self, what: str) -> str:
        self._gone = (
            f"the store's file {self.path.name} {what} while the bridge was running: nothing more is acknowledged "
            "into it; restore the file, or restart the bridge on a new, empty store"
        )
        logger.error("The SQLite store %s %s under the running bridge: it stops acknowledging events", self.path, what)
        return self._gone

    def problem(self) -> str | None:
        """What /readyz says about the file: gone, or full not long ago."""
        if (gone := self.check()) is not None:
            return gone
        if self._full_at is not None and time.monotonic() - self._full_at < FULL_REPORTED_FOR_SECONDS:
            return (
                f"the store's disk was full {time.monotonic() - self._full_at:.0f} s ago: its write-ahead log was "
                f"checkpointed, and is now kept under {self.autocheckpoint_pages * _PAGE_BYTES // 1024} KiB"
            )
        return None

    @staticmethod
    def out_of_room(error: object) -> bool:
        """Whether a failed write failed for want of room (SQLite says "disk is full", or an I/O error
        when the file may not grow)."""
        return any(words in str(error).lower() for words in _DISK_WORDS)

    def make_room(self, raw_connection: Any) -> None:
        """After a write failed for want of room: checkpoint the log into the database and truncate it,
        and from now on checkpoint it at half the size it reached (new connections; the caller then
        replaces the pooled ones)."""
        with self._lock:
            self._full_at = time.monotonic()
            log = self.path.with_name(self.path.name + "-wal")
            with contextlib.suppress(OSError):
                fitted = os.path.getsize(log) // _PAGE_BYTES
                if fitted:
                    self.autocheckpoint_pages = max(16, min(self.autocheckpoint_pages, fitted // 2))
            cursor = raw_connection.cursor()
            try:
                cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                busy, pages, moved = cursor.fetchone()
            finally:
                cursor.close()
        logger.warning(
            "The store's disk was full: its write-ahead log was checkpointed (%s of %s pages moved%s) and is now "
            "checkpointed every %d pages",
            moved,
            pages,
            ", not all: a reader held it" if busy else "",
            self.autocheckpoint_pages,
        )
