"""Server styles and usage by kind end to end: `/wanadmin styles` and `/imagine style:` through
the fake Discord against the real bot and the simulator.

An admin adds, replaces, lists and removes styles (refusals in words, non-admins kept out, every
change audited); a member's style reaches DashScope as the prompt with the style's words and the
joined negative prompt, shows in the result and its Info in both languages, and survives a
Reroll; `/wanadmin usage` tells images and cost by kind. One bot serves the module; each test
undoes its styles and settings.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import pytest_asyncio

from bot.dashscope.models import Kind, models_of
from bot.jobs.model import Job, JobState
from tests.backends import execute
from tests.discord_env import (
    BotEnv,
    bot_env,
    embed_fields,
    imagine,
    launch,
    png,
    replies,
    reply_text,
)
from tests.test_discord_admin import NOT_ALLOWED, admin, ask, new_member, set_value

pytestmark = pytest.mark.asyncio(loop_scope="module")

T2I_PRICE, EDIT_PRICE = 0.25, 0.2
T2I = ", ".join(spec.name for spec in models_of(Kind.TEXT_TO_IMAGE))
NOIR_ADDED = (
    "Style added; members choose it with `/imagine style:noir`.\n"
    "**Noir**: in film noir style · without: colour"
)


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def env(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[BotEnv]:
    async with bot_env(
        tmp_path_factory.mktemp("styles"),
        prices=f"wan2.6-t2i={T2I_PRICE},wan2.5-i2i-preview={EDIT_PRICE}",
        currency="USD",
        limit_images_per_guild_day=0,
        allow_dms=True,
    ) as env:
        yield env


@pytest.fixture(autouse=True)
def clean(env: BotEnv) -> Iterator[None]:
    yield
    env.check_clean()


@pytest_asyncio.fixture(loop_scope="module", autouse=True)
async def undo(env: BotEnv) -> AsyncIterator[None]:
    """Each test starts with no styles and the bot's default settings (the audit log is kept)."""
    yield
    assert env.bot is not None
    await execute(env.bot.engine.db, "DELETE FROM server_styles")
    await execute(env.bot.engine.db, "DELETE FROM limit_settings")


async def add(env: BotEnv, name: str, suffix: str, **options: Any) -> str:
    return await admin(env, "wanadmin styles add", {"name": name, "suffix": suffix, **options})


async def styles(env: BotEnv) -> list[tuple[str, str, str, str | None, str | None]]:
    assert env.bot is not None
    rows = await env.bot.engine.db.fetchall(
        "SELECT name, label, prompt_suffix, negative_prompt, model FROM server_styles ORDER BY name"
    )
    return [tuple(row) for row in rows]  # type: ignore[misc]


async def refused(env: BotEnv, options: dict[str, Any], **kw: Any) -> str:
    """The answer to an /imagine that must start nothing."""
    before = await env.job_count()
    inter = await ask(env, "imagine", options, user=kw.pop("user", env.world.alice), **kw)
    answer = replies(inter)[-1]
    assert answer.ephemeral
    assert await env.job_count() == before
    return answer.content


async def info(env: BotEnv, job: Job, user: Any, locale: str = "en-US") -> dict[str, str]:
    [result] = env.result_messages(job)
    inter = await env.fake.click(result, f"wan:job:{job.id}:info", user=user, locale=locale)
    await env.fake.wait_for_ack(inter)
    await env.fake.settle()
    return embed_fields(replies(inter)[-1])


# --- a member's style, from the request to the result -----------------------------------------


