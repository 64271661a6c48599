"""Per-model request validation, written from docs/dashscope.md §Bodies and §Models.

Deliberately independent of the bot's own client: a shared misreading would hide itself.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from bot.simulator.errors import (
    BODY_INVALID,
    EMPTY_INPUT,
    EMPTY_MODEL,
    ILLEGAL_INPUT,
    MODEL_NOT_EXIST,
    URL_ERROR,
    ApiError,
    invalid_parameter,
    parameter_invalid,
)
from bot.simulator.imageedit import ToolCall, parse_tool
from bot.simulator.models import (
    EDIT_SIZE,
    MAX_SEED,
    MODELS,
    NEGATIVE_PROMPT_LIMIT,
    ModelSpec,
    Protocol,
    Route,
    sized_like,
)
from bot.simulator.video import VideoCall, parse_video, t2v_size, video_image, video_texts

_SIZE = re.compile(r"\s*(\d{1,5})\s*\*\s*(\d{1,5})\s*")
MAX_INPUT_IMAGES = 3


@dataclass
class GenerationRequest:
    """A submit request that passed validation, with defaults filled in."""

    model: ModelSpec
    route: Route
    prompt: str
    negative_prompt: str
    n: int
    size: tuple[int, int] | None  # None: an edit whose size follows its last input image
    seed: int | None
    prompt_extend: bool
    watermark: bool
    images: list[str] = field(default_factory=list)
    interleave: bool = False  # wan2.6-image's mixed text-and-image output (streaming only)
    tool: ToolCall | None = None  # wanx2.1-imageedit's function and parameters
    video: VideoCall | None = None  # a video model's seconds, resolution, sound


def parse_body(raw: bytes) -> dict[str, Any]:
    if not raw.strip():
        raise ApiError.of(BODY_INVALID)
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ApiError.of(ILLEGAL_INPUT) from None
    if not isinstance(body, dict):
        raise ApiError.of(BODY_INVALID)
    return body


def resolve_model(body: dict[str, Any], route: Route, region: str) -> ModelSpec:
    name = body.get("model")
    if name is None or name == "":
        raise ApiError.of(EMPTY_MODEL)
    spec = MODELS.get(name) if isinstance(name, str) else None
    if spec is None or region not in spec.regions:
        raise ApiError.of(MODEL_NOT_EXIST)
    if route not in spec.routes:
        raise ApiError.of(URL_ERROR)
    return spec


def validate(spec: ModelSpec, route: Route, body: dict[str, Any]) -> GenerationRequest:
    payload = body.get("input")
    if payload is None:
        raise ApiError.of(EMPTY_INPUT)
    if not isinstance(payload, dict):
        raise parameter_invalid("input")
    params = body.get("parameters")
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise parameter_invalid("parameters")
    if spec.protocol is Protocol.VIDEO:
        return _video_request(spec, route, payload, params)

    images: list[str] = []
    if spec.protocol is Protocol.MESSAGES:
        prompt, images = _message_content(payload, spec)
        negative = params.get("negative_prompt")
    else:
        raw_prompt = payload.get("prompt")
        if not isinstance(raw_prompt, str) or not raw_prompt.strip():
            raise parameter_invalid("prompt")
        prompt = raw_prompt
        negative = payload.get("negative_prompt")
    if len(prompt) > spec.prompt_limit:
        if spec.reject_long_prompt:
            raise invalid_parameter(
                f"The prompt is too long: {len(prompt)} characters, "
                f"at most {spec.prompt_limit} are allowed."
            )
        prompt = prompt[: spec.prompt_limit]
    if negative is None:
        negative = ""
    if not isinstance(negative, str):
        raise parameter_invalid("negative_prompt")

    tool: ToolCall | None = None
    if spec.protocol is Protocol.EDIT:
        images = _image_list(payload.get("images"))
    elif spec.protocol is Protocol.IMAGEEDIT:
        tool, images = parse_tool(payload, params)

    size_text = params.get("size")
    if spec.protocol is Protocol.IMAGEEDIT:  # the function sizes the result; a size is ignored
        size = None
    elif size_text is None:
        size = None if images else spec.size.default
    else:
        size = parse_size(size_text)
        problem = spec.size.problem(*size)
        if problem:
            raise invalid_parameter(problem)

    interleave = bool(spec.message_images[1]) and _flag(params, "enable_interleave", default=False)
    n = _n(params.get("n"), default=1 if interleave or tool else 4)
    if interleave and n != 1:
        raise invalid_parameter("n must be 1 when enable_interleave is true.")
    return GenerationRequest(
        model=spec,
        route=route,
        prompt=prompt,
        negative_prompt=negative[:NEGATIVE_PROMPT_LIMIT],
        n=n,
        size=size,
        seed=_seed(params.get("seed")),
        prompt_extend=tool is None and _flag(params, "prompt_extend", default=True),
        watermark=_flag(params, "watermark", default=False),
        images=images,
        interleave=interleave,
        tool=tool,
    )


def _video_request(
    spec: ModelSpec, route: Route, payload: dict[str, Any], params: dict[str, Any]
) -> GenerationRequest:
    """A video request: one video, its size known now for text-to-video, from the image later."""
    prompt, negative = video_texts(spec, payload)
    images = video_image(spec, payload)
    video = parse_video(spec, payload, params)
    return GenerationRequest(
        model=spec,
        route=route,
        prompt=prompt,
        negative_prompt=negative,
        n=1,
        size=None if images else t2v_size(params, video.resolution),
        seed=_seed(params.get("seed")),
        prompt_extend=_flag(params, "prompt_extend", default=True),
        watermark=_flag(params, "watermark", default=False),
        images=images,
        video=video,
    )


def parse_size(text: Any) -> tuple[int, int]:
    match = _SIZE.fullmatch(text) if isinstance(text, str) else None
    if not match:
        raise invalid_parameter(
            f"The size {text!r} is invalid: use 'width*height' in pixels, e.g. '1280*1280'."
        )
    return int(match[1]), int(match[2])


def edit_default_size(width: int, height: int) -> tuple[int, int]:
    """About 1280*1280 pixels with the aspect ratio of the image (clamped to 1:4..4:1), in
    multiples of 8: of the sizes near the ideal that fit the pixel cap, the truest to the ratio."""
    ratio = min(max(width / height, 1 / EDIT_SIZE.max_ratio), EDIT_SIZE.max_ratio)
    return sized_like(
        ratio,
        EDIT_SIZE.max_pixels,
        floor=0.98,
        allowed=lambda out_w, out_h: EDIT_SIZE.problem(out_w, out_h) is None,
    )


def _message_content(payload: dict[str, Any], spec: ModelSpec) -> tuple[str, list[str]]:
    """The one user message's text and images: exactly one {"text"} and, for a model that
    takes them, its allowed number of {"image"} items (URLs or data URIs)."""
    messages = payload.get("messages")
    if not isinstance(messages, list) or not messages:
        raise parameter_invalid("messages")
    if len(messages) != 1:
        raise invalid_parameter("Only one message is allowed per request (single turn).")
    message = messages[0]
    if not isinstance(message, dict) or message.get("role") != "user":
        raise invalid_parameter("The role of the message must be user.")
    content = message.get("content")
    one_text = invalid_parameter(
        'Only one text is allowed per request: content must hold exactly one {"text": ...}.'
    )
    fewest, most = spec.message_images
    if not isinstance(content, list) or not all(
        isinstance(item, dict) and len(item) == 1 and set(item) <= {"text", "image"}
        for item in content
    ):
        raise one_text
    texts = [item["text"] for item in content if "text" in item]
    images = [item["image"] for item in content if "image" in item]
    if len(texts) != 1 or (images and not most):
        raise one_text
    if not fewest <= len(images) <= most:
        raise invalid_parameter(
            f"The number of input images is invalid: {len(images)}, "
            f"between {fewest} and {most} are allowed."
        )
    if not all(isinstance(image, str) and image for image in images):
        raise parameter_invalid("image")
    text = texts[0]
    if not isinstance(text, str) or not text.strip():
        raise parameter_invalid("text")
    return text, images


def _image_list(images: Any) -> list[str]:
    if not isinstance(images, list) or not images:
        raise parameter_invalid("images")
    if len(images) > MAX_INPUT_IMAGES:
        raise invalid_parameter(
            f"Too many input images: {len(images)}, at most {MAX_INPUT_IMAGES} are allowed."
        )
    if not all(isinstance(item, str) and item for item in images):
        raise parameter_invalid("images")
    return images


def _n(value: Any, default: int) -> int:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 4:
        raise invalid_parameter("Range of n should be [1, 4]")
    return value


def _seed(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_SEED:
        raise invalid_parameter(f"Range of seed should be [0, {MAX_SEED}]")
    return value


def _flag(params: dict[str, Any], name: str, *, default: bool) -> bool:
    value = params.get(name)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise parameter_invalid(name)
    return value
