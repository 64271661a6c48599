"""The DashScope simulator over raw HTTP: routes, auth, validation, life cycle, limits, faults,
markers and result images. Every simulator here is started by its test on 127.0.0.1."""

from __future__ import annotations

import asyncio
import base64
import io
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from bot.simulator import RunningSimulator, Simulator, SimulatorConfig, start_simulator
from bot.simulator.markers import find_markers
from bot.simulator.models import EDIT_SIZE, MODELS, Route
from bot.simulator.results import result_url
from bot.simulator.rules import GenerationRequest, edit_default_size, validate
from bot.simulator.tasks import ModelPool

KEY = "sk-simulator"
SYNC = "/services/aigc/multimodal-generation/generation"
ASYNC = "/services/aigc/image-generation/generation"
T2I = "/services/aigc/text2image/image-synthesis"
I2I = "/services/aigc/image2image/image-synthesis"
TERMINAL = {"SUCCEEDED", "FAILED", "CANCELED", "UNKNOWN"}
TASK_TIME = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}")
BEIJING = timezone(timedelta(hours=8))
REPO = Path(__file__).resolve().parents[1]


def list_time(epoch: float) -> str:
    """A time as the task list's filters take it: YYYYMMDDhhmmss in Beijing time."""
    return datetime.fromtimestamp(epoch, BEIJING).strftime("%Y%m%d%H%M%S")


def png_bytes(width: int, height: int, colour: tuple[int, ...] = (200, 40, 40), **kw: Any) -> bytes:
    mode = kw.pop("mode", "RGB")
    fmt = kw.pop("format", "PNG")
    out = io.BytesIO()
    Image.new(mode, (width, height), colour).save(out, fmt, **kw)
    return out.getvalue()


def data_uri(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def image_uri(width: int = 600, height: int = 400, colour: tuple[int, ...] = (200, 40, 40)) -> str:
    return data_uri(png_bytes(width, height, colour))


def wan26_body(prompt: str = "a red fox in the snow", **params: Any) -> dict[str, Any]:
    return {
        "model": "wan2.6-t2i",
        "input": {"messages": [{"role": "user", "content": [{"text": prompt}]}]},
        "parameters": params,
    }


def legacy_body(model: str, prompt: str = "a lighthouse at dusk", **params: Any) -> dict[str, Any]:
    return {"model": model, "input": {"prompt": prompt}, "parameters": params}


def edit_body(images: list[str], prompt: str = "make it blue", **params: Any) -> dict[str, Any]:
    return {
        "model": "wan2.5-i2i-preview",
        "input": {"prompt": prompt, "images": images},
        "parameters": params,
    }


def body_for(model: str, prompt: str = "a quiet harbour", **params: Any) -> tuple[str, dict]:
    """The async route and a valid body for `model`."""
    if model == "wan2.6-t2i":
        return ASYNC, wan26_body(prompt, **params)
    if model == "wan2.5-i2i-preview":
        return I2I, edit_body([image_uri()], prompt, **params)
    return T2I, legacy_body(model, prompt, **params)


class Api:
    """A thin raw-HTTP client for one running simulator."""

    def __init__(self, running: RunningSimulator, client: httpx.AsyncClient) -> None:
        self.running = running
        self.sim = running.sim
        self.http = client
        self.base = running.base_url
        self.root = running.root_url

    async def post(
        self, path: str, body: Any, *, async_: bool = True, key: str | None = KEY, **kw: Any
    ) -> httpx.Response:
        headers = dict(kw.pop("headers", {}))
        if key is not None:
            headers["Authorization"] = f"Bearer {key}"
        if async_:
            headers["X-DashScope-Async"] = "enable"
        if isinstance(body, bytes | str):
            return await self.http.post(self.base + path, content=body, headers=headers, **kw)
        return await self.http.post(self.base + path, json=body, headers=headers, **kw)

    async def get(self, path: str, *, key: str | None = KEY, **kw: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {key}"} if key is not None else {}
        return await self.http.get(self.base + path, headers=headers, **kw)

    async def submit(self, path: str, body: dict[str, Any]) -> str:
        response = await self.post(path, body)
        assert response.status_code == 200, response.text
        output = response.json()["output"]
        assert output["task_status"] == "PENDING"
        return output["task_id"]

    async def task(self, task_id: str) -> dict[str, Any]:
        response = await self.get(f"/tasks/{task_id}")
        assert response.status_code == 200, response.text
        return response.json()

    async def wait(self, task_id: str, timeout: float = 5.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            response = await self.get(f"/tasks/{task_id}")
            # Looking every 10 ms can outrun the account's 20 task queries a second, which
            # the simulator keeps (a slow machine lets a long task meet it): wait, look again.
            if response.status_code != 429:
                assert response.status_code == 200, response.text
                body = response.json()
                if body["output"]["task_status"] in TERMINAL:
                    return body
            assert time.monotonic() < deadline, f"task {task_id} did not end: {response.text}"
            await asyncio.sleep(0.01 if response.status_code != 429 else 0.2)

    async def control(self, path: str, body: Any = None) -> httpx.Response:
        if body is None and path == "/_sim/state":
            return await self.http.get(self.root + path)
        return await self.http.post(self.root + path, json=body)

    async def advance(self, seconds: float) -> None:
        response = await self.control("/_sim/clock", {"advance": seconds})
        assert response.status_code == 200

    async def fetch_png(self, url: str) -> Image.Image:
        response = await self.http.get(url)
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "image/png"
        image = Image.open(io.BytesIO(response.content))
        assert image.format == "PNG"
        return image


def urls(body: dict[str, Any]) -> list[str]:
    output = body["output"]
    if "choices" in output:
        return [c["message"]["content"][0]["image"] for c in output["choices"]]
    return [r["url"] for r in output["results"] if "url" in r]


def assert_error(response: httpx.Response, status: int, code: str, message: str | None = None):
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"request_id", "code", "message"}
    assert body["code"] == code
    assert body["request_id"] == response.headers["x-request-id"]
    if message is not None:
        assert body["message"] == message
    return body


Starter = Callable[..., Awaitable[Api]]


@pytest.fixture(scope="module")
def tls() -> ssl.SSLContext:
    """Built once: httpx would otherwise load the CA bundle for every test's client."""
    return ssl.create_default_context()


@pytest.fixture
async def client(tls: ssl.SSLContext) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=10.0, verify=tls) as http:
        yield http


@pytest.fixture
async def start(client: httpx.AsyncClient) -> AsyncIterator[Starter]:
    running: list[RunningSimulator] = []

    async def starter(**overrides: Any) -> Api:
        settings: dict[str, Any] = {"speed": 1000.0, "seed": 7, **overrides}
        simulator = await start_simulator(SimulatorConfig(**settings))
        running.append(simulator)
        return Api(simulator, client)

    yield starter
    for simulator in running:
        await simulator.stop()


@pytest.fixture
async def api(start: Starter) -> Api:
    return await start()


# --- auth and envelopes -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", SYNC),
        ("POST", ASYNC),
        ("POST", T2I),
        ("POST", I2I),
        ("GET", "/tasks/x"),
        ("GET", "/tasks"),
        ("POST", "/tasks/x/cancel"),
    ],
)
@pytest.mark.parametrize(
    ("key", "message"),
    [(None, "No API-key provided."), ("sk-wrong", "Invalid API-key provided.")],
)
async def test_every_api_route_requires_a_valid_key(api: Api, method, path, key, message):
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    response = await api.http.request(method, api.base + path, json=wan26_body(), headers=headers)
    assert_error(response, 401, "InvalidApiKey", message)


