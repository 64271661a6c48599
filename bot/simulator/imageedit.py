"""wanx2.1-imageedit's rules: one model, many functions (docs/dashscope.md §Image tools).

The body: `input.function`, `input.prompt`, `input.base_image_url` (a URL or a data URI, each side
512–4096 px) and, for description_edit_with_mask only, `input.mask_image_url` (the base image's
size); `parameters` n (1–4, default 1), seed, watermark, strength (0.0–1.0, default 0.5),
top/bottom/left/right_scale (1.0–2.0, default 1.0) and upscale_factor (1–4, default 1). Each
parameter is checked wherever it appears; a function it does not concern ignores it.

The result's size follows the function: super_resolution multiplies both sides by
upscale_factor; expand grows the canvas by its four scales, each the factor of its half of the
image measured from the centre (our reading, UNCONFIRMED upstream: all four at 2.0 double both
sides with the image centred; left_scale 2.0 alone makes it 1.5 times as wide with the image at
the right); every other function keeps the base image's size.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bot.simulator.errors import invalid_parameter, parameter_invalid
from bot.simulator.models import IMAGEEDIT_FUNCTIONS

SUPER_RESOLUTION = "super_resolution"
EXPAND = "expand"
WITH_MASK = "description_edit_with_mask"
SCALE_NAMES = ("top_scale", "bottom_scale", "left_scale", "right_scale")
STRENGTH_RANGE = (0.0, 1.0)
SCALE_RANGE = (1.0, 2.0)
UPSCALE_RANGE = (1, 4)
# The simulator's own bound on a result (DashScope's is unconfirmed): one request must not take
# gigabytes to draw. 4096 px ×2 still fits.
MAX_RESULT_SIDE = 8192


@dataclass(frozen=True)
class ToolCall:
    """A wanx2.1-imageedit request's function and its parameters, defaults filled in."""

    function: str
    strength: float = 0.5
    scales: tuple[float, float, float, float] = (1.0, 1.0, 1.0, 1.0)  # top, bottom, left, right
    upscale_factor: int = 1

    def placement(self, width: int, height: int) -> tuple[tuple[int, int], tuple[int, int]]:
        """The result's size for a `width`×`height` base image, and where the base image's
        top-left corner lies on it (expand) or (0, 0)."""
        if self.function == SUPER_RESOLUTION:
            return (width * self.upscale_factor, height * self.upscale_factor), (0, 0)
        if self.function != EXPAND:
            return (width, height), (0, 0)
        top, bottom, left, right = self.scales
        x, y = round((left - 1) * width / 2), round((top - 1) * height / 2)
        grown = (
            x + width + round((right - 1) * width / 2),
            y + height + round((bottom - 1) * height / 2),
        )
        return grown, (x, y)

    def result_size(self, width: int, height: int) -> tuple[int, int]:
        """The result's size, or the InvalidParameter the simulator answers when too large."""
        size, _ = self.placement(width, height)
        if max(size) > MAX_RESULT_SIDE:
            raise invalid_parameter(
                f"The result would be {size[0]}*{size[1]} pixels: the simulator makes images of "
                f"at most {MAX_RESULT_SIDE} pixels a side."
            )
        return size


def _number(params: dict[str, Any], name: str, bounds: tuple[float, float], default: float) -> Any:
    value = params.get(name)
    if value is None:
        return default
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not bounds[0] <= value <= bounds[1]
    ):
        raise invalid_parameter(f"Range of {name} should be [{bounds[0]}, {bounds[1]}]")
    return value


def _source(payload: dict[str, Any], name: str) -> str:
    value = payload.get(name)
    if not isinstance(value, str) or not value.strip():
        raise parameter_invalid(name)
    return value


def parse_tool(payload: dict[str, Any], params: dict[str, Any]) -> tuple[ToolCall, list[str]]:
    """The function and its parameters, and the image sources: the base image, then the mask
    (description_edit_with_mask). ApiError names what is missing or out of range."""
    function = payload.get("function")
    if function is None or function == "":
        raise parameter_invalid("function")
    if function not in IMAGEEDIT_FUNCTIONS:
        raise invalid_parameter(
            f"The function {function!r} is not supported, it must be one of: "
            f"{', '.join(IMAGEEDIT_FUNCTIONS)}."
        )
    sources = [_source(payload, "base_image_url")]
    if function == WITH_MASK:
        sources.append(_source(payload, "mask_image_url"))
    factor = _number(params, "upscale_factor", UPSCALE_RANGE, 1)
    if not isinstance(factor, int):
        raise invalid_parameter(
            f"Range of upscale_factor should be [{UPSCALE_RANGE[0]}, {UPSCALE_RANGE[1]}]"
        )
    top, bottom, left, right = (_number(params, n, SCALE_RANGE, 1.0) for n in SCALE_NAMES)
    tool = ToolCall(
        function=function,
        strength=float(_number(params, "strength", STRENGTH_RANGE, 0.5)),
        scales=(float(top), float(bottom), float(left), float(right)),
        upscale_factor=factor,
    )
    return tool, sources


def check_mask(base: tuple[int, int], mask: tuple[int, int]) -> None:
    if base != mask:
        raise invalid_parameter(
            f"The mask image must be the size of the base image: the mask is "
            f"{mask[0]}*{mask[1]}, the base image {base[0]}*{base[1]}."
        )
