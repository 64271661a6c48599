"""A one-second sliding window: the service's RPS/QPS limits, and the peak rate the state reports."""

from __future__ import annotations

from collections import deque


class SlidingWindow:
    def __init__(self, seconds: float = 1.0) -> None:
        self.seconds = seconds
        self._times: deque[float] = deque()

    def _trim(self, now: float) -> None:
        while self._times and self._times[0] <= now - self.seconds:
            self._times.popleft()

    def count(self, now: float) -> int:
        self._trim(now)
        return len(self._times)

    def try_acquire(self, now: float, limit: int) -> bool:
        """Record a hit if fewer than `limit` fell in the window; rejected hits leave no trace."""
        if self.count(now) >= limit:
            return False
        self._times.append(now)
        return True

    def hit(self, now: float) -> int:
        """Record a hit unconditionally and return how many the window now holds."""
        self._trim(now)
        self._times.append(now)
        return len(self._times)