async def test_a_key_of_another_region_is_refused(start: Starter):
    beijing = await start(api_keys={KEY, "sk-intl:ap-southeast-1"})
    response = await beijing.post(SYNC, wan26_body(), async_=False, key="sk-intl")
    assert_error(response, 401, "InvalidApiKey", "Invalid API-key provided.")
    singapore = await start(api_keys={"sk-intl:ap-southeast-1"}, region="ap-southeast-1")
    response = await singapore.post(SYNC, wan26_body(n=1), async_=False, key="sk-intl")
    assert response.status_code == 200, response.text


async def test_authorization_needs_the_bearer_scheme(api: Api):
    response = await api.http.get(api.base + "/tasks", headers={"Authorization": KEY})
    assert_error(response, 401, "InvalidApiKey", "Invalid API-key provided.")
    response = await api.http.get(api.base + "/tasks", headers={"Authorization": "Bearer"})
    assert_error(response, 401, "InvalidApiKey", "No API-key provided.")


async def test_success_carries_request_id_header_and_json_content_type(api: Api):
    response = await api.post(ASYNC, wan26_body(n=1))
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["request_id"] == response.headers["x-request-id"]
    uuid.UUID(body["request_id"])
    task_id = body["output"]["task_id"]
    assert uuid.UUID(task_id).version == 4
    got = await api.get(f"/tasks/{task_id}")
    assert got.headers["content-type"].startswith("application/json")
    assert got.json()["request_id"] == got.headers["x-request-id"]
    assert got.json()["request_id"] != body["request_id"]


# --- routes, models and the async header ------------------------------------------------------


async def test_async_header_on_the_sync_route_is_refused(api: Api):
    response = await api.post(SYNC, wan26_body(), async_=True)
    assert_error(
        response, 403, "AccessDenied", "current user api does not support asynchronous calls"
    )


@pytest.mark.parametrize(
    ("path", "body"),
    [
        (ASYNC, wan26_body()),
        (T2I, legacy_body("wan2.5-t2i-preview")),
        (T2I, legacy_body("wanx2.1-t2i-turbo")),
        (T2I, legacy_body("wanx2.1-t2i-plus")),
        (T2I, legacy_body("wanx2.0-t2i-turbo")),
        (I2I, edit_body([image_uri()])),
    ],
)
async def test_async_only_routes_refuse_calls_without_the_header(api: Api, path, body):
    response = await api.post(path, body, async_=False)
    assert_error(
        response, 403, "AccessDenied", "current user api does not support synchronous calls"
    )


@pytest.mark.parametrize("model", ["wan2.2-t2i-flash", "wan2.2-t2i-plus"])
async def test_wan22_answers_synchronously_on_the_legacy_route(api: Api, model):
    response = await api.post(T2I, legacy_body(model, n=2, size="512*768"), async_=False)
    assert response.status_code == 200, response.text
    output = response.json()["output"]
    assert output["task_status"] == "SUCCEEDED"
    assert len(output["results"]) == 2
    assert response.json()["usage"] == {"image_count": 2}
    image = await api.fetch_png(output["results"][0]["url"])
    assert image.size == (512, 768)
    # ... and asynchronously too.
    task_id = await api.submit(T2I, legacy_body(model, n=1))
    assert (await api.wait(task_id))["output"]["task_status"] == "SUCCEEDED"


async def test_sync_wan26_answers_with_one_choice_per_image(api: Api):
    response = await api.post(SYNC, wan26_body(n=3, size="1104*1472"), async_=False)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["output"]["finished"] is True
    assert len(body["output"]["choices"]) == 3
    for choice in body["output"]["choices"]:
        assert choice["finish_reason"] == "stop"
        assert choice["message"]["role"] == "assistant"
        assert choice["message"]["content"][0]["type"] == "image"
    assert body["usage"] == {
        "image_count": 3,
        "input_tokens": 0,
        "output_tokens": 0,
        "size": "1104*1472",
        "total_tokens": 0,
    }
    assert (await api.fetch_png(urls(body)[2])).size == (1104, 1472)


@pytest.mark.parametrize(
    ("path", "body"),
    [
        (T2I, wan26_body()),
        (I2I, wan26_body()),
        (SYNC, legacy_body("wan2.5-t2i-preview")),
        (ASYNC, legacy_body("wan2.2-t2i-flash")),
        (T2I, edit_body([image_uri()])),
        (ASYNC, edit_body([image_uri()])),
    ],
)
async def test_a_model_on_the_wrong_route_is_a_url_error(api: Api, path, body):
    response = await api.post(path, body, async_=path != SYNC)
    assert_error(response, 400, "InvalidParameter", "url error, please check url!")


@pytest.mark.parametrize("model", ["wan9-t2i", "wanx-v1", "wan2.1-t2i-turbo", 42])
async def test_an_unknown_model_does_not_exist(api: Api, model):
    response = await api.post(T2I, legacy_body(model))  # type: ignore[arg-type]
    assert_error(response, 400, "InvalidParameter", "Model not exist.")


async def test_models_follow_the_region(start: Starter):
    singapore = await start(region="ap-southeast-1")
    response = await singapore.post(T2I, legacy_body("wanx2.0-t2i-turbo"))
    assert_error(response, 400, "InvalidParameter", "Model not exist.")
    assert (await singapore.post(T2I, legacy_body("wan2.1-t2i-turbo", n=1))).status_code == 200
    virginia = await start(region="us-east-1")
    response = await virginia.post(I2I, edit_body([image_uri()]))
    assert_error(response, 400, "InvalidParameter", "Model not exist.")


async def test_body_errors(api: Api):
    assert_error(await api.post(ASYNC, {"input": {}}), 400, "BadRequest.EmptyModel")
    assert_error(await api.post(ASYNC, b"{not json"), 400, "BadRequest.IllegalInput")
    assert_error(await api.post(ASYNC, b"[1, 2]"), 400, "InvalidParameter")
    assert_error(await api.post(ASYNC, {"model": "wan2.6-t2i"}), 400, "BadRequest.EmptyInput")


async def test_parameters_may_be_missing_and_unknown_keys_are_ignored(api: Api):
    body = wan26_body()
    del body["parameters"]
    task_id = await api.submit(ASYNC, body)
    done = await api.wait(task_id)
    assert len(done["output"]["choices"]) == 4  # n defaults to 4
    assert done["usage"]["size"] == "1280*1280"
    await api.submit(ASYNC, wan26_body(n=1, is_async=True, style="<auto>"))


