"""Quota policy and accounting: reserve when a job is accepted, settle when it ends.

A job reserves its n images in the same transaction that creates it, after checking every
limit, so concurrent requests can never overrun a limit. When the job ends it is settled once:
a `charge` row for the images delivered and a `refund` row for the rest (failed images, failed,
cancelled and expired jobs refund everything). A unique index makes settling twice impossible.

Usage in a rolling window counts reservations made in the window minus their refunds, so a job
in flight already counts against the limit, and a refund frees its images at once.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, fields
from datetime import UTC, datetime

import aiosqlite

from bot.db import Database, first, rows
from bot.i18n import Lang, text
from bot.jobs.model import Job, NewJob
from bot.jobs.store import JobStore
from bot.policy import LIMIT_SETTINGS, Policy, PolicyStore

DAY = 24 * 3600.0

_WINDOW_SELECT = (
    "SELECT r.created_at, r.images - COALESCE(f.images, 0) AS held FROM ledger r"
    " LEFT JOIN ledger f ON f.job_id = r.job_id AND f.entry = 'refund'"
    " WHERE r.entry = 'reserve' AND r.created_at > ?2 AND "
)
_WINDOW_SQL = {
    "user_id": _WINDOW_SELECT + "r.user_id = ?1 ORDER BY r.created_at",
    "guild_id": _WINDOW_SELECT + "r.guild_id = ?1 ORDER BY r.created_at",
}
# The images a window holds, summed by SQLite: a busy server's window has thousands of rows,
# which only a refusal (to say when enough of them leave) needs one by one.
_HELD_SELECT = (
    "SELECT COALESCE(SUM(r.images - COALESCE(f.images, 0)), 0) FROM ledger r"
    " LEFT JOIN ledger f ON f.job_id = r.job_id AND f.entry = 'refund'"
    " WHERE r.entry = 'reserve' AND r.created_at > ?2 AND "
)
_HELD_SQL = {
    "user_id": _HELD_SELECT + "r.user_id = ?1",
    "guild_id": _HELD_SELECT + "r.guild_id = ?1",
}


@dataclass(frozen=True)
class Limits:
    """0 means no limit."""

    images_per_user_day: int = 25
    concurrent_jobs_per_user: int = 2
    cooldown_seconds: int = 5
    images_per_guild_day: int = 200

    @classmethod
    def setting_names(cls) -> list[str]:
        return [f.name for f in fields(cls)]


class QuotaExceeded(Exception):
    """A limit refuses the request; says which and when it frees (epoch seconds, or None)."""

    def __init__(self, limit: str, *, allowed: int, used: int, frees_at: float | None) -> None:
        super().__init__(f"{limit}: used {used} of {allowed}; frees at {frees_at}")
        self.limit = limit
        self.allowed = allowed
        self.used = used
        self.frees_at = frees_at

    def user_message(
        self, lang: Lang = "en", format_time: Callable[[float], str] | None = None
    ) -> str:
        if not self.frees_at:
            when = "?"
        elif format_time is not None:
            when = format_time(self.frees_at)
        else:
            when = relative_time(self.frees_at, lang=lang)
        return text(f"quota.{self.limit}", lang, allowed=self.allowed, used=self.used, when=when)


def relative_time(moment: float, now: float | None = None, *, lang: Lang = "en") -> str:
    """How long until `moment`, to fill a message's {when}: "in 5 min" / "5 分钟" (the Chinese
    messages say "{when}后")."""
    seconds = max(0, int(moment - (time.time() if now is None else now)))
    if seconds < 60:
        return f"{seconds} 秒" if lang == "zh" else f"in {seconds} s"
    minutes = (seconds + 59) // 60
    if minutes < 60:
        return f"{minutes} 分钟" if lang == "zh" else f"in {minutes} min"
    if lang == "zh":
        return f"{minutes // 60} 小时 {minutes % 60} 分钟"
    return f"in {minutes // 60} h {minutes % 60} min"


@dataclass(frozen=True)
class Standing:
    """A member's usage against their limits, for /quota."""

    limits: Limits
    budget: float
    spent: float
    exempt: bool
    user_images: int
    user_frees_at: float | None
    active_jobs: int
    guild_images: int
    guild_frees_at: float | None
    cooldown_until: float | None


