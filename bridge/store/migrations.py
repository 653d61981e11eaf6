"""How a store reaches the current schema: one function per version, applied in order, once.

Adding a version is appending one function here::

    @migration(9)
    def _v9(connection: Connection, postgres: bool) -> None:
        _add_columns(connection, "sends", {"new_column": "TEXT"})

(and declaring the result in :mod:`bridge.store.schema`). Every migration looks at what is there
before it changes anything (``_add_columns``, ``create_all``), because a store created by v1 from the
current definitions already has every column a later migration adds; and
``tests/store/test_migrations.py`` checks that a store upgraded from the first release through
every migration ends up equal to one created from the definitions.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import Connection, insert, inspect, select, text

from bridge.store.schema import (
    bridge_status,
    chats,
    generations,
    lookup_evidence,
    metadata,
    opt_outs,
    rate_events,
    rate_limits,
    schema_version,
    send_log,
    sends,
    session_events,
    singletons,
    stream_events,
    stream_positions,
    workers,
)

Migration = Callable[[Connection, bool], None]
# Filled, in order, by @migration below as the module loads.
MIGRATIONS: list[tuple[int, Migration]] = []


def migration(version: int) -> Callable[[Migration], Migration]:
    """Register the upgrade to ``version``; versions must follow one another, starting at 1."""

    def register(step: Migration) -> Migration:
        if version != len(MIGRATIONS) + 1:
            raise RuntimeError(f"Migration {version} is out of order: the next one is {len(MIGRATIONS) + 1}.")
        MIGRATIONS.append((version, step))
        return step

    return register


def latest_version() -> int:
    return MIGRATIONS[-1][0]


def upgrade(connection: Connection, *, postgres: bool, now: float) -> int:
    """Apply every migration newer than the store's version (the caller holds the migration lock)."""
    version = current_version(connection)
    for number, step in MIGRATIONS:
        if number > version:
            step(connection, postgres)
            connection.execute(insert(schema_version).values(version=number, applied_at=now))
    return latest_version()


def current_version(connection: Connection, *, create: bool = True) -> int:
    """The schema's version; 0 for an empty database. Read-only callers pass ``create=False`` so
    that looking never creates anything."""
    if not inspect(connection).has_table(schema_version.name):
        if not create:
            return 0
        schema_version.create(connection)
    found = connection.execute(select(schema_version.c.version).order_by(schema_version.c.version.desc())).first()
    return int(found[0]) if found else 0


def _add_columns(connection: Connection, table: str, columns: dict[str, str]) -> None:
    present = {column["name"] for column in inspect(connection).get_columns(table)}
    for name, kind in columns.items():
        if name not in present:
            connection.execute(text(f"ALTER TABLE {table} ADD COLUMN {name} {kind}"))


# -- the versions, oldest first (append only) ---------------------------------------------------


@migration(1)
def _v1(connection: Connection, postgres: bool) -> None:
    metadata.create_all(connection, tables=[sends])


@migration(2)
def _v2(connection: Connection, postgres: bool) -> None:
    _add_columns(connection, "sends", {"request_hash": "VARCHAR(64)", "requeued_at": "DOUBLE PRECISION"})


@migration(3)
def _v3(connection: Connection, postgres: bool) -> None:
    metadata.create_all(connection, tables=[rate_limits, bridge_status])


@migration(4)
def _v4(connection: Connection, postgres: bool) -> None:
    _add_columns(
        connection,
        "sends",
        {
            "lease_token": "INTEGER NOT NULL DEFAULT 0",
            "takeovers": "INTEGER NOT NULL DEFAULT 0",
            "inflight_at": "DOUBLE PRECISION",
            "ambiguous_since": "DOUBLE PRECISION",
            "writeback_owner": "VARCHAR(64)",
            "case_written_at": "DOUBLE PRECISION",
        },
    )
    if postgres:
        # Values that come from outside (idempotency keys, CCAI chat ids) must never be refused for
        # their length: a refused write after an SMS went out is how a send repeats forever.
        for column, kind in (("dedupe_key", "TEXT"), ("chat_id", "TEXT"), ("ticket_id", "VARCHAR(64)")):
            connection.execute(text(f"ALTER TABLE sends ALTER COLUMN {column} TYPE {kind}"))
        connection.execute(text("ALTER TABLE sends ALTER COLUMN end_user_hint TYPE VARCHAR(32)"))
    existing = {index["name"] for index in inspect(connection).get_indexes("sends")}
    if "ix_sends_lease_owner" not in existing:
        connection.execute(text("CREATE INDEX ix_sends_lease_owner ON sends (lease_owner)"))
    metadata.create_all(connection, tables=[rate_events, workers])
    # Loop-guard skips used to be "skipped"; they now have their own status, because unlike a real
    # skip they follow an SMS that went out, and must not be retried without --force.
    connection.execute(
        text("UPDATE sends SET status = 'suppressed' WHERE status = 'skipped' AND reason LIKE 'Skipped: send %'")
    )


