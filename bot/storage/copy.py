"""Moving a server's history from SQLite to PostgreSQL (`python -m bot migrate-db`).

`copy_database(source, target)` opens both through `Database.open`, so the SQLite file is first
brought to the current schema (a file newer than the code is refused) and the PostgreSQL
database is migrated. Then, in ONE transaction on the target:

1. every table is locked against other writers, and the copy is refused (`TargetNotEmpty`,
   nothing written) unless all of them are empty;
2. each table is streamed from one read snapshot of the SQLite file into PostgreSQL's COPY, row
   by row (a job's input images are data URIs of megabytes: never a whole table in memory),
   ids kept, parents before children;
3. the identity sequences are moved past the copied ids, so the next job, ledger row or audit
   row gets a new one;
4. both sides are counted, per table, and the ledger summed (images per entry kind, and money,
   images x unit price); a difference raises `CopyMismatch` and the transaction is rolled back.

Only when all of that holds is the transaction committed. The source is only read.
"""

from __future__ import annotations

import asyncio
import math
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psycopg

from bot.storage.db import Conn, Database, DatabaseError
from bot.storage.postgres import PgConn


@dataclass(frozen=True)
class Table:
    name: str
    order: str  # the primary key: parents (lower job ids) go before the jobs that cite them
    identity: bool = False  # an `id` column whose sequence must move past the copied ids


# Every table of the schema, in an order that satisfies the foreign keys.
TABLES = (
    Table("jobs", "id", identity=True),
    Table("job_inputs", "job_id, position"),
    Table("results", "job_id, position"),
    Table("ledger", "id", identity=True),
    Table("limit_settings", "guild_id, role_id, setting"),
    Table("audit_log", "id", identity=True),
    Table("quota_windows", "scope, owner"),
    Table("quota_spend", "guild_id, month"),
    Table("reposts", "message_id"),
    Table("member_defaults", "user_id"),
    Table("server_styles", "guild_id, name"),
    # After limit_settings, whose trigger on PostgreSQL has just written a version per server:
    # those rows make way for the source's own.
    Table("policy_versions", "guild_id"),
)
_TRIGGER_FILLED = "policy_versions"
PROGRESS_ROWS = 10_000  # a progress line per this many rows of one table

_LEDGER_SUMS = (
    "SELECT entry, SUM(images), SUM(images * unit_price) FROM ledger GROUP BY entry ORDER BY entry"
)


class NoSource(DatabaseError):
    """There is no SQLite file to copy (and none is created by looking)."""


class TargetNotEmpty(DatabaseError):
    """The target database already holds rows; nothing was written."""


class CopyMismatch(DatabaseError):
    """The two sides disagree after the copy; it was rolled back."""


@dataclass(frozen=True)
class Tally:
    """What a database holds: rows per table; ledger images and money per entry kind."""

    rows: dict[str, int]
    images: dict[str, int]
    money: dict[str, float]

    def differences(self, other: Tally) -> list[str]:
        found = [
            f"{table}: {self.rows.get(table)} rows here, {other.rows.get(table)} there"
            for table in sorted(set(self.rows) | set(other.rows))
            if self.rows.get(table) != other.rows.get(table)
        ]
        for entry in sorted(set(self.images) | set(other.images)):
            if self.images.get(entry) != other.images.get(entry):
                found.append(
                    f"ledger {entry} images: {self.images.get(entry)} here, "
                    f"{other.images.get(entry)} there"
                )
            mine, theirs = self.money.get(entry), other.money.get(entry)
            if mine is None or theirs is None or not _same_money(mine, theirs):
                found.append(f"ledger {entry} money: {mine} here, {theirs} there")
        return found


def _same_money(a: float, b: float) -> bool:
    """Equal but for the order the two databases added the floats in."""
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-6)


@dataclass(frozen=True)
class CopyReport:
    source: str  # safe to show: a path, and a URL without its password
    target: str
    source_version: int  # the schema version each side was at when copied
    target_version: int
    tally: Tally  # the same on both sides, or there would be no report
    seconds: float  # the whole transaction, checks included
    table_seconds: dict[str, float]  # streaming each table

    @property
    def total_rows(self) -> int:
        return sum(self.tally.rows.values())


Progress = Callable[[str], None]


def _ignore(_: str) -> None:
    pass


