"""`python -m bot migrate-db`: a server's SQLite history, made by the real code paths (quota
reservations and settlements, server settings with their audit rows, results, a repost, a
deletion), copied into a fresh PostgreSQL schema reads the same there: every row, the ledger's
sums, a member's /quota standing, a server's usage report and policy. New rows on PostgreSQL get
ids past the copied ones; a target that holds anything, or a copy that does not match, leaves
the target as it was; the password of the URL is never printed."""

from __future__ import annotations

import base64
import random
import sqlite3
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest

from bot.accounting.policy import PolicyStore
from bot.accounting.quota import Quota, policy_defaults
from bot.accounting.usage import period_bounds, usage_report
from bot.dashscope.results import GeneratedImage, ImageFailure, TaskResult, TaskState
from bot.jobs.model import Job, JobState, NewJob
from bot.jobs.store import JobStore
from bot.storage.copy import TABLES, CopyMismatch, TargetNotEmpty, copy_database
from bot.storage.db import Database, DatabaseError, migrations
from bot.storage.postgres import safe_name
from tests.backends import end_job, execute, postgres_schema, postgres_url, with_password
from tests.conftest import run_cli
from tests.engine_helpers import NO_LIMITS, FakeClock, image_request

GUILD, OTHER_GUILD = 700, 701
ADMIN, STAFF_ROLE = 1, 31
MEMBERS = (11, 12, 13)
PRICES = {"wan2.6-t2i": 0.20, "wan2.2-t2i-flash": 0.14, "wan2.5-i2i-preview": 0.25}
EDIT_MODEL = "wan2.5-i2i-preview"
PASSWORD = "Pg-Secret-4c1d9e"  # trust auth ignores it; it must still never be printed
START = datetime(2026, 3, 10, 9, 0, tzinfo=UTC).timestamp()
# Each table's rows in a fixed order, to compare the two sides row by row.
ORDER = {table.name: table.order for table in TABLES}
LEDGER_SUMS = (
    "SELECT entry, SUM(images) AS images, SUM(images * unit_price) AS money FROM ledger"
    " GROUP BY entry ORDER BY entry"
)


@dataclass
class Side:
    """The accounting objects over one database, with the test's clock."""

    db: Database
    store: JobStore
    policy: PolicyStore
    quota: Quota

    @classmethod
    def on(cls, db: Database, clock: FakeClock) -> Side:
        store = JobStore(db, clock)
        policy = PolicyStore(db, policy_defaults(NO_LIMITS), clock)
        return cls(
            db, store, policy, Quota(db, store, NO_LIMITS, clock, policy=policy, prices=PRICES)
        )

    async def reserve(
        self,
        user: int,
        guild: int | None,
        *,
        n: int = 1,
        model: str = "wan2.6-t2i",
        images: tuple[str, ...] = (),
        role_ids: tuple[int, ...] = (),
        parent_job_id: int | None = None,
    ) -> Job:
        request = replace(image_request(f"job of {user}", n=n, model=model), images=images)
        new = NewJob(request, user, guild, 900, role_ids=role_ids, parent_job_id=parent_job_id)
        return await self.quota.reserve(new)

    async def end(self, job: Job, state: JobState, charged: int = 0) -> None:
        await self.db.write(end_job, self.store, self.quota, job, state, charged)


def data_uri(size: int, seed: int) -> str:
    payload = random.Random(seed).randbytes(size)
    return "data:image/png;base64," + base64.b64encode(payload).decode()


async def build_history(path: Path, clock: FakeClock) -> None:
    """Three days of a server's life, through the code the bot runs."""
    db = await Database.open(path)
    side = Side.on(db, clock)
    try:
        await side.policy.set(GUILD, "monthly_budget", "100", by_user=ADMIN)
        await side.policy.set(GUILD, "images_per_user_day", "40", by_user=ADMIN)
        await side.policy.set(GUILD, "images_per_user_day", "60", by_user=ADMIN, role_id=STAFF_ROLE)
        await side.policy.set(OTHER_GUILD, "max_n", "2", by_user=ADMIN)
        await side.policy.set(OTHER_GUILD, "default_model", "wan2.2-t2i-flash", by_user=ADMIN)
        await side.policy.reset(OTHER_GUILD, "max_n", by_user=ADMIN)
        first: Job | None = None
        for day in range(3):
            for index, user in enumerate(MEMBERS):
                done = await side.reserve(user, GUILD, n=1 + (index + day) % 4)
                first = first or done
                await side.end(done, JobState.DONE, charged=max(1, done.n - 1))
                result = TaskResult(
                    state=TaskState.SUCCEEDED,
                    task_id=f"task-{done.id}",
                    images=(GeneratedImage(f"https://dashscope.example/{done.id}.png"),),
                    failures=(ImageFailure("DataInspectionFailed", "blocked"),),
                )
                await db.write(side.store.save_results, done.id, result, clock() + 86_400)
                await db.write(side.store.mark_delivered, done.id, 0, 5_000 + done.id)
                failed = await side.reserve(user, OTHER_GUILD, model="wan2.2-t2i-flash", n=2)
                await side.end(failed, JobState.FAILED)
                edit = await side.reserve(
                    user,
                    GUILD,
                    model=EDIT_MODEL,
                    images=(data_uri(150_000, day * 10 + index), data_uri(20_000, index)),
                    role_ids=(STAFF_ROLE,),
                )
                await side.end(edit, JobState.CANCELLED)
                clock.advance(3_600)
            clock.advance(86_400 - 3 * 3_600)
        assert first is not None
        reroll = await side.reserve(MEMBERS[0], GUILD, n=2, parent_job_id=first.id)
        await side.store.add_repost(reroll.parent_job_id or 0, 901, 7_777)
        await side.store.delete_for_good(first.id, by=ADMIN)
        await side.reserve(MEMBERS[1], GUILD, n=3)  # still queued: holds its images
        await side.reserve(MEMBERS[2], None)  # a direct message: no server
        await execute(
            db,
            "INSERT INTO member_defaults (user_id, defaults, updated_at) VALUES (?, ?, ?)",
            (MEMBERS[0], '{"n": 2, "aspect": "16:9"}', clock()),
        )
        await execute(
            db,
            "INSERT INTO server_styles (guild_id, name, label, prompt_suffix, negative_prompt,"
            " model, created_by, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (GUILD, "noir", "Noir", "in film noir style", "colour", None, ADMIN, clock()),
        )
    finally:
        await db.close()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(START)