class Quota:
    def __init__(
        self,
        db: Database,
        store: JobStore,
        defaults: Limits,
        clock: Callable[[], float] = time.time,
        *,
        policy: PolicyStore | None = None,
        prices: dict[str, float] | None = None,
    ) -> None:
        self.db = db
        self.store = store
        self.defaults = defaults
        self.clock = clock
        self.policy = policy or PolicyStore(db, policy_defaults(defaults), clock)
        self.prices = prices or {}

    def price(self, model: str) -> float:
        return self.prices.get(model, 0.0)

    async def limits_for(
        self, conn: aiosqlite.Connection, guild_id: int | None, role_ids: Iterable[int] = ()
    ) -> Limits:
        return limits_of(await self.policy.effective(conn, guild_id, role_ids))

    async def set_guild_limit(
        self, guild_id: int, setting: str, value: int, by_user: int | None = None
    ) -> None:
        if setting not in Limits.setting_names():
            raise ValueError(f"unknown limit {setting!r}")
        if value < 0:
            raise ValueError("a limit cannot be negative")
        await self.policy.set(guild_id, setting, str(value), by_user=by_user)

    async def reserve(self, new: NewJob) -> Job:
        """Check every limit and accept the job (queued, n images reserved) in one transaction."""
        async with self.db.transaction() as conn:
            now = self.clock()
            policy = await self.policy.effective(conn, new.guild_id, new.role_ids)
            await self._check(conn, new, limits_of(policy), now)
            unit_price = self.price(new.request.model)
            await self._check_budget(conn, new, policy.money("monthly_budget"), unit_price, now)
            job_id = await self.store.insert(conn, new)
            await conn.execute(
                "INSERT INTO ledger (job_id, user_id, guild_id, entry, images, created_at,"
                " unit_price, model) VALUES (?, ?, ?, 'reserve', ?, ?, ?, ?)",
                (
                    job_id,
                    new.user_id,
                    new.guild_id,
                    new.request.n,
                    now,
                    unit_price,
                    new.request.model,
                ),
            )
            job = await self.store.get_in(conn, job_id)
        assert job is not None
        return job

    async def _check(
        self, conn: aiosqlite.Connection, new: NewJob, limits: Limits, now: float
    ) -> None:
        n = new.request.n
        if limits.cooldown_seconds:
            row = await first(
                conn, "SELECT MAX(created_at) FROM jobs WHERE user_id = ?", (new.user_id,)
            )
            last = row[0] if row else None
            if last is not None and now - last < limits.cooldown_seconds:
                raise QuotaExceeded(
                    "cooldown",
                    allowed=limits.cooldown_seconds,
                    used=int(now - last),
                    frees_at=last + limits.cooldown_seconds,
                )
        if limits.concurrent_jobs_per_user:
            row = await first(
                conn,
                "SELECT COUNT(*) FROM jobs WHERE user_id = ? AND state IN"
                " ('queued', 'submitted', 'running', 'delivering')",
                (new.user_id,),
            )
            active = row[0] if row else 0
            if active >= limits.concurrent_jobs_per_user:
                raise QuotaExceeded(
                    "concurrent",
                    allowed=limits.concurrent_jobs_per_user,
                    used=active,
                    frees_at=None,
                )
        if limits.images_per_user_day:
            await self._check_window(
                conn, "user_day", "user_id", new.user_id, limits.images_per_user_day, n, now
            )
        if limits.images_per_guild_day and new.guild_id is not None:
            await self._check_window(
                conn, "guild_day", "guild_id", new.guild_id, limits.images_per_guild_day, n, now
            )

    async def _window(
        self, conn: aiosqlite.Connection, column: str, owner: int, now: float
    ) -> list[tuple[float, int]]:
        """(reserved at, images still counted) for each reservation in the last 24 h."""
        return [
            (row[0], row[1]) for row in await rows(conn, _WINDOW_SQL[column], (owner, now - DAY))
        ]

    async def _check_window(
        self,
        conn: aiosqlite.Connection,
        limit_name: str,
        column: str,
        owner: int,
        allowed: int,
        n: int,
        now: float,
    ) -> None:
        row = await first(conn, _HELD_SQL[column], (owner, now - DAY))
        if (row[0] if row else 0) + n <= allowed:
            return
        window = await self._window(conn, column, owner, now)
        used = sum(held for _, held in window)
        raise QuotaExceeded(
            limit_name, allowed=allowed, used=used, frees_at=_frees_at(window, used + n - allowed)
        )

    async def spent_this_month(
        self, conn: aiosqlite.Connection, guild_id: int, now: float
    ) -> float:
        """Money held or charged by the server's jobs since the 1st of this month (UTC)."""
        row = await first(
            conn,
            "SELECT COALESCE(SUM((r.images - COALESCE(f.images, 0)) * r.unit_price), 0)"
            " FROM ledger r LEFT JOIN ledger f ON f.job_id = r.job_id AND f.entry = 'refund'"
            " WHERE r.entry = 'reserve' AND r.guild_id = ? AND r.created_at >= ?",
            (guild_id, month_start(now)),
        )
        return float(row[0]) if row else 0.0

    async def _check_budget(
        self, conn: aiosqlite.Connection, new: NewJob, budget: float, unit_price: float, now: float
    ) -> None:
        if budget <= 0 or new.guild_id is None:
            return
        spent = await self.spent_this_month(conn, new.guild_id, now)
        if spent + new.request.n * unit_price > budget + 1e-9:
            raise QuotaExceeded(
                "budget", allowed=budget, used=spent, frees_at=next_month_start(now)
            )

    async def settle(self, conn: aiosqlite.Connection, job: Job, delivered: int) -> None:
        """Charge `delivered` images and refund the rest of the reservation, once per job."""
        delivered = max(0, min(delivered, job.n))
        now = self.clock()
        await conn.executemany(
            "INSERT INTO ledger (job_id, user_id, guild_id, entry, images, created_at,"
            " unit_price, model) SELECT ?, ?, ?, ?, ?, ?, unit_price, model FROM ledger"
            " WHERE job_id = ? AND entry = 'reserve' ON CONFLICT (job_id, entry) DO NOTHING",
            [
                (job.id, job.user_id, job.guild_id, "charge", delivered, now, job.id),
                (job.id, job.user_id, job.guild_id, "refund", job.n - delivered, now, job.id),
            ],
        )

    async def refund(self, conn: aiosqlite.Connection, job: Job) -> None:
        await self.settle(conn, job, 0)

    async def standing(
        self, user_id: int, guild_id: int | None, role_ids: Iterable[int] = ()
    ) -> Standing:
        async with self.db.transaction() as conn:
            now = self.clock()
            policy = await self.policy.effective(conn, guild_id, role_ids)
            limits = limits_of(policy)
            budget = policy.money("monthly_budget")
            spent = await self.spent_this_month(conn, guild_id, now) if guild_id else 0.0
            user_window = await self._window(conn, "user_id", user_id, now)
            guild_window = (
                await self._window(conn, "guild_id", guild_id, now) if guild_id is not None else []
            )
            active_row = await first(
                conn,
                "SELECT COUNT(*), MAX(created_at) FROM jobs WHERE user_id = ? AND state IN"
                " ('queued', 'submitted', 'running', 'delivering')",
                (user_id,),
            )
            last_row = await first(
                conn, "SELECT MAX(created_at) FROM jobs WHERE user_id = ?", (user_id,)
            )
        last = last_row[0] if last_row else None
        cooldown_until = (
            last + limits.cooldown_seconds
            if last is not None and now - last < limits.cooldown_seconds
            else None
        )
        user_used = sum(h for _, h in user_window)
        guild_used = sum(h for _, h in guild_window)
        return Standing(
            limits=limits,
            budget=budget,
            spent=spent,
            exempt=policy.exempt,
            user_images=user_used,
            user_frees_at=_frees_at(user_window, 1) if user_used else None,
            active_jobs=active_row[0] if active_row else 0,
            guild_images=guild_used,
            guild_frees_at=_frees_at(guild_window, 1) if guild_used else None,
            cooldown_until=cooldown_until,
        )


