"""The SQLite backend's own machinery: pragmas, the file and its folders, group commit,
cancellation, the WAL checkpointer, a full disk, the queries' indexes, and the upgrade of
databases written by older versions. What every backend does is in test_storage_contract."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
from pathlib import Path

import pytest

import bot.storage.db
from bot.storage.db import Conn, Database, DatabaseError, migrations
from bot.storage.sqlite import Checkpointer, SqliteConn, SqliteDatabase, call
from tests.backends import execute, insert_setting

SHIPPED = migrations("sqlite")
TABLES = {"jobs", "job_inputs", "results", "ledger", "limit_settings"}


def tables(path: Path) -> set[str]:
    with sqlite3.connect(path) as conn:
        rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
    return {name for (name,) in rows}


def user_version(path: Path) -> int:
    with sqlite3.connect(path) as conn:
        return conn.execute("PRAGMA user_version").fetchone()[0]


async def open_sqlite(path: Path | str) -> SqliteDatabase:
    db = await Database.open(path)
    assert isinstance(db, SqliteDatabase)
    return db


async def in_transaction(db: SqliteDatabase) -> bool:
    """Whether the connection has a transaction open (asked on its thread, after any batch)."""
    return await call(db._conn, lambda raw: raw.in_transaction)


async def test_wal_and_foreign_keys_are_on(tmp_path: Path) -> None:
    db = await Database.open(tmp_path / "w.db")
    try:
        mode = await db.fetchone("PRAGMA journal_mode")
        keys = await db.fetchone("PRAGMA foreign_keys")
        synchronous = await db.fetchone("PRAGMA synchronous")
        assert mode is not None and mode[0] == "wal"
        assert keys is not None and keys[0] == 1
        assert synchronous is not None and synchronous[0] == 1  # NORMAL
    finally:
        await db.close()
    with sqlite3.connect(tmp_path / "w.db") as conn:  # WAL is persistent in the file
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


async def test_missing_folders_are_made_and_user_version_is_the_schema_version(
    tmp_path: Path,
) -> None:
    path = tmp_path / "sub" / "dir" / "m.db"
    db = await Database.open(path)
    try:
        assert db.dialect == "sqlite" and db.name == str(path)
        assert await db.schema_version() == len(SHIPPED)
    finally:
        await db.close()
    assert user_version(path) == len(SHIPPED)
    assert tables(path) >= TABLES


async def test_in_memory_database_is_migrated() -> None:
    db = await Database.open(":memory:")
    try:
        assert await db.schema_version() == len(SHIPPED)
        row = await db.fetchone("SELECT COUNT(*) FROM jobs")
        assert row is not None and row[0] == 0
    finally:
        await db.close()


async def test_an_unopenable_path_is_a_database_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(DatabaseError):
        await Database.open(blocker / "db.sqlite")


# --- group commit ------------------------------------------------------------------------------


def _trace(conn: Conn, statements: list[str] | None) -> None:
    assert isinstance(conn, SqliteConn)
    conn.raw.set_trace_callback(statements.append if statements is not None else None)


async def test_concurrent_writes_share_commits_and_a_failing_one_alone_is_undone(
    tmp_path: Path,
) -> None:
    """Writes that arrive together are committed together, each in a savepoint: one that
    raises is rolled back alone, and only its caller sees its exception."""
    db = await Database.open(tmp_path / "g.db")
    statements: list[str] = []
    try:
        await db.write(_trace, statements)
        outcomes = await asyncio.gather(
            *(db.write(insert_setting, guild, guild % 10 == 3) for guild in range(100)),
            return_exceptions=True,
        )
        await db.write(_trace, None)
        failed = [g for g, o in enumerate(outcomes) if isinstance(o, ValueError)]
        assert failed == list(range(3, 100, 10))
        rows = await db.fetchall("SELECT guild_id FROM limit_settings ORDER BY guild_id")
        assert [r[0] for r in rows] == [g for g in range(100) if g % 10 != 3]
    finally:
        await db.close()
    commits = statements.count("COMMIT")
    assert 1 <= commits <= 10, f"{commits} COMMITs for 100 concurrent writes"
    assert statements.count("ROLLBACK TO write") == len(failed)


async def test_a_write_alone_in_its_batch_that_fails_is_undone(tmp_path: Path) -> None:
    """A batch of one runs without a savepoint: its failure rolls the whole transaction back,
    and the next write starts clean."""
    db = await open_sqlite(tmp_path / "one.db")
    try:
        with pytest.raises(ValueError, match="write 7 fails"):
            await db.write(insert_setting, 7, True)
        assert not await in_transaction(db)
        assert await db.write(insert_setting, 8) == 8
        rows = await db.fetchall("SELECT guild_id FROM limit_settings")
        assert [r[0] for r in rows] == [8]
    finally:
        await db.close()


class Gate:
    """A write that holds the database thread until the test lets it go."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()

    def hold(self, conn: Conn, guild: int) -> int:
        self.entered.set()
        assert self.release.wait(10), "the test never let the write go"
        return insert_setting(conn, guild)

    async def running(self) -> None:
        assert await asyncio.to_thread(self.entered.wait, 10), "the write never ran"


