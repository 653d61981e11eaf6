"""The worker: a loop of passes (a batch of sends, then a batch of write-backs) and, beside it, a
housekeeping tick (heartbeat and lease renewal, retention purge, CRM API usage), a watch on the
other workers, and the long-running inputs this process holds (:mod:`bridge.inputs`).

The tick runs on its own so that a long pass (a slow CCAI, a slow CRM) never stops the heartbeat:
a live worker's leases are renewed, so its work is never taken over; a worker that stops beating
(hung, cut off) loses its leases within ``BRIDGE_LEASE_SECONDS``, and another takes over. A worker
whose process ended is noticed sooner, by its liveness lock (:mod:`bridge.store.liveness`): its
sends are freed within seconds, without shortening the lease a slow worker relies on.
"""

from __future__ import annotations

import functools
import logging
import os
import random
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import anyio
import anyio.to_thread

from bridge.crm import ApiUsage, CRMGateway, Words
from bridge.errors import BridgeError, StoreUnavailable
from bridge.holdings import Holdings
from bridge.inputs import Input, InputOptions, InputRunner
from bridge.metrics import Metrics
from bridge.store import Store
from bridge.store.status import API_USAGE_KEY, StatusBoard
from bridge.store.wakeups import Listener

logger = logging.getLogger(__name__)

PURGE_EVERY_SECONDS = 3600.0
FORGET_WORKERS_AFTER_SECONDS = 7 * 86400.0
# How often a worker looks for others whose process ended. One is taken for gone when it is seen
# gone twice in a row: a worker whose database session dropped takes its lock again meanwhile.
WATCH_SECONDS = 1.0
# How long one wait for a notification blocks its thread: the longest a stopping worker waits for it.
LISTEN_SECONDS = 1.0

Step = Callable[[], Awaitable[int]]


@dataclass(frozen=True)
class StepContext:
    """What every step of one worker shares: who it is (leases name it), what it has in hand (the
    heartbeat renews only that), whether it is stopping, its counters, its randomness (tests seed
    it) and the CRM's words for what people read."""

    owner: str
    holdings: Holdings
    stopping: Callable[[], bool]
    metrics: Metrics
    rng: random.Random
    words: Words


@dataclass(frozen=True)
class WorkerOptions:
    poll_seconds: float
    lease_seconds: float
    retention_seconds: float
    unhealthy_after: float = 60.0  # /readyz fails when no pass has succeeded for this long
    inputs: InputOptions = field(default_factory=InputOptions)
    # How long a send whose request a gone worker may have sent waits before it is looked up
    # (bridge.departure.settle_after_takeover for a holder that is gone).
    gone_settle_seconds: float = 20.0
    # Listen for the store's announcements of new work (PostgreSQL: sends stored by another process).
    listen: bool = True


