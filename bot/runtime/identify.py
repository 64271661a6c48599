"""The identify gate: gateway sessions start one per bucket per 5 s, across every process.

Discord lets a bot start (IDENTIFY) up to `max_concurrency` sessions per 5 s: shard `s` belongs
to bucket `s % max_concurrency`, and each bucket may start one session per 5 s. discord.py
spaces the shards of one process, but processes know nothing of each other; each waits on a
gate before identifying. `LocalIdentifyGate` serves one process (SQLite); a gate shared through
the database (a lock per bucket and the time of its last identify) serves several.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Protocol

# Discord's spacing of two identifies in one bucket.
IDENTIFY_INTERVAL = 5.0


def identify_bucket(shard_id: int, max_concurrency: int) -> int:
    return shard_id % max(1, max_concurrency)


class IdentifyGate(Protocol):
    async def wait_turn(self, shard_id: int, max_concurrency: int) -> None:
        """Return when the shard may IDENTIFY: its bucket's last identify, by any process, was
        at least the interval ago. Returning takes the turn (the caller identifies next)."""


class LocalIdentifyGate:
    """The gate of one process: per bucket, a lock and the time of its last turn."""

    def __init__(
        self, interval: float = IDENTIFY_INTERVAL, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.interval = interval
        self._clock = clock
        self._locks: dict[int, asyncio.Lock] = {}
        self._last: dict[int, float] = {}

    async def wait_turn(self, shard_id: int, max_concurrency: int) -> None:
        bucket = identify_bucket(shard_id, max_concurrency)
        async with self._locks.setdefault(bucket, asyncio.Lock()):
            last = self._last.get(bucket)
            if last is not None:
                # Pacing, not synchronisation: Discord counts time, so the gate waits it out.
                await asyncio.sleep(max(0.0, last + self.interval - self._clock()))
            self._last[bucket] = self._clock()
