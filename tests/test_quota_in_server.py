"""The reservation and settlement of images in one statement on PostgreSQL (`wanbot_reserve`,
`wanbot_settle`, migrations/postgresql/0007): the fast path is taken once the member's policy
is known, refuses what the Python steps refuse (which then say why, writing nothing), never
uses a policy another process changed since, and a random history of reservations,
settlements and time gives the same outcomes, ledger and running totals on both backends."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from bot.accounting.quota import (
    _FOREVER,
    _HELD_SQL,
    _SPENT_MICROS_SQL,
    DAY,
    BudgetExceeded,
    LimitReached,
    Limits,
    Quota,
    QuotaExceeded,
    micros,
    month_start,
    next_month_start,
)
from bot.jobs.model import Job, JobState, NewJob
from bot.jobs.store import JobStore
from bot.storage.db import Conn, Database
from tests.backends import database_target, postgres_schema
from tests.engine_helpers import NO_LIMITS, FakeClock
from tests.test_budget import ADMIN, GUILD
from tests.test_budget import Setup as BudgetSetup

OTHER_GUILD = GUILD + 50
VIP = 41  # a role with settings of its own
EXEMPT = 42  # a role that is exempt from the per-member limits
PRICES = {"wan2.6-t2i": 0.2, "wan2.2-t2i-flash": 0.14, "wan2.5-t2i-preview": 0.25}
START = datetime(2026, 1, 30, 12, tzinfo=UTC).timestamp()  # two days before a new month


class CountingQuota(Quota):
    """A Quota that counts the reservations its fast path accepted."""

    fast = 0

    async def _reserve_in_server(self, new: NewJob) -> Job | None:
        job = await super()._reserve_in_server(new)
        self.fast += job is not None
        return job


@dataclass
class Setup(BudgetSetup):
    """test_budget's, with the fast path alone and every row a reservation may write."""

    quota: CountingQuota

    async def fast(self, n: int = 1, **kw: Any) -> Job | None:
        """The fast path alone, one statement (None: it left the job to the Python steps,
        having written no job and no reservation)."""
        return await self.quota._reserve_in_server(self.new(n, **kw))

    async def refused(self, n: int = 1, **kw: Any) -> QuotaExceeded:
        """What `quota.reserve` refuses, having reserved nothing."""
        before = await self.snapshot()
        with pytest.raises(QuotaExceeded) as caught:
            await self.reserve(n, **kw)
        after = await self.snapshot()
        # No job and no reservation. The server's function is a statement of its own: a
        # refusal there may keep the running totals it brought up to date (moved past what
        # left the window, or built), which must still agree with the ledger.
        for name in ("jobs", "ledger"):
            assert after[name] == before[name], "a refusal must reserve nothing"
        await self.assert_totals_match_the_ledger()
        return caught.value

    async def snapshot(self) -> dict[str, list[tuple[Any, ...]]]:
        """Every row a reservation may write."""
        tables = {
            "jobs": "SELECT id, state, n, user_id, guild_id FROM jobs ORDER BY id",
            "ledger": "SELECT job_id, entry, images FROM ledger ORDER BY id",
            "windows": "SELECT scope, owner, cutoff, held FROM quota_windows ORDER BY scope, owner",
            "spend": "SELECT guild_id, month, micros FROM quota_spend ORDER BY guild_id, month",
        }
        return {
            name: [tuple(row) for row in await self.db.fetchall(sql)]
            for name, sql in tables.items()
        }

    async def rows(self, job_id: int) -> dict[str, tuple[Any, ...]]:
        rows = await self.db.fetchall(
            "SELECT entry, images, created_at, unit_price, model, seconds, user_id, guild_id"
            " FROM ledger WHERE job_id = ?",
            (job_id,),
        )
        return {row["entry"]: tuple(row)[1:] for row in rows}

    async def assert_totals_match_the_ledger(self) -> int:
        """Every running total equals what the ledger sums to (the SQL quota.py rebuilds them
        with); how many totals there were."""
        return await self.db.write(totals_against_ledger)


