"""/settings and /imagine aspect end to end: the real bot against the fake Discord and the
simulator. What the simulator received (its tasks) is what DashScope would have been sent."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import pytest_asyncio

from bot.accounting.defaults import MemberDefaults
from bot.jobs.model import Job, JobState
from tests.discord_env import (
    BotEnv,
    bot_env,
    custom_ids,
    imagine,
    invoke,
    launch,
    png,
    replies,
    reply_text,
)

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def env(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[BotEnv]:
    async with bot_env(tmp_path_factory.mktemp("settings")) as env:
        yield env


@pytest.fixture(autouse=True)
def clean(env: BotEnv) -> Iterator[None]:
    yield
    env.check_clean()


def member(env: BotEnv, name: str, locale: str = "en-US") -> Any:
    user = env.fake.create_user(name, locale=locale)
    env.fake.add_member(env.world.guild, user)
    return user


async def open_settings(env: BotEnv, user: Any, locale: str | None = None) -> Any:
    """/settings: its ephemeral answer (the message the member then changes)."""
    inter = await invoke(env, "settings", user=user, locale=locale)
    [answer] = replies(inter)
    assert answer.ephemeral
    return answer


async def pick(env: BotEnv, message: Any, field: str, value: str, user: Any) -> str:
    inter = await env.fake.select(message, f"wan:me:pick:{field}", [value], user=user)
    await env.fake.wait_for_ack(inter)
    await env.fake.settle()
    return str(env.fake.get_message(message.id).content)


async def press(env: BotEnv, message: Any, action: str, user: Any) -> Any:
    inter = await env.fake.click(message, f"wan:me:set:{action}", user=user)
    await env.fake.wait_for_ack(inter)
    await env.fake.settle()
    return inter


def sent(env: BotEnv, job: Job) -> Any:
    """The task the simulator made of the job's request."""
    return env.sim.sim.store.tasks[job.task_id or ""]


async def set_policy(env: BotEnv, **values: str) -> None:
    assert env.bot is not None
    for name, value in values.items():
        await env.bot.engine.quota.policy.set(env.world.guild.id, name, value, by_user=1)


async def reset_policy(env: BotEnv, *names: str) -> None:
    assert env.bot is not None
    for name in names:
        await env.bot.engine.quota.policy.reset(env.world.guild.id, name, by_user=1)


async def test_settings_shows_defaults_and_imagine_uses_the_changed_ones(env: BotEnv) -> None:
    dana = member(env, "dana")
    message = await open_settings(env, dana)
    assert message.content.startswith("**Your defaults**")
    assert "Images per request: not set" in message.content
    assert custom_ids(message) == [
        "wan:me:pick:model",
        "wan:me:pick:aspect",
        "wan:me:pick:n",
        "wan:me:set:prompt_extend",
        "wan:me:set:watermark",
        "wan:me:set:form",
        "wan:me:set:reset",
    ]
    assert "Images per request: 3" in await pick(env, message, "n", "3", dana)
    assert "Aspect ratio or size: 16:9" in await pick(env, message, "aspect", "16:9", dana)

    _, job = await imagine(env, "a harbour at noon", user=dana)
    assert job.state is JobState.DONE
    task = sent(env, job)
    assert (task.n, task.size, task.model.name) == (3, (1696, 960), "wan2.6-t2i")

    # What the command gives wins over the defaults.
    _, job = await imagine(env, "a harbour at dusk", user=dana, n=1, size="1280*1280")
    assert (sent(env, job).n, sent(env, job).size) == (1, (1280, 1280))

    # Opened again (a new /settings), the defaults are there; Reset clears them.
    message = await open_settings(env, dana)
    assert "Images per request: 3" in message.content
    await press(env, message, "reset", dana)
    assert "Images per request: not set" in env.fake.get_message(message.id).content
    _, job = await imagine(env, "a harbour at night", user=dana)
    assert (sent(env, job).n, sent(env, job).size) == (1, (1280, 1280))