class Worker:
    """Runs its steps until stopped. ``id`` names it in leases and in ``bridge status``."""

    def __init__(
        self,
        *,
        store: Store,
        board: StatusBoard,
        gateway: CRMGateway,
        options: WorkerOptions,
        worker_id: str | None = None,
    ) -> None:
        self.id = worker_id or uuid.uuid4().hex  # short and fixed-size: any hostname fits elsewhere
        self.holdings = Holdings()  # what the steps are working on: the heartbeat renews only that
        self._store = store
        self._board = board
        self._gateway = gateway
        self._options = options
        self._steps: list[Step] = []
        self._inputs: list[InputRunner] = []
        self._wake = anyio.Event()
        self._stop = anyio.Event()
        self._last_ok = time.monotonic()
        self._last_error: str | None = None
        self._purge_due = 0.0
        self._reported_usage: ApiUsage | None = None
        self._suspects: set[str] = set()  # workers seen gone on the last look
        self._listener = Listener(store.db) if options.listen and store.db.postgres else None

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def context(self, *, metrics: Metrics, words: Words, rng: random.Random | None = None) -> StepContext:
        """What this worker's steps share."""
        return StepContext(
            owner=self.id,
            holdings=self.holdings,
            stopping=lambda: self.stopping,
            metrics=metrics,
            rng=rng or random.Random(),
            words=words,
        )

    def add_step(self, step: Step) -> None:
        """Steps run in order in every pass; each returns how much it handled."""
        self._steps.append(step)

    def add_input(self, name: str, run: Input) -> None:
        """A long-running input (a stream), run beside the passes while this worker holds its lease:
        one process at a time runs it, another takes over when the holder dies, and it is started
        again when it ends or fails."""
        if any(runner.name == name for runner in self._inputs):
            raise ValueError(f"An input named {name!r} is already added.")
        self._inputs.append(InputRunner(name, run, owner=self.id, board=self._board, options=self._options.inputs))

    def wake(self) -> None:
        """Ask the loop to look for work now (called after new events are stored)."""
        self._wake.set()

    def stop(self) -> None:
        """Stop claiming work at once. Requests under way finish; sends claimed but not started are
        given back to the queue, then :meth:`run` returns. Safe to call from a signal handler."""
        self._stop.set()
        self._wake.set()

    def problem(self) -> str | None:
        """Why this worker is not healthy, for /readyz; None when its passes succeed."""
        silent = time.monotonic() - self._last_ok
        if silent <= self._options.unhealthy_after:
            return None
        if self._last_error:
            return f"the embedded worker's passes have failed for {silent:.0f} s: {self._last_error}"
        return f"the embedded worker has not completed a pass for {silent:.0f} s"

    async def run(self) -> None:
        logger.info("Worker %s started on %s (pid %s)", self.id, socket.gethostname(), os.getpid())
        async with anyio.create_task_group() as group:
            group.start_soon(self._tick_forever)
            group.start_soon(self._watch_forever)
            if self._listener is not None:
                group.start_soon(self._listen_forever, self._listener)
            for runner in self._inputs:
                group.start_soon(runner.run_forever)
            await self._loop()
            group.cancel_scope.cancel()
        await self._say_goodbye()

    async def run_once(self) -> int:
        """One pass of every step. Returns how much was handled."""
        done = 0
        for step in self._steps:
            if self.stopping:
                break
            done += await step()
        return done

    async def _loop(self) -> None:
        while not self.stopping:
            try:
                done = await self.run_once()
            except StoreUnavailable as exc:
                self._failed(f"the store is unavailable ({exc})")
                logger.warning("Worker cannot reach the store (%s); trying again shortly", exc)
                # Start again on connections made afresh, not on pooled ones that may be as dead.
                self._store.db.recycle()
                done = 0
            except Exception as exc:
                # A bug must not stop the worker (nor, through the lifespan, the web server). The
                # sends of the failed pass are no longer in hand: their leases run out and they are
                # taken up again.
                self._failed(f"{type(exc).__name__}: {exc}" if isinstance(exc, BridgeError) else type(exc).__name__)
                logger.exception("A worker pass failed unexpectedly; carrying on")
                done = 0
            else:
                self._last_ok = time.monotonic()
                self._last_error = None
            if done or self.stopping:
                continue
            await self._idle()

    def _failed(self, error: str) -> None:
        self._last_error = error

    async def _idle(self) -> None:
        try:
            due = await anyio.to_thread.run_sync(self._store.sends.seconds_until_due)
        except StoreUnavailable:
            due = None  # the next pass reports it; just wait the usual interval
        wait = self._options.poll_seconds if due is None else min(self._options.poll_seconds, due)
        with anyio.move_on_after(wait):
            await self._wake.wait()
        self._wake = anyio.Event()

    async def _say_goodbye(self) -> None:
        for runner in self._inputs:
            await runner.release()
        try:
            released = await anyio.to_thread.run_sync(self._store.sends.release, self.id)
            await anyio.to_thread.run_sync(self._board.stopped, self.id)
        except StoreUnavailable as exc:
            logger.warning("Worker %s stopped without reaching the store (%s); its leases will run out", self.id, exc)
            return
        finally:
            await anyio.to_thread.run_sync(self._store.liveness.release)
        logger.info("Worker %s stopped; %d unstarted send(s) given back to the queue", self.id, released)

    # -- housekeeping -------------------------------------------------------------------------

    async def _tick_forever(self) -> None:
        """Housekeeping every quarter lease, until the task group is cancelled (after the loop
        ends, so leases stay renewed while the last requests drain)."""
        interval = max(0.5, self._options.lease_seconds / 4)
        while True:
            try:
                await self.tick()
            except StoreUnavailable as exc:
                logger.warning("Worker heartbeat could not reach the store (%s)", exc)
            except Exception:
                logger.exception("Worker housekeeping failed; carrying on")
            await anyio.sleep(interval)

    async def _watch_forever(self) -> None:
        """Look for workers whose process ended, until the task group is cancelled."""
        while True:
            try:
                await self.watch()
            except StoreUnavailable as exc:
                logger.warning("Worker could not look at the other workers (%s)", exc)
            except Exception:
                logger.exception("Looking at the other workers failed; carrying on")
            await anyio.sleep(WATCH_SECONDS)

    async def _listen_forever(self, listener: Listener) -> None:
        """Look for work as soon as another process announces some (see :mod:`bridge.store.wakeups`),
        until the task group is cancelled. The poll stays the safety net: a notification missed while
        the listener reconnects only waits for it."""
        try:
            while True:
                if await anyio.to_thread.run_sync(listener.wait, LISTEN_SECONDS, abandon_on_cancel=True):
                    self.wake()
        finally:
            listener.close()

    async def watch(self) -> None:
        """Hold this process's liveness lock (again, if its session was lost), and free the sends of
        workers whose process ended (seen gone twice in a row)."""
        await anyio.to_thread.run_sync(self._store.liveness.hold, self.id)
        owners = await anyio.to_thread.run_sync(self._store.takeovers.lease_owners)
        gone = await anyio.to_thread.run_sync(self._store.liveness.gone, owners)
        confirmed, self._suspects = gone & self._suspects, gone
        settle = self._options.gone_settle_seconds
        for owner in sorted(confirmed):
            freed = await anyio.to_thread.run_sync(
                functools.partial(self._store.takeovers.from_gone_worker, owner, settle_seconds=settle)
            )
            if freed:
                logger.warning("Worker %s's process has ended: its %d send(s) are taken up now", owner, freed)
                self.wake()

    async def tick(self) -> None:
        """Heartbeat (and lease renewal), then the retention purge and the CRM's API usage when due."""
        ok = self._last_error is None
        await anyio.to_thread.run_sync(
            lambda: self._board.beat(
                self.id, host=socket.gethostname(), pid=os.getpid(), pass_ok=ok, pass_error=self._last_error
            )
        )
        in_hand, writing_back = self.holdings.snapshot()
        await anyio.to_thread.run_sync(
            lambda: self._store.sends.renew(
                self.id,
                sends_in_hand=in_hand,
                writebacks_in_hand=writing_back,
                lease_seconds=self._options.lease_seconds,
            )
        )
        await self._purge()
        await self._report_usage()

    async def _purge(self) -> None:
        """Delete finished sends older than the retention period (see README: Privacy), one batch
        per tick while there is a backlog, then once an hour."""
        if self._options.retention_seconds <= 0 or time.monotonic() < self._purge_due:
            return
        removed = await anyio.to_thread.run_sync(
            lambda: self._store.sends.purge(self._options.retention_seconds, once=True)
        )
        await anyio.to_thread.run_sync(self._board.forget, FORGET_WORKERS_AFTER_SECONDS)
        await anyio.to_thread.run_sync(self._store.generations.forget, FORGET_WORKERS_AFTER_SECONDS)
        await anyio.to_thread.run_sync(self._store.streams.purge)
        if removed:
            logger.info("Purged %d finished send(s) older than the retention period", removed)
        else:
            self._purge_due = time.monotonic() + PURGE_EVERY_SECONDS

    async def _report_usage(self) -> None:
        usage = self._gateway.api_usage()
        if usage is not None and usage != self._reported_usage:
            self._reported_usage = usage
            record = {"used": usage.used, "total": usage.total}
            await anyio.to_thread.run_sync(self._board.put, API_USAGE_KEY, record)
