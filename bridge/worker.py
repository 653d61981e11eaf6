"""The worker: claim sends → loop guard → read tickets → map → pace → send → record; then write back.

Everything it learns goes to the store before it moves on, so a crash anywhere resumes from there.
The one step that cannot be made atomic is the CCAI request itself: the send is flagged *inflight*
just before it leaves, and a send found still flagged after its worker died is treated as
possibly delivered (see :meth:`Worker._send_one`).
"""

from __future__ import annotations

import logging
import math
import os
import random
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import anyio
import anyio.to_thread

from bridge import _backoff
from bridge.ccai import CCAIClient, is_active_session_refusal
from bridge.errors import (
    CCAIBadResponse,
    CCAIRejected,
    CCAIUnavailable,
    SalesforceError,
    SalesforceRequestError,
    StoreUnavailable,
)
from bridge.logs import about_send
from bridge.mapping import TicketMapper
from bridge.metrics import Metrics
from bridge.model import ClaimedSend, Outcome, SmsRequest, Ticket
from bridge.phones import mask
from bridge.ratelimit import RateLimiter
from bridge.salesforce import CaseGateway
from bridge.store import Store
from bridge.writeback import Writeback

logger = logging.getLogger(__name__)

REPORT_SECONDS = 5.0
PURGE_EVERY_SECONDS = 3600.0


@dataclass(frozen=True)
class WorkerOptions:
    batch_size: int = 50
    lease_seconds: float = 120.0
    poll_seconds: float = 1.0
    loop_guard_seconds: float = 600.0
    ccai_retry_for: float = 3600.0
    ccai_timeout: float = 15.0
    max_concurrency: int = 20
    create_task: bool = True
    retention_seconds: float = 30 * 86400.0