async def settle(task: asyncio.Task[object]) -> None:
    """Let `task` run until it waits (for the write lock, or its batch)."""
    for _ in range(5):
        await asyncio.sleep(0)
    assert not task.done()


async def test_a_write_cancelled_while_waiting_is_never_run(tmp_path: Path) -> None:
    db = await open_sqlite(tmp_path / "c.db")
    gate = Gate()
    try:
        holder = asyncio.create_task(db.write(gate.hold, 1))
        await gate.running()
        waiting = asyncio.create_task(db.write(insert_setting, 2))
        await settle(waiting)
        waiting.cancel()
        later = asyncio.create_task(db.write(insert_setting, 3))
        await settle(later)
        gate.release.set()
        assert await holder == 1
        assert await later == 3
        with pytest.raises(asyncio.CancelledError):
            await waiting
        rows = await db.fetchall("SELECT guild_id FROM limit_settings ORDER BY guild_id")
        assert [r[0] for r in rows] == [1, 3]
    finally:
        gate.release.set()
        await db.close()


async def test_a_leader_cancelled_while_its_batch_runs_leaves_it_to_finish(
    tmp_path: Path,
) -> None:
    """The write that leads a batch runs the others' writes too: cancelling it must not cut
    the batch off, and the others get their answers."""
    db = await open_sqlite(tmp_path / "lead.db")
    first, second = Gate(), Gate()
    try:
        holder = asyncio.create_task(db.write(first.hold, 1))
        await first.running()
        leader = asyncio.create_task(db.write(second.hold, 2))
        await settle(leader)
        follower = asyncio.create_task(db.write(insert_setting, 3))
        await settle(follower)
        first.release.set()  # the leader takes the lock and runs itself and the follower
        await second.running()
        leader.cancel()
        await settle(follower)
        second.release.set()
        assert await holder == 1
        assert await follower == 3
        with pytest.raises(asyncio.CancelledError):
            await leader
        assert not await in_transaction(db)
        rows = await db.fetchall("SELECT guild_id FROM limit_settings ORDER BY guild_id")
        assert [r[0] for r in rows] == [1, 2, 3]  # the leader's write was in the batch
    finally:
        first.release.set()
        second.release.set()
        await db.close()


async def test_a_write_cancelled_at_any_moment_leaves_nothing_open(tmp_path: Path) -> None:
    db = await open_sqlite(tmp_path / "x.db")
    try:
        for number, delay in enumerate((0, 0, 0.0001, 0.001, 0.01)):
            task = asyncio.create_task(db.write(insert_setting, number))
            await asyncio.sleep(delay)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            assert not await in_transaction(db)
            assert await db.write(insert_setting, 100 + number) == 100 + number
            await execute(db, "DELETE FROM limit_settings")
    finally:
        await db.close()


async def test_a_transaction_left_open_does_not_block_later_writes(tmp_path: Path) -> None:
    db = await open_sqlite(tmp_path / "y.db")
    try:
        await call(db._conn, lambda raw: raw.execute("BEGIN IMMEDIATE"))  # a stray one
        assert await db.write(insert_setting, 5) == 5
        await execute(db, "DELETE FROM limit_settings WHERE guild_id = 5")
        assert await db.fetchall("SELECT * FROM limit_settings") == []
    finally:
        await db.close()


# --- the WAL -----------------------------------------------------------------------------------


def _insert_blob(conn: Conn, guild: int, blob: str) -> None:
    conn.execute(
        "INSERT INTO limit_settings (guild_id, role_id, setting, value, updated_at)"
        " VALUES (?, 0, 'blob', ?, 0)",
        (guild, blob),
    )


async def test_the_wal_is_checkpointed_off_the_writers_path(tmp_path: Path) -> None:
    """Commits never checkpoint (that would stall the writers behind them); the checkpoint
    thread copies the WAL into the database file within a few of its intervals."""
    path = tmp_path / "ck.db"
    db = await Database.open(path)
    try:
        automatic = await db.fetchone("PRAGMA wal_autocheckpoint")
        assert automatic is not None and automatic[0] == 0
        base = path.stat().st_size
        blob = "x" * 4000
        for guild in range(300):  # ~1.2 MB, past SQLite's own 1,000-page autocheckpoint
            await db.write(_insert_blob, guild, blob)
        async with asyncio.timeout(10):
            while path.stat().st_size < base + 1_000_000:
                await asyncio.sleep(0.05)
    finally:
        await db.close()


