"""Result MP4s, encoded with PyAV: real H.264 (yuv420p) of the asked size and length, at a low
frame rate so they stay small and quick to make, with an AAC tone when the video has sound.

The picture is a still (the input image for image-to-video, a drawn generation for
text-to-video) that the camera pans across, with a bar that grows along the bottom edge, so
every frame differs. Frames are cut from the still's YUV planes directly: no per-frame
resampling. Same `ClipSpec`, same bytes; recent clips are kept (`encode_clip`) so tests that
fetch one clip many times encode it once.

`target_mb` makes a clip at least that large, for tests of upload caps: the frames are covered
in noise and encoded at the bitrate that size needs (any shortfall is made up by an MP4 `free`
box, which players skip). A video given `audio_url` carries that sound instead of the tone.
"""

from __future__ import annotations

import array
import io
import math
import os
import struct
import tempfile
import threading
from collections import OrderedDict
from dataclasses import dataclass

import av
import numpy as np
from PIL import Image, ImageOps

from bot.simulator.render import caption, draw_generation

FPS = 8
SAMPLE_RATE = 24000
PAN = 1.125  # the still is this much larger than a frame, so the camera can move over it
CACHE_BYTES = 96 * 1024 * 1024
MB = 1024 * 1024


@dataclass(frozen=True)
class ClipSpec:
    width: int
    height: int
    seconds: int
    audio: bool
    prompt: str
    seed: int
    watermark: bool = False
    image: bytes = b""  # image-to-video: the input image (any format Pillow reads)
    target_mb: float = 0.0
    soundtrack: bytes = b""  # `audio_url`'s sound (`decode_soundtrack`); none: a tone


def _still(spec: ClipSpec) -> Image.Image:
    """The picture the camera pans across, captioned where every frame shows it."""
    size = (_even(spec.width * PAN), _even(spec.height * PAN))
    if spec.image:
        still = ImageOps.fit(Image.open(io.BytesIO(spec.image)).convert("RGB"), size)
    else:
        still = draw_generation(spec.prompt, spec.seed, *size, captioned=False)
    # The frames' windows run from one corner of the still to the other: their common part is
    # the frame size less the room on each side.
    seen = (size[0] - spec.width, size[1] - spec.height, spec.width, spec.height)
    common = still.crop(seen)
    caption(common, spec.prompt, spec.watermark)
    still.paste(common, seen[:2])
    return still


