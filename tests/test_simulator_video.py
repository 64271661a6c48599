"""The Wan video models in the simulator, over raw HTTP: the route's async-only rule, each
model's rules (table-driven), the life cycle, markers, and MP4s that decode to the asked
duration, size, codec and sound."""

from __future__ import annotations

import io
import math
import struct
import wave
from collections.abc import AsyncIterator
from typing import Any

import av
import pytest
from aiohttp import web

from bot.simulator import SimulatorConfig
from bot.simulator.cli import build_parser, config_from_args
from bot.simulator.clip import ClipSpec, encode_clip, render_clip
from bot.simulator.models import MODELS, VIDEO_MODELS, VIDEO_SIZES
from bot.simulator.video import i2v_size
from tests import test_simulator
from tests.test_simulator import Api, Starter, assert_error, image_uri, png_bytes

VIDEO = "/services/aigc/video-generation/video-synthesis"
# The raw-HTTP fixtures of the simulator's own tests: a client, and simulators started on demand.
tls, client, start = test_simulator.tls, test_simulator.client, test_simulator.start


def i2v(model: str = "wan2.5-i2v-preview", image: str | None = None, **params: Any) -> dict:
    body_input: dict[str, Any] = {"prompt": "the fox turns its head"}
    body_input["img_url"] = image if image is not None else image_uri(640, 360)
    return {"model": model, "input": body_input, "parameters": params}


def t2v(model: str = "wan2.5-t2v-preview", prompt: str = "a paper boat", **params: Any) -> dict:
    return {"model": model, "input": {"prompt": prompt}, "parameters": params}


def valid_body(model: str, **params: Any) -> dict[str, Any]:
    video = MODELS[model].video
    assert video is not None
    return i2v(model, **params) if video.from_image else t2v(model, **params)


@pytest.fixture
async def api(start: Starter) -> Api:
    return await start(submit_rps={spec.name: 100 for spec in VIDEO_MODELS})


def probe(data: bytes) -> dict[str, Any]:
    """What a player sees in an MP4: its length, video codec, pixel format, size, sound."""
    with av.open(io.BytesIO(data)) as container:
        video = container.streams.video[0]
        frames = sum(1 for _ in container.decode(video))
        return {
            "duration": container.duration / av.time_base,
            "codec": video.codec_context.name,
            "pix_fmt": video.codec_context.pix_fmt,
            "size": (video.codec_context.width, video.codec_context.height),
            "audio": [s.codec_context.name for s in container.streams.audio],
            "frames": frames,
        }


async def run(api: Api, body: dict[str, Any]) -> tuple[dict[str, Any], bytes]:
    done = await api.wait(await api.submit(VIDEO, body), timeout=30)
    assert done["output"]["task_status"] == "SUCCEEDED", done
    response = await api.http.get(done["output"]["video_url"])
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "video/mp4"
    return done, response.content


# --- the route ---------------------------------------------------------------------------------


async def test_video_synthesis_is_async_only(api: Api):
    response = await api.post(VIDEO, t2v(), async_=False)
    assert_error(
        response, 403, "AccessDenied", "current user api does not support synchronous calls"
    )
    submitted = await api.post(VIDEO, t2v())
    assert submitted.status_code == 200, submitted.text
    output = submitted.json()["output"]
    assert output["task_status"] == "PENDING"
    listed = (await api.get("/tasks")).json()
    [item] = listed["data"]
    assert item["task_id"] == output["task_id"]
    assert item["model_name"] == "wan2.5-t2v-preview"
    assert item["user_api_unique_key"].endswith(
        "aigc:video-generation:video-synthesis:wan2.5-t2v-preview"
    )


async def test_image_routes_refuse_video_models_and_back(api: Api):
    assert_error(await api.post(test_simulator.T2I, t2v()), 400, "InvalidParameter")
    body = test_simulator.legacy_body("wan2.2-t2i-flash")
    assert_error(
        await api.post(VIDEO, body), 400, "InvalidParameter", "url error, please check url!"
    )


# --- the rules, model by model -----------------------------------------------------------------

