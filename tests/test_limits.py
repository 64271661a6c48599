"""Quota arithmetic: reserve, settle once, the rolling 24 h window, when a limit frees, each
limit's refusal in English and Chinese, per-server overrides, and reservations under load."""

from __future__ import annotations

import asyncio
import random
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from bot.accounting.quota import DAY, Limits, Quota, QuotaExceeded, micros
from bot.jobs.model import Job, JobState
from bot.jobs.store import JobStore
from bot.presenter import describe, utc_time
from bot.storage.db import Database
from tests.backends import database_target, end_job
from tests.engine_helpers import (
    NO_LIMITS,
    FakeClock,
    assert_ledger_balanced,
    new_job,
    spent_this_month,
)


@dataclass
class Setup:
    db: Database
    store: JobStore
    quota: Quota
    clock: FakeClock

    async def ledger(self, job_id: int) -> dict[str, int]:
        rows = await self.db.fetchall(
            "SELECT entry, images FROM ledger WHERE job_id = ?", (job_id,)
        )
        return {row["entry"]: row["images"] for row in rows}

    async def end(self, job: Job, state: JobState = JobState.CANCELLED, charged: int = 0) -> None:
        """End a job the way the engine does: transition and settle in one transaction."""
        await self.db.write(end_job, self.store, self.quota, job, state, charged)

    async def refused(self, **kw: object) -> QuotaExceeded:
        before = await self.db.fetchone("SELECT COUNT(*) AS k FROM ledger")
        with pytest.raises(QuotaExceeded) as caught:
            await self.quota.reserve(new_job(**kw))  # type: ignore[arg-type]
        after = await self.db.fetchone("SELECT COUNT(*) AS k FROM ledger")
        assert before is not None and after is not None
        assert after["k"] == before["k"], "a refusal must leave no trace"
        return caught.value


@pytest.fixture
async def make(backend: str, tmp_path: Path) -> AsyncIterator:
    async with database_target(backend, tmp_path) as target, opener(target) as factory:
        yield factory


@asynccontextmanager
async def opener(target: str) -> AsyncIterator:
    opened: list[Database] = []

    async def factory(limits: Limits = NO_LIMITS, **overrides: int) -> Setup:
        db = await Database.open(target)
        opened.append(db)
        clock = FakeClock()
        store = JobStore(db, clock=clock)
        return Setup(db, store, Quota(db, store, replace(limits, **overrides), clock), clock)

    try:
        yield factory
    finally:
        for db in opened:
            await db.close()


def at(moment: float) -> str:
    return f"@{moment:.3f}"


# --- reserve and settle ------------------------------------------------------------------------


@pytest.mark.parametrize("delivered", [0, 1, 2, 3, 4])
async def test_reserve_then_settle_charges_k_and_refunds_the_rest(make, delivered: int) -> None:
    s = await make()
    job = await s.quota.reserve(new_job(n=4, user=7, guild=3))
    assert job.state is JobState.QUEUED
    assert await s.ledger(job.id) == {"reserve": 4}
    await s.end(job, JobState.DONE if delivered else JobState.FAILED, charged=delivered)
    assert await s.ledger(job.id) == {"reserve": 4, "charge": delivered, "refund": 4 - delivered}
    rows = await s.db.fetchall("SELECT user_id, guild_id FROM ledger WHERE job_id = ?", (job.id,))
    assert {(r["user_id"], r["guild_id"]) for r in rows} == {(7, 3)}


async def test_settling_twice_is_a_no_op(make) -> None:
    s = await make()
    job = await s.quota.reserve(new_job(n=3))
    for delivered in (2, 0, 3):
        await s.db.write(s.quota.settle, job, delivered)
    assert await s.ledger(job.id) == {"reserve": 3, "charge": 2, "refund": 1}
    row = await s.db.fetchone("SELECT COUNT(*) AS k FROM ledger WHERE job_id = ?", (job.id,))
    assert row is not None and row["k"] == 3


@pytest.mark.parametrize(("delivered", "charge"), [(9, 2), (-3, 0)])
async def test_settle_clamps_to_the_reservation(make, delivered: int, charge: int) -> None:
    s = await make()
    job = await s.quota.reserve(new_job(n=2))
    await s.db.write(s.quota.settle, job, delivered)
    assert await s.ledger(job.id) == {"reserve": 2, "charge": charge, "refund": 2 - charge}


