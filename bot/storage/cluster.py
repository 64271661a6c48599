"""Several processes on one PostgreSQL database: the dispatcher's lease, its fence, and the
notifications that carry new jobs to it.

* **The lease** is a session-level advisory lock (`LEASE_LOCK`, one per schema) on a connection
  of its own.
  PostgreSQL releases it the moment that connection ends, so when the dispatcher's process dies
  (its sockets close with it) a standby's next try takes it: `TRY_INTERVAL` plus the time to
  recover from the rows. The holder checks its connection every `CHECK_INTERVAL`; a failed check
  means the lease may be gone, and the holder stops dispatching at once.
* **The fence**: taking the lease raises the epoch in `dispatcher_lease`. Every write of the
  dispatcher (`FencedDatabase`) first reads that row FOR SHARE and refuses (`LeaseLost`) when
  the epoch is not its own, so a dispatcher that lost its lease (a pause, a cut network) cannot
  record a submission, a delivery or a charge again; and a new holder's epoch bump waits for the
  old holder's writes in flight. Calls to DashScope and Discord are preceded by such a write.
* **Notifications** (`NOTIFY wanbot_jobs`): a process that accepts a job tells the dispatcher
  at once, in the transaction's commit; a standby forwards a cancel the same way. The channel
  is the database's, so each payload names its schema and listeners take only their own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Concatenate, ParamSpec, TypeVar

import psycopg

from bot.backoff import Backoff
from bot.storage.db import Conn, Database
from bot.storage.postgres import PostgresDatabase, safe_name

log = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")

# The lease's advisory lock. PostgreSQL keys advisory locks per database, and the lease row is
# per schema, so the key is the schema's own: bots in two schemas of one database each have
# their dispatcher.
LEASE_LOCK = "hashtextextended('wanlease:' || current_schema(), 0)"
CHANNEL = "wanbot_jobs"
TRY_INTERVAL = 0.5  # seconds between a standby's tries for the lease
CHECK_INTERVAL = 1.0  # seconds between the holder's checks of its lease connection
CHECK_TIMEOUT = 2.0  # a check that takes longer counts as failed
RECONNECT = Backoff(initial=0.5, cap=10.0)  # the listener's reconnects


class LeaseLost(Exception):
    """This process no longer holds the dispatcher's lease: it must not act for the cluster."""


