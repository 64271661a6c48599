"""Quota policy and accounting: reserve when a job is accepted, settle when it ends.

A job reserves its n images in the same transaction that creates it, after checking every
limit, so concurrent requests can never overrun a limit. When the job ends it is settled once:
a `charge` row for the images delivered and a `refund` row for the rest (failed images, failed,
cancelled and expired jobs refund everything). A unique index makes settling twice impossible.

Usage in a rolling window counts reservations made in the window minus their refunds, so a job
in flight already counts against the limit, and a refund frees its images at once.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from bot.accounting.policy import LIMIT_SETTINGS, SETTINGS, Policy, PolicyStore
from bot.dashscope.requests import ImageRequest
from bot.errors import Moment, UserError
from bot.jobs.model import Job, JobState, NewJob
from bot.jobs.store import JobStore
from bot.storage.db import Conn, Cursor, Database

DAY = 24 * 3600.0

_NET = "r.images - COALESCE(f.images, 0)"
_REFUNDS = " FROM ledger r LEFT JOIN ledger f ON f.job_id = r.job_id AND f.entry = 'refund'"
_RESERVES = f"{_REFUNDS} WHERE r.entry = 'reserve' AND "
# Images limits count images, not videos: a video's rows carry its seconds.
_IMAGES = "r.seconds = 0 AND "
# (reserved at, images still held) of one owner's reservations after ?2, oldest first.
_WINDOW_SQL = {
    column: f"SELECT r.created_at, {_NET} AS held{_RESERVES}{_IMAGES}r.{column} = ?1"
    " AND r.created_at > ?2 ORDER BY r.created_at"
    for column in ("user_id", "guild_id")
}
# Images held by one owner's reservations made in (?2, ?3].
_HELD_SQL = {
    column: f"SELECT COALESCE(SUM({_NET}), 0){_RESERVES}{_IMAGES}r.{column} = ?1"
    " AND r.created_at > ?2 AND r.created_at <= ?3"
    for column in ("user_id", "guild_id")
}
# An owner's running total (cutoff, held) and the reservations that left the window since its
# cutoff, up to ?3 (how many, and the images they still held). No row: no total yet.
_MOVE_SQL = {
    column: f"SELECT w.cutoff, w.held, COUNT(r.id), COALESCE(SUM({_NET}), 0)"  # noqa: S608
    " FROM quota_windows w"
    f" LEFT JOIN ledger r ON r.{column} = w.owner AND r.entry = 'reserve'"
    " AND r.created_at > w.cutoff AND r.created_at <= ?3 AND r.seconds = 0"
    " LEFT JOIN ledger f ON f.job_id = r.job_id AND f.entry = 'refund'"
    " WHERE w.scope = ?2 AND w.owner = ?1 GROUP BY w.cutoff, w.held"
    for column in ("user_id", "guild_id")
}
# (reserved at, video seconds still held) of one owner's reservations after ?2, oldest first.
_SECONDS_SQL = {
    column: "SELECT r.created_at, r.seconds - COALESCE(f.seconds, 0) AS held"
    f"{_RESERVES}r.seconds > 0 AND r.{column} = ?1 AND r.created_at > ?2 ORDER BY r.created_at"
    for column in ("user_id", "guild_id")
}


# Money held or charged by a server's reservations made in [?2, ?3), in millionths: what a
# settled job's charge row says it cost (a video's seconds may cost less than reserved), else
# what its reservation holds.
_SPENT_MICROS_SQL = (
    "SELECT COALESCE(SUM(COALESCE(c.images * CAST(ROUND(c.unit_price * 1000000) AS BIGINT),"
    " r.images * CAST(ROUND(r.unit_price * 1000000) AS BIGINT))), 0) FROM ledger r"
    " LEFT JOIN ledger c ON c.job_id = r.job_id AND c.entry = 'charge'"
    " WHERE r.entry = 'reserve' AND r.guild_id = ?1 AND r.created_at >= ?2 AND r.created_at < ?3"
)
_ACTIVE_SQL = (
    "SELECT COUNT(*) FROM jobs WHERE user_id = ? AND state IN"
    " ('queued', 'submitted', 'running', 'delivering')"
)
# When the member's last job was accepted: its reservation (one per job, made with it).
_LAST_JOB_SQL = "SELECT MAX(created_at) FROM ledger WHERE user_id = ? AND entry = 'reserve'"
_FOREVER = 1e18
# The reservation and the settlement of images on PostgreSQL: migrations/postgresql/0007.
_RESERVE_SQL = f"SELECT wanbot_reserve({', '.join('?' * 25)})"
_SETTLE_IN_SERVER_SQL = "SELECT wanbot_settle(?, ?, ?, ?)"
# A settlement's two rows, once: the entries it added (none when the job was settled before).
_SETTLE_SQL = (
    "INSERT INTO ledger (job_id, user_id, guild_id, entry, images, created_at, unit_price, model,"
    " seconds) VALUES (?, ?, ?, 'charge', ?, ?, ?, ?, ?), (?, ?, ?, 'refund', ?, ?, ?, ?, ?)"
    " ON CONFLICT (job_id, entry) DO NOTHING RETURNING entry"
)


def micros(amount: float) -> int:
    """An amount of money in millionths of the unit, as the running totals keep it: rounded
    half away from zero, as SQLite's ROUND() does, so a total kept here and one summed by SQL
    from the ledger agree to the unit."""
    scaled = amount * 1_000_000
    return int(scaled + 0.5) if scaled >= 0 else -int(-scaled + 0.5)


@dataclass(frozen=True)
class Limits:
    """0 means no limit."""

    images_per_user_day: int
    concurrent_jobs_per_user: int
    cooldown_seconds: int
    images_per_guild_day: int
    video_seconds_per_user_day: int = 0
    video_seconds_per_guild_day: int = 0


# The limits when the environment sets none: the server settings' declared defaults.
DEFAULT_LIMITS = Limits(*(int(SETTINGS[name].default) for name in LIMIT_SETTINGS))


class QuotaExceeded(UserError):
    """A limit refuses the request and nothing was reserved: which limit, and when it frees
    (epoch seconds, or None when waiting alone will not help)."""

    def __init__(self, limit: str, frees_at: float | None, usage: str) -> None:
        super().__init__(f"{limit}: {usage}; frees at {frees_at}")
        self.limit = limit
        self.frees_at = frees_at

    @property
    def key(self) -> str:
        return f"quota.{self.limit}"

    @property
    def when(self) -> Moment | str:
        return Moment(self.frees_at) if self.frees_at else "?"


class LimitReached(QuotaExceeded):
    """One of the `Limits` refuses: counts of images or jobs, or seconds between jobs."""

    def __init__(self, limit: str, *, allowed: int, used: int, frees_at: float | None) -> None:
        super().__init__(limit, frees_at, f"used {used} of {allowed}")
        self.allowed = allowed
        self.used = used

    @property
    def values(self) -> Mapping[str, object]:
        return {"allowed": self.allowed, "used": self.used, "when": self.when}


class BudgetExceeded(QuotaExceeded):
    """The server's monthly budget refuses: amounts of money, so fractions of the unit count."""

    def __init__(self, *, budget: float, spent: float, renews_at: float) -> None:
        super().__init__("budget", renews_at, f"spent {spent} of {budget}")
        self.budget = budget
        self.spent = spent

    @property
    def values(self) -> Mapping[str, object]:
        return {"allowed": self.budget, "used": self.spent, "when": self.when}


