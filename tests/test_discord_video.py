"""Videos end to end, through the fake Discord and the simulator: /animate from an attachment
and from a result's Animate action, /video, a video over the upload cap (re-encoded to fit,
or linked, never lost), moderation, and refusals in words with nothing charged. Every MP4 that
arrives is decoded: the asked length (±0.5 s) and size."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from typing import Any

import pytest
import pytest_asyncio

from bot.dashscope.models import DEFAULT_ANIMATE_MODEL, DEFAULT_VIDEO_MODEL, Kind
from bot.dispatch.delivery import DeliveredImage
from bot.jobs.model import Job, JobState
from bot.media.video import probe
from bot.simulator.video import i2v_size
from tests.data_uri import data_uri_bytes
from tests.discord_env import (
    BotEnv,
    bot_env,
    custom_ids,
    embed_fields,
    imagine,
    launch,
    png,
    replies,
    reply_text,
)
from tests.engine_helpers import wait_until
from tests.test_discord_buttons import member
from tests.test_discord_tools import choose, pixels

pytestmark = pytest.mark.asyncio(loop_scope="module")

SMALL = {"model": "wan2.2-t2i-flash", "size": "768*768"}


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def env(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[BotEnv]:
    # One task of a model at a time: a video can be held queued behind another (cancel).
    async with bot_env(
        tmp_path_factory.mktemp("video"), max_in_flight=1, limit_video_seconds_per_user_day=0
    ) as env:
        yield env


@pytest.fixture(autouse=True)
def clean(env: BotEnv) -> Iterator[None]:
    yield
    env.check_clean()


async def command(
    env: BotEnv,
    name: str,
    options: dict[str, Any],
    *,
    uploads: list[Any] | None = None,
    user: Any = None,
    channel: Any = None,
    locale: str | None = None,
) -> Any:
    inter = await env.fake.slash(
        name,
        options,
        user=user or env.world.alice,
        channel=channel or env.world.general,
        attachments=uploads,
        locale=locale,
    )
    await env.fake.wait_for_ack(inter)
    return inter


async def refused(env: BotEnv, name: str, options: dict[str, Any], **kwargs: Any) -> str:
    """A command that must be refused: ephemeral words, no job, no ledger row, no request."""
    jobs, ledger = await env.job_count(), await env.ledger_rows()
    submissions = env.sim.sim.submissions
    inter = await command(env, name, options, **kwargs)
    await env.fake.settle()
    answers = replies(inter)
    assert answers and all(m.ephemeral for m in answers), answers
    assert (await env.job_count(), await env.ledger_rows()) == (jobs, ledger)
    assert env.sim.sim.submissions == submissions
    return reply_text(inter)


def delivered(env: BotEnv, job: Job) -> tuple[Any, bytes]:
    """The job's one result message in its thread, and the MP4 it carries."""
    [result] = env.result_messages(job)
    assert result.channel_id == job.thread_id
    [attachment] = result.attachments
    assert attachment.filename == f"video-{job.id}.mp4"
    return result, env.fake.attachment_bytes(attachment.id)


def new_task(env: BotEnv, before: set[str]) -> Any:
    [task] = [t for key, t in env.sim.sim.store.tasks.items() if key not in before]
    return task


def assert_video(data: bytes, size: tuple[int, int], seconds: float) -> None:
    info = probe(data)
    assert (info.width, info.height) == size
    assert abs(info.seconds - seconds) <= 0.5, info


async def test_animate_sends_one_task_with_the_image_and_an_mp4_arrives(env: BotEnv) -> None:
    image = png(800, 600, (200, 80, 40))
    before = set(env.sim.sim.store.tasks)
    inter, job = await launch(
        env,
        command(
            env,
            "animate",
            {"prompt": "the kite rises", "resolution": "480P", "seed": 11},
            uploads=[("kite.png", image)],
        ),
    )
    assert job.state is JobState.DONE, job.error_message
    assert (job.kind, job.model, job.user_id) == (
        Kind.ANIMATE,
        DEFAULT_ANIMATE_MODEL,
        env.world.alice.id,
    )
    assert reply_text(inter).startswith(f"Job #{job.id} is queued:")
    # One video-synthesis task, carrying the image as it was attached.
    task = new_task(env, before)
    assert (task.model.name, task.task_id, task.prompt) == (
        DEFAULT_ANIMATE_MODEL,
        job.task_id,
        "the kite rises",
    )
    assert (task.video.seconds, task.video.resolution, task.seed) == (5, "480P", 11)
    assert [pixels(data) for data in task.inputs] == [pixels(image)]
    assert [data_uri_bytes(u) for u in await env.bot.engine.store.inputs(job.id)] == [image]
    # The MP4 in the thread, of the asked length and the image's shape at 480P.
    result, data = delivered(env, job)
    assert_video(data, i2v_size(800, 600, "480P"), 5)
    fields = embed_fields(result)
    assert (fields["Prompt"], fields["Model"], fields["Length"]) == (
        "the kite rises",
        DEFAULT_ANIMATE_MODEL,
        "5 s",
    )
    assert (fields["Resolution"], fields["Seed"]) == ("480P", "11")
    assert [i.rsplit(":", 1)[1] for i in custom_ids(result)] == ["reroll", "info", "delete"]
    assert "footer" not in result.embeds[0]  # neither re-encoded nor linked
    assert await env.ledger(job.id) == {"reserve": 1, "charge": 1, "refund": 0}
    assert env.status_message(job).content.splitlines()[-1].startswith("✅ Done: a video in")


