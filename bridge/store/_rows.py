"""What the modules of :mod:`bridge.store` that write the ``sends`` table share."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, assert_never

from sqlalchemy import ColumnElement, Connection, RowMapping, or_

from bridge.model import NewSend, Overrides
from bridge.store.schema import send_log, sends
from bridge.store.wakeups import announce

if TYPE_CHECKING:
    from bridge.store.database import Database

PENDING_WRITEBACK = or_(sends.c.writeback == "pending", sends.c.writeback_task == "pending")
# What letting go of a send's lease writes: no owner, no lease, no request under way.
LEASE_RELEASED: dict[str, Any] = {"inflight": False, "lease_owner": None, "lease_until": None}


def still_held(send_id: int, token: int) -> tuple[ColumnElement[bool], ...]:
    """The fence of every write a worker makes to a send it claimed: its claim is still the latest
    (a later claim bumped the token) and the send is still being sent."""
    return (sends.c.id == send_id, sends.c.lease_token == token, sends.c.status == "sending")


def log_event(connection: Connection, send_id: int, at: float, event: str, detail: str | None) -> None:
    """One step of the send's timeline, in the transaction of the change it records."""
    connection.execute(send_log.insert().values(send_id=send_id, at=at, event=event, detail=detail))


def overrides_of(row: RowMapping) -> Overrides:
    return Overrides.from_json(row["overrides"])


def received_detail(item: NewSend) -> str:
    """The first line of a send's timeline: where it came from, and who asked for it."""
    match item.origin:
        case "crm_event":
            return f"Received from {item.source}: an event the CRM fired."
        case "person":
            return f"Received from {item.source}: asked by a person."
        case _:
            assert_never(item.origin)


def new_row(item: NewSend, now: float) -> dict[str, Any]:
    """The ``sends`` row of a new send, queued (or already final, see :class:`NewSend`)."""
    row: dict[str, Any] = {
        "dedupe_key": item.dedupe_key,
        "source": item.source,
        "origin": item.origin,
        "org_id": item.org_id,
        "ticket_id": item.ticket_id,
        "overrides": item.overrides.to_json(),
        "status": "queued",
        "attempts": 0,
        "not_before": now,
        "lease_token": 0,
        "takeovers": 0,
        "inflight": False,
        "may_have_sent": False,
        "opt_out_learned": False,
        "created_at": now,
        "writeback": "none",
        "writeback_task": "none",
        "writeback_attempts": 0,
    }
    if item.finished is not None:
        row |= {"status": item.finished.status, "reason": item.finished.reason, "finished_at": now, "state_at": now}
    return row


def insert_new(db: Database, connection: Connection, new: Sequence[NewSend], now: float) -> int:
    """Insert the sends whose dedupe keys are new, in the caller's transaction; returns how many."""
    return len(insert_new_keys(db, connection, new, now))


def insert_new_keys(db: Database, connection: Connection, new: Sequence[NewSend], now: float) -> set[str]:
    """Insert the sends whose dedupe keys are new, in the caller's transaction; returns their keys.

    Rows of one shape go in one multi-row statement (a 100-notification message is a few statements,
    not two hundred); a key already stored, or met earlier in ``new``, is skipped.
    """
    statement = (
        db.insert(sends).on_conflict_do_nothing(index_elements=["dedupe_key"]).returning(sends.c.id, sends.c.dedupe_key)
    )
    shapes: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for item in new:
        row = new_row(item, now)
        shapes.setdefault(tuple(row), []).append(row)
    inserted: dict[str, int] = {}
    for rows in shapes.values():
        for send_id, key in connection.execute(statement, rows):
            inserted[str(key)] = int(send_id)
    if inserted:
        details = {item.dedupe_key: received_detail(item) for item in new}
        connection.execute(
            send_log.insert(),
            [
                {"send_id": send_id, "at": now, "event": "received", "detail": details[key]}
                for key, send_id in inserted.items()
            ],
        )
        announce(db, connection)  # workers in other processes look for work when this commits
    return set(inserted)