class VideoBudgetExceeded(BudgetExceeded):
    """The server's monthly budget has room for images but not for this video: what the video
    would cost and what is left say it (a video costs many images' worth)."""

    def __init__(self, *, budget: float, spent: float, renews_at: float, cost: float) -> None:
        super().__init__(budget=budget, spent=spent, renews_at=renews_at)
        self.cost = cost

    @property
    def key(self) -> str:
        return "quota.budget_video"

    @property
    def values(self) -> Mapping[str, object]:
        left = max(0.0, self.budget - self.spent)
        return {"cost": self.cost, "left": left, "allowed": self.budget, "when": self.when}


class VideoSecondsReached(LimitReached):
    """A video seconds limit refuses: how many seconds are left and when more free up."""

    def __init__(
        self, limit: str, *, allowed: int, used: int, asked: int, frees_at: float | None
    ) -> None:
        super().__init__(limit, allowed=allowed, used=used, frees_at=frees_at)
        self.asked = asked

    @property
    def values(self) -> Mapping[str, object]:
        left = max(0, self.allowed - self.used)
        return {**super().values, "left": left, "asked": self.asked}


class VideoNotAllowed(QuotaExceeded):
    """The server (or none of the member's roles) allows videos."""

    def __init__(self) -> None:
        super().__init__("video_off", None, "videos are not allowed here")


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
    video_seconds: int = 0  # the member's video seconds in the last 24 h
    video_frees_at: float | None = None
    video_allowed: bool = True


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

    def price(self, request: ImageRequest) -> float:
        """One image's price: the function's own (`model:function`) if set, else the model's;
        one video's: its seconds at the price of a second at its resolution (`model:720P`)."""
        unit = self.prices.get(request.price_key, self.prices.get(request.model, 0.0))
        return unit * (request.duration or 0) if request.kind.makes_video else unit

    async def reserve(self, new: NewJob) -> Job:
        """Check every limit and accept the job (queued, n images reserved) in one transaction.
        The member's and the server's locks come first, so two processes cannot both pass a
        check that only one of them may (SQLite's writers are alone anyway)."""
        if self.db.dialect == "postgresql" and not new.kind.makes_video:
            job = await self._reserve_in_server(new)
            if job is not None:
                return job
        return await self.db.write(self._reserve, new)

    def _reserve(self, conn: Conn, new: NewJob) -> Job:
        conn.lock("user", new.user_id)
        now = self.clock()
        policy = self.policy.effective(conn, new.guild_id, new.role_ids)
        if new.kind.makes_video and policy.text("allow_video") != "1":
            raise VideoNotAllowed()
        limits = limits_of(policy)
        self._check(conn, new, limits, now)
        job = self.store.insert(conn, new)
        unit_price = self.price(new.request)
        seconds = video_seconds(new.request)
        if new.guild_id is not None:
            # The server's limits last: its lock, which every member of the server waits for
            # on PostgreSQL, is held across the fewest round trips (a refusal undoes the job).
            # In pipeline mode the lock and both of the server's reads go in one, the writes
            # after the checks and the COMMIT in another.
            conn.pipeline()
            conn.lock("guild", new.guild_id)
            budget = policy.money("monthly_budget")
            spend = _spend(conn, new.guild_id, now) if budget > 0 else None
            if seconds and limits.video_seconds_per_guild_day:
                _check_seconds(
                    conn,
                    "video_guild_day",
                    "guild_id",
                    new.guild_id,
                    limits.video_seconds_per_guild_day,
                    seconds,
                    now,
                )
            elif not seconds and limits.images_per_guild_day:
                _check_window(
                    conn,
                    "guild_day",
                    "guild_id",
                    new.guild_id,
                    limits.images_per_guild_day,
                    new.request.n,
                    now,
                )
            self._check_budget(conn, new, budget, unit_price, now, spend)
        n = new.request.n
        conn.execute(
            "INSERT INTO ledger (job_id, user_id, guild_id, entry, images, created_at,"
            " unit_price, model, seconds) VALUES (?, ?, ?, 'reserve', ?, ?, ?, ?, ?)",
            (job.id, new.user_id, new.guild_id, n, now, unit_price, new.request.model, seconds),
        )
        # A video counts in the seconds limits (summed from the ledger), not the images ones.
        _add_held(conn, new.user_id, new.guild_id, now, 0 if seconds else n, n * micros(unit_price))
        return job

    async def _reserve_in_server(self, new: NewJob) -> Job | None:
        """PostgreSQL: `_reserve`'s steps for images in one statement the server runs as a
        transaction of its own (`wanbot_reserve`, migrations/postgresql/0007), with the
        member's policy as this process last resolved it. None when that policy is not known
        yet or the server's settings changed since, or when a limit refuses: `_reserve` runs
        next, and refreshes the policy or says which limit refuses and until when."""
        known = self.policy.known(new.guild_id, new.role_ids)
        if known is None:
            return None
        version, policy = known
        limits = limits_of(policy)
        now = self.clock()
        unit_price = self.price(new.request)
        budget = policy.money("monthly_budget")
        month, next_month = _month(now)
        # One statement: `fetchone` runs it without BEGIN and COMMIT, one round trip.
        row = await self.db.fetchone(
            _RESERVE_SQL,
            (
                now,
                now - DAY,
                month,
                next_month,
                version,
                limits.cooldown_seconds,
                limits.concurrent_jobs_per_user,
                limits.images_per_user_day,
                limits.images_per_guild_day,
                micros(budget) if budget > 0 else -1,
                unit_price,
                micros(unit_price),
                *JobStore.values(new),
                list(new.request.images),
            ),
        )
        job_id = int(row[0])
        return Job.queued(job_id, new, now) if job_id > 0 else None

    def _check(self, conn: Conn, new: NewJob, limits: Limits, now: float) -> None:
        """The member's own limits: cooldown, jobs in progress, images per day."""
        n = new.request.n
        if limits.cooldown_seconds:
            last = conn.execute(_LAST_JOB_SQL, (new.user_id,)).fetchone()[0]
            if last is not None and now - last < limits.cooldown_seconds:
                raise LimitReached(
                    "cooldown",
                    allowed=limits.cooldown_seconds,
                    used=int(now - last),
                    frees_at=last + limits.cooldown_seconds,
                )
        if limits.concurrent_jobs_per_user:
            active = conn.execute(_ACTIVE_SQL, (new.user_id,)).fetchone()[0]
            if active >= limits.concurrent_jobs_per_user:
                raise LimitReached(
                    "concurrent",
                    allowed=limits.concurrent_jobs_per_user,
                    used=active,
                    frees_at=None,
                )
        seconds = video_seconds(new.request)
        if seconds and limits.video_seconds_per_user_day:
            _check_seconds(
                conn,
                "video_user_day",
                "user_id",
                new.user_id,
                limits.video_seconds_per_user_day,
                seconds,
                now,
            )
        elif not seconds and limits.images_per_user_day:
            _check_window(
                conn, "user_day", "user_id", new.user_id, limits.images_per_user_day, n, now
            )

    def _check_budget(
        self,
        conn: Conn,
        new: NewJob,
        budget: float,
        unit_price: float,
        now: float,
        spend: Cursor | None = None,
    ) -> None:
        if budget <= 0 or new.guild_id is None:
            return
        spent = _spent_micros(conn, new.guild_id, now, spend)
        if spent + new.request.n * micros(unit_price) <= micros(budget):
            return
        if new.kind.makes_video:
            raise VideoBudgetExceeded(
                budget=budget,
                spent=spent / 1_000_000,
                renews_at=next_month_start(now),
                cost=new.request.n * unit_price,
            )
        raise BudgetExceeded(
            budget=budget, spent=spent / 1_000_000, renews_at=next_month_start(now)
        )

    def settle(self, conn: Conn, job: Job, delivered: int) -> None:
        """Charge `delivered` images and refund the rest of the reservation, once per job
        (inside a `Database.write`). A delivered video is charged the seconds DashScope
        reported (`job.video_seconds`; the reservation's when it reported none), never more
        than were reserved; the charge row's unit price is what those seconds cost."""
        delivered = max(0, min(delivered, job.n))
        if self.db.dialect == "postgresql":  # images: all of it in one statement in the server
            settling = (job.id, job.n, delivered, self.clock())
            if not job.kind.makes_video:
                # Sent with the COMMIT, its answer not waited for: the running totals' rows it
                # updates, which the server's reservations wait for, are not held while an
                # answer travels back and this thread waits for its turn to send the COMMIT.
                conn.pipeline()
                conn.execute(_SETTLE_IN_SERVER_SQL, settling)
                return
            if conn.execute(_SETTLE_IN_SERVER_SQL, settling).fetchone()[0] != "video":
                return
        reserved = conn.execute(
            "SELECT created_at, unit_price, model, seconds FROM ledger"
            " WHERE job_id = ? AND entry = 'reserve'",
            (job.id,),
        ).fetchone()
        if reserved is None:
            return
        at, unit_price, model, seconds = reserved
        refunded = job.n - delivered
        charged_price, charged_seconds = unit_price, 0
        if seconds and delivered:
            reported = seconds if job.video_seconds is None else job.video_seconds
            billed = min(float(seconds), max(0.0, reported))
            charged_seconds = min(seconds, math.ceil(billed))
            charged_price = unit_price * billed / seconds
        now = self.clock()
        owner = (job.id, job.user_id, job.guild_id)
        charge = (delivered, now, charged_price, model, charged_seconds)
        refund = (refunded, now, unit_price, model, seconds - charged_seconds)
        added = conn.execute(_SETTLE_SQL, (*owner, *charge, *owner, *refund)).fetchall()
        money_back = job.n * micros(unit_price) - delivered * micros(charged_price)
        images_back = 0 if seconds else refunded
        if (images_back or money_back) and any(row[0] == "refund" for row in added):
            _add_held(conn, job.user_id, job.guild_id, at, -images_back, -money_back)

    def end(self, conn: Conn, job_id: int, state: JobState, charged: int, **fields: Any) -> Job:
        """A job's last transition and its settlement, together (inside a `Database.write`)."""
        ended = self.store.transition(conn, job_id, state, **fields)
        self.settle(conn, ended, charged)
        return ended

    async def standing(
        self, user_id: int, guild_id: int | None, role_ids: Iterable[int] = ()
    ) -> Standing:
        return await self.db.write(self._standing, user_id, guild_id, role_ids)

    def _standing(
        self, conn: Conn, user_id: int, guild_id: int | None, role_ids: Iterable[int]
    ) -> Standing:
        now = self.clock()
        policy = self.policy.effective(conn, guild_id, role_ids)
        limits = limits_of(policy)
        spent = _spent_micros(conn, guild_id, now) / 1_000_000 if guild_id else 0.0
        user_window = _window(conn, "user_id", user_id, now)
        guild_window = _window(conn, "guild_id", guild_id, now) if guild_id is not None else []
        active = conn.execute(_ACTIVE_SQL, (user_id,)).fetchone()[0]
        last = conn.execute(_LAST_JOB_SQL, (user_id,)).fetchone()[0]
        cooldown_until = (
            last + limits.cooldown_seconds
            if last is not None and now - last < limits.cooldown_seconds
            else None
        )
        seconds_window = _seconds_window(conn, "user_id", user_id, now)
        seconds_used = sum(h for _, h in seconds_window)
        user_used = sum(h for _, h in user_window)
        guild_used = sum(h for _, h in guild_window)
        return Standing(
            limits=limits,
            budget=policy.money("monthly_budget"),
            spent=spent,
            exempt=policy.exempt,
            user_images=user_used,
            user_frees_at=_frees_at(user_window, 1) if user_used else None,
            active_jobs=active,
            guild_images=guild_used,
            guild_frees_at=_frees_at(guild_window, 1) if guild_used else None,
            cooldown_until=cooldown_until,
            video_seconds=seconds_used,
            video_frees_at=_frees_at(seconds_window, 1) if seconds_used else None,
            video_allowed=policy.text("allow_video") == "1",
        )


