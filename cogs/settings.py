"""/settings: a member's own defaults for /imagine and the edits (bot/discord_ui/settings.py)."""

from __future__ import annotations

import discord
from discord import app_commands
from discord.app_commands import locale_str as _
from discord.ext import commands

from bot.discord_ui.app import WanBot
from bot.discord_ui.settings import SettingsButton, SettingsPick, show_settings


class Settings(commands.Cog):
    def __init__(self, bot: WanBot) -> None:
        self.bot = bot

    async def cog_load(self) -> None:
        self.bot.add_dynamic_items(SettingsPick, SettingsButton)

    async def cog_unload(self) -> None:
        self.bot.remove_dynamic_items(SettingsPick, SettingsButton)

    @app_commands.command(
        name=_("settings"), description=_("Your own defaults for /imagine and edits")
    )
    async def settings(self, interaction: discord.Interaction) -> None:
        await show_settings(self.bot, interaction)


async def setup(bot: WanBot) -> None:
    await bot.add_cog(Settings(bot))
