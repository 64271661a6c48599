"""A controllable wall clock for the fake Discord.

Real time by default; ``advance()`` adds an offset so a test can jump past Discord's
3-second acknowledgement window or the 15-minute interaction-token lifetime without sleeping.
"""

from __future__ import annotations

import datetime as dt
import time


class FakeClock:
    """Wall-clock seconds (like ``time.time()``) plus an adjustable offset."""

    def __init__(self, offset: float = 0.0) -> None:
        self.offset = float(offset)

    def now(self) -> float:
        return time.time() + self.offset

    def advance(self, seconds: float) -> float:
        """Move the fake time forward (never backward) and return the new time."""
        if seconds < 0:
            raise ValueError("the fake clock only moves forward")
        self.offset += seconds
        return self.now()

    def datetime(self, ts: float | None = None) -> dt.datetime:
        return dt.datetime.fromtimestamp(self.now() if ts is None else ts, dt.UTC)

    def iso(self, ts: float | None = None) -> str:
        """ISO 8601 the way Discord writes it: ``2024-01-02T03:04:05.678000+00:00``."""
        return self.datetime(ts).isoformat(timespec="microseconds")