async def test_unrouted_requests_get_envelopes(api: Api):
    response = await api.get(SYNC)
    assert_error(response, 400, "InvalidParameter", "Request method 'GET' is not supported.")
    response = await api.post("/services/aigc/video-generation/video-synthesis", wan26_body())
    assert_error(response, 400, "InvalidParameter", "url error, please check url!")
    assert_error(await api.get("/nothing-here"), 404, "NotFound")


# --- validation tables ------------------------------------------------------------------------

SIZE_CASES = [
    ("wan2.6-t2i", "1280*1280", True),
    ("wan2.6-t2i", "1440*1440", True),
    ("wan2.6-t2i", "768*2700", True),
    ("wan2.6-t2i", "2700*768", True),
    ("wan2.6-t2i", "1696*960", True),  # recommended, though under 1280*1280 pixels
    ("wan2.6-t2i", "1104*1472", True),  # recommended, though under 1280*1280 pixels
    ("wan2.6-t2i", "640*2560", True),  # ratio exactly 1:4
    ("wan2.6-t2i", "1200*1300", False),
    ("wan2.6-t2i", "1441*1440", False),
    ("wan2.6-t2i", "700*2900", False),  # pixels fine, ratio above 4
    ("wan2.6-t2i", "1024*1024", False),
    ("wan2.6-t2i", "1280x1280", False),
    ("wan2.6-t2i", "big", False),
    ("wan2.6-t2i", 1280, False),
    ("wan2.5-t2i-preview", "768*2700", True),
    ("wan2.5-t2i-preview", "1472*1104", True),
    ("wan2.5-t2i-preview", "2900*700", False),
    ("wan2.5-t2i-preview", "1024*1024", False),
    ("wan2.2-t2i-flash", "512*512", True),
    ("wan2.2-t2i-flash", "1440*1440", True),
    ("wan2.2-t2i-plus", "512*1440", True),
    ("wan2.2-t2i-plus", "511*1024", False),
    ("wan2.2-t2i-flash", "1024*1441", False),
    ("wanx2.1-t2i-turbo", "1440*512", True),
    ("wanx2.1-t2i-plus", "1500*1000", False),
    ("wanx2.0-t2i-turbo", "720*1280", True),
    ("wanx2.0-t2i-turbo", "1280*400", False),
    ("wan2.5-i2i-preview", "1280*1280", True),
    ("wan2.5-i2i-preview", "768*768", True),
    ("wan2.5-i2i-preview", "1344*576", True),
    ("wan2.5-i2i-preview", "512*2048", True),  # ratio exactly 1:4
    ("wan2.5-i2i-preview", "767*768", False),
    ("wan2.5-i2i-preview", "1281*1280", False),
    ("wan2.5-i2i-preview", "480*2048", False),
]


@pytest.mark.parametrize(("model", "size", "ok"), SIZE_CASES)
async def test_size_rules_per_model(api: Api, model, size, ok):
    path, body = body_for(model, n=1, size=size)
    response = await api.post(path, body)
    if ok:
        assert response.status_code == 200, response.text
    else:
        body = assert_error(response, 400, "InvalidParameter")
        assert "size" in body["message"]


@pytest.mark.parametrize("model", ["wan2.6-t2i", "wan2.5-t2i-preview", "wan2.2-t2i-flash"])
@pytest.mark.parametrize(("n", "ok"), [(0, False), (1, True), (4, True), (5, False), ("2", False)])
async def test_n_must_be_one_to_four(api: Api, model, n, ok):
    path, body = body_for(model, n=n)
    response = await api.post(path, body)
    if ok:
        assert response.status_code == 200, response.text
    else:
        assert_error(response, 400, "InvalidParameter", "Range of n should be [1, 4]")


@pytest.mark.parametrize(
    ("seed", "ok"), [(-1, False), (0, True), (2147483647, True), (2**31, False), (1.5, False)]
)
async def test_seed_range(api: Api, seed, ok):
    response = await api.post(ASYNC, wan26_body(n=1, seed=seed))
    if ok:
        assert response.status_code == 200, response.text
    else:
        assert_error(response, 400, "InvalidParameter")


@pytest.mark.parametrize(
    ("model", "length", "kept"),
    [
        ("wan2.5-t2i-preview", 2500, 2000),
        ("wan2.5-i2i-preview", 2001, 2000),
        ("wan2.2-t2i-flash", 501, 500),
        ("wanx2.1-t2i-plus", 800, 500),
        ("wanx2.0-t2i-turbo", 800, 800),
        ("wanx2.0-t2i-turbo", 801, 800),
    ],
)
async def test_long_prompts_are_truncated(api: Api, model, length, kept):
    path, body = body_for(model, "p" * length, n=1, prompt_extend=False)
    body["input"]["negative_prompt"] = "n" * 700  # over 500: truncated, not refused
    done = await api.wait(await api.submit(path, body))
    result = done["output"]["results"][0]
    assert result["orig_prompt"] == "p" * kept
    assert "actual_prompt" not in result


async def test_wan26_rejects_a_prompt_over_2100_characters(api: Api):
    assert (await api.post(ASYNC, wan26_body("x" * 2100, n=1))).status_code == 200
    assert_error(await api.post(ASYNC, wan26_body("x" * 2101, n=1)), 400, "InvalidParameter")
    response = await api.post(ASYNC, wan26_body(n=1, negative_prompt="n" * 900))
    assert response.status_code == 200


@pytest.mark.parametrize(
    "messages",
    [
        [],
        [
            {"role": "user", "content": [{"text": "a"}]},
            {"role": "user", "content": [{"text": "b"}]},
        ],
        [{"role": "assistant", "content": [{"text": "a"}]}],
        [{"role": "user", "content": [{"text": "a"}, {"text": "b"}]}],
        [{"role": "user", "content": [{"image": "https://example.com/a.png"}]}],
        [{"role": "user", "content": [{"text": "a", "image": "https://example.com/a.png"}]}],
        [{"role": "user", "content": [{"text": "   "}]}],
        [{"role": "user", "content": "a plain string"}],
    ],
)
async def test_wan26_wants_exactly_one_user_text(api: Api, messages):
    body = {"model": "wan2.6-t2i", "input": {"messages": messages}, "parameters": {"n": 1}}
    assert_error(await api.post(ASYNC, body), 400, "InvalidParameter")


@pytest.mark.parametrize("prompt", [None, "", "  ", 7])
async def test_legacy_prompt_is_required(api: Api, prompt):
    body = {"model": "wan2.5-t2i-preview", "input": {"prompt": prompt}, "parameters": {"n": 1}}
    assert_error(await api.post(T2I, body), 400, "InvalidParameter")


@pytest.mark.parametrize("flag", ["prompt_extend", "watermark"])
async def test_flags_must_be_booleans(api: Api, flag):
    assert_error(await api.post(ASYNC, wan26_body(n=1, **{flag: "yes"})), 400, "InvalidParameter")


