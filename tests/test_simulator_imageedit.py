"""wanx2.1-imageedit in the simulator, over raw HTTP: its body rules, the result's size for each
function, the base image's pixels kept where they belong, the life cycle, markers and the region."""

from __future__ import annotations

import io
import os
from typing import Any

import pytest
from PIL import Image, ImageChops, ImageStat

from bot.simulator.imageedit import ToolCall
from bot.simulator.models import IMAGEEDIT_FUNCTIONS
from tests import test_simulator
from tests.test_simulator import (
    I2I,
    SYNC,
    T2I,
    Api,
    Starter,
    assert_error,
    data_uri,
    png_bytes,
    urls,
    wan26_body,
)

MODEL = "wanx2.1-imageedit"
# The raw-HTTP fixtures of the simulator's own tests: a client, and simulators started on demand.
tls, client, start = test_simulator.tls, test_simulator.client, test_simulator.start


def noise_png(width: int, height: int) -> bytes:
    """An image no transform could leave unchanged by accident, and no resampling could fake."""
    out = io.BytesIO()
    Image.frombytes("RGB", (width, height), os.urandom(width * height * 3)).save(out, "PNG")
    return out.getvalue()


def tool_body(
    function: str | None, base: str | None, prompt: str = "make it autumn", **params: Any
) -> dict[str, Any]:
    body_input: dict[str, Any] = {"prompt": prompt}
    if function is not None:
        body_input["function"] = function
    if base is not None:
        body_input["base_image_url"] = base
    return {"model": MODEL, "input": body_input, "parameters": params}


def rgb(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data)).convert("RGB")


def difference(a: Image.Image, b: Image.Image) -> float:
    """Mean absolute difference per channel, 0–255."""
    return sum(ImageStat.Stat(ImageChops.difference(a.convert("RGB"), b.convert("RGB"))).mean) / 3


@pytest.fixture
async def api(start: Starter) -> Api:
    return await start(submit_rps={MODEL: 100})


async def run(api: Api, body: dict[str, Any]) -> tuple[dict[str, Any], list[Image.Image]]:
    done = await api.wait(await api.submit(I2I, body), timeout=30)
    assert done["output"]["task_status"] == "SUCCEEDED", done
    return done, [(await api.fetch_png(url)).convert("RGB") for url in urls(done)]


# --- what each function makes -----------------------------------------------------------------


async def test_super_resolution_is_the_base_image_resized(api: Api):
    base = png_bytes(1280, 1280, (30, 90, 200))
    done, [image] = await run(api, tool_body("super_resolution", data_uri(base), upscale_factor=2))
    assert image.size == (2560, 2560)
    assert image.getpixel((1234, 2000)) == (30, 90, 200)
    assert done["usage"] == {"image_count": 1}
    assert done["output"]["task_metrics"] == {"TOTAL": 1, "SUCCEEDED": 1, "FAILED": 0}
    assert set(done["output"]["results"][0]) == {"url", "orig_prompt"}
    pattern = noise_png(600, 520)
    _, [tripled] = await run(
        api, tool_body("super_resolution", data_uri(pattern), upscale_factor=3)
    )
    assert tripled.size == (1800, 1560)
    shrunk = tripled.resize((600, 520), Image.Resampling.BOX)
    assert difference(shrunk, rgb(pattern)) < 30  # the base image, not something else


@pytest.mark.parametrize(
    ("scales", "size", "at"),
    [
        ((2.0, 2.0, 2.0, 2.0), (1280, 1024), (320, 256)),  # zoom out ×2: centred
        ((1.5, 1.5, 1.5, 1.5), (960, 768), (160, 128)),  # zoom out ×1.5
        ((1.0, 1.0, 2.0, 1.0), (960, 512), (320, 0)),  # pan left: the image at the right
        ((1.0, 1.0, 1.0, 2.0), (960, 512), (0, 0)),  # pan right
        ((2.0, 1.0, 1.0, 1.0), (640, 768), (0, 256)),  # pan up: the image at the bottom
        ((1.0, 2.0, 1.0, 1.0), (640, 768), (0, 0)),  # pan down
        ((1.0, 1.0, 1.0, 1.0), (640, 512), (0, 0)),  # nothing to add
    ],
)
async def test_expand_keeps_the_base_pixels_at_their_place(api: Api, scales, size, at):
    base = noise_png(640, 512)
    top, bottom, left, right = scales
    body = tool_body(
        "expand",
        data_uri(base),
        top_scale=top,
        bottom_scale=bottom,
        left_scale=left,
        right_scale=right,
    )
    _, [image] = await run(api, body)
    assert image.size == size
    x, y = at
    kept = image.crop((x, y, x + 640, y + 512))
    assert kept.tobytes() == rgb(base).tobytes()
    if size != (640, 512):  # the new area is not left blank
        corner = (size[0] - 1, size[1] - 1) if at == (0, 0) else (0, 0)
        assert image.getpixel(corner) != (0, 0, 0)


