"""What one worker process has in hand right now: the sends and write-backs a step is working on.

The heartbeat renews the leases of exactly these. A claim that a step let go of without an outcome
(the store went away mid-send, a bug failed the pass) is then no longer renewed: its lease runs out
and another pass, here or elsewhere, takes it up. Renewing every lease the worker id holds would
keep such a claim alive, and its customer waiting, for as long as the process lives.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager


class Holdings:
    """Send ids in hand, for sending and for writing back. Counted, so overlapping holds nest."""

    def __init__(self) -> None:
        self._sends: Counter[int] = Counter()
        self._writebacks: Counter[int] = Counter()

    @contextmanager
    def sends(self, ids: Iterable[int]) -> Iterator[None]:
        with _held(self._sends, ids):
            yield

    @contextmanager
    def writebacks(self, ids: Iterable[int]) -> Iterator[None]:
        with _held(self._writebacks, ids):
            yield

    def snapshot(self) -> tuple[list[int], list[int]]:
        """(sends, write-backs) in hand now, for one renewal."""
        return sorted(self._sends), sorted(self._writebacks)


@contextmanager
def _held(counter: Counter[int], ids: Iterable[int]) -> Iterator[None]:
    held = list(ids)
    counter.update(held)
    try:
        yield
    finally:
        counter.subtract(held)
        for send_id in held:
            if counter[send_id] <= 0:
                del counter[send_id]