async def test_video_from_text_has_the_asked_size_and_length(env: BotEnv) -> None:
    before = set(env.sim.sim.store.tasks)
    _, job = await launch(
        env,
        command(
            env,
            "video",
            {"prompt": "a paper boat on a pond", "size": "832*480", "duration": 10},
        ),
    )
    assert job.state is JobState.DONE, job.error_message
    assert (job.kind, job.model) == (Kind.VIDEO, DEFAULT_VIDEO_MODEL)
    task = new_task(env, before)
    assert (task.video.seconds, task.video.resolution, task.size) == (10, "480P", (832, 480))
    _, data = delivered(env, job)
    assert_video(data, (832, 480), 10)


async def test_video_by_aspect_in_chinese(env: BotEnv) -> None:
    li = member(env, "video-li")
    _, job = await launch(
        env,
        command(
            env,
            "video",
            {"prompt": "竹林里的熊猫", "aspect": "9:16", "resolution": "480P"},
            user=li,
            locale="zh-CN",
        ),
    )
    assert job.state is JobState.DONE, job.error_message
    result, data = delivered(env, job)
    assert_video(data, (480, 832), 5)
    fields = embed_fields(result)
    assert (fields["时长"], fields["分辨率"]) == ("5 s", "480P")
    # Reroll: the same video settings, a new seed, another MP4.
    click = env.fake.click(result, f"wan:job:{job.id}:reroll", user=li, locale="zh-CN")
    _, again = await launch(env, click)
    assert again.state is JobState.DONE, again.error_message
    assert (again.kind, again.parent_job_id) == (Kind.VIDEO, job.id)
    assert again.params.seed != job.params.seed
    assert (again.params.duration, again.params.resolution, again.params.size) == (
        5,
        "480P",
        "480*832",
    )
    _, data = delivered(env, again)
    assert_video(data, (480, 832), 5)


async def test_animate_from_a_results_more_menu(env: BotEnv) -> None:
    alice, bob = member(env, "anim-a"), member(env, "anim-b")
    _, job = await imagine(env, "a lighthouse at dusk", user=alice, n=2, **SMALL)
    [result] = env.result_messages(job)
    before = set(env.sim.sim.store.tasks)
    # Bob animates Alice's second image: his job, his charge.
    _, video = await launch(env, choose(env, result, job, "animate", 2, bob))
    assert video.state is JobState.DONE, video.error_message
    assert (video.kind, video.model, video.parent_job_id, video.user_id) == (
        Kind.ANIMATE,
        DEFAULT_ANIMATE_MODEL,
        job.id,
        bob.id,
    )
    picture = env.fake.attachment_bytes(result.attachments[1].id)
    task = new_task(env, before)
    assert [pixels(data) for data in task.inputs] == [pixels(picture)] and task.video.seconds == 5
    assert task.prompt == "a lighthouse at dusk"
    posted, data = delivered(env, video)
    assert_video(data, i2v_size(768, 768, "720P"), 5)
    assert embed_fields(posted)["Made by"] == f"Animate of image 2 of job #{job.id}"
    assert await env.ledger(video.id) == {"reserve": 1, "charge": 1, "refund": 0}


async def small_guild(env: BotEnv, limit: int, name: str) -> tuple[Any, Any]:
    fake, w = env.fake, env.world
    guild = fake.create_guild(name, channels=("clips",), attachment_size_limit=limit)
    fake.add_member(guild, w.alice)
    await env.join_guild(guild)
    return guild, fake.channel(guild, "clips")


