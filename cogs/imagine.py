"""/imagine: text to image."""

from __future__ import annotations

import discord
from discord import app_commands
from discord.app_commands import locale_str as _
from discord.ext import commands

from bot.accounting.defaults import unset
from bot.accounting.styles import StyleStore
from bot.dashscope.models import DEFAULT_TEXT_TO_IMAGE_MODEL, SEED_MAX, Kind
from bot.dashscope.requests import ImageRequest, require_kind
from bot.discord_ui.app import WanBot
from bot.discord_ui.launcher import Origin
from bot.discord_ui.replies import tell_queued
from cogs.options import (
    aspect_choices,
    described,
    localised,
    model_choices,
    size_choices,
    style_choices,
)


class Imagine(commands.Cog):
    def __init__(self, bot: WanBot) -> None:
        self.bot = bot

    @property
    def styles(self) -> StyleStore:
        return StyleStore(self.bot.svc.db)

    @app_commands.command(
        name=_("imagine"), description=_("Make images from a text prompt with Wan")
    )
    @app_commands.describe(
        **described(
            prompt=_("What to draw"),
            model=_("Which Wan model"),
            aspect=_("Aspect ratio (instead of an exact size)"),
            style=_("One of this server's styles, added to your prompt"),
        )
    )
    @localised
    @app_commands.choices(aspect=aspect_choices())
    async def imagine(
        self,
        interaction: discord.Interaction,
        prompt: app_commands.Range[str, 1, 2000],
        negative_prompt: app_commands.Range[str, 1, 500] | None = None,
        size: str | None = None,
        n: app_commands.Range[int, 1, 4] | None = None,
        seed: app_commands.Range[int, 0, SEED_MAX] | None = None,
        prompt_extend: bool | None = None,
        watermark: bool | None = None,
        model: str | None = None,
        aspect: str | None = None,
        style: app_commands.Range[str, 1, 100] | None = None,
    ) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        origin = Origin.of(interaction)
        request = ImageRequest(
            model=model or DEFAULT_TEXT_TO_IMAGE_MODEL,
            prompt=prompt,
            negative_prompt=negative_prompt,
            size=size,
            n=1 if n is None else n,
            seed=seed,
            prompt_extend=prompt_extend,
            watermark=watermark,
            aspect=aspect,
        )
        require_kind(request, Kind.TEXT_TO_IMAGE)
        model_chosen = model is not None
        if style is not None:  # its words, negative prompt and model (if the member chose none)
            request, model_chosen = await self.styles.apply(
                interaction.guild_id, style, request, model_chosen=model_chosen
            )
        # What the command (or its style) left out is taken from the member's defaults.
        job, status = await self.bot.launcher.launch(
            origin,
            request,
            model_chosen=model_chosen,
            size_chosen=(size or aspect) is not None,
            defaults_for=unset(
                model=request.model if model_chosen else None,
                size=size or aspect,
                n=n,
                negative_prompt=request.negative_prompt,
                prompt_extend=prompt_extend,
                watermark=watermark,
            ),
        )
        await tell_queued(interaction, origin.lang, job, status)

    @imagine.autocomplete("model")
    async def _model(
        self, interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        return await model_choices(interaction, current, Kind.TEXT_TO_IMAGE)

    @imagine.autocomplete("size")
    async def _size(
        self, interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        return await size_choices(interaction, current, DEFAULT_TEXT_TO_IMAGE_MODEL)

    @imagine.autocomplete("style")
    async def _style(
        self, interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        return await style_choices(self.styles, interaction, current)


async def setup(bot: WanBot) -> None:
    await bot.add_cog(Imagine(bot))
