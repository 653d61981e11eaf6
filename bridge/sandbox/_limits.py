"""The simulated tenant's request limit, in the two shapes a real limiter may take."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Literal

RateWindow = Literal["bucket", "sliding"]


@dataclass
class TenantLimit:
    """Admits a tenant's requests at ``rate`` per second, shared by every endpoint.

    ``bucket`` is a token bucket holding one second of requests: bursts up to ``rate``, then
    ``rate`` per second on average. ``sliding`` is stricter: a request is refused when ``rate``
    requests were already admitted in the last 1.0 s, so evenly spaced clients that bunch up by a
    few milliseconds are caught. Only admitted requests count, as refused ones never reach the
    service behind the limiter.
    """

    _tokens: float | None = None
    _refilled: float = 0.0
    _admitted: deque[float] = field(default_factory=deque)

    def admit(self, now: float, rate: float, window: RateWindow) -> bool:
        if window == "sliding":
            return self._slide(now, rate)
        return self._take_token(now, rate)

    def _take_token(self, now: float, rate: float) -> bool:
        # The bucket starts full, as a tenant that sent nothing for a while has its whole second.
        tokens = rate if self._tokens is None else self._tokens + (now - self._refilled) * rate
        self._tokens, self._refilled = min(rate, tokens), now
        if self._tokens >= 1:
            self._tokens -= 1
            return True
        return False

    def _slide(self, now: float, rate: float) -> bool:
        while self._admitted and self._admitted[0] <= now - 1.0:
            self._admitted.popleft()
        if len(self._admitted) >= rate:
            return False
        self._admitted.append(now)
        return True
