"""Owner tools: publish the slash commands to every server."""

from __future__ import annotations

import discord
from discord import app_commands
from discord.app_commands import locale_str as _
from discord.ext import commands

from bot.discord_app import WanBot
from bot.discord_flow import respond
from bot.i18n import lang_for, text


class Admin(commands.Cog):
    def __init__(self, bot: WanBot) -> None:
        self.bot = bot

    @app_commands.command(
        name=_("wansync"), description=_("Owner only: publish the slash commands to every server")
    )
    async def wansync(self, interaction: discord.Interaction) -> None:
        lang = lang_for(str(interaction.locale))
        if not await self.bot.is_owner(interaction.user):
            await respond(interaction, text("reply.owner_only", lang))
            return
        await interaction.response.defer(ephemeral=True, thinking=True)
        synced = await self.bot.tree.sync()
        await interaction.followup.send(
            text("reply.synced", lang, count=len(synced)), ephemeral=True
        )


async def setup(bot: WanBot) -> None:
    await bot.add_cog(Admin(bot))