def policy_defaults(limits: Limits, **others: str) -> dict[str, str]:
    """The bot-wide defaults of every server setting, as the policy store keeps them."""
    values = {name: str(getattr(limits, name)) for name in LIMIT_SETTINGS}
    values.update(
        monthly_budget="0",
        max_n="4",
        allowed_models="",
        default_model="",
        default_size="",
        prompt_extend="member",
        watermark="member",
        allowed_channels="",
        nsfw_channels="any",
        audit_channel="",
        exempt="0",
    )
    values.update(others)
    return values


def limits_of(policy: Policy) -> Limits:
    """The numeric limits for a member; an exempt role lifts the per-member ones."""
    if policy.exempt:
        return Limits(0, 0, 0, policy.int("images_per_guild_day"))
    return Limits(*(policy.int(name) for name in LIMIT_SETTINGS))


def month_start(now: float) -> float:
    moment = datetime.fromtimestamp(now, UTC)
    return datetime(moment.year, moment.month, 1, tzinfo=UTC).timestamp()


def next_month_start(now: float) -> float:
    moment = datetime.fromtimestamp(now, UTC)
    year, month = (moment.year + 1, 1) if moment.month == 12 else (moment.year, moment.month + 1)
    return datetime(year, month, 1, tzinfo=UTC).timestamp()


def _frees_at(window: list[tuple[float, int]], needed: int) -> float | None:
    """When enough reservations leave the 24 h window to free `needed` images."""
    freed = 0
    for reserved_at, held in window:
        freed += held
        if held and freed >= needed:
            return reserved_at + DAY
    return None