def totals_against_ledger(conn: Conn) -> int:
    checked = 0
    windows = conn.execute("SELECT scope, owner, cutoff, held FROM quota_windows").fetchall()
    for scope, owner, cutoff, held in windows:
        exact = conn.execute(_HELD_SQL[scope], (owner, cutoff, _FOREVER)).fetchone()[0]
        assert held == exact, (scope, owner, cutoff, held, exact)
        checked += 1
    for guild, month, spent in conn.execute(
        "SELECT guild_id, month, micros FROM quota_spend"
    ).fetchall():
        exact = conn.execute(_SPENT_MICROS_SQL, (guild, month, next_month_start(month)))
        assert spent == exact.fetchone()[0], (guild, month, spent)
        checked += 1
    return checked


Make = Callable[..., Awaitable[Setup]]


@asynccontextmanager
async def opener(target: str) -> AsyncIterator[Make]:
    """Setups on one database, each its own "process": a connection, a quota, a policy cache."""
    opened: list[Database] = []

    async def factory(limits: Limits = NO_LIMITS, *, clock: FakeClock | None = None) -> Setup:
        db = await Database.open(target)
        opened.append(db)
        clock = clock or FakeClock(START)
        store = JobStore(db, clock=clock)
        quota = CountingQuota(db, store, limits, clock, prices=dict(PRICES))
        return Setup(db, store, quota, clock)

    try:
        yield factory
    finally:
        for db in opened:
            await db.close()


@pytest.fixture
async def make(backend: str, tmp_path: Path) -> AsyncIterator[Make]:
    async with database_target(backend, tmp_path) as target, opener(target) as factory:
        yield factory


@pytest.fixture
async def make_pg() -> AsyncIterator[Make]:
    async with postgres_schema() as target, opener(target) as factory:
        yield factory


# --- the fast path is taken, and refuses what the Python steps refuse ---------------------------


async def test_the_fast_path_accepts_once_the_policy_is_known(make_pg: Make) -> None:
    s = await make_pg(replace(NO_LIMITS, images_per_user_day=20, images_per_guild_day=50))
    assert await s.fast(2) is None  # the server's settings were never read here
    assert await s.snapshot() == {"jobs": [], "ledger": [], "windows": [], "spend": []}
    await s.reserve(1)  # resolves the member's policy
    s.clock.advance(7)
    job = await s.fast(3, user=5, model="wan2.2-t2i-flash")
    assert job is not None and job.id > 0
    assert (job.state, job.n, job.user_id, job.guild_id) == (JobState.QUEUED, 3, 5, GUILD)
    stored = await s.store.get(job.id)
    assert stored is not None and (stored.state, stored.n, stored.model, stored.created_at) == (
        JobState.QUEUED,
        3,
        "wan2.2-t2i-flash",
        s.clock.now,
    )
    assert await s.rows(job.id) == {
        "reserve": (3, s.clock.now, 0.14, "wan2.2-t2i-flash", 0, 5, GUILD)
    }
    assert await s.assert_totals_match_the_ledger() == 3  # the member's, the server's windows
    # quota.reserve takes it too: the jobs it accepts from now on are the server's.
    before = s.quota.fast
    await s.reserve(2, user=6)
    assert s.quota.fast == before + 1


async def test_a_dm_takes_the_fast_path_from_the_first_reservation(make_pg: Make) -> None:
    s = await make_pg(replace(NO_LIMITS, images_per_user_day=5, cooldown_seconds=10))
    job = await s.fast(4, guild=None)
    assert job is not None and job.guild_id is None
    assert await s.rows(job.id) == {"reserve": (4, s.clock.now, 0.2, "wan2.6-t2i", 0, 2, None)}
    s.clock.advance(3)
    assert await s.fast(1, guild=None) is None  # the cooldown
    cooldown = await s.refused(1, guild=None)
    assert isinstance(cooldown, LimitReached)
    assert (cooldown.limit, cooldown.allowed, cooldown.used) == ("cooldown", 10, 3)
    s.clock.advance(10)
    assert await s.fast(2, guild=None) is None  # 4 + 2 > 5
    day = await s.refused(2, guild=None)
    assert isinstance(day, LimitReached)
    assert (day.limit, day.allowed, day.used, day.frees_at) == ("user_day", 5, 4, START + DAY)
    assert await s.fast(1, guild=None) is not None
    assert await s.db.fetchall("SELECT * FROM quota_spend") == []
    await s.assert_totals_match_the_ledger()


