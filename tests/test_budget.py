"""Monthly budgets in money: a request that would pass the budget is refused (saying what was
spent and when it renews) until the next calendar month; a job holds its estimated cost and
keeps only what it delivered; the usage report reads the same ledger; and concurrent requests
from many members never take a server past its image cap or its budget."""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from bot.accounting.quota import (
    BudgetExceeded,
    LimitReached,
    Limits,
    Quota,
    QuotaExceeded,
    month_start,
    next_month_start,
)
from bot.accounting.usage import PERIODS, period_bounds, usage_report
from bot.dashscope.models import Kind
from bot.dashscope.requests import ImageRequest
from bot.discord_ui.replies import relative_timestamp
from bot.jobs.model import Job, JobState, NewJob
from bot.jobs.store import JobStore
from bot.presenter import describe
from bot.storage.db import Database
from tests.backends import database_target, end_job
from tests.engine_helpers import NO_LIMITS, FakeClock, image_request, spent_this_month

GUILD = 700
OTHER_GUILD = 701
ADMIN = 1
STAFF_ROLE = 31
PRICES = {"wan2.6-t2i": 0.20, "wan2.2-t2i-flash": 0.14}


def utc(*parts: int) -> float:
    return datetime(*parts, tzinfo=UTC).timestamp()  # type: ignore[misc]


@dataclass
class Setup:
    db: Database
    store: JobStore
    quota: Quota
    clock: FakeClock

    @staticmethod
    def new(
        n: int = 1,
        *,
        user: int = 2,
        guild: int | None = GUILD,
        model: str = "wan2.6-t2i",
        roles: tuple[int, ...] = (),
    ) -> NewJob:
        request = image_request(n=n, model=model)
        return NewJob(request, user_id=user, guild_id=guild, role_ids=roles)

    async def reserve(self, n: int = 1, **kw: Any) -> Job:
        return await self.quota.reserve(self.new(n, **kw))

    async def refused(self, n: int = 1, **kw: object) -> QuotaExceeded:
        before = await self.counts()
        with pytest.raises(QuotaExceeded) as caught:
            await self.reserve(n, **kw)  # type: ignore[arg-type]
        assert await self.counts() == before, "a refusal must leave no trace"
        return caught.value

    async def counts(self) -> tuple[int, int]:
        jobs = await self.db.fetchone("SELECT COUNT(*) AS k FROM jobs")
        rows = await self.db.fetchone("SELECT COUNT(*) AS k FROM ledger")
        assert jobs is not None and rows is not None
        return jobs["k"], rows["k"]

    async def end(self, job: Job, state: JobState, delivered: int = 0) -> None:
        """End a job the way the engine does: the last transition and the settlement together."""
        await self.db.write(end_job, self.store, self.quota, job, state, delivered)

    async def spent(self, guild: int = GUILD) -> float:
        return await spent_this_month(self.db, guild, self.clock())

    async def ledger(self, job_id: int) -> dict[str, tuple[int, float, str]]:
        rows = await self.db.fetchall(
            "SELECT entry, images, unit_price, model FROM ledger WHERE job_id = ?", (job_id,)
        )
        return {r["entry"]: (r["images"], r["unit_price"], r["model"]) for r in rows}


Make = Callable[..., Awaitable[Setup]]


@pytest.fixture
async def make(backend: str, tmp_path: Path) -> AsyncIterator[Make]:
    async with database_target(backend, tmp_path) as target, opener(target) as factory:
        yield factory


@asynccontextmanager
async def opener(target: str) -> AsyncIterator[Make]:
    opened: list[Database] = []

    async def factory(
        limits: Limits = NO_LIMITS, *, start: float | None = None, budget: str | None = None
    ) -> Setup:
        db = await Database.open(target)
        opened.append(db)
        clock = FakeClock(utc(2026, 1, 31, 23, 0) if start is None else start)
        store = JobStore(db, clock=clock)
        quota = Quota(db, store, limits, clock, prices=dict(PRICES))
        if budget is not None:
            await quota.policy.set(GUILD, "monthly_budget", budget, by_user=ADMIN)
        return Setup(db, store, quota, clock)

    try:
        yield factory
    finally:
        for db in opened:
            await db.close()


