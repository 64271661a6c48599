"""The PostgreSQL backend (`DATABASE_URL=postgresql://…`), for several bot processes.

Driver: psycopg 3 (with its pools). It has both a blocking and an asyncio API over the same
connection objects: the store's functions (`Conn` -> result) run unchanged here as on SQLite,
each whole transaction on one worker thread (one hop from the event loop per transaction, not
one per statement); a lone statement (`fetchone`, `fetchall`) runs on the event loop itself,
on a pool of asyncio connections, with no hop at all; and the lease and LISTEN/NOTIFY use
asyncio connections too (`bot.storage.cluster`). It is maintained by PostgreSQL's driver
maintainers, ships libpq in its binary wheel, and speaks the server's own types and errors.

Nothing of SQLite's speed machinery is here: concurrent transactions on pooled connections, and
PostgreSQL's row locks and transaction-scoped advisory locks (`Conn.lock`) for the checks that
must not race another process. A transaction that PostgreSQL aborts as a deadlock or a
serialization failure is run again (the functions are plain database work, safe to repeat).
Round trips are what a transaction holding a lock others wait for costs: `Conn.pipeline`
sends the rest of one without waiting statement by statement (the COMMIT with the writes
before it), and `fetchone` / `fetchall` run their one query without BEGIN and COMMIT.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Concatenate, ParamSpec, TypeVar

import psycopg
import psycopg.errors
from psycopg.adapt import Loader
from psycopg.conninfo import conninfo_to_dict
from psycopg.cursor import BaseCursor
from psycopg_pool import AsyncConnectionPool, ConnectionPool

from bot.storage import db as base
from bot.storage.db import Conn, Cursor, Database, DatabaseError

log = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")

# Connections per process, opened at the start (a burst must not wait while PostgreSQL forks
# backends): transactions, one worker thread each; and lone statements, on the event loop.
# Those are short, and a few keep the server busy: with more in flight at once, each waits
# longer for a CPU of the server's (`bench cluster`: 4 gave a lower p99 than 8, on two cores).
POOL_SIZE = 8
STATEMENT_POOL_SIZE = 4
CONNECT_TIMEOUT = 10.0  # seconds to wait for a first connection
RETRIES = 5  # runs of a statement or transaction aborted by a deadlock or serialization failure
MIGRATION_LOCK = "wanbot-migrations"  # one process migrates, the others wait
# An advisory lock's key: its name hashed together with the schema the connection's search_path
# selects, so deployments in different schemas of one database (advisory locks are the
# database's) never hold each other's locks.
LOCK_KEY = "hashtextextended(coalesce(current_schema(), '') || ':' || %s, 0)"
_RETRYABLE = (psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure)

# `?` or `?N` outside quotes become `%s`; every `%` is doubled (psycopg reads them in quotes too).
_TOKEN = re.compile(r"'(?:[^']|'')*'|\?(\d+)?|%")


@functools.lru_cache(maxsize=4096)
def translate(sql: str) -> tuple[str, tuple[int, ...] | None]:
    """The query with psycopg's placeholders, and (for `?N` placeholders) which parameter each
    `%s` takes, in order; None when they are taken in order."""
    order: list[int] = []
    numbered = False
    position = 0

    def replace(match: re.Match[str]) -> str:
        nonlocal numbered, position
        found = match.group(0)
        if found.startswith("'"):
            return found.replace("%", "%%")
        if found == "%":
            return "%%"
        if match.group(1):
            numbered = True
            order.append(int(match.group(1)) - 1)
        else:
            order.append(position)
            position += 1
        return "%s"

    translated = _TOKEN.sub(replace, sql)
    return translated, tuple(order) if numbered else None


def bind(sql: str, params: Sequence[Any]) -> tuple[str, Sequence[Any]]:
    translated, order = translate(sql)
    if order is None:
        return translated, params
    return translated, [params[i] for i in order]


class PgRow:
    """A row by position or by column name, as sqlite3.Row is."""

    __slots__ = ("_names", "_values")

    def __init__(self, values: Sequence[Any], names: dict[str, int]) -> None:
        self._values = values
        self._names = names

    def __getitem__(self, key: int | str) -> Any:
        if isinstance(key, str):
            return self._values[self._names[key]]
        return self._values[key]

    def __iter__(self) -> Iterator[Any]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def keys(self) -> list[str]:
        return list(self._names)

    def __repr__(self) -> str:
        return f"PgRow({dict(zip(self._names, self._values, strict=True))!r})"


def _rows(cursor: BaseCursor[Any, Any]) -> Callable[[Sequence[Any]], PgRow]:
    # The names straight from the result: `cursor.description` builds a Column (and looks up
    # its type) for every column of every statement, a tenth of a transaction's time here.
    result = cursor.pgresult
    names = (
        {}
        if result is None
        else {(result.fname(i) or b"").decode(): i for i in range(result.nfields)}
    )
    return lambda values: PgRow(values, names)


class _NumberLoader(Loader):
    """NUMERIC (what SUM of integers gives) as int when whole, else float, as SQLite gives."""

    def load(self, data: Any) -> int | float:
        text = bytes(data).decode()
        return float(text) if "." in text or "e" in text.lower() else int(text)


class PgConn:
    """A `Conn` over one psycopg connection inside its transaction. `pipeline` enters
    psycopg's pipeline mode on `until_commit`, a stack the transaction's owner closes after
    the COMMIT, so the COMMIT goes with the statements before it."""

    __slots__ = ("piped", "raw", "until_commit")

    def __init__(
        self, raw: psycopg.Connection[Any], until_commit: contextlib.ExitStack | None = None
    ) -> None:
        self.raw = raw
        self.until_commit = until_commit
        self.piped: psycopg.Pipeline | None = None

    def execute(self, sql: str, params: Sequence[Any] = (), /) -> Cursor:
        query, args = bind(sql, params)
        cursor = self.raw.execute(query, args)
        return cursor if self.piped is None else _Piped(cursor, self.piped)

    def pipeline(self) -> None:
        if self.piped is None and self.until_commit is not None:
            self.piped = self.until_commit.enter_context(self.raw.pipeline())

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]], /) -> None:
        translated, order = translate(sql)
        if order is not None:
            rows = [[row[i] for i in order] for row in rows]
        with self.raw.cursor() as cursor:
            cursor.executemany(translated, list(rows))

    def lock(self, scope: str, key: int) -> None:
        self.raw.execute(f"SELECT pg_advisory_xact_lock({LOCK_KEY})", (f"{scope}:{key}",))


class _Piped:
    """A statement's cursor in pipeline mode: fetching waits for its result, and so does
    `rowcount` here (psycopg's would be -1 until then)."""

    __slots__ = ("cursor", "pipeline")

    def __init__(self, cursor: psycopg.Cursor[Any], pipeline: psycopg.Pipeline) -> None:
        self.cursor = cursor
        self.pipeline = pipeline

    @property
    def rowcount(self) -> int:
        if self.cursor.pgresult is None:
            self.pipeline.sync()
        return self.cursor.rowcount

    def fetchone(self) -> Any:
        return self.cursor.fetchone()

    def fetchall(self) -> list[Any]:
        return self.cursor.fetchall()

    def __iter__(self) -> Iterator[Any]:
        return iter(self.cursor)


def safe_name(url: str) -> str:
    """`postgresql://user@host:port/db`: the URL without its password or options."""
    try:
        parts = conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "postgresql://(unreadable DATABASE_URL)"
    user = f"{parts['user']}@" if parts.get("user") else ""
    port = f":{parts['port']}" if parts.get("port") else ""
    return f"postgresql://{user}{parts.get('host', '')}{port}/{parts.get('dbname', '')}"


def _configure(raw: psycopg.Connection[Any] | psycopg.AsyncConnection[Any]) -> None:
    raw.row_factory = _rows
    raw.adapters.register_loader("numeric", _NumberLoader)


def _pool_options(size: int, name: str) -> dict[str, Any]:
    """A pool of `size` connections in autocommit, all opened at the start."""
    return {
        "min_size": size,
        "max_size": size,
        "open": False,
        "kwargs": {"autocommit": True},
        "name": name,
    }


async def _configure_async(raw: psycopg.AsyncConnection[Any]) -> None:
    _configure(raw)


def _again(attempt: int, exc: Exception) -> bool:
    """Whether a run PostgreSQL aborted as a deadlock or a serialization failure (`attempt`
    runs before it) goes again: plain database work, safe to repeat, up to `RETRIES` runs."""
    if attempt + 1 >= RETRIES:
        return False
    log.info("retried after %s", type(exc).__name__)
    return True


class PostgresDatabase(Database):
    dialect = "postgresql"

    def __init__(
        self,
        url: str,
        pool: ConnectionPool[Any],
        statements: AsyncConnectionPool[Any],
        executor: ThreadPoolExecutor,
    ) -> None:
        self._url = url  # holds the password: never logged, never in repr
        self._name = safe_name(url)
        self._pool = pool  # transactions, on the executor's threads
        self._statements = statements  # lone statements, on the event loop
        self._executor = executor

    def __repr__(self) -> str:
        return f"PostgresDatabase({self._name})"

    @property
    def name(self) -> str:
        return self._name

    @property
    def url(self) -> str:
        """The full URL (with its password), for a connection of the caller's own."""
        return self._url

    @classmethod
    async def open(cls, url: str) -> PostgresDatabase:  # type: ignore[override]
        name = safe_name(url)
        try:
            conninfo_to_dict(url)
        except psycopg.ProgrammingError:
            raise DatabaseError(
                f"DATABASE_URL is not a PostgreSQL URL psycopg can read ({name}); write it as "
                "postgresql://user:password@host:5432/database"
            ) from None
        pool: ConnectionPool[Any] = ConnectionPool(
            url, configure=_configure, **_pool_options(POOL_SIZE, "wanbot")
        )
        statements: AsyncConnectionPool[Any] = AsyncConnectionPool(
            url,
            configure=_configure_async,
            **_pool_options(STATEMENT_POOL_SIZE, "wanbot-statements"),
        )
        executor = ThreadPoolExecutor(POOL_SIZE, thread_name_prefix="postgres")
        db = cls(url, pool, statements, executor)
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(executor, db._connect)
            await loop.run_in_executor(executor, db._migrate)
            await statements.open(wait=True, timeout=CONNECT_TIMEOUT)
        except BaseException:
            await db.close()
            raise
        return db

    def _connect(self) -> None:
        try:
            self._pool.open(wait=True, timeout=CONNECT_TIMEOUT)
        except Exception as exc:  # PoolTimeout: the connections failed; say why
            try:
                with psycopg.connect(self._url, connect_timeout=5):
                    pass
            except psycopg.Error as reason:
                # libpq's reason may run over lines ("...refused\n\tIs the server running...")
                detail = " ".join(str(reason).replace(self._url, self._name).split())
            else:
                detail = type(exc).__name__
            raise DatabaseError(
                f"cannot connect to the database at {self._name} ({detail}). Check DATABASE_URL "
                "and that PostgreSQL is running and reachable."
            ) from None

    def _migrate(self) -> None:
        known = base.migrations("postgresql")
        latest = known[-1][0] if known else 0
        with self._pool.connection() as raw:
            raw.execute(f"SELECT pg_advisory_lock({LOCK_KEY})", (MIGRATION_LOCK,))
            try:
                raw.execute("CREATE TABLE IF NOT EXISTS wanbot_schema (version INTEGER NOT NULL)")
                row = raw.execute("SELECT MAX(version) FROM wanbot_schema").fetchone()
                current = int(row[0]) if row and row[0] is not None else 0
                if current > latest:
                    raise base.newer_schema(self._name, current, latest, "DATABASE_URL")
                for version, name, sql in known:
                    if version <= current:
                        continue
                    try:
                        with raw.transaction():
                            raw.execute(sql)
                            raw.execute("INSERT INTO wanbot_schema VALUES (%s)", (version,))
                    except psycopg.Error as exc:
                        raise DatabaseError(f"migration {name} failed: {exc}") from None
            finally:
                raw.execute(f"SELECT pg_advisory_unlock({LOCK_KEY})", (MIGRATION_LOCK,))

    async def close(self) -> None:
        await self._statements.close()
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._pool.close)
        self._executor.shutdown(wait=False)

    async def software(self) -> str:
        row = await self.fetchone("SHOW server_version")  # "15.4 (Debian 15.4-1)"
        return f"PostgreSQL {str(row[0]).split()[0]}"

    async def schema_version(self) -> int:
        row = await self.fetchone("SELECT MAX(version) FROM wanbot_schema")
        return int(row[0]) if row and row[0] is not None else 0

    def _transact(self, fn: Callable[[Conn], T]) -> T:
        for attempt in range(RETRIES):
            try:
                return self._transact_once(fn)
            except _RETRYABLE as exc:
                if not _again(attempt, exc):
                    raise
        raise AssertionError("unreachable")

    def _transact_once(self, fn: Callable[[Conn], T]) -> T:
        try:
            # The stack closes after the COMMIT: a pipeline entered in `fn` sends it.
            with (
                self._pool.connection() as raw,
                contextlib.ExitStack() as until_commit,
                raw.transaction(),
            ):
                return fn(PgConn(raw, until_commit))
        except psycopg.errors.PipelineAborted as aborted:
            # A statement failed in pipeline mode and its error came back only when the
            # pipeline closed, after the COMMIT: psycopg raises "pipeline aborted" with the
            # statement's own error behind it. Raise that one (a unique violation, a
            # serialization failure to run again), as without pipeline mode.
            if isinstance(aborted.__context__, psycopg.Error):
                raise aborted.__context__ from None
            raise

    async def write(
        self, fn: Callable[Concatenate[Conn, P], T], /, *args: P.args, **kwargs: P.kwargs
    ) -> T:
        def bound(conn: Conn) -> T:
            return fn(conn, *args, **kwargs)

        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._transact, bound)

    async def _statement(self, sql: str, params: Iterable[Any], every: bool) -> Any:
        """One query on its own, outside any transaction (the pool's connections are in
        autocommit): one round trip, where BEGIN, the query and COMMIT took three, and on the
        event loop, with no hop to a thread and back. A query that writes (a reservation in
        the server) is a transaction of its own, run again like any other when PostgreSQL
        aborts it as a deadlock."""
        query, args = bind(sql, tuple(params))
        for attempt in range(RETRIES):
            try:
                async with self._statements.connection() as raw:
                    cursor = await raw.execute(query, args)
                    return await (cursor.fetchall() if every else cursor.fetchone())
            except _RETRYABLE as exc:
                if not _again(attempt, exc):
                    raise
        raise AssertionError("unreachable")

    async def fetchone(self, sql: str, params: Iterable[Any] = ()) -> Any:
        return await self._statement(sql, params, every=False)

    async def fetchall(self, sql: str, params: Iterable[Any] = ()) -> list[Any]:
        return await self._statement(sql, params, every=True)
