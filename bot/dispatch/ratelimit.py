"""A token bucket: how fast requests may go out (submissions per model, task queries)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


class RateLimiter:
    """A token bucket: `rate` tokens per second, at most `burst` saved up."""

    def __init__(
        self, rate: float, burst: float | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        self.burst = max(1.0, burst if burst is not None else rate)
        self._clock = clock
        self._tokens = self.burst
        self._updated = clock()
        self._lock = asyncio.Lock()

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._updated) * self.rate)
        self._updated = now

    def try_acquire(self) -> float:
        """Take a token if there is one (returns 0), else return the seconds until there is."""
        self._refill()
        if self._tokens >= 1:
            self._tokens -= 1
            return 0.0
        return (1 - self._tokens) / self.rate

    async def acquire(self) -> None:
        async with self._lock:  # first come, first served
            # Tokens arrive with time, not with an event: sleeping until the next one is right.
            while (wait := self.try_acquire()) > 0:  # noqa: ASYNC110
                await asyncio.sleep(wait)
