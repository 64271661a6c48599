"""Videos: /animate (an attached image and a motion prompt → a clip) and /video (a prompt →
a clip), with the Wan video models the key's region offers."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import discord
from discord import app_commands
from discord.app_commands import locale_str as _
from discord.ext import commands

from bot.accounting.defaults import unset
from bot.dashscope.models import MODELS, SEED_MAX, Kind, models_of
from bot.dashscope.requests import ImageRequest, require_kind
from bot.dashscope.tools import video_model
from bot.discord_ui.app import WanBot
from bot.discord_ui.attachments import images_from
from bot.discord_ui.launcher import Origin
from bot.discord_ui.replies import tell_queued
from bot.errors import InputRejected
from cogs.options import aspect_choices, described, localised

RESOLUTIONS = ("480P", "720P", "1080P")
VIDEO_OPTIONS = (
    "prompt",
    "negative_prompt",
    "model",
    "duration",
    "resolution",
    "prompt_extend",
    "audio",
    "seed",
)
_DESCRIPTIONS = described(
    model=_("Which Wan video model"),
    duration=_("Length in seconds (the model's choices)"),
    resolution=_("480P, 720P or 1080P (where the model makes it)"),
    audio=_("Add sound (models that make it)"),
)


def descriptions(*names: str, **own: _) -> dict[str, _]:
    """The descriptions of the options `names` (shared ones, and the video ones), and `own`."""
    return {**{name: _DESCRIPTIONS[name] for name in names if name in _DESCRIPTIONS}, **own}


@dataclass(frozen=True)
class Options:
    """The options /animate and /video share."""

    model: str | None
    duration: int | None
    resolution: str | None
    prompt_extend: bool | None
    audio: bool | None
    seed: int | None
    negative_prompt: str | None

    def fields(self) -> dict[str, Any]:
        """The request's fields they set (the model is chosen apart)."""
        return {k: v for k, v in self.__dict__.items() if k != "model"}

    @property
    def left_out(self) -> frozenset[str]:
        """Those the member's defaults may fill."""
        return unset(negative_prompt=self.negative_prompt, prompt_extend=self.prompt_extend)


def video_request(kind: Kind, model: str | None, region: str | None, **fields: Any) -> ImageRequest:
    """A video request with the chosen model, or the region's default of `kind`; refused in
    words for a model of another kind or one the region does not offer."""
    default = video_model(kind, region)
    if default is None:
        raise InputRejected.one("invalid.video_not_offered")
    request = ImageRequest(model=model or default, **fields)
    require_kind(request, kind)
    if not request.spec.offered_in(region):
        choices = ", ".join(s.name for s in models_of(kind) if s.offered_in(region))
        raise InputRejected.one("invalid.model_not_offered", model=request.model, choices=choices)
    return request


def model_choices(kind: Kind, region: str | None, current: str) -> list[app_commands.Choice[str]]:
    """The models of `kind` the region offers, whose name holds what was typed."""
    return [
        app_commands.Choice(name=spec.name, value=spec.name)
        for spec in models_of(kind)
        if spec.offered_in(region) and current.lower() in spec.name
    ][:25]


def chosen_model(interaction: discord.Interaction, kind: Kind, region: str | None) -> str:
    typed = getattr(interaction.namespace, "model", None)
    if typed in MODELS and MODELS[typed].kind is kind:
        return str(typed)
    return video_model(kind, region) or ""


def duration_choices(model: str) -> list[app_commands.Choice[int]]:
    spec = MODELS.get(model)
    durations = sorted(spec.durations) if spec else []
    return [app_commands.Choice(name=f"{d} s", value=d) for d in durations]


def resolution_choices() -> list[app_commands.Choice[str]]:
    return [app_commands.Choice(name=r, value=r) for r in RESOLUTIONS]


