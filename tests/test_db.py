"""The SQLite store: pragmas, numbered migrations and PRAGMA user_version, refusal of a newer
schema, rollback of a failing migration, and write transactions."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import pytest

import bot.storage.db
from bot.storage.db import Database, DatabaseError, migrations
from tests.backends import execute

TABLES = {"jobs", "job_inputs", "results", "ledger", "limit_settings"}


def tables(path: Path) -> set[str]:
    with sqlite3.connect(path) as conn:
        rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
    return {name for (name,) in rows}


def user_version(path: Path) -> int:
    with sqlite3.connect(path) as conn:
        return conn.execute("PRAGMA user_version").fetchone()[0]


async def test_wal_and_foreign_keys_are_on(tmp_path: Path) -> None:
    db = await Database.open(tmp_path / "w.db")
    try:
        mode = await db.fetchone("PRAGMA journal_mode")
        keys = await db.fetchone("PRAGMA foreign_keys")
        assert mode is not None and mode[0] == "wal"
        assert keys is not None and keys[0] == 1
        # Foreign keys are enforced, not just declared: an input for no job is refused.
        with pytest.raises(sqlite3.IntegrityError):
            await execute(
                db, "INSERT INTO job_inputs (job_id, position, data_uri) VALUES (999, 0, 'data:x')"
            )
    finally:
        await db.close()
    assert (tmp_path / "w.db-wal").exists() or (tmp_path / "w.db").exists()
    with sqlite3.connect(tmp_path / "w.db") as conn:  # WAL is persistent in the file
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


async def test_migrations_are_applied_once_and_set_user_version(tmp_path: Path) -> None:
    shipped = migrations()
    assert [version for version, _, _ in shipped] == list(range(1, len(shipped) + 1))
    path = tmp_path / "sub" / "dir" / "m.db"  # missing folders are created
    db = await Database.open(path)
    try:
        assert await db.schema_version() == len(shipped)
        await execute(
            db,
            "INSERT INTO limit_settings (guild_id, setting, value, updated_at)"
            " VALUES (1, 'cooldown_seconds', '9', 0)",
        )
    finally:
        await db.close()
    assert user_version(path) == len(shipped)
    assert tables(path) >= TABLES
    # Reopening applies nothing again (a second CREATE TABLE would fail) and keeps the data.
    for _ in range(2):
        again = await Database.open(path)
        try:
            assert await again.schema_version() == len(shipped)
            row = await again.fetchone("SELECT value FROM limit_settings WHERE guild_id = 1")
            assert row is not None and row["value"] == "9"
        finally:
            await again.close()


async def test_in_memory_database_is_migrated() -> None:
    db = await Database.open(":memory:")
    try:
        assert await db.schema_version() == len(migrations())
        row = await db.fetchone("SELECT COUNT(*) FROM jobs")
        assert row is not None and row[0] == 0
    finally:
        await db.close()


async def test_a_newer_database_is_refused_with_both_versions(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    db = await Database.open(path)
    await db.close()
    newer = len(migrations()) + 41
    with sqlite3.connect(path) as conn:
        conn.execute(f"PRAGMA user_version = {newer}")
    with pytest.raises(DatabaseError) as caught:
        await Database.open(path)
    message = str(caught.value)
    assert f"schema version {newer}" in message
    assert f"only up to {len(migrations())}" in message
    assert str(path) in message
    assert user_version(path) == newer  # left untouched


async def test_a_failing_migration_rolls_back_and_keeps_the_earlier_ones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shipped = migrations()
    broken = (
        len(shipped) + 1,
        f"{len(shipped) + 1:04d}_broken.sql",
        "CREATE TABLE half_done (x INTEGER);\n"
        "INSERT INTO half_done VALUES (1);\n"
        "INSERT INTO no_such_table VALUES (1);\n",
    )
    monkeypatch.setattr(bot.storage.db, "migrations", lambda: [*shipped, broken])
    path = tmp_path / "broken.db"
    with pytest.raises(DatabaseError, match=r"migration \d{4}_broken\.sql failed.*no_such_table"):
        await Database.open(path)
    # The good migrations committed, the broken one left nothing behind.
    assert user_version(path) == len(shipped)
    assert "half_done" not in tables(path)
    assert tables(path) >= TABLES
    # Once fixed, the next open applies it.
    fixed = (broken[0], broken[1], "CREATE TABLE half_done (x INTEGER);\n")
    monkeypatch.setattr(bot.storage.db, "migrations", lambda: [*shipped, fixed])
    db = await Database.open(path)
    try:
        assert await db.schema_version() == len(shipped) + 1
    finally:
        await db.close()
    assert "half_done" in tables(path)


async def test_a_failing_first_migration_leaves_an_empty_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        bot.storage.db,
        "migrations",
        lambda: [(1, "0001_bad.sql", "CREATE TABLE a (x);\nSELECT * FROM nowhere;\n")],
    )
    path = tmp_path / "bad.db"
    with pytest.raises(DatabaseError, match=r"0001_bad\.sql"):
        await Database.open(path)
    assert user_version(path) == 0
    assert tables(path) == set()


async def test_transaction_commits_or_rolls_back(tmp_path: Path) -> None:
    db = await Database.open(tmp_path / "t.db")
    try:
        insert = (
            "INSERT INTO limit_settings (guild_id, setting, value, updated_at)"
            " VALUES (?, 'cooldown_seconds', '1', 0)"
        )
        async with db.transaction() as conn:
            await execute(conn, insert, (1,))
        with pytest.raises(RuntimeError):
            async with db.transaction() as conn:
                await execute(conn, insert, (2,))
                raise RuntimeError("boom")
        rows = await db.fetchall("SELECT guild_id FROM limit_settings ORDER BY guild_id")
        assert [row["guild_id"] for row in rows] == [1]
        # The connection is usable again after the rollback.
        await execute(db, insert, (3,))
        rows = await db.fetchall("SELECT guild_id FROM limit_settings ORDER BY guild_id")
        assert [row["guild_id"] for row in rows] == [1, 3]
    finally:
        await db.close()


async def test_an_unopenable_path_is_a_database_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(DatabaseError):
        await Database.open(blocker / "db.sqlite")


# --- group commit ------------------------------------------------------------------------------


def _insert_setting(raw: sqlite3.Connection, guild: int, fail: bool) -> int:
    raw.execute(
        "INSERT INTO limit_settings (guild_id, role_id, setting, value, updated_at)"
        " VALUES (?, 0, 'x', '1', 0)",
        (guild,),
    )
    if fail:
        raise ValueError(f"write {guild} fails after its insert")
    return guild


async def test_concurrent_writes_commit_together_and_a_failing_one_alone_is_undone(
    tmp_path: Path,
) -> None:
    db = await Database.open(tmp_path / "g.db")
    try:
        outcomes = await asyncio.gather(
            *(db.write(_insert_setting, guild, guild % 10 == 3) for guild in range(100)),
            return_exceptions=True,
        )
        failed = [g for g, o in enumerate(outcomes) if isinstance(o, ValueError)]
        assert failed == list(range(3, 100, 10))
        assert [o for o in outcomes if not isinstance(o, Exception)] == [
            g for g in range(100) if g % 10 != 3
        ]
        rows = await db.fetchall("SELECT guild_id FROM limit_settings ORDER BY guild_id")
        assert [r[0] for r in rows] == [g for g in range(100) if g % 10 != 3]
    finally:
        await db.close()


async def test_a_write_cancelled_while_waiting_is_never_run(tmp_path: Path) -> None:
    db = await Database.open(tmp_path / "c.db")
    try:
        async with db.transaction():  # holds the lock: the next writes wait
            waiting = asyncio.create_task(db.write(_insert_setting, 1, False))
            await asyncio.sleep(0.01)
            waiting.cancel()
            later = asyncio.create_task(db.write(_insert_setting, 2, False))
            await asyncio.sleep(0.01)
        assert await later == 2
        with pytest.raises(asyncio.CancelledError):
            await waiting
        rows = await db.fetchall("SELECT guild_id FROM limit_settings")
        assert [r[0] for r in rows] == [2]
    finally:
        await db.close()


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
            await execute(
                db,
                "INSERT INTO limit_settings (guild_id, role_id, setting, value, updated_at)"
                " VALUES (?, 0, 'blob', ?, 0)",
                (guild, blob),
            )
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
    monkeypatch.setattr(bot.storage.db.Checkpointer, "INTERVAL", 0.02)
    monkeypatch.setattr(bot.storage.db.Checkpointer, "RESTART_FRAMES", 100)
    path = tmp_path / "busy.db"
    db = await Database.open(path)
    blob = "y" * 3000
    try:
        for start in range(0, 6000, 50):  # ~6,000 writes of a page or two, back to back
            await asyncio.gather(
                *(
                    db.write(
                        lambda raw, guild=guild: raw.execute(
                            "INSERT INTO limit_settings (guild_id, role_id, setting, value,"
                            " updated_at) VALUES (?, 0, 'blob', ?, 0)",
                            (guild, blob),
                        )
                    )
                    for guild in range(start, start + 50)
                )
            )
        wal = Path(f"{path}-wal").stat().st_size
        assert wal < 10_000_000, f"the WAL grew to {wal} bytes"  # ~30 MB if never restarted
    finally:
        await db.close()


async def test_a_transaction_cancelled_at_its_begin_leaves_nothing_open(tmp_path: Path) -> None:
    """aiosqlite runs a queued BEGIN even when its caller was cancelled meanwhile; the open
    transaction must not outlive the cancelled block, or every later write would fail."""
    db = await Database.open(tmp_path / "x.db")
    try:
        for delay in (0, 0, 0.0001, 0.001):

            async def use() -> None:
                async with db.transaction() as conn:
                    await execute(conn, "SELECT 1")
                    await asyncio.sleep(1)

            task = asyncio.create_task(use())
            await asyncio.sleep(delay)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert await db.write(_insert_setting, 1, False) == 1
            await execute(db, "DELETE FROM limit_settings")
    finally:
        await db.close()


async def test_a_transaction_left_open_does_not_block_later_writes(tmp_path: Path) -> None:
    db = await Database.open(tmp_path / "y.db")
    try:
        await bot.storage.db.call(
            db._conn, lambda raw: raw.execute("BEGIN IMMEDIATE")
        )  # a stray one
        assert await db.write(_insert_setting, 5, False) == 5
        async with db.transaction() as conn:
            await execute(conn, "DELETE FROM limit_settings")
        assert await db.fetchall("SELECT * FROM limit_settings") == []
    finally:
        await db.close()


async def test_a_write_alone_in_its_batch_that_fails_is_undone(tmp_path: Path) -> None:
    """A batch of one runs without a savepoint: its failure rolls the whole transaction back,
    and the next write starts clean."""
    db = await Database.open(tmp_path / "one.db")
    try:
        with pytest.raises(ValueError, match="write 7 fails"):
            await db.write(_insert_setting, 7, True)
        assert await db.write(_insert_setting, 8, False) == 8
        rows = await db.fetchall("SELECT guild_id FROM limit_settings")
        assert [r[0] for r in rows] == [8]
    finally:
        await db.close()


async def test_settings_changes_change_the_servers_policy_version(tmp_path: Path) -> None:
    """Any change to a server's rows gives it a new version; a rolled-back change leaves the
    version it had, and the next change does not land on the one the rollback took away."""
    db = await Database.open(tmp_path / "v.db")

    async def versions() -> dict[int, int]:
        found = await db.fetchall("SELECT guild_id, version FROM policy_versions")
        return {row[0]: row[1] for row in found}

    try:
        await execute(
            db,
            "INSERT INTO limit_settings (guild_id, setting, value, updated_at)"
            " VALUES (1, 'max_n', '2', 0), (2, 'max_n', '3', 0)",
        )
        first = await versions()
        assert set(first) == {1, 2}
        await execute(db, "UPDATE limit_settings SET value = '4' WHERE guild_id = 1")
        second = await versions()
        assert second[1] != first[1] and second[2] == first[2]
        with pytest.raises(RuntimeError):
            async with db.transaction() as conn:
                await execute(conn, "UPDATE limit_settings SET value = '1' WHERE guild_id = 1")
                rolled_back = (await versions_in(conn))[1]
                raise RuntimeError("undo")
        assert await versions() == second
        await execute(db, "UPDATE limit_settings SET value = '3' WHERE guild_id = 1")
        third = await versions()
        assert third[1] not in (second[1], rolled_back)
        await execute(db, "UPDATE limit_settings SET guild_id = 3 WHERE guild_id = 2")
        fourth = await versions()
        assert fourth[2] != third[2] and set(fourth) == {1, 2, 3}
        await execute(db, "DELETE FROM limit_settings")
        last = await versions()
        assert all(last[g] != fourth[g] for g in (1, 3)) and last[2] == fourth[2]
    finally:
        await db.close()


async def versions_in(conn: Any) -> dict[int, int]:
    cursor = await execute(conn, "SELECT guild_id, version FROM policy_versions")
    return {row[0]: row[1] for row in await cursor.fetchall()}


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
                UNNOTIFIED_SQL.format(states="('failed')"),
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


def _fill(raw: sqlite3.Connection, tag: int) -> int:
    raw.execute("INSERT INTO blobs (tag, data) VALUES (?, ?)", (tag, "v" * 200_000))
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
            db.write(_insert_setting, 2, False), db.write(_fill, 3), return_exceptions=True
        )
        assert isinstance(outcomes[1], sqlite3.OperationalError) and "full" in str(outcomes[1])
        # Whether SQLite undid only the statement or the whole transaction, each caller's
        # answer matches what is stored.
        kept = outcomes[0] == 2
        assert kept or ("full" in str(outcomes[0])), outcomes
        await db.fetchone("PRAGMA max_page_count = 1000000")
        assert await db.write(_insert_setting, 4, False) == 4
        rows = await db.fetchall("SELECT guild_id FROM limit_settings")
        assert [r[0] for r in rows] == ([2, 4] if kept else [4])
    finally:
        await db.close()


async def open_migrated(
    path: Path, monkeypatch: pytest.MonkeyPatch, upto: int | None = None
) -> Database:
    """The database at `path` opened with the shipped migrations up to `upto` (all if None)."""
    shipped = migrations()
    monkeypatch.setattr(bot.storage.db, "migrations", lambda: shipped[:upto])
    return await Database.open(path)


async def test_a_version_5_database_with_settings_and_jobs_moves_to_lean_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Migration 0006 on a database in use: settings keep their values and every server that
    has some gets a policy version; jobs and the ledger are untouched; the window and
    cooldown queries answer as before through the new partial indexes."""
    from bot.accounting import quota as limits

    shipped = migrations()
    path = tmp_path / "v5.db"
    db = await open_migrated(path, monkeypatch, 5)
    async with db.transaction() as conn:
        await execute(
            conn,
            "INSERT INTO limit_settings (guild_id, role_id, setting, value, updated_at)"
            " VALUES (1, 0, 'max_n', '2', 0), (1, 9, 'max_n', '4', 0), (2, 0, 'max_n', '3', 0)",
        )
        for job in (1, 2):
            await execute(
                conn,
                "INSERT INTO jobs (id, state, kind, model, params, n, user_id, guild_id,"
                " created_at, updated_at, finished_at) VALUES (?, 'done', 'text-to-image',"
                " 'wan2.6-t2i', '{\"prompt\": \"x\"}', 2, 7, 1, ?, ?, ?)",
                (job, 100.0 * job, 100.0 * job, 100.0 * job + 5),
            )
            for entry, images in (("reserve", 2), ("charge", 1), ("refund", 1)):
                await execute(
                    conn,
                    "INSERT INTO ledger (job_id, user_id, guild_id, entry, images, created_at)"
                    " VALUES (?, 7, 1, ?, ?, ?)",
                    (job, entry, images, 100.0 * job + (entry != "reserve") * 5),
                )
    await db.close()
    assert user_version(path) == 5

    db = await open_migrated(path, monkeypatch)
    try:
        assert await db.schema_version() == len(shipped) >= 6
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
        assert await db.schema_version() == len(migrations()) >= 7
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