async def copy_database(
    source_path: str | Path, target_url: str, progress: Progress = _ignore
) -> CopyReport:
    """Copy the SQLite database at `source_path` into the empty PostgreSQL database at
    `target_url`, check both sides agree, and report what was copied. Raises `DatabaseError`
    (`TargetNotEmpty`, `CopyMismatch`, or why a side cannot be used); its message never holds
    the URL's password."""
    source_path = Path(source_path)
    if not await asyncio.to_thread(source_path.is_file):
        raise NoSource(f"there is no SQLite database at {source_path}")
    source = await Database.open(source_path)  # brought to the current schema
    try:
        source_version = await source.schema_version()
    finally:
        await source.close()
    target = await Database.open(target_url)
    try:
        if target.dialect != "postgresql":
            raise DatabaseError(f"{target.name} is not a PostgreSQL database")
        started = time.monotonic()
        try:
            tally, table_seconds = await target.write(_copy, source_path, target.name, progress)
        except (psycopg.Error, sqlite3.Error) as exc:
            reason = " ".join(str(exc).split())
            raise DatabaseError(
                f"copying into {target.name} failed, nothing was written there: {reason}"
            ) from None
        return CopyReport(
            source=str(source_path),
            target=target.name,
            source_version=source_version,
            target_version=await target.schema_version(),
            tally=tally,
            seconds=time.monotonic() - started,
            table_seconds=table_seconds,
        )
    finally:
        await target.close()


def _copy(
    conn: Conn, source_path: Path, target_name: str, progress: Progress
) -> tuple[Tally, dict[str, float]]:
    """The whole copy, inside the target's transaction (on its database thread): what both
    sides hold, and the seconds each table took."""
    if not isinstance(conn, PgConn):
        raise DatabaseError("the target of a copy must be PostgreSQL")
    names = ", ".join(table.name for table in TABLES)
    # Other writers wait until the copy is committed: no row can slip in between the check
    # that the target is empty and the copy, nor take an id the copy is about to write.
    conn.execute(f"LOCK TABLE {names} IN EXCLUSIVE MODE")
    held = {name: count for name, count in _tally(conn).rows.items() if count}
    if held:
        listed = ", ".join(f"{name}: {count}" for name, count in held.items())
        raise TargetNotEmpty(
            f"the database at {target_name} already holds rows ({listed}); migrate-db copies "
            "only into an empty database. Nothing was changed. Copy into a new database "
            "(CREATE DATABASE …, then --to or DATABASE_URL), or empty this one first."
        )
    source = sqlite3.connect(source_path, isolation_level=None)
    try:
        source.execute("PRAGMA query_only = 1")
        source.execute("BEGIN")  # one snapshot for every table and for the counts
        expected = _tally(source)
        seconds = {
            table.name: _copy_table(source, conn, table, expected.rows[table.name], progress)
            for table in TABLES
        }
        source.execute("COMMIT")
    finally:
        source.close()
    for table in TABLES:
        if table.identity:
            conn.execute(
                f"SELECT setval(pg_get_serial_sequence(?, 'id'), (SELECT MAX(id) FROM {table.name}))",  # noqa: S608
                (table.name,),
            )
    copied = _tally(conn)
    differences = expected.differences(copied)
    if differences:
        raise CopyMismatch(
            f"the copy in {target_name} does not match the source ({'; '.join(differences)}); "
            "it was rolled back, nothing was written there."
        )
    return copied, seconds


def _copy_table(
    source: sqlite3.Connection, conn: PgConn, table: Table, expected: int, progress: Progress
) -> float:
    started = time.monotonic()
    rows = source.execute(f"SELECT * FROM {table.name} ORDER BY {table.order}")  # noqa: S608
    columns = [column[0] for column in rows.description]
    wanted = _target_columns(conn, table.name)
    if sorted(columns) != sorted(wanted):
        raise DatabaseError(
            f"table {table.name} has columns {columns} in SQLite but {wanted} in PostgreSQL: "
            "this wanbot's two schemas differ"
        )
    if table.name == _TRIGGER_FILLED:
        conn.execute(f"DELETE FROM {table.name}")  # noqa: S608
    copied = 0
    statement = f"COPY {table.name} ({', '.join(columns)}) FROM STDIN"
    with conn.raw.cursor() as cursor, cursor.copy(statement) as copy:
        for row in rows:
            copy.write_row(row)
            copied += 1
            if copied % PROGRESS_ROWS == 0:
                progress(f"{table.name}: {copied} of {expected} rows")
    seconds = time.monotonic() - started
    progress(f"{table.name}: {copied} rows copied ({seconds:.1f} s)")
    return seconds


def _target_columns(conn: PgConn, table: str) -> list[str]:
    found = conn.execute(
        "SELECT column_name FROM information_schema.columns"
        " WHERE table_schema = current_schema() AND table_name = ? ORDER BY ordinal_position",
        (table,),
    ).fetchall()
    return [row[0] for row in found]


def _tally(side: Conn | sqlite3.Connection) -> Tally:
    rows = {
        table.name: int(side.execute(f"SELECT COUNT(*) FROM {table.name}").fetchone()[0])  # noqa: S608
        for table in TABLES
    }
    images: dict[str, int] = {}
    money: dict[str, float] = {}
    for entry, count, amount in side.execute(_LEDGER_SUMS).fetchall():
        images[entry] = int(count)
        money[entry] = float(amount)
    return Tally(rows, images, money)