# --- the rolling window ------------------------------------------------------------------------


async def test_usage_counts_reservations_minus_refunds_in_the_last_24_hours(make) -> None:
    s = await make()
    t0 = s.clock.now
    first = await s.quota.reserve(new_job(n=4, user=1, guild=9))
    second = await s.quota.reserve(new_job(n=2, user=1, guild=9))
    await s.quota.reserve(new_job(n=3, user=2, guild=9))  # someone else, same server
    standing = await s.quota.standing(1, 9)
    assert (standing.user_images, standing.guild_images, standing.active_jobs) == (6, 9, 2)
    await s.end(first, JobState.DONE, charged=1)  # 3 refunded: only the charge still counts
    await s.end(second, JobState.FAILED)  # all refunded
    standing = await s.quota.standing(1, 9)
    assert (standing.user_images, standing.guild_images, standing.active_jobs) == (1, 4, 0)
    s.clock.now = t0 + DAY - 1
    await s.quota.reserve(new_job(n=2, user=1, guild=9))
    assert (await s.quota.standing(1, 9)).user_images == 3
    s.clock.now = t0 + DAY + 1  # the first reservations have left the window
    standing = await s.quota.standing(1, 9)
    assert (standing.user_images, standing.guild_images) == (2, 2)
    assert standing.user_frees_at == t0 + DAY - 1 + DAY


async def test_frees_at_is_when_enough_reservations_leave_the_window(make) -> None:
    s = await make(images_per_user_day=5)
    t0 = s.clock.now
    first = await s.quota.reserve(new_job(n=2))
    s.clock.advance(100)
    await s.quota.reserve(new_job(n=3))
    s.clock.advance(50)
    one = await s.refused(n=1)
    assert (one.limit, one.used, one.allowed, one.frees_at) == ("user_day", 5, 5, t0 + DAY)
    three = await s.refused(n=3)  # the first reservation frees only 2
    assert three.frees_at == t0 + 100 + DAY
    # A fully refunded reservation frees nothing more when it leaves the window.
    await s.end(first)
    four = await s.refused(n=4)
    assert (four.used, four.frees_at) == (3, t0 + 100 + DAY)
    standing = await s.quota.standing(1, None)
    assert standing.user_frees_at == t0 + 100 + DAY


async def test_a_reservation_frees_exactly_at_frees_at(make) -> None:
    s = await make(images_per_user_day=2)
    t0 = s.clock.now
    await s.quota.reserve(new_job(n=2))
    s.clock.now = t0 + DAY - 0.001
    assert (await s.refused(n=1)).frees_at == t0 + DAY
    s.clock.now = t0 + DAY
    await s.quota.reserve(new_job(n=2))


async def test_a_request_larger_than_the_limit_never_frees(make) -> None:
    s = await make(images_per_user_day=3)
    refusal = await s.refused(n=4)
    assert refusal.frees_at is None
    assert "?" in describe(refusal, "en", moment=utc_time)


# --- each limit, in words -------------------------------------------------------------------------


async def test_user_day_limit(make) -> None:
    s = await make(images_per_user_day=5, images_per_guild_day=100)
    t0 = s.clock.now
    await s.quota.reserve(new_job(n=4, user=1, guild=9))
    refusal = await s.refused(n=2, user=1, guild=9)
    assert (refusal.limit, refusal.allowed, refusal.used) == ("user_day", 5, 4)
    assert refusal.frees_at == t0 + DAY
    en = describe(refusal, "en", moment=at)
    zh = describe(refusal, "zh", moment=at)
    assert "4 of your 5 images" in en and at(t0 + DAY) in en
    assert "已使用 4 张图片（上限 5 张）" in zh and at(t0 + DAY) in zh
    await s.quota.reserve(new_job(n=1, user=1, guild=9))  # what is left still fits
    await s.quota.reserve(new_job(n=4, user=2, guild=9))  # the limit is per user


