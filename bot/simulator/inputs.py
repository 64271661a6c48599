"""Input images of an edit: `data:` URIs or http(s) URLs, checked as docs/dashscope.md §Input images
says the service does.

Formats JPEG, PNG (no alpha), BMP, WEBP; each side 384–5000 px (wanx2.1-imageedit: 512–4096);
at most 10 MB decoded. What is kept is a downscaled copy, enough to render an edit from, and for
the image tools the whole image as a PNG, whose pixels their results keep.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import io
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial

import aiohttp
from PIL import Image, UnidentifiedImageError

from bot.simulator.errors import DOWNLOAD_FAILED, DOWNLOAD_TIMEOUT, ApiError, invalid_parameter

MAX_IMAGE_BYTES = 10 * 1024 * 1024
MIN_SIDE, MAX_SIDE = 384, 5000
FORMATS = {"JPEG", "PNG", "BMP", "WEBP"}
KEPT_SIDE = 512  # the copy kept for rendering
FETCH_TIMEOUT = aiohttp.ClientTimeout(total=5.0, sock_connect=2.0)

_DATA_URI = re.compile(r"data:(?P<mime>[\w.+/-]+);base64,(?P<data>.*)", re.DOTALL | re.IGNORECASE)
_MIMES = {"image/jpeg", "image/jpg", "image/png", "image/bmp", "image/webp"}


@dataclass(frozen=True)
class InputImage:
    width: int
    height: int
    format: str
    kept: bytes  # PNG, longest side at most KEPT_SIDE
    full: bytes = b""  # PNG of the whole image, when asked for


def _invalid_format(detail: str) -> ApiError:
    return invalid_parameter(
        f"The input image is in invalid format: {detail}. "
        "Supported formats are JPEG, PNG, BMP and WEBP."
    )


def _too_large(size: int, limit: int = MAX_IMAGE_BYTES, what: str = "input image") -> ApiError:
    return invalid_parameter(
        f"The {what} is too large: {size} bytes, at most {limit} ({limit >> 20} MB) allowed."
    )


def _png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, "PNG", compress_level=1)
    return out.getvalue()


def decode_image(
    data: bytes,
    position: int | str,
    sides: tuple[int, int] = (MIN_SIDE, MAX_SIDE),
    *,
    keep_full: bool = False,
) -> InputImage:
    """Check one image's bytes and keep a small copy (and the whole image with `keep_full`);
    ApiError says what is wrong. `position` is the image's number, or the field it came in."""
    name = _name(position)
    if len(data) > MAX_IMAGE_BYTES:
        raise _too_large(len(data))
    try:
        image = Image.open(io.BytesIO(data))
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        raise _invalid_format(f"{name} is not a readable image") from None
    source_format = str(image.format)
    if source_format not in FORMATS:
        raise _invalid_format(f"{name} is {source_format}")
    width, height = image.size
    low, high = sides
    if not (low <= width <= high and low <= height <= high):
        raise invalid_parameter(
            f"The image resolution is invalid: {name} is {width}*{height}, "
            f"each side must be between {low} and {high} pixels."
        )
    if source_format == "PNG" and (
        image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info
    ):
        raise _invalid_format(f"{name} is a PNG with an alpha channel")
    try:
        if not keep_full:
            image.draft("RGB", (KEPT_SIDE, KEPT_SIDE))
        converted = image.convert("RGB")
    except Exception:  # a decoder may fail in many ways on hostile bytes
        raise _invalid_format(f"{name} is truncated or corrupt") from None
    full = _png(converted) if keep_full else b""
    converted.thumbnail((KEPT_SIDE, KEPT_SIDE))
    return InputImage(width, height, source_format, _png(converted), full)


def _name(position: int | str) -> str:
    return f"image {position}" if isinstance(position, int) else position


def _data_uri_bytes(match: re.Match[str], position: int | str) -> bytes:
    if match["mime"].lower() not in _MIMES:
        raise _invalid_format(f"{_name(position)} has MIME type {match['mime']}")
    encoded = "".join(match["data"].split())
    if len(encoded) * 3 // 4 > MAX_IMAGE_BYTES + 2:
        raise _too_large(len(encoded) * 3 // 4)
    try:
        return base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise _invalid_format(f"{_name(position)} is not valid base64") from None


async def download(
    url: str,
    session: aiohttp.ClientSession,
    limit: int = MAX_IMAGE_BYTES,
    what: str = "input image",
) -> bytes:
    """A media URL's bytes, or the refusal the service gives for one it cannot fetch (or that is
    over `limit` bytes)."""
    try:
        async with session.get(url, timeout=FETCH_TIMEOUT, allow_redirects=True) as response:
            if response.status != 200:
                raise ApiError.of(DOWNLOAD_FAILED)
            chunks: list[bytes] = []
            total = 0
            async for chunk in response.content.iter_chunked(64 * 1024):
                total += len(chunk)
                if total > limit:
                    raise _too_large(total, limit, what)
                chunks.append(chunk)
            return b"".join(chunks)
    except TimeoutError:
        raise ApiError.of(DOWNLOAD_TIMEOUT) from None
    except (aiohttp.ClientError, ValueError):
        raise ApiError.of(DOWNLOAD_FAILED) from None


async def load_images(
    sources: list[str],
    session: aiohttp.ClientSession,
    sides: tuple[int, int] = (MIN_SIDE, MAX_SIDE),
    *,
    names: Sequence[str] = (),
    keep_full: bool = False,
) -> list[InputImage]:
    """Fetch or decode each source in order; the first bad one raises its ApiError. `names`
    (the fields the sources came in) stand for "image 1", "image 2"... in messages."""
    images: list[InputImage] = []
    for number, source in enumerate(sources, start=1):
        position: int | str = names[number - 1] if names else number
        match = _DATA_URI.fullmatch(source)
        if match:
            data = _data_uri_bytes(match, position)
        elif source.lower().startswith(("http://", "https://")):
            data = await download(source, session)
        else:
            raise invalid_parameter(
                f"The image source is invalid: {_name(position)} must be an http(s) URL "
                "or a data:image/...;base64 URI."
            )
        decoded = await asyncio.to_thread(
            partial(decode_image, data, position, sides, keep_full=keep_full)
        )
        images.append(decoded)
    return images
