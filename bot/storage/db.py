"""The store's one way in, whichever database holds the rows.

Every access is a plain function of a connection (`Conn`): `await db.write(fn, *args)` runs
`fn(conn, *args)` as one transaction on the database's own thread and returns its result (or its
exception, with nothing written); `fetchone` / `fetchall` read one query. The functions are
written once, in SQL both backends accept (`?` or `?N` placeholders), and run unchanged on:

* **SQLite** (`bot.storage.sqlite`), the embedded default: one connection and one thread, writes
  serialised by BEGIN IMMEDIATE and committed in groups;
* **PostgreSQL** (`bot.storage.postgres`), for several processes: a pool of connections, one
  thread each, and PostgreSQL's own row locks. Where a check must not race a write from another
  process (a quota reservation), the function takes `conn.lock(key)` first: a transaction-scoped
  advisory lock there, nothing on SQLite, where a write transaction is already alone.

`Database.open(target)` picks the backend: a `postgresql://` URL, else a SQLite file path.
Each backend has its numbered migrations in `migrations/<dialect>/NNNN_name.sql`.
"""

from __future__ import annotations

import abc
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from importlib import resources
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar
from urllib.parse import parse_qs, unquote, urlsplit

P = ParamSpec("P")
T = TypeVar("T")

_MIGRATION_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


class DatabaseError(Exception):
    """The database cannot be used; the message says why and what to do."""


class Row(Protocol):
    """A result row: by position (`row[0]`) or by column name (`row["id"]`)."""

    def __getitem__(self, key: int | str, /) -> Any: ...

    def __iter__(self) -> Iterator[Any]: ...

    def __len__(self) -> int: ...

    def keys(self) -> list[str]: ...


class Cursor(Protocol):
    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...

    def __iter__(self) -> Iterator[Any]: ...


class Conn(Protocol):
    """One open transaction, used from the database's thread."""

    def execute(self, sql: str, params: Sequence[Any] = (), /) -> Cursor: ...

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]], /) -> None: ...

    def lock(self, scope: str, key: int) -> None:
        """Wait until no other transaction holds (scope, key), and hold it until this one
        ends. Take locks in one order everywhere (user before server)."""

    def pipeline(self) -> None:
        """From here to the end of the transaction, send each statement without waiting for
        the one before to be answered: a result is waited for when it is fetched, and the
        rest come back with the COMMIT, in one round trip. For the end of a transaction
        that holds a lock others wait for (PostgreSQL's pipeline mode; nothing on SQLite,
        which has no round trips). An error shows at the next fetch or at the COMMIT."""


def as_dict(row: Row) -> dict[str, Any]:
    return dict(zip(row.keys(), row, strict=True))


def is_postgres_url(target: str | Path) -> bool:
    return str(target).startswith(("postgresql://", "postgres://"))


def target_secrets(target: str | Path) -> list[str]:
    """The passwords a database target holds (a URL's, as written and decoded), for the log
    scrubber; none for a SQLite path."""
    if not is_postgres_url(target):
        return []
    try:
        parts = urlsplit(str(target))
        written = [parts.password or "", *parse_qs(parts.query).get("password", [])]
    except ValueError:  # unreadable: scrub everything after the scheme
        return [str(target).partition("://")[2]]
    return [form for value in written if value for form in {value, unquote(value)}]


class Database(abc.ABC):
    """The rows, whichever backend keeps them."""

    dialect: str  # "sqlite" or "postgresql": which migrations and SQL spellings apply

    @staticmethod
    async def open(target: str | Path) -> Database:
        """Open and migrate the database: a `postgresql://` URL, or a SQLite path (":memory:"
        works). Refuses a database whose schema is newer than this code."""
        if is_postgres_url(target):
            from bot.storage.postgres import PostgresDatabase

            return await PostgresDatabase.open(str(target))
        from bot.storage.sqlite import SqliteDatabase

        return await SqliteDatabase.open(target)

    @abc.abstractmethod
    async def write(
        self, fn: Callable[Concatenate[Conn, P], T], /, *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """`fn(conn, *args, **kwargs)` as one transaction: committed when it returns, rolled
        back (and its exception raised here) when it raises."""

    @abc.abstractmethod
    async def fetchone(self, sql: str, params: Iterable[Any] = ()) -> Any:
        """The first row of a query, or None."""

    @abc.abstractmethod
    async def fetchall(self, sql: str, params: Iterable[Any] = ()) -> list[Any]:
        """Every row of a query."""

    @abc.abstractmethod
    async def schema_version(self) -> int: ...

    async def software(self) -> str:
        """What keeps the rows and its version, e.g. "PostgreSQL 15.4" or "SQLite 3.40.1" (a
        wrapper of another database may leave it at the dialect)."""
        return self.dialect

    @abc.abstractmethod
    async def close(self) -> None: ...

    @property
    @abc.abstractmethod
    def name(self) -> str:
        """Where the rows are, safe to log and show (no password)."""


def migrations(dialect: str = "sqlite") -> list[tuple[int, str, str]]:
    """(version, file name, SQL) for every migration of a backend, in order."""
    found = []
    for entry in resources.files(f"bot.storage.migrations.{dialect}").iterdir():
        match = _MIGRATION_NAME.match(entry.name)
        if match:
            found.append((int(match.group(1)), entry.name, entry.read_text(encoding="utf-8")))
    found.sort()
    versions = [version for version, _, _ in found]
    if versions != list(range(1, len(found) + 1)):
        raise DatabaseError(f"migrations are not numbered 1..N without gaps: {versions}")
    return found


def newer_schema(name: str, current: int, latest: int, setting: str) -> DatabaseError:
    return DatabaseError(
        f"the database at {name} has schema version {current}, but this wanbot knows only up "
        f"to {latest}: it was used by a newer wanbot. Upgrade wanbot, or point {setting} at "
        "another database."
    )