async def test_concurrent_jobs_limit(make) -> None:
    s = await make(concurrent_jobs_per_user=2)
    first = await s.quota.reserve(new_job(user=1))
    await s.quota.reserve(new_job(user=1))
    refusal = await s.refused(user=1)
    assert (refusal.limit, refusal.allowed, refusal.used, refusal.frees_at) == (
        "concurrent",
        2,
        2,
        None,
    )
    assert "You already have 2 jobs running (the limit is 2)" in describe(
        refusal, "en", moment=utc_time
    )
    assert "你已有 2 个任务在进行（上限 2 个）" in describe(refusal, "zh", moment=utc_time)
    await s.quota.reserve(new_job(user=2))  # per user
    await s.end(first)  # a finished job frees its slot at once
    await s.quota.reserve(new_job(user=1))


async def test_cooldown_limit(make) -> None:
    s = await make(cooldown_seconds=30)
    t0 = s.clock.now
    await s.quota.reserve(new_job(user=1))
    s.clock.advance(10)
    refusal = await s.refused(user=1)
    assert (refusal.limit, refusal.allowed, refusal.used, refusal.frees_at) == (
        "cooldown",
        30,
        10,
        t0 + 30,
    )
    en, zh = describe(refusal, "en", moment=at), describe(refusal, "zh", moment=at)
    assert "one job every 30 s" in en and at(t0 + 30) in en
    assert "每 30 秒" in zh and at(t0 + 30) in zh
    assert (await s.quota.standing(1, None)).cooldown_until == t0 + 30
    await s.quota.reserve(new_job(user=2))  # per user
    s.clock.now = t0 + 29.999
    await s.refused(user=1)
    s.clock.now = t0 + 30
    await s.quota.reserve(new_job(user=1))


async def test_guild_day_limit(make) -> None:
    s = await make(images_per_guild_day=6)
    t0 = s.clock.now
    for user in (1, 2, 3):
        await s.quota.reserve(new_job(n=2, user=user, guild=9))
    refusal = await s.refused(n=1, user=4, guild=9)
    assert (refusal.limit, refusal.allowed, refusal.used, refusal.frees_at) == (
        "guild_day",
        6,
        6,
        t0 + DAY,
    )
    en, zh = describe(refusal, "en", moment=at), describe(refusal, "zh", moment=at)
    assert "This server has used 6 of its 6 images" in en and at(t0 + DAY) in en
    assert "本服务器过去 24 小时已使用 6 张图片（上限 6 张）" in zh and at(t0 + DAY) in zh
    await s.quota.reserve(new_job(n=4, user=4, guild=10))  # another server
    await s.quota.reserve(new_job(n=4, user=4, guild=None))  # a DM counts against no server


async def test_limits_are_checked_in_order_cooldown_first(make) -> None:
    s = await make(
        Limits(
            images_per_user_day=1,
            concurrent_jobs_per_user=1,
            cooldown_seconds=60,
            images_per_guild_day=1,
        )
    )
    await s.quota.reserve(new_job(guild=9))
    assert (await s.refused(guild=9)).limit == "cooldown"
    s.clock.advance(61)
    assert (await s.refused(guild=9)).limit == "concurrent"


# --- overrides and unlimited ------------------------------------------------------------------


async def test_guild_overrides_win_over_defaults(make) -> None:
    s = await make(images_per_user_day=10, cooldown_seconds=0, concurrent_jobs_per_user=0)
    await s.quota.policy.set(5, "images_per_user_day", "2", by_user=99)
    await s.quota.reserve(new_job(n=2, user=1, guild=5))
    refusal = await s.refused(n=1, user=1, guild=5)
    assert (refusal.limit, refusal.allowed) == ("user_day", 2)
    assert (await s.quota.standing(1, 5)).limits.images_per_user_day == 2
    # Elsewhere the defaults apply (the window is per user, so count from a fresh user).
    for _ in range(2):
        await s.quota.reserve(new_job(n=4, user=2, guild=6))
    assert (await s.refused(n=4, user=2, guild=6)).allowed == 10
    assert (await s.quota.standing(2, None)).limits.images_per_user_day == 10
    # Setting it again replaces the value; 0 switches the limit off for that server.
    await s.quota.policy.set(5, "images_per_user_day", "3", by_user=None)
    await s.quota.reserve(new_job(n=1, user=1, guild=5))
    await s.quota.policy.set(5, "images_per_user_day", "0", by_user=None)
    for _ in range(5):
        await s.quota.reserve(new_job(n=4, user=1, guild=5))
    row = await s.db.fetchone(
        "SELECT value, updated_by FROM limit_settings WHERE guild_id = 5"
        " AND setting = 'images_per_user_day'"
    )
    assert row is not None and (row["value"], row["updated_by"]) == ("0", None)


