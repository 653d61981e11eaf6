"""Starting the processes a benchmark needs, and reading what the kernel says about them."""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from bridge.crm.salesforce.ids import to18


def start(args: list[str], *, env: dict[str, str] | None = None, log: Path | None = None) -> subprocess.Popen[Any]:
    """``python -m bridge ARGS`` (or ``-m module`` when ARGS starts with ``-m``)."""
    command = [sys.executable, *args] if args[0] == "-m" else [sys.executable, "-m", "bridge", *args]
    output = log.open("ab") if log else subprocess.PIPE
    return subprocess.Popen(  # noqa: S603 - runs this same program, with fixed arguments
        command,
        env=env,
        stdout=output,
        stderr=subprocess.STDOUT if log else subprocess.DEVNULL,
        text=log is None,
    )


def start_sandbox(
    directory: Path,
    *,
    latency: float = 0.0,
    rate: float = 10.0,
    jitter: float = 0.0,
    window: str = "bucket",
    chat_life: str | None = None,
) -> tuple[subprocess.Popen[Any], dict[str, Any]]:
    args = ["sandbox", "--dir", str(directory), "--latency", str(latency), "--rate-limit", str(rate)]
    if jitter or window != "bucket":
        args += ["--jitter", str(jitter), "--rate-window", window]
    if chat_life:
        args += ["--chat-life", chat_life]
    process = start(args)
    assert process.stdout is not None
    return process, json.loads(process.stdout.readline())


def bridge_env(info: dict[str, Any], **extra: str) -> dict[str, str]:
    """The environment of a bridge pointed at the sandbox platforms described by ``info``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CCAI_", "SALESFORCE_", "BRIDGE_", "DATABASE_URL"))}
    env.update({k.upper(): str(v) for k, v in info["settings"].items()})
    env.update({"LOG_LEVEL": "WARNING", **extra})
    return env


def wait_until_up(url: str, *, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up within {timeout:.0f} s")


def peak_rss_mb(pid: int) -> float:
    """The process's peak resident memory (VmHWM), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def stop(processes: list[subprocess.Popen[Any]]) -> None:
    for process in reversed(processes):
        if process.poll() is None:
            process.terminate()
    for process in processes:
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# Area codes the sandbox's send window knows: 1,000 distinct numbers each.
AREAS = ("212", "415", "628", "646", "718", "312", "305", "206", "617", "702", "213", "303", "404", "512")


def seed_cases(info: dict[str, Any], count: int, *, tag: str, owner: str = "User") -> list[str]:
    """``count`` Cases in the sandbox's org, each with its own mobile number (``tag``: one letter that
    keeps one benchmark's ids apart from another's); returns their ids."""
    if count > 1000 * len(AREAS):
        raise ValueError(f"At most {1000 * len(AREAS)} Cases (distinct numbers run out).")
    cases = [
        {
            "Id": to18(f"5005g0000{tag}{i:05d}"),
            "CaseNumber": f"{i:08d}",
            "ContactMobile": f"+1 {AREAS[i // 1000]}-555-{i % 1000:04d}",
            "Owner.Type": owner,
            **({"Owner.Email": "agent@example.com"} if owner == "User" else {}),
        }
        for i in range(count)
    ]
    context = ssl.create_default_context(cafile=info["ca_file"])
    with httpx.Client(base_url=info["salesforce_url"], verify=context, timeout=120) as salesforce:
        for start_at in range(0, len(cases), 2000):
            salesforce.post("/_sandbox/control", json={"cases": cases[start_at : start_at + 2000]}).raise_for_status()
    return [case["Id"] for case in cases]
