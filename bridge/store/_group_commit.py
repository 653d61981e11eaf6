"""Group commit: concurrent ingests share one transaction, so one fsync acknowledges them all.

A door acks only after its events are durable, and on SQLite (and PostgreSQL) a durable commit
costs a disk flush that dwarfs the insert itself. Callers arriving while a commit is under way
queue; the next one to find the store free commits everything queued in one transaction, then
tells each caller its own outcome. No caller returns before the commit that holds its rows, so
durability is exactly as before; a caller waits at most for the commit in progress and its own.

A transaction the store refuses (:class:`StoreRejected`: one caller's data) is tried again caller
by caller, so one bad message fails alone.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from bridge.errors import StoreRejected

T = TypeVar("T")


@dataclass
class _Caller(Generic[T]):
    items: Sequence[T]
    done: bool = False
    result: int = 0
    error: BaseException | None = None


@dataclass
class GroupCommit(Generic[T]):
    """``commit(groups)`` stores every group in one transaction and returns each group's count."""

    commit: Callable[[list[Sequence[T]]], list[int]]
    _ready: threading.Condition = field(default_factory=threading.Condition)
    _queue: list[_Caller[T]] = field(default_factory=list)
    _busy: bool = False

    def submit(self, items: Sequence[T]) -> int:
        me = _Caller(items)
        with self._ready:
            self._queue.append(me)
            while self._busy and not me.done:
                self._ready.wait()
            if not me.done:
                self._busy = True
                batch, self._queue = self._queue, []
        if not me.done:
            try:
                self._commit(batch)
            finally:
                with self._ready:
                    self._busy = False
                    self._ready.notify_all()
        if me.error is not None:
            raise me.error
        return me.result

    def _commit(self, batch: list[_Caller[T]]) -> None:
        try:
            counts = self.commit([c.items for c in batch])
        except StoreRejected as exc:
            if len(batch) == 1:
                _settle(batch[0], error=exc)
                return
            for caller in batch:  # one caller's data: each alone, so the others still go in
                try:
                    _settle(caller, result=self.commit([caller.items])[0])
                except BaseException as alone:
                    _settle(caller, error=alone)
            return
        except BaseException as exc:
            for caller in batch:
                _settle(caller, error=exc)
            return
        for caller, count in zip(batch, counts, strict=True):
            _settle(caller, result=count)


def _settle(caller: _Caller[T], *, result: int = 0, error: BaseException | None = None) -> None:
    caller.result, caller.error, caller.done = result, error, True