@pytest.fixture
async def history(tmp_path: Path, clock: FakeClock) -> Path:
    path = tmp_path / "wanbot.db"
    await build_history(path, clock)
    return path


@asynccontextmanager
async def opened(target: str | Path) -> AsyncIterator[Database]:
    db = await Database.open(target)
    try:
        yield db
    finally:
        await db.close()


async def table_rows(db: Database) -> dict[str, list[tuple[object, ...]]]:
    return {
        name: [tuple(row) for row in await db.fetchall(f"SELECT * FROM {name} ORDER BY {order}")]  # noqa: S608
        for name, order in ORDER.items()
    }


async def ledger_sums(db: Database) -> list[tuple[str, int, float]]:
    return [
        (row["entry"], int(row["images"]), round(float(row["money"]), 6))
        for row in await db.fetchall(LEDGER_SUMS)
    ]


async def counts(db: Database) -> dict[str, int]:
    return {name: len(rows) for name, rows in (await table_rows(db)).items()}


async def test_copy_keeps_every_row_sum_standing_report_and_policy(
    history: Path, clock: FakeClock
) -> None:
    async with postgres_schema() as url:
        report = await copy_database(history, url)
        async with opened(history) as source, opened(url) as target:
            before = await table_rows(source)
            after = await table_rows(target)
            assert all(before[name] for name in ORDER), "the history must fill every table"
            assert after == before  # every row, every column, ids kept
            assert report.tally.rows == {name: len(rows) for name, rows in before.items()}
            assert await ledger_sums(target) == await ledger_sums(source)
            assert report.tally.images == {
                entry: images for entry, images, _ in await ledger_sums(source)
            }
            assert (report.source_version, report.target_version) == (
                len(migrations("sqlite")),
                len(migrations("postgresql")),
            )

            sides = [Side.on(source, clock), Side.on(target, clock)]
            for user in MEMBERS:
                for guild, roles in ((GUILD, ()), (GUILD, (STAFF_ROLE,)), (OTHER_GUILD, ())):
                    old, new = [await s.quota.standing(user, guild, roles) for s in sides]
                    assert old == new
                    old_policy, new_policy = [
                        await s.policy.for_member(guild, roles) for s in sides
                    ]
                    assert old_policy == new_policy
            standing = await sides[1].quota.standing(MEMBERS[1], GUILD)
            assert standing.user_images > 0 and standing.spent > 0  # a real standing, not zeros
            start, end = period_bounds("30d", clock())
            for user in (None, *MEMBERS):
                old_report, new_report = [
                    await usage_report(db, GUILD, start, end, user_id=user)
                    for db in (source, target)
                ]
                assert old_report == new_report
                assert old_report.images > 0 and old_report.cancelled > 0

            # New rows on PostgreSQL take ids past the copied ones.
            new_side = sides[1]
            job = await new_side.reserve(MEMBERS[0], GUILD)
            await new_side.policy.set(GUILD, "cooldown_seconds", "0", by_user=ADMIN)
            for name, new_id in (
                ("jobs", job.id),
                ("ledger", (await target.fetchone("SELECT MAX(id) FROM ledger"))[0]),
                ("audit_log", (await target.fetchone("SELECT MAX(id) FROM audit_log"))[0]),
            ):
                assert new_id == max(row[0] for row in before[name]) + 1, name


async def test_a_target_holding_anything_is_refused_and_left_as_it_was(
    history: Path, tmp_path: Path, clock: FakeClock
) -> None:
    async with postgres_schema() as url:
        async with opened(url) as target:  # one server setting: three rows, no job
            await Side.on(target, clock).policy.set(GUILD, "max_n", "3", by_user=ADMIN)
            before = await table_rows(target)
        with pytest.raises(TargetNotEmpty) as refused:
            await copy_database(history, url)
        message = str(refused.value)
        assert "limit_settings: 1" in message and "audit_log: 1" in message
        assert "only into an empty database" in message and "Nothing was changed" in message
        async with opened(url) as target:
            assert await table_rows(target) == before