# --- edit inputs ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "mime"),
    [("JPEG", "image/jpeg"), ("PNG", "image/png"), ("BMP", "image/bmp"), ("WEBP", "image/webp")],
)
async def test_edit_accepts_each_documented_format(api: Api, fmt, mime):
    uri = data_uri(png_bytes(500, 400, (30, 90, 200), format=fmt), mime)
    done = await api.wait(await api.submit(I2I, edit_body([uri], n=1, size="1024*1024")))
    assert done["output"]["task_status"] == "SUCCEEDED"


@pytest.mark.parametrize(
    ("images", "fragment"),
    [
        ([], "images"),
        ([image_uri()] * 4, "Too many"),
        ([data_uri(png_bytes(500, 400, format="GIF"), "image/gif")], "invalid format"),
        ([data_uri(png_bytes(500, 400, format="GIF"), "image/png")], "invalid format"),
        ([data_uri(png_bytes(500, 400, (1, 2, 3, 100), mode="RGBA"))], "alpha"),
        ([image_uri(383, 600)], "resolution"),
        ([image_uri(5001, 400)], "resolution"),
        (["data:image/png;base64,@@@not-base64@@@"], "base64"),
        ([data_uri(b"\x89PNG\r\n\x1a\n" + os.urandom(64))], "invalid format"),
        (["data:image/png;base64," + "A" * (14 * 1024 * 1024)], "too large"),
        (["ftp://example.com/a.png"], "source is invalid"),
        ([image_uri(), 42], "images"),
    ],
)
async def test_edit_refuses_bad_images(api: Api, images, fragment):
    body = assert_error(await api.post(I2I, edit_body(images, n=1)), 400, "InvalidParameter")
    assert fragment in body["message"]


async def test_edit_fetches_http_inputs(api: Api):
    source = await api.post(
        SYNC, wan26_body("a source picture", n=1, size="960*1696"), async_=False
    )
    url = urls(source.json())[0]
    done = await api.wait(await api.submit(I2I, edit_body([url], n=1)))
    assert done["output"]["task_status"] == "SUCCEEDED"
    # No size given: about 1280*1280 pixels with the aspect ratio of the (last) input.
    width, height = (await api.fetch_png(urls(done)[0])).size
    assert abs(width / height - 960 / 1696) < 0.01
    assert 0.97 * 1280 * 1280 <= width * height <= 1280 * 1280


async def test_edit_reports_inputs_it_cannot_download(api: Api):
    source = await api.post(SYNC, wan26_body(n=1), async_=False)
    tampered = urls(source.json())[0].replace("Signature=", "Signature=x")
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    closed_port = listener.getsockname()[1]
    listener.close()
    for url in (tampered, f"http://127.0.0.1:{closed_port}/a.png"):
        response = await api.post(I2I, edit_body([url], n=1))
        assert_error(
            response,
            400,
            "InvalidParameter.DataInspection",
            "Unable to download the media resource during the data inspection process.",
        )


async def test_edit_accepts_bodies_far_over_one_mebibyte(api: Api):
    noise = Image.frombytes("RGB", (1200, 1200), os.urandom(1200 * 1200 * 3))
    out = io.BytesIO()
    noise.save(out, "PNG", compress_level=0)
    body = edit_body([data_uri(out.getvalue())], n=1)
    assert len(out.getvalue()) > 4 * 1024 * 1024
    assert (await api.post(I2I, body)).status_code == 200


async def test_edit_output_transforms_the_input_at_the_requested_size(api: Api):
    red = png_bytes(900, 600, (220, 30, 30))
    green = png_bytes(600, 900, (20, 160, 40))

    async def edit(inputs: list[bytes]) -> tuple[list[Image.Image], dict[str, Any]]:
        body = edit_body([data_uri(x) for x in inputs], n=2, size="1024*1280", seed=5)
        done = await api.wait(await api.submit(I2I, body))
        return [await api.fetch_png(url) for url in urls(done)], done

    (first, second), done = await edit([red, green])
    assert done["output"]["task_metrics"] == {"TOTAL": 2, "SUCCEEDED": 2, "FAILED": 0}
    assert first.size == second.size == (1024, 1280)
    original = Image.open(io.BytesIO(green)).convert("RGB").resize((1024, 1280))
    assert first.convert("RGB").tobytes() != original.tobytes()
    assert first.tobytes() != second.tobytes()  # later images start from other inputs
    # Same prompt, seed and size, other inputs: the output follows the inputs.
    (swapped_first, _), _ = await edit([green, red])
    assert swapped_first.tobytes() != first.tobytes()


# --- life cycle -------------------------------------------------------------------------------


async def test_life_cycle_and_in_flight_queue(start: Starter):
    api = await start(submit_rps={"wan2.6-t2i": 10})
    ids = [await api.submit(ASYNC, wan26_body(f"slow {i} sim:slow=10", n=2)) for i in range(6)]
    outputs = [(await api.task(i))["output"] for i in ids]
    for output in outputs[:5]:
        assert output["task_status"] == "RUNNING"
        assert output["task_metrics"] == {"TOTAL": 2, "SUCCEEDED": 0, "FAILED": 0}
        assert TASK_TIME.fullmatch(output["submit_time"])
        assert TASK_TIME.fullmatch(output["scheduled_time"])
        assert "end_time" not in output
    assert outputs[5]["task_status"] == "PENDING"
    assert set(outputs[5]) == {"task_id", "task_status", "submit_time"}
    # Another model has its own slots.
    other = await api.submit(T2I, legacy_body("wan2.5-t2i-preview", "quick", n=1))
    assert (await api.task(other))["output"]["task_status"] == "RUNNING"
    state = (await api.control("/_sim/state")).json()
    assert state["in_flight"]["wan2.6-t2i"] == 5
    assert state["queued"] == {"wan2.6-t2i": 1}

    await api.advance(10.5)
    sixth = (await api.task(ids[5]))["output"]
    assert sixth["task_status"] == "RUNNING"
    submitted = datetime.strptime(sixth["submit_time"], "%Y-%m-%d %H:%M:%S.%f")
    scheduled = datetime.strptime(sixth["scheduled_time"], "%Y-%m-%d %H:%M:%S.%f")
    assert 9.5 <= (scheduled - submitted).total_seconds() <= 10.5  # waited for a free slot
    first = await api.task(ids[0])
    assert first["output"]["task_status"] == "SUCCEEDED"
    assert TASK_TIME.fullmatch(first["output"]["end_time"])
    assert first["usage"]["image_count"] == 2

    await api.advance(10)
    assert (await api.task(ids[5]))["output"]["task_status"] == "SUCCEEDED"


async def test_legacy_models_have_two_slots(start: Starter):
    api = await start(submit_rps={"wan2.2-t2i-flash": 10})
    ids = [
        await api.submit(T2I, legacy_body("wan2.2-t2i-flash", f"{i} sim:slow=5", n=1))
        for i in range(3)
    ]
    statuses = [(await api.task(i))["output"]["task_status"] for i in ids]
    assert statuses == ["RUNNING", "RUNNING", "PENDING"]


async def test_task_times_are_beijing_time(api: Api):
    before = datetime.now(BEIJING).replace(tzinfo=None)
    task_id = await api.submit(ASYNC, wan26_body(n=1))
    submitted = (await api.task(task_id))["output"]["submit_time"]
    moment = datetime.strptime(submitted, "%Y-%m-%d %H:%M:%S.%f")
    assert abs((moment - before).total_seconds()) < 5


