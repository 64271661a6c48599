"""A generation or edit request: its fields, local validation by the model table, and its body.

Validation happens before anything is sent or charged, and names what to change.
"""

from __future__ import annotations

import math
import random
import re
import unicodedata
from dataclasses import dataclass, replace
from typing import Any

from bot.dashscope.models import (
    DESCRIPTION_EDIT,
    EXPAND_FUNCTION,
    EXPAND_SCALES,
    MODELS,
    SEED_MAX,
    STRENGTH_RANGE,
    SUPER_RESOLUTION,
    UPSCALE_FACTORS,
    VIDEO_SIZES,
    Kind,
    ModelSpec,
    PixelRange,
    Protocol,
    SideRange,
    format_size,
    price_key,
    resolution_of,
)
from bot.errors import InputRejected, Problem

_SIZE = re.compile(r"^\s*(\d{1,5})\s*[*xX×]\s*(\d{1,5})\s*$")
# Newlines and tabs are ordinary in prompts; the other control characters are not.
_ALLOWED_CONTROLS = {"\n", "\r", "\t"}
# A prompt made only of these (spaces, zero-width and format characters) shows nothing.
_INVISIBLE = {"Zs", "Zl", "Zp", "Cc", "Cf"}


@dataclass(frozen=True)
class ImageRequest:
    model: str
    prompt: str
    negative_prompt: str | None = None
    size: str | None = None  # "W*H"; None → the model's default
    n: int = 1
    seed: int | None = None
    prompt_extend: bool | None = None  # None → the API's default (on)
    watermark: bool | None = None  # None → the API's default (off)
    images: tuple[str, ...] = ()  # data: URIs or http(s) URLs, for edits
    # wanx2.1-imageedit's function and its parameters (docs/dashscope.md §Image tools)
    function: str | None = None
    strength: float | None = None  # description_edit: 0 keeps the image, 1 departs from it
    upscale_factor: int | None = None  # super_resolution
    expand: tuple[float, float, float, float] | None = None  # expand: top, bottom, left, right
    # The job's kind when it is not its model's (a Vary made by an edit model); None: the model's.
    purpose: Kind | None = None
    style: str | None = None  # the server style applied to the prompt, shown in Info
    source_image: int | None = None  # the image (1-based) of the parent job acted on
    # The size as a ratio ("16:9"), mapped to a size of the model by `validate`; not with size.
    aspect: str | None = None
    # Video (docs/dashscope.md §Video): seconds, "480P" | "720P" | "1080P", sound on or off.
    # Validation fills the model's default length and resolution, which pricing needs.
    duration: int | None = None
    resolution: str | None = None
    audio: bool | None = None

    @property
    def spec(self) -> ModelSpec:
        spec = MODELS.get(self.model)
        if spec is None:
            raise InputRejected.one("invalid.model", model=self.model, choices=", ".join(MODELS))
        return spec

    @property
    def kind(self) -> Kind:
        return self.purpose or self.spec.kind_of(self.function)

    @property
    def price_key(self) -> str:
        return price_key(self.model, self.function or self.resolution)


def random_seed() -> int:
    """A seed in the range DashScope accepts (a Reroll, or a request the member left unseeded)."""
    return random.randint(0, SEED_MAX)


def seeded(request: ImageRequest) -> ImageRequest:
    """The request with a seed: the member's own, or one picked now, so that the seed a result
    was made with can be shown and the image made again."""
    return request if request.seed is not None else replace(request, seed=random_seed())


_NOT_OF_KIND = {
    Kind.TEXT_TO_IMAGE: "invalid.model_not_text",
    Kind.BLEND: "invalid.model_not_blend",
    Kind.ANIMATE: "invalid.model_not_animate",
    Kind.VIDEO: "invalid.model_not_video",
}


def require_kind(request: ImageRequest, kind: Kind) -> None:
    """Refuse a model of the other kind (a text-to-image model for an edit, or the reverse)."""
    spec = request.spec
    if request.kind is not kind:
        choices = ", ".join(m.name for m in MODELS.values() if m.kind is kind)
        key = _NOT_OF_KIND.get(kind, "invalid.model_not_edit")
        raise InputRejected.one(key, model=spec.name, choices=choices)


