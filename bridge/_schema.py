"""The store's tables and its versioned migrations (SQLite and PostgreSQL alike).

Times are seconds since the epoch (float), which both databases order and compare the same way.
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
    Column("dedupe_key", String(200), nullable=False, unique=True),
    Column("source", String(32), nullable=False),
    Column("org_id", String(18)),
    Column("ticket_id", String(18), nullable=False),
    Column("overrides", Text),  # JSON: per-send message/agent/number overrides (API and CLI sends)
    Column("status", String(16), nullable=False),
    Column("reason", Text),
    Column("chat_id", String(64)),
    Column("message", Text),  # the text sent, for the Task on the Case
    Column("end_user_hint", String(16)),  # masked number, last digits only
    Column("attempts", Integer, nullable=False, default=0),  # requests that reached the CCAI step
    Column("not_before", Float, nullable=False),
    Column("lease_owner", String(64)),
    Column("lease_until", Float),
    # True from just before a CCAI request leaves until its answer is recorded. Finding it set on a
    # job whose lease expired means its worker died mid-request: the SMS may have been sent.
    Column("inflight", Boolean, nullable=False, default=False),
    Column("may_have_sent", Boolean, nullable=False, default=False),
    Column("created_at", Float, nullable=False),
    Column("first_attempt_at", Float),  # the loop guard compares against this
    Column("finished_at", Float),
    Column("writeback", String(16), nullable=False, default="none"),  # the Case fields
    Column("writeback_task", String(16), nullable=False, default="none"),  # the Task on the Case
    Column("writeback_attempts", Integer, nullable=False, default=0),
    Column("writeback_not_before", Float),
    Column("writeback_lease_until", Float),
    Column("writeback_error", Text),
    # v2: the Idempotency-Key's body fingerprint (API sends), and when an operator re-queued a send.
    Column("request_hash", String(64)),
    Column("requeued_at", Float),
    Index("ix_sends_due", "status", "not_before"),
    Index("ix_sends_writeback_due", "writeback", "writeback_not_before"),
    Index("ix_sends_ticket_attempt", "ticket_id", "first_attempt_at"),
)

# v3: the CCAI request pacing shared by every worker, one row per CCAI tenant.
rate_limits = Table(
    "rate_limits",
    metadata,
    Column("name", String(200), primary_key=True),
    Column("next_slot", Float, nullable=False),
)

# v3: what operators read with `bridge status`: worker heartbeats, the last Salesforce API usage.
bridge_status = Table(
    "bridge_status",
    metadata,
    Column("key", String(200), primary_key=True),
    Column("value", Text, nullable=False),
    Column("updated_at", Float, nullable=False),
)


def _v1(connection: Connection) -> None:
    metadata.create_all(connection, tables=[sends])


def _v2(connection: Connection) -> None:
    # v1 creates the table from the current definition, so a new store already has these columns;
    # a store created by an older release gets them added.
    present = {column["name"] for column in inspect(connection).get_columns("sends")}
    for name, kind in (("request_hash", "VARCHAR(64)"), ("requeued_at", "DOUBLE PRECISION")):
        if name not in present:
            connection.execute(text(f"ALTER TABLE sends ADD COLUMN {name} {kind}"))


def _v3(connection: Connection) -> None:
    metadata.create_all(connection, tables=[rate_limits, bridge_status])


# Append only: each entry upgrades the schema from the previous version.
MIGRATIONS: list[tuple[int, Callable[[Connection], None]]] = [(1, _v1), (2, _v2), (3, _v3)]


def current_version(connection: Connection) -> int:
    schema_version.create(connection, checkfirst=True)
    found = connection.execute(select(schema_version.c.version).order_by(schema_version.c.version.desc())).first()
    return int(found[0]) if found else 0


LATEST_VERSION = MIGRATIONS[-1][0]
