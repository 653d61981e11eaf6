"""The chats the bridge started, followed through their life: what CCAI last said about each, and
what the ticket must be told.

A chat is followed from the moment its send is recorded as sent, until it ends or
``BRIDGE_CHAT_FOLLOW_DAYS`` pass. CCAI's state reaches it by the chat sync's poll of the Manager
API and by pushed session events; either way a state older than the one already applied (by CCAI's
own ``updated_at``) is ignored, so the two can arrive in any order.

A state the store refuses (PostgreSQL cannot hold a NUL) is skipped and logged rather than failing
every later pass (:func:`bridge.store.chat_rows.apply_each`). Session events are kept by
:mod:`bridge.store.session_events`; :func:`follow` puts back in the queue those that arrived before
their chat was followed.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, Connection, and_, case, func, or_, select, tuple_, update

from bridge.ccai.chats import ChatState, loggable
from bridge.errors import StoreRejected
from bridge.store.chat_rows import ChatView, apply_each, apply_state, chat_view, current_row, kept_prefix
from bridge.store.database import Database
from bridge.store.schema import chats, sends, session_events

logger = logging.getLogger(__name__)

T = TypeVar("T")
# How long an event about a chat nobody follows is kept, in case its send is being recorded: longer
# than a send's request to CCAI, and than the wait before a send whose answer was lost is looked up.
UNKNOWN_CHAT_SECONDS = 900.0
# Held by whoever sets aside an event whose chat is not followed and by whoever starts following a
# chat, so that an event cannot be set aside just as its chat starts being followed.
FOLLOW_LOCK = "bridge:chat-follow"
REUSED_TEXT = "CCAI Platform gave this chat's id to a newer chat"


@dataclass(frozen=True)
class PendingChatUpdate:
    chat_id: str
    send_id: int | None
    ticket_id: str
    view: ChatView
    task_ref: str | None
    complete_task: bool
    attempts: int
    superseded: bool  # a newer chat of the same ticket owns the ticket's chat fields
    case_pending: bool
    message: str | None  # the text that was sent, for the completed note


@dataclass(frozen=True)
class PollStart:
    now: float  # the store's clock
    followed: int
    unseen_since: float | None  # created_at of the earliest followed chat no state was applied to


@dataclass
class ChatClaim:
    """Chats leased for one write to their tickets.

    ``until`` is when the lease runs out, and also its fence: a later claim of the same chats can
    only start after it and always ends later, so a chat whose lease is no longer ``until`` has
    been taken over and its answer is not this claim's to record. Renewing moves ``until``.
    """

    items: list[PendingChatUpdate]
    until: float


class Chats:
    """Reads and writes the ``chats`` table (pushed session events are kept by :mod:`bridge.store.session_events`)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    @property
    def db(self) -> Database:
        return self._db

    def followed(self, *, follow_seconds: float) -> set[str]:
        """The chat ids still followed: not ended, and started within the follow period."""
        with self._db.tx() as connection:
            since = self._db.now(connection) - follow_seconds
            rows = connection.execute(
                select(chats.c.chat_id).where(chats.c.ended.is_(False), chats.c.created_at >= since)
            ).all()
        return {str(row[0]) for row in rows}

    def poll_start(self, *, follow_seconds: float, unseen_seconds: float) -> PollStart:
        """What a poll of the chat list starts from, on the store's clock: whether any chat is
        followed, and when the earliest followed chat CCAI has not yet told of was started (only
        those started within ``unseen_seconds``: one the list never shows must not hold every poll back)."""
        with self._db.tx() as connection:
            now = self._db.now(connection)
            followed = connection.execute(
                select(func.count()).where(chats.c.ended.is_(False), chats.c.created_at >= now - follow_seconds)
            ).scalar_one()
            unseen = connection.execute(
                select(func.min(chats.c.created_at)).where(
                    chats.c.ended.is_(False),
                    chats.c.ccai_updated_at.is_(None),
                    chats.c.created_at >= now - min(follow_seconds, unseen_seconds),
                )
            ).scalar_one()
        return PollStart(now=now, followed=int(followed), unseen_since=None if unseen is None else float(unseen))

    def apply(self, states: Sequence[ChatState], *, follow_seconds: float | None = None) -> int:
        """Apply CCAI's states, each only if newer than what is known; returns how many changed what
        the ticket shows (those are queued for its write-back). With ``follow_seconds``, only to
        chats still followed at this moment (the chat list holds the whole tenant's chats, and a
        chat may start being followed while the list is read: decided here, not before the read)."""

        def refused(state: ChatState, exc: StoreRejected) -> None:
            logger.warning(
                "CCAI's state of chat %s was refused by the store and skipped: %s",
                loggable(state.chat_id),
                loggable(exc),
            )

        def step(connection: Connection, state: ChatState, now: float) -> int:
            row = current_row(connection, state.chat_id)
            if row is None:
                return 0
            if follow_seconds is not None and (row["ended"] or row["created_at"] < now - follow_seconds):
                return 0
            return apply_state(connection, row, state, now)

        if follow_seconds is not None and states:
            # Most of the list is other chats of the tenant: one query keeps the bridge's own.
            try:
                with self._db.tx() as connection:
                    ours = {
                        str(row[0])
                        for row in connection.execute(
                            select(chats.c.chat_id).where(chats.c.chat_id.in_({s.chat_id for s in states}))
                        ).all()
                    }
                states = [s for s in states if s.chat_id in ours]
            except StoreRejected:
                pass  # an id the store cannot hold: each state on its own below, that one refused
        return apply_each(self._db, states, step, refused)

    def flag_no_reply(self, *, older_than: float, text: str) -> int:
        """Open chats started ``older_than`` seconds ago whose customer never answered get ``text``
        as their outcome (once)."""
        with self._db.tx() as connection:
            now = self._db.now(connection)
            result = connection.execute(
                update(chats)
                .where(
                    chats.c.ended.is_(False),
                    chats.c.replied.is_(False),
                    chats.c.no_reply.is_(False),
                    chats.c.created_at < now - older_than,
                )
                .values(outcome=text, no_reply=True, case_pending=True, case_not_before=now, case_attempts=0)
            )
        return int(result.rowcount)

    def stop_following(self, *, follow_seconds: float, text: str) -> int:
        """Chats past the follow period are no longer followed; their note is completed with ``text``."""
        with self._db.tx() as connection:
            now = self._db.now(connection)
            result = connection.execute(
                update(chats)
                .where(chats.c.ended.is_(False), chats.c.created_at < now - follow_seconds)
                .values(
                    ended=True,
                    outcome=func.coalesce(chats.c.outcome, text),
                    task_pending=chats.c.task_ref.is_not(None),
                    case_pending=True,
                    case_not_before=now,
                )
            )
            # A chat no longer followed needs its customer's number no more.
            connection.execute(
                update(chats)
                .where(chats.c.number.is_not(None), chats.c.created_at < now - follow_seconds)
                .values(number=None)
            )
        return int(result.rowcount)

    def numbers(self, chat_ids: Sequence[str]) -> dict[str, str | None]:
        """The customer's number of each of these chats that the bridge knows (None where it is no
        longer kept); chats of other integrations are absent."""
        if not chat_ids:
            return {}
        with self._db.tx() as connection:
            rows = connection.execute(
                select(chats.c.chat_id, chats.c.number)
                .where(chats.c.chat_id.in_(list(chat_ids)))
                .order_by(chats.c.number.is_not(None))  # a row that still has it wins (a reused chat id)
            ).all()
        return {str(row[0]): None if row[1] is None else str(row[1]) for row in rows}

    def claim_updates(self, *, limit: int, lease_seconds: float) -> ChatClaim | None:
        """Chats whose news must reach their ticket; a ticket's fields follow only its newest chat.
        Claims are serialised, so two processes never lease the same chat at once."""
        with self._db.tx() as connection:
            self._db.lock(connection, "bridge:chat-claim")
            now = self._db.now(connection)
            pending = or_(chats.c.case_pending.is_(True), chats.c.task_pending.is_(True))
            free = or_(chats.c.case_lease_until.is_(None), chats.c.case_lease_until < now)
            rows = (
                connection.execute(
                    select(chats, sends.c.message)
                    .outerjoin(sends, sends.c.id == chats.c.send_id)
                    .where(pending, free, chats.c.case_not_before <= now)
                    .order_by(chats.c.ticket_id)
                    .limit(limit)
                )
                .mappings()
                .all()
            )
            if not rows:
                return None
            tickets = sorted({row["ticket_id"] for row in rows})
            newest = dict(
                connection.execute(
                    select(chats.c.ticket_id, func.max(chats.c.created_at))
                    .where(chats.c.ticket_id.in_(tickets))
                    .group_by(chats.c.ticket_id)
                ).all()
            )
            connection.execute(
                update(chats)
                .where(_keys_in([(row["chat_id"], row["ticket_id"]) for row in rows]), free)
                .values(case_lease_until=now + lease_seconds)
            )
        items = [
            PendingChatUpdate(
                chat_id=row["chat_id"],
                send_id=row["send_id"],
                ticket_id=row["ticket_id"],
                view=chat_view(row),
                task_ref=row["task_ref"],
                complete_task=bool(row["task_pending"]),
                attempts=row["case_attempts"],
                superseded=row["created_at"] < newest.get(row["ticket_id"], row["created_at"]),
                case_pending=bool(row["case_pending"]),
                message=row["message"],
            )
            for row in rows
        ]
        return ChatClaim(items=items, until=now + lease_seconds)

    def renew(self, claim: ChatClaim, *, lease_seconds: float) -> int:
        """Extend the lease of the claim's chats that it still holds (while their write is under way,
        however long the CRM takes); returns how many. Never shortens a lease, and never revives one
        that ran out: another process may be claiming those chats at this moment."""
        with self._db.tx() as connection:
            now = self._db.now(connection)
            until = now + lease_seconds
            renewed = connection.execute(
                update(chats)
                .where(
                    _keys_in([(i.chat_id, i.ticket_id) for i in claim.items]),
                    chats.c.case_lease_until == claim.until,
                    chats.c.case_lease_until >= now,
                    chats.c.case_lease_until < until,
                )
                .values(case_lease_until=until)
            ).rowcount
        if renewed:
            claim.until = until
        return int(renewed)

    def record_update(
        self, claim: ChatClaim, item: PendingChatUpdate, *, done: bool, retry_in: float | None, error: str | None
    ) -> bool:
        """Record the answer about one claimed chat: written (``done``), to be retried in ``retry_in``
        seconds, or given up (neither).

        Fenced twice. On the lease: a chat another process has taken over meanwhile is left to it
        (returns False). On the news: the ticket is marked up to date only if the chat still shows
        what was written, so news applied during the write (the chat finished while Salesforce was
        answering) stays pending and is written next; the note is marked completed only if this
        claim completed it.
        """
        values: dict[str, Any] = {
            "case_lease_until": None,
            "case_attempts": chats.c.case_attempts + 1,
            "case_error": error,
        }
        if done or retry_in is None:  # written, or given up: this news is dealt with
            values["case_pending"] = case((_shows(item.view), False), else_=chats.c.case_pending)
            if item.complete_task:
                values["task_pending"] = False
        with self._db.tx() as connection:
            now = self._db.now(connection)
            if retry_in is not None:
                values["case_not_before"] = now + retry_in
            result = connection.execute(
                update(chats)
                .where(
                    chats.c.chat_id == item.chat_id,
                    chats.c.ticket_id == item.ticket_id,
                    chats.c.case_lease_until == claim.until,
                )
                .values(values)
            )
        return bool(result.rowcount == 1)

    def attach_note(self, send_id: int, note_ref: str | None) -> None:
        """Remember that a sent send's note was written (and the id the CRM gave it, if any), so that
        its chat's end follows it up. (The column keeps its first name, ``task_ref``: an empty one
        means a note without an id.)

        A chat that already ended (the note's write waited out a CRM outage longer than the chat)
        has its note completed by the next write, as if it had ended now; a note attached again
        (a retried write-back) leaves what was decided the first time."""
        with self._db.tx() as connection:
            ended_first = and_(chats.c.task_ref.is_(None), chats.c.ended.is_(True))
            connection.execute(
                update(chats)
                .where(chats.c.send_id == send_id)
                .values(task_ref=note_ref or "", task_pending=case((ended_first, True), else_=chats.c.task_pending))
            )

    def live_chat(self, ticket_id: str) -> tuple[str, str | None] | None:
        """The newest chat the bridge started for the ticket that has not ended: (chat id, status)."""
        with self._db.tx() as connection:
            row = connection.execute(
                select(chats.c.chat_id, chats.c.status)
                .where(chats.c.ticket_id == ticket_id, chats.c.ended.is_(False))
                .order_by(chats.c.created_at.desc())
                .limit(1)
            ).first()
        return None if row is None else (str(row.chat_id), row.status)

    def lagging(self) -> int:
        """How many followed chats still have news for their ticket."""
        with self._db.tx() as connection:
            return int(
                connection.execute(
                    select(func.count()).where(or_(chats.c.case_pending.is_(True), chats.c.task_pending.is_(True)))
                ).scalar_one()
            )


