"""Retry delays that grow with how long something has been failing."""

from __future__ import annotations

import random

BASE_SECONDS = 2.0
CAP_SECONDS = 300.0


def after_attempts(attempts: int, *, rng: random.Random, base: float = BASE_SECONDS) -> float:
    """:func:`delay` for what counts its failed attempts instead of timing them: the same schedule,
    since ``base * 2 ** attempts / 2`` seconds is about how long it has been failing by then."""
    return delay(base / 2 * 2.0 ** min(attempts, 9), rng=rng, base=base)


def delay(elapsed: float, *, rng: random.Random, base: float = BASE_SECONDS, cap: float = CAP_SECONDS) -> float:
    """Wait about as long again as we have already been trying: exponential growth without a
    stored counter. Jitter (50-100 %) keeps many retries from landing together.
    """
    return min(cap, max(base, elapsed)) * rng.uniform(0.5, 1.0)
