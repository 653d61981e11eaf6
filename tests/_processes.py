"""Real processes on 127.0.0.1 for the end-to-end suites: ``bridge sandbox`` (the simulated
platforms, Salesforce over TLS) and ``bridge serve``/``bridge worker`` as a deployment runs them."""

from __future__ import annotations

import functools
import json
import os
import signal
import ssl
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from bridge.crm.salesforce.ids import to18
from bridge.sandbox.servers import free_port
from tests._sends import proven

FIXTURES = Path(__file__).parent / "fixtures"
REPO = Path(__file__).parents[1]


# One client for every plain-HTTP call the tests make to 127.0.0.1. A new client per call builds an
# SSL context (about 20 ms of CPU), and polls run 20 times a second in several workers at once.
# Idle connections are dropped well before uvicorn closes them (5 s), so none is reused as it closes.
LOCAL = httpx.Client(timeout=40, limits=httpx.Limits(keepalive_expiry=1.0))


def wait_for(predicate: Callable[[], Any], *, timeout: float = 15.0, interval: float = 0.05, what: str = "") -> Any:
    """Poll until ``predicate`` returns something truthy; fail with ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what or predicate}")
        time.sleep(interval)


@dataclass
class SandboxProcess:
    """``bridge sandbox`` running in its own process: the simulated CCAI and Salesforce."""

    process: subprocess.Popen[str]
    info: dict[str, Any]

    @property
    def ca_file(self) -> str:
        return str(self.info["ca_file"])

    @functools.cached_property
    def _salesforce(self) -> httpx.Client:
        """One TLS client for the sandbox's lifetime: a handshake and a trust store per poll cost more
        CPU than everything else a waiting test does."""
        context = ssl.create_default_context(cafile=self.ca_file)
        limits = httpx.Limits(keepalive_expiry=1.0)
        return httpx.Client(base_url=self.info["salesforce_url"], verify=context, timeout=10, limits=limits)

    def close(self) -> None:
        if "_salesforce" in self.__dict__:
            self._salesforce.close()

    def ccai_state(self) -> dict[str, Any]:
        return dict(LOCAL.get(f"{self.info['ccai_url']}/_sandbox/state", timeout=10).json())

    def ccai_control(self, **changes: Any) -> None:
        LOCAL.post(f"{self.info['ccai_url']}/_sandbox/control", json=changes, timeout=10).raise_for_status()

    def salesforce_state(self) -> dict[str, Any]:
        return dict(self._salesforce.get("/_sandbox/state").json())

    def salesforce_control(self, **changes: Any) -> None:
        self._salesforce.post("/_sandbox/control", json=changes).raise_for_status()

    def pubsub(self, **changes: Any) -> dict[str, Any]:
        """The simulated Pub/Sub API's state, after ``changes`` (see PubSubServer.control)."""
        if not changes:
            return dict(self._salesforce.get("/_sandbox/pubsub").json())
        return dict(self._salesforce.post("/_sandbox/pubsub", json=changes).json())

    def case(self, case_id: str) -> dict[str, Any]:
        return dict(self.salesforce_state()["cases"][case_id])


def python_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "bridge", *args]