VALID = [
    ("wan2.6-i2v", {"duration": 15, "resolution": "1080P"}),
    ("wan2.6-i2v", {"duration": 10, "resolution": "720P", "audio": False}),
    ("wan2.5-i2v-preview", {"duration": 10, "resolution": "480P"}),
    ("wan2.2-i2v-plus", {"duration": 5, "resolution": "480P"}),
    ("wanx2.1-i2v-turbo", {"duration": 3, "resolution": "720P"}),
    ("wanx2.1-i2v-plus", {}),
    ("wan2.6-t2v", {"duration": 15, "size": "1080*1920", "shot_type": "multi"}),
    ("wan2.5-t2v-preview", {"duration": 10, "size": "624*624"}),
    ("wan2.2-t2v-plus", {"size": "1632*1248"}),
    ("wanx2.1-t2v-turbo", {"size": "832*480"}),
    ("wanx2.1-t2v-plus", {"size": "960*960", "seed": 42, "watermark": True}),
]


@pytest.mark.parametrize(("model", "params"), VALID)
async def test_each_model_takes_its_own_settings(api: Api, model: str, params: dict[str, Any]):
    response = await api.post(VIDEO, valid_body(model, **params))
    assert response.status_code == 200, response.text


REFUSED = [
    # (model, input changes, parameters, words the message holds)
    ("wan2.5-i2v-preview", {"img_url": None}, {}, "img_url"),
    ("wan2.5-i2v-preview", {"img_url": image_uri(300, 400)}, {}, "300*400"),
    ("wan2.5-i2v-preview", {"img_url": image_uri(2100, 600)}, {}, "between 360 and 2000"),
    ("wan2.6-i2v", {}, {"resolution": "480P"}, "720P, 1080P"),
    ("wan2.2-i2v-plus", {}, {"resolution": "720P"}, "480P, 1080P"),
    ("wan2.2-i2v-plus", {}, {"duration": 10}, "duration"),
    ("wan2.5-i2v-preview", {}, {"duration": 15}, "5, 10"),
    ("wanx2.1-i2v-turbo", {}, {"duration": 6}, "3, 4, 5"),
    ("wan2.5-i2v-preview", {}, {"duration": "5"}, "duration"),
    ("wan2.5-i2v-preview", {}, {"size": "1280*720"}, "resolution"),
    ("wan2.5-i2v-preview", {"prompt": "x" * 1501}, {}, "1501 characters, at most 1500"),
    ("wanx2.1-i2v-plus", {"prompt": "x" * 801}, {}, "at most 800"),
    ("wan2.5-i2v-preview", {"negative_prompt": "x" * 501}, {}, "at most 500"),
    ("wan2.2-i2v-plus", {}, {"audio": True}, "silent"),
    ("wan2.2-i2v-plus", {"audio_url": "https://example.com/a.mp3"}, {}, "audio_url"),
    ("wan2.5-i2v-preview", {"last_frame_url": "https://example.com/b.png"}, {}, "last_frame"),
    ("wan2.5-t2v-preview", {"img_url": "https://example.com/a.png"}, {}, "from text"),
    ("wan2.5-t2v-preview", {"prompt": None}, {}, "prompt"),
    ("wan2.5-t2v-preview", {"prompt": "x" * 1501}, {}, "at most 1500"),
    ("wanx2.1-t2v-turbo", {"prompt": "x" * 801}, {}, "at most 800"),
    ("wan2.6-t2v", {}, {"size": "832*480"}, "1280*720"),
    ("wan2.2-t2v-plus", {}, {"size": "1280*720"}, "832*480"),
    ("wan2.5-t2v-preview", {}, {"size": "1000*1000"}, "size"),
    ("wan2.5-t2v-preview", {}, {"resolution": "720P"}, "size"),
    ("wan2.6-t2v", {}, {"shot_type": "multi", "prompt_extend": False}, "prompt_extend"),
    ("wan2.6-t2v", {}, {"shot_type": "several"}, "single, multi"),
    ("wan2.5-t2v-preview", {}, {"shot_type": "multi"}, "shot_type"),
    ("wan2.5-t2v-preview", {}, {"seed": -1}, "seed"),
]