async def test_a_style_reaches_dashscope_and_shows_in_the_result_info_and_reroll(
    env: BotEnv,
) -> None:
    w = env.world
    assert await add(env, "Noir", "in film noir style", negative_prompt="colour") == NOIR_ADDED
    assert await styles(env) == [("noir", "Noir", "in film noir style", "colour", None)]

    _, job = await imagine(
        env, "a cat on a roof", user=w.alice, style="noir", negative_prompt="dogs", seed=3
    )
    assert job.state is JobState.DONE
    task = env.sim.sim.store.tasks[job.task_id or ""]
    assert (task.prompt, task.negative_prompt) == (
        "a cat on a roof, in film noir style",
        "dogs, colour",
    )
    assert (job.model, job.params.style) == ("wan2.6-t2i", "Noir")
    [result] = env.result_messages(job)
    assert embed_fields(result)["Style"] == "Noir"
    assert embed_fields(result)["Prompt"] == "a cat on a roof, in film noir style"
    assert (await info(env, job, w.bob))["Style"] == "Noir"
    assert (await info(env, job, w.bob, "zh-CN"))["风格"] == "Noir"

    # Reroll keeps the style, and does not add its words twice.
    async def reroll() -> Any:
        inter = await env.fake.click(result, f"wan:job:{job.id}:reroll", user=w.alice)
        await env.fake.wait_for_ack(inter)
        return inter

    _, again = await launch(env, reroll())
    assert again.state is JobState.DONE and again.parent_job_id == job.id
    assert (again.params.style, again.params.prompt, again.params.negative_prompt) == (
        "Noir",
        "a cat on a roof, in film noir style",
        "dogs, colour",
    )
    task = env.sim.sim.store.tasks[again.task_id or ""]
    assert task.prompt == "a cat on a roof, in film noir style"
    [new_result] = env.result_messages(again)
    assert embed_fields(new_result)["Style"] == "Noir"


async def test_a_styles_model_is_used_unless_the_member_picks_one_and_the_policy_bounds_it(
    env: BotEnv,
) -> None:
    w = env.world
    await add(env, "Quick", "quick sketch", model="wan2.2-t2i-flash")
    _, job = await imagine(env, "a pear", user=w.alice, style="Quick")
    assert (job.state, job.model, job.params.prompt) == (
        JobState.DONE,
        "wan2.2-t2i-flash",
        "a pear, quick sketch",
    )
    _, job = await imagine(env, "a plum", user=w.alice, style="quick", model="wan2.6-t2i")
    assert (job.model, job.params.style) == ("wan2.6-t2i", "Quick")
    # A model the server does not allow is refused as the member's own choice would be.
    await set_value(env, "allowed_models", "wan2.6-t2i")
    assert await refused(env, {"prompt": "a fig", "style": "quick"}) == (
        "This server does not allow `wan2.2-t2i-flash`. Allowed: wan2.6-t2i."
    )
    # The style's words that no longer fit the model's prompt are refused saying by how much.
    assert await refused(
        env, {"prompt": "p" * 490, "style": "quick", "model": "wan2.2-t2i-flash"}
    ) == (
        "With the style Quick, the prompt is 504 characters; wan2.2-t2i-flash accepts at most"
        " 500. Shorten your prompt to 486 characters or fewer."
    )


async def test_autocomplete_offers_the_servers_styles_matching_what_is_typed(
    env: BotEnv,
) -> None:
    w = env.world
    for name in ("Noir", "ink-wash", "Neon_2"):
        await add(env, name, f"{name} words")

    async def offered(typed: str, command: str = "imagine", **kw: Any) -> list[tuple[str, str]]:
        options = {"prompt": "x", "style": typed} if command == "imagine" else {"name": typed}
        focused = "style" if command == "imagine" else "name"
        ac = await env.fake.autocomplete(
            command,
            options,
            focused,
            user=kw.get("user", w.alice),
            channel=kw.get("channel", w.general),
        )
        await env.fake.wait_for_ack(ac)
        return [(c["name"], c["value"]) for c in ac.choices or []]

    assert await offered("") == [("ink-wash", "ink-wash"), ("Neon_2", "neon_2"), ("Noir", "noir")]
    assert await offered("N") == [("ink-wash", "ink-wash"), ("Neon_2", "neon_2"), ("Noir", "noir")]
    assert await offered("NO") == [("Noir", "noir")]
    assert await offered("sepia") == []
    assert await offered("ink", "wanadmin styles remove", user=w.admin) == [
        ("ink-wash", "ink-wash")
    ]
    assert await offered("", channel=env.fake.open_dm(w.alice)) == []  # styles are a server's


async def test_unknown_styles_and_direct_messages_are_refused_in_words(env: BotEnv) -> None:
    w = env.world
    assert await refused(env, {"prompt": "a cat", "style": "noir"}) == (
        "There is no style `noir` here: this server has no styles yet. Admins add them with"
        " /wanadmin styles add."
    )
    await add(env, "Noir", "in film noir style")
    await add(env, "ink", "ink wash")
    assert await refused(env, {"prompt": "a cat", "style": "sepia"}) == (
        "There is no style `sepia` here. Choose one of: ink, Noir."
    )
    li = new_member(env, "li-styles", locale="zh-CN")
    assert await refused(env, {"prompt": "一只猫", "style": "sepia"}, user=li, locale="zh-CN") == (
        "这里没有名为 `sepia` 的风格。可选：ink, Noir。"
    )
    dm = env.fake.open_dm(w.alice)
    assert await refused(env, {"prompt": "a cat", "style": "noir"}, channel=dm) == (
        "Styles belong to servers: choose a style in a server's channel, not in direct messages."
    )