@dataclass(frozen=True)
class Refusal:
    """A limit, how to fill it (reservations of n images by user 2 at the start), the one more
    reservation it refuses, and what the refusal says."""

    limits: Limits
    budget: str | None
    fill: tuple[int, ...]
    advance: float  # seconds between the reservations
    then: dict[str, Any]
    says: tuple[Any, ...]  # (limit, allowed, used) as the refusal states them


REFUSALS = {
    "user_day": Refusal(
        replace(NO_LIMITS, images_per_user_day=5), None, (2, 2), 60, {"n": 2}, ("user_day", 5, 4)
    ),
    "guild_day": Refusal(
        replace(NO_LIMITS, images_per_guild_day=6),
        None,
        (3, 2),
        60,
        {"n": 2, "user": 9},
        ("guild_day", 6, 5),
    ),
    "cooldown": Refusal(
        replace(NO_LIMITS, cooldown_seconds=30), None, (1, 1), 31, {"n": 1}, ("cooldown", 30, 0)
    ),
    "concurrent": Refusal(
        replace(NO_LIMITS, concurrent_jobs_per_user=2),
        None,
        (1, 1),
        0,
        {"n": 1},
        ("concurrent", 2, 2),
    ),
    "budget": Refusal(NO_LIMITS, "1.00", (2, 2), 60, {"n": 2, "user": 9}, ("budget", 1.0, 0.8)),
}


@pytest.mark.parametrize("limit", list(REFUSALS))
async def test_a_refusal_leaves_the_fast_path_and_says_which_limit(
    make_pg: Make, limit: str
) -> None:
    case = REFUSALS[limit]
    s = await make_pg(case.limits)
    if case.budget is not None:
        await s.quota.policy.set(GUILD, "monthly_budget", case.budget, by_user=ADMIN)
    first, *rest = case.fill
    await s.reserve(first)  # resolves the policy (the Python steps)
    for n in rest:
        s.clock.advance(case.advance)
        assert await s.fast(n) is not None, "the fast path accepts what fits"
    if limit != "cooldown":  # the cooldown refuses the very next moment
        s.clock.advance(case.advance)
    before = await s.snapshot()
    assert await s.fast(**case.then) is None
    after = await s.snapshot()
    assert (after["jobs"], after["ledger"]) == (before["jobs"], before["ledger"])
    await s.assert_totals_match_the_ledger()
    refusal = await s.refused(**case.then)
    if isinstance(refusal, BudgetExceeded):
        said: tuple[Any, ...] = (refusal.limit, refusal.budget, round(refusal.spent, 6))
    else:
        assert isinstance(refusal, LimitReached)
        said = (refusal.limit, refusal.allowed, refusal.used)
    assert said == case.says
    await s.assert_totals_match_the_ledger()


# --- a policy another process changed is never used ------------------------------------------------


async def two_processes(make_pg: Make, limits: Limits) -> tuple[Setup, Setup]:
    clock = FakeClock(START)
    return await make_pg(limits, clock=clock), await make_pg(limits, clock=clock)


