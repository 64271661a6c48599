"""Videos made to fit a server's upload cap: an MP4 re-encoded with PyAV (FFmpeg in its wheels).

One pass, no guessing: the bitrate is what the cap allows over the video's length
(`cap × 0.9 × 8 / seconds`, less a low-bitrate AAC track when it has sound), H.264 in yuv420p
so every player shows it. The picture is scaled down (1080P → 720P → 480P) until that bitrate
is enough to watch at its size; under `MIN_BITRATES` at 480P nothing watchable fits, and `fit`
says so (None) instead of posting mush: the caller posts a link instead. CPU-bound: callers run
it in a thread (`fit_video`).
"""

from __future__ import annotations

import asyncio
import io
import logging
import tempfile
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av

log = logging.getLogger(__name__)

HEADROOM = 0.9  # of the cap: the container, and an encoder that overshoots a little
AUDIO_BITRATE = 48_000
# The lowest video bitrate worth watching at each height (its shorter side), tallest first.
MIN_BITRATES: tuple[tuple[int, int], ...] = ((1080, 1_500_000), (720, 600_000), (480, 250_000))
ATTEMPTS = 3  # encodes, each at 80% of the bitrate of one that came out too large


@dataclass(frozen=True)
class VideoInfo:
    width: int
    height: int
    seconds: float
    audio: bool


def probe(content: bytes) -> VideoInfo:
    """The size, length and sound of an MP4 (av.error.FFmpegError when it is none)."""
    with av.open(io.BytesIO(content), "r") as container:
        stream = container.streams.video[0]
        return VideoInfo(
            stream.codec_context.width,
            stream.codec_context.height,
            _seconds(container),
            bool(container.streams.audio),
        )


def _seconds(container: av.container.InputContainer) -> float:
    if container.duration:
        return float(container.duration) / av.time_base
    stream = container.streams.video[0]
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    return 0.0


def plan(info: VideoInfo, limit: int) -> tuple[int, int, int] | None:
    """(width, height, video bitrate) of a re-encode under `limit` bytes, or None when no
    watchable one fits. Scaled down (never up) only as far as the bitrate needs."""
    if info.seconds <= 0:
        return None
    bitrate = int(limit * HEADROOM * 8 / info.seconds) - (AUDIO_BITRATE if info.audio else 0)
    short = min(info.width, info.height)
    for side in [short, *(height for height, _ in MIN_BITRATES if height < short)]:
        if bitrate >= _needed(side):
            scale = side / short
            return _even(info.width * scale), _even(info.height * scale), bitrate
    return None


def _needed(side: int) -> int:
    """The lowest bitrate worth watching at a shorter side of `side` pixels: that of the
    smallest step of MIN_BITRATES at least as tall."""
    fitting = [lowest for height, lowest in MIN_BITRATES if height >= side]
    return fitting[-1] if fitting else MIN_BITRATES[0][1]


def _even(side: float) -> int:
    return max(2, round(side / 2) * 2)


def fit(content: bytes, limit: int) -> bytes | None:
    """The MP4 re-encoded under `limit` bytes, or None when it cannot be watchable that small
    (or cannot be read)."""
    try:
        info = probe(content)
    except (av.error.FFmpegError, IndexError) as exc:
        log.warning("cannot read the video to re-encode it: %s", exc)
        return None
    shape = plan(info, limit)
    for _ in range(ATTEMPTS):
        if shape is None:
            return None
        width, height, bitrate = shape
        encoded = encode(content, width, height, bitrate)
        if len(encoded) <= limit:
            return encoded
        log.info("re-encoded video is %d bytes, over %d: lower bitrate", len(encoded), limit)
        shape = plan(info, int(limit * 0.8 * bitrate / max(1, len(encoded) * 8 / info.seconds)))
    return None


async def fit_video(content: bytes, limit: int) -> bytes | None:
    """`fit` in a thread: encoding takes seconds of CPU the event loop must not wait for."""
    return await asyncio.to_thread(fit, content, limit)


def encode(content: bytes, width: int, height: int, bitrate: int) -> bytes:
    """The video as H.264 (yuv420p) at `width`×`height` and about `bitrate` bits per second,
    its sound (if any) as AAC at AUDIO_BITRATE, in an MP4 that starts playing at once."""
    with tempfile.TemporaryDirectory(prefix="wanbot-video-") as folder:
        path = Path(folder) / "fitted.mp4"  # faststart moves the index by reopening the file
        _encode(content, path, width, height, bitrate)
        return path.read_bytes()


def _encode(content: bytes, path: Path, width: int, height: int, bitrate: int) -> None:
    with (
        av.open(io.BytesIO(content), "r") as source,
        av.open(str(path), "w", format="mp4", options={"movflags": "+faststart"}) as target,
    ):
        video_in = source.streams.video[0]
        rate = video_in.average_rate or Fraction(24)
        video_out = target.add_stream("libx264", rate=rate)
        video_out.width, video_out.height = width, height
        video_out.pix_fmt = "yuv420p"
        video_out.bit_rate = bitrate
        video_out.codec_context.time_base = Fraction(1) / rate
        video_out.options = {
            "preset": "veryfast",
            "maxrate": str(bitrate),
            "bufsize": str(bitrate),
        }
        audio_in = source.streams.audio[0] if source.streams.audio else None
        audio_out = None
        if audio_in is not None:
            audio_out = target.add_stream("aac", rate=audio_in.codec_context.sample_rate or 48000)
            audio_out.bit_rate = AUDIO_BITRATE
        streams = [video_in] + ([audio_in] if audio_in is not None else [])
        index = 0
        for packet in source.demux(*streams):
            for frame in packet.decode():
                if isinstance(frame, av.VideoFrame):
                    scaled = frame.reformat(width=width, height=height, format="yuv420p")
                    scaled.pts, scaled.time_base = index, video_out.codec_context.time_base
                    index += 1
                    target.mux(video_out.encode(scaled))
                elif isinstance(frame, av.AudioFrame) and audio_out is not None:
                    frame.pts = None
                    target.mux(audio_out.encode(frame))
        target.mux(video_out.encode(None))
        if audio_out is not None:
            target.mux(audio_out.encode(None))