async def test_negative_prompt_and_size_through_the_form_reach_edits_too(env: BotEnv) -> None:
    erin = member(env, "erin")
    message = await open_settings(env, erin)
    await pick(env, message, "n", "2", erin)
    await press(env, message, "form", erin)
    submit = await env.fake.submit_modal(
        "wan:me:form", {"negative": "blurry, text", "size": "1600x1024"}, user=erin
    )
    await env.fake.wait_for_ack(submit)
    await env.fake.settle()
    content = env.fake.get_message(message.id).content
    assert "Negative prompt: blurry, text" in content
    assert "Aspect ratio or size: 1600*1024" in content

    _, job = await imagine(env, "a fox in snow", user=erin)
    task = sent(env, job)
    assert (task.negative_prompt, task.size, task.n) == ("blurry, text", (1600, 1024), 2)

    # An edit takes n and the negative prompt, but keeps its image's shape.
    async def edit() -> Any:
        inter = await env.fake.slash(
            "edit",
            {"prompt": "make it winter"},
            user=erin,
            channel=env.world.art,
            attachments=[("in.png", png(640, 480))],
        )
        await env.fake.wait_for_ack(inter)
        return inter

    _, job = await launch(env, edit())
    assert job.state is JobState.DONE
    assert (job.n, job.params.negative_prompt, job.params.size) == (2, "blurry, text", None)

    # So does a blend.
    async def blend() -> Any:
        inter = await env.fake.slash(
            "blend",
            {"prompt": "the two as one"},
            user=erin,
            channel=env.world.art,
            attachments=[("a.png", png(640, 480)), ("b.png", png(480, 640))],
        )
        await env.fake.wait_for_ack(inter)
        return inter

    _, job = await launch(env, blend())
    assert job.state is JobState.DONE
    assert (job.model, job.n, job.params.negative_prompt) == ("wan2.6-image", 2, "blurry, text")
    assert job.params.size is None

    # A bad size is refused in words; nothing changes.
    await press(env, message, "form", erin)
    bad = await env.fake.submit_modal("wan:me:form", {"size": "10*10"}, user=erin)
    await env.fake.wait_for_ack(bad)
    await env.fake.settle()
    assert reply_text(bad).startswith("Size 10*10 (100 pixels) isn't accepted by wan2.6-t2i")
    assert "1600*1024" in env.fake.get_message(message.id).content


async def test_a_forced_watermark_stays_forced_despite_a_default_of_off(env: BotEnv) -> None:
    finn = member(env, "finn")
    message = await open_settings(env, finn)
    await press(env, message, "watermark", finn)  # not set → on
    await press(env, message, "watermark", finn)  # on → off
    assert "Watermark: off" in env.fake.get_message(message.id).content
    _, job = await imagine(env, "a quiet lake", user=finn)
    assert sent(env, job).watermark is False
    await set_policy(env, watermark="on")
    try:
        _, job = await imagine(env, "a quiet lake", user=finn)
        assert sent(env, job).watermark is True
    finally:
        await reset_policy(env, "watermark")


async def test_a_model_default_the_server_disallows_falls_back(env: BotEnv) -> None:
    gwen = member(env, "gwen")
    message = await open_settings(env, gwen)
    await pick(env, message, "model", "wan2.2-t2i-flash", gwen)
    await pick(env, message, "aspect", "16:9", gwen)
    _, job = await imagine(env, "a red kite", user=gwen)
    assert (job.model, sent(env, job).size) == ("wan2.2-t2i-flash", (1280, 720))
    await set_policy(env, allowed_models="wan2.6-t2i")
    try:
        _, job = await imagine(env, "a red kite", user=gwen)
        # The server's model, with the member's aspect ratio in its sizes.
        assert (job.model, sent(env, job).size) == ("wan2.6-t2i", (1696, 960))
    finally:
        await reset_policy(env, "allowed_models")


