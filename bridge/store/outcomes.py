"""Recording a send's final outcome: fenced on the lease, except for a success, which is the truth.

An SMS that went out is recorded whoever holds the lease now (throwing the chat id away would
leave the customer texted and the ticket saying otherwise), and a second chat CCAI confirms for
the same send is recorded and followed too, never only logged. An outcome the database refuses
(too long, a character it cannot hold) is recorded reduced, so the send never stays "sending" to
be sent again.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import Connection, select, update

from bridge.errors import StoreRejected
from bridge.model import Outcome, Overrides
from bridge.store._rows import LEASE_RELEASED, log_event, still_held
from bridge.store.chats import follow
from bridge.store.database import Database
from bridge.store.schema import sends

logger = logging.getLogger(__name__)


def record_outcome(db: Database, send_id: int, outcome: Outcome, *, token: int, create_task: bool) -> bool:
    """Record a final outcome and, unless told otherwise, queue its write-back.

    Returns False when this worker lost its lease and the outcome was not recorded, except for
    a success: an SMS that went out is recorded whoever holds the lease, because throwing the
    chat id away would leave the customer texted and the ticket saying otherwise.
    If the database refuses the outcome itself (too long, a character it cannot hold), a
    reduced outcome is recorded instead, so the send never stays "sending" to be sent again.
    """
    for attempt in _reduced(outcome):
        try:
            return _record(db, send_id, attempt, token=token, create_task=create_task)
        except StoreRejected as exc:
            logger.error("Send %s: the store refused its outcome (%s); recording less of it", send_id, exc)
    raise StoreRejected(f"The store refused every form of send {send_id}'s outcome.")


def _record(db: Database, send_id: int, outcome: Outcome, *, token: int, create_task: bool) -> bool:
    write_back = outcome.write_back
    writeback_state = "pending" if write_back else "none"
    with db.tx() as connection:
        now = db.now(connection)
        row = connection.execute(select(sends.c.overrides).where(sends.c.id == send_id)).first()
        values: dict[str, Any] = {
            "status": outcome.status,
            "reason": outcome.reason,
            # The last chat that exists: a later refusal (a forced resend during the live chat) adds
            # its reason, but the chat that reached the customer stays on record.
            "chat_id": outcome.chat_id if outcome.chat_id is not None else sends.c.chat_id,
            # Text that never went out is kept only for the "not sent" note (cleared once written).
            "message": outcome.message if outcome.status == "sent" or (write_back and create_task) else None,
            "end_user_hint": outcome.end_user_hint,
            "finished_at": now,
            "state_at": now,
            "segments": outcome.segments,
            "opt_out_learned": outcome.opt_out_learned,
            "template": outcome.template,
            "template_version": outcome.template_version,
            **LEASE_RELEASED,
            "overrides": Overrides.from_json(row[0] if row else None).without_number().to_json(),
            "writeback": writeback_state,
            "writeback_task": "pending" if write_back and create_task else "none",
            "writeback_not_before": now,
            "writeback_attempts": 0,
            "writeback_error": None,
        }
        if outcome.status == "sent":
            values |= {"may_have_sent": False, "ambiguous_since": None}
        result = connection.execute(update(sends).where(*still_held(send_id, token)).values(values))
        if result.rowcount == 1:
            _follow(db, connection, send_id, outcome, now)
            log_event(connection, send_id, now, "finished", outcome.summary)
            return True
        if outcome.status != "sent":
            return False
        # A late success: fence out whoever holds the lease now, and let the truth win.
        late = connection.execute(
            update(sends)
            .where(sends.c.id == send_id, sends.c.status != "sent")
            .values(values | {"lease_token": sends.c.lease_token + 1})
        )
        if late.rowcount == 1:
            _follow(db, connection, send_id, outcome, now)
            log_event(connection, send_id, now, "finished", outcome.summary + " (an answer that arrived late)")
            logger.warning("Send %s: a success arrived after its lease passed to another worker; recorded", send_id)
            return True
        recorded = connection.execute(select(sends.c.chat_id).where(sends.c.id == send_id)).scalar()
        if recorded == outcome.chat_id:
            return True  # the same chat, answered twice
        # Two chats for one send: CCAI created both, so the customer was most likely texted twice
        # (see bridge.departure for the one window the bridge cannot close). Both are kept: the
        # second is followed like the first, so the ticket hears of it, and the timeline says so.
        _follow(db, connection, send_id, outcome, now)
        log_event(
            connection,
            send_id,
            now,
            "second chat",
            f"CCAI Platform also confirmed chat {outcome.chat_id} for this send, after chat {recorded} was "
            "recorded: the customer was most likely texted twice.",
        )
        logger.error(
            "Send %s: CCAI confirmed a second chat %s after chat %s was recorded; both are kept and followed",
            send_id,
            outcome.chat_id,
            recorded,
        )
        return True


def _follow(db: Database, connection: Connection, send_id: int, outcome: Outcome, now: float) -> None:
    """A chat exists: follow it (the chat sync keeps its ticket current)."""
    if outcome.status == "sent" and outcome.chat_id:
        ticket = connection.execute(select(sends.c.ticket_id).where(sends.c.id == send_id)).scalar_one()
        follow(
            db,
            connection,
            send_id=send_id,
            ticket_id=ticket,
            chat_id=outcome.chat_id,
            now=now,
            number=outcome.end_user_number,
        )


def _reduced(outcome: Outcome) -> list[Outcome]:
    """The outcome, then less of it, then only its status: what to try when the store refuses it."""
    reason = "".join(c for c in (outcome.reason or "") if c.isprintable())[:500] or None
    chat_id = "".join(c for c in (outcome.chat_id or "") if c.isprintable())[:64] or None
    note = " (The full outcome could not be stored.)"
    return [
        outcome,
        Outcome(status=outcome.status, reason=(reason or "") + note, chat_id=chat_id, write_back=outcome.write_back),
        Outcome(status=outcome.status, reason="The outcome could not be stored.", write_back=outcome.write_back),
    ]