@migration(5)
def _v5(connection: Connection, postgres: bool) -> None:
    _add_columns(
        connection,
        "sends",
        {"state_at": "DOUBLE PRECISION", "segments": "INTEGER", "opt_out_learned": "BOOLEAN NOT NULL DEFAULT false"},
    )
    connection.execute(text("UPDATE sends SET state_at = finished_at WHERE state_at IS NULL"))
    metadata.create_all(connection, tables=[opt_outs])


@migration(6)
def _v6(connection: Connection, postgres: bool) -> None:
    metadata.create_all(connection, tables=[chats, session_events, singletons])


@migration(7)
def _v7(connection: Connection, postgres: bool) -> None:
    metadata.create_all(connection, tables=[send_log])


@migration(8)
def _v8(connection: Connection, postgres: bool) -> None:
    _add_columns(connection, "sends", {"origin": "VARCHAR(16) NOT NULL DEFAULT 'crm_event'"})
    # Until v8 the door decided: only Salesforce's outbound message was an event the CRM fired.
    connection.execute(text("UPDATE sends SET origin = 'person' WHERE source IN ('api', 'cli')"))


@migration(9)
def _v9(connection: Connection, postgres: bool) -> None:
    metadata.create_all(connection, tables=[stream_positions, stream_events])


@migration(10)
def _v10(connection: Connection, postgres: bool) -> None:
    # Which message template (and which wording of it) each send's text came from.
    _add_columns(connection, "sends", {"template": "VARCHAR(40)", "template_version": "VARCHAR(16)"})


@migration(11)
def _v11(connection: Connection, postgres: bool) -> None:
    # The verdict reads the timelines of the last minutes: without an index on the time, every look
    # at the dashboard would read every step of every send kept.
    existing = {index["name"] for index in inspect(connection).get_indexes("send_log")}
    if "ix_send_log_at" not in existing:
        connection.execute(text("CREATE INDEX ix_send_log_at ON send_log (at)"))


@migration(12)
def _v12(connection: Connection, postgres: bool) -> None:
    # Each worker's count of the sends it cleared to leave: a store that lost some went back in time.
    metadata.create_all(connection, tables=[generations])


@migration(13)
def _v13(connection: Connection, postgres: bool) -> None:
    # The number agents quote (a CaseNumber), noted when the worker reads the ticket.
    _add_columns(connection, "sends", {"ticket_number": "VARCHAR(40)"})


@migration(14)
def _v14(connection: Connection, postgres: bool) -> None:
    # Pushed session events fence each other, not the poll; the number, for opt-outs CCAI reports.
    _add_columns(connection, "chats", {"pushed_at": "DOUBLE PRECISION", "number": "VARCHAR(32)"})


@migration(15)
def _v15(connection: Connection, postgres: bool) -> None:
    # Chats keyed by id and ticket (a chat id CCAI reuses must not carry news to the older chat's ticket).
    found = inspect(connection).get_pk_constraint("chats")
    if list(found.get("constrained_columns") or []) == ["chat_id", "ticket_id"]:
        return
    if postgres:
        connection.execute(text(f'ALTER TABLE chats DROP CONSTRAINT "{found["name"]}"'))
        connection.execute(text("ALTER TABLE chats ADD PRIMARY KEY (chat_id, ticket_id)"))
        return
    # SQLite cannot change a table's primary key: the table is built again and its rows copied.
    for index in inspect(connection).get_indexes("chats"):
        connection.execute(text(f'DROP INDEX "{index["name"]}"'))
    connection.execute(text("ALTER TABLE chats RENAME TO chats_before_v15"))
    chats.create(connection)
    # Only the columns the old table has: a later version may add more (its migration then finds them).
    kept = {column["name"] for column in inspect(connection).get_columns("chats_before_v15")}
    columns = ", ".join(column.name for column in chats.columns if column.name in kept)
    # The column names are the schema's own, not input.
    connection.execute(text(f"INSERT INTO chats ({columns}) SELECT {columns} FROM chats_before_v15"))  # noqa: S608
    connection.execute(text("DROP TABLE chats_before_v15"))


@migration(16)
def _v16(connection: Connection, postgres: bool) -> None:
    # What the chat list showed of the bridge's own chats: the lost-answer lookup's proof.
    metadata.create_all(connection, tables=[lookup_evidence])


@migration(17)
def _v17(connection: Connection, postgres: bool) -> None:
    # When a paced request actually left (its slot's plan is "at"): late departures count as late.
    _add_columns(connection, "rate_events", {"left_at": "DOUBLE PRECISION"})
