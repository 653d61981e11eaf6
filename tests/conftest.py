from __future__ import annotations

import json
import os
import signal
import ssl
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, text

from bridge.model import RecordResult, Ticket
from bridge.sandbox.servers import free_port
from bridge.store import Store

FIXTURES = Path(__file__).parent / "fixtures"
POSTGRES_URL = os.environ.get("BRIDGE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


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


# -- stores ------------------------------------------------------------------------------------


def _postgres_available() -> str | None:
    try:
        engine = create_engine(POSTGRES_URL.replace("postgresql://", "postgresql+psycopg://"))
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        engine.dispose()
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}".splitlines()[0]
    return None


@pytest.fixture(scope="session")
def postgres_url() -> str:
    problem = _postgres_available()
    if problem:
        if os.environ.get("BRIDGE_TEST_REQUIRE_POSTGRES"):
            pytest.fail(f"PostgreSQL is required for this run but unreachable at {POSTGRES_URL}: {problem}")
        pytest.skip(f"PostgreSQL unreachable at {POSTGRES_URL} ({problem}); set BRIDGE_TEST_POSTGRES_URL")
    return POSTGRES_URL


@pytest.fixture
def pg_schema_url(postgres_url: str) -> Iterator[str]:
    """A PostgreSQL URL whose connections use a fresh schema of their own."""
    schema = f"t_{uuid.uuid4().hex[:10]}"
    # pre_ping: a test may restart the server, leaving pooled connections dead.
    engine = create_engine(postgres_url.replace("postgresql://", "postgresql+psycopg://"), pool_pre_ping=True)
    with engine.begin() as connection:
        connection.execute(text(f"CREATE SCHEMA {schema}"))
    separator = "&" if "?" in postgres_url else "?"
    yield f"{postgres_url}{separator}options=-csearch_path%3D{schema}"
    with engine.begin() as connection:
        connection.execute(text(f"DROP SCHEMA {schema} CASCADE"))
    engine.dispose()