async def test_guild_override_of_cooldown_and_guild_cap(make) -> None:
    s = await make(cooldown_seconds=0, images_per_guild_day=0)
    await s.quota.policy.set(5, "cooldown_seconds", "60", by_user=None)
    await s.quota.policy.set(5, "images_per_guild_day", "3", by_user=None)
    await s.quota.reserve(new_job(n=3, user=1, guild=5))
    assert (await s.refused(user=1, guild=5)).limit == "cooldown"
    assert (await s.refused(user=2, guild=5)).limit == "guild_day"
    await s.quota.reserve(new_job(user=1, guild=6))  # no cooldown elsewhere


async def test_zero_means_unlimited(make) -> None:
    s = await make(NO_LIMITS)
    for _ in range(40):
        await s.quota.reserve(new_job(n=4, user=1, guild=9))
    standing = await s.quota.standing(1, 9)
    assert (standing.user_images, standing.guild_images, standing.active_jobs) == (160, 160, 40)
    assert standing.cooldown_until is None


# --- under load ---------------------------------------------------------------------------------


async def test_200_concurrent_reservations_accept_exactly_the_limit(make) -> None:
    s = await make(images_per_user_day=5)
    outcomes = await asyncio.gather(
        *(s.quota.reserve(new_job(user=1)) for _ in range(200)), return_exceptions=True
    )
    accepted = [o for o in outcomes if isinstance(o, Job)]
    refused = [o for o in outcomes if isinstance(o, QuotaExceeded)]
    assert len(accepted) == 5 and len(refused) == 195
    assert {r.limit for r in refused} == {"user_day"}
    row = await s.db.fetchone("SELECT COUNT(*) AS k, SUM(images) AS i FROM ledger")
    assert row is not None and (row["k"], row["i"]) == (5, 5)
    await assert_ledger_balanced(s.db)


async def test_reservations_from_several_connections_never_overrun(make) -> None:
    """As if four processes shared the database: BEGIN IMMEDIATE serialises them."""
    setups = [await make(images_per_user_day=5) for _ in range(4)]
    outcomes = await asyncio.gather(
        *(s.quota.reserve(new_job(user=1)) for s in setups for _ in range(25)),
        return_exceptions=True,
    )
    unexpected = [o for o in outcomes if not isinstance(o, Job | QuotaExceeded)]
    assert not unexpected
    assert sum(isinstance(o, Job) for o in outcomes) == 5
    row = await setups[0].db.fetchone("SELECT SUM(images) AS i FROM ledger")
    assert row is not None and row["i"] == 5


async def test_many_users_never_exceed_the_guild_cap(make) -> None:
    s = await make(images_per_guild_day=13)
    outcomes = await asyncio.gather(
        *(s.quota.reserve(new_job(user=u, guild=9)) for u in range(40) for _ in range(2)),
        return_exceptions=True,
    )
    assert sum(isinstance(o, Job) for o in outcomes) == 13
    assert {o.limit for o in outcomes if isinstance(o, QuotaExceeded)} == {"guild_day"}
    # Mixed sizes: never over the cap, and a refusal means the rest could not fit.
    s2 = await make(images_per_guild_day=20)
    rng = random.Random(5)
    sizes = [rng.randint(1, 4) for _ in range(30)]
    outcomes = await asyncio.gather(
        *(s2.quota.reserve(new_job(n=n, user=100 + i, guild=10)) for i, n in enumerate(sizes)),
        return_exceptions=True,
    )
    used = sum(o.n for o in outcomes if isinstance(o, Job))
    assert 20 - 3 <= used <= 20
    assert (await s2.quota.standing(1, 10)).guild_images == used


# --- running totals ----------------------------------------------------------------------------


