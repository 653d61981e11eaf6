"""Wake-ups across processes (issue 22.1): what the store announces, and a listener that survives
its session being ended. Real PostgreSQL; the worker processes' side is in tests/e2e/test_wakeups.py."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from bridge.model import NewSend
from bridge.store import Store
from bridge.store.wakeups import Listener


def _new(key: str) -> NewSend:
    return NewSend(dedupe_key=key, source="api", origin="person", ticket_id="500000000000001AAA")


@pytest.fixture
def pg_store(pg_schema_url: str) -> Iterator[Store]:
    store = Store.from_url(pg_schema_url)
    store.migrate()
    yield store
    store.close()


@pytest.fixture
def listener(pg_schema_url: str) -> Iterator[Listener]:
    other = Store.from_url(pg_schema_url)  # another process's store: its own engine and sessions
    listening = Listener(other.db)
    assert listening.wait(1.0)  # starting to listen counts as a wake-up: nothing stored before was announced
    yield listening
    listening.close()
    other.close()


def test_a_send_stored_elsewhere_wakes_the_listener_once_it_commits(pg_store: Store, listener: Listener) -> None:
    assert not listener.wait(0.2)  # nothing announced
    started = time.monotonic()
    pg_store.sends.create(_new("api:one"))
    assert listener.wait(5.0)
    assert time.monotonic() - started < 1.0
    assert not listener.wait(0.2)  # one wake-up per announcement, not a stream of them


def test_every_way_work_becomes_due_is_announced(pg_store: Store, listener: Listener) -> None:
    assert pg_store.sends.ingest([_new("om:a"), _new("om:b")]) == 2
    assert listener.wait(2.0)
    assert not listener.wait(0.1)  # several sends in one transaction: one notification
    assert pg_store.sends.ingest([_new("om:a")]) == 0  # already known: nothing new to do
    assert not listener.wait(0.3)
    assert pg_store.sends.create(_new("om:a")).created is False
    assert not listener.wait(0.3)


def test_announcements_waited_for_together_are_taken_together(pg_store: Store, listener: Listener) -> None:
    for i in range(5):
        pg_store.sends.create(_new(f"api:{i}"))
    time.sleep(0.2)  # all five have arrived
    assert listener.wait(2.0)
    assert not listener.wait(0.2)


def test_announcements_stay_in_their_schema(pg_store: Store, listener: Listener, postgres_url: str) -> None:
    other = Store.from_url(postgres_url)  # the database's default schema: another bridge
    try:
        with other.db.tx() as connection:
            connection.execute(text("SELECT pg_notify('bridge_work:' || current_schema(), '')"))
    finally:
        other.close()
    assert not listener.wait(0.3)


def test_a_listener_whose_session_is_ended_listens_again(pg_store: Store, listener: Listener) -> None:
    """pg_terminate_backend stands for a database restart or a dropped connection: the wait that
    sees it fails quietly (the worker polls meanwhile), a later one listens again and says so."""
    with pg_store.db.tx() as connection:
        ended = connection.execute(
            text(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE query LIKE 'LISTEN %' AND query LIKE '%' || current_schema() || '%'"
            )
        ).scalar_one()
    assert ended == 1
    woke = [listener.wait(0.5) for _ in range(6)]
    assert woke.count(True) == 1  # the new session: what was stored meanwhile was announced to nobody
    assert listener.listening
    pg_store.sends.create(_new("api:after"))
    assert listener.wait(2.0)


def test_sqlite_announces_nothing_and_needs_no_listener(tmp_path: Path) -> None:
    store = Store.from_url(f"sqlite:///{tmp_path / 'bridge.db'}")
    store.migrate()
    try:
        store.sends.create(_new("api:sqlite"))  # the embedded worker is woken in process instead
        assert not Listener(store.db).available
    finally:
        store.close()
