"""Time that tests move by hand."""

from __future__ import annotations


class Clock:
    """A clock tests move by hand (seconds since the epoch)."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    async def sleep(self, seconds: float) -> None:
        """An ``anyio.sleep`` stand-in that moves this clock instead of waiting."""
        self.now += seconds
