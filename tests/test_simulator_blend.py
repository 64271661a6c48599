"""wan2.6-image in the simulator over raw HTTP: one text and one to four images in the message,
edit mode on the sync and async routes, the validation errors, and results that show every input.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from PIL import Image

from bot.simulator import SimulatorConfig, start_simulator
from tests.test_simulator import ASYNC, SYNC, Api, assert_error, image_uri, urls

RED, GREEN, BLUE, YELLOW = (220, 30, 30), (20, 170, 40), (30, 60, 220), (230, 210, 20)


def blend_body(
    images: list[str], prompt: str = "put them in one room", **params: Any
) -> dict[str, Any]:
    content: list[dict[str, Any]] = [{"text": prompt}, *({"image": i} for i in images)]
    return {
        "model": "wan2.6-image",
        "input": {"messages": [{"role": "user", "content": content}]},
        "parameters": {"enable_interleave": False, **params},
    }


@pytest.fixture
async def api() -> AsyncIterator[Api]:
    running = await start_simulator(SimulatorConfig(speed=1000.0, seed=11))
    async with httpx.AsyncClient(timeout=10.0) as client:
        yield Api(running, client)
    await running.stop()


def colours_seen(image: Image.Image) -> list[tuple[int, int, int]]:
    """The colour at the centre of each quarter-strip along the longer side, and of each
    quadrant: enough points to find every tile of a blend."""
    rgb = image.convert("RGB")
    w, h = rgb.size
    points = [(w * i // 8, h // 2) for i in (1, 3, 5, 7)] + [(w // 2, h * i // 8) for i in (1, 3)]
    points += [(w * x // 4, h * y // 4) for x in (1, 3) for y in (1, 3)]
    return [rgb.getpixel(p) for p in points]  # type: ignore[misc]


def shows(image: Image.Image, colour: tuple[int, int, int]) -> bool:
    return any(
        sum(abs(a - b) for a, b in zip(seen, colour, strict=True)) < 90
        for seen in colours_seen(image)
    )


async def test_sync_blend_of_three_shows_each_input_at_the_first_inputs_aspect(api: Api):
    inputs = [image_uri(900, 600, RED), image_uri(600, 600, GREEN), image_uri(500, 800, BLUE)]
    response = await api.post(SYNC, blend_body(inputs, n=2, seed=3), async_=False)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["output"]["finished"] is True
    assert [c["message"]["content"][0]["type"] for c in body["output"]["choices"]] == ["image"] * 2
    assert body["usage"]["image_count"] == 2
    images = [await api.fetch_png(url) for url in urls(body)]
    width, height = images[0].size
    assert body["usage"]["size"] == f"{width}*{height}"
    assert abs(width / height - 900 / 600) < 0.01  # no size: the first input's aspect
    assert 768 * 768 <= width * height <= 1280 * 1280
    for image in images:
        assert all(shows(image, colour) for colour in (RED, GREEN, BLUE)), colours_seen(image)
    assert images[0].tobytes() != images[1].tobytes()  # each image starts from another input
    [task] = api.sim.store.tasks.values()
    assert (task.model.name, len(task.inputs), task.n) == ("wan2.6-image", 3, 2)
    assert api.sim.state()["sync_calls"] == 1


async def test_async_blend_of_four_at_a_size(api: Api):
    inputs = [image_uri(500, 500, c) for c in (RED, GREEN, BLUE, YELLOW)]
    task_id = await api.submit(ASYNC, blend_body(inputs, n=1, size="1024*1024", watermark=True))
    done = await api.wait(task_id)
    assert done["output"]["task_status"] == "SUCCEEDED"
    assert done["usage"]["image_count"] == 1
    [image] = [await api.fetch_png(url) for url in urls(done)]
    assert image.size == (1024, 1024)
    assert all(shows(image, colour) for colour in (RED, GREEN, BLUE, YELLOW))
    listed = (await api.get("/tasks", params={"model_name": "wan2.6-image"})).json()
    assert [item["task_id"] for item in listed["data"]] == [task_id]


async def test_one_image_is_an_edit(api: Api):
    done = await api.wait(await api.submit(ASYNC, blend_body([image_uri(800, 400, RED)], n=1)))
    [image] = [await api.fetch_png(url) for url in urls(done)]
    assert abs(image.width / image.height - 2) < 0.01 and shows(image, RED)


def _with_content(content: list[Any]) -> dict[str, Any]:
    body = blend_body([])
    body["input"]["messages"][0]["content"] = content
    return body


TWO = [image_uri(500, 500, RED), image_uri(500, 500, GREEN)]


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (_with_content([{"image": TWO[0]}, {"image": TWO[1]}]), "Only one text"),
        (_with_content([{"text": "a"}, {"text": "b"}, {"image": TWO[0]}]), "Only one text"),
        (_with_content([{"text": "a", "image": TWO[0]}]), "Only one text"),
        (blend_body([]), "number of input images"),
        (blend_body([image_uri(500, 500)] * 5), "number of input images"),
        (blend_body([TWO[0], image_uri(383, 600)]), "resolution"),
        (blend_body([TWO[0], "data:image/png;base64,@@@"]), "base64"),
        (blend_body([TWO[0], "ftp://example.com/a.png"]), "source is invalid"),
        (blend_body([TWO[0], 7]), "image"),  # type: ignore[list-item]
        (blend_body(TWO, "  "), "text"),
        (blend_body(TWO, "x" * 2001), "too long"),
        (blend_body(TWO, size="700*700"), "total pixels"),
        (blend_body(TWO, size="1600*384"), "aspect ratio"),
        (blend_body(TWO, size="big"), "width*height"),
        (blend_body(TWO, n=0), "Range of n"),
        (blend_body(TWO, n=5), "Range of n"),
        (blend_body(TWO, enable_interleave="yes"), "enable_interleave"),
        (blend_body(TWO, enable_interleave=True, n=2), "n must be 1"),
        (blend_body(TWO, enable_interleave=True), "requires streaming"),
    ],
)
@pytest.mark.parametrize("route", [SYNC, ASYNC])
async def test_blend_validation(api: Api, route: str, body: dict[str, Any], fragment: str):
    response = await api.post(route, body, async_=route == ASYNC)
    error = assert_error(response, 400, "InvalidParameter")
    assert fragment in error["message"]
    assert api.sim.submissions == 0


async def test_wan26_t2i_still_takes_no_images(api: Api):
    body = blend_body(TWO[:1], n=1)
    body["model"] = "wan2.6-t2i"
    error = assert_error(await api.post(ASYNC, body), 400, "InvalidParameter")
    assert "Only one text" in error["message"]
