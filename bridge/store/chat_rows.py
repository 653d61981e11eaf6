"""One chat's row, whoever brings its news: what the ticket shows of it (:class:`ChatView`), how a
state CCAI reported changes the row (:func:`apply_state`, for the poll and for pushed session events
alike), and a state kept as text until its chat is followed."""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import Connection, RowMapping, or_, select, update

from bridge.ccai.chats import ChatState, event_state
from bridge.errors import StoreRejected
from bridge.store.database import Database
from bridge.store.schema import chats

logger = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class ChatView:
    """What the ticket shows about its chat."""

    status: str | None
    agent: str | None
    ended_at: float | None
    outcome: str | None


def apply_each(
    db: Database,
    items: Sequence[T],
    step: Callable[[Connection, T, float], int],
    refused: Callable[[T, StoreRejected], None],
    *,
    lock: str | None = None,
) -> int:
    """The sum of ``step`` over the items, in one transaction; if the store refuses that, one
    transaction per item, and an item the store refuses goes to ``refused`` instead of stopping the
    others (for good: the same value fails the same way every time). An outage is raised."""

    def run(batch: Sequence[T]) -> int:
        with db.tx() as connection:
            if lock is not None:
                db.lock(connection, lock)
            now = db.now(connection)
            return sum(step(connection, item, now) for item in batch)

    if not items:
        return 0
    try:
        return run(items)
    except StoreRejected:
        pass
    total = 0
    for item in items:
        try:
            total += run([item])
        except StoreRejected as exc:
            refused(item, exc)
    return total


def apply_state(connection: Connection, row: RowMapping, state: ChatState, now: float, *, pushed: bool = False) -> int:
    """Apply one state to its chat's ``row`` if it is not older; 1 if the ticket must be told.

    ``pushed``: the state came from a session event. A push makes the ticket faster, the poll keeps
    it right: a pushed state never ends a chat (the poll keeps following it until the Manager API
    says it ended), never changes the status of a chat the poll saw end, and fences only other
    pushes. A polled state older than the last push keeps what the push showed, except the end it
    confirms. Whatever a state does not say (None) leaves what the ticket shows."""
    polled_at, pushed_at = row["ccai_updated_at"] or 0.0, row["pushed_at"] or 0.0
    if (max(polled_at, pushed_at) if pushed else polled_at) > state.updated_at:
        return 0  # older than what we applied (a late push, an overlap)
    before = chat_view(row)
    ends = not pushed and state.ended
    if pushed:
        view = ChatView(
            status=row["status"] if row["ended"] else state.status or row["status"],
            agent=state.agent or row["agent"],
            ended_at=row["ended_at"],
            outcome=state.outcome or row["outcome"],
        )
    elif state.updated_at >= pushed_at:
        view = ChatView(
            status=state.status or row["status"],
            agent=state.agent or row["agent"],
            ended_at=state.ended_at if ends else row["ended_at"],
            outcome=state.outcome or row["outcome"],
        )
    else:  # the list lags behind a push: only the end is news
        view = ChatView(
            status=state.status if ends else row["status"],
            agent=row["agent"] or state.agent,
            ended_at=state.ended_at if ends else row["ended_at"],
            outcome=row["outcome"] or state.outcome,
        )
    fence = chats.c.pushed_at if pushed else chats.c.ccai_updated_at
    values: dict[str, Any] = {
        "status": view.status,
        "agent": view.agent,
        "ended_at": view.ended_at,
        "outcome": view.outcome,
        fence.name: state.updated_at,
        "synced_at": now,
        "replied": bool(row["replied"]) or bool(state.replied),
    }
    changed = 0
    if ends and not row["ended"]:
        values |= {"ended": True, "task_pending": row["task_ref"] is not None}
    if view != before or values.get("task_pending"):
        values |= {"case_pending": True, "case_not_before": now, "case_attempts": 0}
        changed = 1
    # Fenced on the time read, too: a newer state committed since ``row`` was read stays (a caller
    # should also have read ``row`` FOR UPDATE; this holds even if it did not).
    applied = connection.execute(
        update(chats)
        .where(
            chats.c.chat_id == state.chat_id,
            chats.c.ticket_id == row["ticket_id"],
            or_(fence.is_(None), fence <= state.updated_at),
        )
        .values(values)
    ).rowcount
    return changed if applied else 0


def current_row(connection: Connection, chat_id: str) -> RowMapping | None:
    """The chat that ``chat_id`` names now (locked): the newest, should CCAI have given it twice."""
    return (
        connection.execute(
            select(chats)
            .where(chats.c.chat_id == chat_id)
            .order_by(chats.c.created_at.desc())
            .limit(1)
            .with_for_update()
        )
        .mappings()
        .first()
    )


def chat_view(row: RowMapping) -> ChatView:
    return ChatView(status=row["status"], agent=row["agent"], ended_at=row["ended_at"], outcome=row["outcome"])


def kept_state(state: ChatState) -> str:
    """What is kept of a session event until it is applied; the chat id first (:func:`follow`
    finds a chat's events by it)."""
    return json.dumps(dataclasses.asdict(state))


def kept_prefix(chat_id: str) -> str:
    return '{"chat_id": ' + json.dumps(chat_id) + ","


def read_kept_state(payload: str, timestamp: float | None) -> ChatState | None:
    try:
        kept = json.loads(payload)
    except ValueError:
        return None
    fields = {f.name: f for f in dataclasses.fields(ChatState)}
    required = {name for name, f in fields.items() if f.default is dataclasses.MISSING}
    if isinstance(kept, dict) and required <= set(kept) <= set(fields):  # kept by this version or an earlier one
        return ChatState(**kept)
    return event_state(kept, timestamp) if isinstance(kept, dict) else None  # as kept by earlier versions
