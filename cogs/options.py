"""Shared by the commands: option descriptions and names, and autocomplete (models of a kind,
a model's recommended sizes, the server's styles)."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, TypeVar

import discord
from discord import app_commands
from discord.app_commands import locale_str as _

from bot.accounting.styles import StyleStore
from bot.dashscope.models import MODELS, Kind, models_of
from bot.dashscope.requests import ASPECTS

T = TypeVar("T", bound=Callable[..., Any])

# What the generation options mean, in the words every command shows (translated in [commands]).
OPTION_DESCRIPTIONS = {
    "negative_prompt": _("What to keep out of the image"),
    "size": _("Width×height"),
    "n": _("Number of images (1–4)"),
    "seed": _("Seed for repeatable results (0–2147483647)"),
    "prompt_extend": _("Let the model rewrite short prompts (default on)"),
    "watermark": _("Stamp “AI-generated” on the images"),
}


def described(**own: _) -> dict[str, _]:
    """Descriptions for a command: its own, and the shared options' (`OPTION_DESCRIPTIONS`)."""
    return {**OPTION_DESCRIPTIONS, **own}


def localised(callback: T) -> T:
    """A command's options named through the catalogue's [commands] table (each option's own
    name is its key there): every parameter after the interaction."""
    names = [p for p in inspect.signature(callback).parameters if p not in ("self", "interaction")]
    return app_commands.rename(**{name: _(name) for name in names})(callback)


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


def aspect_choices() -> list[app_commands.Choice[str]]:
    """The aspect ratios every model that takes a size can make (mapped per model)."""
    return [app_commands.Choice(name=aspect, value=aspect) for aspect in ASPECTS]


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
