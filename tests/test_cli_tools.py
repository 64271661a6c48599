"""`python -m bot upscale|zoom|pan|vary` as subprocesses against the simulator on loopback."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
from PIL import Image

from bot.dashscope.tools import EXPAND_PROMPT
from tests.conftest import SIM_KEY, run_cli
from tests.test_cli import env_for, saved_paths


def write_noise(path: Path, size: tuple[int, int]) -> Image.Image:
    """An image whose every pixel counts: kept pixels can be checked exactly."""
    picture = Image.frombytes("RGB", size, os.urandom(size[0] * size[1] * 3))
    picture.save(path, "PNG")
    return picture


def run_tool(simulator, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`python -m bot ARGS --out tmp_path/o` in tmp_path, against the simulator."""
    return run_cli(*args, "--out", str(tmp_path / "o"), env=env_for(simulator), cwd=tmp_path)


def one_image(stdout: str) -> Image.Image:
    [path] = saved_paths(stdout)
    with Image.open(path) as image:
        return image.convert("RGB")


def test_upscale_doubles_each_side(simulator, tmp_path):
    write_noise(tmp_path / "in.png", (640, 520))
    result = run_tool(simulator, tmp_path, "upscale", "in.png")
    assert result.returncode == 0, result.stderr
    assert one_image(result.stdout).size == (1280, 1040)
    assert "wanx2.1-imageedit" in result.stderr and "SUCCEEDED" in result.stderr


@pytest.mark.parametrize(
    ("args", "prompt", "size", "at"),
    [
        (["zoom", "--factor", "1.5"], EXPAND_PROMPT, (960, 780), (160, 130)),
        (
            ["zoom", "--prompt", "more of the harbour"],
            "more of the harbour",
            (1280, 1040),
            (320, 260),
        ),
        (["pan", "--direction", "up", "--prompt", "more sky"], "more sky", (640, 780), (0, 260)),
        (["pan", "--direction", "right"], EXPAND_PROMPT, (960, 520), (0, 0)),
    ],
)
def test_zoom_and_pan_keep_the_image_at_its_place(simulator, tmp_path, args, prompt, size, at):
    picture = write_noise(tmp_path / "in.png", (640, 520))
    command, *rest = args
    result = run_tool(simulator, tmp_path, command, "in.png", *rest, "--seed", "3")
    assert result.returncode == 0, result.stderr
    image = one_image(result.stdout)
    assert image.size == size
    x, y = at
    assert image.crop((x, y, x + 640, y + 520)).tobytes() == picture.tobytes()
    [task_id] = re.findall(r"task (\S+) submitted", result.stderr)
    task = simulator.sim.store.tasks[task_id]
    assert (task.prompt, task.seed) == (prompt, 3)


def test_vary_strong_makes_n_new_images_of_the_same_size(simulator, tmp_path):
    picture = write_noise(tmp_path / "in.png", (640, 520))
    result = run_tool(
        simulator, tmp_path, "vary", "in.png", "a lighthouse at dusk", "--strong", "--n", "2"
    )
    assert result.returncode == 0, result.stderr
    paths = saved_paths(result.stdout)
    images = [Image.open(path).convert("RGB") for path in paths]
    assert [image.size for image in images] == [(640, 520)] * 2
    assert len({image.tobytes() for image in [*images, picture]}) == 3
    [task_id] = re.findall(r"task (\S+) submitted", result.stderr)
    tool = simulator.sim.store.tasks[task_id].tool
    assert (tool.function, tool.strength) == ("description_edit", 0.7)


def test_a_large_image_is_scaled_to_the_tools_limit(simulator, tmp_path):
    Image.new("RGB", (4200, 700), (10, 80, 160)).save(tmp_path / "wide.png")
    result = run_tool(simulator, tmp_path, "pan", "wide.png", "--direction", "down")
    assert result.returncode == 0, result.stderr
    assert "scaled down to 4096×683" in result.stderr
    assert one_image(result.stdout).size == (4096, 683 + 342)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["upscale", "in.png", "--factor", "3"], "invalid choice: 3 (choose from 2, 4)"),
        (["zoom", "in.png", "--factor", "3"], "invalid choice: 3.0 (choose from 1.5, 2.0)"),
        (["pan", "in.png", "--direction", "north"], "invalid choice: 'north'"),
        (["pan", "in.png"], "the following arguments are required: --direction"),
        (["vary", "in.png"], "the following arguments are required: prompt"),
        (
            ["vary", "in.png", "a fox", "--n", "5"],
            "Number of images must be between 1 and 4 (got 5)",
        ),
        (["upscale", "small.png"], "Image 1 is 500×600 px; each side must be at least 512 px"),
        (["upscale", "missing.png"], "Image 1 could not be fetched"),
    ],
)
def test_bad_input_exits_2_saying_what_to_change(simulator, tmp_path, args, message):
    Image.new("RGB", (700, 700), (1, 2, 3)).save(tmp_path / "in.png")
    Image.new("RGB", (500, 600), (1, 2, 3)).save(tmp_path / "small.png")
    result = run_tool(simulator, tmp_path, *args)
    assert result.returncode == 2, result.stderr
    assert message in " ".join(result.stderr.split()), result.stderr
    assert result.stdout == ""
    assert simulator.state()["submissions"] == 0


def test_the_tools_are_refused_where_imageedit_is_not_offered(tmp_path):
    Image.new("RGB", (700, 700), (1, 2, 3)).save(tmp_path / "in.png")
    env = {
        "DASHSCOPE_API_KEY": SIM_KEY,
        "DASHSCOPE_BASE_URL": "https://dashscope-intl.aliyuncs.com/api/v1",
    }
    result = run_cli("upscale", "in.png", "--out", str(tmp_path / "o"), env=env, cwd=tmp_path)
    assert result.returncode == 2
    assert "offers only in cn-beijing" in result.stderr
    assert "this key's region is ap-southeast-1" in result.stderr


def test_dashscope_region_decides_which_tools_the_cli_offers(simulator, tmp_path):
    """Behind a gateway whose address names no region (a proxy; here the simulator), the key's
    region is DASHSCOPE_REGION: the tools it does not offer are refused before anything is
    sent, and Vary takes the edit model, as on Discord."""
    write_noise(tmp_path / "in.png", (640, 640))
    env = {**env_for(simulator), "DASHSCOPE_REGION": "ap-southeast-1"}
    out = str(tmp_path / "o")
    result = run_cli("upscale", "in.png", "--out", out, env=env, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert "this key's region is ap-southeast-1" in result.stderr
    assert simulator.state()["submissions"] == 0
    result = run_cli("vary", "in.png", "a red fox", "--out", out, env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    [task] = simulator.sim.store.tasks.values()
    assert task.model.name == "wan2.5-i2i-preview"
