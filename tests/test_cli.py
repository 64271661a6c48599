"""`python -m bot imagine|edit|blend` as a subprocess against the simulator on loopback."""

from __future__ import annotations

import io
import os
import re
from pathlib import Path

import pytest
from PIL import Image

from tests.conftest import SIM_KEY, run_cli


def env_for(sim) -> dict[str, str]:
    return {"DASHSCOPE_API_KEY": SIM_KEY, "DASHSCOPE_BASE_URL": sim.base_url}


def saved_paths(stdout: str) -> list[Path]:
    return [Path(line) for line in stdout.splitlines() if line.strip()]


def write_image(path: Path, size=(800, 600), mode="RGB", fmt="PNG") -> Path:
    Image.new(mode, size, (30, 120, 200) if mode == "RGB" else None).save(path, fmt)
    return path


def test_imagine_saves_a_real_png(simulator, tmp_path):
    out = tmp_path / "out"
    result = run_cli(
        "imagine", "a flower shop", "--out", str(out), env=env_for(simulator), cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    [path] = saved_paths(result.stdout)
    assert path.parent == out
    with Image.open(path) as image:
        assert image.format == "PNG" and image.size == (1280, 1280)
    assert "SUCCEEDED" in result.stderr
    assert "simulator" not in result.stderr.lower()  # a configured key: no simulated notice
    # No --seed: the CLI picks one and says it, so the image can be made again.
    [seed] = re.findall(r"submitted \(wan[^,]*, seed (\d+)\)", result.stderr)
    task = simulator.sim.store.tasks[re.findall(r"task (\S+) submitted", result.stderr)[0]]
    assert task.seed == int(seed)


def test_imagine_sync_with_options(simulator, tmp_path):
    out = tmp_path / "out"
    result = run_cli(
        "imagine",
        "a lighthouse",
        "--sync",
        "--size",
        "1104*1472",
        "--n",
        "2",
        "--seed",
        "42",
        "--no-prompt-extend",
        "--negative-prompt",
        "fog",
        "--out",
        str(out),
        env=env_for(simulator),
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    paths = saved_paths(result.stdout)
    assert len(paths) == 2
    for path in paths:
        with Image.open(path) as image:
            assert image.size == (1104, 1472)


def test_partial_failure_saves_the_rest_and_reports(simulator, tmp_path):
    result = run_cli(
        "imagine",
        "two cats sim:partial=1",
        "--n",
        "2",
        "--out",
        str(tmp_path / "o"),
        env=env_for(simulator),
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert len(saved_paths(result.stdout)) == 1
    assert "image failed" in result.stderr


def test_content_rejected_exits_1_naming_code_and_request_id(simulator, tmp_path):
    result = run_cli(
        "imagine",
        "something sim:moderate-input",
        "--out",
        str(tmp_path / "o"),
        env=env_for(simulator),
        cwd=tmp_path,
    )
    assert result.returncode == 1
    assert result.stdout == ""
    assert "DataInspectionFailed" in result.stderr
    assert "request id" in result.stderr
    assert "content moderation" in result.stderr


def test_moderated_output_inside_the_task(simulator, tmp_path):
    result = run_cli(
        "imagine",
        "something sim:moderate-output",
        "--out",
        str(tmp_path / "o"),
        env=env_for(simulator),
        cwd=tmp_path,
    )
    assert result.returncode == 1
    assert "generated image was blocked" in result.stderr


def test_throttled_then_success(simulator, tmp_path):
    simulator.set_faults(
        script=[{"route": "submit", "action": "429"}, {"route": "submit", "action": "429"}]
    )
    result = run_cli(
        "imagine", "a boat", "--out", str(tmp_path / "o"), env=env_for(simulator), cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert len(saved_paths(result.stdout)) == 1
    assert "retry" in result.stderr.lower()


def test_wrong_key_exits_1(simulator, tmp_path):
    env = {**env_for(simulator), "DASHSCOPE_API_KEY": "sk-wrong-key"}
    result = run_cli("imagine", "a boat", "--out", str(tmp_path / "o"), env=env, cwd=tmp_path)
    assert result.returncode == 1
    assert "InvalidApiKey" in result.stderr
    assert "sk-wrong-key" not in result.stderr


def test_edit_a_local_image(simulator, tmp_path):
    source = write_image(tmp_path / "in.png", size=(900, 600), mode="RGBA", fmt="PNG")
    out = tmp_path / "out"
    result = run_cli(
        "edit",
        "make the sky purple",
        "--image",
        str(source),
        "--out",
        str(out),
        env=env_for(simulator),
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert "flattened transparency" in result.stderr
    [path] = saved_paths(result.stdout)
    with Image.open(path) as image:
        width, height = image.size
    # Without a size the edit keeps the input's 3:2 shape at about 1280×1280 pixels.
    assert abs(width / height - 1.5) < 0.05
    assert 0.9 * 1280 * 1280 <= width * height <= 1.05 * 1280 * 1280


def test_edit_chain_from_a_previous_result(simulator, tmp_path):
    first = run_cli(
        "edit",
        "one",
        "--image",
        str(write_image(tmp_path / "a.jpg", fmt="JPEG")),
        "--size",
        "1024*1024",
        "--out",
        str(tmp_path / "o1"),
        env=env_for(simulator),
        cwd=tmp_path,
    )
    assert first.returncode == 0, first.stderr
    second = run_cli(
        "edit",
        "two",
        "--image",
        saved_paths(first.stdout)[0].as_posix(),
        "--image",
        str(write_image(tmp_path / "b.webp", size=(500, 500), fmt="WEBP")),
        "--out",
        str(tmp_path / "o2"),
        env=env_for(simulator),
        cwd=tmp_path,
    )
    assert second.returncode == 0, second.stderr
    assert len(saved_paths(second.stdout)) == 1


def test_blend_sends_every_image_in_one_request(simulator, tmp_path):
    colours = [(220, 30, 30), (20, 170, 40), (30, 60, 220)]
    paths = []
    for k, colour in enumerate(colours):
        paths += ["--image", str(tmp_path / f"{k}.png")]
        Image.new("RGB", (900, 600) if k == 0 else (600, 600), colour).save(paths[-1])
    result = run_cli(
        "blend",
        "the three side by side",
        *paths,
        "--n",
        "2",
        "--seed",
        "9",
        "--out",
        str(tmp_path / "o"),
        env=env_for(simulator),
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert "submitted (wan2.6-image, seed 9)" in result.stderr and "SUCCEEDED" in result.stderr
    [task_id] = re.findall(r"task (\S+) submitted", result.stderr)
    task = simulator.sim.store.tasks[task_id]
    assert (task.model.name, len(task.inputs), task.n) == ("wan2.6-image", 3, 2)
    saved = saved_paths(result.stdout)
    assert len(saved) == 2
    with Image.open(saved[0]) as image:
        rgb = image.convert("RGB")
        assert abs(rgb.width / rgb.height - 1.5) < 0.02  # the first image's shape
        middle = [rgb.getpixel((x, rgb.height // 2)) for x in range(0, rgb.width, 16)]
    for colour in colours:  # every input shows in the result
        assert any(sum(abs(a - b) for a, b in zip(p, colour, strict=True)) < 90 for p in middle), (
            colour
        )


@pytest.mark.parametrize("command", ["edit", "blend"])
@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (os.urandom(2048), "not a readable image"),
        (b"", "empty file"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 20, "not a readable image"),
    ],
)
def test_bad_image_file_exits_2_and_sends_nothing(simulator, tmp_path, command, content, expected):
    bad = tmp_path / "photo.png"
    bad.write_bytes(content)
    # A blend takes two images: the bad one and a good one after it.
    more = ["--image", str(write_image(tmp_path / "ok.png"))] if command == "blend" else []
    result = run_cli(
        command,
        "fix it",
        "--image",
        str(bad),
        *more,
        "--out",
        str(tmp_path / "o"),
        env=env_for(simulator),
        cwd=tmp_path,
    )
    assert result.returncode == 2
    assert expected in result.stderr
    assert simulator.sim.state()["submissions"] == 0


def test_too_small_image_says_what_to_change(simulator, tmp_path):
    small = write_image(tmp_path / "s.png", size=(200, 150))
    result = run_cli(
        "edit",
        "fix",
        "--image",
        str(small),
        "--out",
        str(tmp_path / "o"),
        env=env_for(simulator),
        cwd=tmp_path,
    )
    assert result.returncode == 2
    assert "200×150" in result.stderr and "at least 384" in result.stderr


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["imagine", "x", "--size", "100*100"], "use one of its sizes"),
        (["imagine", "x", "--size", "big"], "WIDTH*HEIGHT"),
        (["imagine", "x", "--n", "5"], "between 1 and 4"),
        (["imagine", "x", "--seed", "-1"], "Seed must be"),
        (["imagine", "   "], "prompt is empty"),
        (["imagine", "x" * 2001], "at most 2000"),
        (["imagine", "x", "--model", "nope"], "Unknown model"),
        (["imagine", "x", "--model", "wan2.5-i2i-preview"], "cannot make images from text"),
        (["imagine", "x", "--model", "wan2.5-t2i-preview", "--sync"], "no synchronous mode"),
        (["edit", "x"], "--image"),
        (["blend", "x", "--image", "a.png"], "A blend takes 2 to 4 different images; you gave 1"),
        (["blend", "x", *["--image", "a.png"] * 5], "you gave 5"),
        (["blend", "x", "--image", "a.png", "--model", "wan2.6-t2i"], "cannot blend images"),
    ],
)
def test_usage_errors_exit_2(simulator, tmp_path, args, expected):
    result = run_cli(*args, "--out", str(tmp_path / "o"), env=env_for(simulator), cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert expected in result.stderr
    assert simulator.sim.state()["submissions"] == 0


def test_bad_setting_is_one_clear_line(tmp_path):
    result = run_cli(
        "imagine", "x", "--out", str(tmp_path), env={"LOG_LEVEL": "LOUD"}, cwd=tmp_path
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "LOG_LEVEL" in lines[0] and "DEBUG" in lines[0]


def test_no_key_runs_against_the_embedded_simulator(tmp_path):
    out = tmp_path / "out"
    result = run_cli(
        "imagine", "a flower shop", "--out", str(out), env={"SIMULATOR_SPEED": "200"}, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert "simulator" in result.stderr.lower()
    [path] = saved_paths(result.stdout)
    with Image.open(path) as image:
        image.load()
        assert image.size == (1280, 1280)
        assert len(image.getcolors(1 << 20) or []) > 10  # a real picture, not a flat fill
    data = path.read_bytes()
    assert Image.open(io.BytesIO(data)).format == "PNG"


def test_no_token_explains_how_to_set_up(tmp_path):
    result = run_cli(cwd=tmp_path, env={"DISCORD_APPLICATION_ID": "123456789012345678"})
    assert result.returncode == 2
    assert "DISCORD_TOKEN" in result.stdout and "Reset Token" in result.stdout
    assert "client_id=123456789012345678" in result.stdout  # the invite URL


def test_help_lists_the_commands(tmp_path):
    result = run_cli("--help", cwd=tmp_path)
    assert result.returncode == 0
    for command in ("run", "imagine", "edit", "blend", "worker", "doctor", "simulator"):
        assert command in result.stdout


# --- against an independent server answering only with the documented bodies ----------------


async def run_cli_async(*args: str, env: dict[str, str], cwd: Path) -> tuple[int, str, str]:
    import asyncio
    import sys

    from tests.conftest import ROOT

    base = {k: v for k, v in os.environ.items() if not k.startswith(("DASHSCOPE_", "DISCORD_"))}
    base.update(env, PYTHONPATH=str(ROOT))
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        *args,
        env=base,
        cwd=cwd,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


@pytest.fixture
async def documented_server():
    from tests.wire import ScriptedServer

    server = ScriptedServer()
    await server.start()
    yield server
    await server.stop()


async def test_edit_against_documented_bodies(documented_server, tmp_path):
    from tests import documented as doc
    from tests.wire import Reply

    server = documented_server
    task = "/tasks/" + doc.SUBMITTED["output"]["task_id"]
    server.on("POST", "/services/aigc/image2image/image-synthesis", Reply(200, doc.SUBMITTED))
    server.on(
        "GET",
        task,
        Reply(200, doc.PENDING),
        Reply(200, doc.RUNNING),
        Reply(200, doc.SUCCEEDED_RESULTS),
    )
    source = write_image(tmp_path / "in.jpg", fmt="JPEG")
    code, out, err = await run_cli_async(
        "edit",
        "换成蕾丝长裙",
        "--image",
        str(source),
        "--out",
        str(tmp_path / "o"),
        env={"DASHSCOPE_API_KEY": "sk-documented", "DASHSCOPE_BASE_URL": server.base_url},
        cwd=tmp_path,
    )
    assert code == 0, err
    [path] = saved_paths(out)
    assert path.read_bytes() == server.files["/files/result.png"]
    assert "actual prompt: 将粉色褶皱连衣裙替换为" in err
    [submit] = server.requests_to("/services/aigc/image2image/image-synthesis")
    assert submit.headers["X-DashScope-Async"] == "enable"
    assert submit.body["input"]["images"][0].startswith("data:image/jpeg;base64,")


async def test_failed_task_against_documented_bodies(documented_server, tmp_path):
    from tests import documented as doc
    from tests.wire import Reply

    server = documented_server
    task = "/tasks/" + doc.SUBMITTED["output"]["task_id"]
    server.on("POST", "/services/aigc/image-generation/generation", Reply(200, doc.SUBMITTED))
    server.on("GET", task, Reply(200, doc.FAILED))
    code, out, err = await run_cli_async(
        "imagine",
        "a flower shop",
        "--out",
        str(tmp_path / "o"),
        env={"DASHSCOPE_API_KEY": "sk-documented", "DASHSCOPE_BASE_URL": server.base_url},
        cwd=tmp_path,
    )
    assert code == 1 and out == ""
    assert "InvalidParameter" in err and doc.FAILED["request_id"] in err


async def test_documented_error_envelope_at_submit(documented_server, tmp_path):
    from tests.wire import Reply

    server = documented_server
    server.on(
        "POST",
        "/services/aigc/image-generation/generation",
        Reply(
            400,
            {
                "request_id": "a5898c04-d210-901b-965f-e4bd90478805",
                "code": "DataInspectionFailed",
                "message": "Input data may contain inappropriate content.",
            },
        ),
    )
    code, _, err = await run_cli_async(
        "imagine",
        "a flower shop",
        "--out",
        str(tmp_path / "o"),
        env={"DASHSCOPE_API_KEY": "sk-documented", "DASHSCOPE_BASE_URL": server.base_url},
        cwd=tmp_path,
    )
    assert code == 1
    assert "DataInspectionFailed" in err and "a5898c04-d210-901b-965f-e4bd90478805" in err