# --- calendar months ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("now", "start", "following"),
    [
        (utc(2026, 1, 31, 23, 59, 59), utc(2026, 1, 1), utc(2026, 2, 1)),
        (utc(2026, 2, 1), utc(2026, 2, 1), utc(2026, 3, 1)),
        (utc(2026, 12, 31, 12), utc(2026, 12, 1), utc(2027, 1, 1)),
        (utc(2028, 2, 29, 6), utc(2028, 2, 1), utc(2028, 3, 1)),
    ],
)
def test_month_bounds_are_utc_calendar_months(now: float, start: float, following: float) -> None:
    assert month_start(now) == start
    assert next_month_start(now) == following


def test_month_bounds_stay_right_when_asked_about_months_in_any_order() -> None:
    """The bounds of the month asked about last are reused; a moment outside them (later,
    earlier, at a boundary, one microsecond before it) must be computed afresh."""
    rng = random.Random(6)
    first = utc(2026, 3, 1)
    moments = [first, first - 1e-6, math.nextafter(first, 0), utc(2026, 4, 1), first - 1e-7]
    moments += [math.nextafter(first, 0), first, utc(2025, 12, 31, 23)]
    moments += [rng.uniform(utc(2024, 1, 1), utc(2029, 1, 1)) for _ in range(300)]
    for now in moments:
        moment = datetime.fromtimestamp(math.floor(now), UTC)
        start = datetime(moment.year, moment.month, 1, tzinfo=UTC)
        assert start.timestamp() <= now < following_of(start).timestamp()
        assert month_start(now) == start.timestamp(), moment
        assert next_month_start(now) == following_of(start).timestamp(), moment


