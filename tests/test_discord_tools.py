"""The actions on one image of a result, end to end: Upscale, Vary, Zoom out, Pan and Edit this
image, through the fake Discord and the simulator, with the bot's real code between them."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import pytest_asyncio
from PIL import Image

from bot.dashscope.models import DEFAULT_EDIT_MODEL, IMAGE_TOOLS_MODEL, Kind
from bot.i18n import text
from bot.jobs.model import Job, JobState
from tests.data_uri import data_uri_bytes
from tests.discord_env import (
    BotEnv,
    bot_env,
    embed_fields,
    imagine,
    launch,
    modal_inputs,
    png,
    reply_text,
    submit_modal,
)
from tests.test_discord_buttons import member, one_queued_one_pointed, queued_link, twice

pytestmark = pytest.mark.asyncio(loop_scope="module")

# A small text-to-image model and size, so the results (and their upscales) are quick to draw.
SMALL = {"model": "wan2.2-t2i-flash", "size": "768*768"}
MOVE = ("zoom15", "zoom2", "pan_left", "pan_right", "pan_up", "pan_down")
MORE = ("upscale4", "vary_strong", "edit", "animate")
ADMIN = 1  # who changes the server's settings in these tests (the audit log names someone)


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def env(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[BotEnv]:
    # The simulator's gateway is of no known region: every tool is offered.
    async with bot_env(tmp_path_factory.mktemp("tools")) as env:
        yield env


@pytest.fixture(autouse=True)
def clean(env: BotEnv) -> Iterator[None]:
    yield
    env.check_clean()


def rows(message: Any) -> list[list[dict[str, Any]]]:
    return [row["components"] for row in message.components]


def pixels(data: bytes) -> bytes:
    with Image.open(io.BytesIO(data)) as image:
        return image.convert("RGB").tobytes()


def size_of(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as image:
        return image.size


async def use(
    env: BotEnv, message: Any, job: Job, tool: str, image: int, user: Any, **kw: Any
) -> Any:
    """Click a tool for one image (its button, or its option in a menu); answered."""
    inter = await choose(env, message, job, tool, image, user, **kw)
    await env.fake.wait_for_ack(inter)
    await env.fake.settle()
    return inter


async def choose(
    env: BotEnv, message: Any, job: Job, tool: str, image: int, user: Any, **kw: Any
) -> Any:
    """The click, acknowledged (for `launch`, which waits for the job it starts)."""
    if tool in ("upscale2", "vary_subtle"):
        inter = await env.fake.click(message, f"wan:img:{job.id}:{image}:{tool}", user=user, **kw)
    else:
        menu = "move" if tool in MOVE else "more"
        inter = await env.fake.select(
            message, f"wan:tools:{job.id}:{menu}", [f"{tool}:{image}"], user=user, **kw
        )
    await env.fake.wait_for_ack(inter)
    return inter


async def refused(
    env: BotEnv, message: Any, job: Job, tool: str, image: int, user: Any, words: str, **kw: Any
) -> None:
    """The click is answered with `words`, and makes no job."""
    jobs = await env.job_count()
    inter = await use(env, message, job, tool, image, user, **kw)
    assert reply_text(inter) == words
    assert await env.job_count() == jobs


async def test_a_result_of_two_offers_each_tool_for_each_image(env: BotEnv) -> None:
    alice = member(env, "offered")
    _, job = await imagine(env, "two boats", user=alice, n=2, **SMALL)
    [result] = env.result_messages(job)
    upscale, vary, move, more, own = rows(result)
    assert [(b["label"], b["custom_id"]) for b in upscale] == [
        ("U1", f"wan:img:{job.id}:1:upscale2"),
        ("U2", f"wan:img:{job.id}:2:upscale2"),
    ]
    assert [(b["label"], b["custom_id"]) for b in vary] == [
        ("V1", f"wan:img:{job.id}:1:vary_subtle"),
        ("V2", f"wan:img:{job.id}:2:vary_subtle"),
    ]
    [zoom] = move
    assert (zoom["type"], zoom["custom_id"], zoom["placeholder"]) == (
        3,
        f"wan:tools:{job.id}:move",
        "Zoom out or pan…",
    )
    assert [o["value"] for o in zoom["options"]] == [f"{t}:{k}" for k in (1, 2) for t in MOVE]
    assert [o["label"] for o in zoom["options"][6:]] == [
        "Zoom out ×1.5 · image 2",
        "Zoom out ×2 · image 2",
        "Pan ← · image 2",
        "Pan → · image 2",
        "Pan ↑ · image 2",
        "Pan ↓ · image 2",
    ]
    [extra] = more
    assert (extra["custom_id"], extra["placeholder"]) == (f"wan:tools:{job.id}:more", "More…")
    assert [o["value"] for o in extra["options"]] == [f"{t}:{k}" for k in (1, 2) for t in MORE]
    assert [o["label"] for o in extra["options"][:3]] == [
        "Upscale ×4 · image 1",
        "Vary (strong) · image 1",
        "Edit this image · image 1",
    ]
    assert [b["custom_id"] for b in own] == [
        f"wan:job:{job.id}:{a}" for a in ("reroll", "edit", "info", "delete")
    ]


async def test_the_tools_speak_the_members_language(env: BotEnv) -> None:
    li = env.fake.create_user("li-tools", locale="zh-CN")
    env.fake.add_member(env.world.guild, li)
    _, job = await imagine(env, "一只猫", user=li, locale="zh-CN", **SMALL)
    [result] = env.result_messages(job)
    upscale, vary, move, more, _ = rows(result)
    assert [upscale[0]["label"], vary[0]["label"]] == ["放大 ×2", "变体（轻微）"]
    assert move[0]["placeholder"] == "缩小视野或平移…"
    assert [o["label"] for o in more[0]["options"]] == [
        "放大 ×4",
        "变体（强烈）",
        "编辑此图",
        "生成视频",
    ]


async def test_edit_this_image_opens_the_form_on_that_image_alone(env: BotEnv) -> None:
    alice, bob = member(env, "edit-one-a"), member(env, "edit-one-b")
    _, job = await imagine(env, "three pears", user=alice, n=2, **SMALL)
    [result] = env.result_messages(job)
    opened = await use(env, result, job, "edit", 2, bob)
    assert opened.modal is not None
    # No question which images: the form is on image 2.
    assert list(modal_inputs(opened.modal)) == ["What should change?", "What to avoid (optional)"]
    _, edit = await launch(env, submit_modal(env, opened, {"What should change?": "a blue pear"}))
    assert (edit.kind, edit.model, edit.parent_job_id, edit.user_id) == (
        Kind.EDIT,
        DEFAULT_EDIT_MODEL,
        job.id,
        bob.id,
    )
    [uri] = await env.bot.engine.store.inputs(edit.id)  # type: ignore[union-attr]
    assert data_uri_bytes(uri) == env.fake.attachment_bytes(result.attachments[1].id)


async def test_upscale_sends_image_2_alone_and_posts_it_twice_as_large(env: BotEnv) -> None:
    fake = env.fake
    alice = member(env, "upscaler")
    _, job = await imagine(env, "two lighthouses", user=alice, n=2, **SMALL)
    [result] = env.result_messages(job)
    second = fake.attachment_bytes(result.attachments[1].id)
    assert second != fake.attachment_bytes(result.attachments[0].id)
    inter, up = await launch(env, choose(env, result, job, "upscale2", 2, alice))
    assert queued_link(inter, up)
    assert up.state is JobState.DONE, up.error_message
    assert (up.kind, up.model, up.n, up.parent_job_id, up.user_id) == (
        Kind.UPSCALE,
        IMAGE_TOOLS_MODEL,
        1,
        job.id,
        alice.id,
    )
    p = up.params
    assert (p.function, p.upscale_factor, p.source_image, p.prompt) == (
        "super_resolution",
        2,
        2,
        "two lighthouses",
    )
    # That image, and only it, went to DashScope.
    [uri] = await env.bot.engine.store.inputs(up.id)  # type: ignore[union-attr]
    assert data_uri_bytes(uri) == second
    task = env.sim.sim.store.tasks[up.task_id or ""]
    assert task.model.name == IMAGE_TOOLS_MODEL
    assert task.tool is not None
    assert (task.tool.function, task.tool.upscale_factor) == ("super_resolution", 2)
    [sent] = task.inputs  # what DashScope decoded from base_image_url
    assert pixels(sent) == pixels(second) != pixels(fake.attachment_bytes(result.attachments[0].id))
    # Posted in the job's thread, twice the size, with the tools for its one image.
    [posted] = env.result_messages(up)
    assert up.thread_id == job.thread_id and posted.channel_id == job.thread_id
    [picture] = posted.attachments
    width, height = size_of(second)
    assert size_of(fake.attachment_bytes(picture.id)) == (2 * width, 2 * height)
    upscale, _, move, _, _ = rows(posted)
    assert [(b["label"], b["custom_id"]) for b in upscale] == [
        ("Upscale ×2", f"wan:img:{up.id}:1:upscale2")
    ]
    assert [o["label"] for o in move[0]["options"]][:2] == ["Zoom out ×1.5", "Zoom out ×2"]
    assert embed_fields(posted)["Made by"] == f"Upscale ×2 of image 2 of job #{job.id}"
    assert await env.ledger(up.id) == {"reserve": 1, "charge": 1, "refund": 0}


async def test_each_tool_makes_its_request(env: BotEnv) -> None:
    alice = member(env, "every-tool")
    _, job = await imagine(env, "a tower", user=alice, **SMALL)
    [result] = env.result_messages(job)
    expected = {
        "vary_subtle": (Kind.VARY, "description_edit", {"strength": 0.3}, "Vary (subtle)"),
        "vary_strong": (Kind.VARY, "description_edit", {"strength": 0.7}, "Vary (strong)"),
        "zoom15": (Kind.EXPAND, "expand", {"expand": (1.5,) * 4}, "Zoom out ×1.5"),
        "zoom2": (Kind.EXPAND, "expand", {"expand": (2.0,) * 4}, "Zoom out ×2"),
        "pan_left": (Kind.EXPAND, "expand", {"expand": (1.0, 1.0, 2.0, 1.0)}, "Pan ←"),
        "pan_up": (Kind.EXPAND, "expand", {"expand": (2.0, 1.0, 1.0, 1.0)}, "Pan ↑"),
    }
    for tool, (kind, function, params, words) in expected.items():
        _, made = await launch(env, choose(env, result, job, tool, 1, alice))
        assert made.state is JobState.DONE, (tool, made.error_message)
        assert (made.kind, made.model, made.params.function) == (kind, IMAGE_TOOLS_MODEL, function)
        assert {name: getattr(made.params, name) for name in params} == params
        [posted] = env.result_messages(made)
        assert embed_fields(posted)["Made by"] == f"{words} of image 1 of job #{job.id}"


async def test_a_double_click_on_upscale_starts_one_job(env: BotEnv) -> None:
    clicker = member(env, "double-upscale")
    _, job = await imagine(env, "a double-clicked tower", user=clicker, **SMALL)
    [result] = env.result_messages(job)

    async def upscale() -> Any:
        return await env.fake.click(result, f"wan:img:{job.id}:1:upscale2", user=clicker)

    first, second, up = await twice(env, 0.0, upscale)
    assert up.kind is Kind.UPSCALE and up.parent_job_id == job.id
    one_queued_one_pointed(first, second, up)


async def test_anyone_may_use_a_result_and_is_charged_for_it(env: BotEnv) -> None:
    """As Reroll: a member's click on another member's result is the clicker's job, under the
    clicker's limits."""
    owner, other = member(env, "result-owner"), member(env, "other-clicker")
    _, job = await imagine(env, "a shared result", user=owner, n=2, **SMALL)
    [result] = env.result_messages(job)
    _, up = await launch(env, choose(env, result, job, "upscale2", 1, other))
    assert up.user_id == other.id and up.parent_job_id == job.id
    assert await env.ledger(up.id) == {"reserve": 1, "charge": 1, "refund": 0}
    standing = await env.bot.engine.quota.standing(owner.id, env.world.guild.id)  # type: ignore[union-attr]
    assert standing.user_images == 2  # the owner paid for the two images only