def run_sandbox(directory: Path, *options: str, env: dict[str, str] | None = None) -> Iterator[SandboxProcess]:
    """``bridge sandbox`` with ``options`` (its command-line flags), stopped when the generator ends;
    ``env``: settings added to its environment (e.g. a host fault, :func:`tests._faults.faulty_env`)."""
    process = subprocess.Popen(
        python_command("sandbox", "--dir", str(directory / "tls"), *options),
        env={**os.environ, **env} if env else None,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stdout is not None
        handle = SandboxProcess(process=process, info=json.loads(process.stdout.readline()))
        wait_for(lambda: _reachable(handle), what="the sandbox platforms")
        yield handle
    finally:
        if "handle" in locals():
            handle.close()
        stop_process(process)


def stop_process(process: subprocess.Popen[Any]) -> None:
    """SIGTERM, then SIGKILL after 10 s; its output pipe closed."""
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    if process.stdout is not None:
        process.stdout.close()


def _reachable(handle: SandboxProcess) -> bool:
    try:
        handle.ccai_state()
        handle.salesforce_state()
    except httpx.HTTPError:
        return False
    return True


@dataclass
class BridgeProcess:
    """``bridge serve`` in its own process, as a deployment runs it."""

    env: dict[str, str]
    log_path: Path
    port: int = 0
    process: subprocess.Popen[bytes] | None = None
    # Run in the child before the bridge starts (resource limits of its host).
    preexec: Callable[[], None] | None = None
    # Start as a bridge that has run a while: its store holds the evidence that the tenant's chat list
    # carries its ticket ids, so a lost answer's lookup that finds nothing is believed (False: a new bridge).
    proven: bool = True

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> BridgeProcess:
        if self.proven and self.env.get("DATABASE_URL"):
            proven(self.env["DATABASE_URL"])
        self.port = free_port()
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            python_command("serve", "--host", "127.0.0.1", "--port", str(self.port)),
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=self.preexec,
        )
        try:
            wait_for(self._healthy, what="the bridge to answer /healthz")
        except BaseException:
            self.kill()  # a bridge that never came up is not left running after its test
            raise
        return self

    def _healthy(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            pytest.fail(f"the bridge exited with {self.process.returncode}:\n{self.log_path.read_text()}")
        try:
            return LOCAL.get(f"{self.url}/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def kill(self) -> None:
        """SIGKILL: no clean-up of any kind, as in a crash."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()

    def post_xml(self, body: bytes, *, token: str = "sandbox-webhook-token") -> httpx.Response:
        return LOCAL.post(
            f"{self.url}/salesforce/outbound-message",
            params={"token": token},
            content=body,
            headers={"Content-Type": "text/xml; charset=utf-8", "SOAPAction": '""'},
            timeout=30,
        )

    def logs(self) -> str:
        return self.log_path.read_text()


def bridge_environment(sandbox: SandboxProcess, directory: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CCAI_", "SALESFORCE_", "BRIDGE_"))}
    env.update({k.upper(): str(v) for k, v in sandbox.info["settings"].items()})
    env.update(
        {
            "DATABASE_URL": f"sqlite:///{directory / 'bridge.db'}",
            "BRIDGE_CONFIG": str(REPO / "config" / "bridge.toml"),
            "BRIDGE_POLL_SECONDS": "0.2",
            "BRIDGE_LEASE_SECONDS": "3",
            "CCAI_TIMEOUT_SECONDS": "2",
            "CCAI_RETRY_FOR_SECONDS": "20",
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


def statuses(sandbox: SandboxProcess, case_ids: list[str]) -> dict[str, Any]:
    cases = sandbox.salesforce_state()["cases"]
    return {case_id: cases[case_id].get("CCAI_SMS_Status__c") for case_id in case_ids}


def all_written(sandbox: SandboxProcess, case_ids: list[str]) -> bool:
    return all(statuses(sandbox, case_ids).values())


def extra_cases(sandbox: SandboxProcess, count: int, *, start: int = 10) -> list[str]:
    """Add Cases with distinct valid US mobiles to the simulated org."""
    cases = [
        {
            "Id": to18(f"5005g00000E{start + i:04d}"),
            "CaseNumber": f"0000{start + i:04d}",
            "ContactMobile": f"+1 415-555-{100 + start + i:04d}",
            "Owner.Type": "User",
            "Owner.Email": "ana.agent@example.com",
        }
        for i in range(count)
    ]
    sandbox.salesforce_control(cases=cases)
    return [c["Id"] for c in cases]


def sms_per_case(sandbox: SandboxProcess) -> Counter[str]:
    return Counter(sms["ticket_id"] for sms in sandbox.ccai_state()["accepted"])


def assert_at_most_one_sms_each(sandbox: SandboxProcess) -> None:
    counts = sms_per_case(sandbox)
    assert not counts or max(counts.values()) == 1, counts.most_common(3)


@dataclass
class Cluster:
    """One web process (no embedded worker) and any number of worker processes on one database."""

    env: dict[str, str]
    directory: Path
    web: BridgeProcess | None = None
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def start_web(self, **env: str) -> BridgeProcess:
        self.web = BridgeProcess(
            env={**self.env, "BRIDGE_EMBEDDED_WORKER": "false", **env}, log_path=self.directory / "web.log"
        )
        return self.web.start()

    def start_worker(self, *, command: list[str] | None = None, **env: str) -> subprocess.Popen[bytes]:
        """A ``bridge worker`` process (or ``command``, e.g. one whose clock is patched)."""
        log = (self.directory / f"worker{len(self.workers)}.log").open("ab")
        process = subprocess.Popen(
            command or python_command("worker"), env={**self.env, **env}, stdout=log, stderr=subprocess.STDOUT
        )
        self.workers.append(process)
        return process

    def logs(self) -> str:
        return "\n".join(p.read_text() for p in sorted(self.directory.glob("*.log")))

    def stop(self) -> None:
        if self.web is not None:
            self.web.stop()
        for process in self.workers:
            if process.poll() is None:
                process.kill()
                process.wait()


ClusterFactory = Callable[..., Cluster]
"""Makes a :class:`Cluster` beside a sandbox, with extra settings (the ``cluster_on`` fixture)."""


def chats_created(sandbox: SandboxProcess) -> int:
    """How many chats the sandbox CCAI created (SMS it accepted)."""
    return len(sandbox.ccai_state()["accepted"])


def worker_with(patch: str) -> list[str]:
    """``bridge worker`` in a process whose standard library is patched first (a fault of its host)."""
    code = f"{patch}\nimport sys\nfrom bridge.ops.cli import main\nsys.exit(main(['worker']))"
    return [sys.executable, "-c", code]
