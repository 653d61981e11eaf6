"""The database: engines for DATABASE_URL, durable commits, and errors translated by what a retry could do."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import DataError, IntegrityError, OperationalError

from bridge.errors import ConfigError, StoreRejected, StoreUnavailable
from bridge.store import Store, database
from bridge.store.database import Database, engine_for, translate
from tests._apps import UNREACHABLE_STORE
from tests._pgproxy import PgProxy


def with_option(url: str, option: str) -> str:
    """``url`` whose connections start with ``-c option`` (PostgreSQL's libpq ``options``)."""
    separator = "&" if "?" in url else "?"
    if "options=" in url:
        return url.replace("options=", f"options={option.replace('=', '%3D')}%20", 1)
    return f"{url}{separator}options={option.replace('=', '%3D')}"


def test_sqlite_with_two_slashes_is_refused_with_the_spelling_that_works() -> None:
    with pytest.raises(ConfigError, match="sqlite:///") as caught:
        engine_for("sqlite://bridge.db")
    assert "sqlite://bridge.db" in str(caught.value)


@pytest.mark.parametrize("url", ["mysql://x", "bridge.db", "http://db.example/x"])
def test_an_unknown_database_url_is_refused(url: str) -> None:
    with pytest.raises(ConfigError, match="DATABASE_URL must be a sqlite:/// or postgresql:// URL"):
        engine_for(url)


@pytest.mark.parametrize("scheme", ["postgres://", "postgresql://"])
def test_heroku_and_plain_postgresql_urls_use_psycopg(scheme: str) -> None:
    engine = engine_for(f"{scheme}u:p@db.example:5432/d")
    assert (engine.dialect.name, engine.dialect.driver) == ("postgresql", "psycopg")
    engine.dispose()


def test_sqlite_commits_are_durable(tmp_path: Path) -> None:
    db = Database.from_url(f"sqlite:///{tmp_path}/d.db")
    try:
        with db.tx() as connection:
            assert connection.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
            assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    finally:
        db.close()


@pytest.fixture
def lazy_commit_url(pg_schema_url: str) -> str:
    """A PostgreSQL URL whose sessions start with synchronous_commit off, as a role's default may set it."""
    return with_option(pg_schema_url, "-csynchronous_commit=off")


def test_postgresql_commits_are_durable_even_when_the_role_says_otherwise(lazy_commit_url: str) -> None:
    plain = create_engine(lazy_commit_url.replace("postgresql://", "postgresql+psycopg://"))
    try:
        with plain.connect() as connection:  # the setting the bridge has to overrule
            assert connection.execute(text("SHOW synchronous_commit")).scalar() == "off"
    finally:
        plain.dispose()
    db = Database.from_url(lazy_commit_url)
    try:
        for _ in range(2):  # a new connection and a pooled one
            with db.tx() as connection:
                assert connection.execute(text("SHOW synchronous_commit")).scalar() == "on"
    finally:
        db.close()


@pytest.fixture
def unreachable() -> Iterator[Database]:
    db = Database.from_url(UNREACHABLE_STORE)
    yield db
    db.close()


def test_errors_are_translated_by_what_a_retry_could_do() -> None:
    refused = translate(DataError("INSERT ...", {}, Exception("value too long for type character varying(64)")))
    assert isinstance(refused, StoreRejected)
    assert "value too long" in str(refused)
    assert isinstance(translate(IntegrityError("INSERT ...", {}, Exception("duplicate key"))), StoreRejected)
    down = translate(OperationalError("SELECT 1", {}, Exception("server closed the connection unexpectedly")))
    assert isinstance(down, StoreUnavailable)
    assert "server closed the connection" in str(down)


def test_an_unreachable_database_is_unavailable(unreachable: Database) -> None:
    with pytest.raises(StoreUnavailable, match="is unavailable: connection refused"):
        unreachable.ping()


def test_data_the_database_refuses_is_rejected_not_unavailable(pg_schema_url: str) -> None:
    db = Database.from_url(pg_schema_url)
    try:
        with pytest.raises(StoreRejected, match="DataError"), db.tx() as connection:
            connection.execute(text("SELECT CAST(:value AS integer)"), {"value": "not a number"})
        with pytest.raises(StoreRejected), db.tx() as connection:
            connection.execute(text("SELECT :value"), {"value": "NUL \x00 inside"})
    finally:
        db.close()


def test_a_lock_held_by_a_frozen_process_is_waited_for_a_bounded_time(
    pg_schema_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found in review: a process frozen (SIGSTOP, a paused VM) while holding a lock stalled every
    other worker in a database call for good, their heartbeats renewing what they held. A lock wait
    now ends as an outage (the pass is retried), and the frozen session is ended by the server."""
    migrated = Store.from_url(pg_schema_url)  # migrations wait on a lock every test's store shares
    migrated.migrate()
    migrated.close()
    monkeypatch.setattr(database, "LOCK_TIMEOUT", "300ms")
    store = Store.from_url(pg_schema_url)
    holder = create_engine(pg_schema_url.replace("postgresql://", "postgresql+psycopg://"))
    frozen = holder.connect()
    frozen.execute(text("LOCK TABLE sends IN ACCESS EXCLUSIVE MODE"))  # and then nothing more
    outcome: list[BaseException | None] = []

    def read() -> None:
        try:
            dict(store.history.queue_summary().by_status)
            outcome.append(None)
        except BaseException as exc:
            outcome.append(exc)

    worker = threading.Thread(target=read, daemon=True)
    try:
        worker.start()
        worker.join(timeout=5)
        assert outcome, "the read is still waiting for the lock"
        assert isinstance(outcome[0], StoreUnavailable)
        assert "lock timeout" in str(outcome[0])
    finally:
        frozen.rollback()
        frozen.close()
        holder.dispose()
        worker.join(timeout=5)
        store.close()


def test_sessions_idle_inside_a_transaction_are_ended_by_the_server(pg_schema_url: str) -> None:
    store = Store.from_url(pg_schema_url)
    try:
        with store.db.tx() as connection:
            setting = connection.execute(text("SHOW idle_in_transaction_session_timeout")).scalar_one()
            lock = connection.execute(text("SHOW lock_timeout")).scalar_one()
    finally:
        store.close()
    assert (setting, lock) == ("1min", "10s")


def test_a_sqlite_file_replaced_under_the_store_stops_it(tmp_path: Path) -> None:
    """R14: a store whose file was swapped (a restore over a running bridge, a cleanup script) must not
    go on writing into the one it opened: it is unavailable, and says why, until restarted."""
    path = tmp_path / "bridge.db"
    store = Store.from_url(f"sqlite:///{path}")
    try:
        store.migrate()
        other = tmp_path / "other.db"
        other.write_bytes(path.read_bytes())
        os.replace(other, path)
        with pytest.raises(StoreUnavailable, match="was replaced"):
            store.history.queue_summary()
        assert "bridge.db was replaced" in (store.db.problem() or "")
    finally:
        store.close()


def test_a_link_that_drops_every_byte_ends_a_transaction_at_its_deadline(pg_schema_url: str) -> None:
    """R8: no answer ever comes (the bytes are acknowledged and dropped on the way), so neither TCP nor
    the server ends the wait: the store's own deadline does, as an outage, and the next transaction
    starts on a fresh connection once the link is back."""
    migrated = Store.from_url(pg_schema_url)
    migrated.migrate()
    migrated.close()
    proxy = PgProxy.for_url(pg_schema_url)
    store = Store.from_url(proxy.url(pg_schema_url), timeout=1.5)
    try:
        assert store.history.queue_summary().by_status == {}
        proxy.set_mode("blackhole")
        started = time.monotonic()
        with pytest.raises(StoreUnavailable):
            store.history.queue_summary()
        assert time.monotonic() - started < 5
        proxy.set_mode("pass")
        store.db.recycle()
        assert store.history.queue_summary().by_status == {}
        with store.db.tx() as connection:
            assert connection.execute(text("SHOW statement_timeout")).scalar_one() == "1500ms"
    finally:
        store.close()
        proxy.close()
