"""Failed checks are answered in words, in the member's language, by the tree's error handler.

The bot's own commands use two checks (the `/wanadmin` group's and `/wansync`'s owner check,
covered in test_authorization.py); discord.py offers more. Probe commands with each of
discord.py's checks are added to the running bot's tree and synced to the fake Discord, so every
kind of `CheckFailure` goes the way a real one would: interaction, check, `WanTree.on_error`.
Probes without a check of their own are added to `/wanadmin` and `/wanadmin limits` too: the
group checks every command in it.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import discord
import pytest
import pytest_asyncio
from discord import app_commands

from bot.discord_ui.checks import owner_only
from tests.discord_env import BotEnv, bot_env, invoke, replies

pytestmark = pytest.mark.asyncio(loop_scope="module")


async def ran(interaction: discord.Interaction) -> None:
    await interaction.response.send_message("ran", ephemeral=True)


def probe(name: str, *checks: Any) -> app_commands.Command[Any, Any, None]:
    command: app_commands.Command[Any, Any, None] = app_commands.Command(
        name=name, description="A check, for the tests", callback=ran
    )
    for check in checks:
        check(command)
    return command


PROBES = [
    probe("probe-perms", app_commands.checks.has_permissions(manage_messages=True)),
    probe(
        "probe-two-perms",
        app_commands.checks.has_permissions(manage_guild=True, manage_messages=True),
    ),
    probe("probe-odd-perm", app_commands.checks.has_permissions(moderate_members=True)),
    probe("probe-bot-perms", app_commands.checks.bot_has_permissions(attach_files=True)),
    probe("probe-role", app_commands.checks.has_role("Patron")),
    probe("probe-any-role", app_commands.checks.has_any_role(1234, "Patron")),
    probe("probe-cooldown", app_commands.checks.cooldown(1, 600)),
    probe("probe-false", app_commands.check(lambda interaction: False)),
    probe("probe-owner", owner_only),
]


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def env(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[BotEnv]:
    async with bot_env(tmp_path_factory.mktemp("checks"), allow_dms=True) as env:
        assert env.bot is not None
        tree = env.bot.tree
        for command in PROBES:
            tree.add_command(command)
        wanadmin = tree.get_command("wanadmin")
        assert isinstance(wanadmin, app_commands.Group)
        limits = wanadmin.get_command("limits")
        assert isinstance(limits, app_commands.Group)
        for group in (wanadmin, limits):
            group.add_command(probe("probe"))
        await tree.sync()
        await tree.sync(guild=discord.Object(env.world.guild.id))
        yield env


@pytest.fixture(autouse=True)
def clean(env: BotEnv) -> Iterator[None]:
    yield
    env.check_clean()


async def answer(env: BotEnv, name: str, user: Any, **kw: Any) -> str:
    inter = await invoke(env, name, user=user, **kw)
    [reply] = replies(inter)
    assert reply.ephemeral
    return reply.content


async def test_missing_permissions_are_named(env: BotEnv) -> None:
    w = env.world
    assert await answer(env, "probe-perms", w.alice) == (
        "You need the Manage Messages permission(s) here to use this command."
    )
    assert await answer(env, "probe-two-perms", w.alice) == (
        "You need the Manage Server, Manage Messages permission(s) here to use this command."
    )
    assert await answer(env, "probe-two-perms", w.alice, locale="zh-CN") == (
        "你需要在这里拥有以下权限才能使用此命令：管理服务器、管理消息。"
    )
    # A permission without a name in the catalogue reads as discord.py spells it.
    assert await answer(env, "probe-odd-perm", w.alice) == (
        "You need the Moderate Members permission(s) here to use this command."
    )
    assert await answer(env, "probe-perms", w.moderator) == "ran"


async def test_what_the_bot_lacks_in_the_channel_is_named(env: BotEnv) -> None:
    w = env.world
    closed = env.fake.create_text_channel(w.guild, "no-files", can_attach=False)
    await env.fake.dispatch("CHANNEL_CREATE", env.fake.payloads.channel(closed))
    assert await answer(env, "probe-bot-perms", w.alice, channel=closed) == (
        "I can't do that in this channel: I need the Attach Files permission(s) here."
    )
    assert await answer(env, "probe-bot-perms", w.alice, channel=closed, locale="zh-CN") == (
        "我无法在此频道执行该操作：我需要以下权限：附加文件。"
    )
    assert await answer(env, "probe-bot-perms", w.alice) == "ran"


async def test_roles_and_servers_only(env: BotEnv) -> None:
    w = env.world
    assert await answer(env, "probe-role", w.alice) == (
        "You need the @Patron role to use this command."
    )
    assert await answer(env, "probe-any-role", w.alice) == (
        "You need one of these roles to use this command: <@&1234>, @Patron."
    )
    dm = env.fake.open_dm(w.alice)
    assert await answer(env, "probe-role", w.alice, channel=dm) == (
        "This command works in servers only."
    )
    assert await answer(env, "probe-role", w.alice, channel=dm, locale="zh-CN") == (
        "此命令只能在服务器中使用。"
    )


async def test_a_cooldown_says_when_it_frees(env: BotEnv) -> None:
    w = env.world
    assert await answer(env, "probe-cooldown", w.bob) == "ran"
    before = time.time()
    words = await answer(env, "probe-cooldown", w.bob)
    prefix, stamp = "This command is cooling down; you can use it again <t:", words.split("<t:")[1]
    assert words.startswith(prefix) and words.endswith(":R>.")
    assert before + 590 <= int(stamp.split(":")[0]) <= time.time() + 601


async def test_any_other_failed_check_is_answered_too(env: BotEnv) -> None:
    w = env.world
    assert await answer(env, "probe-false", w.admin) == "You can't use this command here."
    assert await answer(env, "probe-false", w.admin, locale="zh-CN") == "你不能在这里使用此命令。"
    assert await answer(env, "probe-owner", w.admin) == "Only the bot's owner can do that."
    assert await answer(env, "probe-owner", w.owner) == "ran"


@pytest.mark.parametrize("name", ["wanadmin probe", "wanadmin limits probe"])
async def test_the_wanadmin_group_checks_every_command_in_it(env: BotEnv, name: str) -> None:
    w = env.world
    refused = "Only members with the Manage Server permission can change the bot's settings."
    for user in (w.alice, w.moderator):
        assert await answer(env, name, user, force=True) == refused
    assert await answer(env, name, w.alice, force=True, locale="zh-CN") == (
        "只有拥有“管理服务器”权限的成员才能修改机器人设置。"
    )
    assert await answer(env, name, w.admin) == "ran"
