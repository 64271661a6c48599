"""The image tools as requests: Upscale, Vary, Zoom out and Pan on one chosen image, and Blend.

The Discord buttons and the CLI both build their requests here, so a tool means the same
everywhere. Every tool but Blend is a `wanx2.1-imageedit` function (Beijing only); Vary falls
back to `wan2.5-i2i-preview` with the same prompt where that model is not offered (no strength
there: subtle and strong make the same request). Expand's scales are UNCONFIRMED in their
meaning (docs/dashscope.md §Image tools): we read each as the factor of its half of the image,
measured from the centre, so all four at 2.0 doubles both sides with the image in the middle,
and one at 2.0 grows the canvas by half on that side.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from bot.dashscope.models import (
    DEFAULT_ANIMATE_MODEL,
    DEFAULT_BLEND_MODEL,
    DEFAULT_EDIT_MODEL,
    DEFAULT_VIDEO_MODEL,
    DESCRIPTION_EDIT,
    EXPAND_FUNCTION,
    IMAGE_TOOLS_MODEL,
    MODELS,
    SUPER_RESOLUTION,
    Kind,
    models_of,
)
from bot.dashscope.requests import ImageRequest, require_kind
from bot.errors import InputRejected

UPSCALE_CHOICES = (2, 4)
ZOOM_CHOICES = (1.5, 2.0)
# description_edit's strength for each Vary (0 keeps the image, 1 departs from it).
VARY_STRENGTH = {"subtle": 0.3, "strong": 0.7}
# What super_resolution is asked when the image's own prompt is not at hand (the CLI).
UPSCALE_PROMPT = "Upscale the image, keeping every detail."
BLEND_IMAGES = (2, 4)  # how many images one Blend takes (the model itself edits from one)
# What expand is asked when the image's own prompt is not at hand and none is given (the CLI).
EXPAND_PROMPT = "Extend the scene beyond its edges, matching its style and light."


class Pan(StrEnum):
    LEFT = "left"
    RIGHT = "right"
    UP = "up"
    DOWN = "down"


def zoom_scales(factor: float) -> tuple[float, float, float, float]:
    """top, bottom, left, right for a zoom out by `factor` (1.5 or 2): the image in the middle."""
    return (factor, factor, factor, factor)


def pan_scales(direction: Pan) -> tuple[float, float, float, float]:
    """top, bottom, left, right for a pan: the canvas grows by half on that side."""
    sides = ("up", "down", "left", "right")
    return tuple(2.0 if side == direction.value else 1.0 for side in sides)  # type: ignore[return-value]


@dataclass(frozen=True)
class Chosen:
    """The image a tool acts on, and what its request keeps of the job that made it."""

    image: str  # a data: URI or a URL DashScope can fetch
    prompt: str = UPSCALE_PROMPT
    position: int | None = None  # 1-based, in its job's result
    seed: int | None = None
    watermark: bool | None = None


def _on(chosen: Chosen, model: str, n: int, **fields: Any) -> ImageRequest:
    prompt = chosen.prompt.strip()
    if model == IMAGE_TOOLS_MODEL or MODELS[model].kind.makes_video:
        prompt = prompt[: MODELS[model].prompt_max]  # a job's prompt may be longer
    return ImageRequest(
        model=model,
        prompt=prompt,
        images=(chosen.image,),
        n=n,
        seed=chosen.seed,
        watermark=chosen.watermark,
        source_image=chosen.position,
        **fields,
    )


def upscale(chosen: Chosen, factor: int) -> ImageRequest:
    return _on(chosen, IMAGE_TOOLS_MODEL, 1, function=SUPER_RESOLUTION, upscale_factor=factor)


def expand(chosen: Chosen, scales: tuple[float, float, float, float]) -> ImageRequest:
    return _on(chosen, IMAGE_TOOLS_MODEL, 1, function=EXPAND_FUNCTION, expand=scales)


def vary(chosen: Chosen, strength: str, n: int, region: str | None) -> ImageRequest:
    """New images close to the chosen one with its prompt: `strength` is "subtle" or "strong"."""
    if MODELS[IMAGE_TOOLS_MODEL].offered_in(region):
        strength_value = VARY_STRENGTH[strength]
        return _on(chosen, IMAGE_TOOLS_MODEL, n, function=DESCRIPTION_EDIT, strength=strength_value)
    return _on(chosen, DEFAULT_EDIT_MODEL, n, purpose=Kind.VARY)


def video_model(kind: Kind, region: str | None) -> str | None:
    """The video model of `kind` (ANIMATE or VIDEO) for a key of `region`: the default where
    offered, else the first that is; None where the region offers none."""
    default = DEFAULT_ANIMATE_MODEL if kind is Kind.ANIMATE else DEFAULT_VIDEO_MODEL
    names = [spec.name for spec in models_of(kind) if spec.offered_in(region)]
    return default if default in names else next(iter(names), None)


def animate(chosen: Chosen, region: str | None) -> ImageRequest:
    """The chosen image made into a video with its own prompt as the motion prompt, by the
    region's image-to-video model at its default length and resolution."""
    model = video_model(Kind.ANIMATE, region) or DEFAULT_ANIMATE_MODEL
    return _on(chosen, model, 1)


def check_blend_count(count: int) -> None:
    """Refuse a Blend of too few or too many images, before any is read."""
    low, high = BLEND_IMAGES
    if not low <= count <= high:
        raise InputRejected.one("invalid.blend_images", low=low, high=high, count=count)


def blend(images: tuple[str, ...], prompt: str, **options: Any) -> ImageRequest:
    """Two to four images combined as `prompt` says (wan2.6-image's edit mode); `options` are
    ImageRequest's (negative_prompt, size, n, seed, prompt_extend, watermark)."""
    check_blend_count(len(images))
    request = ImageRequest(model=DEFAULT_BLEND_MODEL, prompt=prompt, images=images, **options)
    require_kind(request, Kind.BLEND)
    return request


def offered(kind: Kind, region: str | None) -> bool:
    """Whether a key of `region` can use the tool on one image (Upscale, Zoom out and Pan where
    wanx2.1-imageedit is offered; Vary also anywhere an edit model serves; Animate where an
    image-to-video model is)."""
    if kind is Kind.VARY:
        return any(MODELS[m].offered_in(region) for m in (IMAGE_TOOLS_MODEL, DEFAULT_EDIT_MODEL))
    if kind is Kind.ANIMATE:
        return video_model(Kind.ANIMATE, region) is not None
    return MODELS[IMAGE_TOOLS_MODEL].offered_in(region)
