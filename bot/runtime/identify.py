"""The identify gate: gateway sessions start one per bucket per 5 s, across every process.

Discord lets a bot start (IDENTIFY) up to `max_concurrency` sessions per 5 s: shard `s` belongs
to bucket `s % max_concurrency`, and each bucket may start one session per 5 s. discord.py
spaces the shards of one process, but processes know nothing of each other; each waits on a
gate before identifying. `LocalIdentifyGate` serves one process (SQLite); `DatabaseIdentifyGate`
serves a cluster: the time of each bucket's last identify is a row in PostgreSQL, taken under
the bucket's lock (`bot.storage.cluster.take_identify_turn`), on the wall clock every machine
shares.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Protocol

from bot.storage.cluster import take_identify_turn
from bot.storage.db import Database

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


class DatabaseIdentifyGate:
    """The gate of the processes sharing one PostgreSQL database."""

    def __init__(
        self,
        db: Database,
        interval: float = IDENTIFY_INTERVAL,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.db = db
        self.interval = interval
        self._clock = clock

    async def wait_turn(self, shard_id: int, max_concurrency: int) -> None:
        bucket = identify_bucket(shard_id, max_concurrency)
        while True:
            wait = await self.db.write(take_identify_turn, bucket, self.interval, self._clock())
            if wait <= 0:
                return
            await asyncio.sleep(wait)  # pacing: another process identified in this bucket
