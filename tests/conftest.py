"""Fixtures: stores on SQLite and a real PostgreSQL, a hand-moved clock, the sandbox platforms and
bridges as real processes. Helpers live in the ``tests._*`` modules."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from bridge.store import Store
from tests._apps import preserved_logging
from tests._clock import Clock
from tests._processes import (
    BridgeProcess,
    Cluster,
    ClusterFactory,
    SandboxProcess,
    bridge_environment,
    run_sandbox,
)
from tests._sends import proven

POSTGRES_URL = os.environ.get("BRIDGE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
E2E = Path(__file__).parent / "e2e"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """For ``pytest -n N --dist loadgroup``: a module of in-process tests runs on one worker (its
    module fixtures are built once), while each real-process test is a unit of its own, so the long
    ones (seconds of waiting on processes, not CPU) spread over every worker instead of queueing
    behind the others of their file."""
    for item in items:
        if E2E not in item.path.parents:
            item.add_marker(pytest.mark.xdist_group(str(item.path.relative_to(E2E.parent))))


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


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


@pytest.fixture(autouse=True)
def _logging_put_back() -> Iterator[None]:
    """Tests that run ``main()`` point the root logger at their captured stderr; every test gets
    back the logging it started with, so no later test writes to a closed stream."""
    with preserved_logging():
        yield


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


# -- real processes on 127.0.0.1 ----------------------------------------------------------------


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[SandboxProcess]:
    yield from run_sandbox(tmp_path)


@pytest.fixture
def bridge_env(sandbox: SandboxProcess, tmp_path: Path) -> dict[str, str]:
    return bridge_environment(sandbox, tmp_path)


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


@pytest.fixture
def cluster_on(pg_schema_url: str, tmp_path: Path) -> Iterator[ClusterFactory]:
    """A factory: a cluster (web + workers on a fresh PostgreSQL schema) beside the given sandbox,
    with extra settings."""
    clusters: list[Cluster] = []

    def make(sandbox: SandboxProcess, **env: str) -> Cluster:
        settings = {**bridge_environment(sandbox, tmp_path), "DATABASE_URL": pg_schema_url, **env}
        # The release step, in-process: `bridge migrate` as a command is tested on its own, and a
        # process start per cluster is a second of CPU the suite does not need to spend.
        proven(pg_schema_url)
        clusters.append(Cluster(env=settings, directory=tmp_path))
        return clusters[-1]

    yield make
    for cluster in clusters:
        cluster.stop()


@pytest.fixture
def cluster(sandbox: SandboxProcess, cluster_on: ClusterFactory) -> Cluster:
    """A web process and worker processes on a fresh PostgreSQL schema, beside the sandbox."""
    return cluster_on(sandbox)