async def test_the_wal_stays_bounded_under_writes_that_never_pause(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite starts the WAL over only when a write begins on a fully copied WAL; writes that
    never pause never give it that moment unless the writer copies the last frames itself."""
    monkeypatch.setattr(Checkpointer, "INTERVAL", 0.02)
    monkeypatch.setattr(Checkpointer, "RESTART_FRAMES", 100)
    path = tmp_path / "busy.db"
    db = await Database.open(path)
    blob = "y" * 3000
    try:
        for start in range(0, 6000, 50):  # ~6,000 writes of a page or two, back to back
            await asyncio.gather(
                *(db.write(_insert_blob, guild, blob) for guild in range(start, start + 50))
            )
        wal = Path(f"{path}-wal").stat().st_size
        assert wal < 10_000_000, f"the WAL grew to {wal} bytes"  # ~30 MB if never restarted
    finally:
        await db.close()


def _fill(conn: Conn, tag: int) -> int:
    conn.execute("INSERT INTO blobs (tag, data) VALUES (?, ?)", (tag, "v" * 200_000))
    return tag


async def test_a_write_that_fills_the_disk_reports_that_not_a_rollback_error(
    tmp_path: Path,
) -> None:
    """A full disk can end the transaction inside SQLite: the caller learns the disk is full (not
    "cannot rollback"), the other writes of its batch get answers that match what was stored,
    and later writes work once there is room."""
    db = await Database.open(tmp_path / "full.db")
    try:
        await execute(db, "CREATE TABLE blobs (tag INTEGER, data TEXT)")
        pages = (await db.fetchone("PRAGMA page_count"))[0]
        await db.fetchone(f"PRAGMA max_page_count = {pages + 5}")
        with pytest.raises(sqlite3.OperationalError, match="full"):
            await db.write(_fill, 1)
        outcomes = await asyncio.gather(
            db.write(insert_setting, 2), db.write(_fill, 3), return_exceptions=True
        )
        assert isinstance(outcomes[1], sqlite3.OperationalError) and "full" in str(outcomes[1])
        # Whether SQLite undid only the statement or the whole transaction, each caller's
        # answer matches what is stored.
        kept = outcomes[0] == 2
        assert kept or ("full" in str(outcomes[0])), outcomes
        await db.fetchone("PRAGMA max_page_count = 1000000")
        assert await db.write(insert_setting, 4) == 4
        rows = await db.fetchall("SELECT guild_id FROM limit_settings")
        assert [r[0] for r in rows] == ([2, 4] if kept else [4])
    finally:
        await db.close()


# --- query plans -------------------------------------------------------------------------------


async def test_the_quota_queries_use_their_indexes(tmp_path: Path) -> None:
    """The window, budget and final-status indexes are partial (reservations only; ended jobs
    not yet shown): the queries that need them must still match their conditions, or each
    reservation would scan the ledger."""
    from bot.accounting import quota as limits
    from bot.jobs.store import UNNOTIFIED_SQL

    db = await Database.open(tmp_path / "plan.db")
    try:
        plans = {
            "move user": (limits._MOVE_SQL["user_id"], (1, "user_id", 0.0), "ledger_by_user"),
            "move guild": (limits._MOVE_SQL["guild_id"], (1, "guild_id", 0.0), "ledger_by_guild"),
            "window": (limits._WINDOW_SQL["user_id"], (1, 0.0), "ledger_by_user"),
            "held": (limits._HELD_SQL["guild_id"], (1, 0.0, 1.0), "ledger_by_guild"),
            "spent": (limits._SPENT_MICROS_SQL, (1, 0.0, 1.0), "ledger_by_guild"),
            "cooldown": (limits._LAST_JOB_SQL, (1,), "ledger_by_user"),
            "active": (limits._ACTIVE_SQL, (1,), "jobs_by_user_state"),
            "unnotified": (
                UNNOTIFIED_SQL.format(states="('failed')", plus="+"),
                (0.0,),
                "jobs_unnotified",
            ),
        }
        for name, (sql, params, index) in plans.items():
            plan = await db.fetchall(f"EXPLAIN QUERY PLAN {sql}", params)
            details = " | ".join(row["detail"] for row in plan)
            assert f"INDEX {index}" in details, (name, details)
    finally:
        await db.close()


# --- databases written by older versions -------------------------------------------------------


async def open_migrated(
    path: Path, monkeypatch: pytest.MonkeyPatch, upto: int | None = None
) -> Database:
    """The database at `path` opened with the shipped migrations up to `upto` (all if None)."""

    def shipped(dialect: str = "sqlite") -> list[tuple[int, str, str]]:
        assert dialect == "sqlite"
        return SHIPPED[:upto]

    monkeypatch.setattr(bot.storage.db, "migrations", shipped)
    return await Database.open(path)


def _version_5_rows(conn: Conn) -> None:
    conn.execute(
        "INSERT INTO limit_settings (guild_id, role_id, setting, value, updated_at)"
        " VALUES (1, 0, 'max_n', '2', 0), (1, 9, 'max_n', '4', 0), (2, 0, 'max_n', '3', 0)",
    )
    for job in (1, 2):
        conn.execute(
            "INSERT INTO jobs (id, state, kind, model, params, n, user_id, guild_id,"
            " created_at, updated_at, finished_at) VALUES (?, 'done', 'text-to-image',"
            " 'wan2.6-t2i', '{\"prompt\": \"x\"}', 2, 7, 1, ?, ?, ?)",
            (job, 100.0 * job, 100.0 * job, 100.0 * job + 5),
        )
        for entry, images in (("reserve", 2), ("charge", 1), ("refund", 1)):
            conn.execute(
                "INSERT INTO ledger (job_id, user_id, guild_id, entry, images, created_at)"
                " VALUES (?, 7, 1, ?, ?, ?)",
                (job, entry, images, 100.0 * job + (entry != "reserve") * 5),
            )


async def test_a_version_5_database_with_settings_and_jobs_moves_to_lean_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Migration 0006 on a database in use: settings keep their values and every server that
    has some gets a policy version; jobs and the ledger are untouched; the window and
    cooldown queries answer as before through the new partial indexes."""
    from bot.accounting import quota as limits

    path = tmp_path / "v5.db"
    db = await open_migrated(path, monkeypatch, 5)
    await db.write(_version_5_rows)
    await db.close()
    assert user_version(path) == 5

    db = await open_migrated(path, monkeypatch)
    try:
        assert await db.schema_version() == len(SHIPPED) >= 6
        versions = await db.fetchall("SELECT guild_id FROM policy_versions ORDER BY guild_id")
        assert [row[0] for row in versions] == [1, 2]
        settings = await db.fetchall("SELECT guild_id, role_id, value FROM limit_settings")
        assert sorted(tuple(row) for row in settings) == [(1, 0, "2"), (1, 9, "4"), (2, 0, "3")]
        window = await db.fetchall(limits._WINDOW_SQL["user_id"], (7, 0.0))
        assert [tuple(row) for row in window] == [(100.0, 1), (200.0, 1)]
        last = await db.fetchone(limits._LAST_JOB_SQL, (7,))
        assert last[0] == 200.0
        counts = await db.fetchone("SELECT COUNT(*) FROM jobs JOIN ledger ON job_id = jobs.id")
        assert counts[0] == 6
    finally:
        await db.close()


async def test_a_version_6_database_with_results_moves_to_deletions_for_good(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Migration 0009 on a database in use: its jobs read as not deleted, none is pending, and
    a deletion recorded afterwards forgets the job's result URLs and input images."""
    from bot.jobs.store import JobStore

    path = tmp_path / "v6.db"
    db = await open_migrated(path, monkeypatch, 6)
    for row in (
        "INSERT INTO jobs (id, state, kind, model, params, n, user_id, guild_id, channel_id,"
        " thread_id, status_message_id, created_at, updated_at, finished_at) VALUES"
        " (1, 'done', 'edit', 'wan2.5-i2i-preview', '{\"prompt\": \"x\"}', 1, 7, 1, 10, 11,"
        " 11, 100, 100, 105)",
        "INSERT INTO results (job_id, position, url, expires_at, delivered_message_id)"
        " VALUES (1, 0, 'https://dashscope.example/1.png', 9e9, 12)",
        "INSERT INTO job_inputs (job_id, position, data_uri) VALUES (1, 0, 'data:,x')",
    ):
        await execute(db, row)
    await db.close()
    assert user_version(path) == 6

    db = await open_migrated(path, monkeypatch)
    try:
        assert await db.schema_version() == len(SHIPPED) >= 7
        store = JobStore(db, clock=lambda: 500.0)
        job = await store.get(1)
        assert job is not None and (job.deleted_at, job.deleted_by) == (None, None)
        assert await store.deletions_pending() == []
        assert await store.reposts(1) == []

        await store.add_repost(1, 20, 21)
        deleted = await store.delete_for_good(1, by=8)
        assert deleted is not None and (deleted.deleted_at, deleted.deleted_by) == (500.0, 8)
        assert [job.id for job in await store.deletions_pending()] == [1]
        [result] = await store.results(1)
        assert (result.url, result.expires_at, result.delivered_message_id) == (None, None, 12)
        assert await store.inputs(1) == ()
        assert await store.reposts(1) == [(20, 21)]
        # A second deletion keeps the first one's time and author.
        again = await store.delete_for_good(1, by=9)
        assert again is not None and (again.deleted_at, again.deleted_by) == (500.0, 8)
        await store.deletion_done(1)
        assert await store.deletions_pending() == []
    finally:
        await db.close()