async def test_a_copy_that_does_not_match_is_rolled_back(history: Path) -> None:
    async with postgres_schema() as url:
        async with opened(url):  # migrated; then PostgreSQL drops every repost it is given
            pass
        with psycopg.connect(url, autocommit=True) as admin:
            admin.execute(
                "CREATE FUNCTION drop_row() RETURNS trigger LANGUAGE plpgsql AS"
                " $$ BEGIN RETURN NULL; END $$"
            )
            admin.execute(
                "CREATE TRIGGER drop_reposts BEFORE INSERT ON reposts"
                " FOR EACH ROW EXECUTE FUNCTION drop_row()"
            )
        with pytest.raises(CopyMismatch, match="reposts: 1 rows here, 0 there"):
            await copy_database(history, url)
        async with opened(url) as target:
            assert set((await counts(target)).values()) == {0}


async def test_an_older_source_is_migrated_first_and_a_newer_one_refused(
    tmp_path: Path,
) -> None:
    old = tmp_path / "old.db"
    raw = sqlite3.connect(old, isolation_level=None)
    for version, _, sql in migrations("sqlite")[:5]:  # before policy_versions (0006) existed
        raw.executescript(f"BEGIN;\n{sql}\nPRAGMA user_version = {version};\nCOMMIT;")
    raw.execute(
        "INSERT INTO limit_settings (guild_id, role_id, setting, value, updated_at)"
        " VALUES (?, 0, 'max_n', '2', ?)",
        (GUILD, START),
    )
    raw.close()
    async with postgres_schema() as url:
        report = await copy_database(old, url)
        assert report.source_version == len(migrations("sqlite"))
        assert report.tally.rows["limit_settings"] == report.tally.rows["policy_versions"] == 1

    newer = tmp_path / "newer.db"
    raw = sqlite3.connect(newer)
    raw.execute(f"PRAGMA user_version = {len(migrations('sqlite')) + 1}")
    raw.close()
    async with postgres_schema() as url:
        with pytest.raises(DatabaseError, match="newer wanbot"):
            await copy_database(newer, url)
        with psycopg.connect(url) as admin:  # never even opened: not migrated
            assert admin.execute("SELECT to_regclass('jobs')").fetchone() == (None,)


def run_migrate(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`python -m bot migrate-db ARGS` with DATABASE_PATH in tmp_path; never the password."""
    result = run_cli(
        "migrate-db", *args, cwd=tmp_path, env={"DATABASE_PATH": str(tmp_path / "wanbot.db"), **env}
    )
    assert PASSWORD not in result.stdout + result.stderr
    return result


async def test_the_command_line_copies_checks_and_refuses_a_second_copy(
    history: Path, tmp_path: Path
) -> None:
    assert history == tmp_path / "wanbot.db"  # DATABASE_PATH, the default source
    async with opened(history) as source:
        expected = await counts(source)
    async with postgres_schema() as url:
        secret_url = with_password(url, PASSWORD)
        copied = run_migrate(tmp_path, "--to", secret_url)
        assert copied.returncode == 0, copied.stderr
        rows, _, sums = copied.stdout.partition("and the same ledger sums:")
        summary = {line.split()[0]: int(line.split()[1]) for line in rows.splitlines()[1:]}
        assert summary == expected
        async with opened(history) as source:
            for entry, images, money in await ledger_sums(source):
                assert f"  {entry} " in sums and f" {images} images, {money:.4f} CNY" in sums
        assert "jobs: " in copied.stderr and "rows copied" in copied.stderr  # progress
        assert f"into {safe_name(secret_url)} (PostgreSQL schema " in copied.stdout

        again = run_migrate(tmp_path, DATABASE_URL=secret_url)  # the target from DATABASE_URL
        assert again.returncode == 2
        assert "already holds rows" in again.stderr and "Nothing was changed" in again.stderr
        async with opened(url) as target:
            assert await counts(target) == expected

    missing = run_migrate(tmp_path, "--from", str(tmp_path / "none.db"), "--to", secret_url)
    assert missing.returncode == 2 and "no SQLite database" in missing.stderr
    assert not (tmp_path / "none.db").exists()  # not created by looking
    no_target = run_migrate(tmp_path)
    assert no_target.returncode == 2 and "--to" in no_target.stderr
    swapped = run_migrate(tmp_path, "--from", secret_url, "--to", secret_url)
    assert swapped.returncode == 2 and "--from takes the path" in swapped.stderr


async def test_the_command_line_refuses_a_source_newer_than_the_code(tmp_path: Path) -> None:
    newer = tmp_path / "wanbot.db"
    raw = sqlite3.connect(newer)
    raw.execute(f"PRAGMA user_version = {len(migrations('sqlite')) + 1}")
    raw.close()
    refused = run_migrate(tmp_path, "--to", with_password(postgres_url(), PASSWORD))
    assert refused.returncode == 1 and "newer wanbot" in refused.stderr