def parse_size(size: str) -> tuple[int, int] | None:
    match = _SIZE.match(size)
    if not match:
        return None
    return int(match.group(1)), int(match.group(2))


def size_problem(spec: ModelSpec, width: int, height: int) -> Problem | None:
    """Why W×H is not allowed for this model, or None."""
    size = format_size(width, height)
    common: dict[str, object] = {
        "size": size,
        "model": spec.name,
        "recommended": spec.recommended_text(),
    }
    rule = spec.size_rule
    if (width, height) in spec.recommended_sizes:
        # The docs recommend 1104*1472 and 960*1696 (and their transposes) for wan2.6/2.5 t2i,
        # just under their own 1280*1280 floor: the documented sizes are valid as listed, so
        # the refusals name them beside the range, never as examples of it.
        return None
    if isinstance(rule, PixelRange):
        common |= {"low": rule.min_pixels, "high": rule.max_pixels, "ratio": rule.max_ratio}
        if width <= 0 or height <= 0 or max(width / height, height / width) > rule.max_ratio:
            return Problem("invalid.size_ratio", common)
        pixels = width * height
        if not rule.min_pixels <= pixels <= rule.max_pixels:
            return Problem("invalid.size_pixels", {**common, "pixels": pixels})
        return None
    assert isinstance(rule, SideRange)
    if not (rule.min_side <= width <= rule.max_side and rule.min_side <= height <= rule.max_side):
        return Problem(
            "invalid.size_sides", {**common, "low": rule.min_side, "high": rule.max_side}
        )
    return None


# Aspect ratios offered for every model that takes a size (all within 1:4–4:1 and within the
# older models' 512–1440 px sides).
ASPECTS = ("1:1", "2:3", "3:2", "3:4", "4:3", "9:16", "16:9", "21:9")
_SIZE_STEP = 16  # sizes we compute are multiples of 16 (the service's own picks are of 8)
_RECOMMENDED_SLACK = 0.01  # a recommended size within 1% of the ratio stands for it


def parse_aspect(aspect: str) -> tuple[int, int] | None:
    """(W, H) of an aspect ratio we offer ("16:9"), or None."""
    if aspect not in ASPECTS:
        return None
    width, height = aspect.split(":")
    return int(width), int(height)


def size_for_aspect(spec: ModelSpec, aspect: str) -> str | None:
    """The model's size for an aspect ratio ("16:9" → "1696*960" for wan2.6-t2i), or None when
    the ratio is not one we offer or the model takes no size.

    A recommended size of the model within 1% of the ratio is taken (the one nearest the
    default's pixel count); otherwise the size nearest the ratio among multiples of 16 near the
    default's pixel count that the model accepts."""
    ratio_parts = parse_aspect(aspect)
    if ratio_parts is None or spec.protocol in (Protocol.IMAGEEDIT, Protocol.VIDEO):
        return None  # no size, or sizes of a video's own (`_video_shape`)
    ratio = ratio_parts[0] / ratio_parts[1]
    target = spec.default_size[0] * spec.default_size[1]

    def off(size: tuple[int, int]) -> float:
        return abs(size[0] / size[1] / ratio - 1)

    def distance(size: tuple[int, int]) -> float:  # in pixels, relative to the default's
        return abs(math.log(size[0] * size[1] / target))

    recommended = [s for s in spec.recommended_sizes if off(s) <= _RECOMMENDED_SLACK]
    if recommended:
        return format_size(*min(recommended, key=distance))
    candidates = []
    for width in range(_SIZE_STEP, 4096 + 1, _SIZE_STEP):
        height = max(_SIZE_STEP, round(width / ratio / _SIZE_STEP) * _SIZE_STEP)
        if size_problem(spec, width, height) is None:
            candidates.append((width, height))
    if not candidates:
        return None
    # Near the ratio first, then near the default's pixel count (0.25: 1% of ratio is worth
    # 4% of pixels).
    return format_size(*min(candidates, key=lambda s: off(s) + 0.25 * distance(s)))


