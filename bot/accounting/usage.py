"""Usage reports for admins: images, jobs by outcome and estimated cost, per member or server,
per kind of job (text to image, edit, upscale, vary, expand, blend), and the images and cost of
each day (bot.accounting.chart draws them). Figures come from the
ledger, the same rows the budget is checked against, so a report and a refusal never disagree."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from bot.accounting.quota import month_start
from bot.dashscope.models import Kind
from bot.storage.db import Database

PERIODS = ("today", "7d", "30d", "this month")


def period_bounds(period: str, now: float) -> tuple[float, float]:
    """[start, now] of a named period (days are UTC)."""
    today = datetime.fromtimestamp(now, UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "today":
        return today.timestamp(), now
    if period == "7d":
        return (today - timedelta(days=6)).timestamp(), now
    if period == "30d":
        return (today - timedelta(days=29)).timestamp(), now
    if period == "this month":
        return month_start(now), now
    raise ValueError(f"unknown period {period!r}; choose from {', '.join(PERIODS)}")


@dataclass(frozen=True)
class DayUsage:
    day: str  # YYYY-MM-DD (UTC)
    images: int
    cost: float


@dataclass(frozen=True)
class KindUsage:
    kind: Kind
    images: int
    cost: float


@dataclass(frozen=True)
class UsageReport:
    images: int
    cost: float
    done: int
    failed: int
    cancelled: int
    top: list[tuple[int, int, float]]  # (user id, images, cost), most images first
    days: list[DayUsage]
    kinds: list[KindUsage]  # the kinds with charged images, in `Kind`'s order


async def usage_report(
    db: Database, guild_id: int, start: float, end: float, *, user_id: int | None = None
) -> UsageReport:
    """What was charged (delivered images × the price when accepted) for the jobs accepted in
    [start, end]. A charge is dated when its job was accepted, as the monthly budget counts it,
    so a job accepted on the 31st and delivered on the 1st is in the same month for both."""
    args = (guild_id, start, end, user_id, user_id)
    charges = await db.fetchall(
        # A job's kind: its tool (upscale, vary, expand, blend) or else its kind column.
        "SELECT j.user_id, COALESCE(j.tool, j.kind) AS kind, l.images, l.images * l.unit_price AS cost, r.created_at FROM ledger l"
        " JOIN ledger r ON r.job_id = l.job_id AND r.entry = 'reserve'"
        " JOIN jobs j ON j.id = l.job_id WHERE l.entry = 'charge' AND j.guild_id = ?"
        " AND r.created_at BETWEEN ? AND ? AND (CAST(? AS BIGINT) IS NULL OR j.user_id = ?)",
        args,
    )
    outcomes = await db.fetchall(
        "SELECT j.state, COUNT(*) AS n FROM jobs j WHERE j.guild_id = ?"
        " AND j.created_at BETWEEN ? AND ? AND (CAST(? AS BIGINT) IS NULL OR j.user_id = ?) GROUP BY j.state",
        args,
    )
    by_state = {row["state"]: row["n"] for row in outcomes}
    per_user: dict[int, list[float]] = {}
    per_day: dict[str, list[float]] = {}
    per_kind: dict[str, list[float]] = {}
    for row in charges:
        user = per_user.setdefault(row["user_id"], [0, 0.0])
        user[0] += row["images"]
        user[1] += row["cost"]
        day = datetime.fromtimestamp(row["created_at"], UTC).strftime("%Y-%m-%d")
        totals = per_day.setdefault(day, [0, 0.0])
        totals[0] += row["images"]
        totals[1] += row["cost"]
        kind = per_kind.setdefault(row["kind"], [0, 0.0])
        kind[0] += row["images"]
        kind[1] += row["cost"]
    days = []
    moment = datetime.fromtimestamp(start, UTC).date()
    last = datetime.fromtimestamp(end, UTC).date()
    while moment <= last:
        key = moment.strftime("%Y-%m-%d")
        images, cost = per_day.get(key, [0, 0.0])
        days.append(DayUsage(key, int(images), round(cost, 4)))
        moment += timedelta(days=1)
    top = sorted(
        ((uid, int(v[0]), round(v[1], 4)) for uid, v in per_user.items()),
        key=lambda item: (-item[1], item[0]),
    )[:10]
    return UsageReport(
        images=sum(int(v[0]) for v in per_user.values()),
        cost=round(sum(v[1] for v in per_user.values()), 4),
        done=by_state.get("done", 0),
        failed=by_state.get("failed", 0),
        cancelled=by_state.get("cancelled", 0),
        top=top,
        days=days,
        kinds=[
            KindUsage(kind, int(per_kind[kind][0]), round(per_kind[kind][1], 4))
            for kind in Kind
            if per_kind.get(kind, [0])[0]
        ],
    )
