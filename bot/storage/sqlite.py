"""The SQLite backend: one aiosqlite connection, WAL, foreign keys, numbered migrations.

Writes are `Database.write(fn)`: the function runs on the connection's thread inside BEGIN
IMMEDIATE (so a read-then-write cannot interleave with another writer), and writes that arrive
together share one COMMIT (group commit). Reads go through `fetchone` / `fetchall`.

Migrations are `bot/storage/migrations/sqlite/NNNN_name.sql`, applied in order, each in one
transaction that also sets `PRAGMA user_version`. A database newer than the code is refused.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

import aiosqlite

from bot.storage import db as base
from bot.storage.db import Conn, Cursor, Database, DatabaseError

log = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")


async def call(
    conn: aiosqlite.Connection,
    fn: Callable[Concatenate[sqlite3.Connection, P], T],
    /,
    *args: P.args,
    **kwargs: P.kwargs,
) -> T:
    """Run `fn(sqlite3_connection, *args)` on the connection's own thread and return its result:
    any number of statements for one round trip between the event loop and that thread (each
    `await conn.execute(...)` is a round trip of its own, ~50-100 us). `fn` must not touch the
    event loop.

    aiosqlite sends every call through `Connection._execute`; it is private but has kept its
    signature since aiosqlite 0.1 (pyproject pins the range this is tested with)."""

    def run() -> T:
        return fn(conn._conn, *args, **kwargs)

    return await conn._execute(run)


async def rows(conn: aiosqlite.Connection, sql: str, params: Iterable[Any] = ()) -> list[Any]:
    """All rows of a query in one round trip to the database thread."""
    return list(await conn.execute_fetchall(sql, tuple(params)))


async def first(conn: aiosqlite.Connection, sql: str, params: Iterable[Any] = ()) -> Any:
    """The first row of a query (or None) in one round trip."""
    found = await conn.execute_fetchall(sql, tuple(params))
    return next(iter(found), None)


class SqliteConn:
    """A `Conn` over the sqlite3 connection, on the database thread. `lock` has nothing to do:
    a write transaction (BEGIN IMMEDIATE) already runs alone."""

    __slots__ = ("raw",)

    def __init__(self, raw: sqlite3.Connection) -> None:
        self.raw = raw

    def execute(self, sql: str, params: Sequence[Any] = (), /) -> Cursor:
        return self.raw.execute(sql, params)

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]], /) -> None:
        self.raw.executemany(sql, rows)

    def lock(self, scope: str, key: int) -> None:
        pass

    def pipeline(self) -> None:
        pass


@dataclass(eq=False)
class _Write:
    """One `Database.write` waiting for its batch."""

    fn: Callable[[Conn], Any]
    future: asyncio.Future[Any]
    result: Any = None
    error: BaseException | None = None


def _run_batch(
    raw: sqlite3.Connection, batch: list[_Write], checkpointer: Checkpointer | None = None
) -> None:
    """On the database thread: every write of the batch in its own savepoint, one COMMIT."""
    conn = SqliteConn(raw)
    try:
        _begin(raw)
        if len(batch) == 1:  # alone in its transaction: no savepoint needed to undo it alone
            only = batch[0]
            try:
                only.result = only.fn(conn)
            except Exception as exc:
                only.error = exc
                _roll_back(raw)  # SQLite may have ended it already (disk full, I/O error)
                return
        else:
            for write in batch:
                raw.execute("SAVEPOINT write")
                try:
                    write.result = write.fn(conn)
                except Exception as exc:
                    if not raw.in_transaction:  # SQLite ended it (disk full, I/O error): the
                        raise  # writes before this one are gone too, so the batch fails whole
                    raw.execute("ROLLBACK TO write")
                    write.error = exc
                raw.execute("RELEASE write")
        raw.execute("COMMIT")
    except BaseException:
        _roll_back(raw)
        raise
    if checkpointer is not None and checkpointer.wal_large:
        try:  # the batch is committed whatever happens here
            busy, frames, copied = raw.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        except sqlite3.Error as exc:
            log.warning("WAL checkpoint after a commit failed: %s", exc)
        else:  # busy: the checkpoint thread is at it; not all copied: try after the next batch
            checkpointer.wal_large = bool(busy) or copied < frames


def _begin(raw: sqlite3.Connection) -> None:
    """BEGIN IMMEDIATE, first closing a transaction an earlier failure may have left open (so
    one failure cannot make every later write fail with "transaction within a transaction")."""
    if raw.in_transaction:
        log.error("a write transaction was left open; rolling it back")
        raw.execute("ROLLBACK")
    raw.execute("BEGIN IMMEDIATE")


def _roll_back(raw: sqlite3.Connection) -> None:
    if raw.in_transaction:
        raw.execute("ROLLBACK")


def _forget(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


def _answer_batch(batch: list[_Write], run: asyncio.Future[None]) -> None:
    """In the event loop, once the batch is committed (or failed as a whole)."""
    failure = None if run.cancelled() else run.exception()
    for write in batch:
        if write.future.done():
            continue
        if run.cancelled():
            write.future.cancel()
        elif failure is not None:
            write.future.set_exception(failure)
        elif write.error is not None:
            write.future.set_exception(write.error)
        else:
            write.future.set_result(write.result)


class Checkpointer:
    """Copies the WAL into the database file from a thread and connection of its own.

    SQLite's automatic checkpoint runs inside the COMMIT that crosses 1,000 WAL pages, and takes
    milliseconds (it writes and syncs the database file): every writer waiting behind that
    COMMIT waits too. A PASSIVE checkpoint from another connection never blocks a writer, so
    the bot's connection turns the automatic one off and this thread does the work instead.

    Under writes that never pause, a passive checkpoint alone would let the WAL grow for ever:
    SQLite starts it over only when a write transaction begins on a fully copied WAL, and a new
    commit always lands between this thread's copy and the next write. So past `RESTART_FRAMES`
    this thread raises `wal_large`, and the writer, after its next COMMIT, copies the few frames
    left itself: its next transaction then starts the WAL from the beginning. That costs the
    writer one small checkpoint per ~32 MiB written, instead of SQLite's one per 4 MiB."""

    # Seconds between checkpoints: each ends with an fsync of what it copied, and a short
    # interval keeps that small (at 0.5 s under load, ~35 ms fsyncs stalled the writer's I/O).
    INTERVAL = 0.1
    RESTART_FRAMES = 8192  # WAL frames (pages, 4 KiB each) before a restart: ~32 MiB

    def __init__(self, path: str) -> None:
        self._conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._conn.execute("PRAGMA busy_timeout=5000")
        self._stopped = threading.Event()
        self.wal_large = False  # set here, cleared by the writer once it has copied the rest
        self._thread = threading.Thread(target=self._run, name="wal-checkpoint", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stopped.wait(self.INTERVAL):
            try:
                self.checkpoint()
            except sqlite3.Error as exc:  # busy or I/O: the next round tries again
                log.warning("WAL checkpoint failed: %s", exc)

    def checkpoint(self) -> None:
        _, frames, _ = self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        self.wal_large = frames >= self.RESTART_FRAMES

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join()
        self._conn.close()


class SqliteDatabase(Database):
    dialect = "sqlite"

    def __init__(self, connection: aiosqlite.Connection, path: str) -> None:
        self._conn = connection
        self.path = path
        self._write_lock = asyncio.Lock()
        self._pending: list[_Write] = []
        self._checkpointer: Checkpointer | None = None
        self._drainer: asyncio.Task[None] | None = None

    @property
    def name(self) -> str:
        return self.path

    @classmethod
    async def open(cls, path: str | Path) -> SqliteDatabase:
        """Open (creating if needed) and migrate the database at `path` (":memory:" works)."""
        path = str(path)
        if path != ":memory:":
            try:
                await asyncio.to_thread(Path(path).parent.mkdir, parents=True, exist_ok=True)
            except OSError as exc:
                raise DatabaseError(f"cannot open the database at {path}: {exc}") from None
        try:
            connection = await aiosqlite.connect(path, isolation_level=None)
        except Exception as exc:  # aiosqlite wraps sqlite3 errors of many kinds
            raise DatabaseError(f"cannot open the database at {path}: {exc}") from None
        connection.row_factory = aiosqlite.Row
        db = cls(connection, path)
        try:
            await connection.execute("PRAGMA journal_mode=WAL")
            await connection.execute("PRAGMA foreign_keys=ON")
            await connection.execute("PRAGMA synchronous=NORMAL")
            await connection.execute("PRAGMA busy_timeout=5000")
            await db._migrate()
            if path != ":memory:":
                await connection.execute("PRAGMA wal_autocheckpoint=0")
                db._checkpointer = Checkpointer(path)
        except BaseException:
            await connection.close()
            raise
        return db

    async def close(self) -> None:
        if self._drainer is not None:
            await self._drainer
        if self._checkpointer is not None:
            await asyncio.to_thread(self._checkpointer.stop)
        await self._conn.close()

    async def software(self) -> str:
        return f"SQLite {sqlite3.sqlite_version}"

    async def schema_version(self) -> int:
        async with self._conn.execute("PRAGMA user_version") as cursor:
            row = await cursor.fetchone()
        return int(row[0]) if row else 0

    async def _migrate(self) -> None:
        known = base.migrations("sqlite")
        latest = known[-1][0] if known else 0
        current = await self.schema_version()
        if current > latest:
            raise base.newer_schema(self.path, current, latest, "DATABASE_PATH")
        for version, name, sql in known:
            if version <= current:
                continue
            async with self._write_lock:
                try:
                    # executescript commits first, so the transaction is part of the script.
                    await self._conn.executescript(
                        f"BEGIN IMMEDIATE;\n{sql}\nPRAGMA user_version = {version};\nCOMMIT;"
                    )
                except Exception as exc:
                    if self._conn.in_transaction:
                        await self._conn.rollback()
                    raise DatabaseError(f"migration {name} failed: {exc}") from None

    async def write(
        self,
        fn: Callable[Concatenate[Conn, P], T],
        /,
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        """`fn(conn, *args)` as one atomic write, run on the database thread.

        Writes that arrive while another is running are committed together (group commit): one
        round trip and one COMMIT for the lot, each write in a savepoint of its own, so one that
        raises is rolled back alone and its exception reaches only its caller. The result
        returns once the COMMIT that holds it is done."""

        def bound(conn: Conn) -> T:
            return fn(conn, *args, **kwargs)

        pending = _Write(bound, asyncio.get_running_loop().create_future())
        self._pending.append(pending)
        try:
            async with self._write_lock:
                if pending in self._pending:  # not taken by an earlier batch: lead this one
                    batch, self._pending = self._pending, []
                    run = asyncio.ensure_future(
                        call(self._conn, _run_batch, batch, self._checkpointer)
                    )
                    run.add_done_callback(partial(_answer_batch, batch))
                    # wait() leaves the batch running if this writer is cancelled (the others
                    # wait for it); every outcome, this write's too, arrives through the futures.
                    await asyncio.wait({run})
        except asyncio.CancelledError:
            if pending in self._pending:
                self._pending.remove(pending)
            else:
                pending.future.add_done_callback(_forget)
            raise
        return await pending.future

    # Reads wait for an open write transaction: on one shared connection they would otherwise
    # see its uncommitted rows. Inside a transaction, read through its connection instead.
    async def fetchone(self, sql: str, params: Iterable[Any] = ()) -> aiosqlite.Row | None:
        async with self._write_lock:
            return await first(self._conn, sql, params)

    async def fetchall(self, sql: str, params: Iterable[Any] = ()) -> list[aiosqlite.Row]:
        async with self._write_lock:
            return await rows(self._conn, sql, params)
