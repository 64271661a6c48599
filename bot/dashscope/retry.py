"""Backoff with jitter and Retry-After parsing."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import httpx

from bot.dashscope import constants


@dataclass(frozen=True)
class RetryPolicy:
    max_retries: int = constants.MAX_RETRIES
    initial: float = constants.BACKOFF_INITIAL
    maximum: float = constants.BACKOFF_MAX
    retry_after_max: float = constants.RETRY_AFTER_MAX

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait before retry number `attempt` (0-based).

        A server's Retry-After wins when given; otherwise exponential backoff with "equal
        jitter" (half fixed, half random) so many clients do not retry in step.
        """
        if retry_after is not None:
            return max(0.0, retry_after)
        ceiling = min(self.maximum, self.initial * (2**attempt))
        return ceiling / 2 + random.uniform(0, ceiling / 2)


NO_RETRIES = RetryPolicy(max_retries=0)


def retry_after_seconds(headers: httpx.Headers, now: datetime | None = None) -> float | None:
    """Read `retry-after-ms` or `Retry-After` (seconds or an HTTP date)."""
    raw_ms = headers.get("retry-after-ms")
    if raw_ms:
        try:
            return max(0.0, float(raw_ms) / 1000)
        except ValueError:
            pass
    raw = headers.get("retry-after")
    if not raw:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())