@pytest.mark.parametrize(("model", "changes", "params", "words"), REFUSED)
async def test_bad_requests_are_refused_with_what_to_change(
    api: Api, model: str, changes: dict[str, Any], params: dict[str, Any], words: str
):
    body = valid_body(model, **params)
    for name, value in changes.items():
        if value is None:
            body["input"].pop(name, None)
        else:
            body["input"][name] = value
    body = assert_error(await api.post(VIDEO, body), 400, "InvalidParameter")
    assert words in body["message"]
    assert (await api.control("/_sim/state")).json()["submissions"] == 0


@pytest.mark.parametrize("region", ["cn-beijing", "ap-southeast-1"])
async def test_each_region_serves_its_models(start: Starter, region: str):
    api = await start(region=region)
    for spec in VIDEO_MODELS:
        response = await api.post(VIDEO, valid_body(spec.name))
        if region in spec.regions:
            assert response.status_code == 200, (spec.name, response.text)
        else:
            assert_error(response, 400, "InvalidParameter", "Model not exist.")
    served = [spec.name for spec in VIDEO_MODELS if region in spec.regions]
    assert any(name.startswith("wanx2.1") for name in served) is (region == "cn-beijing")


def test_i2v_sizes_keep_the_image_aspect():
    assert i2v_size(1920, 1080, "720P") == (1280, 720)
    assert i2v_size(1080, 1920, "1080P") == (1080, 1920)
    assert i2v_size(1000, 1000, "720P") == (960, 960)
    assert i2v_size(800, 800, "480P") == (624, 624)
    for tier, sizes in VIDEO_SIZES.items():
        area = sizes[0][0] * sizes[0][1]
        for width, height in ((400, 1900), (1999, 361), (1024, 768)):
            out_w, out_h = i2v_size(width, height, tier)
            assert out_w % 8 == out_h % 8 == 0
            assert 0.95 * area <= out_w * out_h <= area
            assert abs(out_w / out_h - width / height) / (width / height) < 0.05


# --- life cycle and results --------------------------------------------------------------------


async def test_an_image_to_video_task_makes_a_playable_mp4(api: Api):
    image = image_uri(1280, 720, (30, 120, 200))
    body = i2v("wan2.5-i2v-preview", image, duration=10, resolution="720P", seed=9)
    done, data = await run(api, body)
    output = done["output"]
    assert output["orig_prompt"] == "the fox turns its head"
    assert output["actual_prompt"].startswith("the fox turns its head")
    assert {"submit_time", "scheduled_time", "end_time", "video_url"} <= set(output)
    assert done["usage"] == {
        "duration": 10,
        "video_count": 1,
        "SR": 720,
        "video_duration": 10,
        "video_ratio": "1280*720",
    }
    seen = probe(data)
    assert seen["codec"] == "h264" and seen["pix_fmt"] == "yuv420p"
    assert seen["size"] == (1280, 720)
    assert abs(seen["duration"] - 10) <= 0.1
    assert seen["audio"] == ["aac"]  # wan2.5 makes sound unless told not to


@pytest.mark.parametrize(
    ("model", "params", "size", "seconds", "audio", "sr"),
    [
        ("wan2.6-t2v", {"size": "720*1280", "duration": 15}, (720, 1280), 15, True, 720),
        ("wan2.5-t2v-preview", {"size": "832*480", "audio": False}, (832, 480), 5, False, 480),
        ("wanx2.1-t2v-turbo", {}, (1280, 720), 5, False, 720),  # the default: 720P 16:9
        (
            "wan2.2-t2v-plus",
            {"size": "1440*1440", "prompt_extend": False},
            (1440, 1440),
            5,
            False,
            1080,
        ),
    ],
)
async def test_text_to_video_results(api: Api, model, params, size, seconds, audio, sr):
    done, data = await run(api, t2v(model, **params))
    seen = probe(data)
    assert (seen["size"], seen["codec"]) == (size, "h264")
    assert abs(seen["duration"] - seconds) <= 0.1
    assert bool(seen["audio"]) is audio
    assert ("actual_prompt" in done["output"]) is (params.get("prompt_extend") is not False)
    assert done["usage"]["SR"] == sr
    assert done["usage"]["duration"] == seconds