async def test_a_lowered_limit_set_by_another_process_is_honoured(make_pg: Make) -> None:
    a, b = await two_processes(make_pg, replace(NO_LIMITS, images_per_user_day=10))
    await a.reserve(2)
    assert await a.fast(2) is not None  # A knows the policy: 4 of 10
    await b.quota.policy.set(GUILD, "images_per_user_day", "5", by_user=ADMIN)
    assert await a.fast(1) is None, "A's policy is stale: the server's settings changed"
    refusal = await a.refused(2)
    assert isinstance(refusal, LimitReached)
    assert (refusal.limit, refusal.allowed, refusal.used) == ("user_day", 5, 4)
    assert await a.fast(1) is not None  # refreshed: 5 of 5 now
    assert await a.fast(1) is None
    # Raised again by B: A accepts, though what it knew said no.
    await b.quota.policy.set(GUILD, "images_per_user_day", "8", by_user=ADMIN)
    assert (await a.reserve(3)).n == 3
    assert await a.fast(1) is None  # 8 of 8
    await a.assert_totals_match_the_ledger()


async def test_a_role_override_set_by_another_process_is_honoured(make_pg: Make) -> None:
    a, b = await two_processes(make_pg, replace(NO_LIMITS, images_per_user_day=10))
    await a.reserve(3, roles=(VIP,))
    await b.quota.policy.set(GUILD, "images_per_user_day", "3", by_user=ADMIN, role_id=VIP)
    assert await a.fast(1, roles=(VIP,)) is None
    refusal = await a.refused(1, roles=(VIP,))
    assert isinstance(refusal, LimitReached)
    assert (refusal.limit, refusal.allowed, refusal.used) == ("user_day", 3, 3)
    assert await a.fast(1, user=3) is not None  # a member without the role: 10 a day
    # B raises the role's limit: A's member with the role gets more, through the fast path too.
    await b.quota.policy.set(GUILD, "images_per_user_day", "6", by_user=ADMIN, role_id=VIP)
    assert (await a.reserve(2, roles=(VIP,))).n == 2
    assert await a.fast(1, roles=(VIP,)) is not None  # 6 of 6
    assert await a.fast(1, roles=(VIP,)) is None
    await a.assert_totals_match_the_ledger()


async def test_a_budget_set_by_another_process_is_honoured(make_pg: Make) -> None:
    a, b = await two_processes(make_pg, NO_LIMITS)
    await a.reserve(2)  # 0.40 spent, no budget
    assert await a.fast(2) is not None  # 0.80
    await b.quota.policy.set(GUILD, "monthly_budget", "1.00", by_user=ADMIN)
    assert await a.fast(2) is None
    refusal = await a.refused(2)
    assert isinstance(refusal, BudgetExceeded)
    assert (refusal.budget, round(refusal.spent, 6)) == (1.0, 0.8)
    assert await a.fast(1) is not None  # 1.00 of 1.00
    await b.quota.policy.set(GUILD, "monthly_budget", "2.00", by_user=ADMIN)
    assert (await a.reserve(4)).n == 4  # 1.80
    assert await a.fast(2) is None
    assert await a.fast(1, model="wan2.2-t2i-flash") is not None  # 1.94
    await a.assert_totals_match_the_ledger()
    spend = await a.db.fetchone("SELECT micros FROM quota_spend WHERE guild_id = ?", (GUILD,))
    assert spend is not None and spend["micros"] == 1_940_000


async def test_an_exempt_role_lifts_the_member_limits_in_the_fast_path(make_pg: Make) -> None:
    limits = Limits(
        images_per_user_day=2,
        concurrent_jobs_per_user=1,
        cooldown_seconds=600,
        images_per_guild_day=12,
    )
    a, b = await two_processes(make_pg, limits)
    await a.reserve(1, roles=(EXEMPT,))  # the policy without the exemption
    assert await a.fast(1, roles=(EXEMPT,)) is None  # cooldown
    await b.quota.policy.set(GUILD, "exempt", "1", by_user=ADMIN, role_id=EXEMPT)
    assert (await a.reserve(4, roles=(EXEMPT,))).n == 4
    for _ in range(2):  # no cooldown, no cap on jobs or images per member
        assert await a.fast(3, roles=(EXEMPT,)) is not None
    assert await a.fast(2, roles=(EXEMPT,)) is None  # the server's cap still holds: 11 of 12
    refusal = await a.refused(2, roles=(EXEMPT,))
    assert isinstance(refusal, LimitReached)
    assert (refusal.limit, refusal.allowed, refusal.used) == ("guild_day", 12, 11)
    # A member without the role keeps the limits.
    assert await a.fast(1, user=3) is not None
    assert await a.fast(1, user=3) is None
    assert (await a.refused(1, user=3)).limit == "cooldown"
    await a.assert_totals_match_the_ledger()