async def test_a_video_over_the_cap_is_reencoded_to_fit(env: BotEnv) -> None:
    _, clips = await small_guild(env, 1_500_000, "Small Clips")
    _, job = await launch(
        env,
        command(
            env,
            "video",
            {"prompt": "storm waves sim:video-mb=4", "resolution": "480P"},
            channel=clips,
        ),
    )
    assert job.state is JobState.DONE, job.error_message
    result, data = delivered(env, job)
    assert len(data) <= 1_500_000
    assert_video(data, (832, 480), 5)  # 2.1 Mbps is plenty for 480P: not scaled
    assert result.embeds[0]["footer"]["text"].startswith(
        "The video was re-encoded to fit this server's upload limit."
    )
    assert await env.ledger(job.id) == {"reserve": 1, "charge": 1, "refund": 0}


async def test_a_video_that_cannot_fit_is_linked_with_its_expiry(env: BotEnv) -> None:
    """No watchable re-encode fits the server's cap (60 kB for 5 s): DashScope's link is
    posted with when it expires, never nothing. Then the port given the same video for a
    server whose cap it has not learned: Discord's 413s teach it, and the link follows."""
    _, tiny = await small_guild(env, 60_000, "Tiny Clips")
    _, job = await launch(
        env,
        command(
            env, "video", {"prompt": "rain sim:video-mb=1", "resolution": "480P"}, channel=tiny
        ),
    )
    assert job.state is JobState.DONE, job.error_message
    [row] = await env.bot.engine.store.results(job.id)  # type: ignore[union-attr]
    assert row.url is not None and row.delivered_message_id is not None
    linked = env.fake.get_message(row.delivered_message_id)
    assert linked.attachments == [] and linked.channel_id == job.thread_id
    assert linked.content.startswith(
        f"<@{job.user_id}> 🎬 The video is too large to upload here, even re-encoded: "
        f"[download it]({row.url}) (the link expires <t:"
    )
    assert "linked" in linked.embeds[0]["footer"]["text"]
    assert await env.ledger(job.id) == {"reserve": 1, "charge": 1, "refund": 0}
    # /show where the cap is larger posts the MP4 itself, fetched again from DashScope.
    show = await command(env, "show", {"job": job.id})
    await env.fake.settle()
    [repost] = [m for m in replies(show) if m.attachments]
    [attachment] = repost.attachments
    assert attachment.filename == f"video-{job.id}.mp4"
    assert_video(env.fake.attachment_bytes(attachment.id), (832, 480), 5)
    assert [i.rsplit(":", 1)[1] for i in custom_ids(repost)] == ["reroll", "info", "delete"]

    guild, clips = await small_guild(env, 60_000, "Unknown Cap")
    data = (await env.bot.engine.fetcher.fetch(row.url, video=True)).content  # type: ignore[union-attr]
    assert len(data) > 1_000_000
    expires = time.time() + 24 * 3600
    there = replace(job, guild_id=guild.id, channel_id=clips.id, thread_id=None)
    video = DeliveredImage(0, data, "video/mp4", url=row.url, expires_at=expires)
    [message_id] = await env.bot.delivery.deliver(there, [video])  # type: ignore[union-attr]
    message = env.fake.get_message(message_id)
    assert message.attachments == [] and message.channel_id == clips.id
    assert message.content.endswith(f"(the link expires <t:{int(expires)}:R>).")
    posts = [r.status for r in env.fake.requests_to("POST", f"/channels/{clips.id}/messages")]
    assert posts[-1] == 200 and set(posts[:-1]) == {413}


async def test_a_moderated_prompt_is_told_and_refunded(env: BotEnv) -> None:
    _, job = await launch(env, command(env, "video", {"prompt": "a storm sim:moderate-output"}))
    assert job.state is JobState.FAILED
    assert job.error_code == "DataInspectionFailed"
    assert env.status_message(job).content.splitlines()[-1].startswith("❌ ")
    assert await env.ledger(job.id) == {"reserve": 1, "charge": 0, "refund": 1}
    assert env.result_messages(job) == []


