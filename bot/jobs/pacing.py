"""Rate limits and learned task durations: when to send, and when a task is likely done."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from dataclasses import dataclass


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


@dataclass
class _Stats:
    count: int = 0
    mean: float = 0.0
    var: float = 0.0
    low: float = math.inf


# Before anything is learned: what the docs say a Wan task takes (seconds).
PRIOR_MEAN = {"text-to-image": 25.0, "edit": 45.0}
PRIOR_LOW = 5.0  # no task has been seen finishing faster than this yet


class Durations:
    """Task durations learned per (model, n): an exponentially weighted mean and spread, and the
    shortest seen, used to decide when a task is worth asking about."""

    def __init__(self, weight: float = 0.2) -> None:
        self.weight = weight
        self._stats: dict[tuple[str, int], _Stats] = {}

    def observe(self, model: str, n: int, seconds: float) -> None:
        if not math.isfinite(seconds) or seconds < 0:
            return
        stats = self._stats.setdefault((model, n), _Stats())
        if stats.count == 0:
            stats.mean = seconds
        else:
            delta = seconds - stats.mean
            stats.mean += self.weight * delta
            stats.var = (1 - self.weight) * (stats.var + self.weight * delta * delta)
        stats.count += 1
        stats.low = min(stats.low, seconds)

    def expected(self, model: str, n: int, kind: str) -> float:
        stats = self._stats.get((model, n))
        return stats.mean if stats and stats.count else PRIOR_MEAN.get(kind, 30.0)

    def spread(self, model: str, n: int, kind: str) -> float:
        stats = self._stats.get((model, n))
        if stats and stats.count >= 3:
            return max(1.0, math.sqrt(stats.var))
        return self.expected(model, n, kind) / 2

    def earliest(self, model: str, n: int) -> float:
        """The soonest a task like this can finish: 80% of the fastest seen (or the prior)."""
        stats = self._stats.get((model, n))
        if stats and stats.count >= 3:
            return 0.8 * stats.low
        return PRIOR_LOW

    def latest(self, model: str, n: int, kind: str) -> float:
        """Past this, a task is overdue: worth asking about directly."""
        return self.expected(model, n, kind) + 3 * self.spread(model, n, kind)


async def wait_for_event(event: asyncio.Event, timeout: float) -> bool:
    """Wait until `event` is set or `timeout` seconds pass; True if it was set.

    `asyncio.timeout`, not `asyncio.wait_for`: on Python 3.11 `wait_for` can swallow a
    cancellation that arrives just as the event is set, and a loop built on it never stops.
    """
    if timeout <= 0:
        return event.is_set()
    try:
        async with asyncio.timeout(timeout):
            await event.wait()
    except TimeoutError:
        return False
    return True