# --- admins: add, replace, list, remove; refusals; who may --------------------------------------


async def test_bad_names_and_values_are_refused_in_words(env: BotEnv) -> None:
    cases = [
        (
            {"name": "film noir"},
            "`film noir` can't be a style's name: use 1 to 32 letters, digits, - or _ (no spaces).",
        ),
        (  # a client that ignores the schema's lengths
            {"suffix": "s" * 301},
            "The style's words are 301 characters; at most 300 are allowed, so that prompts still"
            " fit. Shorten them.",
        ),
        (
            {"negative_prompt": "n" * 501},
            "The style's negative prompt is 501 characters; at most 500 are allowed. Shorten it.",
        ),
        (
            {"model": "wan2.5-i2i-preview"},
            f"`wan2.5-i2i-preview` is not a text-to-image model. Choose one of: {T2I}.",
        ),
        ({"suffix": "   "}, "A style needs words to add to prompts."),
    ]
    for options, words in cases:
        fields = {"name": "noir", "suffix": "in film noir style", **options}
        assert await admin(env, "wanadmin styles add", fields) == words
    text = await admin(
        env,
        "wanadmin styles add",
        {"name": "黑 白", "suffix": "x", "model": "midjourney"},
        locale="zh-CN",
    )
    assert text.split("\n") == [
        "`黑 白` 不能作为风格名称：请使用 1 到 32 个字母、数字、- 或 _（不含空格）。",
        f"`midjourney` 不是文生图模型。可选：{T2I}。",
    ]
    assert await styles(env) == []


async def test_replace_list_and_remove(env: BotEnv) -> None:
    await add(env, "Noir", "in film noir style", negative_prompt="colour")
    await add(env, "水墨", "水墨画风格", model="wan2.2-t2i-flash")
    assert await add(env, "NOIR", "high *contrast* noir") == (
        "Style replaced; members choose it with `/imagine style:noir`.\n"
        "**NOIR**: high \\*contrast\\* noir\n"
        "It was: **Noir**: in film noir style · without: colour"
    )
    inter = await ask(env, "wanadmin styles list", {}, user=env.world.admin)
    [answer] = replies(inter)
    assert answer.ephemeral
    embed = answer.embeds[0]
    assert embed["title"] == "Styles of this server"
    assert embed["description"].split("\n") == [
        "**NOIR**: high \\*contrast\\* noir",
        "**水墨**: 水墨画风格 · `wan2.2-t2i-flash`",
    ]
    assert await admin(env, "wanadmin styles remove", {"name": "noir"}) == (
        "Style removed: **NOIR**: high \\*contrast\\* noir"
    )
    assert await admin(env, "wanadmin styles remove", {"name": "noir"}) == (
        "There is no style `noir` here. Choose one of: 水墨."
    )
    assert await admin(env, "wanadmin styles remove", {"name": "水墨"}, locale="zh-CN") == (
        "已删除风格：**水墨**: 水墨画风格 · `wan2.2-t2i-flash`"
    )
    assert await admin(env, "wanadmin styles list", {}) == (
        "This server has no styles yet. Admins add them with /wanadmin styles add."
    )


async def test_a_server_has_at_most_25_styles(env: BotEnv) -> None:
    for k in range(25):
        await add(env, f"s{k}", f"words {k}")
    assert await add(env, "one-more", "words") == (
        "This server already has 25 styles, the most it can have. Remove one first with"
        " /wanadmin styles remove."
    )
    inter = await ask(env, "wanadmin styles list", {}, user=env.world.admin)
    description = replies(inter)[-1].embeds[0]["description"]
    assert len(description.split("\n")) == 25 and len(description) <= 4096