class Lease:
    """The dispatcher's lease, for one process (`holder` names it in the lease row)."""

    def __init__(self, url: str, holder: str, clock: Callable[[], float] = time.time) -> None:
        self._url = url
        self.holder = holder
        self.clock = clock
        self.epoch: int | None = None  # the epoch held, or None: never held (a standby)
        self.acquired_at: float | None = None
        self.lost = False
        self._conn: psycopg.AsyncConnection[Any] | None = None

    def __repr__(self) -> str:
        return f"Lease({safe_name(self._url)}, holder={self.holder!r}, epoch={self.epoch})"

    @property
    def held(self) -> bool:
        return self.epoch is not None and not self.lost

    async def acquire(self, stop: asyncio.Event | None = None) -> bool:
        """Wait until this process holds the lease (True), or `stop` is set (False)."""
        while stop is None or not stop.is_set():
            try:
                if await self._try():
                    return True
            except psycopg.Error as exc:
                log.warning("lease: cannot reach %s (%s)", safe_name(self._url), exc)
                await self._drop()
            if stop is None:
                await asyncio.sleep(TRY_INTERVAL)
            else:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), TRY_INTERVAL)
        return False

    async def _try(self) -> bool:
        if self._conn is None or self._conn.closed:
            self._conn = await psycopg.AsyncConnection.connect(
                self._url,
                autocommit=True,
                keepalives=1,
                keepalives_idle=5,
                keepalives_interval=2,
                keepalives_count=2,
            )
        cursor = await self._conn.execute(f"SELECT pg_try_advisory_lock({LEASE_LOCK})")
        row = await cursor.fetchone()
        if not row or not row[0]:
            return False
        now = self.clock()
        cursor = await self._conn.execute(
            "UPDATE dispatcher_lease SET epoch = epoch + 1, holder = %s, acquired_at = %s"
            " WHERE id = 1 RETURNING epoch",
            (self.holder, now),
        )
        row = await cursor.fetchone()
        assert row is not None
        self.epoch, self.acquired_at, self.lost = int(row[0]), now, False
        log.info("lease: %s is the dispatcher (epoch %d)", self.holder, self.epoch)
        return True

    async def keep(self) -> None:
        """Check the lease connection every `CHECK_INTERVAL`; return when it failed (the lease
        is then marked lost)."""
        while True:
            await asyncio.sleep(CHECK_INTERVAL)
            try:
                assert self._conn is not None
                await asyncio.wait_for(self._conn.execute("SELECT 1"), CHECK_TIMEOUT)
            except (psycopg.Error, TimeoutError, AssertionError) as exc:
                log.error("lease: lost (%s)", exc or type(exc).__name__)
                self.lost = True
                await self._drop()
                return

    def check(self, conn: Conn) -> None:
        """Inside a write: refuse unless the row still carries this process's epoch."""
        if not self.held:
            raise LeaseLost("this process does not hold the dispatcher's lease")
        row = conn.execute("SELECT epoch FROM dispatcher_lease WHERE id = 1 FOR SHARE").fetchone()
        if row is None or int(row[0]) != self.epoch:
            self.lost = True
            raise LeaseLost(f"the lease moved on to epoch {row[0] if row else '?'}")

    async def release(self) -> None:
        self.lost = self.epoch is not None
        await self._drop()

    async def _drop(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(psycopg.Error):
                await self._conn.close()
            self._conn = None


class FencedDatabase(Database):
    """The dispatcher's view of the database: every write first checks the lease (`Lease.check`)
    once this process has held it; before that (a standby) writes pass as they are."""

    def __init__(self, inner: Database, lease: Lease) -> None:
        self.inner = inner
        self.lease = lease
        self.dialect = inner.dialect

    @property
    def name(self) -> str:
        return self.inner.name

    async def write(
        self, fn: Callable[Concatenate[Conn, P], T], /, *args: P.args, **kwargs: P.kwargs
    ) -> T:
        if self.lease.epoch is None:
            return await self.inner.write(fn, *args, **kwargs)
        lease = self.lease

        def fenced(conn: Conn) -> T:
            lease.check(conn)
            return fn(conn, *args, **kwargs)

        return await self.inner.write(fenced)

    async def fetchone(self, sql: str, params: Iterable[Any] = ()) -> Any:
        return await self.inner.fetchone(sql, params)

    async def fetchall(self, sql: str, params: Iterable[Any] = ()) -> list[Any]:
        return await self.inner.fetchall(sql, params)

    async def schema_version(self) -> int:
        return await self.inner.schema_version()

    async def close(self) -> None:
        await self.inner.close()


def notify_in(conn: Conn, payload: str) -> None:
    """Tell the dispatcher, inside the caller's transaction (delivered when it commits)."""
    # Channels are per database: the schema's name goes first, for its own listeners.
    conn.execute("SELECT pg_notify(?, current_schema() || ' ' || ?)", (CHANNEL, payload))


async def notify(db: Database, payload: str) -> None:
    """Tell the dispatcher (delivered when this commits)."""
    await db.write(notify_in, payload)


async def listen(
    db: PostgresDatabase,
    handle: Callable[[str], Awaitable[None]],
    on_connect: Callable[[], Awaitable[None]],
) -> None:
    """Hand every notification on `CHANNEL` from this schema to `handle`, for ever; after each
    (re)connection call `on_connect` first, for whatever was sent while no one listened."""
    failures = 0
    while True:
        try:
            async with await psycopg.AsyncConnection.connect(db.url, autocommit=True) as conn:
                row = await (await conn.execute("SELECT current_schema()")).fetchone()
                schema = row[0] if row else None
                await conn.execute(f"LISTEN {CHANNEL}")
                failures = 0
                await on_connect()
                async for note in conn.notifies():
                    where, _, payload = note.payload.rpartition(" ")
                    if where != schema:  # another schema's bots in this database
                        continue
                    try:
                        await handle(payload)
                    except Exception:  # one bad notification must not stop the listening
                        log.exception("listener: handling %r", note.payload)
        except psycopg.Error as exc:
            delay = RECONNECT.delay(failures)
            failures += 1
            log.warning("listener: %s; reconnecting in %.1f s", exc, delay)
            await asyncio.sleep(delay)


def take_identify_turn(conn: Conn, bucket: int, interval: float, now: float) -> float:
    """Take the bucket's turn to IDENTIFY if its last one, by any process, was at least
    `interval` seconds ago (0.0: taken); else the seconds left to wait. The bucket's lock keeps
    two processes from taking one turn."""
    conn.lock("identify", bucket)
    row = conn.execute("SELECT last_at FROM identify_turns WHERE bucket = ?", (bucket,)).fetchone()
    if row is not None and now - float(row[0]) < interval:
        return interval - (now - float(row[0]))
    conn.execute(
        "INSERT INTO identify_turns (bucket, last_at) VALUES (?, ?)"
        " ON CONFLICT (bucket) DO UPDATE SET last_at = excluded.last_at",
        (bucket, now),
    )
    return 0.0
