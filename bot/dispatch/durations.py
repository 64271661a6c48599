"""Task durations learned per model and n, and per kind where one model does several (an
upscale and a vary by wanx2.1-imageedit): when a task is likely done, and when it is overdue."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass
class _Stats:
    count: int = 0
    mean: float = 0.0
    var: float = 0.0
    low: float = math.inf


# Before anything is learned: what the docs say a Wan task takes, in seconds
# (docs/dashscope.md §Tasks).
PRIOR_MEAN = {"text-to-image": 25.0, "edit": 45.0}
PRIOR_LOW = 5.0  # no task has been seen finishing faster than this yet
TRUSTED = 3  # samples before a spread, a shortest time, or a kind's own figures are used


class Durations:
    """Task durations learned per (model, n): an exponentially weighted mean and spread, and the
    shortest seen, used to decide when a task is worth asking about. A kind's own figures
    (model, n, kind) take over from the model's once they have `TRUSTED` samples."""

    def __init__(self, weight: float = 0.2) -> None:
        self.weight = weight
        self._stats: dict[tuple[str, int, str | None], _Stats] = {}

    def observe(self, model: str, n: int, seconds: float, kind: str | None = None) -> None:
        if not math.isfinite(seconds) or seconds < 0:
            return
        for key in ((model, n, None), (model, n, kind)) if kind else ((model, n, None),):
            self._learn(self._stats.setdefault(key, _Stats()), seconds)

    def _learn(self, stats: _Stats, seconds: float) -> None:
        if stats.count == 0:
            stats.mean = seconds
        else:
            delta = seconds - stats.mean
            stats.mean += self.weight * delta
            stats.var = (1 - self.weight) * (stats.var + self.weight * delta * delta)
        stats.count += 1
        stats.low = min(stats.low, seconds)

    def _get(self, model: str, n: int, kind: str | None) -> _Stats | None:
        own = self._stats.get((model, n, kind)) if kind else None
        if own is not None and own.count >= TRUSTED:
            return own
        return self._stats.get((model, n, None))

    def expected(self, model: str, n: int, kind: str) -> float:
        stats = self._get(model, n, kind)
        return stats.mean if stats and stats.count else PRIOR_MEAN.get(kind, 30.0)

    def spread(self, model: str, n: int, kind: str) -> float:
        stats = self._get(model, n, kind)
        if stats and stats.count >= TRUSTED:
            return max(1.0, math.sqrt(stats.var))
        return self.expected(model, n, kind) / 2

    def earliest(self, model: str, n: int, kind: str | None = None) -> float:
        """The soonest a task like this can finish: 80% of the fastest seen (or the prior)."""
        stats = self._get(model, n, kind)
        if stats and stats.count >= TRUSTED:
            return 0.8 * stats.low
        return PRIOR_LOW

    def latest(self, model: str, n: int, kind: str) -> float:
        """Past this, a task is overdue: worth asking about directly."""
        return self.expected(model, n, kind) + 3 * self.spread(model, n, kind)