@asynccontextmanager
async def server_setting(env: BotEnv, name: str, value: str) -> AsyncIterator[None]:
    """The server's setting `name` at `value` within the block, reset after it."""
    assert env.bot is not None
    policy, guild = env.bot.engine.quota.policy, env.world.guild.id
    await policy.set(guild, name, value, by_user=ADMIN)
    try:
        yield
    finally:
        await policy.reset(guild, name, by_user=ADMIN)


async def test_a_member_over_a_limit_is_refused_in_words(env: BotEnv) -> None:
    owner, clicker = member(env, "limit-owner"), member(env, "limited")
    _, job = await imagine(env, "a limited lake", user=owner, **SMALL)
    await imagine(env, "my own lake", user=clicker, **SMALL)  # the clicker's one image
    [result] = env.result_messages(job)
    async with server_setting(env, "images_per_user_day", "1"):
        rows_before, jobs = await env.ledger_rows(), await env.job_count()
        inter = await use(env, result, job, "upscale2", 1, clicker)
        assert reply_text(inter).startswith("You have used 1 of your 1 images for the last 24 h")
        assert await env.job_count() == jobs and await env.ledger_rows() == rows_before


async def test_vary_makes_no_more_images_than_the_clickers_max_n(env: BotEnv) -> None:
    """A Vary makes as many images as its result had, but the clicker did not choose that
    number: under a lower max_n it makes max_n images (and charges those), not a refusal
    telling the clicker to ask for fewer."""
    owner, clicker = member(env, "two-owner"), member(env, "max-one")
    _, job = await imagine(env, "two foxes", user=owner, n=2, **SMALL)
    [result] = env.result_messages(job)
    async with server_setting(env, "max_n", "1"):
        _, varied = await launch(env, choose(env, result, job, "vary_subtle", 2, clicker))
    assert varied.state is JobState.DONE and varied.n == 1
    assert await env.ledger(varied.id) == {"reserve": 1, "charge": 1, "refund": 0}


