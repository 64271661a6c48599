"""Every slash command end to end: the real `run_bot` against the fake Discord and the simulator.

One bot serves the whole module (jobs of a held model stay queued, see `BotEnv.hold_model`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import pytest_asyncio

from bot.dashscope.models import MODELS, Kind, models_of
from bot.i18n import text
from bot.jobs.model import JobState
from tests.backends import execute
from tests.discord_env import (
    HELD_MODEL,
    BotEnv,
    bot_env,
    custom_ids,
    embed_fields,
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
    async with bot_env(tmp_path_factory.mktemp("commands"), max_in_flight=1) as env:
        await env.hold_model()
        yield env


@pytest.fixture(autouse=True)
def clean(env: BotEnv) -> Iterator[None]:
    yield
    env.check_clean()


def new_member(env: BotEnv, name: str, locale: str = "en-US") -> Any:
    user = env.fake.create_user(name, locale=locale)
    env.fake.add_member(env.world.guild, user)
    return user


# --- /imagine ------------------------------------------------------------------------------


async def test_imagine_with_every_option_posts_status_thread_and_results(env: BotEnv) -> None:
    fake, w = env.fake, env.world
    inter, job = await imagine(
        env,
        "a lighthouse at dawn",
        user=w.alice,
        negative_prompt="people",
        size="1472*1104",
        n=2,
        seed=1234,
        prompt_extend=False,
        watermark=True,
        model="wan2.6-t2i",
    )
    assert job.state is JobState.DONE
    assert (job.model, job.n, job.params.seed, job.params.size) == (
        "wan2.6-t2i",
        2,
        1234,
        "1472*1104",
    )
    assert job.params.negative_prompt == "people"
    assert (job.params.prompt_extend, job.params.watermark) == (False, True)
    task = env.sim.sim.store.tasks[job.task_id or ""]
    assert (task.seed, task.size, task.n, task.prompt_extend, task.watermark) == (
        1234,
        (1472, 1104),
        2,
        False,
        True,
    )

    # The user got an ephemeral "queued" answer with a link to the status message.
    answer = replies(inter)[-1]
    assert answer.ephemeral
    assert answer.content.startswith(f"Job #{job.id} is queued: https://discord.com/channels/")
    assert answer.content.endswith(f"/{w.general.id}/{job.status_message_id}")

    # The public status message in the channel, then a thread named after the prompt.
    status = env.status_message(job)
    assert status.channel_id == w.general.id and not status.ephemeral
    assert status.content.startswith(f"**Job #{job.id}** by <@{w.alice.id}> · wan2.6-t2i")
    assert "> a lighthouse at dawn" in status.content
    assert "✅ Done: 2 image(s)" in status.content
    assert custom_ids(status) == []  # no Cancel button once finished
    assert status.thread_id == job.thread_id
    thread = fake.thread(job.thread_id or 0)
    assert thread.name == "a lighthouse at dawn" and thread.parent_id == w.general.id

    # The images in the thread, with the bot token, an embed and persistent buttons.
    [result] = env.result_messages(job)
    assert result.channel_id == thread.id and result.source == "channel"
    assert [a.filename for a in result.attachments] == [
        f"wan-{job.id}-1.png",
        f"wan-{job.id}-2.png",
    ]
    assert result.content == f"<@{w.alice.id}>"
    fields = embed_fields(result)
    assert result.embeds[0]["title"] == f"Job #{job.id}"
    assert fields["Prompt"] == "a lighthouse at dawn"
    assert fields["Negative prompt"] == "people"
    assert fields["Model"] == "wan2.6-t2i"
    assert fields["Size"] == "1472*1104" == job.result_size  # as DashScope reported it
    assert fields["Seed"] == "1234"
    assert fields["Time"].endswith(" s")
    assert custom_ids(result)[-4:] == [  # the last row; the image tools above it
        f"wan:job:{job.id}:{a}" for a in ("reroll", "edit", "info", "delete")
    ]
    posts = fake.requests_to("POST", f"/channels/{thread.id}/messages")
    assert [p.json["nonce"] for p in posts] == [f"wb{job.id}-0"]
    assert posts[0].json["enforce_nonce"] is True

    # Nothing went through the interaction webhook after the first answers: the defer and
    # one follow-up. Status edits and results used the bot token.
    assert [r.path.split("/")[1] for r in fake.webhook_requests_for(inter)] == ["webhooks"]
    assert len(fake.callbacks_for(inter)) == 1
    assert await env.ledger(job.id) == {"reserve": 2, "charge": 2, "refund": 0}


async def test_imagine_autocomplete_offers_models_and_their_sizes(env: BotEnv) -> None:
    fake, w = env.fake, env.world
    ac = await fake.autocomplete(
        "imagine", {"prompt": "x", "model": "wan2.2"}, "model", user=w.alice, channel=w.general
    )
    await fake.wait_for_ack(ac)
    assert [c["value"] for c in ac.choices or []] == ["wan2.2-t2i-plus", "wan2.2-t2i-flash"]

    ac = await fake.autocomplete(
        "imagine", {"prompt": "x", "model": ""}, "model", user=w.alice, channel=w.general
    )
    await fake.wait_for_ack(ac)
    assert [c["value"] for c in ac.choices or []] == [m.name for m in models_of(Kind.TEXT_TO_IMAGE)]
    assert "wan2.5-i2i-preview" not in [c["value"] for c in ac.choices or []]

    ac = await fake.autocomplete(
        "imagine", {"prompt": "x", "size": ""}, "size", user=w.alice, channel=w.general
    )
    await fake.wait_for_ack(ac)
    assert [c["value"] for c in ac.choices or []] == [
        f"{a}*{b}" for a, b in MODELS["wan2.6-t2i"].recommended_sizes
    ]

    ac = await fake.autocomplete(
        "imagine",
        {"prompt": "x", "model": "wan2.2-t2i-flash", "size": "1280"},
        "size",
        user=w.alice,
        channel=w.general,
    )
    await fake.wait_for_ack(ac)
    assert [c["value"] for c in ac.choices or []] == ["720*1280", "1280*720"]

    ac = await fake.autocomplete(
        "edit", {"prompt": "x", "size": "1200"}, "size", user=w.alice, channel=w.general
    )
    await fake.wait_for_ack(ac)
    assert [c["value"] for c in ac.choices or []] == ["800*1200", "1200*800"]


# --- /edit ---------------------------------------------------------------------------------


@pytest.mark.parametrize("count", [1, 2, 3])
async def test_edit_with_one_to_three_attachments(env: BotEnv, count: int) -> None:
    fake, w = env.fake, env.world
    uploads = [(f"in{k}.png", png(640 + 16 * k, 480, (10 * k, 90, 160))) for k in range(count)]

    async def run() -> Any:
        inter = await fake.slash(
            "edit",
            {"prompt": "make it winter", "seed": 7},
            user=w.alice,
            channel=w.art,
            attachments=uploads,
        )
        await fake.wait_for_ack(inter)
        return inter

    inter, job = await launch(env, run())
    assert job.state is JobState.DONE
    assert (job.kind, job.model, job.params.seed) == (Kind.EDIT, "wan2.5-i2i-preview", 7)
    assert len(await env.bot.engine.store.inputs(job.id)) == count
    assert len(env.sim.sim.store.tasks[job.task_id or ""].inputs) == count
    assert reply_text(inter).startswith(f"Job #{job.id} is queued:")
    assert env.status_message(job).channel_id == w.art.id
    [result] = env.result_messages(job)
    assert result.channel_id == job.thread_id
    assert embed_fields(result)["Prompt"] == "make it winter"
    assert len(fake.webhook_requests_for(inter)) == 1


# --- /jobs /show /cancel /quota ------------------------------------------------------------


async def test_jobs_lists_the_members_recent_jobs(env: BotEnv) -> None:
    w = env.world
    carol = new_member(env, "carol")
    inter = await invoke(env, "jobs", user=carol)
    assert reply_text(inter) == "You have no jobs yet. Try /imagine."
    assert replies(inter)[-1].ephemeral

    _, job = await imagine(env, "a *bold* fox", user=carol)
    inter = await invoke(env, "jobs", user=carol)
    [answer] = replies(inter)
    assert answer.ephemeral
    assert answer.embeds[0]["title"] == "Your recent jobs"
    description = answer.embeds[0]["description"]
    assert description.startswith(f"**#{job.id}** · done · wan2.6-t2i · <t:")
    assert "> a \\*bold\\* fox" in description
    assert w.alice.id != carol.id

    # A long prompt is shortened with an ellipsis, so the list shows it was cut.
    _, long = await imagine(env, "a fox in the snow " * 10, user=carol)
    [answer] = replies(await invoke(env, "jobs", user=carol))
    newest = answer.embeds[0]["description"].split("\n")[:2]
    assert newest[0].startswith(f"**#{long.id}** · done")
    assert newest[1] == "> " + ("a fox in the snow " * 5)[:79] + "…"


async def test_imagine_without_a_seed_picks_one_sends_it_and_shows_it(env: BotEnv) -> None:
    fake, w = env.fake, env.world
    _, job = await imagine(env, "a seedless harbour", user=w.alice)
    seed = job.params.seed
    assert seed is not None and 0 <= seed <= 2_147_483_647
    assert env.sim.sim.store.tasks[job.task_id or ""].seed == seed  # DashScope was sent it
    [result] = env.result_messages(job)
    assert embed_fields(result)["Seed"] == str(seed)
    inter = await fake.click(result, f"wan:job:{job.id}:info", user=w.alice)
    await fake.wait_for_ack(inter)
    assert embed_fields(replies(inter)[-1])["Seed"] == str(seed)

    # The seed shown makes the same image again (the simulator draws by prompt and seed).
    _, again = await imagine(env, "a seedless harbour", user=w.alice, seed=seed)
    [repeat] = env.result_messages(again)
    assert fake.attachment_bytes(repeat.attachments[0].id) == fake.attachment_bytes(
        result.attachments[0].id
    )

    # A job made before seeds were picked has none: it still shows "—".
    assert env.bot is not None
    await execute(
        env.bot.engine.db,
        "UPDATE jobs SET params = json_set(params, '$.seed', NULL) WHERE id = ?",
        (job.id,),
    )
    inter = await fake.click(result, f"wan:job:{job.id}:info", user=w.alice)
    await fake.wait_for_ack(inter)
    assert embed_fields(replies(inter)[-1])["Seed"] == "—"


async def test_show_own_job_others_refused_moderator_allowed(env: BotEnv) -> None:
    fake, w = env.fake, env.world
    _, job = await imagine(env, "a red kite", user=w.alice, seed=3)

    inter = await invoke(env, "show", {"job": job.id}, user=w.alice, channel=w.art)
    [shown] = replies(inter)
    assert not shown.ephemeral and shown.channel_id == w.art.id
    assert [a.filename for a in shown.attachments] == [f"wan-{job.id}-1.png"]
    assert embed_fields(shown)["Seed"] == "3"
    assert custom_ids(shown)[-4:] == [  # the last row; the image tools above it
        f"wan:job:{job.id}:{a}" for a in ("reroll", "edit", "info", "delete")
    ]
    [original] = env.result_messages(job)
    assert fake.attachment_bytes(shown.attachments[0].id) == fake.attachment_bytes(
        original.attachments[0].id
    )

    inter = await invoke(env, "show", {"job": job.id}, user=w.bob, channel=w.art)
    [refusal] = replies(inter)
    assert refusal.ephemeral
    assert refusal.content == (
        f"Job #{job.id} belongs to someone else. Only its owner or a member with Manage Messages in its server can do that."
    )

    inter = await invoke(env, "show", {"job": job.id}, user=w.moderator, channel=w.art)
    assert replies(inter)[-1].attachments and not replies(inter)[-1].ephemeral

    inter = await invoke(env, "show", {"job": 999_999}, user=w.alice)
    assert reply_text(inter) == "There is no job #999999."


async def test_show_refuses_an_unfinished_job(env: BotEnv) -> None:
    w = env.world
    _, job = await imagine(env, "still waiting", user=w.alice, model=HELD_MODEL, wait=False)
    inter = await invoke(env, "show", {"job": job.id}, user=w.alice)
    assert reply_text(inter) == f"Job #{job.id} has not finished yet (queued)."
    inter = await invoke(env, "cancel", {"job": job.id}, user=w.alice)
    assert reply_text(inter) == f"Job #{job.id} was cancelled; its images were refunded."
    inter = await invoke(env, "show", {"job": job.id}, user=w.alice)
    assert reply_text(inter) == f"Job #{job.id} was cancelled, so it has no images to show."


async def test_show_of_a_failed_job_says_why_in_the_readers_language(env: BotEnv) -> None:
    lan = new_member(env, "lan", locale="zh-CN")
    _, job = await imagine(env, "一盏灯 sim:moderate-output", user=lan)
    assert job.state is JobState.FAILED
    inter = await invoke(env, "show", {"job": job.id}, user=lan)
    assert reply_text(inter) == (
        f"任务 #{job.id} 失败了，没有可显示的图片。生成的图片未通过内容审核，请换个提示词再试。"
    )
    assert replies(inter)[-1].ephemeral
    inter = await invoke(env, "show", {"job": job.id}, user=lan, locale="en-US")
    assert reply_text(inter) == (
        f"Job #{job.id} failed, so it has no images to show. The generated image was blocked "
        "by content moderation. Try a different prompt."
    )


async def test_cancel_queued_job_refunds_and_refuses_someone_else(env: BotEnv) -> None:
    w = env.world
    _, job = await imagine(env, "a queued owl", user=w.alice, model=HELD_MODEL, n=3, wait=False)
    assert job.state is JobState.QUEUED
    status = env.status_message(job)
    assert "⏳ Queued" in status.content
    assert custom_ids(status) == [f"wan:job:{job.id}:cancel"]
    assert await env.ledger(job.id) == {"reserve": 3}

    inter = await invoke(env, "cancel", {"job": job.id}, user=w.bob)
    assert (
        reply_text(inter)
        == f"Job #{job.id} is not yours: only its owner or a member with Manage Messages in this server can cancel it."
    )
    assert replies(inter)[-1].ephemeral
    assert (await env.job(job.id)).state is JobState.QUEUED

    inter = await invoke(env, "cancel", {"job": job.id}, user=w.alice)
    assert reply_text(inter) == f"Job #{job.id} was cancelled; its images were refunded."
    job = await env.wait_job(job.id)
    assert job.state is JobState.CANCELLED
    assert await env.ledger(job.id) == {"reserve": 3, "charge": 0, "refund": 3}
    status = env.status_message(job)
    assert "🚫 Cancelled. Nothing was charged." in status.content
    assert custom_ids(status) == []

    inter = await invoke(env, "cancel", {"job": job.id}, user=w.alice)
    assert reply_text(inter) == f"Job #{job.id} has already ended (cancelled)."
    inter = await invoke(env, "cancel", {"job": 987_654}, user=w.alice)
    assert reply_text(inter) == "There is no job #987654."


async def test_cancel_while_drawing_says_it_cannot_stop(env: BotEnv) -> None:
    w = env.world
    _, job = await imagine(env, "slow one sim:slow=1.5", user=w.alice, states=(JobState.RUNNING,))
    inter = await invoke(env, "cancel", {"job": job.id}, user=w.alice)
    assert reply_text(inter) == (
        f"Job #{job.id} is already being drawn by DashScope and cannot be stopped; "
        "it will finish shortly."
    )
    job = await env.wait_job(job.id)
    assert job.state is JobState.DONE
    assert await env.ledger(job.id) == {"reserve": 1, "charge": 1, "refund": 0}


async def test_moderator_may_cancel_a_members_job(env: BotEnv) -> None:
    w = env.world
    _, job = await imagine(env, "a queued heron", user=w.alice, model=HELD_MODEL, wait=False)
    inter = await invoke(env, "cancel", {"job": job.id}, user=w.moderator)
    assert reply_text(inter) == f"Job #{job.id} was cancelled; its images were refunded."
    assert (await env.wait_job(job.id)).state is JobState.CANCELLED


async def test_quota_shows_usage_against_limits(env: BotEnv) -> None:
    dave = new_member(env, "dave")
    _, done = await imagine(env, "two pears", user=dave, n=2)
    _, queued = await imagine(env, "a waiting pear", user=dave, model=HELD_MODEL, wait=False)
    inter = await invoke(env, "quota", user=dave)
    [answer] = replies(inter)
    assert answer.ephemeral
    embed = answer.embeds[0]
    assert embed["title"] == "Your quota"
    lines = embed["description"].split("\n")
    assert lines[0] == "Images in the last 24 h: 3 of 25"
    assert lines[1] == "Jobs in progress: 1 of no limit"
    assert lines[2].startswith("This server, last 24 h: ") and lines[2].endswith(" of 200")
    assert lines[3].startswith("Next image frees <t:") and lines[3].endswith(":R>.")
    assert "Video seconds in the last 24 h: 0 of 30" in lines
    await env.bot.engine.quota.policy.set(env.world.guild.id, "allow_video", "no", by_user=1)
    try:
        inter = await invoke(env, "quota", user=dave)
        shown = replies(inter)[-1].embeds[0]["description"].split("\n")
        assert "Videos are not allowed on this server." in shown
        assert not any(line.startswith("Video seconds") for line in shown)
    finally:
        await env.bot.engine.quota.policy.reset(env.world.guild.id, "allow_video", by_user=1)
    await invoke(env, "cancel", {"job": queued.id}, user=dave)
    inter = await invoke(env, "quota", user=dave)
    assert (
        replies(inter)[-1]
        .embeds[0]["description"]
        .startswith("Images in the last 24 h: 2 of 25\nJobs in progress: 0 of no limit")
    )
    assert done.state is JobState.DONE


# --- /wansync ------------------------------------------------------------------------------


async def test_wansync_is_for_the_owner_only(env: BotEnv) -> None:
    fake, w = env.fake, env.world
    inter = await invoke(env, "wansync", user=w.admin)
    assert reply_text(inter) == "Only the bot's owner can do that."
    assert replies(inter)[-1].ephemeral
    assert not fake.requests_to("PUT", f"/applications/{fake.application_id}/commands")

    inter = await invoke(env, "wansync", user=w.owner)
    assert env.bot is not None
    count = len(env.bot.tree.get_commands())
    assert reply_text(inter) == (
        f"Synced {count} commands globally. They can take up to an hour to appear."
    )
    assert replies(inter)[-1].ephemeral
    assert len(fake.requests_to("PUT", f"/applications/{fake.application_id}/commands")) == 1
    assert sorted((c["name"], c["type"]) for c in fake.global_commands) == sorted(
        (c["name"], c["type"]) for c in fake.guild_commands[w.guild.id]
    )


# --- languages -----------------------------------------------------------------------------


async def test_chinese_member_gets_chinese_messages(env: BotEnv) -> None:
    w = env.world
    li = new_member(env, "li", locale="zh-CN")
    _, alices = await imagine(env, "a paper boat", user=w.alice)

    inter = await invoke(env, "show", {"job": alices.id}, user=li)
    assert reply_text(inter) == text("reply.not_your_job", "zh", job_id=alices.id)
    assert (
        reply_text(inter)
        == f"任务 #{alices.id} 属于其他人，只有发起者或在其服务器拥有“管理消息”权限的成员可以这样做。"
    )

    inter = await invoke(env, "wansync", user=li)
    assert reply_text(inter) == "只有机器人所有者可以这样做。"

    inter, job = await imagine(env, "一只纸船", user=li)
    assert reply_text(inter).startswith(f"任务 #{job.id} 已加入队列：")
    assert env.status_message(job).content.startswith(f"**任务 #{job.id}** · <@{li.id}>")
    assert "✅ 完成：1 张图片" in env.status_message(job).content
    [result] = env.result_messages(job)
    assert result.embeds[0]["title"] == f"任务 #{job.id}"
    assert embed_fields(result)["提示词"] == "一只纸船"
    labels = [c.get("label") or c.get("placeholder") for c in result.iter_components()]
    assert [label for label in labels if label] == [
        "放大 ×2",
        "变体（轻微）",
        "缩小视野或平移…",
        "更多…",
        "重新生成",
        "编辑",
        "详情",
        "删除",
    ]

    # The same member with an English client gets English.
    inter = await invoke(env, "show", {"job": alices.id}, user=li, locale="en-US")
    assert reply_text(inter).startswith(f"Job #{alices.id} belongs to someone else.")


async def test_chinese_member_reads_job_states_in_chinese(env: BotEnv) -> None:
    mei = new_member(env, "mei", locale="zh-CN")
    _, done = await imagine(env, "一盏灯", user=mei)
    _, held = await imagine(env, "一只猫", user=mei, model=HELD_MODEL, wait=False)

    [answer] = replies(await invoke(env, "jobs", user=mei))
    newest, _, older, _ = answer.embeds[0]["description"].split("\n")
    assert newest.startswith(f"**#{held.id}** · 排队中 · {HELD_MODEL} · <t:")
    assert older.startswith(f"**#{done.id}** · 已完成 · wan2.6-t2i · <t:")
    inter = await invoke(env, "show", {"job": held.id}, user=mei)
    assert reply_text(inter) == f"任务 #{held.id} 尚未完成（排队中）。"
    inter = await invoke(env, "cancel", {"job": done.id}, user=mei)
    assert reply_text(inter) == f"任务 #{done.id} 已经结束（已完成）。"
    await invoke(env, "cancel", {"job": held.id}, user=mei)
    inter = await invoke(env, "cancel", {"job": held.id}, user=mei)
    assert reply_text(inter) == f"任务 #{held.id} 已经结束（已取消）。"


async def test_synced_commands_carry_chinese_localizations(env: BotEnv) -> None:
    commands = env.fake.guild_commands[env.world.guild.id]
    by_name = {c["name"]: c for c in commands}
    assert set(by_name) >= {
        "imagine",
        "edit",
        "jobs",
        "show",
        "cancel",
        "quota",
        "wansync",
        "Edit with Wan",
    }
    assert by_name["imagine"]["name_localizations"]["zh-CN"] == "画图"
    assert by_name["Edit with Wan"]["name_localizations"]["zh-CN"] == "用万相编辑"
    for command in commands:
        assert command["name_localizations"].get("zh-CN"), command["name"]
        if command["type"] == 1:
            assert command["description_localizations"].get("zh-CN"), command["name"]
        for option in command.get("options") or []:
            where = f"{command['name']}.{option['name']}"
            assert option["name_localizations"].get("zh-CN"), where
            assert option["description_localizations"].get("zh-CN"), where
    prompt = by_name["imagine"]["options"][0]
    assert prompt["name_localizations"]["zh-CN"] == "提示词"
    assert prompt["description_localizations"]["zh-CN"] == "要画的内容"


async def test_direct_messages_are_refused_unless_allowed(env: BotEnv) -> None:
    w = env.world
    dm = env.fake.open_dm(w.alice)
    jobs = await env.job_count()
    inter = await invoke(env, "imagine", {"prompt": "in private"}, user=w.alice, channel=dm)
    [answer] = replies(inter)
    assert answer.ephemeral
    assert answer.content == "I only work in servers here. Use me in a server channel."
    inter = await invoke(env, "quota", user=w.alice, channel=dm, locale="zh-CN")
    assert reply_text(inter) == "此机器人仅在服务器中可用，请在服务器频道中使用。"
    assert await env.job_count() == jobs
