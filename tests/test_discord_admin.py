"""Server admins end to end: `/wanadmin` through the fake Discord against the real bot.

Permission refusals (also when a server overrides the command's permissions), every setting
with a good and a bad value, role overrides as `/quota` and `/imagine` see them, the budget
refusing a job, the usage report and its chart, the audit trail and audit channel, and the
Chinese names of it all. One bot serves the module; each test undoes its settings.
"""

from __future__ import annotations

import asyncio
import io
import re
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import pytest_asyncio
from PIL import Image

from bot.accounting.policy import SETTINGS
from bot.accounting.quota import next_month_start
from bot.dashscope.models import MODELS
from bot.jobs.model import JobState
from tests.backends import execute
from tests.discord_env import BotEnv, bot_env, imagine, replies, reply_text
from tests.fakediscord.constants import Perm
from tests.fakediscord.payloads import role as role_payload

pytestmark = pytest.mark.asyncio(loop_scope="module")

PRICE = 0.25  # wan2.6-t2i, from PRICES
CURRENCY = "USD"
NOT_ALLOWED = "Only members with the Manage Server permission can change the bot's settings."
NOT_ALLOWED_ZH = "只有拥有“管理服务器”权限的成员才能修改机器人设置。"
SUBCOMMANDS: list[tuple[str, dict[str, Any]]] = [
    ("wanadmin limits show", {}),
    ("wanadmin limits set", {"setting": "max_n", "value": "1"}),
    ("wanadmin limits reset", {"setting": "images_per_user_day"}),
    ("wanadmin audit", {}),
    ("wanadmin usage", {}),
    ("wanadmin usage", {"period": "7d"}),
]


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def env(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[BotEnv]:
    async with bot_env(
        tmp_path_factory.mktemp("admin"),
        prices=f"wan2.6-t2i={PRICE}",
        currency=CURRENCY,
        limit_images_per_guild_day=0,
    ) as env:
        yield env


@pytest.fixture(autouse=True)
def clean(env: BotEnv) -> Iterator[None]:
    yield
    env.check_clean()


@pytest_asyncio.fixture(loop_scope="module", autouse=True)
async def undo_settings(env: BotEnv) -> AsyncIterator[None]:
    """Each test starts from the bot's defaults (the audit log is kept)."""
    yield
    assert env.bot is not None
    await execute(env.bot.engine.db, "DELETE FROM limit_settings")


async def ask(
    env: BotEnv,
    name: str,
    options: dict[str, Any] | None = None,
    *,
    user: Any,
    channel: Any = None,
    **kwargs: Any,
) -> Any:
    """Run a slash command and wait for its answer (not for everything the bot does after:
    `fake.settle` costs gateway frames, of which discord.py sends only 110 a minute)."""
    inter = await env.fake.slash(
        name, options, user=user, channel=channel or env.world.general, **kwargs
    )
    await env.fake.wait_for_ack(inter)
    deadline = time.monotonic() + 10
    while not any(not m.loading for m in replies(inter)):
        assert time.monotonic() < deadline, f"/{name} got no answer"
        await asyncio.sleep(0.01)
    return inter


async def until(predicate: Any, what: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


def new_member(env: BotEnv, name: str, roles: tuple[Any, ...] = (), locale: str = "en-US") -> Any:
    user = env.fake.create_user(name, locale=locale)
    env.fake.add_member(env.world.guild, user, list(roles))
    return user


async def new_role(env: BotEnv, name: str, permissions: int = 0) -> Any:
    """A role created while the bot is connected: Discord tells it with GUILD_ROLE_CREATE."""
    guild = env.world.guild
    role = env.fake.create_role(guild, name, permissions)
    await env.fake.dispatch(
        "GUILD_ROLE_CREATE", {"guild_id": str(guild.id), "role": role_payload(role)}
    )
    assert env.bot is not None
    bot_guild = env.bot.get_guild(guild.id)
    assert bot_guild is not None
    await until(lambda: bot_guild.get_role(role.id) is not None, f"role {name}")
    return role


async def new_channel(env: BotEnv, name: str, **kwargs: Any) -> Any:
    channel = env.fake.create_text_channel(env.world.guild, name, **kwargs)
    await env.fake.dispatch("CHANNEL_CREATE", env.fake.payloads.channel(channel))
    assert env.bot is not None
    bot = env.bot
    await until(lambda: bot.get_channel(channel.id) is not None, f"channel {name}")
    return channel


async def admin(env: BotEnv, name: str, options: dict[str, Any], **kw: Any) -> str:
    """Run a /wanadmin subcommand as the admin; the text of the (ephemeral) answer."""
    inter = await ask(env, name, options, user=kw.pop("user", env.world.admin), **kw)
    answer = replies(inter)[-1]
    assert answer.ephemeral
    return answer.content


async def set_value(env: BotEnv, setting: str, value: str, role: Any = None, **kw: Any) -> str:
    options: dict[str, Any] = {"setting": setting, "value": value}
    if role is not None:
        options["role"] = role
    return await admin(env, "wanadmin limits set", options, **kw)


async def settings_rows(env: BotEnv) -> list[tuple[int, str, str]]:
    assert env.bot is not None
    rows = await env.bot.engine.db.fetchall(
        "SELECT role_id, setting, value FROM limit_settings ORDER BY setting, role_id"
    )
    return [(r["role_id"], r["setting"], r["value"]) for r in rows]


async def audit_count(env: BotEnv) -> int:
    assert env.bot is not None
    row = await env.bot.engine.db.fetchone("SELECT COUNT(*) AS k FROM audit_log")
    assert row is not None
    return int(row["k"])


def quota_lines(inter: Any) -> list[str]:
    [answer] = replies(inter)
    assert answer.ephemeral
    return answer.embeds[0]["description"].split("\n")


# --- who may use /wanadmin --------------------------------------------------------------------


async def test_wanadmin_is_hidden_from_members_without_manage_server(env: BotEnv) -> None:
    [command] = [c for c in env.fake.guild_commands[env.world.guild.id] if c["name"] == "wanadmin"]
    assert int(command["default_member_permissions"]) == Perm.MANAGE_GUILD
    assert command.get("contexts") in (None, [0])  # a server command only
    for name, options in SUBCOMMANDS:
        with pytest.raises(PermissionError, match="pass force=True"):
            await env.fake.slash(name, options, user=env.world.alice, channel=env.world.general)


@pytest.mark.parametrize(("name", "options"), SUBCOMMANDS)
async def test_non_admins_are_refused_even_when_permissions_are_overridden(
    env: BotEnv, name: str, options: dict[str, Any]
) -> None:
    w = env.world
    before = (await settings_rows(env), await audit_count(env))
    for user in (w.alice, w.moderator):  # MANAGE_MESSAGES is not enough
        inter = await ask(env, name, options, user=user, force=True)
        [answer] = replies(inter)
        assert (answer.content, answer.ephemeral, answer.embeds, answer.attachments) == (
            NOT_ALLOWED,
            True,
            [],
            [],
        )
    zh = new_member(env, f"zh-{len(env.fake.interactions)}", locale="zh-CN")
    inter = await ask(env, name, options, user=zh, force=True)
    assert reply_text(inter) == NOT_ALLOWED_ZH
    assert (await settings_rows(env), await audit_count(env)) == before


async def test_manage_server_administrator_and_owner_are_let_in(env: BotEnv) -> None:
    w = env.world
    boss = await new_role(env, "Boss", Perm.ADMINISTRATOR)
    chief = new_member(env, "chief", (boss,))
    for user in (w.admin, chief, w.owner):
        text = await set_value(env, "max_n", "3", user=user)
        assert text.startswith("max_n: "), text
        assert text.endswith(" → 3.")


# --- every setting: a good and a bad value ----------------------------------------------------


def setting_cases(env: BotEnv) -> dict[str, tuple[str, str, str, str]]:
    """setting → (good value, as stored, bad value, what the refusal says is expected)."""
    w = env.world
    models = ", ".join(MODELS)
    return {
        "images_per_user_day": (
            "40",
            "40",
            "forty",
            "a whole number from 0 to 100000 (0 = no limit)",
        ),
        "concurrent_jobs_per_user": ("3", "3", "-1", "a whole number from 0 to 100 (0 = no limit)"),
        "cooldown_seconds": ("30", "30", "1.5", "a whole number from 0 to 86400"),
        "images_per_guild_day": ("500", "500", "2000000", "a whole number from 0 to 1000000"),
        "monthly_budget": ("25.5", "25.50", "nan", "an amount from 0 to 10000000 (0 = no budget)"),
        "max_n": ("2", "2", "8", "a whole number from 1 to 4"),
        "allowed_models": (
            "wan2.6-t2i, wan2.2-t2i-flash",
            "wan2.6-t2i,wan2.2-t2i-flash",
            "midjourney",
            f"model names from: {models}",
        ),
        "default_model": (
            "wan2.2-t2i-flash",
            "wan2.2-t2i-flash",
            "wan2.6-t2i wan2.2-t2i-flash",
            f"one model name from: {models}",
        ),
        "default_size": (
            "1024x1024",
            "1024*1024",
            "64*64",
            "a size some text-to-image model accepts, e.g. 1280*1280",
        ),
        "prompt_extend": ("off", "off", "sometimes", "one of member | on | off"),
        "watermark": ("on", "on", "true", "one of member | on | off"),
        "allowed_channels": (
            f"<#{w.general.id}> <#{w.art.id}>",
            f"{w.general.id},{w.art.id}",
            "#general",
            "channel mentions or ids, e.g. #art",
        ),
        "nsfw_channels": ("never", "never", "no", "one of any | only | never"),
        "audit_channel": (
            f"<#{w.art.id}>",
            str(w.art.id),
            f"<#{w.art.id}>,<#{w.general.id}>",
            "one channel mention or id, e.g. #art",
        ),
        "exempt": ("yes", "1", "perhaps", "yes or no"),
        "allow_video": ("no", "0", "maybe", "yes or no"),
        "video_seconds_per_user_day": (
            "60",
            "60",
            "-1",
            "a whole number from 0 to 100000 (0 = no limit)",
        ),
        "video_seconds_per_guild_day": (
            "600",
            "600",
            "lots",
            "a whole number from 0 to 1000000",
        ),
    }


def shown_cases(env: BotEnv) -> dict[str, str]:
    """How answers show a stored value where it differs from the stored text: channel ids as
    mentions, which Discord shows as the channels' names."""
    w = env.world
    return {
        "allowed_channels": f"<#{w.general.id}>, <#{w.art.id}>",
        "audit_channel": f"<#{w.art.id}>",
    }


@pytest.mark.parametrize("setting", list(SETTINGS))
async def test_every_setting_with_a_good_and_a_bad_value(env: BotEnv, setting: str) -> None:
    good, stored, bad, expected = setting_cases(env)[setting]
    shown = shown_cases(env).get(setting, stored)
    role = env.world.mod_role if SETTINGS[setting].role else None
    scope = " [@Moderator]" if role else ""

    text = await set_value(env, setting, bad, role)
    assert text == f"`{bad}` is not a valid value for {setting}: expected {expected}."
    assert await settings_rows(env) == []

    text = await set_value(env, setting, good, role)
    assert text == f"{setting}{scope}: — → {shown}."
    role_id = role.id if role else 0
    assert await settings_rows(env) == [(role_id, setting, stored)]
    # Setting it again says what it was.
    assert await set_value(env, setting, good, role) == f"{setting}{scope}: {shown} → {shown}."

    text = await admin(
        env, "wanadmin limits reset", {"setting": setting, **({"role": role} if role else {})}
    )
    follows = "the server's value" if role else "the bot's default"
    assert text == f"{setting}{scope} reset (was {shown}); it now follows {follows}."
    assert await settings_rows(env) == []


async def test_scope_mistakes_and_unknown_settings_are_explained(env: BotEnv) -> None:
    w = env.world
    assert await set_value(env, "monthly_budget", "5", w.mod_role) == (
        "monthly_budget applies to the whole server; it can't be set for a role."
    )
    assert await set_value(env, "exempt", "yes") == (
        "exempt is set for a role only: choose the role."
    )
    assert await set_value(env, "images_per_month", "5") == (
        f"There is no setting `images_per_month`. Settings: {', '.join(SETTINGS)}."
    )
    text = await admin(env, "wanadmin limits reset", {"setting": "max_n"})
    assert text == "max_n reset (was —); it now follows the bot's default."
    assert await settings_rows(env) == []


async def test_a_value_for_everyone_is_the_servers_value(env: BotEnv) -> None:
    everyone = env.world.guild.everyone
    assert await set_value(env, "max_n", "2", everyone) == "max_n: — → 2."
    assert await settings_rows(env) == [(0, "max_n", "2")]
    text = await admin(env, "wanadmin limits reset", {"setting": "max_n", "role": everyone})
    assert text == "max_n reset (was 2); it now follows the bot's default."
    assert await set_value(env, "exempt", "yes", everyone) == (
        "exempt is set for a role only: choose the role."
    )
    assert await settings_rows(env) == []


async def test_chinese_admin_gets_chinese_replies(env: BotEnv) -> None:
    w = env.world
    kw = {"locale": "zh-CN"}
    assert await set_value(env, "max_n", "9", **kw) == (
        "`9` 不是 max_n 的有效值：应为 1 到 4 之间的整数。"
    )
    assert await set_value(env, "monthly_budget", "abc", **kw) == (
        "`abc` 不是 monthly_budget 的有效值：应为 0 到 10000000 之间的金额（0 = 不设预算）。"
    )
    assert await set_value(env, "max_n", "2", w.mod_role, **kw) == "max_n [@Moderator]：— → 2。"
    text = await admin(env, "wanadmin limits reset", {"setting": "max_n", "role": w.mod_role}, **kw)
    assert text == "max_n [@Moderator] 已重置（原为 2），现在沿用服务器设置。"
    inter = await ask(env, "wanadmin limits show", {}, user=w.admin, locale="zh-CN")
    embed = replies(inter)[-1].embeds[0]
    assert embed["title"] == "本服务器的设置"
    assert "`max_n` = **4** (机器人默认值)" in embed["description"].split("\n")
    text = await set_value(env, "allowed_channels", f"{w.art.id}", **kw)
    assert text == f"allowed_channels：— → <#{w.art.id}>。"


async def test_setting_autocomplete(env: BotEnv) -> None:
    w = env.world
    for command in ("wanadmin limits set", "wanadmin limits reset"):
        ac = await env.fake.autocomplete(
            command, {"setting": "IMAGES"}, "setting", user=w.admin, channel=w.general
        )
        await env.fake.wait_for_ack(ac)
        assert [(c["name"], c["value"]) for c in ac.choices or []] == [
            ("images_per_user_day", "images_per_user_day"),
            ("images_per_guild_day", "images_per_guild_day"),
        ]
    ac = await env.fake.autocomplete(
        "wanadmin limits set", {"setting": ""}, "setting", user=w.admin, channel=w.general
    )
    await env.fake.wait_for_ack(ac)
    assert [c["value"] for c in ac.choices or []] == list(SETTINGS)


async def test_limits_show_lists_every_setting_its_value_and_source(env: BotEnv) -> None:
    w = env.world
    await set_value(env, "images_per_user_day", "40")
    await set_value(env, "images_per_user_day", "100", w.mod_role)
    await set_value(env, "cooldown_seconds", "0", w.admin_role)
    await set_value(env, "exempt", "yes", w.admin_role)
    await set_value(env, "allowed_channels", f"<#{w.art.id}>")
    inter = await ask(env, "wanadmin limits show", {}, user=w.admin)
    [answer] = replies(inter)
    embed = answer.embeds[0]
    assert embed["title"] == "Settings of this server"
    assert embed["description"].split("\n") == [
        "`images_per_user_day` = **40** (the server's value)",
        f"  ↳ <@&{w.mod_role.id}>: **100**",
        "`concurrent_jobs_per_user` = **0** (the bot's default)",
        "`cooldown_seconds` = **0** (the bot's default)",
        f"  ↳ <@&{w.admin_role.id}>: **0**",
        "`images_per_guild_day` = **0** (the bot's default)",
        "`monthly_budget` = **0** (the bot's default)",
        "`max_n` = **4** (the bot's default)",
        "`allowed_models` = **—** (the bot's default)",
        "`default_model` = **—** (the bot's default)",
        "`default_size` = **—** (the bot's default)",
        "`prompt_extend` = **member** (the bot's default)",
        "`watermark` = **member** (the bot's default)",
        f"`allowed_channels` = **<#{w.art.id}>** (the server's value)",
        "`nsfw_channels` = **any** (the bot's default)",
        "`audit_channel` = **—** (the bot's default)",
        "`exempt` = **0** (the bot's default)",
        f"  ↳ <@&{w.admin_role.id}>: **1**",
        "`allow_video` = **1** (the bot's default)",
        "`video_seconds_per_user_day` = **30** (the bot's default)",
        "`video_seconds_per_guild_day` = **300** (the bot's default)",
    ]


# --- what members see --------------------------------------------------------------------------


async def test_role_overrides_are_what_quota_and_imagine_apply(env: BotEnv) -> None:
    patron = await new_role(env, "Patron")
    newcomer = await new_role(env, "Newcomer")
    staff = await new_role(env, "Staff")
    await set_value(env, "images_per_user_day", "10")
    await set_value(env, "images_per_guild_day", "1000")
    await set_value(env, "images_per_user_day", "100", patron)
    await set_value(env, "images_per_user_day", "3", newcomer)
    await set_value(env, "cooldown_seconds", "600", newcomer)
    await set_value(env, "concurrent_jobs_per_user", "0", patron)
    await set_value(env, "exempt", "yes", staff)

    both = new_member(env, "both", (patron, newcomer))
    fresh = new_member(env, "fresh", (newcomer,))
    helper = new_member(env, "helper", (staff, newcomer))
    plain = new_member(env, "plain")

    lines = quota_lines(await ask(env, "quota", user=both))
    assert lines[:3] == [
        "Images in the last 24 h: 0 of 100",  # the most generous role wins
        "Jobs in progress: 0 of no limit",
        "This server, last 24 h: " + lines[2].removeprefix("This server, last 24 h: "),
    ]
    assert lines[2].endswith(" of 1000")
    assert quota_lines(await ask(env, "quota", user=fresh))[:2] == [
        "Images in the last 24 h: 0 of 3",
        "Jobs in progress: 0 of no limit",
    ]
    assert quota_lines(await ask(env, "quota", user=plain))[0] == (
        "Images in the last 24 h: 0 of 10"
    )
    helper_lines = quota_lines(await ask(env, "quota", user=helper))
    assert helper_lines[:2] == [
        "Images in the last 24 h: 0 of no limit",
        "Jobs in progress: 0 of no limit",
    ]
    assert helper_lines[-1] == "One of your roles is exempt from the per-member limits."

    # /imagine reserves with the member's roles: the newcomer's 3 images, then the cooldown.
    _, job = await imagine(env, "three small boats", user=fresh, n=3)
    assert job.state is JobState.DONE
    inter = await ask(env, "imagine", {"prompt": "one more boat"}, user=fresh)
    assert reply_text(inter).startswith("Slow down a little: one job every 600 s.")
    await set_value(env, "cooldown_seconds", "0", newcomer)
    inter = await ask(env, "imagine", {"prompt": "one more boat"}, user=fresh)
    assert reply_text(inter).startswith(
        "You have used 3 of your 3 images for the last 24 hours. More free up <t:"
    )
    lines = quota_lines(await ask(env, "quota", user=fresh))
    assert lines[0] == "Images in the last 24 h: 3 of 3"
    assert lines[3].startswith("Next image frees <t:")
    # The exempt helper is not held by the newcomer's cooldown or count.
    for prompt in ("a kite", "a second kite"):
        _, job = await imagine(env, prompt, user=helper, n=4)
        assert job.state is JobState.DONE
    # The server-wide rules still apply to everyone.
    await set_value(env, "max_n", "2")
    inter = await ask(env, "imagine", {"prompt": "four kites", "n": 4}, user=helper)
    assert reply_text(inter) == "You can make at most 2 image(s) at a time here."
    await set_value(env, "max_n", "4", patron)
    _, job = await imagine(env, "four more kites", user=both, n=4)
    assert job.n == 4


async def test_quota_says_when_images_free_only_under_limits_that_are_set(env: BotEnv) -> None:
    staff = await new_role(env, "Crew")
    await set_value(env, "exempt", "yes", staff)
    await set_value(env, "images_per_user_day", "0")  # the server's limit is 0 too (no limit)
    free = new_member(env, "free")
    crew = new_member(env, "crew", (staff,))
    for member in (free, crew):
        _, job = await imagine(env, "an open field", user=member)
        assert job.state is JobState.DONE
        lines = quota_lines(await ask(env, "quota", user=member))
        assert lines[0] == "Images in the last 24 h: 1 of no limit"
        assert lines[2].endswith(" of no limit")
        assert not [line for line in lines if "frees" in line or "Cooldown" in line], lines

    # Set, each limit says when it frees; the exempt member's per-member ones stay lifted.
    await set_value(env, "images_per_user_day", "10")
    await set_value(env, "cooldown_seconds", "600")
    await set_value(env, "images_per_guild_day", "1000")
    lines = quota_lines(await ask(env, "quota", user=free))
    assert [line.split(" <t:")[0] for line in lines if "<t:" in line] == [
        "Next image frees",
        "Cooldown ends",
        "The server's next image frees",
    ]
    lines = quota_lines(await ask(env, "quota", user=crew))
    assert [line.split(" <t:")[0] for line in lines if "<t:" in line] == [
        "The server's next image frees"
    ]


async def test_channel_nsfw_and_model_rules_in_imagine(env: BotEnv) -> None:
    w = env.world
    member = new_member(env, "rules")
    nsfw = await new_channel(env, "after-dark", nsfw=True)

    await set_value(env, "allowed_channels", f"<#{w.art.id}>")
    inter = await ask(env, "imagine", {"prompt": "a fern"}, user=member)
    assert reply_text(inter) == (
        f"Images can't be made in this channel here. Use one of: <#{w.art.id}>."
    )
    _, job = await imagine(env, "a fern in art", user=member, channel=w.art)
    assert job.state is JobState.DONE
    # A thread of an allowed channel is allowed.
    assert job.thread_id is not None
    thread = env.fake.thread(job.thread_id)
    _, job = await imagine(env, "a fern in a thread", user=member, channel=thread)
    assert job.state is JobState.DONE and job.channel_id == thread.id
    await admin(env, "wanadmin limits reset", {"setting": "allowed_channels"})

    await set_value(env, "nsfw_channels", "only")
    inter = await ask(env, "imagine", {"prompt": "a fern"}, user=member)
    assert reply_text(inter) == (
        "This server allows image generation only in age-restricted (NSFW) channels."
    )
    _, job = await imagine(env, "a fern after dark", user=member, channel=nsfw)
    assert job.state is JobState.DONE

    await set_value(env, "allowed_models", "wan2.2-t2i-flash")
    inter = await ask(
        env, "imagine", {"prompt": "a fern", "model": "wan2.6-t2i"}, user=member, channel=nsfw
    )
    assert reply_text(inter) == (
        "This server does not allow `wan2.6-t2i`. Allowed: wan2.2-t2i-flash."
    )
    # Without a model of their own, members get the first allowed one.
    _, job = await imagine(env, "a fern, any model", user=member, channel=nsfw)
    assert job.model == "wan2.2-t2i-flash"
    await set_value(env, "default_model", "wan2.2-t2i-flash")
    await set_value(env, "default_size", "720*1280")
    await set_value(env, "watermark", "on")
    _, job = await imagine(env, "a fern, defaults", user=member, channel=nsfw, watermark=False)
    assert (job.model, job.params.size, job.params.watermark) == (
        "wan2.2-t2i-flash",
        "720*1280",
        True,
    )


async def test_show_obeys_the_channel_rules_where_it_would_post(env: BotEnv) -> None:
    """/show posts only where /imagine may make images: an age-restricted job stays out of
    ordinary channels, and a channel closed to /imagine gets no images (nor a Reroll)."""
    w = env.world
    member = new_member(env, "shower")
    nsfw = await new_channel(env, "late-night", nsfw=True)
    await set_value(env, "nsfw_channels", "only")
    _, job = await imagine(env, "a moth at night", user=member, channel=nsfw)
    assert job.state is JobState.DONE

    def public_images(channel: Any) -> int:
        return sum(
            len(m.attachments)
            for m in env.fake.messages_in(channel, include_ephemeral=False, include_deleted=True)
        )

    before = public_images(w.general)
    inter = await ask(env, "show", {"job": job.id}, user=member, channel=w.general)
    [refusal] = replies(inter)
    assert (refusal.ephemeral, refusal.attachments) == (True, [])
    assert refusal.content == (
        "This server shows images only in age-restricted (NSFW) channels. Use /show in one of those."
    )
    # The same for a moderator, and in Chinese.
    inter = await ask(env, "show", {"job": job.id}, user=w.moderator, locale="zh-CN")
    assert reply_text(inter) == (
        "本服务器只允许在年龄限制（NSFW）频道中展示图片。请在这类频道中使用 /show。"
    )
    assert public_images(w.general) == before
    inter = await ask(env, "show", {"job": job.id}, user=member, channel=nsfw)
    assert replies(inter)[-1].attachments and not replies(inter)[-1].ephemeral

    await set_value(env, "nsfw_channels", "never")
    inter = await ask(env, "show", {"job": job.id}, user=member, channel=nsfw)
    assert reply_text(inter) == (
        "This server does not show images in age-restricted (NSFW) channels."
        " Use /show in another channel."
    )
    await admin(env, "wanadmin limits reset", {"setting": "nsfw_channels"})

    await set_value(env, "allowed_channels", f"<#{w.art.id}>")
    for channel in (w.general, nsfw):
        inter = await ask(env, "show", {"job": job.id}, user=member, channel=channel)
        [refusal] = replies(inter)
        assert (refusal.ephemeral, refusal.attachments) == (True, [])
        assert refusal.content == (
            f"Images can't be shown in this channel here. Show them in one of: <#{w.art.id}>."
        )
    # Where it is shown, its Reroll works too: the two rules agree.
    inter = await ask(env, "show", {"job": job.id}, user=member, channel=w.art)
    [repost] = replies(inter)
    assert repost.channel_id == w.art.id and repost.attachments
    click = await env.fake.click(repost, f"wan:job:{job.id}:reroll", user=member)
    await env.fake.wait_for_ack(click)
    again = await env.wait_job(await env.new_job(after=job.id))
    assert again.state is JobState.DONE and again.channel_id == w.art.id


async def test_budget_exhaustion_refuses_imagine_with_what_was_spent(env: BotEnv) -> None:
    assert env.bot is not None
    w = env.world
    member = new_member(env, "spender")
    spent = (await env.bot.engine.quota.standing(member.id, w.guild.id)).spent
    budget = round(spent + 2 * PRICE + 0.1, 2)  # room for two images, not three
    await set_value(env, "monthly_budget", f"{budget}")
    _, job = await imagine(env, "two coins", user=member, n=2)
    assert job.state is JobState.DONE
    spent += 2 * PRICE
    renews = int(next_month_start(time.time()))

    for locale, expected in (
        (
            "en-US",
            f"This server has spent {spent:.2f} of its monthly budget of {budget:.2f}. "
            f"The budget renews <t:{renews}:R>.",
        ),
        (
            "zh-CN",
            f"本服务器本月已用 {spent:.2f}，月度预算为 {budget:.2f}。预算将于<t:{renews}:R>重置。",
        ),
    ):
        before = await env.job_count()
        inter = await ask(env, "imagine", {"prompt": "a third coin"}, user=w.alice, locale=locale)
        assert reply_text(inter) == expected
        assert replies(inter)[-1].ephemeral
        assert await env.job_count() == before  # nothing queued, nothing reserved

    lines = quota_lines(await ask(env, "quota", user=member))
    assert any(
        line.startswith(
            f"This server's monthly budget: {spent:.2f} of {budget:.2f} {CURRENCY} used; it renews <t:"
        )
        for line in lines
    ), lines
    # Raising the budget lets the next one through.
    await set_value(env, "monthly_budget", f"{budget + 1:.2f}")
    _, job = await imagine(env, "a third coin", user=w.alice)
    assert job.state is JobState.DONE


# --- usage report ------------------------------------------------------------------------------


async def test_usage_report_with_a_png_chart(env: BotEnv) -> None:
    w = env.world
    member = new_member(env, "reporter")
    for n in (1, 2):
        _, job = await imagine(env, f"{n} lanterns", user=member, n=n)
        assert job.state is JobState.DONE
    _, failed = await imagine(env, "a lantern sim:moderate-output", user=member)
    assert failed.state is JobState.FAILED

    inter = await ask(env, "wanadmin usage", {"user": member, "period": "today"}, user=w.admin)
    [answer] = [m for m in replies(inter) if m.embeds]
    assert answer.ephemeral
    embed = answer.embeds[0]
    assert embed["title"] == "Usage: today"
    assert embed["description"].split("\n") == [
        "3 images · 2 done, 1 failed, 0 cancelled · about 0.75 USD",
        "**By kind**",
        "text to image: 3 · 0.75 USD",
    ]
    assert embed["image"]["url"] == "attachment://usage.png"
    [attachment] = answer.attachments
    assert attachment.filename == "usage.png"
    with Image.open(io.BytesIO(env.fake.attachment_bytes(attachment.id))) as chart:
        assert chart.format == "PNG" and chart.size == (720, 300)

    inter = await ask(env, "wanadmin usage", {}, user=w.admin)
    [answer] = [m for m in replies(inter) if m.embeds]
    lines = answer.embeds[0]["description"].split("\n")
    assert answer.embeds[0]["title"] == "Usage: this month"
    assert lines[1] == "**By kind**" and lines[2].startswith("text to image: ")
    top = lines.index("**Top members**")
    assert f"<@{member.id}>: 3 · 0.75 {CURRENCY}" in lines[top + 1 :]
    [attachment] = answer.attachments
    with Image.open(io.BytesIO(env.fake.attachment_bytes(attachment.id))) as chart:
        assert chart.format == "PNG"

    inter = await ask(env, "wanadmin usage", {"period": "30d"}, user=w.admin, locale="zh-CN")
    [answer] = [m for m in replies(inter) if m.embeds]
    assert answer.embeds[0]["title"] == "用量：最近 30 天"
    lines = answer.embeds[0]["description"].split("\n")
    assert lines[1] == "**按类型**" and lines[2].startswith("文生图：")
    assert "**用量最多的成员**" in lines


# --- audit trail -------------------------------------------------------------------------------


async def test_audit_lists_changes_and_the_audit_channel_gets_each(env: BotEnv) -> None:
    w = env.world
    log_channel = await new_channel(env, "bot-audit")
    started = time.time()

    await set_value(env, "audit_channel", f"<#{log_channel.id}>")
    await set_value(env, "images_per_user_day", "12")
    await set_value(env, "images_per_user_day", "30", w.mod_role)
    await admin(env, "wanadmin limits reset", {"setting": "images_per_user_day"})
    await set_value(env, "max_n", "oops")  # refused: no change, no post

    await until(lambda: len(env.fake.messages_in(log_channel.id)) >= 4, "the audit posts")
    await env.fake.settle()
    posts = [m.content for m in env.fake.messages_in(log_channel.id)]
    assert posts == [
        f"⚙️ <@{w.admin.id}> changed audit_channel: — → <#{log_channel.id}>",
        f"⚙️ <@{w.admin.id}> changed images_per_user_day: — → 12",
        f"⚙️ <@{w.admin.id}> changed images_per_user_day [@Moderator]: — → 30",
        f"⚙️ <@{w.admin.id}> changed images_per_user_day: 12 → —",
    ]
    for request in env.fake.requests_to("POST", f"/channels/{log_channel.id}/messages"):
        assert request.json["allowed_mentions"]["parse"] == []

    inter = await ask(env, "wanadmin audit", {}, user=w.admin)
    [answer] = replies(inter)
    embed = answer.embeds[0]
    assert embed["title"] == "Latest setting changes"
    lines = embed["description"].split("\n")
    stamps = [int(line.split(":")[1]) for line in lines[:4]]
    assert all(int(started) <= t <= time.time() for t in stamps)
    assert [line.split(":R> ", 1)[1] for line in lines[:4]] == [
        f"<@{w.admin.id}> `images_per_user_day`: 12 → —",
        f"<@{w.admin.id}> `images_per_user_day` [<@&{w.mod_role.id}>]: — → 30",
        f"<@{w.admin.id}> `images_per_user_day`: — → 12",
        f"<@{w.admin.id}> `audit_channel`: — → <#{log_channel.id}>",
    ]
    assert len(lines) <= 15

    # The audit channel's own removal is the last post it gets.
    await admin(env, "wanadmin limits reset", {"setting": "audit_channel"})
    await set_value(env, "max_n", "3")
    await env.fake.settle()
    assert len(env.fake.messages_in(log_channel.id)) == 4


async def test_audit_stays_readable_with_long_values(env: BotEnv) -> None:
    """Allow-lists of many channels, changed often, still fit in one embed."""
    w = env.world
    ids = [str(10**18 + k) for k in range(19)]
    for round_ in range(16):
        value = ",".join(ids[round_ % 3 :])
        assert (await set_value(env, "allowed_channels", value)).startswith("allowed_channels: ")
    inter = await ask(env, "wanadmin audit", {}, user=w.admin)
    [answer] = replies(inter)
    assert answer.embeds, answer.content
    description = answer.embeds[0]["description"]
    assert len(description) <= 4096
    # Long lists are cut between mentions, never inside one (it would show as raw text).
    newest = description.split("\n")[0].split("`allowed_channels`: ", 1)[1]
    old, new = newest.split(" → ")
    assert old == ", ".join(f"<#{i}>" for i in ids[2:5]) + ", …"  # round 14: from the third
    assert new == ", ".join(f"<#{i}>" for i in ids[:3]) + ", …"  # round 15: all 19
    assert all(re.fullmatch(r"<#\d+>", m) for m in re.findall(r"<#[^\s,]*", description))


async def test_an_audit_channel_of_another_server_gets_nothing(env: BotEnv) -> None:
    """An admin can type any channel id; the bot posts only in this server's channels."""
    fake = env.fake
    other = fake.create_guild("Elsewhere", channels=("lobby",))
    await env.join_guild(other)
    lobby = fake.channel(other, "lobby")
    await set_value(env, "audit_channel", str(lobby.id))
    await set_value(env, "max_n", "2")
    await fake.settle()
    assert fake.messages_in(lobby.id) == []


# --- Chinese names -----------------------------------------------------------------------------


async def test_wanadmin_carries_chinese_localizations(env: BotEnv) -> None:
    [command] = [c for c in env.fake.guild_commands[env.world.guild.id] if c["name"] == "wanadmin"]
    assert command["name_localizations"]["zh-CN"] == "万相管理"
    assert command["description_localizations"]["zh-CN"] == "服务器管理：额度、预算、用量与审计记录"
    seen = []

    def walk(options: list[dict[str, Any]], where: str) -> None:
        for option in options:
            here = f"{where} {option['name']}"
            seen.append(here)
            assert option["name_localizations"].get("zh-CN"), here
            assert option["description_localizations"].get("zh-CN"), here
            for choice in option.get("choices") or []:
                assert (choice.get("name_localizations") or {}).get("zh-CN"), (here, choice)
            walk(option.get("options") or [], here)

    walk(command["options"], "wanadmin")
    assert set(seen) >= {
        "wanadmin limits",
        "wanadmin limits show",
        "wanadmin limits set",
        "wanadmin limits set setting",
        "wanadmin limits set value",
        "wanadmin limits set role",
        "wanadmin limits reset",
        "wanadmin audit",
        "wanadmin usage",
        "wanadmin usage user",
        "wanadmin usage period",
    }
    limits = next(o for o in command["options"] if o["name"] == "limits")
    assert limits["name_localizations"]["zh-CN"] == "额度设置"
    usage = next(o for o in command["options"] if o["name"] == "usage")
    period = next(o for o in usage["options"] if o["name"] == "period")
    assert [(c["value"], c["name_localizations"]["zh-CN"]) for c in period["choices"]] == [
        ("today", "今天"),
        ("7d", "最近 7 天"),
        ("30d", "最近 30 天"),
        ("this month", "本月"),
    ]