async def test_non_admins_cannot_change_or_list_styles(env: BotEnv) -> None:
    w = env.world
    for name, options in (
        ("wanadmin styles add", {"name": "noir", "suffix": "noir"}),
        ("wanadmin styles remove", {"name": "noir"}),
        ("wanadmin styles list", {}),
    ):
        with pytest.raises(PermissionError, match="pass force=True"):
            await env.fake.slash(name, options, user=w.alice, channel=w.general)
        for user in (w.alice, w.moderator):  # even where a server overrides the permissions
            inter = await ask(env, name, options, user=user, force=True)
            assert reply_text(inter) == NOT_ALLOWED
    assert await styles(env) == []


async def test_style_changes_are_audited_and_posted_to_the_audit_channel(env: BotEnv) -> None:
    w = env.world
    await set_value(env, "audit_channel", f"<#{w.art.id}>")
    await add(env, "my_style", "in <@&1> style", negative_prompt="colour")
    await add(env, "my_style", "plain")
    await admin(env, "wanadmin styles remove", {"name": "MY_STYLE"})

    async def posted() -> list[str]:
        for _ in range(500):
            posts = [m.content for m in env.fake.messages_in(w.art.id) if "style:" in m.content]
            if len(posts) >= 3:
                return posts
            await asyncio.sleep(0.01)
        raise AssertionError("the audit posts did not come")

    user = f"<@{w.admin.id}>"
    assert await posted() == [
        f"⚙️ {user} changed style:my\\_style: — → in \\<\\@&1\\> style \\| −colour",
        f"⚙️ {user} changed style:my\\_style: in \\<\\@&1\\> style \\| −colour → plain",
        f"⚙️ {user} changed style:my\\_style: plain → —",
    ]
    inter = await ask(env, "wanadmin audit", {}, user=w.admin)
    lines = replies(inter)[-1].embeds[0]["description"].split("\n")
    assert [line.split(":R> ", 1)[1] for line in lines[:3]] == [
        f"{user} `style:my_style`: plain → —",
        f"{user} `style:my_style`: in \\<\\@&1\\> style \\| −colour → plain",
        f"{user} `style:my_style`: — → in \\<\\@&1\\> style \\| −colour",
    ]


async def test_styles_carry_chinese_localizations(env: BotEnv) -> None:
    commands = {c["name"]: c for c in env.fake.guild_commands[env.world.guild.id]}
    group = next(o for o in commands["wanadmin"]["options"] if o["name"] == "styles")
    assert group["name_localizations"]["zh-CN"] == "风格"
    assert {o["name"]: o["name_localizations"]["zh-CN"] for o in group["options"]} == {
        "add": "添加",
        "remove": "删除",
        "list": "列表",
    }
    add_options = next(o for o in group["options"] if o["name"] == "add")["options"]
    assert [(o["name"], o["name_localizations"]["zh-CN"]) for o in add_options] == [
        ("name", "名称"),
        ("suffix", "附加文字"),
        ("negative_prompt", "反向提示词"),
        ("model", "模型"),
    ]
    style = next(o for o in commands["imagine"]["options"] if o["name"] == "style")
    assert style["name_localizations"]["zh-CN"] == "风格" and style["autocomplete"]


# --- usage by kind -------------------------------------------------------------------------------


async def test_usage_tells_images_and_cost_by_kind(env: BotEnv) -> None:
    w = env.world
    member = new_member(env, "two-kinds")
    _, job = await imagine(env, "two lanterns", user=member, n=2)
    assert job.state is JobState.DONE

    async def edit() -> Any:
        inter = await env.fake.slash(
            "edit",
            {"prompt": "make it night"},
            user=member,
            channel=w.general,
            attachments=[("in.png", png())],
        )
        await env.fake.wait_for_ack(inter)
        return inter

    _, job = await launch(env, edit())
    assert (job.state, job.kind) == (JobState.DONE, Kind.EDIT)

    for locale, lines in (
        (
            "en-US",
            [
                "3 images · 2 done, 0 failed, 0 cancelled · about 0.70 USD",
                "**By kind**",
                "text to image: 2 · 0.50 USD",
                "edit: 1 · 0.20 USD",
            ],
        ),
        (
            "zh-CN",
            [
                "3 张图片 · 完成 2、失败 0、取消 0 · 约 0.70 USD",
                "**按类型**",
                "文生图：2 · 0.50 USD",
                "改图：1 · 0.20 USD",
            ],
        ),
    ):
        inter = await ask(
            env, "wanadmin usage", {"user": member, "period": "today"}, user=w.admin, locale=locale
        )
        [answer] = [m for m in replies(inter) if m.embeds]
        assert answer.embeds[0]["description"].split("\n") == lines
