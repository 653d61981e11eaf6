"""What the modules of :mod:`bridge.store` that write the ``sends`` table share."""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, Connection, RowMapping, or_

from bridge.model import Overrides
from bridge.store.schema import send_log, sends

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