async def test_bad_video_options_are_refused_in_words(env: BotEnv) -> None:
    words = await refused(
        env, "video", {"prompt": "a fox", "model": "wan2.2-t2v-plus", "audio": True}
    )
    assert "audio" in words
    words = await refused(env, "video", {"prompt": "a fox", "duration": 7})
    assert words.startswith("wan2.5-t2v-preview makes videos of 5, 10 seconds (got 7).")
    words = await refused(env, "video", {"prompt": "a fox", "model": "wan2.6-t2i"})
    assert words.startswith("`wan2.6-t2i` cannot make a video from text. Use one of:")
    words = await refused(
        env, "animate", {"model": "wan2.5-t2v-preview"}, uploads=[("a.png", png(800, 600))]
    )
    assert words.startswith("`wan2.5-t2v-preview` cannot make a video from an image.")
    words = await refused(env, "animate", {}, uploads=[("tiny.png", png(200, 200))])
    assert words == "Image 1 is 200×200 px; each side must be at least 360 px. Use a larger image."
    # Larger than the video models take (2000 px a side): scaled down, not refused.
    _, job = await launch(
        env,
        command(env, "animate", {"resolution": "480P"}, uploads=[("wide.png", png(2400, 1200))]),
    )
    assert job.state is JobState.DONE, job.error_message
    _, data = delivered(env, job)
    assert_video(data, i2v_size(2000, 1000, "480P"), 5)


async def test_autocomplete_offers_video_models_and_their_lengths(env: BotEnv) -> None:
    w = env.world
    ac = await env.fake.autocomplete(
        "video", {"prompt": "x", "model": ""}, "model", user=w.alice, channel=w.general
    )
    await env.fake.wait_for_ack(ac)
    names = [c["value"] for c in ac.choices or []]
    assert DEFAULT_VIDEO_MODEL in names and all("t2v" in n for n in names)
    ac = await env.fake.autocomplete(
        "animate",
        {"model": "wan2.6-i2v", "duration": ""},
        "duration",
        user=w.alice,
        channel=w.general,
    )
    await env.fake.wait_for_ack(ac)
    assert [c["value"] for c in ac.choices or []] == [5, 10, 15]


async def test_a_queued_video_shows_its_place_and_cancels(env: BotEnv) -> None:
    await env.hold_model("wan2.6-t2v")  # no other test uses it: it stays held
    submissions = env.sim.sim.submissions
    _, job = await launch(
        env, command(env, "video", {"prompt": "a slow tide", "model": "wan2.6-t2v"}), wait=False
    )
    assert job.state is JobState.QUEUED
    # Once placed, the status shows its place in line (an edit, paced per channel).
    status = await wait_until(
        lambda: "position 1 in line" in env.status_message(job).content and env.status_message(job),
        what="the queue position",
    )
    click = await env.fake.click(status, f"wan:job:{job.id}:cancel", user=env.world.alice)
    await env.fake.wait_for_ack(click)
    job = await env.wait_job(job.id, JobState.CANCELLED)
    await env.fake.settle()
    assert env.status_message(job).content.splitlines()[-1] == "🚫 Cancelled. Nothing was charged."
    assert await env.ledger(job.id) == {"reserve": 1, "charge": 0, "refund": 1}
    assert env.sim.sim.submissions == submissions


async def test_a_budget_for_images_but_not_a_video_refuses_the_video_in_words(
    env: BotEnv,
) -> None:
    """A server whose monthly budget (1.00) pays for an image but not a 5 s video (at least
    5 × 0.30): the video is refused in words before anything is reserved; an image still goes.
    The refusal says what it would cost and what is left."""
    assert env.bot is not None
    guild, room = await small_guild(env, 10 * 1024 * 1024, "Thrifty")
    policy = env.bot.engine.quota.policy
    await policy.set(guild.id, "monthly_budget", "1", by_user=env.world.admin.id)
    words = await refused(
        env, "video", {"prompt": "a costly comet", "resolution": "480P"}, channel=room
    )
    # 5 s at 480P: 5 × 0.30.
    assert words.startswith(
        "This video would cost 1.50; the server has 1.00 of its monthly budget of 1.00 left. "
        "Try a shorter or lower-resolution video, or wait until the budget renews <t:"
    )
    _, image = await imagine(env, "a cheap star", user=env.world.alice, channel=room, **SMALL)
    assert image.state is JobState.DONE


async def test_animate_on_a_result_from_before_a_restart(env: BotEnv) -> None:
    """Nothing is kept per message: after a restart the More… menu still animates its image."""
    alice = member(env, "anim-restart")
    _, job = await imagine(env, "a windmill", user=alice, **SMALL)
    [result] = env.result_messages(job)
    await env.restart_bot()
    _, video = await launch(env, choose(env, result, job, "animate", 1, alice))
    assert video.state is JobState.DONE, video.error_message
    assert (video.kind, video.parent_job_id, video.params.source_image) == (Kind.ANIMATE, job.id, 1)
    _, data = delivered(env, video)
    assert_video(data, i2v_size(768, 768, "720P"), 5)