def _text_problems(field: str, value: str) -> list[Problem]:
    bad = [c for c in value if unicodedata.category(c) == "Cc" and c not in _ALLOWED_CONTROLS]
    return [Problem(f"invalid.control_chars.{field}")] if bad else []


def _whole(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def validate(request: ImageRequest) -> ImageRequest:
    """Check a request against its model's rules; return it with the size normalised.

    Raises `InputRejected` listing every problem found.
    """
    spec = request.spec
    problems: list[Problem] = []
    # Fields of the wrong type (only a malformed payload carries them) are refused, not crashed on.
    prompt = request.prompt.strip() if isinstance(request.prompt, str) else ""
    if all(unicodedata.category(c) in _INVISIBLE for c in prompt):
        if spec.kind is not Kind.ANIMATE:  # an image's motion prompt is optional
            problems.append(Problem("invalid.prompt_empty"))
        prompt = ""
    elif len(prompt) > spec.prompt_max:
        problems.append(
            Problem(
                "invalid.prompt_long",
                {"length": len(prompt), "limit": spec.prompt_max, "model": spec.name},
            )
        )
    problems += _text_problems("prompt", prompt)
    negative = request.negative_prompt
    negative = (negative.strip() if isinstance(negative, str) else "") or None
    if negative is not None:
        if not spec.negative_max:
            problems.append(Problem("invalid.negative_unsupported", {"model": spec.name}))
        elif len(negative) > spec.negative_max:
            problems.append(
                Problem(
                    "invalid.negative_long", {"length": len(negative), "limit": spec.negative_max}
                )
            )
        problems += _text_problems("negative_prompt", negative)

    duration, resolution = request.duration, request.resolution
    if spec.protocol is Protocol.VIDEO:
        size, duration, resolution = _video_shape(request, spec, problems)
    else:
        for name in ("duration", "resolution", "audio"):
            if getattr(request, name) is not None:
                problems.append(Problem("invalid.parameter_unexpected", {"parameter": name}))
        size = _image_size(request, spec, problems)

    if not _whole(request.n) or not spec.n_min <= request.n <= spec.n_max:
        problems.append(
            Problem("invalid.n", {"low": spec.n_min, "high": spec.n_max, "n": request.n})
        )
    if request.seed is not None and (not _whole(request.seed) or not 0 <= request.seed <= SEED_MAX):
        problems.append(Problem("invalid.seed", {"seed": request.seed}))

    problems += _tool_problems(request, spec)
    count = len(request.images)
    if spec.images_max == 0 and count:
        problems.append(Problem("invalid.images_unexpected", {"model": spec.name}))
    elif spec.images_max and not spec.images_min <= count <= spec.images_max:
        problems.append(
            Problem(
                "invalid.image_count",
                {
                    "model": spec.name,
                    "low": spec.images_min,
                    "high": spec.images_max,
                    "count": count,
                },
            )
        )
    if problems:
        raise InputRejected(problems)
    return replace(
        request,
        prompt=prompt,
        negative_prompt=negative,
        size=size,
        aspect=None,
        duration=duration,
        resolution=resolution,
    )


def _image_size(request: ImageRequest, spec: ModelSpec, problems: list[Problem]) -> str | None:
    """An image's size, normalised: `size`, or `aspect` mapped to the model's, or its default
    (None where the model keeps its input's shape)."""
    size = request.size
    if request.aspect is not None:
        mapped = size_for_aspect(spec, request.aspect) if isinstance(request.aspect, str) else None
        if size is not None:
            problems.append(Problem("invalid.size_and_aspect"))
        elif mapped is None:
            problems.append(
                Problem(
                    "invalid.aspect",
                    {"aspect": request.aspect, "model": spec.name, "choices": ", ".join(ASPECTS)},
                )
            )
        else:
            size = mapped
    if size is None:
        return None if spec.size_optional else spec.default_size_text
    parsed = parse_size(size) if isinstance(size, str) else None
    if parsed is None:
        problems.append(Problem("invalid.size_format", {"size": size}))
        return size
    if (problem := size_problem(spec, *parsed)) is not None:
        problems.append(problem)
    return format_size(*parsed)


def _video_shape(
    request: ImageRequest, spec: ModelSpec, problems: list[Problem]
) -> tuple[str | None, int | None, str | None]:
    """A video's size (text to video), length and resolution, defaults filled: an
    image-to-video clip takes its image's shape at `resolution`; a text-to-video one is one of
    the model's sizes, picked by `size`, or by `aspect` within `resolution`."""
    duration = spec.durations[0] if request.duration is None else request.duration
    if not _whole(duration) or duration not in spec.durations:
        choices = ", ".join(str(d) for d in sorted(spec.durations))
        problems.append(
            Problem(
                "invalid.duration", {"model": spec.name, "duration": duration, "choices": choices}
            )
        )
    if request.audio is not None and not spec.audio:
        problems.append(Problem("invalid.parameter_unexpected", {"parameter": "audio"}))
    resolution = request.resolution
    choices = ", ".join(spec.resolutions)
    if resolution is not None and resolution not in spec.resolutions:
        problems.append(
            Problem(
                "invalid.resolution",
                {"model": spec.name, "resolution": resolution, "choices": choices},
            )
        )
        return None, duration, resolution
    if spec.kind is Kind.ANIMATE:
        for name in ("size", "aspect"):
            if getattr(request, name) is not None:
                problems.append(Problem("invalid.parameter_unexpected", {"parameter": name}))
        return None, duration, resolution or _default_resolution(spec)
    if request.size is not None and request.aspect is not None:
        problems.append(Problem("invalid.size_and_aspect"))
        return None, duration, resolution
    if request.size is not None:
        parsed = parse_size(request.size) if isinstance(request.size, str) else None
        own = resolution_of(*parsed) if parsed else None
        if parsed is None or parsed not in spec.video_sizes or resolution not in (None, own):
            sizes = spec.video_sizes if resolution is None else VIDEO_SIZES[resolution]
            problems.append(
                Problem(
                    "invalid.video_size",
                    {
                        "model": spec.name,
                        "size": request.size,
                        "choices": ", ".join(format_size(*s) for s in sizes),
                    },
                )
            )
            return None, duration, resolution
        return format_size(*parsed), duration, own
    resolution = resolution or _default_resolution(spec)
    sizes = VIDEO_SIZES[resolution]
    if request.aspect is None:
        return format_size(*sizes[0]), duration, resolution
    ratio = parse_aspect(request.aspect) if isinstance(request.aspect, str) else None
    if ratio is not None:
        wanted = ratio[0] / ratio[1]
        nearest = min(sizes, key=lambda s: abs(s[0] / s[1] / wanted - 1))
        if abs(nearest[0] / nearest[1] / wanted - 1) <= _VIDEO_ASPECT_SLACK:
            return format_size(*nearest), duration, resolution
    offered = [a for a in ASPECTS if _video_aspect_fits(a, sizes)]
    problems.append(
        Problem(
            "invalid.aspect",
            {"aspect": request.aspect, "model": spec.name, "choices": ", ".join(offered)},
        )
    )
    return None, duration, resolution


# How far a text-to-video size may be from the aspect ratio asked (832*1088 is 3:4 within 2%).
_VIDEO_ASPECT_SLACK = 0.05


def _video_aspect_fits(aspect: str, sizes: tuple[tuple[int, int], ...]) -> bool:
    ratio = parse_aspect(aspect)
    assert ratio is not None
    wanted = ratio[0] / ratio[1]
    return any(abs(w / h / wanted - 1) <= _VIDEO_ASPECT_SLACK for w, h in sizes)


def _default_resolution(spec: ModelSpec) -> str:
    return "720P" if "720P" in spec.resolutions else spec.resolutions[0]


def _number_in(value: object, bounds: tuple[float, float]) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and (bounds[0] <= value <= bounds[1])
    )