async def test_a_forced_prompt_extension_does_not_refuse_the_tools(env: BotEnv) -> None:
    """wanx2.1-imageedit has no prompt extension: a server forcing it (on or off) still gets
    Upscale, Zoom out, Pan and Vary, sent without it."""
    clicker = member(env, "forced-extend")
    _, job = await imagine(env, "an extended meadow", user=clicker, **SMALL)
    [result] = env.result_messages(job)
    async with server_setting(env, "prompt_extend", "on"):
        _, up = await launch(env, choose(env, result, job, "upscale2", 1, clicker))
    assert up.state is JobState.DONE and up.params.prompt_extend is None


async def test_a_model_the_server_does_not_allow_is_refused_in_words(env: BotEnv) -> None:
    clicker = member(env, "policy-clicker")
    _, job = await imagine(env, "a forbidden zoom", user=clicker, **SMALL)
    [result] = env.result_messages(job)
    async with server_setting(env, "allowed_models", "wan2.2-t2i-flash,wan2.5-i2i-preview"):
        jobs = await env.job_count()
        inter = await use(env, result, job, "zoom2", 1, clicker)
        assert reply_text(inter) == text(
            "policy.model",
            "en",
            model=IMAGE_TOOLS_MODEL,
            models="wan2.2-t2i-flash, wan2.5-i2i-preview",
        )
        assert await env.job_count() == jobs