EXACT_HELD = {
    scope: "SELECT COALESCE(SUM(r.images - COALESCE(f.images, 0)), 0) FROM ledger r"  # noqa: S608
    " LEFT JOIN ledger f ON f.job_id = r.job_id AND f.entry = 'refund'"
    f" WHERE r.entry = 'reserve' AND r.{scope} = ? AND r.created_at > ?"
    for scope in ("user_id", "guild_id")
}


async def test_running_totals_always_equal_the_ledger(make) -> None:
    """The checks read running totals (images per 24 h window, money per month); after every
    step of a random history (reservations, settlements, the clock moving by minutes to days and
    sometimes back) they must equal what the ledger sums to."""
    s = await make(replace(NO_LIMITS, images_per_user_day=10_000, images_per_guild_day=100_000))
    s.quota.prices = {"wan2.6-t2i": 0.2, "wan2.2-t2i-flash": 0.14}
    await s.quota.policy.set(3, "monthly_budget", "1000000", by_user=1)
    rng = random.Random(7)
    open_jobs: list[Job] = []
    for step in range(400):
        roll = rng.random()
        if roll < 0.5 or not open_jobs:
            model = rng.choice(["wan2.6-t2i", "wan2.2-t2i-flash"])
            user = rng.choice([1, 2, 3])
            open_jobs.append(
                await s.quota.reserve(new_job(n=rng.randint(1, 4), user=user, guild=3, model=model))
            )
        elif roll < 0.85:
            job = open_jobs.pop(rng.randrange(len(open_jobs)))
            state = rng.choice([JobState.DONE, JobState.FAILED, JobState.CANCELLED])
            await s.end(job, state, rng.randint(0, job.n) if state is JobState.DONE else 0)
        elif roll < 0.97:
            s.clock.advance(rng.choice([60, 3600, 6 * 3600, DAY, 20 * DAY]))
        else:
            s.clock.advance(-rng.choice([60, 3600, DAY]))
        totals = await s.db.fetchall("SELECT scope, owner, cutoff, held FROM quota_windows")
        for row in totals:
            exact = await s.db.fetchone(EXACT_HELD[row["scope"]], (row["owner"], row["cutoff"]))
            assert exact is not None and row["held"] == exact[0], (step, dict(row))
        for row in await s.db.fetchall("SELECT guild_id, month, micros FROM quota_spend"):
            exact_money = await spent_this_month(s.db, row["guild_id"], row["month"])
            assert row["micros"] == round(exact_money * 1_000_000), (step, dict(row))
    # The comparisons above were not vacuous: every member and the server have running totals.
    windows = await s.db.fetchall("SELECT scope, owner FROM quota_windows")
    assert {(r["scope"], r["owner"]) for r in windows} == {
        ("user_id", 1),
        ("user_id", 2),
        ("user_id", 3),
        ("guild_id", 3),
    }
    spends = await s.db.fetchall("SELECT DISTINCT guild_id FROM quota_spend")
    assert [r["guild_id"] for r in spends] == [3]


async def test_the_window_check_agrees_with_the_ledger_after_time_passes(make) -> None:
    """A limit refuses exactly when the ledger says the window is full, as reservations leave
    the window one by one (the running total subtracts each once)."""
    s = await make(images_per_user_day=6)
    t0 = s.clock.now
    for hour in range(3):
        s.clock.now = t0 + hour * 3600
        await s.quota.reserve(new_job(n=2))
    s.clock.now = t0 + 3 * 3600
    await s.refused(n=1)
    s.clock.now = t0 + DAY + 1  # the first reservation left the window
    await s.quota.reserve(new_job(n=2))
    await s.refused(n=1)
    s.clock.now = t0 + DAY + 2 * 3600 + 1  # the second and third left too
    await s.quota.reserve(new_job(n=4))
    await s.refused(n=1)


def test_money_in_millionths_rounds_as_sqlite_does() -> None:
    """Running totals (Python) and sums rebuilt from the ledger (SQL) must round alike."""
    conn = sqlite3.connect(":memory:")
    values = [k * 1e-7 for k in range(0, 20_000, 7)] + [0.14, 0.2, 0.25, 2.5e-6, 1234.5678905]
    for value in values:
        (expected,) = conn.execute(
            "SELECT CAST(ROUND(? * 1000000) AS INTEGER)", (value,)
        ).fetchone()
        assert micros(value) == expected, value