def _window(conn: Conn, column: str, owner: int, now: float) -> list[tuple[float, int]]:
    """(reserved at, images still counted) for each reservation in the last 24 h."""
    return [(row[0], row[1]) for row in conn.execute(_WINDOW_SQL[column], (owner, now - DAY))]


def _held(conn: Conn, column: str, owner: int, now: float) -> int:
    """Images held in the owner's last 24 h, from the running total: one look-up, plus a write
    when reservations left the window since the last check (they are subtracted once), or a
    look at the few that left it since this cutoff when a later clock moved it on already."""
    cutoff = now - DAY
    row = conn.execute(_MOVE_SQL[column], (owner, column, cutoff)).fetchone()
    if row is not None and cutoff < row[0]:
        # A request with a later clock (another process's, or one that waited less for the
        # lock) moved the total on already: add back what it took out since this cutoff.
        back = conn.execute(_HELD_SQL[column], (owner, cutoff, row[0])).fetchone()[0]
        return int(row[1]) + int(back)
    if row is None:  # first use: build it from the ledger
        held = conn.execute(_HELD_SQL[column], (owner, cutoff, _FOREVER)).fetchone()[0]
        conn.execute(
            "INSERT INTO quota_windows (scope, owner, cutoff, held) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (scope, owner) DO UPDATE SET cutoff = excluded.cutoff,"
            " held = excluded.held",
            (column, owner, cutoff, held),
        )
        return int(held)
    _, held, leaving, leaving_images = row
    if leaving:
        held -= leaving_images
        conn.execute(
            "UPDATE quota_windows SET cutoff = ?, held = ? WHERE scope = ? AND owner = ?",
            (cutoff, held, column, owner),
        )
    return int(held)