async def test_upscale_by_4_from_the_more_menu(env: BotEnv) -> None:
    clicker = member(env, "by-four")
    _, job = await imagine(env, "a huge field", user=clicker, **SMALL)
    [result] = env.result_messages(job)
    _, up = await launch(env, choose(env, result, job, "upscale4", 1, clicker))
    assert up.state is JobState.DONE, up.error_message
    assert (up.params.function, up.params.upscale_factor) == ("super_resolution", 4)
    [posted] = env.result_messages(up)
    assert size_of(env.fake.attachment_bytes(posted.attachments[0].id)) == (3072, 3072)
    assert embed_fields(posted)["Made by"] == f"Upscale ×4 of image 1 of job #{job.id}"


@pytest.mark.parametrize(
    ("tool", "label", "width", "height"),
    [("upscale2", "Upscale ×2", 4400, 1100), ("zoom15", "Zoom out ×1.5", 450, 450)],
    ids=["too-large", "too-small"],
)
async def test_an_image_the_model_does_not_take_is_refused_in_words(
    env: BotEnv, tool: str, label: str, width: int, height: int
) -> None:
    """wanx2.1-imageedit takes 512–4096 px a side: an image over it (one already upscaled ×4,
    say) or under it (yet large enough for an edit) is refused in words, and nothing made."""
    clicker = member(env, f"sides-{tool}")
    _, job = await imagine(env, "a field of odd sizes", user=clicker, **SMALL)
    [result] = env.result_messages(job)
    env.fake.state.attachments[result.attachments[0].id].data = png(width, height)
    words = (
        f"{label} takes images with each side between 512 and 4096 pixels; image 1 is "
        f"{width}×{height}. Nothing was charged."
    )
    await refused(env, result, job, tool, 1, clicker, words)


