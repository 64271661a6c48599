"""Helpers shared by the benchmarks: progress output, percentiles, inputs, stand-ins."""

from __future__ import annotations

import io
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from PIL import Image

from bot.dispatch.delivery import DeliveredImage
from bot.jobs.model import Job
from bot.media.downloads import Download
from bot.media.inputs import prepare_image

KEY = "sk-bench-0123456789abcdef"
EDIT_MODEL = "wan2.5-i2i-preview"
_STARTED = time.monotonic()


def progress(message: str) -> None:
    print(f"[{time.monotonic() - _STARTED:6.1f}s] {message}", file=sys.stderr, flush=True)


def rss_mb(pid: int) -> float:
    """A process's resident memory (VmRSS), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def percentile(values: Sequence[float], pct: float) -> float | None:
    """The nearest-rank percentile (pct in 0..100), or None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


def rounded(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return round(a / b, 3)


def edit_image_uri(colour: tuple[int, int, int] = (90, 140, 200)) -> str:
    """A small valid input image for the edit model, as the data: URI the bot would send."""
    image = Image.new("RGB", (512, 512), colour)
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return prepare_image(buffer.getvalue()).data_uri


class StubFetcher:
    """Hands back a tiny PNG for any result URL, so a benchmark of polling does not also
    measure the simulator drawing and the engine downloading 1280*1280 images."""

    def __init__(self) -> None:
        buffer = io.BytesIO()
        Image.new("RGB", (8, 8)).save(buffer, "PNG")
        self.png = buffer.getvalue()

    async def fetch(self, url: str, *, video: bool = False) -> Download:
        return Download(url, self.png, "image/png")


class NullDelivery:
    """A delivery port that only counts."""

    def __init__(self) -> None:
        self.delivered: dict[int, int] = {}
        self.failures: dict[int, str] = {}

    async def status_changed(self, job: Job, position: int | None = None) -> None:
        return None

    async def deliver(self, job: Job, images: list[DeliveredImage]) -> list[int | None]:
        self.delivered[job.id] = len(images)
        return [job.id * 10 + image.position for image in images]

    async def failed(self, job: Job, message: str) -> None:
        self.failures[job.id] = message

    async def place_again(self, job: Job) -> tuple[int | None, int | None] | None:
        return (None, None)


def dump(document: dict[str, Any]) -> None:
    import json

    print(json.dumps(document, indent=2))