def test_expand_placement_of_odd_sides():
    size, (x, y) = ToolCall("expand", scales=(1.3, 1.7, 1.1, 1.9)).placement(601, 513)
    assert x == round(0.1 * 601 / 2) and y == round(0.3 * 513 / 2)
    assert size == (x + 601 + round(0.9 * 601 / 2), y + 513 + round(0.7 * 513 / 2))


async def test_description_edit_makes_n_different_images_of_the_base_size(api: Api):
    base = noise_png(700, 560)
    body = tool_body("description_edit", data_uri(base), n=3, seed=40, strength=0.5)
    done, images = await run(api, body)
    assert done["usage"] == {"image_count": 3}
    assert [image.size for image in images] == [(700, 560)] * 3
    original = rgb(base)
    assert all(difference(image, original) > 10 for image in images)
    assert len({image.tobytes() for image in images}) == 3
    # Same seed, more strength: further from the base image.
    _, [weak] = await run(api, tool_body("description_edit", data_uri(base), seed=40, strength=0.1))
    _, [strong] = await run(api, tool_body("description_edit", data_uri(base), seed=40, strength=1))
    assert difference(weak, original) < difference(strong, original)


async def test_the_mask_limits_the_change(api: Api):
    base = noise_png(600, 600)
    mask = Image.new("L", (600, 600), 0)
    mask.paste(255, (300, 0, 600, 600))  # white = the right half changes
    out = io.BytesIO()
    mask.convert("RGB").save(out, "PNG")
    body = tool_body("description_edit_with_mask", data_uri(base), prompt="add a hat", seed=3)
    body["input"]["mask_image_url"] = data_uri(out.getvalue())
    _, [image] = await run(api, body)
    original = rgb(base)
    top = (0, 0, 300, 500)  # clear of the caption at the bottom
    assert image.crop(top).tobytes() == original.crop(top).tobytes()
    assert difference(image.crop((300, 0, 600, 500)), original.crop((300, 0, 600, 500))) > 10


@pytest.mark.parametrize(
    "function",
    [f for f in IMAGEEDIT_FUNCTIONS if f not in ("expand", "super_resolution", "description_edit")]
    + ["description_edit"],
)
async def test_every_documented_function_is_served(api: Api, function):
    body = tool_body(function, data_uri(png_bytes(512, 800, (90, 90, 90))), n=1)
    if function == "description_edit_with_mask":
        body["input"]["mask_image_url"] = data_uri(png_bytes(512, 800, (255, 255, 255)))
    _, [image] = await run(api, body)
    assert image.size == (512, 800)


async def test_the_base_image_may_be_a_url(api: Api):
    source = await api.post(SYNC, wan26_body("a source", n=1, size="1280*1280"), async_=False)
    url = urls(source.json())[0]
    _, [image] = await run(api, tool_body("super_resolution", url, upscale_factor=2))
    assert image.size == (2560, 2560)
    original = (await api.fetch_png(url)).convert("RGB")
    assert difference(image.resize((1280, 1280), Image.Resampling.BOX), original) < 8


# --- what it refuses ---------------------------------------------------------------------------


MISSING = "Required parameter({}) missing or invalid, please check the request parameters."


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (tool_body(None, "x"), MISSING.format("function")),
        (tool_body("", "x"), MISSING.format("function")),
        (tool_body("description_edit", None), MISSING.format("base_image_url")),
        (tool_body("description_edit", ""), MISSING.format("base_image_url")),
        (tool_body("description_edit", "x", prompt=""), MISSING.format("prompt")),
        (
            tool_body("description_edit_with_mask", data_uri(png_bytes(600, 600))),
            MISSING.format("mask_image_url"),
        ),
        (tool_body("expand", "x", n=5), "Range of n should be [1, 4]"),
        (
            tool_body("description_edit", "x", strength=1.5),
            "Range of strength should be [0.0, 1.0]",
        ),
        (tool_body("description_edit", "x", strength="0.5"), "Range of strength should be"),
        (tool_body("expand", "x", top_scale=0.5), "Range of top_scale should be [1.0, 2.0]"),
        (tool_body("expand", "x", right_scale=2.5), "Range of right_scale should be [1.0, 2.0]"),
        (tool_body("super_resolution", "x", upscale_factor=5), "Range of upscale_factor"),
        (tool_body("super_resolution", "x", upscale_factor=0), "Range of upscale_factor"),
        (tool_body("super_resolution", "x", upscale_factor=2.5), "Range of upscale_factor"),
        (tool_body("super_resolution", "x", seed=-1), "Range of seed should be"),
    ],
)
async def test_bad_bodies_are_invalid_parameter(api: Api, body, message):
    error = assert_error(await api.post(I2I, body), 400, "InvalidParameter")
    assert error["message"].startswith(message)