def _check_window(
    conn: Conn,
    limit_name: str,
    column: str,
    owner: int,
    allowed: int,
    n: int,
    now: float,
) -> None:
    if _held(conn, column, owner, now) + n <= allowed:
        return
    window = _window(conn, column, owner, now)
    used = sum(held for _, held in window)
    raise LimitReached(
        limit_name, allowed=allowed, used=used, frees_at=_frees_at(window, used + n - allowed)
    )


def video_seconds(request: ImageRequest) -> int:
    """The seconds a request reserves: a video's duration, 0 for images."""
    return (request.duration or 0) if request.kind.makes_video else 0


def _seconds_window(conn: Conn, column: str, owner: int, now: float) -> list[tuple[float, int]]:
    """(reserved at, video seconds still counted) for each video reserved in the last 24 h."""
    return [(row[0], row[1]) for row in conn.execute(_SECONDS_SQL[column], (owner, now - DAY))]


def _check_seconds(
    conn: Conn,
    limit_name: str,
    column: str,
    owner: int,
    allowed: int,
    asked: int,
    now: float,
) -> None:
    """Video seconds are few and rare next to images: summed from the ledger each time."""
    window = _seconds_window(conn, column, owner, now)
    used = sum(held for _, held in window)
    if used + asked <= allowed:
        return
    if asked > allowed:  # no wait helps: a shorter video does
        limit_name += "_too_long"
    raise VideoSecondsReached(
        limit_name,
        allowed=allowed,
        used=used,
        asked=asked,
        frees_at=_frees_at(window, used + asked - allowed) if asked <= allowed else None,
    )


