"""Retry delays that grow with how long something has been failing."""

from __future__ import annotations

import random

BASE_SECONDS = 2.0
CAP_SECONDS = 300.0


def after_attempts(attempts: int, *, rng: random.Random) -> float:
    """:func:`delay` for what counts its failed attempts instead of timing them: the same schedule,
    since ``2 ** attempts`` seconds is about how long this schedule has been failing by then."""
    return delay(2.0 ** min(attempts, 9), rng=rng)


def delay(elapsed: float, *, rng: random.Random, base: float = BASE_SECONDS, cap: float = CAP_SECONDS) -> float:
    """Wait about as long again as we have already been trying: exponential growth without a
    stored counter. Jitter (50-100 %) keeps many retries from landing together.
    """
    return min(cap, max(base, elapsed)) * rng.uniform(0.5, 1.0)
