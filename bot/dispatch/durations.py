"""Task durations learned per model and n, and per kind where one model does several (an
upscale and a vary by wanx2.1-imageedit) or a kind's tasks differ (a video's seconds and
resolution: `Job.timing_kind`): when a task is likely done, and when it is overdue."""

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
# A video (UNCONFIRMED, docs: "1 to 5 minutes"): a minute, plus more per second of video and
# per pixel. It is not worth asking about before half of that.
VIDEO_KINDS = ("animate", "video")
VIDEO_BASE = 60.0
VIDEO_PER_SECOND = 20.0
RESOLUTION_WEIGHT = {"480P": 0.7, "720P": 1.0, "1080P": 1.6}


def prior_mean(kind: str) -> float:
    """What a task of this (timing) kind takes before anything is learned, in seconds."""
    base, _, detail = kind.partition(":")
    if base in VIDEO_KINDS:
        seconds, _, resolution = detail.partition(":")
        length = float(seconds) if seconds.isdigit() else 5.0
        return VIDEO_BASE + VIDEO_PER_SECOND * length * RESOLUTION_WEIGHT.get(resolution, 1.0)
    return PRIOR_MEAN.get(base, 30.0)


def prior_low(kind: str | None) -> float:
    """The soonest a task of this kind is worth asking about before anything is learned."""
    if kind and kind.partition(":")[0] in VIDEO_KINDS:
        return prior_mean(kind) / 2
    return PRIOR_LOW


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
        if kind and kind.partition(":")[0] in VIDEO_KINDS:
            return own  # the model's other lengths and resolutions say little about this one
        if own is not None and own.count >= TRUSTED:
            return own
        return self._stats.get((model, n, None))

    def expected(self, model: str, n: int, kind: str) -> float:
        stats = self._get(model, n, kind)
        return stats.mean if stats and stats.count else prior_mean(kind)

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
        return prior_low(kind)

    def latest(self, model: str, n: int, kind: str) -> float:
        """Past this, a task is overdue: worth asking about directly."""
        return self.expected(model, n, kind) + 3 * self.spread(model, n, kind)
