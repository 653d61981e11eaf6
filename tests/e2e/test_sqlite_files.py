"""The SQLite store's files under faults (reliability audit 2: R14, R15), with `bridge serve` as a
real process on 127.0.0.1: the files deleted under the running bridge, and a file system too small
for the write-ahead log's automatic checkpoint. Each test acknowledged events into a store that was
gone, or never recovered, on the code before the fix.
"""

from __future__ import annotations

import resource
import signal
from pathlib import Path

import pytest

from bridge.sandbox.cases import outbound_message
from tests._processes import (
    LOCAL,
    BridgeProcess,
    SandboxProcess,
    all_written,
    assert_at_most_one_sms_each,
    bridge_environment,
    extra_cases,
    wait_for,
)

pytestmark = pytest.mark.e2e

FILE_SIZE_LIMIT = 1024 * 1024  # far below the WAL's automatic checkpoint (1000 pages, about 4 MiB)


def test_deleted_store_files_stop_the_bridge_acknowledging(sandbox: SandboxProcess, tmp_path: Path) -> None:
    """R14: an operator deletes bridge.db and its -wal and -shm files under the running bridge. The
    bridge must notice, say so in /readyz and stop acknowledging events it would write into a file
    nobody will ever open again."""
    bridge = BridgeProcess(env=bridge_environment(sandbox, tmp_path), log_path=tmp_path / "bridge.log").start()
    try:
        first = extra_cases(sandbox, 2, start=1500)
        assert bridge.post_xml(outbound_message(first)).status_code == 200
        wait_for(lambda: all_written(sandbox, first), timeout=30, what="the first Cases")
        for name in ("bridge.db", "bridge.db-wal", "bridge.db-shm"):
            (tmp_path / name).unlink(missing_ok=True)
        later = extra_cases(sandbox, 2, start=1510)
        assert bridge.post_xml(outbound_message(later)).status_code == 503
        ready = LOCAL.get(f"{bridge.url}/readyz")
        assert ready.status_code == 503
        assert "bridge.db" in ready.text
    finally:
        bridge.stop()


def _small_file_system() -> None:
    """In the child: no file may grow past FILE_SIZE_LIMIT, as on a small file system (a write that
    would fails with EFBIG rather than killing the process with SIGXFSZ)."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (FILE_SIZE_LIMIT, FILE_SIZE_LIMIT))


def test_a_store_that_ran_out_of_room_recovers(sandbox: SandboxProcess, tmp_path: Path) -> None:
    """R15: the write-ahead log cannot grow to the size at which SQLite checkpoints it by itself, so
    once it is full no write ever succeeds again. The bridge must checkpoint it and go on; every
    event it acknowledged is sent."""
    env = {**bridge_environment(sandbox, tmp_path), "LOG_LEVEL": "WARNING"}
    bridge = BridgeProcess(env=env, log_path=tmp_path / "bridge.log", preexec=_small_file_system).start()
    try:
        cases = extra_cases(sandbox, 40, start=1520)
        answers = {case: bridge.post_xml(outbound_message([case])).status_code for case in cases}
        acked = [case for case, status in answers.items() if status == 200]
        assert list(answers.values())[-10:] == [200] * 10, answers
        wait_for(lambda: all_written(sandbox, acked), timeout=60, what="every acknowledged Case")
        assert_at_most_one_sms_each(sandbox)
    finally:
        bridge.stop()
