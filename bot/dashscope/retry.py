"""The client's retry policy and Retry-After parsing; the wait itself is `bot.backoff`'s rule."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import httpx

from bot.backoff import Backoff
from bot.dashscope import constants


@dataclass(frozen=True)
class RetryPolicy:
    max_retries: int = constants.MAX_RETRIES
    backoff: Backoff = constants.BACKOFF
    retry_after_max: float = constants.RETRY_AFTER_MAX


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
