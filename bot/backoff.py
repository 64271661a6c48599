"""The one rule for waiting before a retry, used by the DashScope client and the job engine.

Each caller keeps its own `Backoff` (where the waits start and where they stop growing); the rule
is the same everywhere: a server's Retry-After wins when given, otherwise the wait doubles per
attempt up to the cap, half of it fixed and half random ("equal jitter") so that many clients
failing together do not retry in step.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

# 2**60 times any sensible first wait is past any cap; the bound keeps a long failure streak
# from overflowing a float.
_MAX_DOUBLINGS = 60


@dataclass(frozen=True)
class Backoff:
    initial: float  # the wait's ceiling before the first retry, in seconds
    cap: float  # the ceiling never grows past this

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait before retry number `attempt` (0-based): `retry_after` when the server
        gave one, else a random wait in [ceiling / 2, ceiling], ceiling = min(cap, initial·2^attempt).
        """
        if retry_after is not None:
            return max(0.0, retry_after)
        ceiling = min(self.cap, self.initial * 2 ** min(attempt, _MAX_DOUBLINGS))
        return ceiling / 2 + random.uniform(0, ceiling / 2)