async def test_succeeded_legacy_shape(api: Api):
    body = legacy_body("wan2.5-t2i-preview", "a lighthouse at dusk", n=2, prompt_extend=True)
    done = await api.wait(await api.submit(T2I, body))
    output = done["output"]
    assert output["task_status"] == "SUCCEEDED"
    assert output["task_metrics"] == {"TOTAL": 2, "SUCCEEDED": 2, "FAILED": 0}
    for result in output["results"]:
        assert result["orig_prompt"] == "a lighthouse at dusk"
        assert result["actual_prompt"].startswith("a lighthouse at dusk")
        assert result["actual_prompt"] != result["orig_prompt"]
        assert result["url"].startswith(api.root + "/results/")
    assert done["usage"] == {"image_count": 2}
    for key in ("submit_time", "scheduled_time", "end_time"):
        assert TASK_TIME.fullmatch(output[key])


async def test_succeeded_wan26_shape_has_choices_and_no_metrics(api: Api):
    done = await api.wait(await api.submit(ASYNC, wan26_body(n=2, size="1472*1104")))
    output = done["output"]
    assert output["finished"] is True
    assert len(output["choices"]) == 2
    assert "task_metrics" not in output and "results" not in output
    assert done["usage"]["image_count"] == 2 and done["usage"]["size"] == "1472*1104"


async def test_trailing_slash_task_route_is_the_same(api: Api):
    task_id = await api.submit(ASYNC, wan26_body(n=1))
    await api.wait(task_id)
    plain = (await api.get(f"/tasks/{task_id}")).json()
    slash = await api.get(f"/tasks/{task_id}/")
    assert slash.status_code == 200
    assert {k: v for k, v in slash.json().items() if k != "request_id"} == {
        k: v for k, v in plain.items() if k != "request_id"
    }


async def test_unknown_and_expired_tasks_read_unknown(start: Starter):
    api = await start(task_ttl=3600, result_ttl=7200)
    response = await api.get("/tasks/1111")
    assert response.status_code == 200
    assert response.json()["output"] == {"task_id": "1111", "task_status": "UNKNOWN"}
    task_id = await api.submit(ASYNC, wan26_body(n=1))
    done = await api.wait(task_id)
    await api.advance(3601)
    assert (await api.task(task_id))["output"] == {"task_id": task_id, "task_status": "UNKNOWN"}
    # Result URLs outlive the task record when result_ttl is longer.
    assert (await api.fetch_png(urls(done)[0])).size == (1280, 1280)
    # A TTL changed at run time applies at once.
    fresh = await api.submit(ASYNC, wan26_body(n=1))
    await api.wait(fresh)
    assert (await api.control("/_sim/faults", {"task_ttl": 1})).status_code == 200
    await api.advance(1.5)
    assert (await api.task(fresh))["output"]["task_status"] == "UNKNOWN"


async def test_cancel_only_from_pending(start: Starter):
    api = await start(submit_rps={"wan2.6-t2i": 10})
    ids = [await api.submit(ASYNC, wan26_body(f"{i} sim:slow=4", n=1)) for i in range(7)]
    response = await api.post(f"/tasks/{ids[5]}/cancel", b"", async_=False)
    assert response.status_code == 200, response.text
    assert set(response.json()) == {"request_id"}
    canceled = (await api.task(ids[5]))["output"]
    assert canceled["task_status"] == "CANCELED"
    assert "scheduled_time" not in canceled
    message = "Failed to cancel the task, please confirm if the task is in PENDING status."
    for target in (ids[5], ids[0], "no-such-task"):  # canceled, running, unknown
        response = await api.post(f"/tasks/{target}/cancel", b"", async_=False)
        assert_error(response, 400, "UnsupportedOperation", message)
    # The queue moves on without the canceled task: the 7th gets the first free slot.
    await api.advance(4.5)
    assert (await api.task(ids[6]))["output"]["task_status"] == "RUNNING"
    await api.advance(4)
    assert (await api.task(ids[6]))["output"]["task_status"] == "SUCCEEDED"
    response = await api.post(f"/tasks/{ids[6]}/cancel", b"", async_=False)
    assert_error(response, 400, "UnsupportedOperation", message)


# --- list -------------------------------------------------------------------------------------


async def test_list_shape_and_filters(start: Starter):
    api = await start(task_ttl=7 * 86400, submit_rps={"wan2.6-t2i": 10})
    old = await api.submit(T2I, legacy_body("wan2.5-t2i-preview", n=1))
    await api.wait(old)
    old_time = api.sim.now()
    await api.advance(2 * 86400)
    done = [await api.submit(ASYNC, wan26_body(f"{i}", n=1)) for i in range(3)]
    for task_id in done:
        await api.wait(task_id)
    slow = await api.submit(ASYNC, wan26_body("sim:slow=30", n=1))

    listed = await api.get("/tasks")
    assert listed.status_code == 200
    body = listed.json()
    assert set(body) == {"total", "data", "total_page", "page_no", "page_size", "request_id"}
    assert body["request_id"] == listed.headers["x-request-id"]
    assert (body["total"], body["page_no"], body["page_size"], body["total_page"]) == (4, 1, 10, 1)
    newest = body["data"][0]
    assert newest["task_id"] == slow and newest["status"] == "RUNNING"
    assert "end_time" not in newest and isinstance(newest["start_time"], int)
    item = body["data"][1]
    assert item["status"] == "SUCCEEDED" and item["model_name"] == "wan2.6-t2i"
    assert item["region"] == "cn-beijing"
    assert item["user_api_unique_key"] == "apikey:v1:aigc:image-generation:generation:wan2.6-t2i"
    assert item["end_time"] >= item["start_time"] >= item["gmt_create"]
    assert abs(item["gmt_create"] / 1000 - api.sim.now()) < 60

    async def ids(**query: Any) -> list[str]:
        response = await api.get("/tasks/", params=query)
        assert response.status_code == 200, response.text
        return [entry["task_id"] for entry in response.json()["data"]]

    assert await ids(status="RUNNING") == [slow]
    assert await ids(model_name="wan2.5-t2i-preview") == []  # older than the last 24 h
    window = {"start_time": list_time(old_time - 60), "end_time": list_time(old_time)}
    assert await ids(**window) == [old]
    assert await ids(start_time=list_time(old_time - 60)) == [old]
    assert await ids(task_id=old) == [old]
    assert await ids(page_size=2) == [slow, done[2]]
    page = await api.get("/tasks", params={"page_size": 3, "page_no": 2})
    assert [e["task_id"] for e in page.json()["data"]] == [done[0]]
    assert page.json()["total_page"] == 2

    for bad in (
        {"start_time": "2024-01-01"},
        {"end_time": "20240101"},
        {"start_time": "20240101000000", "end_time": "20240102000001"},  # over 24 hours
        {"start_time": "20240102000000", "end_time": "20240101000000"},
        {"page_no": "0"},
        {"page_size": "ten"},
    ):
        assert_error(await api.get("/tasks", params=bad), 400, "InvalidParameter")