def _even(value: float) -> int:
    return max(2, int(value) // 2 * 2)


def _planes(still: Image.Image) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    y, cb, cr = still.convert("YCbCr").split()
    half = (still.width // 2, still.height // 2)
    return (
        np.asarray(y),
        np.asarray(cb.resize(half, Image.Resampling.BOX)),
        np.asarray(cr.resize(half, Image.Resampling.BOX)),
    )


def _frames(spec: ClipSpec) -> list[np.ndarray]:
    """Each frame as a yuv420p array of shape (height * 3 / 2, width)."""
    y, u, v = _planes(_still(spec))
    width, height = spec.width, spec.height
    room_x, room_y = (y.shape[1] - width) // 2, (y.shape[0] - height) // 2
    count = spec.seconds * FPS
    direction = 1 if spec.seed % 2 else -1
    noise = np.random.default_rng(spec.seed) if spec.target_mb else None
    frames = []
    for index in range(count):
        t = index / max(1, count - 1)
        x = round(room_x * (t if direction > 0 else 1 - t))  # from one side to the other
        top = round(room_y * t)  # (in chroma pixels: twice as many luma ones)
        luma = y[2 * top : 2 * top + height, 2 * x : 2 * x + width].copy()
        bar = max(2, height // 40)
        luma[height - bar :, : max(1, round(width * (index + 1) / count))] = 235
        if noise is not None:
            luma ^= noise.integers(0, 96, luma.shape, dtype=np.uint8)
        chroma = [plane[top : top + height // 2, x : x + width // 2] for plane in (u, v)]
        frames.append(
            np.concatenate([luma.ravel(), chroma[0].ravel(), chroma[1].ravel()]).reshape(-1, width)
        )
    return frames


def decode_soundtrack(data: bytes) -> bytes:
    """An audio file's sound as mono 32-bit float samples at SAMPLE_RATE; ValueError when the
    bytes hold no readable sound."""
    samples = bytearray()
    resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
    try:
        with av.open(io.BytesIO(data), "r") as container:
            if not container.streams.audio:
                raise ValueError("no audio stream")
            for frame in container.decode(container.streams.audio[0]):
                for out in resampler.resample(frame):
                    samples += bytes(out.planes[0])[: out.samples * 4]
        for out in resampler.resample(None):
            samples += bytes(out.planes[0])[: out.samples * 4]
    except av.FFmpegError as error:
        raise ValueError(str(error)) from None
    if not samples:
        raise ValueError("no sound")
    return bytes(samples)


def _tone(spec: ClipSpec) -> array.array[float]:
    """`seconds` of the soundtrack (cut, or padded with silence), or of a seeded tone that beeps
    twice a second, as 32-bit float samples."""
    total = spec.seconds * SAMPLE_RATE
    if spec.soundtrack:
        track = array.array("f", spec.soundtrack[: total * 4])
        return track + array.array("f", bytes(4 * (total - len(track))))
    period = 40 + spec.seed % 61  # samples per cycle: 236–600 Hz
    cycle = array.array("f", (0.2 * math.sin(2 * math.pi * k / period) for k in range(period)))
    samples = (cycle * (total // period + 1))[:total]
    beat = SAMPLE_RATE // 2
    silent = array.array("f", bytes(4 * (beat // 2)))
    for start in range(beat // 2, total, beat):
        end = min(start + len(silent), total)
        samples[start:end] = silent[: end - start]
    return samples


def _encode(spec: ClipSpec, path: str) -> None:
    with av.open(path, "w", format="mp4", options={"movflags": "+faststart"}) as container:
        options = {"preset": "ultrafast"}
        if not spec.target_mb:
            options["crf"] = "30"
        stream = container.add_stream("libx264", rate=FPS, options=options)
        stream.width, stream.height, stream.pix_fmt = spec.width, spec.height, "yuv420p"
        if spec.target_mb:
            stream.bit_rate = int(spec.target_mb * MB * 8 / spec.seconds)
        sound = container.add_stream("aac", rate=SAMPLE_RATE, layout="mono") if spec.audio else None
        samples = _tone(spec) if spec.audio else array.array("f")
        sent = 0
        for index, pixels in enumerate(_frames(spec)):
            frame = av.VideoFrame.from_ndarray(pixels, format="yuv420p")
            frame.pts = index
            container.mux(stream.encode(frame))
            if sound is not None:  # the sound up to the end of this frame, interleaved
                until = (index + 1) * SAMPLE_RATE // FPS
                while sent < until:
                    chunk = samples[sent : min(sent + 1024, until)]
                    audio = av.AudioFrame(format="fltp", layout="mono", samples=len(chunk))
                    audio.planes[0].update(chunk.tobytes())
                    audio.sample_rate, audio.pts = SAMPLE_RATE, sent
                    container.mux(sound.encode(audio))
                    sent += len(chunk)
        container.mux(stream.encode(None))
        if sound is not None:
            container.mux(sound.encode(None))


def render_clip(spec: ClipSpec) -> bytes:
    """The MP4 for `spec` (blocking; tens of milliseconds to a few seconds)."""
    with tempfile.TemporaryDirectory(prefix="sim-clip-") as folder:
        path = os.path.join(folder, "clip.mp4")
        _encode(spec, path)  # faststart rewrites the file, so it must be a real one
        with open(path, "rb") as file:
            data = file.read()
    short = int(spec.target_mb * MB) - len(data)
    if short > 0:
        size = max(short, 8)
        data += struct.pack(">I4s", size, b"free") + bytes(size - 8)
    return data


class _Clips:
    """Recently made clips by their spec, up to CACHE_BYTES in all (any thread)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: OrderedDict[ClipSpec, bytes] = OrderedDict()

    def get(self, spec: ClipSpec) -> bytes:
        with self._lock:
            data = self._items.get(spec)
            if data is not None:
                self._items.move_to_end(spec)
                return data
        data = render_clip(spec)
        with self._lock:
            self._items[spec] = data
            while sum(map(len, self._items.values())) > CACHE_BYTES and len(self._items) > 1:
                self._items.popitem(last=False)
        return data


_CLIPS = _Clips()


def encode_clip(spec: ClipSpec) -> bytes:
    """`render_clip(spec)`, from the cache when this clip was made lately."""
    return _CLIPS.get(spec)
