"""An in-memory CRM for in-process worker tests, kept honest by ``tests/crm/test_gateway_contract.py``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from bridge.crm import ApiUsage, ChatUpdate, FollowUp, Note, Ticket, TicketUpdate, WriteResult, WriteResults


@dataclass
class FakeGateway:
    """Implements :class:`bridge.crm.CRMGateway` in memory. ``failures`` makes the next reads raise,
    ``write_failures`` the next writes; ``record_errors`` refuses the updates of these tickets;
    ``lose_write_answers`` performs the next writes but raises as if their answer was lost."""

    cases: dict[str, dict[str, Any]] = field(default_factory=dict)
    updates: list[TicketUpdate] = field(default_factory=list)
    notes: list[Note] = field(default_factory=list)
    reads: int = 0
    writes: int = 0  # outcome write-backs
    chat_writes: int = 0
    failures: list[Exception] = field(default_factory=list)
    write_failures: list[Exception] = field(default_factory=list)
    lose_write_answers: list[Exception] = field(default_factory=list)
    record_errors: dict[str, WriteResult] = field(default_factory=dict)
    chat_updates: list[ChatUpdate] = field(default_factory=list)
    follow_ups: list[FollowUp] = field(default_factory=list)
    chat_failures: list[Exception] = field(default_factory=list)
    closed: bool = False

    def read_tickets(self, ids: Sequence[str], fields: Sequence[str]) -> dict[str, Ticket]:
        self.reads += 1
        if self.failures:
            raise self.failures.pop(0)
        return {i: self._ticket(i) for i in ids if i in self.cases}

    def _ticket(self, case_id: str) -> Ticket:
        values = self.cases[case_id]
        owner = values.get("Owner.Email") if values.get("Owner.Type") == "User" else None
        number = values.get("CaseNumber")
        return Ticket(id=case_id, fields=dict(values), owner_email=owner, number=str(number) if number else None)

    def write_outcomes(self, updates: Sequence[TicketUpdate], notes: Sequence[Note]) -> WriteResults:
        self.writes += 1
        if self.write_failures:
            raise self.write_failures.pop(0)
        results = []
        for update in updates:
            error = self.record_errors.get(update.ticket_id) or self._missing(update.ticket_id)
            if error is None:
                self.updates.append(update)
            results.append(error or WriteResult(ok=True))
        self.notes.extend(notes)
        if self.lose_write_answers:
            raise self.lose_write_answers.pop(0)
        return WriteResults(results, [WriteResult(ok=True, ref=f"00T{i:015d}") for i, _ in enumerate(notes)])

    def write_chats(self, updates: Sequence[ChatUpdate], follow_ups: Sequence[FollowUp]) -> WriteResults:
        self.chat_writes += 1
        if self.chat_failures:
            raise self.chat_failures.pop(0)
        self.chat_updates.extend(updates)
        self.follow_ups.extend(follow_ups)
        refs = {f"00T{i:015d}": (n.ticket_id, n.key) for i, n in enumerate(self.notes)}
        followed = [
            WriteResult(ok=True)
            if refs.get(f.note_ref or "") == (f.ticket_id, f.key)
            or (f.note_ref is None and (f.ticket_id, f.key) in refs.values())
            else WriteResult(ok=False, message=f"No note records {f.key} on ticket {f.ticket_id}.")
            for f in follow_ups
        ]
        return WriteResults([self._missing(u.ticket_id) or WriteResult(ok=True) for u in updates], followed)

    def _missing(self, ticket_id: str) -> WriteResult | None:
        """The answer for a ticket that does not exist (deleted): final, as the CRM's would be."""
        if ticket_id in self.cases:
            return None
        return WriteResult(ok=False, message=f"ENTITY_IS_DELETED: ticket {ticket_id} does not exist.")

    def existing_notes(self, notes: Sequence[Note]) -> dict[str, str]:
        have = {(n.ticket_id, n.key): f"00T{i:015d}" for i, n in enumerate(self.notes)}
        return {n.key: have[(n.ticket_id, n.key)] for n in notes if (n.ticket_id, n.key) in have}

    def api_usage(self) -> ApiUsage | None:
        return ApiUsage(self.reads, 100_000) if self.reads else None

    def close(self) -> None:
        self.closed = True

    def latest(self, case_id: str) -> TicketUpdate:
        """The newest update written to this ticket."""
        return [u for u in self.updates if u.ticket_id == case_id][-1]
