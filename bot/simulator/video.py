"""The Wan video models' request rules (docs/dashscope.md §Video), on
`POST /services/aigc/video-generation/video-synthesis` (asynchronous only).

`input`: `prompt` (text-to-video: required; image-to-video: optional motion text),
`negative_prompt`, `img_url` (image-to-video only: a URL or data URI, 360–2000 px a side,
at most 10 MB), `audio_url` (models with sound only: an http(s) URL of a 3–30 s sound file of
at most 15 MB, which the video then carries). The SDK also sends `extend_prompt` and
`function`, which are ignored. `parameters`: `resolution` (image-to-video) or `size`
(text-to-video) from the model's list, `duration` (seconds, from the model's list, default 5),
`prompt_extend` (default on), `audio` (models with sound; default on), `shot_type`
("single" | "multi", the latter needing prompt_extend; wan2.6-t2v only), `seed`, `watermark`.

Refusals are 400 InvalidParameter naming what to change. How long a task runs grows with the
seconds asked and the resolution (`work_factor`).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import aiohttp

from bot.simulator.clip import SAMPLE_RATE, decode_soundtrack
from bot.simulator.errors import ApiError, invalid_parameter, parameter_invalid
from bot.simulator.inputs import download
from bot.simulator.models import (
    VIDEO_DEFAULT_SECONDS,
    VIDEO_NEGATIVE_LIMIT,
    VIDEO_SIZES,
    ModelSpec,
    VideoRules,
    sized_like,
)

# Other image fields the SDK can send (keyframe models'); none of the modelled models takes them.
KEYFRAME_FIELDS = ("first_frame_url", "last_frame_url", "head_frame", "tail_frame")
SHOT_TYPES = ("single", "multi")
# How much longer than 720P a resolution takes to make (the simulator's own figures).
RESOLUTION_WORK = {"480P": 0.6, "720P": 1.0, "1080P": 1.7}
MAX_AUDIO_BYTES = 15 * 1024 * 1024
AUDIO_SECONDS = (3, 30)


@dataclass(frozen=True)
class VideoCall:
    """A video request's settings, defaults filled in."""

    seconds: int
    resolution: str  # "480P", "720P" or "1080P"
    audio: bool
    shot_type: str = "single"
    audio_url: str | None = None

    @property
    def sr(self) -> int:
        """The resolution's number, as `usage.SR` reports it."""
        return int(self.resolution.rstrip("P"))

    def work_factor(self) -> float:
        """How much longer than a 5 s 720P clip this one takes to make."""
        return self.seconds / VIDEO_DEFAULT_SECONDS * RESOLUTION_WORK[self.resolution]


def _rules(spec: ModelSpec) -> VideoRules:
    assert spec.video is not None
    return spec.video


def _one_of(name: str, value: Any, allowed: tuple[Any, ...], model: str) -> ApiError:
    listed = ", ".join(str(item) for item in allowed)
    return invalid_parameter(
        f"The {name} {value!r} is not supported by {model}: use one of {listed}."
    )


def _text(payload: dict[str, Any], name: str, limit: int, *, required: bool) -> str:
    value = payload.get(name)
    if value is None or (value == "" and not required):
        if required:
            raise parameter_invalid(name)
        return ""
    if not isinstance(value, str) or (required and not value.strip()):
        raise parameter_invalid(name)
    if len(value) > limit:
        raise invalid_parameter(
            f"The {name} is too long: {len(value)} characters, at most {limit} are allowed."
        )
    return value


def video_texts(spec: ModelSpec, payload: dict[str, Any]) -> tuple[str, str]:
    """The prompt and negative prompt: a text-to-video model needs a prompt."""
    prompt = _text(payload, "prompt", spec.prompt_limit, required=not _rules(spec).from_image)
    negative = _text(payload, "negative_prompt", VIDEO_NEGATIVE_LIMIT, required=False)
    return prompt, negative


def video_image(spec: ModelSpec, payload: dict[str, Any]) -> list[str]:
    """The image sources: `[img_url]` for an image-to-video model, none for text-to-video."""
    rules = _rules(spec)
    keyframes = [name for name in KEYFRAME_FIELDS if payload.get(name)]
    if keyframes:
        raise invalid_parameter(
            f"{spec.name} does not take {keyframes[0]}: "
            + ("send the image as img_url." if rules.from_image else "it makes videos from text.")
        )
    image = payload.get("img_url")
    if not rules.from_image:
        if image:
            raise invalid_parameter(
                f"{spec.name} makes videos from text and takes no img_url: "
                "use an image-to-video model to animate an image."
            )
        return []
    if not isinstance(image, str) or not image.strip():
        raise parameter_invalid("img_url")
    return [image]


