"""The store's tables and its versioned migrations (SQLite and PostgreSQL alike).

Times are seconds since the epoch (float), which both databases order and compare the same way.
Every migration is append-only and idempotent: it looks at what is there before changing it, so a
store created from the current definitions (v1 creates every column) passes through it unharmed.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import (
    Boolean,
    Column,
    Connection,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    inspect,
    select,
    text,
)

metadata = MetaData()

schema_version = Table(
    "bridge_schema_version",
    metadata,
    Column("version", Integer, primary_key=True),
    Column("applied_at", Float, nullable=False),
)

sends = Table(
    "sends",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    # "om:<org15>:<notification id>" for outbound messages; unique, so a redelivery inserts nothing.
    Column("dedupe_key", Text, nullable=False, unique=True),
    Column("source", String(32), nullable=False),  # the door's name, for people (see model.Origin)
    # v8: "crm_event" or "person": what the loop guard and the send window decide on. The default is
    # the safe side, for a row an older process writes during an upgrade: guarded, no window override.
    Column("origin", String(16), nullable=False, server_default="crm_event"),
    Column("org_id", String(18)),
    Column("ticket_id", String(64), nullable=False),
    # JSON: per-send message/agent/number overrides (API and CLI sends). A full number given in the
    # request is removed once the send is final (only its masked hint is kept).
    Column("overrides", Text),
    Column("status", String(16), nullable=False),
    Column("reason", Text),
    Column("chat_id", Text),
    Column("message", Text),  # the text sent, for the note on the ticket
    Column("end_user_hint", String(32)),  # masked number, last digits only
    Column("attempts", Integer, nullable=False, default=0),  # requests that reached the CCAI step
    Column("not_before", Float, nullable=False),
    Column("lease_owner", String(64)),
    Column("lease_until", Float),
    # v4: incremented by every claim; writes carry the token they claimed with (fencing).
    Column("lease_token", Integer, nullable=False, default=0),
    # v4: claims that found the send still "sending" after its lease ended (its worker died or hung).
    Column("takeovers", Integer, nullable=False, default=0),
    # True from just before a CCAI request leaves until its answer is recorded. Finding it set on a
    # job whose lease expired means its worker died mid-request: the SMS may have been sent.
    Column("inflight", Boolean, nullable=False, default=False),
    Column("may_have_sent", Boolean, nullable=False, default=False),
    Column("created_at", Float, nullable=False),
    Column("first_attempt_at", Float),
    Column("inflight_at", Float),  # v4: when the latest CCAI request left
    Column("ambiguous_since", Float),  # v4: when the first request whose answer was lost left
    Column("finished_at", Float),
    Column("writeback", String(16), nullable=False, default="none"),  # the ticket's fields
    Column("writeback_task", String(16), nullable=False, default="none"),  # the note (Task) on it
    Column("writeback_attempts", Integer, nullable=False, default=0),
    Column("writeback_not_before", Float),
    Column("writeback_lease_until", Float),
    Column("writeback_owner", String(64)),  # v4: who holds the write-back lease (renewed by heartbeats)
    Column("writeback_error", Text),
    Column("case_written_at", Float),  # v4: when this outcome landed on the ticket (the loop guard)
    # v5: when the state the ticket should show was set (finished, or held for the send window): the
    # order in which a ticket's write-backs must land.
    Column("state_at", Float),
    Column("segments", Integer),  # v5: how many SMS segments the text was
    # v5: the send ended opted out by what the CRM may not know (the opt-out list, CCAI's refusal).
    Column("opt_out_learned", Boolean, nullable=False, default=False),
    # v2: the Idempotency-Key's body fingerprint (API sends), and when an operator re-queued a send.
    Column("request_hash", String(64)),
    Column("requeued_at", Float),
    Index("ix_sends_due", "status", "not_before"),
    Index("ix_sends_writeback_due", "writeback", "writeback_not_before"),
    Index("ix_sends_ticket_attempt", "ticket_id", "first_attempt_at"),
    Index("ix_sends_lease_owner", "lease_owner"),
)

# v3: the CCAI request pacing shared by every worker, one row per CCAI tenant. ``next_slot`` is
# no request before this time (a 429's Retry-After).
rate_limits = Table(
    "rate_limits",
    metadata,
    Column("name", String(200), primary_key=True),
    Column("next_slot", Float, nullable=False),
)

# v4: when each request to a CCAI tenant left, by the database's clock (the sliding window).
rate_events = Table(
    "rate_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(200), nullable=False),
    Column("at", Float, nullable=False),
    Index("ix_rate_events_name_at", "name", "at"),
)

# v3: what operators read with `bridge status` (the last Salesforce API usage).
bridge_status = Table(
    "bridge_status",
    metadata,
    Column("key", String(200), primary_key=True),
    Column("value", Text, nullable=False),
    Column("updated_at", Float, nullable=False),
)

# v4: one row per worker process: its heartbeat, and whether its passes succeed.
workers = Table(
    "workers",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("host", Text, nullable=False),
    Column("pid", Integer, nullable=False),
    Column("started_at", Float, nullable=False),
    Column("beat_at", Float, nullable=False),
    Column("stopped_at", Float),
    Column("pass_ok_at", Float),
    Column("pass_error", Text),
)


# v5: numbers that must never be texted (a STOP, an agent's note, CCAI's own refusal). Never purged.
opt_outs = Table(
    "opt_outs",
    metadata,
    Column("number", String(32), primary_key=True),  # E.164: the key the list is checked by
    Column("source", String(64), nullable=False),  # who recorded it: api, cli, ccai, an agent's Flow...
    Column("note", Text),
    Column("created_at", Float, nullable=False),
)


# v6: the chats the bridge started, followed until they end (the chat sync), and what their
# ticket must still be told.
chats = Table(
    "chats",
    metadata,
    Column("chat_id", Text, primary_key=True),
    Column("send_id", Integer),
    Column("ticket_id", String(64), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("status", String(40)),  # CCAI's own word, verbatim
    Column("agent", Text),
    Column("ended_at", Float),
    Column("outcome", Text),
    Column("replied", Boolean, nullable=False, default=False),
    Column("no_reply", Boolean, nullable=False, default=False),
    Column("ended", Boolean, nullable=False, default=False),
    Column("ccai_updated_at", Float),  # CCAI's time of the state applied: older states are ignored
    Column("synced_at", Float),
    Column("task_ref", String(64)),  # the note created at send time, completed when the chat ends
    Column("case_pending", Boolean, nullable=False, default=False),
    Column("task_pending", Boolean, nullable=False, default=False),
    Column("case_attempts", Integer, nullable=False, default=0),
    Column("case_not_before", Float),
    Column("case_lease_until", Float),
    Column("case_error", Text),
    Index("ix_chats_open", "ended", "created_at"),
    Index("ix_chats_ticket", "ticket_id"),
    Index("ix_chats_send", "send_id"),
)

# v6: session events CCAI pushed, kept (deduplicated on their id) before they are acted on.
session_events = Table(
    "session_events",
    metadata,
    Column("event_id", String(64), primary_key=True),
    Column("received_at", Float, nullable=False),
    Column("timestamp", Float),
    Column("payload", Text, nullable=False),
    Column("applied", Boolean, nullable=False, default=False),
    Index("ix_session_events_applied", "applied", "timestamp"),
)


# v7: what happened to each send, in order: the timeline operators read (``bridge sends show``, the
# dashboard). Written in the same transaction as the change it records; purged with its send.
send_log = Table(
    "send_log",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("send_id", Integer, nullable=False),
    Column("at", Float, nullable=False),
    Column("event", String(32), nullable=False),
    Column("detail", Text),
    Index("ix_send_log_send", "send_id", "id"),
)


def _v1(connection: Connection, postgres: bool) -> None:
    metadata.create_all(connection, tables=[sends])


def _v2(connection: Connection, postgres: bool) -> None:
    _add_columns(connection, "sends", {"request_hash": "VARCHAR(64)", "requeued_at": "DOUBLE PRECISION"})


def _v3(connection: Connection, postgres: bool) -> None:
    metadata.create_all(connection, tables=[rate_limits, bridge_status])


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


def _add_columns(connection: Connection, table: str, columns: dict[str, str]) -> None:
    present = {column["name"] for column in inspect(connection).get_columns(table)}
    for name, kind in columns.items():
        if name not in present:
            connection.execute(text(f"ALTER TABLE {table} ADD COLUMN {name} {kind}"))


Migration = Callable[[Connection, bool], None]


def _v5(connection: Connection, postgres: bool) -> None:
    _add_columns(
        connection,
        "sends",
        {"state_at": "DOUBLE PRECISION", "segments": "INTEGER", "opt_out_learned": "BOOLEAN NOT NULL DEFAULT false"},
    )
    connection.execute(text("UPDATE sends SET state_at = finished_at WHERE state_at IS NULL"))
    metadata.create_all(connection, tables=[opt_outs])


# v6: jobs exactly one process does at a time (the chat sync), by lease on the database's clock.
singletons = Table(
    "singletons",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("owner", String(64), nullable=False),
    Column("until", Float, nullable=False),
)


def _v6(connection: Connection, postgres: bool) -> None:
    metadata.create_all(connection, tables=[chats, session_events, singletons])


def _v7(connection: Connection, postgres: bool) -> None:
    metadata.create_all(connection, tables=[send_log])


def _v8(connection: Connection, postgres: bool) -> None:
    _add_columns(connection, "sends", {"origin": "VARCHAR(16) NOT NULL DEFAULT 'crm_event'"})
    # Until v8 the door decided: only Salesforce's outbound message was an event the CRM fired.
    connection.execute(text("UPDATE sends SET origin = 'person' WHERE source IN ('api', 'cli')"))


# Append only: each entry upgrades the schema from the previous version.
MIGRATIONS: list[tuple[int, Migration]] = [
    (1, _v1),
    (2, _v2),
    (3, _v3),
    (4, _v4),
    (5, _v5),
    (6, _v6),
    (7, _v7),
    (8, _v8),
]
LATEST_VERSION = MIGRATIONS[-1][0]


def current_version(connection: Connection, *, create: bool = True) -> int:
    """The schema's version; 0 for an empty database. Read-only callers pass ``create=False`` so
    that looking never creates anything."""
    if not inspect(connection).has_table(schema_version.name):
        if not create:
            return 0
        schema_version.create(connection)
    found = connection.execute(select(schema_version.c.version).order_by(schema_version.c.version.desc())).first()
    return int(found[0]) if found else 0
