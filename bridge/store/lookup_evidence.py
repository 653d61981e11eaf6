"""The lost-answer lookup's evidence: what the chat list showed of the chats the bridge created.

Only chats the bridge recorded (``chats``) count, compared with the ticket id recorded with them;
nothing of the customer's is kept. See :mod:`bridge.lookup_proof` for what the evidence proves.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, delete, select, update

from bridge.lookup_proof import KEPT, Evidence, Sighting
from bridge.store.database import Database
from bridge.store.schema import chats, lookup_evidence


class LookupEvidence:
    """Reads and writes the ``lookup_evidence`` table."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def observe(self, sightings: Sequence[Sighting]) -> int:
        """Record what the list showed of the bridge's own chats among ``sightings``; how many rows
        changed. A chat's evidence only moves forward: once seen carrying our ticket id, it stays so."""
        by_id = {s.chat_id: s for s in sightings if s.chat_id}
        if not by_id:
            return 0
        with self._db.tx() as connection:
            ours = {
                str(row.chat_id): (str(row.ticket_id), float(row.created_at))
                for row in connection.execute(
                    select(chats.c.chat_id, chats.c.ticket_id, chats.c.created_at).where(
                        chats.c.chat_id.in_(list(by_id))
                    )
                )
            }
            if not ours:
                return 0
            now = self._db.now(connection)
            known = {
                str(row["chat_id"]): row
                for row in connection.execute(
                    select(lookup_evidence).where(lookup_evidence.c.chat_id.in_(list(ours)))
                ).mappings()
            }
            changed = sum(
                self._note(connection, chat_id, ticket_id, sent_at, by_id[chat_id], known.get(chat_id), now)
                for chat_id, (ticket_id, sent_at) in ours.items()
            )
            if changed:
                self._prune(connection)
        return changed

    def _note(
        self,
        connection: Connection,
        chat_id: str,
        ticket_id: str,
        sent_at: float,
        seen: Sighting,
        row: Any,
        now: float,
    ) -> int:
        value = (seen.out_ticket_id or "").strip()
        carried = value == ticket_id
        other = bool(value) and not carried
        if row is None:
            statement = (
                self._db.insert(lookup_evidence)
                .values(
                    chat_id=chat_id,
                    sent_at=sent_at,
                    first_seen_at=now,
                    last_seen_at=now,
                    carried_at=now if carried else None,
                    other=other,
                )
                .on_conflict_do_nothing(index_elements=["chat_id"])
                .returning(lookup_evidence.c.chat_id)
            )
            return int(connection.execute(statement).first() is not None)
        if row["carried_at"] is not None or row["other"]:
            return 0  # settled: nothing later changes what it showed first
        values: dict[str, Any] = {"last_seen_at": now}
        if carried:
            values["carried_at"] = now
        elif other:
            values["other"] = True
        connection.execute(update(lookup_evidence).where(lookup_evidence.c.chat_id == chat_id).values(**values))
        return 1

    def _prune(self, connection: Connection) -> None:
        keep = select(lookup_evidence.c.chat_id).order_by(lookup_evidence.c.sent_at.desc()).limit(KEPT)
        connection.execute(delete(lookup_evidence).where(lookup_evidence.c.chat_id.not_in(keep.scalar_subquery())))

    def ours(self, chat_ids: Sequence[str]) -> dict[str, str]:
        """Which of these chats the bridge created, with the ticket id it sent (read only: ``bridge check``)."""
        if not chat_ids:
            return {}
        with self._db.tx() as connection:
            rows = connection.execute(
                select(chats.c.chat_id, chats.c.ticket_id).where(chats.c.chat_id.in_(list(chat_ids)))
            ).all()
        return {str(row[0]): str(row[1]) for row in rows}

    def recent(self, limit: int = KEPT) -> list[Evidence]:
        """The latest evidence, newest chat first."""
        with self._db.tx() as connection:
            rows = connection.execute(
                select(lookup_evidence).order_by(lookup_evidence.c.sent_at.desc()).limit(limit)
            ).mappings()
            return [
                Evidence(
                    chat_id=str(row["chat_id"]),
                    sent_at=float(row["sent_at"]),
                    first_seen_at=float(row["first_seen_at"]),
                    last_seen_at=float(row["last_seen_at"]),
                    carried_at=None if row["carried_at"] is None else float(row["carried_at"]),
                    other=bool(row["other"]),
                )
                for row in rows
            ]