class Clock:
    """A clock tests move by hand."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'bridge.db'}"
    url: str = request.getfixturevalue("pg_schema_url")
    return url


@pytest.fixture
def store(store_url: str, clock: Clock) -> Iterator[Store]:
    s = Store.from_url(store_url, clock=clock)
    s.migrate()
    yield s
    s.close()


@pytest.fixture
def sqlite_store(tmp_path: Path, clock: Clock) -> Iterator[Store]:
    s = Store.from_url(f"sqlite:///{tmp_path / 'bridge.db'}", clock=clock)
    s.migrate()
    yield s
    s.close()


# -- an in-memory CRM for in-process worker tests ----------------------------------------------


@dataclass
class FakeGateway:
    """Implements the CaseGateway protocol in memory; ``failures`` makes the next calls raise."""

    cases: dict[str, dict[str, Any]] = field(default_factory=dict)
    updates: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    tasks: list[dict[str, Any]] = field(default_factory=list)
    reads: int = 0
    failures: list[Exception] = field(default_factory=list)  # raised by the next reads
    write_failures: list[Exception] = field(default_factory=list)  # raised by the next writes
    record_errors: dict[str, RecordResult] = field(default_factory=dict)

    @staticmethod
    def _maybe_fail(failures: list[Exception]) -> None:
        if failures:
            raise failures.pop(0)

    def read_tickets(self, ids: Sequence[str], fields: Sequence[str]) -> dict[str, Ticket]:
        self.reads += 1
        self._maybe_fail(self.failures)
        return {i: Ticket(id=i, fields=self.cases[i]) for i in ids if i in self.cases}

    writes: int = 0

    def write_back(
        self, updates: Sequence[tuple[str, Mapping[str, Any]]], tasks: Sequence[Mapping[str, Any]]
    ) -> tuple[list[RecordResult], list[RecordResult]]:
        self.writes += 1
        self._maybe_fail(self.write_failures)
        return self._update_cases(updates), self._create_tasks(tasks)

    def _update_cases(self, updates: Sequence[tuple[str, Mapping[str, Any]]]) -> list[RecordResult]:
        results = []
        for case_id, values in updates:
            error = self.record_errors.get(case_id)
            if error is None:
                self.updates.append((case_id, dict(values)))
            results.append(error or RecordResult(ok=True))
        return results

    def _create_tasks(self, tasks: Sequence[Mapping[str, Any]]) -> list[RecordResult]:
        self.tasks.extend(dict(t) for t in tasks)
        return [RecordResult(ok=True) for _ in tasks]

    def api_usage(self) -> tuple[int, int] | None:
        return (self.reads, 100_000) if self.reads else None


# -- real processes on 127.0.0.1 ----------------------------------------------------------------


@dataclass
class SandboxProcess:
    """``bridge sandbox`` running in its own process: the simulated CCAI and Salesforce."""

    process: subprocess.Popen[str]
    info: dict[str, Any]

    @property
    def ca_file(self) -> str:
        return str(self.info["ca_file"])

    def _sf(self) -> httpx.Client:
        context = ssl.create_default_context(cafile=self.ca_file)
        return httpx.Client(base_url=self.info["salesforce_url"], verify=context, timeout=10)

    def ccai_state(self) -> dict[str, Any]:
        return dict(httpx.get(f"{self.info['ccai_url']}/_sandbox/state", timeout=10).json())

    def ccai_control(self, **changes: Any) -> None:
        httpx.post(f"{self.info['ccai_url']}/_sandbox/control", json=changes, timeout=10).raise_for_status()

    def salesforce_state(self) -> dict[str, Any]:
        with self._sf() as client:
            return dict(client.get("/_sandbox/state").json())

    def salesforce_control(self, **changes: Any) -> None:
        with self._sf() as client:
            client.post("/_sandbox/control", json=changes).raise_for_status()

    def case(self, case_id: str) -> dict[str, Any]:
        return dict(self.salesforce_state()["cases"][case_id])


def python_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "bridge", *args]


def _run_sandbox(directory: Path) -> Iterator[SandboxProcess]:
    process = subprocess.Popen(
        python_command("sandbox", "--dir", str(directory / "tls")),
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
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[SandboxProcess]:
    yield from _run_sandbox(tmp_path)


@pytest.fixture(scope="module")
def module_sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxProcess]:
    """One sandbox for a whole module, for tests that never change the platforms' state."""
    yield from _run_sandbox(tmp_path_factory.mktemp("sandbox"))


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

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> BridgeProcess:
        self.port = free_port()
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            python_command("serve", "--host", "127.0.0.1", "--port", str(self.port)),
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        wait_for(self._healthy, what="the bridge to answer /healthz")
        return self

    def _healthy(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            pytest.fail(f"the bridge exited with {self.process.returncode}:\n{self.log_path.read_text()}")
        try:
            return httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def kill(self) -> None:
        """SIGKILL: no clean-up of any kind, as in a crash."""
        assert self.process is not None
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
        return httpx.post(
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
            "BRIDGE_CONFIG": str(Path(__file__).parents[1] / "config" / "bridge.toml"),
            "BRIDGE_POLL_SECONDS": "0.2",
            "BRIDGE_LEASE_SECONDS": "3",
            "CCAI_TIMEOUT_SECONDS": "2",
            "CCAI_RETRY_FOR_SECONDS": "20",
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


@pytest.fixture
def bridge_env(sandbox: SandboxProcess, tmp_path: Path) -> dict[str, str]:
    return bridge_environment(sandbox, tmp_path)


@pytest.fixture(scope="module")
def module_bridge(module_sandbox: SandboxProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[BridgeProcess]:
    """One running bridge for a module, beside ``module_sandbox``."""
    directory = tmp_path_factory.mktemp("bridge")
    bridge = BridgeProcess(env=bridge_environment(module_sandbox, directory), log_path=directory / "bridge.log")
    bridge.start()
    yield bridge
    bridge.stop()


@pytest.fixture
def start_bridge(bridge_env: dict[str, str], tmp_path: Path) -> Iterator[Callable[..., BridgeProcess]]:
    started: list[BridgeProcess] = []

    def start(**extra_env: str) -> BridgeProcess:
        bridge = BridgeProcess(env={**bridge_env, **extra_env}, log_path=tmp_path / "bridge.log").start()
        started.append(bridge)
        return bridge

    yield start
    for bridge in started:
        bridge.stop()