def _spend(conn: Conn, guild_id: int, now: float) -> Cursor:
    """The query for the server's running total of this month's money (its row read later)."""
    return conn.execute(
        "SELECT micros FROM quota_spend WHERE guild_id = ? AND month = ?",
        (guild_id, month_start(now)),
    )


def _spent_micros(conn: Conn, guild_id: int, now: float, spend: Cursor | None = None) -> int:
    """Money held or charged this month by the server, from the running total (`spend`: its
    query, already sent)."""
    month = month_start(now)
    row = (spend if spend is not None else _spend(conn, guild_id, now)).fetchone()
    if row is not None:
        return int(row[0])
    spent = conn.execute(_SPENT_MICROS_SQL, (guild_id, month, next_month_start(now))).fetchone()[0]
    conn.execute(
        "INSERT INTO quota_spend (guild_id, month, micros) VALUES (?, ?, ?)"
        " ON CONFLICT (guild_id, month) DO NOTHING",
        (guild_id, month, spent),
    )
    return int(spent)


def _add_held(
    conn: Conn,
    user_id: int,
    guild_id: int | None,
    reserved_at: float,
    images: int,
    money: int,
) -> None:
    """Keep the running totals in step with a reservation (or a refund: negative amounts) made
    at `reserved_at`; totals not built yet are left to be rebuilt from the ledger."""
    if images:  # a video's reservation and refund count no images
        conn.execute(
            "UPDATE quota_windows SET held = held + ? WHERE cutoff < ?"
            " AND ((scope = 'user_id' AND owner = ?) OR (scope = 'guild_id' AND owner = ?))",
            (images, reserved_at, user_id, guild_id),
        )
    if guild_id is not None and money:
        conn.execute(
            "UPDATE quota_spend SET micros = micros + ? WHERE guild_id = ? AND month = ?",
            (money, guild_id, month_start(reserved_at)),
        )