async def test_an_unknown_function_is_named(api: Api):
    error = assert_error(await api.post(I2I, tool_body("teleport", "x")), 400, "InvalidParameter")
    assert "'teleport' is not supported" in error["message"]
    assert "super_resolution" in error["message"]


@pytest.mark.parametrize(
    ("width", "height", "fragment"),
    [
        (511, 800, "base_image_url is 511*800, each side must be between 512 and 4096 pixels"),
        (800, 4097, "base_image_url is 800*4097, each side must be between 512 and 4096 pixels"),
    ],
)
async def test_a_base_image_of_the_wrong_size_is_refused(api: Api, width, height, fragment):
    body = tool_body("description_edit", data_uri(png_bytes(width, height)))
    error = assert_error(await api.post(I2I, body), 400, "InvalidParameter")
    assert fragment in error["message"]


async def test_other_base_image_problems(api: Api):
    bad = tool_body("expand", "ftp://example.com/a.png")
    error = assert_error(await api.post(I2I, bad), 400, "InvalidParameter")
    assert "base_image_url must be an http(s) URL" in error["message"]
    body = tool_body("description_edit_with_mask", data_uri(png_bytes(600, 600)))
    body["input"]["mask_image_url"] = data_uri(png_bytes(600, 700))
    error = assert_error(await api.post(I2I, body), 400, "InvalidParameter")
    assert "mask is 600*700, the base image 600*600" in error["message"]
    huge = tool_body("super_resolution", data_uri(png_bytes(3000, 600)), upscale_factor=3)
    error = assert_error(await api.post(I2I, huge), 400, "InvalidParameter")
    assert "9000*1800" in error["message"]


async def test_only_the_async_image2image_route_serves_it(api: Api):
    body = tool_body("expand", data_uri(png_bytes(600, 600)))
    response = await api.post(I2I, body, async_=False)
    assert_error(
        response, 403, "AccessDenied", "current user api does not support synchronous calls"
    )
    assert_error(await api.post(T2I, body), 400, "InvalidParameter", "url error, please check url!")


# --- life cycle, markers, limits, region ---------------------------------------------------------


async def test_life_cycle_slots_and_markers(start: Starter):
    api = await start(submit_rps={MODEL: 10})
    base = data_uri(png_bytes(600, 600))
    ids = [
        await api.submit(I2I, tool_body("super_resolution", base, f"{i} sim:slow=5"))
        for i in range(3)
    ]
    statuses = [(await api.task(i))["output"]["task_status"] for i in ids]
    assert statuses == ["RUNNING", "RUNNING", "PENDING"]  # two in flight
    await api.advance(5.5)
    assert (await api.task(ids[0]))["output"]["task_status"] == "SUCCEEDED"
    assert (await api.task(ids[2]))["output"]["task_status"] == "RUNNING"

    refused = await api.post(I2I, tool_body("expand", base, "sim:moderate-input"))
    assert_error(refused, 400, "DataInspectionFailed")
    failed = await api.wait(
        await api.submit(I2I, tool_body("expand", base, "sim:fail=InternalError"))
    )
    assert failed["output"]["task_status"] == "FAILED"
    assert failed["output"]["code"] == "InternalError"
    partial = await api.wait(
        await api.submit(I2I, tool_body("description_edit", base, "sim:partial=1", n=2))
    )
    assert partial["usage"] == {"image_count": 1}
    assert [("url" in r) for r in partial["output"]["results"]] == [True, False]


async def test_two_submissions_a_second(start: Starter):
    api = await start(submit_rps=None)
    base = data_uri(png_bytes(600, 600))
    for _ in range(2):
        assert (await api.post(I2I, tool_body("expand", base))).status_code == 200
    assert_error(await api.post(I2I, tool_body("expand", base)), 429, "Throttling.RateQuota")


async def test_beijing_only(start: Starter):
    body = tool_body("expand", data_uri(png_bytes(600, 600)))
    for region in ("ap-southeast-1", "us-east-1"):
        api = await start(region=region, submit_rps={MODEL: 100})
        assert_error(await api.post(I2I, body), 400, "InvalidParameter", "Model not exist.")
    beijing = await start(region="cn-beijing", submit_rps={MODEL: 100})
    assert (await beijing.post(I2I, body)).status_code == 200
