"""/blend: two to four attached images combined as the member describes (wan2.6-image)."""

from __future__ import annotations

import discord
from discord import app_commands
from discord.app_commands import locale_str as _
from discord.ext import commands

from bot.accounting.defaults import unset
from bot.dashscope.models import DEFAULT_BLEND_MODEL, SEED_MAX
from bot.dashscope.tools import blend, check_blend_count
from bot.discord_ui.app import WanBot
from bot.discord_ui.attachments import images_from
from bot.discord_ui.launcher import Origin
from bot.discord_ui.replies import tell_queued
from cogs.options import described, localised, size_choices


class Blend(commands.Cog):
    def __init__(self, bot: WanBot) -> None:
        self.bot = bot

    @app_commands.command(
        name=_("blend"), description=_("Blend two to four images as you describe")
    )
    @app_commands.describe(
        **described(
            prompt=_("How to combine the images"),
            image1=_("The first image"),
            image2=_("The second image"),
            image3=_("A third image (optional)"),
            image4=_("A fourth image (optional)"),
        )
    )
    @localised
    async def blend(
        self,
        interaction: discord.Interaction,
        prompt: app_commands.Range[str, 1, 2000],
        image1: discord.Attachment,
        image2: discord.Attachment,
        image3: discord.Attachment | None = None,
        image4: discord.Attachment | None = None,
        negative_prompt: app_commands.Range[str, 1, 500] | None = None,
        size: str | None = None,
        n: app_commands.Range[int, 1, 4] | None = None,
        seed: app_commands.Range[int, 0, SEED_MAX] | None = None,
        prompt_extend: bool | None = None,
        watermark: bool | None = None,
    ) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        given = [a for a in (image1, image2, image3, image4) if a is not None]
        # One file named twice (a crafted payload) is one image: a blend needs different ones.
        attachments = list({a.id: a for a in given}.values())
        check_blend_count(len(attachments))  # before anything is downloaded
        request = blend(
            await images_from(attachments, self.bot.attachment_origins),
            prompt,
            negative_prompt=negative_prompt,
            size=size,
            n=1 if n is None else n,
            seed=seed,
            prompt_extend=prompt_extend,
            watermark=watermark,
        )
        origin = Origin.of(interaction)
        # What the command left out is taken from the member's defaults (not the model nor
        # the shape: a blend keeps its first image's unless the command gives a size).
        job, status = await self.bot.launcher.launch(
            origin,
            request,
            size_chosen=size is not None,
            defaults_for=unset(
                n=n,
                negative_prompt=negative_prompt,
                prompt_extend=prompt_extend,
                watermark=watermark,
            ),
        )
        await tell_queued(interaction, origin.lang, job, status)

    @blend.autocomplete("size")
    async def _size(
        self, interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        return await size_choices(interaction, current, DEFAULT_BLEND_MODEL)


async def setup(bot: WanBot) -> None:
    await bot.add_cog(Blend(bot))
