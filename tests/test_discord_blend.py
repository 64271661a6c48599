"""/blend through the fake Discord and the simulator: two to four attachments and an instruction
make one wan2.6-image request; refusals in words with nothing charged; moderation; a restart."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import pytest_asyncio
from PIL import Image

from bot.dashscope.models import Kind
from bot.jobs.model import JobState
from tests.data_uri import data_uri_bytes
from tests.discord_env import BotEnv, bot_env, embed_fields, launch, png, replies, reply_text

pytestmark = pytest.mark.asyncio(loop_scope="module")

RED, GREEN, BLUE = (220, 30, 30), (20, 170, 40), (30, 60, 220)


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def env(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[BotEnv]:
    # One task of a model at a time: a job can be held queued behind another (the restart).
    async with bot_env(tmp_path_factory.mktemp("blend"), max_in_flight=1) as env:
        yield env


@pytest.fixture(autouse=True)
def clean(env: BotEnv) -> Iterator[None]:
    yield
    env.check_clean()


async def blend(
    env: BotEnv,
    uploads: list[Any],
    prompt: str = "the three of them in one picture",
    *,
    user: Any = None,
    locale: str | None = None,
    **options: Any,
) -> Any:
    w = env.world
    inter = await env.fake.slash(
        "blend",
        {"prompt": prompt, **options},
        user=user or w.alice,
        channel=w.general,
        attachments=uploads,
        locale=locale,
    )
    await env.fake.wait_for_ack(inter)
    return inter


async def refused(env: BotEnv, uploads: list[Any], **kwargs: Any) -> str:
    """A /blend that must be refused: one ephemeral answer, no job, no ledger row, no request."""
    jobs, ledger = await env.job_count(), await env.ledger_rows()
    submissions = env.sim.sim.submissions
    inter = await blend(env, uploads, **kwargs)
    await env.fake.settle()
    answers = replies(inter)
    assert answers and all(m.ephemeral for m in answers), answers
    assert (await env.job_count(), await env.ledger_rows()) == (jobs, ledger)
    assert env.sim.sim.submissions == submissions
    return reply_text(inter)


def colours_in(image: Image.Image) -> set[tuple[int, int, int]]:
    """Which of the inputs' colours the image shows somewhere along its middle line."""
    rgb = image.convert("RGB")
    found = set()
    for x in range(0, rgb.width, max(1, rgb.width // 24)):
        pixel = rgb.getpixel((x, rgb.height // 2))
        for colour in (RED, GREEN, BLUE):
            if sum(abs(a - b) for a, b in zip(pixel, colour, strict=True)) < 90:  # type: ignore[arg-type]
                found.add(colour)
    return found


async def test_three_attachments_make_one_request_with_three_images(env: BotEnv) -> None:
    w = env.world
    inputs = [png(900, 600, RED), png(600, 600, GREEN), png(500, 800, BLUE)]
    before = set(env.sim.sim.store.tasks)
    inter, job = await launch(
        env,
        blend(
            env,
            [(f"{k}.png", data) for k, data in enumerate(inputs)],
            n=2,
            negative_prompt="blur",
            prompt_extend=False,
            watermark=True,
        ),
    )
    assert job.state is JobState.DONE, job.error_message
    assert (job.kind, job.model, job.n) == (Kind.BLEND, "wan2.6-image", 2)
    assert [data_uri_bytes(u) for u in await env.bot.engine.store.inputs(job.id)] == inputs
    # One request reached the simulator, carrying the three images and the options.
    [task] = [t for key, t in env.sim.sim.store.tasks.items() if key not in before]
    assert (task.model.name, len(task.inputs), task.n) == ("wan2.6-image", 3, 2)
    assert (task.negative_prompt, task.prompt_extend, task.watermark) == ("blur", False, True)
    assert task.task_id == job.task_id
    assert reply_text(inter).startswith(f"Job #{job.id} is queued:")
    # The result is posted in the job's thread, and each image shows every input.
    assert job.thread_id is not None and env.status_message(job).channel_id == w.general.id
    [result] = env.result_messages(job)
    assert result.channel_id == job.thread_id
    assert embed_fields(result)["Prompt"] == "the three of them in one picture"
    assert len(result.attachments) == 2
    for attachment in result.attachments:
        image = Image.open(io.BytesIO(env.fake.attachment_bytes(attachment.id)))
        assert abs(image.width / image.height - 1.5) < 0.02  # the first input's shape
        assert colours_in(image) == {RED, GREEN, BLUE}
    assert await env.ledger(job.id) == {"reserve": 2, "charge": 2, "refund": 0}


async def test_the_command_takes_two_to_four_images(env: BotEnv) -> None:
    [schema] = [c for c in env.fake.guild_commands[env.world.guild.id] if c["name"] == "blend"]
    options = {o["name"]: o for o in schema["options"]}
    required = {name for name, o in options.items() if o.get("required")}
    assert required == {"prompt", "image1", "image2"}
    assert {name for name, o in options.items() if o["type"] == 11} == {
        "image1",
        "image2",
        "image3",
        "image4",
    }
    assert schema["name_localizations"]["zh-CN"] == "融图"
    # Discord's client sends neither one image nor five: the fake refuses both as it would.
    for count, refusal in ((1, "required"), (5, "5 uploads")):
        with pytest.raises(ValueError, match=refusal):
            await env.fake.slash(
                "blend",
                {"prompt": "x"},
                user=env.world.alice,
                channel=env.world.general,
                attachments=[(f"{k}.png", png()) for k in range(count)],
            )


async def test_one_image_given_twice_is_refused_in_words(env: BotEnv) -> None:
    once = env.fake.upload(("same.png", png()), env.world.general)
    words = await refused(env, [once, once])
    assert words == ("A blend takes 2 to 4 different images; you gave 1. Attach 2 to 4 images.")
    words = await refused(env, [once, once], locale="zh-CN")
    assert words == "融图需要 2 到 4 张不同的图片，你提供了 1 张。请附上 2 到 4 张图片。"


async def test_options_are_checked_against_wan26_image(env: BotEnv) -> None:
    two = [("a.png", png()), ("b.png", png())]
    words = await refused(env, two, size="700*700")
    assert words.startswith("Size 700*700 (490,000 pixels) isn't accepted by wan2.6-image")


async def test_a_server_that_disallows_the_model_is_named(env: BotEnv) -> None:
    assert env.bot is not None
    policy = env.bot.engine.quota.policy
    guild = env.world.guild.id
    await policy.set(guild, "allowed_models", "wan2.6-t2i", by_user=env.world.admin.id)
    try:
        words = await refused(env, [("a.png", png()), ("b.png", png())])
    finally:
        await policy.reset(guild, "allowed_models", by_user=env.world.admin.id)
    assert words == "This server does not allow `wan2.6-image`. Allowed: wan2.6-t2i."


async def test_a_moderated_result_is_told_and_refunded(env: BotEnv) -> None:
    uploads = [("a.png", png()), ("b.png", png(500, 500, GREEN))]
    _, job = await launch(env, blend(env, uploads, "together sim:moderate-output"))
    assert job.state is JobState.FAILED
    assert job.error_code == "DataInspectionFailed"
    assert env.status_message(job).content.endswith(
        "❌ The generated image was blocked by content moderation. Try a different prompt."
    )
    assert await env.ledger(job.id) == {"reserve": 1, "charge": 0, "refund": 1}
    assert env.result_messages(job) == []


async def test_blends_survive_a_restart_running_and_queued(env: BotEnv) -> None:
    """One blend is drawing and one waits for the model's only slot when the bot restarts: the
    first is watched again, the second is submitted with its images read from the store."""
    submissions = env.sim.sim.submissions
    first = [("a.png", png(600, 600, RED)), ("b.png", png(600, 600, BLUE))]
    second = [("c.png", png(600, 600, GREEN)), ("d.png", png(600, 600, RED))]
    _, drawing = await launch(
        env, blend(env, first, "side by side sim:slow=3"), states=(JobState.RUNNING,)
    )
    _, waiting = await launch(env, blend(env, second, "together"), wait=False)
    assert (await env.job(waiting.id)).state is JobState.QUEUED

    await env.restart_bot()

    for job, colours in ((drawing, {RED, BLUE}), (waiting, {GREEN, RED})):
        job = await env.wait_job(job.id)
        assert job.state is JobState.DONE, job.error_message
        [result] = env.result_messages(job)
        image = Image.open(io.BytesIO(env.fake.attachment_bytes(result.attachments[0].id)))
        assert colours_in(image) == colours
        assert await env.ledger(job.id) == {"reserve": 1, "charge": 1, "refund": 0}
    assert env.sim.sim.submissions == submissions + 2