# --- settling --------------------------------------------------------------------------------------


async def test_settling_twice_changes_nothing_the_second_time(make: Make) -> None:
    s = await make(replace(NO_LIMITS, images_per_user_day=20, images_per_guild_day=20))
    await s.quota.policy.set(GUILD, "monthly_budget", "5.00", by_user=ADMIN)
    await s.reserve(1)
    job = await s.reserve(4)
    s.clock.advance(30)
    await s.end(job, JobState.DONE, delivered=1)
    settled = await s.snapshot()
    assert await s.rows(job.id) == {
        "reserve": (4, START, 0.2, "wan2.6-t2i", 0, 2, GUILD),
        "charge": (1, START + 30, 0.2, "wan2.6-t2i", 0, 2, GUILD),
        "refund": (3, START + 30, 0.2, "wan2.6-t2i", 0, 2, GUILD),
    }
    assert ("user_id", 2, START - DAY, 2) in settled["windows"]  # 1 + 4 - 3
    assert settled["spend"] == [(GUILD, month_start(START), 400_000)]
    for delivered in (0, 4, 1):
        s.clock.advance(5)
        ended = await s.store.get(job.id)
        assert ended is not None
        await s.db.write(s.quota.settle, ended, delivered)
        assert await s.snapshot() == settled
    await s.assert_totals_match_the_ledger()


async def test_settling_a_job_without_a_reservation_does_nothing(make: Make) -> None:
    s = await make(replace(NO_LIMITS, images_per_user_day=20))
    await s.reserve(2)
    unreserved = await s.db.write(s.store.insert, s.new(3))
    before = await s.snapshot()
    await s.db.write(s.quota.settle, unreserved, 1)
    assert await s.snapshot() == before


async def test_wanbot_settle_answers_once(make_pg: Make) -> None:
    s = await make_pg(replace(NO_LIMITS, images_per_user_day=20))
    await s.reserve(1)
    job = await s.fast(3)
    assert job is not None

    async def settle(job_id: int, n: int, delivered: int) -> str:
        row = await s.db.fetchone(
            "SELECT wanbot_settle(?, ?, ?, ?) AS answer", (job_id, n, delivered, s.clock.now)
        )
        assert row is not None
        return str(row["answer"])

    assert await settle(job.id, 3, 1) == "done"
    settled = await s.snapshot()
    assert await s.rows(job.id) == {
        "reserve": (3, START, 0.2, "wan2.6-t2i", 0, 2, GUILD),
        "charge": (1, START, 0.2, "wan2.6-t2i", 0, 2, GUILD),
        "refund": (2, START, 0.2, "wan2.6-t2i", 0, 2, GUILD),
    }
    assert await settle(job.id, 3, 3) == "done"
    assert await s.snapshot() == settled
    assert await settle(job.id + 1000, 3, 0) == "none"
    assert await s.snapshot() == settled
    await s.assert_totals_match_the_ledger()


# --- one random history, both backends ---------------------------------------------------------------

LIMITS = Limits(
    images_per_user_day=8,
    concurrent_jobs_per_user=3,
    cooldown_seconds=10,
    images_per_guild_day=20,
)
ROLE_COMBOS = [(), (), (VIP,), (EXEMPT,), (VIP, EXEMPT), (999,)]
ADVANCES = [1, 5, 15, 60, 600, 3600, 6 * 3600, 25 * 3600]


