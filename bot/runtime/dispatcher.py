"""Which process talks to DashScope: the only one (SQLite), or the lease holder of a cluster.

On SQLite the process dispatches from its start, as it always has. On PostgreSQL every process
accepts interactions and writes jobs, and one of them, the holder of the dispatcher's lease
(`bot.storage.cluster.Lease`), submits, polls, delivers and edits status messages. The others
are standbys: they hand each accepted job (and each cancel of a submitted task) to the
dispatcher by a notification, and try for the lease every half second. When the dispatcher's
process dies its lease goes with its connection; a standby takes it, recovers from the rows
exactly as a restart does, and listens. A dispatcher that loses its lease (its connection
fails) stops at once and calls `on_lost` (the bot then exits, to come back as a standby); its
writes in flight are refused by the fence.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Callable

from bot.dispatch.engine import Engine
from bot.storage.cluster import Lease, listen, notify, notify_in
from bot.storage.db import Conn, Database
from bot.storage.postgres import PostgresDatabase

log = logging.getLogger(__name__)

SWEEP_INTERVAL = 15.0  # seconds between the dispatcher's looks for jobs no notification brought


def holder_name() -> str:
    """This process, as the lease row names its holder."""
    return f"{socket.gethostname()}:{os.getpid()}"


class NotifyHandover:
    """A standby's way to the dispatcher: notifications, delivered when they commit."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def job_queued(self, job_id: int) -> None:
        await self.db.write(self.queued_in, job_id)

    def queued_in(self, conn: Conn, job_id: int) -> None:
        notify_in(conn, f"queued:{job_id}")

    async def cancel(self, job_id: int, user_id: int, moderator: bool) -> None:
        await notify(self.db, f"cancel:{job_id}:{user_id}:{int(moderator)}")


class Dispatch:
    """Starts and stops this process's part: dispatching alone, or in a cluster by lease."""

    def __init__(self, engine: Engine, db: Database, lease: Lease | None) -> None:
        self.engine = engine
        self.db = db
        self.lease = lease
        self.on_lost: Callable[[], None] | None = None
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def role(self) -> str:
        """ "dispatcher" or "standby" in a cluster; "single" on SQLite."""
        if self.lease is None:
            return "single"
        return "dispatcher" if self.lease.held and self.engine.dispatching else "standby"

    def lease_age(self) -> float | None:
        """Seconds since this process took the lease, None when it does not hold it."""
        if self.lease is None or not self.lease.held or self.lease.acquired_at is None:
            return None
        return max(0.0, self.lease.clock() - self.lease.acquired_at)

    async def start(self) -> None:
        if self.lease is None:
            await self.engine.start()
            return
        self._tasks.append(asyncio.create_task(self._run(), name="dispatch-lease"))

    async def _run(self) -> None:
        assert self.lease is not None and isinstance(self.db, PostgresDatabase)
        log.info("standby: waiting for the dispatcher's lease")
        if not await self.lease.acquire(self._stop):
            return
        await self.engine.start()
        self._tasks.append(
            asyncio.create_task(
                listen(self.db, self._handle, self._adopt), name="dispatch-listener"
            )
        )
        self._tasks.append(asyncio.create_task(self._sweep(), name="dispatch-sweep"))
        await self.lease.keep()  # returns when the lease is lost
        if self._stop.is_set():
            return
        log.error("the dispatcher's lease is lost: stopping dispatching in this process")
        await self.engine.stop(grace=0)
        if self.on_lost is not None:
            self.on_lost()

    async def _adopt(self) -> None:
        adopted = await self.engine.adopt_queued()
        if adopted:
            log.info("dispatcher: took %d queued job(s) from the rows", adopted)

    async def _sweep(self) -> None:
        """A safety net: a job whose notification was lost still runs, `SWEEP_INTERVAL` late."""
        while True:
            await asyncio.sleep(SWEEP_INTERVAL)
            await self._adopt()

    async def _handle(self, payload: str) -> None:
        kind, _, rest = payload.partition(":")
        if kind == "queued":
            await self.engine.adopt_one(int(rest))
        elif kind == "cancel":
            job_id, user_id, moderator = (int(part) for part in rest.split(":"))
            outcome = await self.engine.cancel(job_id, user_id, moderator=bool(moderator))
            log.info("job %s: forwarded cancel: %s", job_id, outcome.key)
        else:
            log.warning("dispatcher: unknown notification %r", payload)

    async def stop(self) -> None:
        self._stop.set()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        await self.engine.stop()
        if self.lease is not None:
            await self.lease.release()