# --- rate limits ------------------------------------------------------------------------------


async def test_submit_rate_limit_per_model(api: Api):
    for _ in range(5):
        assert (await api.post(ASYNC, wan26_body(n=1))).status_code == 200
    assert_error(
        await api.post(ASYNC, wan26_body(n=1)),
        429,
        "Throttling.RateQuota",
        "Requests rate limit exceeded, please try again later.",
    )
    # Other models have their own windows; wan2.2 allows two a second.
    for _ in range(2):
        assert (await api.post(T2I, legacy_body("wan2.2-t2i-flash", n=1))).status_code == 200
    assert_error(
        await api.post(T2I, legacy_body("wan2.2-t2i-flash", n=1)), 429, "Throttling.RateQuota"
    )
    await api.advance(1.01)
    assert (await api.post(ASYNC, wan26_body(n=1))).status_code == 200
    assert (await api.control("/_sim/state")).json()["throttled"] == 2


async def test_task_queries_beyond_twenty_per_second_are_throttled(api: Api):
    task_id = await api.submit(ASYNC, wan26_body(n=1))
    responses = await asyncio.gather(*(api.get(f"/tasks/{task_id}") for _ in range(25)))
    codes = sorted(r.status_code for r in responses)
    assert codes == [200] * 20 + [429] * 5
    throttled = next(r for r in responses if r.status_code == 429)
    assert_error(throttled, 429, "Throttling.RateQuota")
    # Listing and cancelling have their own 20/s windows.
    assert (await api.get("/tasks")).status_code == 200
    state = (await api.control("/_sim/state")).json()
    assert state["task_queries"] == 25
    assert state["peak_query_rate"] >= 25
    await api.advance(1.01)
    assert (await api.get(f"/tasks/{task_id}")).status_code == 200


async def test_query_limit_is_configurable(start: Starter):
    api = await start(task_query_qps=3)
    results = [(await api.get("/tasks/x")).status_code for _ in range(4)]
    assert results == [200, 200, 200, 429]


# --- faults -----------------------------------------------------------------------------------


async def test_latency_is_added_to_api_responses(start: Starter):
    api = await start(latency_ms=300)
    began = time.monotonic()
    assert (await api.get("/tasks/x")).status_code == 200
    assert time.monotonic() - began >= 0.3
    began = time.monotonic()
    await api.control("/_sim/state")  # control routes are not API responses
    assert time.monotonic() - began < 0.3


@pytest.mark.parametrize(
    ("setting", "status", "code", "message"),
    [
        ("rate_429", 429, "Throttling.RateQuota", None),
        (
            "rate_500",
            500,
            "InternalError",
            "An internal error has occured, please try again later or contact service support.",
        ),
        ("rate_503", 503, "ModelUnavailable", "Model is unavailable, please try again later."),
    ],
)
async def test_random_error_faults(start: Starter, setting, status, code, message):
    api = await start(**{setting: 1.0})
    assert_error(await api.post(ASYNC, wan26_body(n=1)), status, code, message)
    assert_error(await api.get("/tasks/x"), status, code, message)
    assert (await api.control("/_sim/faults", {setting: 0.0})).status_code == 200
    assert (await api.post(ASYNC, wan26_body(n=1))).status_code == 200


async def test_fault_routes_limit_where_faults_hit(api: Api):
    await api.control("/_sim/faults", {"rate_503": 1.0, "routes": "submit"})
    assert (await api.post(ASYNC, wan26_body(n=1))).status_code == 503
    assert (await api.get("/tasks/x")).status_code == 200
    await api.control("/_sim/faults", {"routes": "query"})
    assert (await api.post(ASYNC, wan26_body(n=1))).status_code == 200
    assert (await api.get("/tasks/x")).status_code == 503


async def test_dropped_connections(api: Api):
    await api.control("/_sim/faults", {"rate_drop": 1.0})
    with pytest.raises(httpx.RemoteProtocolError):
        await api.post(ASYNC, wan26_body(n=1))
    with pytest.raises(httpx.RemoteProtocolError):
        await api.get("/tasks")
    state = (await api.control("/_sim/state")).json()
    assert state["faults_injected"] == {"drop": 2}
    assert state["submissions"] == 0


async def test_drop_after_submit_creates_the_task(api: Api):
    await api.control("/_sim/faults", {"drop_after_submit": 1.0})
    with pytest.raises(httpx.RemoteProtocolError):
        await api.post(ASYNC, wan26_body("lost answer", n=1))
    listed = (await api.get("/tasks")).json()
    assert listed["total"] == 1
    assert (await api.control("/_sim/state")).json()["submissions"] == 1


async def test_script_is_consumed_in_order(api: Api):
    script = [
        {"route": "submit", "action": "429"},
        {"route": "query", "action": "503"},
        {"route": "any", "action": "500"},
        {"route": "any", "action": "drop"},
    ]
    assert (await api.control("/_sim/faults", {"script": script})).status_code == 200
    assert_error(await api.post(ASYNC, wan26_body(n=1)), 429, "Throttling.RateQuota")
    task_id = await api.submit(ASYNC, wan26_body(n=1))  # the next step is for a query
    assert_error(await api.get(f"/tasks/{task_id}"), 503, "ModelUnavailable")
    assert_error(await api.get(f"/tasks/{task_id}"), 500, "InternalError")
    with pytest.raises(httpx.RemoteProtocolError):
        await api.get(f"/tasks/{task_id}")
    assert (await api.get(f"/tasks/{task_id}")).status_code == 200
    assert (await api.control("/_sim/state")).json()["faults"]["script"] == []


async def test_fault_settings_are_validated(api: Api):
    for bad in (
        {"rate_429": 2},
        {"rate_drop": "often"},
        {"routes": "everywhere"},
        {"script": [{"route": "submit", "action": "418"}]},
        {"partial_failures": -1},
        {"no_such_fault": 1},
    ):
        assert (await api.control("/_sim/faults", bad)).status_code == 400, bad
    response = await api.http.post(api.root + "/_sim/faults", content=b"[1]")
    assert response.status_code == 400
    assert (await api.control("/_sim/clock", {"advance": -5})).status_code == 400


async def test_reset_restores_the_config(start: Starter):
    api = await start(rate_503=0.0, latency_ms=0)
    await api.submit(ASYNC, wan26_body(n=1))
    await api.control("/_sim/faults", {"rate_503": 1.0, "task_ttl": 5})
    await api.advance(100)
    state = (await api.control("/_sim/reset", {})).json()
    assert state["tasks_total"] == 0 and state["submissions"] == 0
    assert state["clock_offset"] == 0
    assert state["faults"]["rate_503"] == 0 and state["faults"]["task_ttl"] == 86400
    assert state["requests"] == {}
    assert (await api.post(ASYNC, wan26_body(n=1))).status_code == 200