class Worker:
    """Processes queued sends and pending write-backs until cancelled."""

    def __init__(
        self,
        *,
        store: Store,
        gateway: CaseGateway,
        ccai: CCAIClient,
        mapper: TicketMapper,
        limiter: RateLimiter,
        writeback: Writeback,
        options: WorkerOptions,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self._metrics = metrics or Metrics()
        self._store = store
        self._gateway = gateway
        self._ccai = ccai
        self._mapper = mapper
        self._limiter = limiter
        self._writeback = writeback
        self._options = options
        self._clock = clock
        self._rng = rng or random.Random()
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._wake = anyio.Event()
        self._stopping = False
        self._reported_at = 0.0
        self._purged_at = 0.0
        self.alive_at = time.monotonic()  # for /readyz: when this worker last showed signs of life
        self._reported_usage: tuple[int, int] | None = None

    def wake(self) -> None:
        """Ask the loop to look for work now (called after new events are stored)."""
        self._wake.set()

    def stop(self) -> None:
        """Stop claiming work. The current pass finishes the CCAI requests already under way; sends
        it had claimed but not started are given back to the queue, then :meth:`run` returns.
        """
        self._stopping = True
        self._wake.set()

    async def run(self) -> None:
        logger.info("Worker %s started", self.owner)
        while not self._stopping:
            self.alive_at = time.monotonic()
            try:
                await self._report()
                await self._purge()
                done = await self.run_once()
            except StoreUnavailable as exc:
                logger.warning("Worker cannot reach the store (%s); trying again shortly", exc)
                done = 0
            except Exception:
                # A bug must not stop the worker (nor, through the lifespan, the web server). The
                # sends of the failed pass stay leased and are taken up again when the lease ends.
                logger.exception("A worker pass failed unexpectedly; carrying on")
                done = 0
            if done or self._stopping:
                continue
            await self._idle()
        released = await anyio.to_thread.run_sync(self._store.release, self.owner)
        logger.info("Worker %s stopped; %d unstarted send(s) given back to the queue", self.owner, released)

    async def run_once(self) -> int:
        """One pass: a batch of sends, then a batch of write-backs. Returns how much was handled."""
        sent = await self._send_batch()
        if self._stopping:
            return sent
        return sent + await self._writeback.run_batch()

    async def _purge(self) -> None:
        """Once an hour, delete finished sends older than the retention period (see README: Privacy)."""
        now = self._clock()
        if self._options.retention_seconds <= 0 or now - self._purged_at < PURGE_EVERY_SECONDS:
            return
        self._purged_at = now
        removed = await anyio.to_thread.run_sync(self._store.purge, now - self._options.retention_seconds)
        if removed:
            logger.info("Purged %d finished send(s) older than the retention period", removed)

    async def _report(self) -> None:
        """For `bridge status`: a heartbeat every few seconds, and Salesforce's API usage when it changed."""
        now = self._clock()
        if now - self._reported_at >= REPORT_SECONDS:
            self._reported_at = now
            await anyio.to_thread.run_sync(self._store.put_status, f"worker:{self.owner}", {"heartbeat": now})
        usage = self._gateway.api_usage()
        if usage is not None and usage != self._reported_usage:
            self._reported_usage = usage
            record = {"used": usage[0], "total": usage[1]}
            await anyio.to_thread.run_sync(self._store.put_status, "salesforce:api_usage", record)

    async def _idle(self) -> None:
        try:
            next_due = await anyio.to_thread.run_sync(self._store.next_due)
        except StoreUnavailable:
            next_due = None  # the next pass reports it; just wait the usual interval
        wait = self._options.poll_seconds
        if next_due is not None:
            wait = min(wait, max(0.0, next_due - self._clock()))
        with anyio.move_on_after(wait):
            await self._wake.wait()
        self._wake = anyio.Event()

    # -- sends --------------------------------------------------------------------------------

    async def _send_batch(self) -> int:
        options = self._options
        claimed = await anyio.to_thread.run_sync(
            lambda: self._store.claim_sends(self.owner, limit=options.batch_size, lease_seconds=options.lease_seconds)
        )
        if not claimed:
            return 0
        # In claim order, one at a time: the loop guard must see the earlier sends of this batch.
        to_read = []
        for job in claimed:
            if job.first_attempt_at is None:
                # The loop guard is for events Salesforce fires; a person's explicit send is not a loop.
                cooldown = options.loop_guard_seconds if job.source == "outbound_message" else 0.0
                guard = partial(self._store.start_attempt, cooldown=cooldown, owner=self.owner)
                recent = await anyio.to_thread.run_sync(guard, job.id, job.ticket_id)
                if recent is not None:
                    minutes = math.ceil(options.loop_guard_seconds / 60)
                    reason = (
                        f"Skipped: send {recent} for this Case was attempted less than {minutes} minute(s) ago, "
                        "so this event (often fired by the bridge's own update of the Case) is not texted again."
                    )
                    # Writing this back would update the Case and could fire the rule once more.
                    logger.info(
                        "Send %s for ticket %s: skipped by the loop guard (send %s)", job.id, job.ticket_id, recent
                    )
                    await self._finish(job, Outcome(status="skipped", reason=reason, write_back=False))
                    continue
            to_read.append(job)
        if not to_read:
            return len(claimed)

        tickets = await self._read_tickets(to_read)
        if tickets is None:
            return len(claimed)
        ready: list[tuple[ClaimedSend, SmsRequest]] = []
        for job in to_read:
            ticket = tickets.get(job.ticket_id)
            if ticket is None:
                reason = "The Case was not found in Salesforce (deleted, or not visible to the bridge's user)."
                await self._finish(job, Outcome(status="failed", reason=reason, write_back=False))
                continue
            mapped = self._mapper.map(ticket, job.overrides)
            if isinstance(mapped, Outcome):
                await self._finish(job, mapped)
            else:
                ready.append((job, mapped))

        limit = anyio.CapacityLimiter(options.max_concurrency)
        async with anyio.create_task_group() as group:
            for job, request in ready:
                group.start_soon(self._send_limited, limit, job, request)
        return len(claimed)

    async def _read_tickets(self, jobs: list[ClaimedSend]) -> dict[str, Ticket] | None:
        ids = sorted({job.ticket_id for job in jobs})
        try:
            return await anyio.to_thread.run_sync(lambda: self._gateway.read_tickets(ids, self._mapper.fields))
        except SalesforceRequestError as exc:
            # Most often a template or phone field that does not exist on Case: the same query
            # gets the same answer, so the sends fail with the reason (and can be re-queued).
            logger.error("Reading %d Case(s) failed: %s", len(ids), exc)
            for job in jobs:
                await self._finish(job, Outcome(status="failed", reason=str(exc)))
        except SalesforceError as exc:
            logger.warning("Reading %d Case(s) failed, will retry: %s", len(ids), exc)
            # One delay for the whole batch, so that the retry is again a single query.
            wait = _backoff.delay(self._clock() - min(j.retrying_since for j in jobs), rng=self._rng)
            for job in jobs:
                await self._retry_or_give_up(job, str(exc), reached=False, wait=wait)
        return None

    async def _send_limited(self, limit: anyio.CapacityLimiter, job: ClaimedSend, request: SmsRequest) -> None:
        async with limit:
            with about_send(job.id):  # this task's log lines carry the send id
                try:
                    await self._send_one(job, request)
                except StoreUnavailable as exc:
                    # Its lease runs out and it is taken up again, following the ambiguous-outcome rule.
                    logger.warning("Send %s could not be recorded (%s); it will be taken up again", job.id, exc)

    async def _send_one(self, job: ClaimedSend, request: SmsRequest) -> None:
        if self._stopping:
            return  # given back to the queue when the worker stops
        await self._limiter.acquire()
        if self._stopping:
            return
        self.alive_at = time.monotonic()
        lease = self._options.ccai_timeout + self._options.lease_seconds
        marked = await anyio.to_thread.run_sync(
            lambda: self._store.mark_inflight(job.id, owner=self.owner, lease_seconds=lease)
        )
        if not marked:
            logger.warning("Send %s was taken over by another worker; not sending it from here", job.id)
            return
        hint = mask(request.end_user_number)
        try:
            chat = await self._ccai.send(request)
        except CCAIRejected as exc:
            if job.may_have_sent and is_active_session_refusal(exc):
                reason = (
                    "CCAI Platform says the customer already has an active SMS session. An earlier attempt of this "
                    "send got no answer, so it most likely reached the customer; it was not sent again."
                )
                outcome = Outcome(status="unknown", reason=reason, message=request.message, end_user_hint=hint)
            else:
                outcome = Outcome(status="failed", reason=exc.message, message=request.message, end_user_hint=hint)
        except CCAIUnavailable as exc:
            if exc.throttled:
                pause = exc.retry_after if exc.retry_after is not None else 1.0
                await self._limiter.pause(pause)
                logger.warning("CCAI rate-limited send %s; pausing sends for %.1f s", job.id, pause)
                self._metrics.retries.labels("ccai_throttled").inc()
                await self._requeue(job, self._clock() + pause, exc.reason, job.may_have_sent, refund=True)
                return
            await self._retry_or_give_up(job, exc.reason, reached=exc.reached, retry_after=exc.retry_after)
            return
        except CCAIBadResponse as exc:
            outcome = Outcome(status="unknown", reason=str(exc), message=request.message, end_user_hint=hint)
        else:
            if job.may_have_sent:
                logger.info("Send %s succeeded on a retry after an unanswered attempt; CCAI had no session", job.id)
            outcome = Outcome(status="sent", chat_id=chat.id, message=request.message, end_user_hint=hint)
        logger.info("Send %s for ticket %s: %s", job.id, job.ticket_id, outcome.status)
        await self._finish(job, outcome)

    async def _retry_or_give_up(
        self,
        job: ClaimedSend,
        reason: str,
        *,
        reached: bool,
        retry_after: float | None = None,
        wait: float | None = None,
    ) -> None:
        now = self._clock()
        may_have_sent = job.may_have_sent or reached
        elapsed = now - job.retrying_since
        if elapsed < self._options.ccai_retry_for:
            wait = max(retry_after or 0.0, wait if wait is not None else _backoff.delay(elapsed, rng=self._rng))
            logger.info("Send %s will be retried in %.0f s: %s", job.id, wait, reason)
            self._metrics.retries.labels("unavailable").inc()
            await self._requeue(job, now + wait, reason, may_have_sent)
            return
        minutes = max(1, round(elapsed / 60))
        text = f"Gave up after trying for {minutes} minute(s): {reason}"
        if may_have_sent:
            text += " An earlier attempt got no answer and may have reached the customer."
        await self._finish(job, Outcome(status="unknown" if may_have_sent else "failed", reason=text))

    async def _requeue(
        self, job: ClaimedSend, not_before: float, reason: str, may_have_sent: bool, *, refund: bool = False
    ) -> None:
        await anyio.to_thread.run_sync(
            lambda: self._store.requeue(
                job.id,
                owner=self.owner,
                not_before=not_before,
                reason=reason,
                may_have_sent=may_have_sent,
                refund=refund,
            )
        )

    async def _finish(self, job: ClaimedSend, outcome: Outcome) -> None:
        # An SMS may already be out: keep trying to record its outcome through a short store outage
        # (a database restart), rather than leave the send to be retaken as "possibly delivered".
        deadline = self._clock() + self._options.lease_seconds
        while True:
            try:
                recorded = await anyio.to_thread.run_sync(
                    lambda: self._store.finish(job.id, outcome, owner=self.owner, create_task=self._options.create_task)
                )
                break
            except StoreUnavailable:
                if self._clock() >= deadline:
                    raise
                logger.warning("Store unavailable while recording send %s; trying again", job.id)
                await anyio.sleep(1.0)
        if recorded:
            self._metrics.sends_finished.labels(outcome.status).inc()
        else:
            logger.warning("Send %s was taken over by another worker before its outcome was recorded", job.id)
