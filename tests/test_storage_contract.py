"""The store's contract, on each backend: numbered migrations applied once, refusal of a newer
schema, rollback of a failing migration, `write` as one transaction, the settings' policy
versions, constraint errors; and PostgreSQL's password kept out of every name and message."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest

import bot.storage.db
import bot.storage.postgres
from bot.storage.db import Conn, Database, DatabaseError, migrations
from tests.backends import (
    INTEGRITY_ERRORS,
    database_target,
    execute,
    fresh_database,
    insert_setting,
    postgres_schema,
    postgres_url,
)

TABLES = {"jobs", "job_inputs", "results", "ledger", "limit_settings", "policy_versions"}
SCHEMA_TABLE = "wanbot_schema"  # PostgreSQL's record of the applied migrations
SECRET = "s3cretpw"


# --- looking at a database without the store ---------------------------------------------------


def _query(backend: str, target: str, sql: str) -> list[tuple[Any, ...]]:
    if backend == "sqlite":
        with sqlite3.connect(target) as conn:
            return conn.execute(sql).fetchall()
    with psycopg.connect(target) as conn:
        return conn.execute(sql).fetchall()


def tables(backend: str, target: str) -> set[str]:
    sql = (
        "SELECT name FROM sqlite_master WHERE type = 'table'"
        if backend == "sqlite"
        else "SELECT table_name FROM information_schema.tables"
        " WHERE table_schema = current_schema()"
    )
    return {name for (name,) in _query(backend, target, sql)} - {SCHEMA_TABLE}


def stored_version(backend: str, target: str) -> int:
    if backend == "sqlite":
        return int(_query(backend, target, "PRAGMA user_version")[0][0])
    [(version,)] = _query(backend, target, "SELECT MAX(version) FROM wanbot_schema")
    return int(version or 0)


def set_version(backend: str, target: str, version: int) -> None:
    if backend == "sqlite":
        with sqlite3.connect(target) as conn:
            conn.execute(f"PRAGMA user_version = {version}")
        return
    with psycopg.connect(target) as conn:
        conn.execute("INSERT INTO wanbot_schema (version) VALUES (%s)", (version,))


def patch_migrations(
    monkeypatch: pytest.MonkeyPatch, change: Callable[[list[tuple[int, str, str]]], list[Any]]
) -> None:
    """The backends see `change(shipped)` as their migrations."""

    def patched(dialect: str = "sqlite") -> list[tuple[int, str, str]]:
        return change(migrations(dialect))  # the shipped ones, however often patched

    monkeypatch.setattr(bot.storage.db, "migrations", patched)


def with_migration(sql: str) -> Callable[[list[tuple[int, str, str]]], list[Any]]:
    def change(known: list[tuple[int, str, str]]) -> list[tuple[int, str, str]]:
        version = len(known) + 1
        return [*known, (version, f"{version:04d}_extra.sql", sql)]

    return change


# --- migrations --------------------------------------------------------------------------------


async def test_migrations_are_applied_once_and_set_the_schema_version(
    backend: str, tmp_path: Path
) -> None:
    async with database_target(backend, tmp_path) as target:
        db = await Database.open(target)
        shipped = migrations(db.dialect)
        assert db.dialect == backend
        assert [version for version, _, _ in shipped] == list(range(1, len(shipped) + 1))
        try:
            assert await db.schema_version() == len(shipped)
            await execute(
                db,
                "INSERT INTO limit_settings (guild_id, setting, value, updated_at)"
                " VALUES (1, 'cooldown_seconds', '9', 0)",
            )
        finally:
            await db.close()
        assert stored_version(backend, target) == len(shipped)
        assert tables(backend, target) >= TABLES
        # Reopening applies nothing again (a second CREATE TABLE would fail) and keeps the data.
        for _ in range(2):
            again = await Database.open(target)
            try:
                assert await again.schema_version() == len(shipped)
                row = await again.fetchone("SELECT value FROM limit_settings WHERE guild_id = 1")
                assert row is not None and row["value"] == "9"
            finally:
                await again.close()


async def test_a_newer_database_is_refused_with_both_versions(backend: str, tmp_path: Path) -> None:
    async with database_target(backend, tmp_path) as target:
        db = await Database.open(target)
        name, latest = db.name, len(migrations(db.dialect))
        await db.close()
        newer = latest + 41
        set_version(backend, target, newer)
        with pytest.raises(DatabaseError) as caught:
            await Database.open(target)
        message = str(caught.value)
        assert f"schema version {newer}" in message
        assert f"only up to {latest}" in message
        assert name in message
        assert stored_version(backend, target) == newer  # left untouched


async def test_a_failing_migration_rolls_back_and_keeps_the_earlier_ones(
    backend: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shipped = len(migrations(backend))
    patch_migrations(
        monkeypatch,
        with_migration(
            "CREATE TABLE half_done (x INTEGER);\n"
            "INSERT INTO half_done VALUES (1);\n"
            "INSERT INTO no_such_table VALUES (1);\n"
        ),
    )
    async with database_target(backend, tmp_path) as target:
        with pytest.raises(
            DatabaseError, match=r"(?s)migration \d{4}_extra\.sql failed.*no_such_table"
        ):
            await Database.open(target)
        # The good migrations committed, the broken one left nothing behind.
        assert stored_version(backend, target) == shipped
        assert "half_done" not in tables(backend, target)
        assert tables(backend, target) >= TABLES
        # Once fixed, the next open applies it.
        patch_migrations(monkeypatch, with_migration("CREATE TABLE half_done (x INTEGER);\n"))
        db = await Database.open(target)
        try:
            assert await db.schema_version() == shipped + 1
        finally:
            await db.close()
        assert "half_done" in tables(backend, target)


async def test_a_failing_first_migration_leaves_an_empty_database(
    backend: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    patch_migrations(
        monkeypatch,
        lambda _: [(1, "0001_bad.sql", "CREATE TABLE a (x INTEGER);\nSELECT * FROM nowhere;\n")],
    )
    async with database_target(backend, tmp_path) as target:
        with pytest.raises(DatabaseError, match=r"0001_bad\.sql"):
            await Database.open(target)
        assert stored_version(backend, target) == 0
        assert tables(backend, target) == set()


# --- write -------------------------------------------------------------------------------------

INSERT = (
    "INSERT INTO limit_settings (guild_id, setting, value, updated_at)"
    " VALUES (?, 'cooldown_seconds', '1', 0)"
)


def _insert_then_fail(conn: Conn, guilds: list[int]) -> None:
    for guild in guilds:
        conn.execute(INSERT, (guild,))
    raise RuntimeError("boom")


def _insert_all(conn: Conn, guilds: list[int]) -> int:
    for guild in guilds:
        conn.execute(INSERT, (guild,))
    return len(guilds)


async def guilds(db: Database) -> list[int]:
    rows = await db.fetchall("SELECT guild_id FROM limit_settings ORDER BY guild_id")
    return [row["guild_id"] for row in rows]


async def test_write_commits_on_return_and_rolls_back_whole_on_exception(
    backend: str, tmp_path: Path
) -> None:
    async with fresh_database(backend, tmp_path) as db:
        assert await db.write(_insert_all, [1, 2]) == 2
        assert await guilds(db) == [1, 2]
        with pytest.raises(RuntimeError, match="boom"):
            await db.write(_insert_then_fail, [3, 4, 5])
        assert await guilds(db) == [1, 2]
        # The database is usable again after the rollback.
        assert await db.write(_insert_all, [6]) == 1
        assert await guilds(db) == [1, 2, 6]


async def test_concurrent_writes_all_land_and_a_failing_one_leaves_nothing(
    backend: str, tmp_path: Path
) -> None:
    async with fresh_database(backend, tmp_path) as db:
        outcomes = await asyncio.gather(
            *(db.write(insert_setting, guild, guild % 10 == 3) for guild in range(100)),
            return_exceptions=True,
        )
        failed = [g for g, o in enumerate(outcomes) if isinstance(o, ValueError)]
        assert failed == list(range(3, 100, 10))
        kept = [g for g in range(100) if g % 10 != 3]
        assert [o for o in outcomes if not isinstance(o, BaseException)] == kept
        assert await guilds(db) == kept


async def test_constraint_violations_raise_integrity_errors(backend: str, tmp_path: Path) -> None:
    async with fresh_database(backend, tmp_path) as db:
        # Foreign keys are enforced, not just declared: an input for no job is refused.
        with pytest.raises(INTEGRITY_ERRORS):
            await execute(
                db, "INSERT INTO job_inputs (job_id, position, data_uri) VALUES (999, 0, 'data:x')"
            )
        await db.write(insert_setting, 1)
        with pytest.raises(INTEGRITY_ERRORS):  # the same setting twice
            await db.write(insert_setting, 1)
        with pytest.raises(INTEGRITY_ERRORS):  # a state no job can be in
            await execute(
                db,
                "INSERT INTO jobs (state, kind, model, params, n, user_id, created_at,"
                " updated_at) VALUES ('lost', 'edit', 'm', '{}', 1, 7, 0, 0)",
            )
        with pytest.raises(INTEGRITY_ERRORS):  # a missing value
            await execute(db, "INSERT INTO limit_settings (guild_id, setting) VALUES (2, 'x')")
        assert await guilds(db) == [1]
        assert (await db.fetchone("SELECT COUNT(*) FROM jobs"))[0] == 0


def _piped(conn: Conn, guilds: list[int], duplicate: bool) -> tuple[int, int, int]:
    """Before and in pipeline mode: reads, rowcounts and writes whose results nobody reads;
    with `duplicate`, a write that breaks a constraint after the last read."""
    conn.execute(INSERT, (guilds[0],))
    conn.pipeline()
    for guild in guilds[1:]:
        conn.execute(INSERT, (guild,))
    changed = conn.execute("UPDATE limit_settings SET value = '2' WHERE guild_id > 0").rowcount
    counted = conn.execute("SELECT COUNT(*) FROM limit_settings").fetchone()[0]
    listed = len(list(conn.execute("SELECT guild_id FROM limit_settings")))
    if duplicate:
        conn.execute(INSERT, (guilds[0],))  # its error shows at the COMMIT on PostgreSQL
    return changed, counted, listed


async def test_a_pipeline_reads_as_before_and_commits_or_rolls_back_whole(
    backend: str, tmp_path: Path
) -> None:
    async with fresh_database(backend, tmp_path) as db:
        assert await db.write(_piped, [1, 2, 3], False) == (3, 3, 3)
        assert await guilds(db) == [1, 2, 3]
        with pytest.raises(INTEGRITY_ERRORS):
            await db.write(_piped, [4, 5], True)
        with pytest.raises(RuntimeError, match="boom"):  # raised in pipeline mode
            await db.write(lambda conn: (conn.pipeline(), _insert_then_fail(conn, [6])))
        assert await guilds(db) == [1, 2, 3]
        assert await db.write(_insert_all, [7]) == 1  # the connection is usable again
        assert await guilds(db) == [1, 2, 3, 7]


# --- policy versions ---------------------------------------------------------------------------


def _versions_in(conn: Conn) -> dict[int, int]:
    rows = conn.execute("SELECT guild_id, version FROM policy_versions").fetchall()
    return {row[0]: row[1] for row in rows}


def _change_then_undo(conn: Conn, seen: dict[int, int]) -> None:
    conn.execute("UPDATE limit_settings SET value = '1' WHERE guild_id = 1")
    seen.update(_versions_in(conn))
    raise RuntimeError("undo")


async def test_settings_changes_change_the_servers_policy_version(
    backend: str, tmp_path: Path
) -> None:
    """Any change to a server's rows gives it a new version; a rolled-back change leaves the
    version it had, and the next change does not land on the one the rollback took away."""
    async with fresh_database(backend, tmp_path) as db:

        async def versions() -> dict[int, int]:
            return await db.write(_versions_in)

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
        rolled_back: dict[int, int] = {}
        with pytest.raises(RuntimeError, match="undo"):
            await db.write(_change_then_undo, rolled_back)
        assert rolled_back[1] != second[1]  # the change was seen inside its transaction
        assert await versions() == second
        await execute(db, "UPDATE limit_settings SET value = '3' WHERE guild_id = 1")
        third = await versions()
        assert third[1] not in (second[1], rolled_back[1])
        await execute(db, "UPDATE limit_settings SET guild_id = 3 WHERE guild_id = 2")
        fourth = await versions()
        assert fourth[2] != third[2] and set(fourth) == {1, 2, 3}
        await execute(db, "DELETE FROM limit_settings")
        last = await versions()
        assert all(last[g] != fourth[g] for g in (1, 3)) and last[2] == fourth[2]


# --- PostgreSQL: the password stays secret -----------------------------------------------------


def with_password(
    url: str, *, port: int | None = None, database: str | None = None
) -> tuple[str, str]:
    """`url` (on another port or database if given) with a password, and that password: its
    own if it has one, else SECRET (the test server trusts loopback, so any password connects).
    """
    parts = urlsplit(url)
    password = parts.password or SECRET
    netloc = f"{parts.username or 'postgres'}:{password}@{parts.hostname}"
    if port or parts.port:
        netloc += f":{port or parts.port}"
    if database is not None:
        parts = parts._replace(path=f"/{database}", query="")
    return urlunsplit(parts._replace(netloc=netloc)), password


async def test_postgres_never_shows_its_password(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    async with postgres_schema() as url:
        secret_url, password = with_password(url)
        db = await Database.open(secret_url)
        try:
            assert await db.schema_version() == len(migrations("postgresql"))
            shown = (repr(db), str(db), db.name)
        finally:
            await db.close()
    parts = urlsplit(secret_url)
    assert db.name == f"postgresql://{parts.username}@{parts.hostname}:{parts.port}{parts.path}"
    for text in shown:
        assert password not in text, text
    assert password not in caplog.text


@pytest.mark.parametrize("where", ["unreachable port", "missing database"])
async def test_postgres_that_cannot_be_used_says_why_without_the_password(
    where: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    monkeypatch.setattr(bot.storage.postgres, "CONNECT_TIMEOUT", 1.0)
    if where == "unreachable port":  # nothing listens on port 1: no server needed
        url, password = with_password("postgresql://root@127.0.0.1/test", port=1)
    else:
        url, password = with_password(postgres_url(), database="no_such_wanbot_db")
    with pytest.raises(DatabaseError) as caught:
        await Database.open(url)
    message = str(caught.value)
    assert "Check DATABASE_URL" in message
    assert "cannot connect to the database at postgresql://" in message
    assert (":1/test" if where == "unreachable port" else "no_such_wanbot_db") in message
    assert password not in message
    assert password not in caplog.text


async def test_postgres_runs_a_lone_statement_again_after_a_serialization_failure() -> None:
    """A lone statement (`fetchone`: a reservation in the server is one) that PostgreSQL
    aborts as a deadlock or a serialization failure is run again, as a transaction is: here
    it fails the first time it runs (a sequence counts the runs: it is not rolled back)."""
    async with postgres_schema() as url:
        db = await Database.open(url)
        try:
            await execute(db, "CREATE SEQUENCE runs")
            await execute(
                db,
                "CREATE FUNCTION flaky() RETURNS TEXT LANGUAGE plpgsql AS $$ BEGIN"
                " IF nextval('runs') = 1 THEN"
                " RAISE EXCEPTION 'conflict' USING ERRCODE = 'serialization_failure';"
                " END IF; RETURN 'done'; END $$",
            )
            assert (await db.fetchone("SELECT flaky()"))[0] == "done"
            assert (await db.fetchone("SELECT last_value FROM runs"))[0] == 2
        finally:
            await db.close()


async def test_postgres_lone_statement_does_not_queue_behind_transactions() -> None:
    """A lone statement (a `/quota` read, a reservation in the server) has connections of its
    own: it is answered while every transaction connection is busy, here each waiting for a
    lock the test holds, and those transactions still finish once it is released."""
    async with postgres_schema() as url:
        db = await Database.open(url)
        try:
            with psycopg.connect(url, autocommit=True) as holder:
                holder.execute("SELECT pg_advisory_lock(4242)")

                def wait_for_the_lock(conn: Conn) -> int:
                    conn.execute("SELECT pg_advisory_xact_lock(4242)")
                    return 1

                busy = [
                    asyncio.ensure_future(db.write(wait_for_the_lock))
                    for _ in range(bot.storage.postgres.POOL_SIZE)
                ]
                try:
                    waiting = (
                        "SELECT COUNT(*) FROM pg_locks WHERE locktype = 'advisory'"
                        " AND objid = 4242 AND NOT granted"
                    )
                    for _ in range(500):  # until every transaction waits for the lock
                        [(count,)] = holder.execute(waiting).fetchall()
                        if count == len(busy):
                            break
                        await asyncio.sleep(0.02)
                    assert count == len(busy)
                    answer = await asyncio.wait_for(db.fetchone("SELECT 1 + 1"), timeout=10)
                    assert answer[0] == 2
                    assert not any(task.done() for task in busy)
                finally:
                    holder.execute("SELECT pg_advisory_unlock(4242)")
                assert await asyncio.gather(*busy) == [1] * len(busy)
        finally:
            await db.close()
