"""Result PNGs, drawn with Pillow: deterministic, cheap, and recognisably tied to their request.

A generation is a gradient with a few shapes: the colours come from the prompt, the layout from
prompt and seed, and the prompt is written on it. An edit visibly transforms its input images.
Drawing happens at a small size and is scaled up, so a 1280*1280 PNG takes tens of milliseconds.
The image tools work on the whole base image: an upscale is it resized, an expansion keeps its
pixels where they were on a larger canvas, the other functions change it as much as `strength`.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from functools import lru_cache

from PIL import Image, ImageDraw, ImageFilter, ImageFont, ImageOps

from bot.simulator.imageedit import EXPAND, SUPER_RESOLUTION, ToolCall

DRAW_SIDE = 256  # the longest side of the small canvas


def _digest(*parts: object) -> bytes:
    return hashlib.sha256("\x00".join(map(str, parts)).encode()).digest()


def _colour(digest: bytes, at: int) -> tuple[int, int, int]:
    return digest[at % 32], digest[(at + 1) % 32], digest[(at + 2) % 32]


@lru_cache(maxsize=16)
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def _small_size(width: int, height: int) -> tuple[int, int]:
    scale = DRAW_SIDE / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def caption(image: Image.Image, prompt: str, watermark: bool) -> None:
    """Write the prompt at the bottom of `image` and, with `watermark`, "AI-generated"."""
    width, height = image.size
    size = max(12, min(width, height) // 28)
    font = _font(size)
    draw = ImageDraw.Draw(image)
    room = max(8, int(width / (size * 0.55)) - 4)
    text = " ".join(prompt.split())
    if len(text) > room:
        text = text[: room - 1] + "…"
    margin = size
    if text:
        draw.text(
            (margin, height - margin - size),
            text,
            font=font,
            fill=(255, 255, 255),
            stroke_width=max(1, size // 10),
            stroke_fill=(0, 0, 0),
        )
    if watermark:
        draw.text(
            (width - margin, height - margin - 2 * size),
            "AI-generated",
            font=font,
            anchor="ra",
            fill=(255, 255, 255),
            stroke_width=max(1, size // 10),
            stroke_fill=(0, 0, 0),
        )


def _png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, "PNG", compress_level=1)
    return out.getvalue()


def render_generation(
    prompt: str, seed: int, width: int, height: int, *, watermark: bool = False
) -> bytes:
    """A text-to-image result: same arguments, same bytes."""
    return _png(draw_generation(prompt, seed, width, height, watermark=watermark))


def draw_generation(
    prompt: str,
    seed: int,
    width: int,
    height: int,
    *,
    watermark: bool = False,
    captioned: bool = True,
) -> Image.Image:
    """The picture of a text-to-image result (and, without its caption, a text-to-video's)."""
    palette = _digest("palette", prompt)
    layout = _digest("layout", prompt, seed)
    small = _small_size(width, height)
    mask = Image.linear_gradient("L").rotate(layout[0] * 360 / 256, expand=True).resize(small)
    canvas = Image.composite(
        Image.new("RGB", small, _colour(palette, 0)),
        Image.new("RGB", small, _colour(palette, 3)),
        mask,
    )
    draw = ImageDraw.Draw(canvas)
    sw, sh = small
    for shape in range(5):
        b = layout[4 + shape * 5 : 9 + shape * 5]
        x, y = b[0] * sw // 256, b[1] * sh // 256
        radius = 8 + b[2] * min(sw, sh) // 640
        box = (x - radius, y - radius, x + radius, y + radius)
        fill = _colour(palette, 6 + shape * 3)
        if b[3] % 3 == 0:
            draw.ellipse(box, fill=fill)
        elif b[3] % 3 == 1:
            draw.rectangle(box, fill=fill)
        else:
            draw.polygon(
                [(x, y - radius), (x + radius, y + radius), (x - radius, y + radius)], fill=fill
            )
    image = canvas.resize((width, height), Image.Resampling.BILINEAR)
    if captioned:
        caption(image, prompt, watermark)
    return image


def _transform(image: Image.Image, digest: bytes) -> Image.Image:
    """A prompt-and-seed-chosen change that is plain to see."""
    choice = digest[0] % 4
    if choice == 0:
        image = ImageOps.posterize(image, 2)
    elif choice == 1:
        image = ImageOps.mirror(image)
    elif choice == 2:
        r, g, b = image.split()
        image = Image.merge("RGB", (b, r, g))
    else:
        image = ImageOps.solarize(image, threshold=128)
    tint = Image.new("RGB", image.size, _colour(digest, 1))
    return Image.blend(image, tint, 0.3)


def _edited(
    images: list[Image.Image], small: tuple[int, int], index: int, digest: bytes
) -> Image.Image:
    """The last input (then the others in turn, for later images) fitted to the canvas and
    transformed, with the remaining inputs inset as thumbnails."""
    base_at = (len(images) - 1 + index) % len(images)
    canvas = _transform(ImageOps.fit(images[base_at], small), digest)
    thumb_side = max(16, min(small) // 4)
    offset = 4
    for at, other in enumerate(images):
        if at == base_at:
            continue
        thumb = ImageOps.fit(other, (thumb_side, thumb_side))
        canvas.paste(ImageOps.expand(thumb, border=2, fill=(255, 255, 255)), (offset, 4))
        offset += thumb_side + 8
    return canvas


def _tiles(width: int, height: int, count: int) -> list[tuple[int, int, int, int]]:
    """Boxes splitting a canvas for `count` inputs: strips along the longer side, 2×2 for four."""
    if count == 4:
        w, h = width // 2, height // 2
        return [(x, y, x + w, y + h) for y in (0, h) for x in (0, w)]
    if width >= height:
        step = width // count
        return [(i * step, 0, (i + 1) * step, height) for i in range(count)]
    step = height // count
    return [(0, i * step, width, (i + 1) * step) for i in range(count)]


def _blended(
    images: list[Image.Image], small: tuple[int, int], index: int, digest: bytes
) -> Image.Image:
    """Every input as one tile of the canvas, starting from a later input for each later
    image, lightly tinted: a viewer can tell each input was used."""
    start = index % len(images)
    canvas = Image.new("RGB", small)
    order = images[start:] + images[:start]
    for image, box in zip(order, _tiles(*small, len(order)), strict=True):
        canvas.paste(ImageOps.fit(image, (box[2] - box[0], box[3] - box[1])), box[:2])
    return Image.blend(canvas, Image.new("RGB", small, _colour(digest, 1)), 0.15)


def render_edit(
    prompt: str,
    seed: int,
    width: int,
    height: int,
    inputs: Sequence[bytes],
    index: int,
    *,
    watermark: bool = False,
    blend: bool = False,
) -> bytes:
    """A result made from input images: an edit transforms one and insets the others; a blend
    (wan2.6-image) tiles them all."""
    images = [Image.open(io.BytesIO(data)).convert("RGB") for data in inputs]
    small = _small_size(width, height)
    if blend:
        canvas = _blended(images, small, index, _digest("blend", prompt, seed))
    else:
        canvas = _edited(images, small, index, _digest("edit", prompt, seed))
    image = canvas.resize((width, height), Image.Resampling.BILINEAR)
    caption(image, prompt, watermark)
    return _png(image)


def render_imageedit(
    tool: ToolCall, prompt: str, seed: int, inputs: Sequence[bytes], *, watermark: bool = False
) -> bytes:
    """A wanx2.1-imageedit result from the whole base image (`inputs[0]`; `inputs[1]` the mask)."""
    base = Image.open(io.BytesIO(inputs[0])).convert("RGB")
    digest = _digest("imageedit", tool.function, prompt, seed)
    (width, height), at = tool.placement(*base.size)
    text = ""  # an upscale or an expansion keeps the base image's pixels: no caption on them
    if tool.function == SUPER_RESOLUTION:
        image = base.resize((width, height), Image.Resampling.BICUBIC)
    elif tool.function == EXPAND:
        # Around the image: itself stretched, blurred and tinted, drawn small and scaled up.
        small = _small_size(width, height)
        around = ImageOps.fit(base, small).filter(ImageFilter.GaussianBlur(6))
        around = Image.blend(around, Image.new("RGB", small, _colour(digest, 1)), 0.35)
        image = around.resize((width, height), Image.Resampling.BILINEAR)
        image.paste(base, at)
    else:
        changed = Image.blend(base, _transform(base, digest), 0.35 + 0.65 * tool.strength)
        if len(inputs) > 1:  # only where the mask is white
            mask = Image.open(io.BytesIO(inputs[1])).convert("L")
            changed = Image.composite(changed, base, mask)
        image = changed
        text = prompt
    caption(image, text, watermark)
    return _png(image)


class RenderCache:
    """The last few rendered PNGs; concurrent requests for one image share one rendering."""

    def __init__(self, size: int = 16) -> None:
        self.size = size
        self._items: OrderedDict[Hashable, asyncio.Future[bytes]] = OrderedDict()

    async def get(self, key: Hashable, render: Callable[[], bytes]) -> bytes:
        future = self._items.get(key)
        if future is None:
            future = asyncio.ensure_future(asyncio.to_thread(render))
            self._items[key] = future
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        else:
            self._items.move_to_end(key)
        try:
            return await asyncio.shield(future)
        except Exception:
            self._items.pop(key, None)
            raise

    def clear(self) -> None:
        self._items.clear()