class Video(commands.Cog):
    def __init__(self, bot: WanBot) -> None:
        self.bot = bot

    @property
    def region(self) -> str | None:
        return self.bot.settings.region

    @app_commands.command(
        name=_("animate"), description=_("Make a short video from an image with Wan")
    )
    @app_commands.describe(
        **descriptions(
            *VIDEO_OPTIONS,
            image=_("The image to bring to life"),
            prompt=_("How it should move (optional)"),
        )
    )
    @localised
    @app_commands.choices(resolution=resolution_choices())
    async def animate(
        self,
        interaction: discord.Interaction,
        image: discord.Attachment,
        prompt: app_commands.Range[str, 1, 1500] | None = None,
        model: str | None = None,
        duration: app_commands.Range[int, 1, 60] | None = None,
        resolution: str | None = None,
        prompt_extend: bool | None = None,
        audio: bool | None = None,
        seed: app_commands.Range[int, 0, SEED_MAX] | None = None,
        negative_prompt: app_commands.Range[str, 1, 500] | None = None,
    ) -> None:
        options = Options(model, duration, resolution, prompt_extend, audio, seed, negative_prompt)
        await self._start(interaction, Kind.ANIMATE, options, prompt or "", image=image)

    @app_commands.command(name=_("video"), description=_("Make a short video from text with Wan"))
    @app_commands.describe(
        **descriptions(
            *VIDEO_OPTIONS,
            "size",
            prompt=_("What happens in the video"),
            aspect=_("Aspect ratio (instead of an exact size)"),
        )
    )
    @localised
    @app_commands.choices(resolution=resolution_choices(), aspect=aspect_choices())
    async def video(
        self,
        interaction: discord.Interaction,
        prompt: app_commands.Range[str, 1, 1500],
        model: str | None = None,
        duration: app_commands.Range[int, 1, 60] | None = None,
        resolution: str | None = None,
        size: str | None = None,
        aspect: str | None = None,
        prompt_extend: bool | None = None,
        audio: bool | None = None,
        seed: app_commands.Range[int, 0, SEED_MAX] | None = None,
        negative_prompt: app_commands.Range[str, 1, 500] | None = None,
    ) -> None:
        options = Options(model, duration, resolution, prompt_extend, audio, seed, negative_prompt)
        await self._start(interaction, Kind.VIDEO, options, prompt, size=size, aspect=aspect)

    async def _start(
        self,
        interaction: discord.Interaction,
        kind: Kind,
        options: Options,
        prompt: str,
        *,
        image: discord.Attachment | None = None,
        **shape: str | None,
    ) -> None:
        """The video job, launched with the member's defaults for what the command left out
        (negative prompt, prompt extension, watermark); the model and shape are the command's
        or the video model's own: the member's and the server's image defaults fit no video."""
        await interaction.response.defer(ephemeral=True, thinking=True)
        # The model first: its sides decide how an image is read.
        request = video_request(kind, options.model, self.region, prompt=prompt, **shape)
        request = replace(request, **options.fields())
        if image is not None:
            sides = request.spec.input_sides
            images = await images_from([image], self.bot.attachment_origins, sides)
            request = replace(request, images=images)
        origin = Origin.of(interaction)
        job, status = await self.bot.launcher.launch(
            origin, request, defaults_for=options.left_out | {"watermark"}
        )
        await tell_queued(interaction, origin.lang, job, status)

    @animate.autocomplete("model")
    async def _animate_model(
        self, interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        return model_choices(Kind.ANIMATE, self.region, current)

    @video.autocomplete("model")
    async def _video_model(
        self, interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        return model_choices(Kind.VIDEO, self.region, current)

    @animate.autocomplete("duration")
    async def _animate_duration(
        self, interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[int]]:
        return duration_choices(chosen_model(interaction, Kind.ANIMATE, self.region))

    @video.autocomplete("duration")
    async def _video_duration(
        self, interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[int]]:
        return duration_choices(chosen_model(interaction, Kind.VIDEO, self.region))

    @video.autocomplete("size")
    async def _size(
        self, interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        spec = MODELS.get(chosen_model(interaction, Kind.VIDEO, self.region))
        sizes = [f"{w}*{h}" for w, h in spec.video_sizes] if spec else []
        return [app_commands.Choice(name=s, value=s) for s in sizes if str(current) in s][:25]


async def setup(bot: WanBot) -> None:
    await bot.add_cog(Video(bot))
