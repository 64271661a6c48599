"""Money and limits for videos: a server allows them or not, a member and a server have seconds
per day, the reservation holds the video's full estimated cost and a refusal says what it would
cost and what is left; a delivered video is charged the seconds DashScope reported (never more
than reserved), a failed one nothing; two requests for the last seconds cannot both pass."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.accounting.quota import DAY, Limits, QuotaExceeded
from bot.accounting.usage import usage_report
from bot.dashscope.models import Kind
from bot.dashscope.requests import ImageRequest, validate
from bot.i18n import text
from bot.jobs.model import Job, JobState, NewJob
from bot.presenter import describe, utc_time
from bot.storage.db import Conn
from tests.backends import database_target
from tests.engine_helpers import NO_LIMITS
from tests.test_budget import ADMIN, GUILD, Make, Setup, opener

VIDEO_PRICES = {"wan2.5-t2v-preview:720P": 0.6, "wan2.5-t2v-preview:480P": 0.3}
STAFF = 41


@pytest.fixture
async def make(backend: str, tmp_path: Path) -> AsyncIterator[Make]:
    async with database_target(backend, tmp_path) as target, opener(target) as factory:

        async def priced(*args: object, **kwargs: object) -> Setup:
            setup = await factory(*args, **kwargs)
            setup.quota.prices.update(VIDEO_PRICES)
            return setup

        yield priced


def video(seconds: int = 5, resolution: str = "720P") -> ImageRequest:
    return validate(
        ImageRequest(
            model="wan2.5-t2v-preview",
            prompt="waves at dusk",
            duration=seconds,
            resolution=resolution,
        )
    )


async def reserve_video(
    s: Setup,
    seconds: int = 5,
    *,
    user: int = 2,
    resolution: str = "720P",
    roles: tuple[int, ...] = (),
) -> Job:
    new = NewJob(video(seconds, resolution), user_id=user, guild_id=GUILD, role_ids=roles)
    return await s.quota.reserve(new)


async def refused_video(s: Setup, seconds: int = 5, **kw: object) -> QuotaExceeded:
    before = await s.counts()
    with pytest.raises(QuotaExceeded) as caught:
        await reserve_video(s, seconds, **kw)  # type: ignore[arg-type]
    assert await s.counts() == before, "a refusal must leave no trace"
    return caught.value


def words(error: QuotaExceeded, lang: str = "en") -> str:
    return describe(error, lang, moment=utc_time)


async def deliver(s: Setup, job: Job, reported: float | None) -> None:
    """The engine's steps for a delivered video: DashScope's reported seconds kept with the
    result, then done and settled in one transaction."""

    def steps(conn: Conn) -> None:
        s.store.transition(conn, job.id, JobState.SUBMITTED)
        s.store.transition(conn, job.id, JobState.DELIVERING, video_seconds=reported)
        s.quota.end(conn, job.id, JobState.DONE, 1)

    await s.db.write(steps)


async def ledger(s: Setup, job: Job) -> dict[str, tuple[int, int, float]]:
    rows = await s.db.fetchall(
        "SELECT entry, images, seconds, unit_price FROM ledger WHERE job_id = ?", (job.id,)
    )
    return {r["entry"]: (r["images"], r["seconds"], r["unit_price"]) for r in rows}


async def test_a_budget_with_room_for_images_refuses_a_video_saying_what_it_would_cost(
    make: Make,
) -> None:
    s = await make(NO_LIMITS, budget="4.00")
    for _ in range(14):  # 14 × 0.20 = 2.80 spent: 1.20 left
        await s.reserve()
    refusal = await refused_video(s)
    assert refusal.limit == "budget"
    assert words(refusal).startswith(
        "This video would cost 3.00; the server has 1.20 of its monthly budget of 4.00 left."
    )
    assert "这个视频预计花费 3.00" in words(refusal, "zh")
    await s.reserve()  # an image still fits
    cheaper = await refused_video(s, 5, resolution="480P")  # 5 × 0.30 = 1.50 > 1.00 left
    assert "would cost 1.50; the server has 1.00" in words(cheaper)


async def test_the_budget_holds_a_videos_full_cost_until_it_is_settled(make: Make) -> None:
    s = await make(NO_LIMITS, budget="10.00")
    job = await reserve_video(s, 10)  # 10 × 0.60
    assert await ledger(s, job) == {"reserve": (1, 10, pytest.approx(6.0))}
    assert await s.spent() == pytest.approx(6.0)
    refusal = await refused_video(s, 10)
    assert "would cost 6.00; the server has 4.00" in words(refusal)
    await reserve_video(s, 5)  # 3.00 fits in the 4.00 left


async def test_a_delivered_video_is_charged_the_seconds_dashscope_reported(make: Make) -> None:
    s = await make(NO_LIMITS, budget="100")
    shorter = await reserve_video(s, 10)
    await deliver(s, shorter, 7.5)
    assert await ledger(s, shorter) == {
        "reserve": (1, 10, pytest.approx(6.0)),
        "charge": (1, 8, pytest.approx(4.5)),  # 7.5 s × 0.60; 8 seconds count against the day
        "refund": (0, 2, pytest.approx(6.0)),
    }
    longer = await reserve_video(s, 5)
    await deliver(s, longer, 12.0)  # never more than reserved
    assert (await ledger(s, longer))["charge"] == (1, 5, pytest.approx(3.0))
    unreported = await reserve_video(s, 5)
    await deliver(s, unreported, None)  # no usage.duration: the reservation's seconds
    assert (await ledger(s, unreported))["charge"] == (1, 5, pytest.approx(3.0))
    failed = await reserve_video(s, 10)
    await s.end(failed, JobState.FAILED)
    assert (await ledger(s, failed))["refund"] == (1, 10, pytest.approx(6.0))
    # The running total, the ledger summed row by row, and the usage report agree.
    assert await s.spent() == pytest.approx(10.5)
    assert (await s.quota.standing(2, GUILD)).spent == pytest.approx(10.5)
    report = await usage_report(s.db, GUILD, s.clock() - DAY, s.clock() + 1)
    assert report.cost == pytest.approx(10.5)
    assert (report.images, [(k.kind, k.images) for k in report.kinds]) == (3, [("video", 3)])
    assert (await s.quota.standing(2, GUILD)).video_seconds == 8 + 5 + 5


async def test_a_server_can_forbid_videos_and_a_role_allow_them_again(make: Make) -> None:
    s = await make(NO_LIMITS)
    await s.quota.policy.set(GUILD, "allow_video", "no", by_user=ADMIN)
    refusal = await refused_video(s)
    assert refusal.limit == "video_off"
    assert "does not allow videos" in words(refusal)
    assert "allow_video yes" in words(refusal)
    assert "不允许生成视频" in words(refusal, "zh")
    await s.reserve()  # images are another matter
    await s.quota.policy.set(GUILD, "allow_video", "yes", by_user=ADMIN, role_id=STAFF)
    assert isinstance(await reserve_video(s, roles=(STAFF,)), Job)


async def test_seconds_per_member_per_day_are_counted_apart_from_images(make: Make) -> None:
    s = await make(Limits(1, 0, 0, 0, video_seconds_per_user_day=12))
    first = await reserve_video(s, 5)
    await s.reserve()  # a video is not an image: the one image a day is still there
    assert (await s.refused()).limit == "user_day"
    s.clock.advance(60)
    await reserve_video(s, 5)
    refusal = await refused_video(s, 5)
    assert refusal.limit == "video_user_day"
    assert refusal.frees_at == pytest.approx(first.created_at + DAY)
    assert words(refusal) == (
        "This video needs 5 s; you have 2 s of your 12 s of video for the last 24 hours left."
        " More free up 2026-02-01 23:00 UTC."
    )
    assert isinstance(await reserve_video(s, 5, user=3), Job)  # another member's own seconds
    # A failed video gives its seconds back at once.
    await s.end(first, JobState.FAILED)
    await reserve_video(s, 5)
    # Longer than the whole allowance: no wait helps, a shorter duration does.
    await s.quota.policy.set(GUILD, "video_seconds_per_user_day", "8", by_user=ADMIN)
    too_long = await refused_video(s, 10, user=4)
    assert too_long.limit == "video_user_day_too_long"
    assert words(too_long) == (
        "A 10-second video is longer than the 8 s of video you may make per day here."
        " Choose a shorter duration."
    )
    s.clock.advance(DAY)
    assert (await s.quota.standing(2, GUILD)).video_seconds == 0


async def test_a_servers_seconds_per_day_hold_for_everyone(make: Make) -> None:
    s = await make(NO_LIMITS)
    await s.quota.policy.set(GUILD, "video_seconds_per_guild_day", "10", by_user=ADMIN)
    await s.quota.policy.set(GUILD, "exempt", "yes", by_user=ADMIN, role_id=STAFF)
    await reserve_video(s, 5, user=2)
    await reserve_video(s, 5, user=3, roles=(STAFF,))
    refusal = await refused_video(s, 5, user=4, roles=(STAFF,))  # exempt: not from this
    assert refusal.limit == "video_guild_day"
    assert "this server has 0 s of its 10 s of video" in words(refusal)


@pytest.mark.parametrize("scope", ["member", "server"])
@pytest.mark.parametrize("connections", [1, 3])
async def test_two_requests_for_the_last_seconds_one_wins(
    make: Make, connections: int, scope: str
) -> None:
    """Five seconds left, six requests of five at once (as if from several processes): one of
    one member's own, or of six members on the server's."""
    caps = {"video_seconds_per_user_day": 15} if scope == "member" else {}
    caps |= {"video_seconds_per_guild_day": 15} if scope == "server" else {}
    setups = [await make(Limits(0, 0, 0, 0, **caps)) for _ in range(connections)]
    await reserve_video(setups[0], 10, user=2)
    users = [2] * 6 if scope == "member" else list(range(10, 16))
    outcomes = await asyncio.gather(
        *(reserve_video(setups[i % connections], 5, user=u) for i, u in enumerate(users)),
        return_exceptions=True,
    )
    won = [o for o in outcomes if isinstance(o, Job)]
    lost = [o for o in outcomes if isinstance(o, QuotaExceeded)]
    assert len(won) == 1 and len(lost) == 5, outcomes
    limit = "video_user_day" if scope == "member" else "video_guild_day"
    assert {o.limit for o in lost} == {limit}
    row = await setups[0].db.fetchone(
        "SELECT SUM(seconds) AS s FROM ledger WHERE entry = 'reserve' AND guild_id = ?", (GUILD,)
    )
    assert row is not None and row["s"] == 15


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_the_usage_report_names_every_kind_videos_too(lang: str) -> None:
    """`/wanadmin usage` names each kind with charges: a video's too (a missing name would be
    a KeyError once a server has made one)."""
    names = {kind: text(f"admin.kind.{kind.value}", lang) for kind in Kind}
    assert len(set(names.values())) == len(Kind)
    assert names[Kind.VIDEO] == {"en": "video (videos from text)", "zh": "文生视频"}[lang]
