"""The store's schema and its migrations, on SQLite and PostgreSQL: a store upgraded from the first
release through every migration, a store migrated from nothing, and one created from today's table
definitions are the same store (compared with SQLAlchemy's reflection); and what an upgrade keeps."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import (
    Boolean,
    Column,
    Engine,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    inspect,
    text,
)

from bridge.model import NewSend, Overrides
from bridge.store import Store
from bridge.store.database import engine_for
from bridge.store.migrations import latest_version
from bridge.store.schema import metadata

CASE = "5005g00000SBX01AAH"

# The sends table as the first release (ea5dff5, schema version 1) created it.
FIRST_RELEASE = MetaData()
Table(
    "sends",
    FIRST_RELEASE,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("dedupe_key", String(200), nullable=False, unique=True),
    Column("source", String(32), nullable=False),
    Column("org_id", String(18)),
    Column("ticket_id", String(18), nullable=False),
    Column("overrides", Text),
    Column("status", String(16), nullable=False),
    Column("reason", Text),
    Column("chat_id", String(64)),
    Column("message", Text),
    Column("end_user_hint", String(16)),
    Column("attempts", Integer, nullable=False, default=0),
    Column("not_before", Float, nullable=False),
    Column("lease_owner", String(64)),
    Column("lease_until", Float),
    Column("inflight", Boolean, nullable=False, default=False),
    Column("may_have_sent", Boolean, nullable=False, default=False),
    Column("created_at", Float, nullable=False),
    Column("first_attempt_at", Float),
    Column("finished_at", Float),
    Column("writeback", String(16), nullable=False, default="none"),
    Column("writeback_task", String(16), nullable=False, default="none"),
    Column("writeback_attempts", Integer, nullable=False, default=0),
    Column("writeback_not_before", Float),
    Column("writeback_lease_until", Float),
    Column("writeback_error", Text),
    Index("ix_sends_due", "status", "not_before"),
    Index("ix_sends_writeback_due", "writeback", "writeback_not_before"),
    Index("ix_sends_ticket_attempt", "ticket_id", "first_attempt_at"),
)
Table(
    "bridge_schema_version",
    FIRST_RELEASE,
    Column("version", Integer, primary_key=True),
    Column("applied_at", Float, nullable=False),
)


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[], str]]:
    """A factory of URLs of empty databases of one kind (SQLite files, or PostgreSQL schemas)."""
    made: list[str] = []
    admin: Engine | None = None
    if request.param == "postgresql":
        postgres_url: str = request.getfixturevalue("postgres_url")
        admin = create_engine(postgres_url.replace("postgresql://", "postgresql+psycopg://"))

    def make() -> str:
        if admin is None:
            return f"sqlite:///{tmp_path / f'{uuid.uuid4().hex[:8]}.db'}"
        schema = f"t_{uuid.uuid4().hex[:10]}"
        with admin.begin() as connection:
            connection.execute(text(f"CREATE SCHEMA {schema}"))
        made.append(schema)
        return f"{admin.url.render_as_string(hide_password=False)}?options=-csearch_path%3D{schema}"

    yield make
    if admin is not None:
        with admin.begin() as connection:
            for schema in made:
                connection.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


def shape(url: str) -> dict[str, Any]:
    """Every table as reflected: columns (type, nullable), primary key, indexes and unique
    constraints. Server defaults are left out: an upgrade adds a NOT NULL column with a default
    (SQLite needs one), where today's definitions give defaults on the Python side."""
    engine = engine_for(url)
    try:
        with engine.connect() as connection:
            inspector = inspect(connection)
            return {
                table: {
                    "columns": {
                        c["name"]: (_type(c["type"], engine), c["nullable"]) for c in inspector.get_columns(table)
                    },
                    "primary_key": tuple(inspector.get_pk_constraint(table)["constrained_columns"]),
                    "indexes": {
                        i["name"]: (tuple(i["column_names"]), bool(i["unique"])) for i in inspector.get_indexes(table)
                    },
                    "unique": sorted(tuple(u["column_names"]) for u in inspector.get_unique_constraints(table)),
                }
                for table in sorted(inspector.get_table_names())
            }
    finally:
        engine.dispose()