async def configure(s: Setup) -> None:
    policy = s.quota.policy
    await policy.set(GUILD, "monthly_budget", "6.00", by_user=ADMIN)
    await policy.set(GUILD, "images_per_user_day", "14", by_user=ADMIN, role_id=VIP)
    await policy.set(GUILD, "cooldown_seconds", "5", by_user=ADMIN, role_id=VIP)
    await policy.set(GUILD, "exempt", "1", by_user=ADMIN, role_id=EXEMPT)
    await policy.set(OTHER_GUILD, "images_per_guild_day", "30", by_user=ADMIN)
    await policy.set(OTHER_GUILD, "monthly_budget", "1.50", by_user=ADMIN)


async def history(s: Setup, seed: int, steps: int = 300) -> list[tuple[Any, ...]]:
    """A seeded random history; what each step came to."""
    await configure(s)
    rng = random.Random(seed)
    open_jobs: list[Job] = []
    outcomes: list[tuple[Any, ...]] = []
    for step in range(steps):
        roll = rng.random()
        if roll < 0.55 or not open_jobs:
            guild = rng.choice([GUILD, GUILD, GUILD, OTHER_GUILD, None])
            new = s.new(
                rng.randint(1, 4),
                user=rng.randint(1, 6),
                guild=guild,
                model=rng.choice([*PRICES, "wan2.2-t2i-plus"]),  # the last one is free
                roles=rng.choice(ROLE_COMBOS),
            )
            try:
                job = await s.quota.reserve(new)
            except QuotaExceeded as refusal:
                outcomes.append((step, "refused", refusal.limit, dict(refusal.values)))
            else:
                open_jobs.append(job)
                outcomes.append((step, "accepted", job.n, job.created_at))
        elif roll < 0.82:
            job = open_jobs.pop(rng.randrange(len(open_jobs)))
            state = rng.choice([JobState.DONE, JobState.DONE, JobState.FAILED, JobState.CANCELLED])
            delivered = rng.randint(0, job.n) if state is JobState.DONE else 0
            await s.end(job, state, delivered)
            outcomes.append((step, "ended", state.value, delivered))
        elif roll < 0.98:
            s.clock.advance(rng.choice(ADVANCES))
            outcomes.append((step, "clock", s.clock.now))
        else:  # the server's settings change now and then (the cached policies go stale)
            value = rng.choice(["5", "8", "12"])
            await s.quota.policy.set(GUILD, "images_per_user_day", value, by_user=ADMIN)
            outcomes.append((step, "setting", value))
        if step % 25 == 0:
            await s.assert_totals_match_the_ledger()
    await s.assert_totals_match_the_ledger()
    return outcomes


async def ledger_by_job(db: Database) -> list[tuple[Any, ...]]:
    """The ledger with each job by its place among the accepted ones (ids differ: PostgreSQL's
    sequences do not give back the id of a job a refusal undid)."""
    rows = await db.fetchall(
        "SELECT job_id, entry, images, created_at, unit_price, model, user_id, guild_id"
        " FROM ledger ORDER BY job_id, entry"
    )
    order = {job_id: k for k, job_id in enumerate(sorted({r["job_id"] for r in rows}))}
    return [(order[r["job_id"]], *tuple(r)[1:]) for r in rows]


async def entry_sums(db: Database) -> list[tuple[Any, ...]]:
    rows = await db.fetchall(
        "SELECT entry, COUNT(*) AS k, SUM(images) AS images FROM ledger GROUP BY entry"
        " ORDER BY entry"
    )
    return [tuple(row) for row in rows]


