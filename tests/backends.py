"""The two storage backends for the store's contract tests: SQLite in a temporary folder, and
PostgreSQL in a schema of its own per test (dropped afterwards) in the database that
`WANBOT_TEST_POSTGRES` names (default: `postgresql://root@127.0.0.1:5432/test`).

Without a reachable PostgreSQL the PostgreSQL cases skip with one line saying how to run them,
unless `CI` is set: then they fail, since CI must run them."""

from __future__ import annotations

import functools
import os
import sqlite3
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest

from bot.accounting.quota import Quota
from bot.jobs.model import Job, JobState
from bot.jobs.store import JobStore
from bot.storage.db import Conn, Database

POSTGRES_URL = os.environ.get("WANBOT_TEST_POSTGRES", "postgresql://root@127.0.0.1:5432/test")
BACKENDS = ("sqlite", "postgresql")
# What a broken constraint raises, whichever backend.
INTEGRITY_ERRORS = (sqlite3.IntegrityError, psycopg.IntegrityError)


@functools.cache
def _postgres_problem() -> str | None:
    try:
        with psycopg.connect(POSTGRES_URL, connect_timeout=3):
            return None
    except psycopg.Error as exc:
        return str(exc).strip().splitlines()[0]


def postgres_url() -> str:
    """The test database's URL, or skip (fail under CI) when it cannot be reached."""
    problem = _postgres_problem()
    if problem is not None:
        message = (
            f"PostgreSQL at {POSTGRES_URL} is not reachable ({problem}); start it "
            "(pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start) or set "
            "WANBOT_TEST_POSTGRES=postgresql://user@host:port/db to run these cases"
        )
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return POSTGRES_URL


def with_password(url: str, password: str) -> str:
    """The URL with `password` in it (trust auth ignores it: for tests that it never shows)."""
    parts = urlsplit(url)
    netloc = f"{parts.username or 'root'}:{password}@{parts.hostname}:{parts.port or 5432}"
    return urlunsplit(parts._replace(netloc=netloc))


def with_search_path(url: str, schema: str) -> str:
    joiner = "&" if "?" in url else "?"
    return f"{url}{joiner}options=-csearch_path%3D{schema}"


@asynccontextmanager
async def postgres_schema(base: str | None = None) -> AsyncIterator[str]:
    """A URL whose tables live in a new, empty schema of `base`'s database (default: the test
    database), dropped on the way out."""
    url = base or postgres_url()
    schema = f"t_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute(f"CREATE SCHEMA {schema}")
    try:
        yield with_search_path(url, schema)
    finally:
        with psycopg.connect(url, autocommit=True) as admin:
            admin.execute(f"DROP SCHEMA {schema} CASCADE")


@asynccontextmanager
async def database_target(backend: str, folder: Path) -> AsyncIterator[str]:
    """Where a new database of `backend` goes: a file in `folder`, or a fresh schema."""
    if backend == "sqlite":
        yield str(folder / "wanbot.db")
        return
    async with postgres_schema() as url:
        yield url


@asynccontextmanager
async def fresh_database(backend: str, folder: Path) -> AsyncIterator[Database]:
    async with database_target(backend, folder) as target:
        db = await Database.open(target)
        try:
            yield db
        finally:
            await db.close()


def _execute(conn: Conn, sql: str, params: Sequence[Any]) -> int:
    return conn.execute(sql, params).rowcount


async def execute(db: Database, sql: str, params: Sequence[Any] = ()) -> int:
    """One statement in a transaction of its own; the rows it changed."""
    return await db.write(_execute, sql, tuple(params))


def insert_setting(conn: Conn, guild: int, fail: bool = False) -> int:
    """A write of one settings row for `guild`; with `fail`, it raises after the insert."""
    conn.execute(
        "INSERT INTO limit_settings (guild_id, role_id, setting, value, updated_at)"
        " VALUES (?, 0, 'x', '1', 0)",
        (guild,),
    )
    if fail:
        raise ValueError(f"write {guild} fails after its insert")
    return guild


def end_job(
    conn: Conn, store: JobStore, quota: Quota, job: Job, state: JobState, charged: int
) -> None:
    """End a job the way the engine does, in one transaction: its steps to `state` (through
    submitted and delivering to done), and its settlement."""
    if state is JobState.DONE:
        for step in (JobState.SUBMITTED, JobState.DELIVERING):
            job = store.transition(conn, job.id, step)
    quota.settle(conn, store.transition(conn, job.id, state), charged)