async def test_i2v_keeps_a_portrait_image_upright(api: Api):
    _, data = await run(api, i2v("wanx2.1-i2v-turbo", image_uri(480, 960), duration=3))
    seen = probe(data)
    assert seen["size"] == i2v_size(480, 960, "720P")
    assert seen["size"][0] < seen["size"][1]
    assert abs(seen["duration"] - 3) <= 0.1 and seen["audio"] == []


async def test_the_duration_grows_with_seconds_and_resolution(start: Starter):
    api = await start(speed=1.0, submit_rps={"wan2.6-t2v": 100}, max_in_flight={"wan2.6-t2v": 10})
    short = await api.submit(VIDEO, t2v("wan2.6-t2v", size="1280*720", duration=5))
    long = await api.submit(VIDEO, t2v("wan2.6-t2v", size="1920*1080", duration=15))
    tasks = {task_id: api.sim.store.tasks[task_id] for task_id in (short, long)}
    low, high = MODELS["wan2.6-t2v"].duration
    assert low <= tasks[short].duration <= high  # 5 s at 720P: the model's typical time
    assert tasks[long].duration >= low * 3 * 1.7
    for task_id in (short, long):
        assert (await api.task(task_id))["output"]["task_status"] == "RUNNING"
    await api.advance(high)
    assert (await api.task(short))["output"]["task_status"] == "SUCCEEDED"
    assert (await api.task(long))["output"]["task_status"] == "RUNNING"
    await api.advance(high * 3 * 1.7)
    assert (await api.task(long))["output"]["task_status"] == "SUCCEEDED"


async def test_cancel_while_pending(start: Starter):
    model = "wanx2.1-t2v-plus"
    api = await start(speed=1.0, submit_rps={model: 100}, max_in_flight={model: 1})
    first = await api.submit(VIDEO, t2v(model))
    second = await api.submit(VIDEO, t2v(model))
    assert (await api.task(second))["output"]["task_status"] == "PENDING"
    response = await api.post(f"/tasks/{first}/cancel", b"", async_=False)
    assert_error(response, 400, "UnsupportedOperation")  # already running
    response = await api.post(f"/tasks/{second}/cancel", b"", async_=False)
    assert response.status_code == 200, response.text
    assert (await api.task(second))["output"]["task_status"] == "CANCELED"


@pytest.mark.parametrize(
    ("prompt", "code", "message"),
    [
        ("sim:moderate-output", "DataInspectionFailed", "Output data may contain"),
        ("sim:moderate-image", "DataInspectionFailed", "Green net check failed"),
        ("sim:partial=1", "DataInspectionFailed", "Output data may contain"),
        ("sim:fail=InternalError.Timeout", "InternalError.Timeout", "timeout"),
    ],
)
async def test_markers_fail_video_tasks(api: Api, prompt: str, code: str, message: str):
    done = await api.wait(await api.submit(VIDEO, t2v(prompt=f"a boat {prompt}")))
    output = done["output"]
    assert output["task_status"] == "FAILED"
    assert output["code"] == code and message in output["message"]
    assert "video_url" not in output and "usage" not in done


async def test_moderated_input_is_refused_at_submit(api: Api):
    body = i2v()
    body["input"]["prompt"] = "a boat sim:moderate-input"
    assert_error(await api.post(VIDEO, body), 400, "DataInspectionFailed")


async def test_a_large_video_on_request(api: Api):
    _, usual = await run(api, t2v("wanx2.1-t2v-turbo", size="1280*720"))
    _, marked = await run(api, t2v("wanx2.1-t2v-turbo", "a boat sim:video-mb=12", size="1280*720"))
    assert len(usual) < 2 * 1024 * 1024
    assert len(marked) >= 12 * 1024 * 1024
    seen = probe(marked)
    assert seen["size"] == (1280, 720) and abs(seen["duration"] - 5) <= 0.1
    await api.control("/_sim/faults", {"video_mb": 3})
    _, every = await run(api, t2v("wanx2.1-t2v-turbo", "another boat", size="1280*720"))
    assert len(every) >= 3 * 1024 * 1024


