"""The write-back step: outcomes to ticket fields and notes, batched, retried on its own.

It never touches the SMS: a CRM outage here only delays what the agent sees. A ticket shows its
newest outcome (an older one arriving late is superseded), a refusal never erases the chat id a
success wrote, and a note whose creation was not confirmed is looked for before it is added again.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import anyio.to_thread

from bridge import _backoff
from bridge.crm import CRMGateway, Note, TicketUpdate, WriteResult
from bridge.errors import CRMError, CRMRequestError
from bridge.model import PendingWriteback, WritebackState, status_words
from bridge.settings import WritebackConfig
from bridge.store import Store
from bridge.worker import StepContext

logger = logging.getLogger(__name__)

BATCH_LIMIT = 200


@dataclass(frozen=True)
class WritebackOptions:
    config: WritebackConfig
    lease_seconds: float
    retry_for: float  # seconds a write-back is retried before it is given up
    follows_chats: bool = False  # a sent SMS's note awaits the chat's outcome


def ticket_update(item: PendingWriteback, *, max_reason: int) -> TicketUpdate:
    reason = None if item.status == "sent" else item.reason
    if reason and len(reason) > max_reason:
        reason = reason[: max_reason - 1] + "…"
    return TicketUpdate(
        opted_out=item.opt_out_learned,
        ticket_id=item.ticket_id,
        status=item.status,
        reason=reason,
        # The newest chat that exists for the ticket: a superseded success's chat still lands, and a
        # later refusal keeps it. None leaves the ticket's field as it is.
        chat_id=item.chat_id if item.status == "sent" else item.ticket_chat_id,
    )


def note_for(item: PendingWriteback, config: WritebackConfig, *, follows_chats: bool = False) -> Note:
    """The note recording a send. A sent SMS's note awaits the chat's outcome while it is followed."""
    if item.status == "sent":
        subject = config.task_subject_sent
        body = f"Text sent to the customer:\n\n{item.message or '(not known: found in CCAI Platform)'}"
        body += f"\n\nCCAI Platform chat id: {item.chat_id}"
    else:
        subject = config.task_subject_not_sent
        body = f"Outcome: {status_words(item.status)}\nReason: {item.reason}"
        if item.message:
            body += f"\n\nText that was to be sent:\n\n{item.message}"
    return Note(
        ticket_id=item.ticket_id,
        key=f"send {item.id}",
        subject=subject[:255],
        body=body,
        at=item.finished_at,
        awaits_follow_up=follows_chats and item.status == "sent" and item.chat_id is not None,
    )


class Writeback:
    """Claims finished sends and brings their outcome to the CRM."""

    def __init__(self, *, context: StepContext, store: Store, gateway: CRMGateway, options: WritebackOptions) -> None:
        self._owner = context.owner
        self._holdings = context.holdings
        self._metrics = context.metrics
        self._rng = context.rng
        self._store = store
        self._gateway = gateway
        self._config = options.config
        self._follows_chats = options.follows_chats
        self._lease = options.lease_seconds
        self._retry_for = options.retry_for

    async def run_batch(self) -> int:
        items = await anyio.to_thread.run_sync(
            lambda: self._store.writebacks.claim(self._owner, limit=BATCH_LIMIT, lease_seconds=self._lease)
        )
        if not items:
            return 0
        with self._holdings.writebacks(item.id for item in items):
            case_items = [item for item in items if item.case_pending and not item.superseded]
            task_items = [item for item in items if item.task_pending]
            settled = await self._notes_already_there([item for item in task_items if item.note_uncertain])
            case_results, task_results = await self._write(case_items, [i for i in task_items if i.id not in settled])
            for item in items:
                case = WriteResult(ok=True) if item.superseded else case_results.get(item.id)
                task = settled.get(item.id, task_results.get(item.id))
                await anyio.to_thread.run_sync(self._record, item, case, task)
        return len(items)

    async def _notes_already_there(self, items: Sequence[PendingWriteback]) -> dict[int, WriteResult]:
        """For notes an earlier, unanswered attempt may have created: done if it did, and a
        retryable failure if we cannot tell (they are never added blindly a second time)."""
        if not items:
            return {}
        notes = [note_for(item, self._config, follows_chats=self._follows_chats) for item in items]
        try:
            found = await anyio.to_thread.run_sync(self._gateway.existing_notes, notes)
        except CRMError as exc:
            logger.warning("Could not check for notes already written (%s); trying later", exc)
            unknown = WriteResult(ok=False, retryable=True, message=str(exc))
            return {item.id: unknown for item in items}
        return {
            item.id: WriteResult(ok=True, ref=found[note.key])
            for item, note in zip(items, notes, strict=True)
            if note.key in found
        }

    async def _write(
        self, case_items: Sequence[PendingWriteback], task_items: Sequence[PendingWriteback]
    ) -> tuple[dict[int, WriteResult], dict[int, WriteResult]]:
        """One call for the batch's ticket updates and notes; each send's results, by send id."""
        if not case_items and not task_items:
            return {}, {}
        updates = [ticket_update(item, max_reason=self._config.error_max_length) for item in case_items]
        notes = [note_for(item, self._config, follows_chats=self._follows_chats) for item in task_items]
        try:
            case_results, task_results = await anyio.to_thread.run_sync(self._gateway.write_outcomes, updates, notes)
        except CRMError as exc:
            logger.warning(
                "Write-back call for %d ticket update(s) and %d note(s) failed: %s", len(updates), len(notes), exc
            )
            failed = WriteResult(ok=False, retryable=not isinstance(exc, CRMRequestError), message=str(exc))
            return {i.id: failed for i in case_items}, {i.id: failed for i in task_items}
        return (
            {item.id: result for item, result in zip(case_items, case_results, strict=True)},
            {item.id: result for item, result in zip(task_items, task_results, strict=True)},
        )

    def _record(self, item: PendingWriteback, case: WriteResult | None, task: WriteResult | None) -> None:
        errors = [r.message or "refused" for r in (case, task) if r is not None and not r.ok]
        elapsed = item.age
        gave_up = elapsed >= self._retry_for
        case_state = _state(case, gave_up)
        task_state = _state(task, gave_up)
        for part, result, state in (("case", case, case_state), ("task", task, task_state)):
            if result is not None and not result.ok:
                self._metrics.writeback_failures.labels(part).inc()
                if state == "failed":
                    logger.error("Write-back of send %s (%s) failed for good: %s", item.id, part, result.message)
        if task is not None and task.ok and item.status == "sent":
            self._store.chats.attach_note(item.id, task.ref)  # followed up when its chat ends
        retrying = "pending" in (case_state, task_state)
        self._store.writebacks.record(
            item,
            case_state=case_state,
            task_state=task_state,
            error="; ".join(errors) or None,
            retry_in=_backoff.delay(elapsed, rng=self._rng) if retrying else None,
            case_written=case_state == "done" and not item.superseded,
        )


def _state(result: WriteResult | None, gave_up: bool) -> WritebackState | None:
    if result is None:
        return None
    if result.ok:
        return "done"
    return "pending" if result.retryable and not gave_up else "failed"
