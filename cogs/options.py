"""Autocomplete shared by the commands: models of a kind, a model's recommended sizes, and the
server's styles."""

from __future__ import annotations

import discord
from discord import app_commands

from bot.accounting.styles import StyleStore
from bot.dashscope.models import MODELS, Kind, models_of


async def model_choices(
    interaction: discord.Interaction, current: str, kind: Kind
) -> list[app_commands.Choice[str]]:
    return [
        app_commands.Choice(name=spec.name, value=spec.name)
        for spec in models_of(kind)
        if current.lower() in spec.name
    ][:25]


async def size_choices(
    interaction: discord.Interaction, current: str, default_model: str
) -> list[app_commands.Choice[str]]:
    """The chosen model's recommended sizes (any other W*H may still be typed)."""
    model = getattr(interaction.namespace, "model", None) or default_model
    spec = MODELS.get(model) or MODELS[default_model]
    sizes = [f"{w}*{h}" for w, h in spec.recommended_sizes]
    return [app_commands.Choice(name=s, value=s) for s in sizes if current in s][:25]


async def style_choices(
    store: StyleStore, interaction: discord.Interaction, current: str
) -> list[app_commands.Choice[str]]:
    """The server's styles whose name holds what was typed (none outside servers)."""
    if interaction.guild_id is None:
        return []
    typed = current.strip().lower()
    return [
        app_commands.Choice(name=style.label, value=style.name)
        for style in await store.all(interaction.guild_id)
        if typed in style.name
    ][:25]
