"""The write-back step: outcomes to Case fields and Tasks, batched, retried on its own.

It never touches the SMS: a Salesforce outage here only delays what the agent sees.
"""

from __future__ import annotations

import datetime as dt
import logging
import random
import time
from collections.abc import Callable, Sequence
from typing import Any

import anyio.to_thread

from bridge import _backoff
from bridge.errors import SalesforceError, SalesforceRequestError
from bridge.metrics import Metrics
from bridge.model import CASE_STATUS, PendingWriteback, RecordResult
from bridge.salesforce import CaseGateway
from bridge.settings import WritebackConfig
from bridge.store import Store

logger = logging.getLogger(__name__)

BATCH_LIMIT = 200


def case_fields(item: PendingWriteback, config: WritebackConfig) -> dict[str, Any]:
    """The Case fields for an outcome. Every field is set, so the Case always shows the latest send."""
    reason = item.reason if item.status != "sent" else None
    if reason and len(reason) > config.error_max_length:
        reason = reason[: config.error_max_length - 1] + "…"
    return {
        config.status_field: CASE_STATUS[item.status],
        config.chat_id_field: item.chat_id if item.status == "sent" else None,
        config.error_field: reason,
    }


def task_record(item: PendingWriteback, config: WritebackConfig) -> dict[str, Any]:
    if item.status == "sent":
        subject = config.task_subject_sent
        description = f"Text sent to the customer:\n\n{item.message}\n\nCCAI Platform chat id: {item.chat_id}"
    else:
        subject = config.task_subject_not_sent
        description = f"Outcome: {CASE_STATUS[item.status]}\nReason: {item.reason}"
        if item.message:
            description += f"\n\nText that was to be sent:\n\n{item.message}"
    return {
        "WhatId": item.ticket_id,
        "Subject": subject[:255],
        "Status": "Completed",
        "Priority": "Normal",
        "ActivityDate": dt.datetime.fromtimestamp(item.finished_at, tz=dt.UTC).date().isoformat(),
        "Description": description[:32000],
    }


class Writeback:
    """Claims finished sends and brings their outcome to Salesforce."""

    def __init__(
        self,
        *,
        store: Store,
        gateway: CaseGateway,
        config: WritebackConfig,
        lease_seconds: float,
        retry_for: float,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self._metrics = metrics or Metrics()
        self._store = store
        self._gateway = gateway
        self._config = config
        self._lease = lease_seconds
        self._retry_for = retry_for
        self._clock = clock
        self._rng = rng or random.Random()

    async def run_batch(self) -> int:
        items = await anyio.to_thread.run_sync(
            lambda: self._store.claim_writebacks(limit=BATCH_LIMIT, lease_seconds=self._lease)
        )
        if not items:
            return 0
        # One Case cannot appear twice in a collection call; the newest outcome wins and older
        # ones are superseded (their Tasks are still created).
        newest: dict[str, PendingWriteback] = {}
        for item in sorted(items, key=lambda i: i.id):
            if item.case_pending:
                newest[item.ticket_id] = item
        case_items = list(newest.values())
        task_items = [item for item in items if item.task_pending]

        case_results, task_results = await self._write(case_items, task_items)
        for item in items:
            superseded = item.case_pending and newest.get(item.ticket_id) is not item
            case = RecordResult(ok=True) if superseded else case_results.get(item.id)
            await anyio.to_thread.run_sync(self._record, item, case, task_results.get(item.id))
        return len(items)

    async def _write(
        self, case_items: Sequence[PendingWriteback], task_items: Sequence[PendingWriteback]
    ) -> tuple[dict[int, RecordResult], dict[int, RecordResult]]:
        """One call for the batch's Case updates and Tasks; each send's results, by send id."""
        updates = [(item.ticket_id, case_fields(item, self._config)) for item in case_items]
        tasks = [task_record(item, self._config) for item in task_items]
        try:
            case_results, task_results = await anyio.to_thread.run_sync(self._gateway.write_back, updates, tasks)
        except SalesforceError as exc:
            code = "REQUEST_REFUSED" if isinstance(exc, SalesforceRequestError) else "UNAVAILABLE"
            logger.warning("Write-back call for %d send(s) failed: %s", len(case_items) + len(task_items), exc)
            failed = RecordResult(ok=False, error_code=code, message=str(exc))
            return {i.id: failed for i in case_items}, {i.id: failed for i in task_items}
        return (
            {item.id: result for item, result in zip(case_items, case_results, strict=True)},
            {item.id: result for item, result in zip(task_items, task_results, strict=True)},
        )

    def _record(self, item: PendingWriteback, case: RecordResult | None, task: RecordResult | None) -> None:
        errors = [r.message or r.error_code or "" for r in (case, task) if r is not None and not r.ok]
        gave_up = self._clock() - item.finished_at >= self._retry_for
        case_state = _state(case, gave_up)
        task_state = _state(task, gave_up)
        retrying = "pending" in (case_state, task_state)
        for part, result, state in (("Case update", case, case_state), ("Task", task, task_state)):
            if result is not None and not result.ok:
                self._metrics.writeback_failures.labels("case" if part == "Case update" else "task").inc()
            if result is not None and state == "failed":
                logger.error("Write-back of send %s (%s) failed for good: %s", item.id, part, result.message)
        self._store.record_writeback(
            item.id,
            case_state=case_state,
            task_state=task_state,
            error="; ".join(errors) or None,
            retry_at=self._clock() + _backoff.delay(self._clock() - item.finished_at, rng=self._rng)
            if retrying
            else None,
        )


def _state(result: RecordResult | None, gave_up: bool) -> str | None:
    if result is None:
        return None
    if result.ok:
        return "done"
    retryable = result.retryable or result.error_code == "UNAVAILABLE"
    return "pending" if retryable and not gave_up else "failed"