async def test_task_ids_stay_unique_across_resets(start: Starter):
    """A seeded simulator repeats its draws after a reset, but never a task id (DashScope never
    reuses one, and the bot keeps task ids unique)."""
    api = await start(rate_503=0.0, latency_ms=0)
    seen = set()
    for _ in range(3):
        for _ in range(2):
            seen.add(await api.submit(ASYNC, wan26_body(n=1)))
        await api.control("/_sim/reset", {})
    assert len(seen) == 6


async def test_partial_failures_setting(api: Api):
    await api.control("/_sim/faults", {"partial_failures": 1})
    path, body = body_for("wan2.5-t2i-preview", n=3)
    done = await api.wait(await api.submit(path, body))
    output = done["output"]
    assert output["task_status"] == "SUCCEEDED"
    assert output["task_metrics"] == {"TOTAL": 3, "SUCCEEDED": 2, "FAILED": 1}
    assert output["results"][2] == {
        "code": "DataInspectionFailed",
        "message": "Output data may contain inappropriate content.",
    }
    assert done["usage"] == {"image_count": 2}
    # The failed image has no object behind it.
    expires = int(parse_qs(urlsplit(urls(done)[0]).query)["Expires"][0])
    missing = result_url(api.root, api.sim.url_secret, output["task_id"], 2, expires)
    assert (await api.http.get(missing)).status_code == 404


# --- prompt markers ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("marker", "code", "message"),
    [
        (
            "sim:moderate-input",
            "DataInspectionFailed",
            "Input data may contain inappropriate content.",
        ),
        (
            "sim:ip",
            "IPInfringementSuspect",
            "Input data is suspected of being involved in IP infringement.",
        ),
    ],
)
@pytest.mark.parametrize("model", ["wan2.6-t2i", "wan2.5-t2i-preview", "wan2.5-i2i-preview"])
async def test_submit_time_markers(api: Api, marker, code, message, model):
    path, body = body_for(model, f"a picture {marker}", n=1)
    assert_error(await api.post(path, body), 400, code, message)
    assert (await api.control("/_sim/state")).json()["submissions"] == 0


@pytest.mark.parametrize(
    ("marker", "code", "message"),
    [
        (
            "sim:moderate-image",
            "DataInspectionFailed",
            "Green net check failed for image (input): "
            "Input data may contain inappropriate content.",
        ),
        (
            "sim:moderate-output",
            "DataInspectionFailed",
            "Output data may contain inappropriate content.",
        ),
        (
            "sim:fail=InternalError.Timeout",
            "InternalError.Timeout",
            "An internal timeout error has occured during execution, "
            "please try again later or contact service support.",
        ),
        ("sim:fail=Arrearage.", "Arrearage", None),
        ("sim:partial=2", "DataInspectionFailed", "Output data may contain inappropriate content."),
    ],
)
@pytest.mark.parametrize("model", ["wan2.6-t2i", "wan2.2-t2i-flash", "wan2.5-i2i-preview"])
async def test_task_failure_markers(api: Api, marker, code, message, model):
    path, body = body_for(model, f"a picture {marker}", n=2)
    done = await api.wait(await api.submit(path, body))
    output = done["output"]
    assert output["task_status"] == "FAILED"
    assert output["code"] == code
    if message:
        assert output["message"] == message
    assert output["task_metrics"] == {"TOTAL": 2, "SUCCEEDED": 0, "FAILED": 2}
    assert "usage" not in done
    assert "results" not in output and "choices" not in output


async def test_partial_marker_keeps_the_rest(api: Api):
    path, body = body_for("wan2.5-i2i-preview", "sim:partial=2 of four", n=4)
    done = await api.wait(await api.submit(path, body))
    assert done["output"]["task_metrics"] == {"TOTAL": 4, "SUCCEEDED": 2, "FAILED": 2}
    codes = [r.get("code") for r in done["output"]["results"]]
    assert codes == [None, None, "DataInspectionFailed", "InternalError.Timeout"]
    assert done["usage"]["image_count"] == 2
    path, body = body_for("wan2.6-t2i", "sim:partial=1", n=3)
    done = await api.wait(await api.submit(path, body))
    assert len(done["output"]["choices"]) == 2
    assert done["usage"]["image_count"] == 2


async def test_slow_marker_is_in_real_seconds(start: Starter):
    api = await start(speed=1_000_000)  # any other task would end within microseconds
    task_id = await api.submit(ASYNC, wan26_body("sim:slow=5", n=1))
    assert (await api.task(task_id))["output"]["task_status"] == "RUNNING"
    await api.advance(4.9)
    assert (await api.task(task_id))["output"]["task_status"] == "RUNNING"
    await api.advance(0.2)
    assert (await api.task(task_id))["output"]["task_status"] == "SUCCEEDED"


@pytest.mark.parametrize(
    ("prompt", "status", "code"),
    [
        ("sim:moderate-output", 400, "DataInspectionFailed"),
        ("sim:moderate-image", 400, "DataInspectionFailed"),
        ("sim:fail=InternalError", 500, "InternalError"),
        ("sim:partial=1", 400, "DataInspectionFailed"),
    ],
)
async def test_sync_calls_report_task_failures_as_http_errors(api: Api, prompt, status, code):
    assert_error(await api.post(SYNC, wan26_body(prompt, n=1), async_=False), status, code)


async def test_sync_partial_failure_returns_the_rest(api: Api):
    response = await api.post(SYNC, wan26_body("sim:partial=1", n=2), async_=False)
    assert response.status_code == 200
    assert len(response.json()["output"]["choices"]) == 1
    assert response.json()["usage"]["image_count"] == 1


def test_marker_parsing():
    markers = find_markers("x sim:partial=3 sim:fail=InternalError.Algo. sim:slow=2.5 sim:ip")
    assert (markers.partial, markers.fail, markers.slow, markers.ip) == (
        3,
        "InternalError.Algo",
        2.5,
        True,
    )
    assert not find_markers("sim:ipsum and sim:moderate-inputs").ip
    assert not find_markers("sim:moderate-inputs").moderate_input
    assert find_markers("plain prompt") == find_markers("")


# --- result images ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "size"),
    [
        ("wan2.6-t2i", "768*2700"),
        ("wan2.5-t2i-preview", "1440*1440"),
        ("wan2.2-t2i-plus", "512*1440"),
        ("wanx2.0-t2i-turbo", None),
        ("wan2.5-i2i-preview", "1344*576"),
    ],
)
async def test_result_png_has_the_requested_size(api: Api, model, size):
    params = {"n": 1, **({"size": size} if size else {})}
    path, body = body_for(model, **params)
    done = await api.wait(await api.submit(path, body))
    image = await api.fetch_png(urls(done)[0])
    expected = tuple(map(int, size.split("*"))) if size else (1024, 1024)
    assert image.size == expected


async def test_same_prompt_and_seed_give_the_same_bytes(start: Starter):
    api = await start(submit_rps={"wan2.6-t2i": 10})

    async def picture(prompt: str, seed: int) -> bytes:
        response = await api.post(SYNC, wan26_body(prompt, n=1, seed=seed), async_=False)
        return (await api.http.get(urls(response.json())[0])).content

    first = await picture("a green teapot", 11)
    assert await picture("a green teapot", 11) == first
    assert await picture("a green teapot", 12) != first
    assert await picture("a blue teapot", 11) != first
    other = await start()  # another simulator instance renders the same bytes
    response = await other.post(SYNC, wan26_body("a green teapot", n=1, seed=11), async_=False)
    assert (await other.http.get(urls(response.json())[0])).content == first


