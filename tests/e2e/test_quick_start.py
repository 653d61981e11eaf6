"""The README's quick start as a newcomer runs it: ``bridge serve --sandbox``, then the commands its
banner prints (a platform event published as the Flow does, the sample outbound message, and the
other commands once the sandbox's settings are loaded), each a real process."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from bridge.sandbox.servers import free_port
from tests._processes import wait_for

pytestmark = pytest.mark.e2e

FIRST = "5005g00000SBX01AAH"


class Banner:
    """``bridge serve --sandbox`` running, and what it printed."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process
        self.lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def text(self) -> str:
        return "\n".join(self.lines)

    def command(self, starting: str) -> list[str]:
        """The banner's command line whose program is followed by ``starting`` (``sandbox publish``)."""
        line = next(line for line in self.lines if f"bridge {starting}" in line and "curl" not in line)
        return shlex.split(line.strip())

    def ccai_accepted(self) -> list[dict[str, object]]:
        url = re.search(r"what it received: (\S+)\)", self.text)
        assert url, self.text
        accepted: list[dict[str, object]] = httpx.get(url.group(1), timeout=5).json()["accepted"]
        return accepted


@pytest.fixture
def banner(tmp_path: Path) -> Iterator[Banner]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CCAI_", "SALESFORCE_", "BRIDGE_", "DATABASE"))}
    process = subprocess.Popen(
        _bridge("serve", "--sandbox", "--port", str(free_port())),
        cwd=tmp_path,
        env={**env, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    shown = Banner(process)
    try:
        wait_for(lambda: "Stop with Ctrl-C" in shown.text, timeout=30, what="the sandbox's banner")
        yield shown
    finally:
        process.terminate()
        process.wait(timeout=25)


def _bridge(*args: str) -> list[str]:
    """The ``bridge`` script beside this Python, as the README's quick start installs it."""
    return [str(Path(sys.executable).with_name("bridge")), *args]


def _env_file(banner: Banner) -> dict[str, str]:
    found = re.search(r"set -a; \. (\S+); set \+a", banner.text)
    assert found, banner.text
    pairs = (line.split("=", 1) for line in Path(found.group(1)).read_text().splitlines() if "=" in line)
    return {key.strip(): shlex.split(value)[0] if value.strip() else "" for key, value in pairs}


def run(command: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=cwd, env={**os.environ, **env}, capture_output=True, text=True, timeout=60)


def test_the_quick_starts_commands_work_as_the_banner_prints_them(banner: Banner, tmp_path: Path) -> None:
    # In another terminal, the sandbox's settings loaded first, as the banner says.
    settings = _env_file(banner)
    # A platform event published as the Flow does: the stream brings it, and the SMS leaves.
    published = run(banner.command("sandbox publish"), tmp_path, **settings)
    assert published.returncode == 0, published.stdout + published.stderr
    wait_for(lambda: any(a.get("ticket_id") == FIRST for a in banner.ccai_accepted()), what="the published Case's SMS")

    # The sample outbound message, posted as printed.
    posted = run(banner.command("sample-message --post"), tmp_path, **settings)
    assert posted.returncode == 0, posted.stdout + posted.stderr

    # The operator commands.
    listed = run([*banner.command("sends list")], tmp_path, **settings)
    assert listed.returncode == 0, listed.stderr
    assert FIRST in listed.stdout
    assert banner.process.poll() is None