@pytest.mark.parametrize("seed", [11, 12])
async def test_a_random_history_is_the_same_on_both_backends(tmp_path: Path, seed: int) -> None:
    results: dict[str, tuple[Any, ...]] = {}
    for backend in ("sqlite", "postgresql"):
        async with database_target(backend, tmp_path) as target, opener(target) as make:
            s = await make(LIMITS)
            outcomes = await history(s, seed)
            results[backend] = (
                outcomes,
                await ledger_by_job(s.db),
                await entry_sums(s.db),
                await s.snapshot(),
                s.quota.fast,
            )
    sqlite, postgres = results["sqlite"], results["postgresql"]
    for mine, theirs in zip(sqlite[0], postgres[0], strict=True):
        assert mine == theirs, "the first step where the backends differ"
    assert sqlite[1] == postgres[1]
    assert sqlite[2] == postgres[2]
    # The month's money totals are the same. A window's total is kept from its own cutoff,
    # which the server's function moves (taking out what left the window) also when it then
    # refuses, as a statement of its own, where SQLite's refusal rolls that back: each
    # backend's windows agree with its ledger (checked along the way and at the end), and
    # the ledgers are the same.
    assert sqlite[3]["spend"] == postgres[3]["spend"]
    owners = [[row[:2] for row in run[3]["windows"]] for run in (sqlite, postgres)]
    assert owners[0] == owners[1], "windows"
    # Not vacuous: every limit refused something, time crossed a month and days, and the
    # server's function accepted most reservations on PostgreSQL (none on SQLite).
    outcomes = sqlite[0]
    limits = {o[2] for o in outcomes if o[1] == "refused"}
    assert {"user_day", "guild_day", "cooldown", "concurrent", "budget"} <= limits, limits
    accepted = sum(o[1] == "accepted" for o in outcomes)
    assert sqlite[4] == 0 and postgres[4] > accepted // 2, (postgres[4], accepted)
    last = max(o[2] for o in outcomes if o[1] == "clock")
    assert month_start(last) > month_start(START) and last - START > 2 * DAY
    months = {row[1] for row in postgres[3]["spend"]}
    assert len(months) >= 2, months


@pytest.mark.parametrize("price", [0.0001245, 0.0004955, 0.14])
async def test_a_refund_gives_back_the_money_its_reservation_held(make: Make, price: float) -> None:
    """The millionths a settlement gives back are the ones the reservation added (`micros`),
    for prices whose millionths a decimal rounding would round the other way."""
    s = await make(NO_LIMITS)
    s.quota.prices = {"wan2.6-t2i": price}
    await s.quota.policy.set(GUILD, "monthly_budget", "100.00", by_user=ADMIN)
    await s.reserve(1)
    job = await s.reserve(4)
    await s.end(job, JobState.DONE, delivered=1)
    assert await s.assert_totals_match_the_ledger() == 1
    spend = await s.db.fetchone("SELECT micros FROM quota_spend WHERE guild_id = ?", (GUILD,))
    assert spend is not None and spend["micros"] == 2 * micros(price)


async def test_a_window_moved_on_by_a_later_clock_still_counts_what_this_one_holds(
    make: Make,
) -> None:
    """Two requests' clocks need not arrive in order (another process's, or one that waited
    less for the lock): a window already moved past reservations that are still inside this
    request's 24 h counts them again, for the member and for the server, without a rebuild."""
    s = await make(replace(NO_LIMITS, images_per_user_day=3, images_per_guild_day=6))
    await s.reserve(2)  # at START, for user 2
    s.clock.now = START + DAY + 10  # the first has left this window: the totals move on
    await s.reserve(1)
    await s.reserve(1, user=3)
    s.clock.now = START + DAY - 5  # an earlier clock: the first is inside its 24 h again
    day = await s.refused(1)
    assert isinstance(day, LimitReached)
    assert (day.limit, day.used) == ("user_day", 3)
    await s.reserve(2, user=3)  # the server's 2 + 1 + 1 + 2 = 6 of 6
    server = await s.refused(1, user=4)
    assert isinstance(server, LimitReached)
    assert (server.limit, server.used) == ("guild_day", 6)
    cutoffs = await s.db.fetchall("SELECT cutoff FROM quota_windows WHERE scope = 'guild_id'")
    assert [row[0] for row in cutoffs] == [START + 10]  # not moved back, nor rebuilt
    await s.assert_totals_match_the_ledger()