async def test_images_of_one_task_differ(api: Api):
    done = await api.wait(await api.submit(ASYNC, wan26_body(n=2, seed=3)))
    first, second = [(await api.http.get(url)).content for url in urls(done)]
    assert first != second


async def test_result_urls_expire_and_are_signed(start: Starter):
    api = await start(result_ttl=600)
    done = await api.wait(await api.submit(ASYNC, wan26_body(n=1)))
    url = urls(done)[0]
    assert "OSSAccessKeyId=sim" in url and "Expires=" in url
    assert (await api.http.get(url)).status_code == 200
    tampered = await api.http.get(url.replace("/0.png", "/1.png"))
    assert tampered.status_code == 403 and "SignatureDoesNotMatch" in tampered.text
    unsigned = await api.http.get(url.split("?")[0])
    assert unsigned.status_code == 403
    await api.advance(601)
    expired = await api.http.get(url)
    assert expired.status_code == 403
    assert "Request has expired" in expired.text
    assert expired.headers["content-type"].startswith("application/xml")


async def test_unknown_result_objects_are_404(api: Api):
    url = result_url(api.root, api.sim.url_secret, str(uuid.uuid4()), 0, int(time.time()) + 600)
    response = await api.http.get(url)
    assert response.status_code == 404 and "NoSuchKey" in response.text


async def test_result_urls_follow_the_host_the_client_used(api: Api):
    task_id = await api.submit(ASYNC, wan26_body(n=1))
    await api.wait(task_id)
    port = api.running.port
    response = await api.http.get(
        f"http://localhost:{port}/api/v1/tasks/{task_id}",
        headers={"Authorization": f"Bearer {KEY}"},
    )
    url = urls(response.json())[0]
    assert url.startswith(f"http://localhost:{port}/results/")
    assert (await api.fetch_png(url)).size == (1280, 1280)


# --- state, scale and the command line --------------------------------------------------------


async def test_state_counts(api: Api):
    task_id = await api.submit(ASYNC, wan26_body(n=1))
    await api.wait(task_id)
    await api.get("/tasks")
    await api.post(SYNC, wan26_body(n=1), async_=False)
    state = (await api.control("/_sim/state")).json()
    assert state["tasks"]["SUCCEEDED"] == 1  # synchronous calls are not listed as tasks
    assert state["submissions"] == 2
    assert state["requests"]["image-generation"] == 1
    assert state["requests"]["multimodal-generation"] == 1
    assert state["requests"]["tasks.list"] == 1
    assert state["requests"]["tasks.get"] == state["task_queries"] >= 1


def generation(prompt: str, n: int = 1) -> GenerationRequest:
    body = {
        "model": "wan2.6-t2i",
        "input": {"messages": [{"role": "user", "content": [{"text": prompt}]}]},
        "parameters": {"n": n},
    }
    return validate(MODELS["wan2.6-t2i"], Route.IMAGE_GENERATION, body)


def test_thousands_of_tasks_stay_cheap():
    sim = Simulator(SimulatorConfig(seed=1, speed=1.0))
    began = time.perf_counter()
    tasks = [sim.create_task(generation(f"p{i}"), (1280, 1280), (), "r", "k") for i in range(3000)]
    counts = sim.store.counts(sim.now(), sim.faults.task_ttl)
    assert counts["RUNNING"] == 5 and counts["PENDING"] == 2995
    sim.advance_clock(3000 * 35 / 5 + 60)  # the longest possible queue, inside the task TTL
    counts = sim.store.counts(sim.now(), sim.faults.task_ttl)
    assert counts["SUCCEEDED"] == 3000
    # FIFO with five slots: tasks start in submit order, each as the next slot frees.
    starts = [task.started_at for task in tasks]
    assert starts == sorted(starts)
    ends = sorted(task.ended_at for task in tasks)
    assert starts[5:] == ends[:-5]
    assert time.perf_counter() - began < 5


def test_pool_cancel_frees_the_queue_position():
    sim = Simulator(SimulatorConfig(seed=2, max_in_flight={"wan2.6-t2i": 1}))
    first, second, third = (
        sim.create_task(generation(f"sim:slow=10 {i}"), (1280, 1280), (), "r", "k")
        for i in range(3)
    )
    pool: ModelPool = sim.store.pool("wan2.6-t2i")
    assert pool.cancel(second, sim.now())
    assert not pool.cancel(first, sim.now())
    sim.advance_clock(10.5)
    assert sim.status(third) == "RUNNING"
    assert third.started_at == first.ended_at


def test_cli_serves_until_sigterm():
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen(
        [sys.executable, "-m", "bot.simulator", "--port", "0", "--speed", "500", "--seed", "1"],
        cwd=REPO,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    watchdog = threading.Timer(20, process.kill)  # a hung server must not hang the suite
    watchdog.start()
    try:
        assert process.stderr is not None
        lines = []
        match = None
        while match is None and len(lines) < 20:
            lines.append(process.stderr.readline())
            match = re.search(r"(http://127\.0\.0\.1:\d+/api/v1)", lines[-1])
        assert match, lines
        response = httpx.post(
            match[1] + SYNC,
            json=wan26_body(n=1),
            headers={"Authorization": f"Bearer {KEY}"},
            timeout=10,
        )
        assert response.status_code == 200
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    finally:
        watchdog.cancel()
        if process.poll() is None:
            process.kill()
            process.wait()


@pytest.mark.parametrize(
    "settings",
    [
        {"speed": 0},
        {"submit_rps": {"wan9-t2i": 3}},
        {"max_in_flight": {"wan2.6-t2i": 0}},
        {"api_keys": set()},
        {"rate_500": 1.5},
        {"routes": "sometimes"},
        {"script": [{"route": "submit", "action": "teapot"}]},
        {"task_query_qps": 0},
    ],
)
def test_config_is_validated(settings):
    with pytest.raises(ValueError):
        SimulatorConfig(**settings)


def test_config_keys_and_regions():
    config = SimulatorConfig(api_keys="sk-one")  # type: ignore[arg-type]
    assert config.api_keys == {"sk-one"}
    config = SimulatorConfig(api_keys={"sk-a", "sk-b:us-east-1"}, region="cn-beijing")
    assert config.key_regions() == {"sk-a": "cn-beijing", "sk-b": "us-east-1"}


@given(
    width=st.integers(min_value=384, max_value=5000),
    height=st.integers(min_value=384, max_value=5000),
)
def test_edit_default_size_is_always_allowed(width: int, height: int):
    out_w, out_h = edit_default_size(width, height)
    assert EDIT_SIZE.problem(out_w, out_h) is None
    assert out_w * out_h >= 0.98 * 1280 * 1280
    ratio = min(max(width / height, 0.25), 4)
    assert abs(out_w / out_h - ratio) / ratio < 0.01