async def test_an_unusable_image_is_named_by_its_number_in_the_result(env: BotEnv) -> None:
    """A result's image 2 that cannot be used at all is "image 2" in the refusal, as on its
    button, not the first of the one image read."""
    clicker = member(env, "second-image")
    _, job = await imagine(env, "two small ponds", user=clicker, n=2, **SMALL)
    [result] = env.result_messages(job)
    env.fake.state.attachments[result.attachments[1].id].data = png(300, 300)
    words = text("image.too_small", "en", index=2, width=300, height=300, min_side=384)
    await refused(env, result, job, "zoom2", 2, clicker, words)


async def test_an_image_that_is_gone_is_said_to_be(env: BotEnv) -> None:
    clicker = member(env, "gone-image")
    _, job = await imagine(env, "a vanishing cat", user=clicker, n=2, **SMALL)
    [result] = env.result_messages(job)
    # The second picture removed from the message (its author may do that).
    result.attachments = result.attachments[:1]
    jobs = await env.job_count()
    for locale, words in (
        (
            "en-US",
            f"Image 2 of job #{job.id} is no longer available (its message was deleted, or I "
            "can no longer read it), so nothing was made. Nothing was charged.",
        ),
        ("zh-CN", text("tool.image_gone", "zh", image=2, job_id=job.id)),
    ):
        inter = await use(env, result, job, "pan_right", 2, clicker, locale=locale)
        assert reply_text(inter) == words
    assert await env.job_count() == jobs


async def test_a_deleted_job_is_refused(env: BotEnv) -> None:
    clicker = member(env, "deleted-tools")
    _, job = await imagine(env, "a deleted result", user=clicker, **SMALL)
    [result] = env.result_messages(job)
    kept = result.components  # as a message a restart kept from its deletion would show them
    inter = await env.fake.click(result, f"wan:job:{job.id}:delete", user=clicker)
    await env.fake.wait_for_ack(inter)
    await env.fake.settle()
    result.components = kept
    await refused(
        env,
        result,
        job,
        "upscale2",
        1,
        clicker,
        text("reply.job_deleted", "en", job_id=job.id),
        force=True,
    )


async def test_a_job_of_another_server_is_not_reached(env: BotEnv) -> None:
    """A forged custom_id naming a job of another server: its images stay there."""
    clicker = member(env, "forger")
    _, job = await imagine(env, "a secret drawing", user=clicker, **SMALL)
    _, mine = await imagine(env, "my own drawing", user=clicker, **SMALL)
    [result] = env.result_messages(mine)
    assert env.bot is not None
    await env.bot.engine.db.write(
        lambda conn: conn.execute("UPDATE jobs SET guild_id = 1 WHERE id = ?", (job.id,))
    )
    [button] = [c for c in result.iter_components() if c.get("custom_id", "").endswith("upscale2")]
    button["custom_id"] = f"wan:img:{job.id}:1:upscale2"
    await refused(
        env,
        result,
        job,
        "upscale2",
        1,
        clicker,
        text("tool.elsewhere", "en", job_id=job.id),
    )


async def test_an_option_this_version_does_not_know_is_answered_in_words(env: BotEnv) -> None:
    clicker = member(env, "unknown-option")
    _, job = await imagine(env, "a menu from another version", user=clicker, **SMALL)
    [result] = env.result_messages(job)
    jobs = await env.job_count()
    inter = await env.fake.select(result, f"wan:tools:{job.id}:more", ["sharpen:1"], user=clicker)
    await env.fake.wait_for_ack(inter)
    await env.fake.settle()
    assert reply_text(inter) == text("reply.unknown_button", "en")
    assert await env.job_count() == jobs


async def test_a_moderated_result_is_told_in_words(env: BotEnv) -> None:
    fake = env.fake
    clicker = member(env, "moderated-tool")
    _, job = await imagine(env, "a result to vary", user=clicker, **SMALL)
    [result] = env.result_messages(job)
    sim = env.sim.sim
    sim.faults = sim.faults.merged({"partial_failures": 1})  # every image of the next task
    try:
        _, varied = await launch(env, choose(env, result, job, "vary_subtle", 1, clicker))
    finally:
        sim.faults = sim.faults.merged({"partial_failures": 0})
    assert varied.state is JobState.FAILED and varied.error_code == "DataInspectionFailed"
    words = text("error.content.output", "en")
    assert env.status_message(varied).content.endswith(f"❌ {words}")
    notices = [
        m
        for m in fake.messages_in(varied.thread_id or 0)
        if m.content == f"<@{clicker.id}> ❌ {words}"
    ]
    assert len(notices) == 1
    assert await env.ledger(varied.id) == {"reserve": 1, "charge": 0, "refund": 1}