def _tool_problems(request: ImageRequest, spec: ModelSpec) -> list[Problem]:
    """The function and its parameters: named by the model's functions, each parameter only
    with its function and within its documented range."""
    function = request.function
    if spec.functions and function not in spec.functions:
        return [
            Problem(
                "invalid.function",
                {
                    "model": spec.name,
                    "function": function or "",
                    "choices": ", ".join(spec.functions),
                },
            )
        ]
    if not spec.functions and function is not None:
        return [Problem("invalid.function_unexpected", {"model": spec.name})]
    problems: list[Problem] = []
    if spec.protocol is Protocol.IMAGEEDIT:  # the canvas follows the function, never a size
        for name, value in (("size", request.size), ("prompt_extend", request.prompt_extend)):
            if value is not None:
                problems.append(Problem("invalid.parameter_unexpected", {"parameter": name}))
    for name, given, owner in (
        ("strength", request.strength, DESCRIPTION_EDIT),
        ("upscale_factor", request.upscale_factor, SUPER_RESOLUTION),
        ("expand", request.expand, EXPAND_FUNCTION),
    ):
        if given is not None and function != owner:
            problems.append(Problem("invalid.parameter_unexpected", {"parameter": name}))
    strength = request.strength
    if (
        function == DESCRIPTION_EDIT
        and strength is not None
        and not _number_in(strength, STRENGTH_RANGE)
    ):
        problems.append(Problem("invalid.strength", {"strength": request.strength}))
    if function == SUPER_RESOLUTION:
        factor = request.upscale_factor
        if not _whole(factor) or not _number_in(factor, UPSCALE_FACTORS):
            problems.append(Problem("invalid.upscale_factor", {"factor": factor}))
    if function == EXPAND_FUNCTION:
        scales = request.expand
        if (
            not isinstance(scales, tuple)
            or len(scales) != 4
            or not all(_number_in(scale, EXPAND_SCALES) for scale in scales)
        ):
            problems.append(Problem("invalid.expand_scales", {"scales": scales}))
    return problems


