"""Long-running inputs: a stream the bridge holds open (a CRM's event stream), run by the worker
beside its passes, by one process at a time.

Each input runs under a singleton lease in the store (``input:<name>``, on the database's clock).
The holder renews it every quarter of ``lease_seconds``; the other workers ask for it as often, so
when the holder dies (killed, frozen, cut off from the store) another takes over within about
``lease_seconds`` plus a quarter. A holder that learns it lost the lease (it was frozen, and another
took over) stops its input at once: two processes never read the same stream. An input that ends,
or fails, is started again after a delay that grows while it keeps failing; stopping the worker
gives the lease back, so another process takes over without waiting for it to run out.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import anyio
import anyio.to_thread

from bridge import _backoff
from bridge.errors import StoreError
from bridge.model import StreamLease
from bridge.store.status import StatusBoard

logger = logging.getLogger(__name__)

Input = Callable[[], Awaitable[None]]


@dataclass(frozen=True)
class InputOptions:
    lease_seconds: float = 20.0
    # The first restart after a failure; later ones wait longer (bridge._backoff).
    restart_seconds: float = 2.0
    # A failure after at least this long running counts as the first again: the input was working.
    healthy_after_seconds: float = 60.0


class InputRunner:
    """Runs one input for ``owner`` (a worker's id) whenever it holds the input's lease."""

    def __init__(
        self,
        name: str,
        run: Input,
        *,
        owner: str,
        board: StatusBoard,
        options: InputOptions,
        rng: random.Random | None = None,
    ) -> None:
        self.name = name
        self.lease = StreamLease.of_input(name, owner).name
        self._run = run
        self._owner = owner
        self._board = board
        self._options = options
        self._rng = rng or random.Random()
        self._failures = 0

    async def run_forever(self) -> None:
        """Until cancelled: wait for the lease, run the input while it is held, start it again."""
        period = self._options.lease_seconds / 4
        while True:
            if await self._take():
                await self._hold_and_run()
                restart = self._options.restart_seconds
                wait = (
                    _backoff.after_attempts(self._failures, rng=self._rng, base=restart) if self._failures else period
                )
            else:
                wait = period
            await anyio.sleep(wait)

    async def release(self) -> None:
        """Give the lease back (a clean stop): another process takes the input over at once."""
        try:
            await anyio.to_thread.run_sync(self._board.release_lease, self.lease, self._owner)
        except StoreError as exc:
            logger.warning("Input %s: could not give its lease back (%s); it runs out on its own", self.name, exc)

    async def _take(self) -> bool:
        seconds = self._options.lease_seconds
        try:
            return await anyio.to_thread.run_sync(
                lambda: self._board.take_lease(self.lease, self._owner, seconds=seconds)
            )
        except StoreError as exc:
            logger.warning("Input %s: the store is unavailable (%s); trying again shortly", self.name, exc)
            return False

    async def _hold_and_run(self) -> None:
        logger.info("Input %s started here (worker %s)", self.name, self._owner)
        started = time.monotonic()
        async with anyio.create_task_group() as group:
            group.start_soon(self._keep, group.cancel_scope)
            try:
                await self._run()
            except Exception as exc:
                # An input's failure must not stop the worker: it is started again, later.
                ran = time.monotonic() - started
                self._failures = 1 if ran >= self._options.healthy_after_seconds else self._failures + 1
                logger.warning(
                    "Input %s failed after %.0f s (%s); starting it again", self.name, ran, type(exc).__name__
                )
            else:
                self._failures = 0
                logger.info("Input %s ended; starting it again", self.name)
            group.cancel_scope.cancel()

    async def _keep(self, scope: anyio.CancelScope) -> None:
        """Renew the lease while the input runs; stop the input as soon as the lease may be another's."""
        seconds = self._options.lease_seconds
        held_until = time.monotonic() + seconds
        while True:
            await anyio.sleep(seconds / 4)
            try:
                held = await anyio.to_thread.run_sync(
                    lambda: self._board.take_lease(self.lease, self._owner, seconds=seconds)
                )
            except StoreError as exc:
                # Not renewed: by this host's clock the lease ends at held_until; stop before then.
                if time.monotonic() >= held_until - seconds / 4:
                    logger.warning("Input %s stopped: its lease could not be renewed (%s)", self.name, exc)
                    scope.cancel()
                    return
                continue
            if not held:
                logger.warning("Input %s stopped: another worker holds its lease now", self.name)
                scope.cancel()
                return
            held_until = time.monotonic() + seconds