async def test_imagine_aspect_sends_the_mapped_size(env: BotEnv) -> None:
    w = env.world
    _, job = await imagine(env, "a tall tower", user=w.alice, aspect="9:16")
    assert (job.params.size, sent(env, job).size) == ("960*1696", (960, 1696))
    _, job = await imagine(
        env, "a wide plain", user=w.alice, aspect="16:9", model="wan2.2-t2i-flash"
    )
    assert sent(env, job).size == (1280, 720)
    before = await env.job_count()
    inter = await invoke(
        env,
        "imagine",
        {"prompt": "both", "aspect": "16:9", "size": "1280*1280"},
        user=w.alice,
    )
    assert reply_text(inter) == "Give either a size or an aspect ratio, not both."
    assert await env.job_count() == before


async def test_settings_in_chinese(env: BotEnv) -> None:
    hana = member(env, "hana", locale="zh-CN")
    message = await open_settings(env, hana, locale="zh-CN")
    assert message.content.startswith("**你的默认选项**")
    assert "每次图片数量：未设置" in message.content
    inter = await env.fake.select(message, "wan:me:pick:n", ["4"], user=hana, locale="zh-CN")
    await env.fake.wait_for_ack(inter)
    await env.fake.settle()
    assert "每次图片数量：4" in env.fake.get_message(message.id).content
    bad = await env.fake.select(
        message, "wan:me:pick:model", ["wan2.5-i2i-preview"], user=hana, locale="zh-CN"
    )
    await env.fake.wait_for_ack(bad)
    await env.fake.settle()
    assert reply_text(bad).startswith("`wan2.5-i2i-preview` 不能根据文字生成图片")
    inter = await invoke(
        env,
        "imagine",
        {"prompt": "两者", "aspect": "16:9", "size": "1280*1280"},
        user=hana,
        locale="zh-CN",
    )
    assert reply_text(inter) == "请只给出尺寸或宽高比中的一个，不要同时给出。"


async def test_the_menu_form_and_replies_use_the_defaults_and_edit_takes_aspect(
    env: BotEnv,
) -> None:
    fake, w = env.fake, env.world
    ivan = member(env, "ivan")
    message = await open_settings(env, ivan)
    await pick(env, message, "n", "2", ivan)
    await pick(env, message, "aspect", "16:9", ivan)
    await press(env, message, "watermark", ivan)  # on
    post = await fake.post_message(w.art, w.alice, "mine", attachments=[("m.png", png())])

    async def menu() -> Any:
        opened = await fake.message_command("Edit with Wan", post, user=ivan)
        await fake.wait_for_ack(opened)
        submit = await fake.submit_modal(interaction=opened, fields={"instruction": "add snow"})
        await fake.wait_for_ack(submit)
        return submit

    _, job = await launch(env, menu())
    assert (job.n, job.params.watermark, job.params.size) == (2, True, None)

    reply = fake.post_message(w.art, ivan, f"{w.bot.mention} add rain", reference=post)
    _, job = await launch(env, reply)
    assert (job.n, job.params.watermark, job.params.size) == (2, True, None)

    async def edit() -> Any:
        inter = await fake.slash(
            "edit",
            {"prompt": "widen it", "aspect": "16:9", "n": 1},
            user=ivan,
            channel=w.art,
            attachments=[("in.png", png(640, 480))],
        )
        await fake.wait_for_ack(inter)
        return inter

    _, job = await launch(env, edit())
    assert (job.n, job.params.size, sent(env, job).size) == (1, "1280*720", (1280, 720))


async def test_the_controls_work_after_a_restart(env: BotEnv) -> None:
    jo = member(env, "jo")
    message = await open_settings(env, jo)
    await pick(env, message, "n", "2", jo)
    await press(env, message, "form", jo)  # a form opened before the restart
    await env.restart_bot()
    assert "Images per request: 4" in await pick(env, message, "n", "4", jo)
    submit = await env.fake.submit_modal("wan:me:form", {"negative": "fog"}, user=jo)
    await env.fake.wait_for_ack(submit)
    await env.fake.settle()
    assert "Negative prompt: fog" in env.fake.get_message(message.id).content
    assert env.bot is not None
    assert await env.bot.launcher.defaults.get(jo.id) == MemberDefaults(n=4, negative_prompt="fog")
