"""Faults of the bridge's hosts and of its database, for the real-process fault suites.

- :func:`faulty_env`: settings that put ``tests/_hooks/sitecustomize.py`` on a process's path: its
  wall clock off by a file's offset, or the process stopping itself right after a chosen call;
- :func:`is_stopped`, :func:`pause`, :func:`resume`: a process paused by its host (SIGSTOP/SIGCONT);
- :class:`PgClock`: PostgreSQL's ``clock_timestamp()`` shadowed, for one schema's connections only,
  by one that adds an offset the test steps (no server setting changes);
- :func:`snapshot_schema`: a copy of a schema as it is now, to fail over to later (a replica that
  fell behind).

The TCP proxy that stalls, blackholes, cuts or fails over the database link is in :mod:`tests._pgproxy`.
"""

from __future__ import annotations

import os
import signal
import uuid
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from sqlalchemy import Engine, create_engine, text

from bridge.store import Store

HOOKS = Path(__file__).parent / "_hooks"
# The store call after which a process stops itself (``faulty_env(stop_after=...)``): the send is
# cleared to leave, and the request has not left.
CLEARED_TO_LEAVE = "bridge.store.sends:Sends.depart"
# The SQL of that call, for the database proxy's triggers.
CLEARED_TO_LEAVE_SQL = r"UPDATE sends SET .*attempts=\(sends\.attempts \+"


def faulty_env(*, clock_file: Path | None = None, stop_after: str | None = None) -> dict[str, str]:
    """Settings for a process with host faults (see ``tests/_hooks/sitecustomize.py``)."""
    env = {"PYTHONPATH": os.pathsep.join(p for p in (str(HOOKS), os.environ.get("PYTHONPATH", "")) if p)}
    if clock_file is not None:
        env["BRIDGE_FAULT_CLOCK_FILE"] = str(clock_file)
    if stop_after is not None:
        env["BRIDGE_FAULT_STOP_AFTER"] = stop_after
    return env


def is_stopped(pid: int) -> bool:
    """Whether the process is stopped by a signal (state T in /proc)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] in ("T", "t")


def pause(pid: int) -> None:
    os.kill(pid, signal.SIGSTOP)


def resume(pid: int) -> None:
    os.kill(pid, signal.SIGCONT)


def schema_of(url: str) -> str:
    """The schema a ``pg_schema_url`` points its connections at."""
    options = parse_qs(urlsplit(url).query)["options"][0]
    return options.split("search_path=", 1)[1].split(",", 1)[0]


def with_search_path(url: str, *schemas: str) -> str:
    base = url.split("?", 1)[0]
    return f"{base}?options=-csearch_path%3D{'%2C'.join(schemas)}"


def _engine(url: str) -> Engine:
    return create_engine(url.split("?", 1)[0].replace("postgresql://", "postgresql+psycopg://"))


class PgClock:
    """PostgreSQL's clock as one schema's connections see it, stepped by the test.

    A private schema holds ``clock_timestamp()`` = the real one + an offset; the URL puts it on the
    ``search_path`` after the store's schema and before ``pg_catalog`` (named explicitly, so that it
    no longer comes first), so the bridge's own ``clock_timestamp()`` is the shadowing one.
    """

    def __init__(self, schema_url: str) -> None:
        self._engine = _engine(schema_url)
        self.schema = f"clk_{uuid.uuid4().hex[:10]}"
        self.url = with_search_path(schema_url, schema_of(schema_url), self.schema, "pg_catalog")
        with self._engine.begin() as connection:
            connection.execute(text(f"CREATE SCHEMA {self.schema}"))
            connection.execute(text(f"CREATE TABLE {self.schema}.skew (v double precision NOT NULL)"))
            connection.execute(text(f"INSERT INTO {self.schema}.skew VALUES (0)"))
            shifted = f"pg_catalog.clock_timestamp() + make_interval(secs => (SELECT v FROM {self.schema}.skew))"
            connection.execute(
                text(
                    f"CREATE FUNCTION {self.schema}.clock_timestamp() RETURNS timestamptz LANGUAGE sql VOLATILE "
                    f"AS $$ SELECT {shifted} $$"
                )
            )

    def step(self, seconds: float) -> None:
        """Move the clock by ``seconds`` (forward or back) from where it is now."""
        with self._engine.begin() as connection:
            connection.execute(text(f"UPDATE {self.schema}.skew SET v = v + :s"), {"s": seconds})

    def close(self) -> None:
        with self._engine.begin() as connection:
            connection.execute(text(f"DROP SCHEMA {self.schema} CASCADE"))
        self._engine.dispose()


def snapshot_schema(schema_url: str) -> str:
    """A new schema holding a copy of the store in ``schema_url``'s schema as it is now (tables,
    rows and sequence positions); returns its URL. The caller drops it (:func:`drop_schema`)."""
    source = schema_of(schema_url)
    copy = f"t_{uuid.uuid4().hex[:10]}"
    engine = _engine(schema_url)
    with engine.begin() as connection:
        connection.execute(text(f"CREATE SCHEMA {copy}"))
    url = with_search_path(schema_url, copy)
    built = Store.from_url(url)
    built.migrate()
    built.close()
    with engine.begin() as connection:
        tables = (
            connection.execute(
                text("SELECT table_name FROM information_schema.tables WHERE table_schema = :s"), {"s": source}
            )
            .scalars()
            .all()
        )
        for table in tables:
            connection.execute(text(f"DELETE FROM {copy}.{table}"))
            connection.execute(text(f"INSERT INTO {copy}.{table} SELECT * FROM {source}.{table}"))
        sequences = (
            connection.execute(
                text("SELECT sequence_name FROM information_schema.sequences WHERE sequence_schema = :s"), {"s": source}
            )
            .scalars()
            .all()
        )
        for sequence in sequences:
            connection.execute(
                text(f"SELECT setval('{copy}.{sequence}', (SELECT last_value FROM {source}.{sequence}))")
            )
    engine.dispose()
    return url


def drop_schema(schema_url: str) -> None:
    engine = _engine(schema_url)
    with engine.begin() as connection:
        connection.execute(text(f"DROP SCHEMA IF EXISTS {schema_of(schema_url)} CASCADE"))
    engine.dispose()
