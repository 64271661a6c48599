"""The Wan image models the simulator serves: routes, limits, size rules and typical durations.

From docs/dashscope.md §Regions, §Endpoints (routes), §Bodies and §Models (fields) and
§Rate limits.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Literal


class Route(StrEnum):
    """The submit routes under /api/v1/services/aigc/."""

    MULTIMODAL = "multimodal-generation"  # .../multimodal-generation/generation (sync)
    IMAGE_GENERATION = "image-generation"  # .../image-generation/generation (async)
    TEXT2IMAGE = "text2image"  # .../text2image/image-synthesis
    IMAGE2IMAGE = "image2image"  # .../image2image/image-synthesis
    VIDEO = "video-generation"  # .../video-generation/video-synthesis (async only)


class Protocol(StrEnum):
    MESSAGES = "messages"  # wan2.6: input.messages, negative_prompt in parameters, choices[]
    PROMPT = "prompt"  # legacy text-to-image: input.prompt, results[]
    EDIT = "edit"  # image edit: input.prompt + input.images, results[]
    IMAGEEDIT = "imageedit"  # wanx2.1-imageedit: input.function + input.base_image_url, results[]
    VIDEO = "video"  # Wan video: input.prompt (+ input.img_url), output.video_url


Mode = Literal["sync", "async", "both"]

BEIJING = "cn-beijing"
SINGAPORE = "ap-southeast-1"
VIRGINIA = "us-east-1"

ROUTE_FUNCTION = {
    Route.MULTIMODAL: "generation",
    Route.IMAGE_GENERATION: "generation",
    Route.TEXT2IMAGE: "image-synthesis",
    Route.IMAGE2IMAGE: "image-synthesis",
    Route.VIDEO: "video-synthesis",
}


@dataclass(frozen=True)
class SizeRule:
    """Either a total-pixel range with an aspect-ratio bound, or a per-side range."""

    default: tuple[int, int]
    min_pixels: int = 0
    max_pixels: int = 0
    max_ratio: float = 0.0
    min_side: int = 0
    max_side: int = 0

    def problem(self, width: int, height: int) -> str | None:
        """Why `width*height` is not allowed, or None when it is."""
        if self.min_side:
            if not (
                self.min_side <= width <= self.max_side and self.min_side <= height <= self.max_side
            ):
                return (
                    f"The size {width}*{height} is invalid: width and height must each be "
                    f"between {self.min_side} and {self.max_side} pixels."
                )
            return None
        pixels = width * height
        if not self.min_pixels <= pixels <= self.max_pixels:
            return (
                f"The size {width}*{height} is invalid: the total pixels ({pixels}) must be "
                f"between {self.min_pixels} and {self.max_pixels}."
            )
        if max(width, height) > self.max_ratio * min(width, height):
            return (
                f"The size {width}*{height} is invalid: the aspect ratio must be between "
                f"1:{self.max_ratio:g} and {self.max_ratio:g}:1."
            )
        return None


def sized_like(
    ratio: float,
    area: int,
    *,
    floor: float,
    allowed: Callable[[int, int], bool] = lambda width, height: True,
) -> tuple[int, int]:
    """A size of at most `area` pixels (and at least `floor` of it) in multiples of 8: of the
    sizes near the ideal that `allowed` takes, the truest to the aspect `ratio`."""
    ideal = int(math.sqrt(area * ratio)) // 8 * 8
    candidates = []
    for out_w in range(max(8, ideal - 16), ideal + 24, 8):
        out_h = max(8, round(out_w / ratio / 8) * 8)
        while out_w * out_h > area and out_h > 8:
            out_h -= 8
        if out_w * out_h >= floor * area and allowed(out_w, out_h):
            candidates.append((abs(out_w / out_h - ratio), -out_w * out_h, out_w, out_h))
    _, _, out_w, out_h = min(candidates)
    return out_w, out_h


# The docs give [1280*1280, 1440*1440] pixels yet recommend 1104*1472 and 960*1696, which fall
# just short of 1280*1280; the service must take its own recommendations, so the smallest of
# them is the floor here.
WAN_T2I_MIN_PIXELS = 1104 * 1472
WAN_T2I_SIZE = SizeRule(
    default=(1280, 1280), min_pixels=WAN_T2I_MIN_PIXELS, max_pixels=1440 * 1440, max_ratio=4
)
LEGACY_T2I_SIZE = SizeRule(default=(1024, 1024), min_side=512, max_side=1440)
EDIT_SIZE = SizeRule(
    default=(1280, 1280), min_pixels=768 * 768, max_pixels=1280 * 1280, max_ratio=4
)


@dataclass(frozen=True)
class VideoRules:
    """What a Wan video model takes (docs/dashscope.md §Video): image-to-video models read
    `input.img_url` and `parameters.resolution`, text-to-video ones `parameters.size`."""

    from_image: bool
    durations: tuple[int, ...]  # seconds it can make; 5 (in every list) is the default
    resolutions: tuple[str, ...]  # "480P", "720P", "1080P"; the last is the default
    audio: bool = False  # makes sound (`audio`, `audio_url`); on by default when it does
    shot_types: bool = False  # takes `shot_type` "single" | "multi"


@dataclass(frozen=True)
class ModelSpec:
    name: str
    protocol: Protocol
    routes: dict[Route, Mode]
    regions: frozenset[str]
    prompt_limit: int
    reject_long_prompt: bool  # wan2.6-t2i rejects an over-long prompt; the others truncate
    size: SizeRule
    submit_rps: int
    max_in_flight: int
    duration: tuple[float, float]  # typical seconds for n=1, before the speed divides it
    # Images a message may carry beside its text, as (fewest, most); (0, 0): text only.
    message_images: tuple[int, int] = (0, 0)
    # Without a size, the output takes the aspect ratio of this input (index into the images).
    size_from_input: int = -1
    video: VideoRules | None = None  # a video model's rules; None for the image models


def _legacy(name: str, prompt_limit: int, regions: frozenset[str], mode: Mode) -> ModelSpec:
    return ModelSpec(
        name=name,
        protocol=Protocol.PROMPT,
        routes={Route.TEXT2IMAGE: mode},
        regions=regions,
        prompt_limit=prompt_limit,
        reject_long_prompt=False,
        size=LEGACY_T2I_SIZE,
        submit_rps=2,
        max_in_flight=2,
        duration=(10.0, 30.0),
    )


_CN = frozenset({BEIJING})
_CN_SG = frozenset({BEIJING, SINGAPORE})
_SG = frozenset({SINGAPORE})

MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(
            name="wan2.6-t2i",
            protocol=Protocol.MESSAGES,
            routes={Route.MULTIMODAL: "sync", Route.IMAGE_GENERATION: "async"},
            regions=frozenset({BEIJING, SINGAPORE, VIRGINIA}),
            prompt_limit=2100,
            reject_long_prompt=True,
            size=WAN_T2I_SIZE,
            submit_rps=5,
            max_in_flight=5,
            duration=(15.0, 35.0),
        ),
        ModelSpec(
            name="wan2.5-t2i-preview",
            protocol=Protocol.PROMPT,
            routes={Route.TEXT2IMAGE: "async"},
            regions=_CN_SG,
            prompt_limit=2000,
            reject_long_prompt=False,
            size=WAN_T2I_SIZE,
            submit_rps=5,
            max_in_flight=5,
            duration=(10.0, 30.0),
        ),
        _legacy("wan2.2-t2i-plus", 500, _CN_SG, "both"),
        _legacy("wan2.2-t2i-flash", 500, _CN_SG, "both"),
        _legacy("wanx2.1-t2i-plus", 500, _CN, "async"),
        _legacy("wanx2.1-t2i-turbo", 500, _CN, "async"),
        _legacy("wan2.1-t2i-plus", 500, _SG, "async"),
        _legacy("wan2.1-t2i-turbo", 500, _SG, "async"),
        _legacy("wanx2.0-t2i-turbo", 800, _CN, "async"),
        ModelSpec(
            name="wan2.5-i2i-preview",
            protocol=Protocol.EDIT,
            routes={Route.IMAGE2IMAGE: "async"},
            regions=_CN_SG,
            prompt_limit=2000,
            reject_long_prompt=False,
            size=EDIT_SIZE,
            submit_rps=5,
            max_in_flight=5,
            duration=(30.0, 60.0),
        ),
        # One model, many functions (docs/dashscope.md §Image tools), its rules in
        # bot.simulator.imageedit. `size` bounds the base image: the result's follows the function.
        ModelSpec(
            name="wanx2.1-imageedit",
            protocol=Protocol.IMAGEEDIT,
            routes={Route.IMAGE2IMAGE: "async"},
            regions=_CN,
            prompt_limit=800,
            reject_long_prompt=False,
            size=SizeRule(default=(1024, 1024), min_side=512, max_side=4096),
            submit_rps=2,
            max_in_flight=2,
            duration=(10.0, 30.0),
        ),
    )
}

# Edit or blend 1–4 images with one text (edit mode); interleaved output needs streaming.
MODELS["wan2.6-image"] = replace(
    MODELS["wan2.6-t2i"],
    name="wan2.6-image",
    prompt_limit=2000,
    size=EDIT_SIZE,
    duration=(20.0, 45.0),
    message_images=(1, 4),
    size_from_input=0,
)

# The frame sizes of each video resolution: text-to-video takes one of them as `size` (the first is
# the default); image-to-video makes its tier's number of pixels in the input image's aspect.
VIDEO_SIZES: dict[str, tuple[tuple[int, int], ...]] = {
    "480P": ((832, 480), (480, 832), (624, 624)),
    "720P": ((1280, 720), (720, 1280), (960, 960), (1088, 832), (832, 1088)),
    "1080P": ((1920, 1080), (1080, 1920), (1440, 1440), (1632, 1248), (1248, 1632)),
}
VIDEO_INPUT_SIDES = (360, 2000)  # an image-to-video input's sides, px
VIDEO_NEGATIVE_LIMIT = 500
VIDEO_DEFAULT_SECONDS = 5


def _video(
    name: str,
    regions: frozenset[str],
    rules: VideoRules,
    prompt_limit: int,
    duration: tuple[float, float],
) -> ModelSpec:
    """A video model; `duration` is its typical running time for 5 s at 720P, which the
    simulator scales by the asked seconds and resolution."""
    return ModelSpec(
        name=name,
        protocol=Protocol.VIDEO,
        routes={Route.VIDEO: "async"},
        regions=regions,
        prompt_limit=prompt_limit,
        reject_long_prompt=True,
        size=SizeRule(
            default=VIDEO_SIZES[rules.resolutions[-1]][0],
            min_side=VIDEO_INPUT_SIDES[0],
            max_side=VIDEO_INPUT_SIDES[1],
        ),
        submit_rps=5,
        max_in_flight=2,
        duration=duration,
        video=rules,
    )


_ALL = ("480P", "720P", "1080P")
# The Wan video models, one row each (docs/dashscope.md §Video; regions UNCONFIRMED).
VIDEO_MODELS: tuple[ModelSpec, ...] = (
    _video(
        "wan2.6-i2v",
        _CN_SG,
        VideoRules(True, (5, 10, 15), ("720P", "1080P"), audio=True),
        1500,
        (60.0, 150.0),
    ),
    _video(
        "wan2.5-i2v-preview",
        _CN_SG,
        VideoRules(True, (5, 10), _ALL, audio=True),
        1500,
        (60.0, 150.0),
    ),
    _video(
        "wan2.2-i2v-plus", _CN_SG, VideoRules(True, (5,), ("480P", "1080P")), 800, (90.0, 180.0)
    ),
    _video(
        "wanx2.1-i2v-turbo", _CN, VideoRules(True, (3, 4, 5), ("480P", "720P")), 800, (40.0, 90.0)
    ),
    _video("wanx2.1-i2v-plus", _CN, VideoRules(True, (5,), ("720P",)), 800, (120.0, 240.0)),
    _video(
        "wan2.6-t2v",
        _CN_SG,
        VideoRules(False, (5, 10, 15), ("720P", "1080P"), audio=True, shot_types=True),
        1500,
        (60.0, 150.0),
    ),
    _video(
        "wan2.5-t2v-preview",
        _CN_SG,
        VideoRules(False, (5, 10), _ALL, audio=True),
        1500,
        (60.0, 150.0),
    ),
    _video(
        "wan2.2-t2v-plus", _CN_SG, VideoRules(False, (5,), ("480P", "1080P")), 800, (90.0, 180.0)
    ),
    _video("wanx2.1-t2v-turbo", _CN, VideoRules(False, (5,), ("480P", "720P")), 800, (40.0, 90.0)),
    _video("wanx2.1-t2v-plus", _CN, VideoRules(False, (5,), ("720P",)), 800, (120.0, 240.0)),
)
MODELS.update((spec.name, spec) for spec in VIDEO_MODELS)

# wanx2.1-imageedit's documented functions.
IMAGEEDIT_FUNCTIONS = (
    "stylization_all",
    "stylization_local",
    "description_edit",
    "description_edit_with_mask",
    "remove_watermark",
    "expand",
    "super_resolution",
    "colorization",
    "doodle",
    "control_cartoon_feature",
)

NEGATIVE_PROMPT_LIMIT = 500
MAX_SEED = 2_147_483_647
