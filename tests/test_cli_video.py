"""`python -m bot animate|video` as subprocesses against the simulator on loopback: one MP4 of the
asked length and size saved, progress on stderr, and bad input refused with the usage code
before anything is sent."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests.conftest import run_cli
from tests.test_cli import env_for, saved_paths, write_image
from tests.test_video_end_to_end import probe


def run_video(simulator, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`python -m bot ARGS --out tmp_path/o` in tmp_path, against the simulator."""
    return run_cli(*args, "--out", str(tmp_path / "o"), env=env_for(simulator), cwd=tmp_path)


def saved_video(stdout: str) -> Path:
    [path] = saved_paths(stdout)
    assert path.suffix == ".mp4"
    return path


def test_animate_saves_an_mp4_of_the_image(simulator, tmp_path):
    write_image(tmp_path / "in.png", (640, 360))
    options = ["--resolution", "480p", "--seed", "4", "--no-audio"]
    result = run_video(simulator, tmp_path, "animate", "in.png", "the waves roll in", *options)
    assert result.returncode == 0, result.stderr
    seen = probe(saved_video(result.stdout).read_bytes())
    assert seen["duration"] == pytest.approx(5, abs=0.5)  # the model's first duration
    width, height = seen["size"]
    assert width > height and height == pytest.approx(480, abs=32)  # 480P, the image's 16:9
    assert "5 s at 480P; this takes minutes" in result.stderr
    assert "SUCCEEDED" in result.stderr and "video: 5 s billed" in result.stderr
    [task_id] = re.findall(r"task (\S+) submitted", result.stderr)
    task = simulator.sim.store.tasks[task_id]
    assert (task.prompt, task.seed, task.video.audio) == ("the waves roll in", 4, False)


def test_video_makes_the_aspect_asked_at_its_resolution(simulator, tmp_path):
    options = ["--aspect", "9:16", "--resolution", "480P", "--duration", "10"]
    result = run_video(simulator, tmp_path, "video", "a paper boat on a stream", *options)
    assert result.returncode == 0, result.stderr
    seen = probe(saved_video(result.stdout).read_bytes())
    assert seen["size"] == (480, 832)
    assert seen["duration"] == pytest.approx(10, abs=0.5)


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (
            ["video", "a boat", "--duration", "7"],
            "wan2.5-t2v-preview makes videos of 5, 10 seconds (got 7).",
        ),
        (
            ["video", "a boat", "--resolution", "4K"],
            "wan2.5-t2v-preview makes videos at 480P, 720P, 1080P (got 4K).",
        ),
        (
            ["animate", "small.png", "--model", "wan2.6-i2v", "--resolution", "480P"],
            "Image 1 is 200×200 px; each side must be at least 360 px.",
        ),
        (["animate", "in.png", "--model", "wan2.6-t2i"], "wan2.6-t2i"),
        (["video", "a boat", "--model", "nope"], "nope"),
    ],
)
def test_bad_video_input_exits_with_the_usage_code(simulator, tmp_path, args, words):
    write_image(tmp_path / "in.png", (640, 360))
    write_image(tmp_path / "small.png", (200, 200))
    before = simulator.sim.requests.get("video-synthesis", 0)
    result = run_video(simulator, tmp_path, *args)
    assert result.returncode == 2, result.stderr
    assert words in result.stderr
    assert result.stdout == ""
    assert simulator.sim.requests.get("video-synthesis", 0) == before  # nothing sent