def parse_video(spec: ModelSpec, payload: dict[str, Any], params: dict[str, Any]) -> VideoCall:
    """The parameters of a video request (the texts and image are read apart)."""
    rules = _rules(spec)
    seconds = params.get("duration")
    if seconds is None:
        seconds = VIDEO_DEFAULT_SECONDS
    if isinstance(seconds, bool) or not isinstance(seconds, int) or seconds not in rules.durations:
        raise _one_of("duration", seconds, rules.durations, spec.name)
    resolution = _resolution(spec, params)
    audio_url = payload.get("audio_url")
    if audio_url is not None and not rules.audio:
        raise invalid_parameter(f"{spec.name} makes silent videos and takes no audio_url.")
    if audio_url is not None and (
        not isinstance(audio_url, str) or not audio_url.lower().startswith(("http://", "https://"))
    ):
        raise parameter_invalid("audio_url")
    audio = params.get("audio")
    if audio is None:
        audio = rules.audio
    if not isinstance(audio, bool):
        raise parameter_invalid("audio")
    if audio and not rules.audio:
        raise invalid_parameter(f"{spec.name} makes silent videos: audio must be false.")
    shot_type = params.get("shot_type")
    if shot_type is None:
        shot_type = "single"
    elif not rules.shot_types:
        raise invalid_parameter(f"{spec.name} does not take shot_type.")
    elif shot_type not in SHOT_TYPES:
        raise _one_of("shot_type", shot_type, SHOT_TYPES, spec.name)
    if shot_type == "multi" and params.get("prompt_extend") is False:
        raise invalid_parameter('shot_type "multi" needs prompt_extend to be true.')
    return VideoCall(
        seconds=seconds,
        resolution=resolution,
        audio=audio or audio_url is not None,
        shot_type=shot_type,
        audio_url=audio_url,
    )


def _resolution(spec: ModelSpec, params: dict[str, Any]) -> str:
    """The resolution asked: `resolution` for image-to-video, the tier of `size` for
    text-to-video (each model takes only its own field)."""
    rules = _rules(spec)
    own, other = ("resolution", "size") if rules.from_image else ("size", "resolution")
    if params.get(other) is not None:
        raise invalid_parameter(
            f"{spec.name} takes parameters.{own}, not {other}: "
            + (
                "the video keeps the input image's aspect ratio."
                if rules.from_image
                else "choose the video's size as 'width*height'."
            )
        )
    value = params.get(own)
    if rules.from_image:
        if value is None:
            return rules.resolutions[-1]
        text = value.upper() if isinstance(value, str) else value
        if text not in rules.resolutions:
            raise _one_of("resolution", value, rules.resolutions, spec.name)
        return str(text)
    sizes = {f"{w}*{h}": tier for tier in rules.resolutions for w, h in VIDEO_SIZES[tier]}
    if value is None:
        return rules.resolutions[-1]
    text = "".join(value.split()) if isinstance(value, str) else ""
    if text not in sizes:
        raise _one_of("size", value, tuple(sizes), spec.name)
    return sizes[text]


def t2v_size(params: dict[str, Any], resolution: str) -> tuple[int, int]:
    """A text-to-video request's frame size: its `size`, or its tier's first (16:9)."""
    value = params.get("size")
    if isinstance(value, str):
        width, _, height = "".join(value.split()).partition("*")
        return int(width), int(height)
    return VIDEO_SIZES[resolution][0]


def i2v_size(width: int, height: int, resolution: str) -> tuple[int, int]:
    """An image-to-video frame size: the tier's pixels (those of its 16:9 size) in the input
    image's aspect ratio, in multiples of 8."""
    tier_w, tier_h = VIDEO_SIZES[resolution][0]
    return sized_like(width / height, tier_w * tier_h, floor=0.95)


async def load_audio(url: str, session: aiohttp.ClientSession) -> bytes:
    """`audio_url`'s sound, decoded (at most 15 MB, 3–30 s), or the refusal naming what is
    wrong; a URL that cannot be fetched is refused as an image's is."""
    data = await download(url, session, MAX_AUDIO_BYTES, "input audio")
    try:
        samples = await asyncio.to_thread(decode_soundtrack, data)
    except ValueError:
        raise invalid_parameter(
            "The input audio is in invalid format: audio_url is not a readable audio file. "
            "Supported formats are WAV and MP3."
        ) from None
    seconds = len(samples) / 4 / SAMPLE_RATE
    low, high = AUDIO_SECONDS
    if not low <= seconds <= high:
        raise invalid_parameter(
            f"The input audio's duration is invalid: {seconds:.1f} s, "
            f"it must be between {low} and {high} seconds."
        )
    return samples