def following_of(start: datetime) -> datetime:
    return datetime(start.year + start.month // 12, start.month % 12 + 1, 1, tzinfo=UTC)


# --- exhaustion and renewal ---------------------------------------------------------------------


async def test_budget_exhaustion_refuses_then_renews_next_month(make: Make) -> None:
    s = await make(budget="1")
    assert (await s.reserve(4)).n == 4  # 0.80
    await s.reserve(1, user=3)  # 1.00: exactly the budget is fine
    assert await s.spent() == pytest.approx(1.00)

    refusal = await s.refused(1, user=4)
    renews = utc(2026, 2, 1)
    assert (refusal.limit, refusal.budget, refusal.spent, refusal.frees_at) == (
        "budget",
        1.0,
        pytest.approx(1.0),
        renews,
    )
    assert describe(refusal, "en", moment=relative_timestamp) == (
        "This server has spent 1.00 of its monthly budget of 1.00. "
        f"The budget renews <t:{int(renews)}:R>."
    )
    assert describe(refusal, "zh", moment=relative_timestamp) == (
        f"本服务器本月已用 1.00，月度预算为 1.00。预算将于<t:{int(renews)}:R>重置。"
    )
    # The budget is the server's: every member, any model with a price, exempt roles too.
    await s.quota.policy.set(GUILD, "exempt", "yes", by_user=ADMIN, role_id=STAFF_ROLE)
    assert (await s.refused(1, user=5, roles=(STAFF_ROLE,))).limit == "budget"
    assert (await s.refused(1, user=2, model="wan2.2-t2i-flash")).limit == "budget"
    # Another server and DMs are not affected.
    await s.reserve(4, user=4, guild=OTHER_GUILD)
    await s.reserve(4, user=4, guild=None)

    # One second before midnight UTC: still refused; at midnight on the 1st: a new month.
    s.clock.now = renews - 1
    assert (await s.refused(1, user=4)).limit == "budget"
    s.clock.now = renews
    assert await s.spent() == 0.0
    job = await s.reserve(4, user=4)
    assert job.n == 4
    await s.reserve(1, user=6)
    assert (await s.refused(1, user=7)).frees_at == utc(2026, 3, 1)


async def test_a_request_is_refused_if_its_whole_cost_does_not_fit(make: Make) -> None:
    s = await make(budget="1.10")
    await s.reserve(4)  # 0.80 held, 0.30 left
    refusal = await s.refused(2)  # 0.40 would pass the budget
    assert (refusal.limit, refusal.spent) == ("budget", pytest.approx(0.80))
    await s.reserve(2, model="wan2.2-t2i-flash")  # 0.28 fits
    assert await s.spent() == pytest.approx(1.08)
    assert (await s.refused(1, model="wan2.2-t2i-flash")).limit == "budget"


async def test_a_budget_refusal_is_in_money_and_a_limit_refusal_in_whole_counts(
    make: Make,
) -> None:
    """Review defect: the budget refusal passed money (floats) as `QuotaExceeded(allowed: int,
    used: int)`. Money now travels as money and counts stay whole numbers."""
    s = await make(Limits(5, 0, 0, 0), budget="1.10")
    await s.reserve(4)  # 0.80 held by member 2
    money = await s.refused(2, user=3)  # 0.40 more would pass 1.10
    assert isinstance(money, BudgetExceeded) and not isinstance(money, LimitReached)
    assert (money.budget, money.spent) == (pytest.approx(1.10), pytest.approx(0.80))
    assert isinstance(money.budget, float) and isinstance(money.spent, float)
    count = await s.refused(2)  # member 2: 4 of 5 images in 24 h, checked before the budget
    assert isinstance(count, LimitReached) and not isinstance(count, BudgetExceeded)
    assert (count.limit, count.allowed, count.used) == ("user_day", 5, 4)
    assert type(count.allowed) is int and type(count.used) is int
    # Both read as before: cents for money, whole images for counts.
    assert "spent 0.80 of its monthly budget of 1.10" in describe(
        money, "en", moment=relative_timestamp
    )
    assert "used 4 of your 5 images" in describe(count, "en", moment=relative_timestamp)


async def test_no_budget_and_unpriced_models_never_refuse(make: Make) -> None:
    s = await make()  # monthly_budget 0 = no budget
    for _ in range(30):
        await s.reserve(4)
    assert await s.spent() == pytest.approx(24.0)
    s.clock.now = utc(2026, 2, 1)
    await s.quota.policy.set(GUILD, "monthly_budget", "1", by_user=ADMIN)
    await s.reserve(4)  # 0.80
    for _ in range(5):  # not in this price list: costs nothing
        await s.reserve(4, model="wanx2.0-t2i-turbo")
    assert (await s.refused(2)).limit == "budget"
    # A budget lowered below what was spent refuses everything until the month ends.
    await s.quota.policy.set(GUILD, "monthly_budget", "0.50", by_user=ADMIN)
    assert (await s.refused(1, model="wanx2.0-t2i-turbo")).limit == "budget"
    await s.quota.policy.reset(GUILD, "monthly_budget", by_user=ADMIN)
    await s.reserve(4)


async def test_budget_is_checked_after_the_member_limits(make: Make) -> None:
    s = await make(Limits(2, 0, 0, 0), budget="0.20")
    await s.reserve(1)
    assert (await s.refused(2)).limit == "user_day"
    assert (await s.refused(1, user=9)).limit == "budget"


# --- reserve the estimate, settle on delivery --------------------------------------------------


async def test_reserve_the_estimate_and_keep_only_what_was_delivered(make: Make) -> None:
    s = await make(budget="1")
    big = await s.reserve(4)  # 0.80 held
    small = await s.reserve(1, user=3)  # 1.00 held
    assert await s.ledger(big.id) == {"reserve": (4, 0.2, "wan2.6-t2i")}
    assert (await s.refused(1)).spent == pytest.approx(1.0)

    # Two of four images delivered: 0.40 stays, 0.40 is free again at once.
    await s.end(big, JobState.DONE, delivered=2)
    assert await s.ledger(big.id) == {
        "reserve": (4, 0.2, "wan2.6-t2i"),
        "charge": (2, 0.2, "wan2.6-t2i"),
        "refund": (2, 0.2, "wan2.6-t2i"),
    }
    assert await s.spent() == pytest.approx(0.60)
    third = await s.reserve(2, user=4)  # exactly fits again
    assert (await s.refused(1)).spent == pytest.approx(1.0)

    # Failed and cancelled jobs keep nothing.
    await s.end(small, JobState.CANCELLED)
    await s.end(third, JobState.FAILED)
    assert await s.spent() == pytest.approx(0.40)
    # Settling again changes nothing.
    await s.db.write(s.quota.settle, third, 2)
    assert await s.spent() == pytest.approx(0.40)


async def test_the_price_when_accepted_is_the_price_charged(make: Make) -> None:
    s = await make(budget="10")
    job = await s.reserve(2)
    s.quota.prices["wan2.6-t2i"] = 1.50  # the operator changes PRICES and restarts
    await s.end(job, JobState.DONE, delivered=2)
    assert await s.ledger(job.id) == {
        "reserve": (2, 0.2, "wan2.6-t2i"),
        "charge": (2, 0.2, "wan2.6-t2i"),
        "refund": (0, 0.2, "wan2.6-t2i"),
    }
    assert await s.spent() == pytest.approx(0.40)
    later = await s.reserve(2)
    assert (await s.ledger(later.id))["reserve"] == (2, 1.5, "wan2.6-t2i")
    assert await s.spent() == pytest.approx(3.40)


# --- the report reads the same ledger ----------------------------------------------------------


async def test_ledger_budget_and_usage_report_agree(make: Make) -> None:
    s = await make(start=utc(2026, 3, 10, 8), budget="1000")
    rng = random.Random(11)
    expected: dict[int, list[float]] = {}
    outcomes = {"done": 0, "failed": 0, "cancelled": 0}
    for index in range(60):
        user = 100 + rng.randrange(8)
        model = rng.choice(list(PRICES))
        n = rng.randint(1, 4)
        job = await s.reserve(n, user=user, model=model)
        fate = rng.choice(["done", "done", "partial", "failed", "cancelled"])
        delivered = {"done": n, "partial": rng.randint(0, n - 1)}.get(fate, 0)
        state = JobState.DONE if fate in ("done", "partial") else JobState(fate)
        await s.end(job, state, delivered)
        outcomes[state.value] += 1
        totals = expected.setdefault(user, [0, 0.0])
        totals[0] += delivered
        totals[1] += delivered * PRICES[model]
        s.clock.advance(3600 * (index % 3))  # spread over a few days

    start, end = period_bounds("this month", s.clock())
    report = await usage_report(s.db, GUILD, start, end)
    assert report.cost == pytest.approx(await s.spent(), abs=1e-6)
    assert report.images == sum(int(v[0]) for v in expected.values())
    assert (report.done, report.failed, report.cancelled) == (
        outcomes["done"],
        outcomes["failed"],
        outcomes["cancelled"],
    )
    assert sum(d.images for d in report.days) == report.images
    assert sum(d.cost for d in report.days) == pytest.approx(report.cost, abs=1e-3)
    ranked = sorted(expected.items(), key=lambda item: (-item[1][0], item[0]))
    assert [(uid, images) for uid, images, _ in report.top] == [
        (uid, int(v[0])) for uid, v in ranked
    ][: len(report.top)]
    for uid, images, cost in report.top:
        assert cost == pytest.approx(expected[uid][1], abs=1e-3)
        mine = await usage_report(s.db, GUILD, start, end, user_id=uid)
        assert (mine.images, mine.cost) == (images, pytest.approx(cost, abs=1e-3))
        assert [u for u, _, _ in mine.top] == [uid]
    # Nothing of another server.
    assert (await usage_report(s.db, OTHER_GUILD, start, end)).images == 0


async def test_a_job_delivered_after_midnight_counts_in_the_month_it_was_accepted(
    make: Make,
) -> None:
    s = await make(start=utc(2026, 1, 31, 23, 59, 30), budget="10")
    job = await s.reserve(3)
    s.clock.now = utc(2026, 2, 1, 0, 0, 30)
    await s.end(job, JobState.DONE, delivered=3)
    # The budget counted it in January, so February starts at zero; the report agrees.
    assert await s.spent() == 0.0
    february = await usage_report(s.db, GUILD, *period_bounds("this month", s.clock()))
    assert (february.images, february.cost, february.done) == (0, 0.0, 0)
    january = await usage_report(s.db, GUILD, utc(2026, 1, 1), utc(2026, 1, 31, 23, 59, 59))
    assert (january.images, january.cost, january.done) == (3, pytest.approx(0.6), 1)
    assert [d.day for d in january.days][-1] == "2026-01-31"
    assert january.days[-1].images == 3


def test_period_bounds() -> None:
    now = utc(2026, 3, 10, 15, 30)
    assert period_bounds("today", now) == (utc(2026, 3, 10), now)
    assert period_bounds("7d", now) == (utc(2026, 3, 4), now)
    assert period_bounds("30d", now) == (utc(2026, 2, 9), now)
    assert period_bounds("this month", now) == (utc(2026, 3, 1), now)
    assert PERIODS == ("today", "7d", "30d", "this month")
    with pytest.raises(ValueError, match="unknown period 'year'"):
        period_bounds("year", now)


# --- concurrency: a server cap is never overrun -------------------------------------------------


def members(count: int = 50, requests: int = 2, seed: int = 3) -> list[tuple[int, int, tuple]]:
    """(user, n, roles) for each request, members with a mix of roles."""
    rng = random.Random(seed)
    out = []
    for user in range(1000, 1000 + count):
        roles = tuple(rng.sample([STAFF_ROLE, 32, 33], rng.randint(0, 2)))
        out += [(user, rng.randint(1, 4), roles) for _ in range(requests)]
    rng.shuffle(out)
    return out


async def gather_reserves(
    setups: list[Setup], wanted: list[tuple[int, int, tuple]]
) -> list[tuple[int, Job | BaseException]]:
    outcomes = await asyncio.gather(
        *(
            setups[index % len(setups)].reserve(n, user=user, roles=roles)
            for index, (user, n, roles) in enumerate(wanted)
        ),
        return_exceptions=True,
    )
    unexpected = [o for o in outcomes if not isinstance(o, Job | QuotaExceeded)]
    assert not unexpected, unexpected
    return [(n, o) for (_, n, _), o in zip(wanted, outcomes, strict=True)]


async def held_images(db: Database) -> int:
    row = await db.fetchone(
        "SELECT COALESCE(SUM(images), 0) AS k FROM ledger WHERE entry = 'reserve' AND guild_id = ?",
        (GUILD,),
    )
    assert row is not None
    return int(row["k"])


@pytest.mark.parametrize("connections", [1, 4])
async def test_concurrent_members_never_pass_the_servers_image_cap(
    make: Make, connections: int
) -> None:
    """~100 requests from 50 members at once, through one connection or as if four processes
    shared the database; role overrides lift the member limits but not the server's cap."""
    setups = [await make(Limits(3, 1, 0, 37)) for _ in range(connections)]
    policy = setups[0].quota.policy
    await policy.set(GUILD, "exempt", "yes", by_user=ADMIN, role_id=STAFF_ROLE)
    await policy.set(GUILD, "images_per_user_day", "0", by_user=ADMIN, role_id=32)
    results = await gather_reserves(setups, members())
    accepted = [o for _, o in results if isinstance(o, Job)]
    used = sum(job.n for job in accepted)
    assert used == await held_images(setups[0].db)
    assert used <= 37
    # Every refusal by the cap was a request that did not fit in what was left at the end.
    for n, outcome in results:
        if isinstance(outcome, QuotaExceeded) and outcome.limit == "guild_day":
            assert used + n > 37, (used, n)
    assert {o.limit for _, o in results if isinstance(o, QuotaExceeded)} <= {
        "guild_day",
        "user_day",
        "concurrent",
    }
    standing = await setups[0].quota.standing(1000, GUILD)
    assert standing.guild_images == used


@pytest.mark.parametrize("connections", [1, 4])
async def test_concurrent_members_never_pass_the_money_budget(make: Make, connections: int) -> None:
    setups = [await make(NO_LIMITS, budget="9.40") for _ in range(connections)]  # 47 images
    results = await gather_reserves(setups, members(seed=8))
    accepted = [o for _, o in results if isinstance(o, Job)]
    used = sum(job.n for job in accepted)
    spent = await setups[0].spent()
    assert spent == pytest.approx(used * 0.2)
    assert spent <= 9.40 + 1e-9
    refused = [(n, o) for n, o in results if isinstance(o, QuotaExceeded)]
    assert refused and {o.limit for _, o in refused} == {"budget"}
    for n, _ in refused:
        assert spent + n * 0.2 > 9.40 + 1e-9, (spent, n)

    # Settling the accepted jobs concurrently, half of them partly, frees exactly the rest.
    rng = random.Random(1)
    delivered = {job.id: rng.randint(0, job.n) for job in accepted}
    await asyncio.gather(
        *(
            setups[i % connections].end(job, JobState.DONE, delivered[job.id])
            for i, job in enumerate(accepted)
        )
    )
    assert await setups[0].spent() == pytest.approx(sum(delivered.values()) * 0.2)
    report = await usage_report(
        setups[0].db, GUILD, *period_bounds("this month", setups[0].clock())
    )
    assert report.images == sum(delivered.values())
    assert report.cost == pytest.approx(await setups[0].spent(), abs=1e-6)


async def test_the_report_tells_images_and_cost_by_kind(make: Make) -> None:
    """Each job counts under its kind: its tool (upscale, vary, expand, blend) or else its
    kind column; a function's own price (`model:function`) is what its images cost."""
    s = await make(start=utc(2026, 3, 10, 8))
    s.quota.prices.update(
        {"wanx2.1-imageedit": 0.14, "wanx2.1-imageedit:super_resolution": 0.05, "wan2.6-image": 0.3}
    )
    image = "data:image/png;base64,iVBORw0KGgo="
    imageedit = ImageRequest("wanx2.1-imageedit", "a fox", images=(image,))
    jobs = [
        (ImageRequest("wan2.6-t2i", "a fox", n=2), 2),
        (ImageRequest("wan2.6-t2i", "a fox", n=3), 1),
        (replace(imageedit, function="super_resolution", upscale_factor=2), 1),
        (replace(imageedit, function="expand", expand=(1.0, 1.0, 2.0, 1.0)), 1),
        (replace(imageedit, function="expand", expand=(2.0, 2.0, 2.0, 2.0)), 1),
        (ImageRequest("wan2.6-image", "both foxes", images=(image, image)), 1),
        (ImageRequest("wan2.5-i2i-preview", "a fox", images=(image,), purpose=Kind.VARY), 0),
    ]
    for request, delivered in jobs:
        job = await s.quota.reserve(NewJob(request, user_id=2, guild_id=GUILD))
        await s.end(job, JobState.DONE, delivered)
    report = await usage_report(s.db, GUILD, *period_bounds("this month", s.clock()))
    assert [(k.kind, k.images, k.cost) for k in report.kinds] == [
        (Kind.TEXT_TO_IMAGE, 3, pytest.approx(0.6)),
        (Kind.UPSCALE, 1, pytest.approx(0.05)),
        (Kind.EXPAND, 2, pytest.approx(0.28)),
        (Kind.BLEND, 1, pytest.approx(0.3)),
    ]  # the variation delivered nothing: no charge, no line
    assert sum(k.images for k in report.kinds) == report.images
    assert sum(k.cost for k in report.kinds) == pytest.approx(report.cost)