def follow(
    db: Database,
    connection: Connection,
    *,
    send_id: int,
    ticket_id: str,
    chat_id: str,
    now: float,
    number: str | None = None,
) -> None:
    """Start following a chat (called by the store when a send is recorded as sent). Events about
    it that arrived first, while nobody followed it, go back in the queue to be applied."""
    db.lock(connection, FOLLOW_LOCK)
    tickets = {
        str(t) for t in connection.execute(select(chats.c.ticket_id).where(chats.c.chat_id == chat_id)).scalars()
    }
    if tickets - {ticket_id}:
        # Outside what CCAI promises, but seen in a fault run: the id now names this ticket's chat.
        # The older chat is no longer followed, so no news of the new one reaches the older ticket.
        logger.warning("CCAI gave chat id %s again, for another ticket; the older chat is no longer followed", chat_id)
        connection.execute(
            update(chats)
            .where(chats.c.chat_id == chat_id, chats.c.ticket_id != ticket_id, chats.c.ended.is_(False))
            .values(
                ended=True,
                outcome=func.coalesce(chats.c.outcome, REUSED_TEXT),
                task_pending=chats.c.task_ref.is_not(None),
                case_pending=True,
                case_not_before=now,
            )
        )
    if ticket_id not in tickets:
        connection.execute(
            update(session_events)
            .where(
                session_events.c.applied.is_(True),
                # CCAI's time, which the index covers; a margin for its clock and late deliveries.
                session_events.c.timestamp >= now - UNKNOWN_CHAT_SECONDS - 3600,
                session_events.c.payload.startswith(kept_prefix(chat_id), autoescape=True),
            )
            .values(applied=False)
        )
        connection.execute(
            chats.insert().values(
                chat_id=chat_id,
                send_id=send_id,
                ticket_id=ticket_id,
                number=number,
                created_at=now,
                ended=False,
                replied=False,
                no_reply=False,
                case_pending=False,
                task_pending=False,
                case_attempts=0,
                case_not_before=now,
            )
        )


def _keys_in(keys: Sequence[tuple[str, str]]) -> ColumnElement[bool]:
    return tuple_(chats.c.chat_id, chats.c.ticket_id).in_(keys)


def _shows(view: ChatView) -> ColumnElement[bool]:
    """The chat's row still holds ``view``."""
    return and_(
        chats.c.status.is_not_distinct_from(view.status),
        chats.c.agent.is_not_distinct_from(view.agent),
        chats.c.ended_at.is_not_distinct_from(view.ended_at),
        chats.c.outcome.is_not_distinct_from(view.outcome),
    )