async def test_video_urls_are_signed_and_expire(start: Starter):
    api = await start(result_ttl=60.0)
    done, _ = await run(api, t2v("wanx2.1-t2v-turbo", size="832*480"))
    url = done["output"]["video_url"]
    assert ".mp4?Expires=" in url
    tampered = url.replace(".mp4?", ".png?")
    assert (await api.http.get(tampered)).status_code == 403
    await api.advance(61)
    refused = await api.http.get(url)
    assert refused.status_code == 403 and "expired" in refused.text


# --- the encoder -------------------------------------------------------------------------------


def test_a_clip_asked_for_again_is_not_encoded_again():
    spec = ClipSpec(624, 624, 5, False, "a cached clip", 77)
    assert encode_clip(spec) is encode_clip(spec)
    assert encode_clip(spec) == render_clip(spec)


def test_clips_move_and_are_deterministic():
    spec = ClipSpec(832, 480, 5, True, "a fox", 3, image=png_bytes(900, 500, (10, 200, 90)))
    data = render_clip(spec)
    assert render_clip(spec) == data
    seen = probe(data)
    assert seen["frames"] == 40 and seen["audio"] == ["aac"]
    with av.open(io.BytesIO(data)) as container:
        frames = [f.to_ndarray(format="gray") for f in container.decode(video=0)]
    assert (frames[0] != frames[-1]).mean() > 0.01  # something moves
    green = frames[10][100:300, 100:700].mean()
    assert 100 < green < 200  # the input image's green (luma about 137) fills the frame


def test_the_large_video_option_from_the_command_line():
    args = build_parser().parse_args(["--video-mb", "12.5"])
    assert config_from_args(args).fault_settings().video_mb == 12.5
    with pytest.raises(ValueError, match="video_mb"):
        SimulatorConfig(video_mb=-1)


# --- audio_url ---------------------------------------------------------------------------------


def wav(seconds: float, rate: int = 16000) -> bytes:
    """A WAV file of a 440 Hz tone."""
    out = io.BytesIO()
    with wave.open(out, "wb") as file:
        file.setnchannels(1)
        file.setsampwidth(2)
        file.setframerate(rate)
        count = int(seconds * rate)
        tone = (int(8000 * math.sin(2 * math.pi * 440 * k / rate)) for k in range(count))
        file.writeframes(struct.pack(f"<{count}h", *tone))
    return out.getvalue()


@pytest.fixture
async def files() -> AsyncIterator[str]:
    """A plain file server on 127.0.0.1: GET /NAME gives FILES[NAME]; its root URL."""
    served = {"tone.wav": wav(4.0), "short.wav": wav(1.5), "noise.mp3": b"not a sound" * 100}

    async def handler(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in served:
            raise web.HTTPNotFound()
        return web.Response(body=served[name])

    app = web.Application()
    app.router.add_get("/{name}", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    await runner.cleanup()


async def test_audio_url_is_fetched_and_becomes_the_sound(api: Api, files: str):
    body = t2v("wan2.5-t2v-preview", size="832*480", duration=10, audio=False)
    body["input"]["audio_url"] = f"{files}/tone.wav"
    _, data = await run(api, body)
    seen = probe(data)
    assert seen["audio"] == ["aac"] and abs(seen["duration"] - 10) <= 0.1
    # 4 s of the tone, then silence to the end.
    with av.open(io.BytesIO(data)) as container:
        loud = [
            (frame.time, float(abs(frame.to_ndarray()).max()))
            for frame in container.decode(audio=0)
        ]
    assert all(level > 0.1 for time, level in loud if 0.5 < time < 3.5)
    assert all(level < 0.01 for time, level in loud if time > 4.5)


@pytest.mark.parametrize(
    ("name", "code", "words"),
    [
        ("noise.mp3", "InvalidParameter", "not a readable audio file"),
        ("short.wav", "InvalidParameter", "1.5 s, it must be between 3 and 30 seconds"),
        ("missing.wav", "InvalidParameter.DataInspection", "Unable to download"),
    ],
)
async def test_bad_audio_urls_are_refused(api: Api, files: str, name: str, code: str, words: str):
    body = i2v("wan2.6-i2v")
    body["input"]["audio_url"] = f"{files}/{name}"
    assert words in assert_error(await api.post(VIDEO, body), 400, code)["message"]