def build_body(request: ImageRequest) -> dict[str, Any]:
    """The JSON body for the request's protocol (docs/dashscope.md §Bodies)."""
    spec = request.spec
    if spec.protocol is Protocol.VIDEO:
        return _video_body(request)
    parameters: dict[str, Any] = {"n": request.n}
    if request.size is not None:
        parameters["size"] = request.size
    if request.seed is not None:
        parameters["seed"] = request.seed
    if request.prompt_extend is not None:
        parameters["prompt_extend"] = request.prompt_extend
    if request.watermark is not None:
        parameters["watermark"] = request.watermark
    parameters.update(spec.fixed_parameters)
    body_input: dict[str, Any]
    if spec.protocol is Protocol.MESSAGES:
        content: list[dict[str, str]] = [{"text": request.prompt}]
        content += [{"image": image} for image in request.images]
        body_input = {"messages": [{"role": "user", "content": content}]}
        if request.negative_prompt:
            parameters["negative_prompt"] = request.negative_prompt
    elif spec.protocol is Protocol.IMAGEEDIT:
        body_input = {
            "function": request.function,
            "prompt": request.prompt,
            "base_image_url": request.images[0],
        }
        if request.strength is not None:
            parameters["strength"] = request.strength
        if request.upscale_factor is not None:
            parameters["upscale_factor"] = request.upscale_factor
        if request.expand is not None:
            sides = ("top_scale", "bottom_scale", "left_scale", "right_scale")
            parameters.update(zip(sides, request.expand, strict=True))
    else:
        body_input = {"prompt": request.prompt}
        if request.negative_prompt:
            body_input["negative_prompt"] = request.negative_prompt
        if request.images:
            body_input["images"] = list(request.images)
    return {"model": spec.name, "input": body_input, "parameters": parameters}


def _video_body(request: ImageRequest) -> dict[str, Any]:
    """video-synthesis (the SDK's VideoSynthesis): one video, so no `n`."""
    spec = request.spec
    body_input: dict[str, Any] = {}
    if request.prompt:
        body_input["prompt"] = request.prompt
    if request.negative_prompt:
        body_input["negative_prompt"] = request.negative_prompt
    if request.images:
        body_input["img_url"] = request.images[0]
    parameters: dict[str, Any] = {"duration": request.duration}
    if spec.kind is Kind.ANIMATE:
        parameters["resolution"] = request.resolution
    else:
        parameters["size"] = request.size
    for name in ("seed", "prompt_extend", "watermark", "audio"):
        if (value := getattr(request, name)) is not None:
            parameters[name] = value
    return {"model": spec.name, "input": body_input, "parameters": parameters}
