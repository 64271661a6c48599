"""Every cog loads into a bot, and the command payloads it would sync obey Discord's rules."""

from __future__ import annotations

import gc
import re
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from typing import Any

import discord
import pytest_asyncio
from discord.ext import commands

from bot.discord_ui.app import COGS, WanTranslator
from bot.i18n import SOURCE, catalogues

# Discord's rule for slash-command and option names (CHAT_INPUT): 1-32 lowercase letters (any
# script), digits, '-' or '_'. Context-menu names: 1-32 characters, spaces and capitals allowed.
SLASH_NAME = re.compile(r"^[-_\w]{1,32}$")
DESCRIPTION_MAX = 100


@pytest_asyncio.fixture
async def payloads() -> AsyncIterator[list[dict[str, Any]]]:
    bot = commands.Bot(command_prefix="!", intents=discord.Intents.none(), help_command=None)
    translator = WanTranslator()
    await bot.tree.set_translator(translator)
    for name in COGS:
        await bot.load_extension(name)
    assert sorted(bot.extensions) == sorted(COGS)
    yield [await c.get_translated_payload(bot.tree, translator) for c in bot.tree.get_commands()]
    for name in COGS:
        await bot.unload_extension(name)
    assert bot.tree.get_commands() == []


def walk_options(options: list[dict[str, Any]], where: str) -> Iterator[tuple[str, dict[str, Any]]]:
    for option in options:
        here = f"{where}.{option['name']}"
        yield here, option
        yield from walk_options(option.get("options") or [], here)


def names_and_descriptions(item: dict[str, Any]) -> tuple[list[str], list[str]]:
    names = [item["name"], *(item.get("name_localizations") or {}).values()]
    descriptions = [item.get("description") or ""]
    descriptions += list((item.get("description_localizations") or {}).values())
    return names, descriptions


def assert_slash_name(name: str, where: str) -> None:
    assert SLASH_NAME.match(name), f"{where}: {name!r} is not a valid name"
    assert name == name.lower(), f"{where}: {name!r} must be lowercase"


async def test_no_duplicate_command_names(payloads: list[dict[str, Any]]) -> None:
    kinds = Counter((p["name"], p["type"]) for p in payloads)
    assert all(count == 1 for count in kinds.values()), kinds
    slash = {p["name"] for p in payloads if p["type"] == 1}
    menus = [p["name"] for p in payloads if p["type"] != 1]
    assert {"cancel", "edit", "imagine", "jobs", "quota", "show", "wansync"} <= slash
    assert menus == ["Edit with Wan"]
    # Localized names must be unique too (Discord refuses a clash in any one language).
    for locale in ("zh-CN", "zh-TW"):
        local = Counter(
            ((p.get("name_localizations") or {}).get(locale, p["name"]), p["type"])
            for p in payloads
        )
        assert all(count == 1 for count in local.values()), (locale, local)


async def test_names_and_descriptions_follow_discords_rules(
    payloads: list[dict[str, Any]],
) -> None:
    for command in payloads:
        where = command["name"]
        names, descriptions = names_and_descriptions(command)
        if command["type"] == 1:
            for name in names:
                assert_slash_name(name, where)
            for description in descriptions:
                assert 1 <= len(description) <= DESCRIPTION_MAX, (where, description)
        else:
            for name in names:
                assert 1 <= len(name) <= 32, (where, name)
            assert descriptions == [""], where  # context menus have none
        assert_option_lists(command.get("options") or [], where)
        for path, option in walk_options(command.get("options") or [], where):
            names, descriptions = names_and_descriptions(option)
            for name in names:
                assert_slash_name(name, path)
            for description in descriptions:
                assert 1 <= len(description) <= DESCRIPTION_MAX, (path, description)
            if option.get("max_length") is not None:
                assert option["max_length"] <= 6000, path
            assert len(option.get("choices") or []) <= 25, path


def assert_option_lists(options: list[dict[str, Any]], where: str) -> None:
    """Each list of options: at most 25, unique names, required ones before optional ones."""
    assert len(options) <= 25, where
    names = [o["name"] for o in options]
    assert len(names) == len(set(names)), where
    required = [bool(o.get("required")) for o in options if o["type"] not in (1, 2)]
    assert required == sorted(required, reverse=True), f"{where}: required after optional"
    for option in options:
        assert_option_lists(option.get("options") or [], f"{where}.{option['name']}")


async def test_every_command_string_is_translated_in_every_catalogue(
    payloads: list[dict[str, Any]],
) -> None:
    for lang, catalogue in catalogues().items():
        if lang == SOURCE:
            continue
        for locale in catalogue.discord_locales:
            for command in payloads:
                assert command["name_localizations"].get(locale), (locale, command["name"])
                for path, option in walk_options(command.get("options") or [], command["name"]):
                    assert option["name_localizations"].get(locale), (locale, path)
                    assert option["description_localizations"].get(locale), (locale, path)
        assert all(value.strip() for value in catalogue.commands.values()), lang


def test_the_start_up_heap_is_frozen_only_in_a_process_the_bot_owns() -> None:
    """`python -m bot` sets the objects alive after start-up aside from the cyclic garbage
    collector (full collections paused the event loop for tens of ms); a bot run inside another
    program (these tests) leaves that program's collector alone."""
    code = (
        "import gc, logging; logging.basicConfig(level=logging.INFO)\n"
        "from bot.discord_ui.app import freeze_heap\n"
        "assert gc.get_freeze_count() == 0\n"
        "freeze_heap()\n"
        "print(gc.get_freeze_count())\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert int(done.stdout) > 10_000  # discord.py, pydantic, httpx, Pillow and the bot's own
    assert "objects set aside from garbage collection" in done.stderr
    assert gc.get_freeze_count() == 0  # bots run in this process (install_signals=False)