def _type(kind: Any, engine: Engine) -> str:
    """PostgreSQL's type as it declares it; SQLite's affinity (which is all SQLite keeps of a type)."""
    declared = str(kind.compile(dialect=engine.dialect)).upper()
    if engine.dialect.name != "sqlite":
        return declared
    if "INT" in declared:
        return "INTEGER"
    if any(word in declared for word in ("CHAR", "CLOB", "TEXT")):
        return "TEXT"
    if any(word in declared for word in ("REAL", "FLOA", "DOUB")):
        return "REAL"
    return "NUMERIC"


def first_release(url: str) -> None:
    engine = engine_for(url)
    try:
        with engine.begin() as connection:
            FIRST_RELEASE.create_all(connection)
            connection.execute(text("INSERT INTO bridge_schema_version (version, applied_at) VALUES (1, 0)"))
    finally:
        engine.dispose()


def migrated(url: str) -> str:
    store = Store.from_url(url)
    try:
        assert store.migrate() == latest_version()
    finally:
        store.close()
    return url


def test_a_store_upgraded_from_the_first_release_equals_a_fresh_one(empty_store: Callable[[], str]) -> None:
    declared = empty_store()
    engine = engine_for(declared)
    try:
        with engine.begin() as connection:
            metadata.create_all(connection)
    finally:
        engine.dispose()
    old = empty_store()
    first_release(old)
    expected = shape(declared)
    assert set(expected) == set(metadata.tables)
    assert shape(migrated(old)) == expected
    assert shape(migrated(empty_store())) == expected


def test_migrate_is_idempotent(store: Store) -> None:
    assert store.migrate() == store.migrate() == latest_version()
    store.sends.ingest([NewSend(dedupe_key="om:x:1", source="outbound_message", origin="crm_event", ticket_id=CASE)])
    store.migrate()
    assert dict(store.history.queue_summary().by_status) == {"queued": 1}


def test_a_store_from_the_first_release_keeps_its_sends_through_the_upgrade(store: Store) -> None:
    with store.db.engine.begin() as connection:  # the v1 sends table, as the first release created it
        connection.execute(text("DROP TABLE sends"))
        connection.execute(text("DELETE FROM bridge_schema_version WHERE version > 1"))
        FIRST_RELEASE.tables["sends"].create(connection)
        connection.execute(
            text(
                "INSERT INTO sends (id, dedupe_key, source, ticket_id, status, reason, attempts, not_before, inflight, "
                "may_have_sent, created_at, writeback, writeback_task, writeback_attempts) VALUES "
                "(1, 'om:a', 'outbound_message', :t, 'skipped', 'Skipped: send 1 for this Case was attempted', 0, 0, "
                "false, false, 0, 'none', 'none', 0), "
                "(2, 'api:a', 'api', :t, 'failed', 'x', 0, 0, false, false, 0, 'none', 'none', 0)"
            ),
            {"t": CASE},
        )
    assert store.migrate() == latest_version()
    with store.db.engine.connect() as connection:
        columns = {c["name"] for c in inspect(connection).get_columns("sends")}
    assert {"request_hash", "requeued_at", "lease_token", "takeovers", "inflight_at", "case_written_at"} <= columns
    # Old loop-guard skips become "suppressed": they followed an SMS that went out.
    assert dict(store.history.queue_summary().by_status) == {"suppressed": 1, "failed": 1}
    # Before origins, the door decided: the outbound message was the CRM's event, the API a person.
    assert [(s.source, s.origin, s.overrides) for s in store.history.find()] == [
        ("api", "person", Overrides()),
        ("outbound_message", "crm_event", Overrides()),
    ]
