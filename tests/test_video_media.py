"""bot/media/video.py: an MP4 re-encoded under an upload cap (decoded again to check), scaled
down only as far as its bitrate needs, and refused when nothing watchable fits."""

from __future__ import annotations

import io
from fractions import Fraction

import av
import numpy as np
import pytest

from bot.media.video import HEADROOM, MIN_BITRATES, VideoInfo, fit, plan, probe


def make_mp4(
    width: int, height: int, seconds: float, *, fps: int = 24, audio: bool = False
) -> bytes:
    """A short H.264 MP4 of noise (hard to compress, so large), with a tone if `audio`."""
    out = io.BytesIO()
    rng = np.random.default_rng(7)
    with av.open(out, "w", format="mp4") as container:
        video = container.add_stream("libx264", rate=fps)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        video.options = {"crf": "18", "preset": "ultrafast"}
        sound = container.add_stream("aac", rate=48000) if audio else None
        for index in range(int(seconds * fps)):
            pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
            frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
            frame.pts, frame.time_base = index, Fraction(1, fps)
            container.mux(video.encode(frame))
        container.mux(video.encode(None))
        if sound is not None:
            samples = 1024
            for index in range(int(seconds * 48000 / samples)):
                t = (np.arange(samples) + index * samples) / 48000
                tone = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None, :]
                frame = av.AudioFrame.from_ndarray(tone, format="fltp", layout="mono")
                frame.sample_rate, frame.pts = 48000, index * samples
                container.mux(sound.encode(frame))
            container.mux(sound.encode(None))
    return out.getvalue()


def decoded(content: bytes) -> tuple[int, int, float, int]:
    """(width, height, seconds, frames) as a player would find them."""
    info = probe(content)
    with av.open(io.BytesIO(content)) as container:
        frames = sum(1 for _ in container.decode(video=0))
    return info.width, info.height, info.seconds, frames


@pytest.fixture(scope="module")
def noisy() -> bytes:
    return make_mp4(640, 360, 2.0, audio=True)


def test_probe_reads_size_length_and_sound(noisy: bytes) -> None:
    info = probe(noisy)
    assert (info.width, info.height, info.audio) == (640, 360, True)
    assert abs(info.seconds - 2.0) < 0.1


def test_a_video_over_the_cap_is_reencoded_under_it_with_its_length(noisy: bytes) -> None:
    limit = len(noisy) // 4
    assert limit > 2 * 250_000 / 8 / HEADROOM  # room for a watchable 2 s at 360p
    fitted = fit(noisy, limit)
    assert fitted is not None and len(fitted) <= limit
    width, height, seconds, frames = decoded(fitted)
    assert (width, height) == (640, 360)  # already small: not scaled
    assert abs(seconds - 2.0) <= 0.5 and frames == 48
    assert probe(fitted).audio


def test_too_small_a_cap_is_refused_not_mush(noisy: bytes) -> None:
    assert fit(noisy, 20_000) is None  # 2 s in 20 kB: 72 kbps, under any watchable bitrate


def test_not_a_video_is_refused() -> None:
    assert fit(b"not an mp4 at all", 10_000_000) is None


@pytest.mark.parametrize(
    ("size", "seconds", "limit", "expected"),
    [
        # 1080P, 5 s, 25 MB: 36 Mbps, kept at its size.
        ((1920, 1080), 5.0, 25_000_000, (1920, 1080)),
        # 1080P, 10 s, 1 MB: 720 kbps, too little for 1080 (1.5 Mbps): 720P.
        ((1920, 1080), 10.0, 1_000_000, (1280, 720)),
        # 1080P, 10 s, 500 kB: 360 kbps: 480P.
        ((1920, 1080), 10.0, 500_000, (854, 480)),
        # portrait 720P, 10 s, 400 kB: 288 kbps: 480 wide.
        ((720, 1280), 10.0, 400_000, (480, 854)),
        # 10 s in 250 kB: 180 kbps, nothing watchable.
        ((1280, 720), 10.0, 250_000, None),
    ],
)
def test_plan_scales_down_only_as_far_as_the_bitrate_needs(
    size: tuple[int, int], seconds: float, limit: int, expected: tuple[int, int] | None
) -> None:
    shape = plan(VideoInfo(*size, seconds, audio=False), limit)
    assert (shape[:2] if shape else None) == expected
    if shape is not None:
        width, height, bitrate = shape
        assert width % 2 == 0 and height % 2 == 0
        assert bitrate * seconds / 8 <= limit
        assert bitrate >= MIN_BITRATES[-1][1]
