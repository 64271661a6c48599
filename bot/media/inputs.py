"""Input images for edits: check them and make them acceptable to DashScope, or say what to change.

DashScope takes JPEG, PNG (no alpha), BMP and WEBP, each side 384–5000 px, at most 10 MB
(docs/dashscope.md §Input images). We fix what can be fixed without changing what the user meant:

* transparency is flattened onto white, CMYK / 16-bit / palette images become 8-bit RGB,
* EXIF rotation is applied, so the model sees the picture the way the user does,
* GIF and animated WEBP use their first frame,
* images over 5000 px on a side are scaled down, and files over the byte cap are re-encoded.

What cannot be fixed is refused: not an image, a decompression bomb, a side under 384 px, or a
shape so long and thin that no scaling fits both sides into 384–5000 px. A model with narrower
sides (wanx2.1-imageedit: 512–4096) passes its own `sides`.
The result is sent as a `data:` URI, so DashScope never fetches an expiring link.
"""

from __future__ import annotations

import base64
import io
import warnings
from dataclasses import dataclass

from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

from bot.dashscope.models import INPUT_MAX_BYTES, INPUT_MAX_SIDE, INPUT_MIN_SIDE, SideRange
from bot.errors import InputRejected

# Formats we can read and turn into something DashScope accepts.
READABLE = {"JPEG", "PNG", "WEBP", "BMP", "GIF", "MPO", "TIFF"}
# Formats DashScope accepts as they are (when the pixels need no change).
PASS_THROUGH = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp", "BMP": "image/bmp"}
# Opening more pixels than this is refused before decoding (decompression bombs).
MAX_PIXELS = 40_000_000
# A file larger than this is refused before it is even opened.
MAX_UPLOAD_BYTES = 50 * 1024 * 1024
# Each side of an edit's input image (docs/dashscope.md §Input images).
INPUT_SIDES = SideRange(INPUT_MIN_SIDE, INPUT_MAX_SIDE)
# EXIF orientations other than 1 (as stored) that exif_transpose acts on.
_ROTATING_ORIENTATIONS = frozenset(range(2, 9))


@dataclass(frozen=True)
class PreparedImage:
    data_uri: str
    width: int
    height: int
    mime: str
    byte_size: int
    changes: tuple[str, ...]  # what we did to it, for the user ("flattened transparency"…)


def prepare_image(data: bytes, index: int = 1, sides: SideRange = INPUT_SIDES) -> PreparedImage:
    """Validate and normalise one input image for a model taking `sides` (each side in
    pixels); raise `InputRejected` saying what to change."""
    if not data:
        raise InputRejected.one("image.empty", index=index)
    if len(data) > MAX_UPLOAD_BYTES:
        raise InputRejected.one(
            "image.too_many_bytes",
            index=index,
            size_mb=len(data) / 1e6,
            limit_mb=MAX_UPLOAD_BYTES / 1e6,
        )
    image = _open(data, index)
    changes: list[str] = []
    fmt = image.format or "?"
    if getattr(image, "is_animated", False):
        image.seek(0)
        changes.append("used the first frame")
    # exif_transpose returns a copy even when there is nothing to do, so ask first.
    if image.getexif().get(ExifTags.Base.Orientation, 1) in _ROTATING_ORIENTATIONS:
        image = ImageOps.exif_transpose(image)
        changes.append("applied EXIF rotation")
    image, flattened = _to_rgb(image)
    if flattened:
        changes.append(flattened)
    image = _fit_sides(image, index, changes, sides)

    if not changes and fmt in PASS_THROUGH and len(data) <= INPUT_MAX_BYTES:
        return _prepared(data, PASS_THROUGH[fmt], image.size, ())
    encoded, mime = _encode(image, changes, sides.min_side)
    return _prepared(encoded, mime, image.size, tuple(changes))


def _open(data: bytes, index: int) -> Image.Image:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            probe = Image.open(io.BytesIO(data))
            pixels = probe.width * probe.height
            if pixels > MAX_PIXELS:
                raise InputRejected.one("image.bomb", index=index, pixels=pixels)
            if probe.format not in READABLE:
                raise InputRejected.one("image.format", index=index, format=probe.format)
            probe.verify()  # structural check; the object is unusable afterwards
            image = Image.open(io.BytesIO(data))
            image.load()
            return image
    except InputRejected:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise InputRejected.one("image.bomb", index=index, pixels=MAX_PIXELS + 1) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError, IndexError):
        raise InputRejected.one("image.unreadable", index=index) from None


def _to_rgb(image: Image.Image) -> tuple[Image.Image, str | None]:
    """8-bit RGB with no alpha; transparency is composited onto white."""
    if image.mode == "RGB":
        return image, None
    has_alpha = image.mode in ("RGBA", "LA", "PA") or (
        image.mode == "P" and "transparency" in image.info
    )
    if has_alpha:
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background, "flattened transparency onto white"
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16/32-bit greyscale: scale into 8 bits rather than clipping. `point` only takes
        # native-order modes (I;16B raises "image has wrong mode"), so widen to "I" first.
        image = image.convert("I")
        extrema = image.getextrema()
        top = extrema[1] if isinstance(extrema, tuple) else 1
        high = max(1, int(top) if isinstance(top, int | float) else 1)
        eight = image.point(lambda v: v * 255 / high).convert("L")
        return eight.convert("RGB"), "converted to 8-bit colour"
    return image.convert("RGB"), "converted to RGB colour"


def _fit_sides(image: Image.Image, index: int, changes: list[str], sides: SideRange) -> Image.Image:
    width, height = image.size
    short, long = min(width, height), max(width, height)
    low, high = sides.min_side, sides.max_side
    # Scaling keeps the shape: both sides fit in [MIN, MAX] only if long/short <= MAX/MIN.
    if long * low > short * high:
        raise InputRejected.one(
            "image.too_thin", index=index, width=width, height=height, min_side=low, max_side=high
        )
    if short < low:
        raise InputRejected.one(
            "image.too_small", index=index, width=width, height=height, min_side=low
        )
    if long > high:
        scale = high / long
        new_size = (max(1, round(width * scale)), max(1, round(height * scale)))
        image = image.resize(new_size, Image.Resampling.LANCZOS)
        changes.append(f"scaled down to {new_size[0]}×{new_size[1]}")
    return image


def _encode(image: Image.Image, changes: list[str], min_side: int) -> tuple[bytes, str]:
    """PNG when it fits the byte cap (lossless), else JPEG, scaling down as a last resort."""
    buffer = io.BytesIO()
    image.save(buffer, "PNG", optimize=False, compress_level=6)
    if buffer.tell() <= INPUT_MAX_BYTES:
        return buffer.getvalue(), "image/png"
    while True:
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=92, optimize=True)
        if buffer.tell() <= INPUT_MAX_BYTES or min(image.size) <= min_side:
            changes.append("re-encoded as JPEG to fit the 7.5 MB limit")
            return buffer.getvalue(), "image/jpeg"
        scale = max(min_side / min(image.size), 0.8)
        image = image.resize(
            (round(image.width * scale), round(image.height * scale)), Image.Resampling.LANCZOS
        )


def _prepared(
    data: bytes, mime: str, size: tuple[int, int], changes: tuple[str, ...]
) -> PreparedImage:
    uri = f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"
    return PreparedImage(uri, size[0], size[1], mime, len(data), changes)
