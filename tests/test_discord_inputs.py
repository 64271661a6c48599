"""Bad input from Discord: the exact words users see, ephemeral, and nothing charged."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Iterator
from typing import Any

import pytest
import pytest_asyncio

from bot.jobs.model import JobState
from tests.discord_env import (
    BotEnv,
    bot_env,
    imagine,
    png,
    replies,
    reply_text,
    submit_modal,
)

pytestmark = pytest.mark.asyncio(loop_scope="module")

T2I_SIZES = "1280*1280, 1104*1472, 1472*1104, 960*1696, 1696*960"
T2I_MODELS = (
    "wan2.6-t2i, wan2.5-t2i-preview, wan2.2-t2i-plus, wan2.2-t2i-flash, wanx2.1-t2i-plus, "
    "wanx2.1-t2i-turbo, wan2.1-t2i-plus, wan2.1-t2i-turbo, wanx2.0-t2i-turbo"
)


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def env(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[BotEnv]:
    async with bot_env(tmp_path_factory.mktemp("inputs"), limit_images_per_user_day=5) as env:
        yield env


@pytest.fixture(autouse=True)
def clean(env: BotEnv) -> Iterator[None]:
    yield
    env.check_clean()


async def refused(env: BotEnv, action: Awaitable[Any]) -> str:
    """Run an interaction that must be refused: one ephemeral answer, no job, no ledger row."""
    jobs, ledger = await env.job_count(), await env.ledger_rows()
    inter = await action
    await env.fake.wait_for_ack(inter)
    await env.fake.settle()
    answers = replies(inter)
    assert answers and all(m.ephemeral for m in answers), answers
    assert await env.job_count() == jobs
    assert await env.ledger_rows() == ledger
    return reply_text(inter)


@pytest.fixture(params=["edit", "blend"])
def command(request: pytest.FixtureRequest) -> str:
    """The commands that read attachments, with the same checks and the same words."""
    return str(request.param)


def edit(
    env: BotEnv, *uploads: Any, command: str = "edit", prompt: str = "make it pop", **kw: Any
) -> Awaitable[Any]:
    """/edit with these uploads, or /blend with them and an ordinary image after them (a
    blend takes two at least), so each upload keeps its number in the refusal."""
    w = env.world
    attachments = list(uploads)
    if command == "blend":
        attachments.append(("other.png", png()))
    return env.fake.slash(
        command, {"prompt": prompt}, user=w.alice, channel=w.general, attachments=attachments, **kw
    )


def slash_imagine(env: BotEnv, user: Any = None, **options: Any) -> Awaitable[Any]:
    w = env.world
    return env.fake.slash("imagine", options, user=user or w.alice, channel=w.general)


# --- attachments ---------------------------------------------------------------------------


async def test_wrong_file_type(env: BotEnv, command: str) -> None:
    words = await refused(
        env, edit(env, ("notes.txt", b"just some text\n", "text/plain"), command=command)
    )
    assert words == "`notes.txt` is not an image. Attach a JPEG, PNG, WEBP, BMP or GIF."


async def test_image_too_small(env: BotEnv, command: str) -> None:
    words = await refused(env, edit(env, ("tiny.png", png(200, 150)), command=command))
    assert words == (
        "Image 1 is 200×150 px; each side must be at least 384 px. Use a larger image."
    )


async def test_second_image_too_small_names_it(env: BotEnv, command: str) -> None:
    words = await refused(
        env, edit(env, ("ok.png", png()), ("tiny.png", png(300, 900)), command=command)
    )
    assert words == (
        "Image 2 is 300×900 px; each side must be at least 384 px. Use a larger image."
    )


async def test_image_too_long_and_thin(env: BotEnv, command: str) -> None:
    words = await refused(env, edit(env, ("strip.png", png(20000, 10)), command=command))
    assert words == (
        "Image 1 is 20000×10 px: too long and thin to fit 384–5000 px per side. "
        "Crop it closer to a square."
    )


async def test_corrupt_file(env: BotEnv, command: str) -> None:
    noise = b"\x89PNG" + os.urandom(4000)
    words = await refused(env, edit(env, ("broken.png", noise, "image/png"), command=command))
    assert words == "Image 1 is not a readable image. Use a JPEG, PNG, WEBP, BMP or GIF file."
    words = await refused(
        env, edit(env, ("random.png", os.urandom(3000), "image/png"), command=command)
    )
    assert words == "Image 1 is not a readable image. Use a JPEG, PNG, WEBP, BMP or GIF file."


async def test_too_many_images_from_the_menu(env: BotEnv) -> None:
    fake, w = env.fake, env.world
    post = await fake.post_message(
        w.art, w.bob, "four", attachments=[(f"{k}.png", png()) for k in range(4)]
    )
    opened = await fake.message_command("Edit with Wan", post, user=w.alice)
    await fake.wait_for_ack(opened)
    for choice in ("1-4", "all"):
        words = await refused(
            env,
            submit_modal(
                env, opened, {"What should change?": "merge", "Which images (numbers)": choice}
            ),
        )
        assert words == (
            "At most 3 images can be edited together; you chose 4. Choose 3 or fewer, "
            "for example 1-3."
        )


async def test_chinese_member_gets_the_refusal_in_chinese(env: BotEnv) -> None:
    li = env.fake.create_user("li", locale="zh-CN")
    env.fake.add_member(env.world.guild, li)
    w = env.world
    action = env.fake.slash(
        "edit",
        {"prompt": "变亮"},
        user=li,
        channel=w.general,
        attachments=[("tiny.png", png(200, 150))],
    )
    words = await refused(env, action)
    assert words == "第 1 张图片为 200×150 像素，每边至少需要 384 像素，请换一张更大的图片。"


# --- prompts, sizes, numbers, models -------------------------------------------------------


async def test_over_long_prompts(env: BotEnv) -> None:
    schema = {c["name"]: c for c in env.fake.guild_commands[env.world.guild.id]}
    options = {o["name"]: o for o in schema["imagine"]["options"]}
    assert (options["prompt"]["min_length"], options["prompt"]["max_length"]) == (1, 2000)
    assert options["negative_prompt"]["max_length"] == 500

    # Past Discord's own limit (a client that ignores the schema).
    words = await refused(env, slash_imagine(env, prompt="a" * 2001))
    assert words == "The prompt is 2001 characters; wan2.6-t2i accepts at most 2000. Shorten it."
    # Within Discord's limit but over the chosen model's.
    words = await refused(env, slash_imagine(env, prompt="b" * 600, model="wan2.2-t2i-flash"))
    assert words == (
        "The prompt is 600 characters; wan2.2-t2i-flash accepts at most 500. Shorten it."
    )
    words = await refused(env, slash_imagine(env, prompt="c", negative_prompt="d" * 501))
    assert words == "The negative prompt is 501 characters; at most 500 are allowed. Shorten it."


async def test_disallowed_sizes(env: BotEnv) -> None:
    # The refusal states the rule the service applies: its own sizes (two of them under the
    # pixel floor) or the range, not a range its suggestions contradict.
    t2i_rule = (
        f"use one of its sizes ({T2I_SIZES}) or any size of 1,638,400–2,073,600 pixels "
        "with an aspect ratio between 1:4 and 4:1."
    )
    words = await refused(env, slash_imagine(env, prompt="a cat", size="100*100"))
    assert words == f"Size 100*100 (10,000 pixels) isn't accepted by wan2.6-t2i: {t2i_rule}"
    words = await refused(env, slash_imagine(env, prompt="a cat", size="big"))
    assert words == "Size `big` is not WIDTH*HEIGHT (for example 1280*1280)."
    words = await refused(env, slash_imagine(env, prompt="a cat", size="3000*600"))
    assert words == f"Size 3000*600 is too narrow or too wide for wan2.6-t2i: {t2i_rule}"
    words = await refused(
        env, slash_imagine(env, prompt="a cat", size="1500*500", model="wan2.2-t2i-flash")
    )
    assert words == (
        "Size 1500*500 isn't accepted by wan2.2-t2i-flash: use one of its sizes (1024*1024, "
        "720*1280, 1280*720, 768*1152, 1152*768, 1440*1440) or any size with each side "
        "between 512 and 1440 pixels."
    )
    # A size the refusal names is accepted as it stands, even one under the stated floor.
    _, job = await imagine(env, "a cat", user=env.world.alice, size="960*1696")
    assert job.state is JobState.DONE and job.params.size == "960*1696"


async def test_n_beyond_the_schema(env: BotEnv) -> None:
    schema = {c["name"]: c for c in env.fake.guild_commands[env.world.guild.id]}
    n = next(o for o in schema["imagine"]["options"] if o["name"] == "n")
    assert (n["min_value"], n["max_value"]) == (1, 4)
    words = await refused(env, slash_imagine(env, prompt="five cats", n=5))
    assert words == "Number of images must be between 1 and 4 (got 5)."


async def test_wrong_or_unknown_model(env: BotEnv) -> None:
    words = await refused(env, slash_imagine(env, prompt="x", model="wan2.5-i2i-preview"))
    assert words == f"`wan2.5-i2i-preview` cannot make images from text. Use one of: {T2I_MODELS}."
    words = await refused(env, slash_imagine(env, prompt="x", model="dall-e"))
    assert words.startswith("Unknown model `dall-e`. Choose one of: wan2.6-t2i, ")


async def test_quota_refusal_names_when_it_frees(env: BotEnv) -> None:
    erin = env.fake.create_user("erin")
    env.fake.add_member(env.world.guild, erin)
    _, job = await imagine(env, "four pears", user=erin, n=4)
    assert job.state is JobState.DONE
    words = await refused(env, slash_imagine(env, user=erin, prompt="two more", n=2))
    assert words.startswith(
        "You have used 4 of your 5 images for the last 24 hours. More free up <t:"
    )
    assert words.endswith(":R>.")


# --- refusals by DashScope -----------------------------------------------------------------


async def test_moderation_at_submit_is_reported_in_words_and_refunded(env: BotEnv) -> None:
    w = env.world
    inter, job = await imagine(env, "something sim:moderate-input", user=w.bob)
    assert job.state is JobState.FAILED
    assert job.error_code == "DataInspectionFailed"
    assert reply_text(inter).startswith(f"Job #{job.id} is queued:")
    status = env.status_message(job)
    # "Input data may contain…" does not say whether the text or an image was refused.
    assert status.content.endswith(
        "❌ The request was blocked by content moderation. Change the prompt or the images."
    )
    assert job.error_message == (
        "The request was blocked by content moderation. Change the prompt or the images."
    )
    assert await env.ledger(job.id) == {"reserve": 1, "charge": 0, "refund": 1}
    assert env.result_messages(job) == []
    # The one message in the thread is the failure told to bob, pinging only him.
    assert job.thread_id is not None
    [notice] = env.fake.messages_in(job.thread_id)
    assert notice.content.startswith(f"<@{w.bob.id}> ❌ The request was blocked")


async def test_moderation_of_the_output_is_reported_in_words(env: BotEnv) -> None:
    w = env.world
    _, job = await imagine(env, "something sim:moderate-output", user=w.bob)
    assert job.state is JobState.FAILED
    assert env.status_message(job).content.endswith(
        "❌ The generated image was blocked by content moderation. Try a different prompt."
    )
    assert await env.ledger(job.id) == {"reserve": 1, "charge": 0, "refund": 1}