def policy_defaults(limits: Limits) -> dict[str, str]:
    """The bot-wide defaults of every server setting, as the policy store keeps them: the
    declared defaults, with these limits (the environment's) in place of theirs."""
    values = {name: spec.default for name, spec in SETTINGS.items()}
    values.update({name: str(getattr(limits, name)) for name in LIMIT_SETTINGS})
    return values


def limits_of(policy: Policy) -> Limits:
    """The numeric limits for a member; an exempt role lifts the per-member ones."""
    if policy.exempt:
        guild = policy.int("video_seconds_per_guild_day")
        return Limits(0, 0, 0, policy.int("images_per_guild_day"), 0, guild)
    return Limits(*(policy.int(name) for name in LIMIT_SETTINGS))


def month_start(now: float) -> float:
    return _month(now)[0]


def next_month_start(now: float) -> float:
    return _month(now)[1]


_last_month = (0.0, 0.0)  # [start, next start) of the month last asked about


def _month(now: float) -> tuple[float, float]:
    """The UTC calendar month holding `now`, as [start, next start) in epoch seconds. Every
    reservation asks twice, almost always about the month it asked about last time."""
    global _last_month
    bounds = _last_month  # one read: another thread may replace it meanwhile
    if bounds[0] <= now < bounds[1]:
        return bounds
    # Whole seconds: fromtimestamp rounds to the microsecond, which would put a moment a hair
    # before the 1st into the month after, unlike the [start, next) test above and the SQL.
    moment = datetime.fromtimestamp(math.floor(now), UTC)
    year, month = (moment.year + 1, 1) if moment.month == 12 else (moment.year, moment.month + 1)
    bounds = (
        datetime(moment.year, moment.month, 1, tzinfo=UTC).timestamp(),
        datetime(year, month, 1, tzinfo=UTC).timestamp(),
    )
    _last_month = bounds
    return bounds


def _frees_at(window: list[tuple[float, int]], needed: int) -> float | None:
    """When enough reservations leave the 24 h window to free `needed` images."""
    freed = 0
    for reserved_at, held in window:
        freed += held
        if held and freed >= needed:
            return reserved_at + DAY
    return None
