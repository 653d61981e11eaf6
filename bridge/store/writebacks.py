"""The write-back step's claims: finished sends whose outcome must still reach their ticket.

A ticket's outcomes land in order: claims are serialised, a ticket whose write-back another worker
holds is left alone, and an older outcome is superseded by a newer one (only its note is written).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, RowMapping, case, func, or_, select, update

from bridge.model import PendingWriteback, WritebackState
from bridge.store._rows import PENDING_WRITEBACK, log_event
from bridge.store.database import Database
from bridge.store.schema import sends


class Writebacks:
    """The write-back columns of the ``sends`` table: claims, their leases, and what each attempt did."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def claim(self, owner: str, *, limit: int, lease_seconds: float) -> list[PendingWriteback]:
        """Lease up to ``limit`` pending write-backs, keeping each ticket's outcomes in order.

        Claims are serialised, a ticket whose write-back another worker holds is left alone, and an
        outcome older than another one for the same ticket is marked superseded (only its note is
        written): the ticket can never end up showing an older outcome over a newer one.
        """
        with self.db.tx() as connection:
            self.db.lock(connection, "bridge:writeback-claim")
            now = self.db.now(connection)
            free = or_(sends.c.writeback_lease_until.is_(None), sends.c.writeback_lease_until < now)
            query = (
                select(sends)
                .where(PENDING_WRITEBACK, sends.c.writeback_not_before <= now, free)
                .order_by(sends.c.writeback_not_before, sends.c.id)
                .limit(limit)
            )
            rows = connection.execute(query).mappings().all()
            tickets = sorted({row["ticket_id"] for row in rows})
            busy, newest, chats = _ticket_order(connection, tickets, now)
            rows = [row for row in rows if row["ticket_id"] not in busy]
            if rows:
                connection.execute(
                    update(sends)
                    .where(sends.c.id.in_([row["id"] for row in rows]))
                    .values(writeback_lease_until=now + lease_seconds, writeback_owner=owner)
                )
        return [_pending(row, newest.get(row["ticket_id"]), chats.get(row["ticket_id"]), now) for row in rows]

    def record(
        self,
        item: PendingWriteback,
        *,
        case_state: WritebackState | None,
        task_state: WritebackState | None,
        error: str | None,
        retry_in: float | None,
        case_written: bool = False,
    ) -> None:
        """Store the result of one write-back attempt for the claimed ``item``; ``None`` states leave
        that part unchanged.

        Fenced on the state that was claimed: if the send reached a newer state meanwhile (held, then
        sent; retried by an operator, then finished), that state's write-back stays pending and is
        written next, rather than being marked done by the answer about the older one.
        """
        values: dict[str, Any] = {
            "writeback_attempts": sends.c.writeback_attempts + 1,
            "writeback_lease_until": None,
            "writeback_owner": None,
            "writeback_error": error,
        }
        if case_state is not None:
            values["writeback"] = case_state
        if task_state is not None:
            values["writeback_task"] = task_state
        if task_state in ("done", "failed"):  # the note no longer needs text that was not sent
            values["message"] = case((sends.c.status == "sent", sends.c.message), else_=None)
        claimed_state = func.coalesce(sends.c.state_at, sends.c.finished_at, sends.c.created_at) == item.state_at
        with self.db.tx() as connection:
            now = self.db.now(connection)
            if retry_in is not None:
                values["writeback_not_before"] = now + retry_in
            if case_written:
                values["case_written_at"] = now  # the loop guard counts the bridge's own writes to the ticket
            parts = {"ticket": case_state, "note": task_state}
            words = ", ".join(f"{part} {state}" for part, state in parts.items() if state is not None)
            fenced = update(sends).where(sends.c.id == item.id, claimed_state).values(values)
            if connection.execute(fenced).rowcount == 1:
                log_event(connection, item.id, now, "written back", words + (f": {error}" if error else ""))
                return
            stale: dict[str, Any] = {"writeback_lease_until": None, "writeback_owner": None}
            if case_written:
                # The older state just landed on the ticket, maybe after the newer one did: the newer
                # one is written again, so that the ticket ends up showing it.
                stale |= {
                    "case_written_at": now,
                    "writeback": case((sends.c.writeback == "done", "pending"), else_=sends.c.writeback),
                    "writeback_not_before": now,
                }
            connection.execute(update(sends).where(sends.c.id == item.id).values(stale))
            log_event(connection, item.id, now, "written back", f"{words} for an earlier state; the newer one follows")


def _ticket_order(
    connection: Connection, tickets: Sequence[str], now: float
) -> tuple[set[str], dict[str, tuple[float, int]], dict[str, str]]:
    """For these tickets: which have a write-back leased right now; each one's newest outcome
    (finished time, id) among those whose ticket update is pending or done; and each one's latest chat."""
    if not tickets:
        return set(), {}, {}
    rows = connection.execute(
        select(
            sends.c.ticket_id,
            sends.c.id,
            sends.c.finished_at,
            sends.c.writeback,
            sends.c.writeback_lease_until,
            sends.c.chat_id,
            sends.c.state_at,
        ).where(sends.c.ticket_id.in_(tickets))
    ).all()
    busy = {row.ticket_id for row in rows if row.writeback_lease_until is not None and row.writeback_lease_until >= now}
    newest: dict[str, tuple[float, int]] = {}
    latest_chat: dict[str, tuple[float, int, str]] = {}
    for row in rows:
        key = (row.state_at or row.finished_at or 0.0, row.id)
        if row.writeback in ("pending", "done"):
            newest[row.ticket_id] = max(newest.get(row.ticket_id, key), key)
        if row.chat_id is not None and (row.ticket_id not in latest_chat or key > latest_chat[row.ticket_id][:2]):
            latest_chat[row.ticket_id] = (*key, row.chat_id)
    return busy, newest, {ticket: chat for ticket, (_, _, chat) in latest_chat.items()}


def _pending(
    row: RowMapping, newest: tuple[float, int] | None, ticket_chat_id: str | None, now: float
) -> PendingWriteback:
    finished_at = row["finished_at"] or row["created_at"]
    state_at = row["state_at"] or finished_at
    return PendingWriteback(
        id=row["id"],
        ticket_id=row["ticket_id"],
        status=row["status"],
        reason=row["reason"],
        chat_id=row["chat_id"],
        message=row["message"],
        case_pending=row["writeback"] == "pending",
        task_pending=row["writeback_task"] == "pending",
        attempts=row["writeback_attempts"],
        finished_at=finished_at,
        age=max(0.0, now - finished_at),
        superseded=row["writeback"] == "pending" and newest is not None and (state_at, row["id"]) < newest,
        # Its last attempt's answer never came back (a lease that ran out, or a retry after a lost answer).
        note_uncertain=row["writeback_task"] == "pending"
        and (row["writeback_attempts"] > 0 or row["writeback_owner"] is not None),
        ticket_chat_id=ticket_chat_id,
        origin=row["origin"],
        opt_out_learned=bool(row["opt_out_learned"]),
        state_at=state_at,
    )
