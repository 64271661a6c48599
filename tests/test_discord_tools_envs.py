"""The actions on one image of a result, in bots of their own: a restart between the click and
the result, and a key of a region without wanx2.1-imageedit (tests/test_discord_tools.py has
the rest, in one bot)."""

from __future__ import annotations

import pytest

from bot.dashscope.models import DEFAULT_EDIT_MODEL, Kind
from bot.i18n import text
from bot.jobs.model import JobState
from tests.data_uri import data_uri_bytes
from tests.discord_env import bot_env, embed_fields, imagine, launch, replies, reply_text
from tests.test_discord_tools import SMALL, choose, rows, size_of, use

pytestmark = pytest.mark.asyncio


async def test_a_restart_between_the_click_and_the_result(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """The job a click started survives a restart: its result is posted, with its tools."""
    async with bot_env(tmp_path_factory.mktemp("tools-restart")) as env:
        w = env.world
        _, job = await imagine(env, "a slow harbour sim:slow=1.5", user=w.alice, **SMALL)
        [result] = env.result_messages(job)
        _, up = await launch(
            env,
            choose(env, result, job, "zoom2", 1, w.alice),
            states=(JobState.SUBMITTED, JobState.RUNNING),
        )
        await env.restart_bot()
        done = await env.wait_job(up.id)
        assert done.state is JobState.DONE, done.error_message
        [posted] = env.result_messages(done)
        width, height = size_of(env.fake.attachment_bytes(result.attachments[0].id))
        assert size_of(env.fake.attachment_bytes(posted.attachments[0].id)) == (
            2 * width,
            2 * height,
        )
        assert embed_fields(posted)["Made by"] == f"Zoom out ×2 of image 1 of job #{job.id}"
        assert await env.ledger(done.id) == {"reserve": 1, "charge": 1, "refund": 0}
        # The tools of the result from before the restart still work.
        _, again = await launch(env, choose(env, result, job, "pan_down", 1, w.alice))
        assert again.kind is Kind.EXPAND and again.parent_job_id == job.id


async def test_a_region_without_imageedit_hides_its_tools_and_varies_with_an_edit_model(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """A Singapore key: Upscale, Zoom out and Pan are not shown (wanx2.1-imageedit is Beijing's
    only); Vary uses wan2.5-i2i-preview with the same prompt; a forged Upscale is told."""
    async with bot_env(
        tmp_path_factory.mktemp("tools-sg"), dashscope_region="ap-southeast-1"
    ) as env:
        w = env.world
        _, job = await imagine(env, "two kites", user=w.alice, n=2, **SMALL)
        [result] = env.result_messages(job)
        vary, more, own = rows(result)
        assert [(b["label"], b["custom_id"]) for b in vary] == [
            ("V1", f"wan:img:{job.id}:1:vary_subtle"),
            ("V2", f"wan:img:{job.id}:2:vary_subtle"),
        ]
        # Singapore offers image-to-video: Animate stays.
        assert [o["value"] for o in more[0]["options"]] == [
            "edit:1",
            "animate:1",
            "edit:2",
            "animate:2",
        ]
        assert own[0]["custom_id"] == f"wan:job:{job.id}:reroll"

        # Bob's click on Alice's result: his job, charged to him.
        inter, varied = await launch(env, choose(env, result, job, "vary_subtle", 2, w.bob))
        assert varied.state is JobState.DONE, varied.error_message
        assert (varied.kind, varied.model, varied.n, varied.user_id) == (
            Kind.VARY,
            DEFAULT_EDIT_MODEL,
            2,
            w.bob.id,
        )
        assert (varied.params.prompt, varied.params.strength, varied.params.source_image) == (
            "two kites",
            None,
            2,
        )
        [uri] = await env.bot.engine.store.inputs(varied.id)  # type: ignore[union-attr]
        assert data_uri_bytes(uri) == env.fake.attachment_bytes(result.attachments[1].id)
        assert await env.ledger(varied.id) == {"reserve": 2, "charge": 2, "refund": 0}
        [posted] = env.result_messages(varied)
        assert embed_fields(posted)["Made by"] == f"Vary of image 2 of job #{job.id}"
        info = await env.fake.click(posted, f"wan:job:{varied.id}:info", user=w.bob)
        await env.fake.wait_for_ack(info)
        await env.fake.settle()
        assert embed_fields(replies(info)[-1])["Made by"] == f"Vary of image 2 of job #{job.id}"

        # A button from before the bot's region changed is told, not run.
        button = {"type": 2, "style": 2, "label": "U1", "custom_id": f"wan:img:{job.id}:1:upscale2"}
        result.components.insert(0, {"type": 1, "components": [button]})
        jobs = await env.job_count()
        inter = await use(env, result, job, "upscale2", 1, w.alice)
        assert reply_text(inter) == text("tool.not_offered", "en", tool="Upscale ×2")
        assert await env.job_count() == jobs


async def test_a_click_being_answered_when_the_bot_stops_is_finished(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """Stopping gives a click in flight its grace, as it does commands: the job the click
    started is placed and the member told, before the database closes."""
    async with bot_env(tmp_path_factory.mktemp("tools-stop")) as env:
        w = env.world
        _, job = await imagine(env, "a harbour at noon", user=w.alice, **SMALL)
        [result] = env.result_messages(job)
        jobs = await env.job_count()
        env.fake.latency = 0.3  # every REST answer: the click is in flight a while
        inter = await env.fake.click(result, f"wan:img:{job.id}:1:upscale2", user=w.alice)
        await env.fake.wait_for_ack(inter)
        assert await env.stop_bot() == 0
        [told] = [m for m in replies(inter) if m.content]
        assert told.content.startswith(f"Job #{jobs + 1} is queued: ")
        env.fake.latency = 0.0
        await env.start_bot()
        up = await env.wait_job(jobs + 1)  # placed before the stop: it runs after the start
        assert (up.kind, up.state, up.parent_job_id) == (Kind.UPSCALE, JobState.DONE, job.id)
