"""The official `dashscope` SDK (blocking) against the simulator on its own thread.

If the SDK can call, wait, fetch, cancel and list through the simulator, and reads its errors
the way it reads DashScope's, the simulator speaks the wire protocol. The SDK is pointed at the
simulator through `dashscope.base_http_api_url` (its `wait`, `fetch` and `cancel` ignore
`base_address`), and a guard refuses any request to a host other than 127.0.0.1.
"""

from __future__ import annotations

import base64
import io
import threading
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import dashscope
import pytest
import requests
from dashscope import ImageSynthesis
from dashscope.aigc.image_generation import ImageGeneration
from dashscope.common.error import InvalidTask
from PIL import Image

from bot.simulator import SimulatorConfig, SimulatorThread

KEY = "sk-simulator"
MESSAGES = [{"role": "user", "content": [{"text": "a paper boat on a pond"}]}]


def messages(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": [{"text": text}]}]


def data_uri(width: int, height: int, colour: tuple[int, int, int]) -> str:
    out = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(out, "PNG")
    return "data:image/png;base64," + base64.b64encode(out.getvalue()).decode()


def fetch_png(url: str) -> Image.Image:
    response = requests.get(url, timeout=10)
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/png"
    image = Image.open(io.BytesIO(response.content))
    assert image.format == "PNG"
    return image


@pytest.fixture(scope="module")
def sdk_sim() -> Iterator[SimulatorThread]:
    # Fast enough that the SDK's first poll, right after submitting, finds the task done.
    config = SimulatorConfig(speed=100_000, seed=5)
    with SimulatorThread(config) as thread, pytest.MonkeyPatch.context() as patch:
        patch.setattr(dashscope, "base_http_api_url", thread.base_url)
        patch.delenv("DASHSCOPE_API_KEY", raising=False)
        original_send = requests.adapters.HTTPAdapter.send

        def loopback_only(adapter: Any, request: Any, *args: Any, **kwargs: Any) -> Any:
            host = urlsplit(request.url).hostname
            if host != "127.0.0.1":
                raise AssertionError(f"the SDK tried to reach {request.url}")
            return original_send(adapter, request, *args, **kwargs)

        patch.setattr(requests.adapters.HTTPAdapter, "send", loopback_only)
        yield thread


@pytest.fixture(autouse=True)
def fresh(sdk_sim: SimulatorThread) -> Iterator[SimulatorThread]:
    sdk_sim.reset()
    yield sdk_sim


def test_the_sdk_is_pointed_at_the_simulator(sdk_sim: SimulatorThread):
    assert dashscope.base_http_api_url == sdk_sim.base_url
    assert sdk_sim.base_url.startswith("http://127.0.0.1:")
    with pytest.raises(AssertionError, match="tried to reach"):
        requests.get("https://dashscope.aliyuncs.com/api/v1/tasks", timeout=1)


def test_image_synthesis_call_edits_a_data_uri(sdk_sim: SimulatorThread):
    response = ImageSynthesis.call(
        model="wan2.5-i2i-preview",
        prompt="turn the square into a circle",
        images=[data_uri(800, 600, (200, 30, 30))],
        n=1,
        api_key=KEY,
    )
    assert response.status_code == 200, response
    assert response.output.task_status == "SUCCEEDED"
    assert len(response.output.results) == 1
    result = response.output.results[0]
    assert result.orig_prompt == "turn the square into a circle"
    assert result.actual_prompt.startswith("turn the square into a circle")
    assert response.usage.image_count == 1
    width, height = fetch_png(result.url).size
    assert abs(width / height - 4 / 3) < 0.01  # no size: the input's aspect ratio
    state = sdk_sim.state()
    assert state["requests"]["image2image"] == 1
    assert state["tasks"]["SUCCEEDED"] == 1


def test_image_synthesis_with_base_address_and_explicit_size(sdk_sim: SimulatorThread):
    task = ImageSynthesis.async_call(
        model="wan2.5-i2i-preview",
        prompt="make it night",
        images=[data_uri(600, 600, (20, 20, 200)), data_uri(700, 500, (20, 200, 20))],
        n=2,
        size="1280*720",
        seed=42,
        base_address=sdk_sim.base_url,
        api_key=KEY,
    )
    assert task.status_code == 200
    assert task.output.task_status == "PENDING"
    assert task.output.results == []
    done = ImageSynthesis.wait(task, api_key=KEY)
    assert done.output.task_status == "SUCCEEDED"
    assert [fetch_png(r.url).size for r in done.output.results] == [(1280, 720)] * 2


def test_imageedit_upscale_and_expand(sdk_sim: SimulatorThread):
    checks = Image.radial_gradient("L").resize((640, 520)).convert("RGB")
    out = io.BytesIO()
    checks.save(out, "PNG")
    base = "data:image/png;base64," + base64.b64encode(out.getvalue()).decode()
    upscaled = ImageSynthesis.call(
        model="wanx2.1-imageedit",
        function="super_resolution",
        base_image_url=base,
        prompt="sharper",
        upscale_factor=2,
        n=1,
        api_key=KEY,
    )
    assert upscaled.status_code == 200, upscaled
    assert upscaled.output.task_status == "SUCCEEDED"
    assert upscaled.usage.image_count == 1
    assert fetch_png(upscaled.output.results[0].url).size == (1280, 1040)
    sdk_sim.advance_clock(1)  # two submissions a second
    expanded = ImageSynthesis.call(
        model="wanx2.1-imageedit",
        function="expand",
        base_image_url=base,
        prompt="more sky",
        top_scale=2.0,
        bottom_scale=1.0,
        left_scale=1.5,
        right_scale=1.5,
        seed=9,
        api_key=KEY,
    )
    assert expanded.output.task_status == "SUCCEEDED", expanded
    image = fetch_png(expanded.output.results[0].url).convert("RGB")
    assert image.size == (960, 780)  # 1.5 times as wide, the image centred; half again on top
    assert image.crop((160, 260, 800, 780)).tobytes() == checks.tobytes()


def test_imageedit_vary_and_its_refusals(sdk_sim: SimulatorThread):
    base = data_uri(800, 600, (30, 120, 60))
    varied = ImageSynthesis.call(
        model="wanx2.1-imageedit",
        function="description_edit",
        base_image_url=base,
        prompt="at night",
        strength=0.7,
        n=2,
        api_key=KEY,
    )
    assert varied.output.task_status == "SUCCEEDED", varied
    images = [fetch_png(r.url).convert("RGB") for r in varied.output.results]
    assert [i.size for i in images] == [(800, 600)] * 2
    assert images[0].tobytes() != images[1].tobytes()
    assert varied.usage.image_count == 2
    sdk_sim.advance_clock(1)
    small = ImageSynthesis.async_call(
        model="wanx2.1-imageedit",
        function="expand",
        base_image_url=data_uri(500, 600, (1, 2, 3)),
        prompt="wider",
        api_key=KEY,
    )
    assert (small.status_code, small.code) == (400, "InvalidParameter")
    assert "between 512 and 4096 pixels" in small.message
    unknown = ImageSynthesis.async_call(
        model="wanx2.1-imageedit", function="levitate", base_image_url=base, prompt="x", api_key=KEY
    )
    assert (unknown.status_code, unknown.code) == (400, "InvalidParameter")


def test_image_generation_sync_call(sdk_sim: SimulatorThread):
    response = ImageGeneration.call(
        model="wan2.6-t2i", messages=MESSAGES, n=2, size="960*1696", api_key=KEY
    )
    assert response.status_code == 200, response
    assert response.output.finished is True
    assert len(response.output.choices) == 2
    content = response.output.choices[0].message.content[0]
    assert content["type"] == "image"
    assert fetch_png(content["image"]).size == (960, 1696)
    assert response.usage.image_count == 2
    assert response.usage.size == "960*1696"
    assert sdk_sim.state()["requests"] == {"multimodal-generation": 1, "results": 1}


def test_image_generation_async_call_wait_fetch_list(sdk_sim: SimulatorThread):
    task = ImageGeneration.async_call(
        model="wan2.6-t2i", messages=MESSAGES, n=1, size="1472*1104", api_key=KEY
    )
    assert task.status_code == 200, task
    assert task.output.task_status == "PENDING"
    task_id = task.output.task_id

    done = ImageGeneration.wait(task, api_key=KEY)
    assert done.status_code == 200
    assert done.output.task_status == "SUCCEEDED"
    assert done.output.finished is True
    image_url = done.output.choices[0].message.content[0]["image"]
    assert fetch_png(image_url).size == (1472, 1104)
    assert done.usage.image_count == 1

    fetched = ImageGeneration.fetch(task_id, api_key=KEY)
    assert fetched.status_code == 200
    assert fetched.output.task_status == "SUCCEEDED"

    listed = ImageGeneration.list(model_name="wan2.6-t2i", status="SUCCEEDED", api_key=KEY)
    assert listed.status_code == 200
    assert listed.output["total"] == 1
    assert listed.output["data"][0]["task_id"] == task_id
    assert listed.output["data"][0]["region"] == "cn-beijing"
    assert listed.request_id


def blend_messages(text: str, *images: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": [{"text": text}, *({"image": i} for i in images)]}]


def test_wan26_image_blends_sync_and_async(sdk_sim: SimulatorThread):
    inputs = [data_uri(800, 600, (200, 30, 30)), data_uri(600, 600, (30, 200, 30))]
    model = ImageGeneration.Models.wan2_6_image
    response = ImageGeneration.call(
        model=model,
        messages=blend_messages("the two in one frame", *inputs),
        enable_interleave=False,
        n=2,
        api_key=KEY,
    )
    assert response.status_code == 200, response
    assert len(response.output.choices) == 2
    assert response.usage.image_count == 2
    width, height = fetch_png(response.output.choices[0].message.content[0]["image"]).size
    assert abs(width / height - 4 / 3) < 0.01  # no size: the first input's aspect ratio

    task = ImageGeneration.async_call(
        model=model,
        messages=blend_messages("the two in one frame", *inputs),
        enable_interleave=False,
        n=1,
        size="1280*960",
        api_key=KEY,
    )
    assert task.status_code == 200, task
    done = ImageGeneration.wait(task, api_key=KEY)
    assert done.output.task_status == "SUCCEEDED"
    assert fetch_png(done.output.choices[0].message.content[0]["image"]).size == (1280, 960)
    assert sdk_sim.state()["requests"]["multimodal-generation"] == 1
    assert sdk_sim.state()["requests"]["image-generation"] == 1

    refused = ImageGeneration.call(
        model=model, messages=blend_messages("x", *inputs * 3), n=1, api_key=KEY
    )
    assert (refused.status_code, refused.code) == (400, "InvalidParameter")
    assert "number of input images" in refused.message


def test_cancel_a_pending_task(sdk_sim: SimulatorThread):
    running = []
    for i in range(5):  # fill wan2.6-t2i's five slots
        if i:
            sdk_sim.advance_clock(0.25)  # stay under five submissions a second
        task = ImageGeneration.async_call(
            model="wan2.6-t2i", messages=messages(f"busy {i} sim:slow=60"), n=1, api_key=KEY
        )
        running.append(task.output.task_id)
    sdk_sim.advance_clock(1)
    queued = ImageGeneration.async_call(model="wan2.6-t2i", messages=MESSAGES, n=1, api_key=KEY)
    assert ImageGeneration.fetch(queued, api_key=KEY).output.task_status == "PENDING"

    canceled = ImageGeneration.cancel(queued, api_key=KEY)
    assert canceled.status_code == 200
    assert canceled.request_id
    after = ImageGeneration.fetch(queued, api_key=KEY)
    assert after.output.task_status == "CANCELED"
    # wait() treats CANCELED as final.
    assert ImageGeneration.wait(queued, api_key=KEY).output.task_status == "CANCELED"

    refused = ImageGeneration.cancel(running[0], api_key=KEY)
    assert refused.status_code == 400
    assert refused.code == "UnsupportedOperation"
    assert "PENDING" in refused.message


def test_legacy_sync_call(sdk_sim: SimulatorThread):
    response = ImageSynthesis.sync_call(
        model="wan2.2-t2i-flash", prompt="a kite over a beach", n=1, size="768*512", api_key=KEY
    )
    assert response.status_code == 200, response
    assert response.output.task_status == "SUCCEEDED"
    assert fetch_png(response.output.results[0].url).size == (768, 512)


def test_legacy_async_call_with_partial_failure(sdk_sim: SimulatorThread):
    response = ImageSynthesis.call(
        model="wan2.5-t2i-preview", prompt="three pears sim:partial=1", n=3, api_key=KEY
    )
    assert response.output.task_status == "SUCCEEDED"
    results = response.output.results
    assert [bool(r.url) for r in results] == [True, True, False]
    assert results[2].code == "DataInspectionFailed"
    assert response.usage.image_count == 2
    assert response.output.task_metrics == {"TOTAL": 3, "SUCCEEDED": 2, "FAILED": 1}


# --- errors as the SDK reports them -----------------------------------------------------------


def test_wrong_key_is_401_invalid_api_key(sdk_sim: SimulatorThread):
    response = ImageGeneration.call(model="wan2.6-t2i", messages=MESSAGES, n=1, api_key="sk-nope")
    assert response.status_code == 401
    assert response.code == "InvalidApiKey"
    assert response.message == "Invalid API-key provided."
    task = ImageSynthesis.async_call(model="wan2.5-t2i-preview", prompt="x", n=1, api_key="sk-nope")
    assert (task.status_code, task.code) == (401, "InvalidApiKey")
    assert task.output is None
    # call() = async_call + wait, and wait refuses a failed submission.
    with pytest.raises(InvalidTask):
        ImageSynthesis.call(model="wan2.5-t2i-preview", prompt="x", n=1, api_key="sk-nope")


def test_bad_size_is_400_invalid_parameter(sdk_sim: SimulatorThread):
    response = ImageGeneration.call(
        model="wan2.6-t2i", messages=MESSAGES, n=1, size="1024*1024", api_key=KEY
    )
    assert response.status_code == 400
    assert response.code == "InvalidParameter"
    assert "1024*1024" in response.message
    task = ImageSynthesis.async_call(
        model="wan2.2-t2i-plus", prompt="x", n=5, size="1024*1024", api_key=KEY
    )
    assert (task.status_code, task.code, task.message) == (
        400,
        "InvalidParameter",
        "Range of n should be [1, 4]",
    )


def test_moderation_markers(sdk_sim: SimulatorThread):
    refused = ImageSynthesis.async_call(
        model="wan2.5-i2i-preview",
        prompt="sim:moderate-input",
        images=[data_uri(500, 500, (9, 9, 9))],
        n=1,
        api_key=KEY,
    )
    assert (refused.status_code, refused.code) == (400, "DataInspectionFailed")
    assert refused.message == "Input data may contain inappropriate content."

    failed = ImageSynthesis.call(
        model="wan2.5-i2i-preview",
        prompt="sim:moderate-output",
        images=[data_uri(500, 500, (9, 9, 9))],
        n=1,
        api_key=KEY,
    )
    assert failed.status_code == 200
    assert failed.output.task_status == "FAILED"
    assert failed.output.code == "DataInspectionFailed"
    assert failed.output.results == []
    assert failed.usage is None

    sync = ImageGeneration.call(
        model="wan2.6-t2i", messages=messages("sim:moderate-image"), n=1, api_key=KEY
    )
    assert (sync.status_code, sync.code) == (400, "DataInspectionFailed")
    ip = ImageGeneration.call(model="wan2.6-t2i", messages=messages("sim:ip"), n=1, api_key=KEY)
    assert (ip.status_code, ip.code) == (400, "IPInfringementSuspect")


def test_async_header_rules_through_the_sdk(sdk_sim: SimulatorThread):
    # sync_call on an async-only legacy model: the service refuses synchronous calls.
    response = ImageSynthesis.sync_call(model="wan2.5-t2i-preview", prompt="x", n=1, api_key=KEY)
    assert (response.status_code, response.code) == (403, "AccessDenied")
    assert response.message == "current user api does not support synchronous calls"


# --- faults as the SDK meets them -------------------------------------------------------------


def test_throttled_submit_and_poll(sdk_sim: SimulatorThread):
    sdk_sim.set_faults(script=[{"route": "submit", "action": "429"}])
    throttled = ImageGeneration.async_call(model="wan2.6-t2i", messages=MESSAGES, n=1, api_key=KEY)
    assert (throttled.status_code, throttled.code) == (429, "Throttling.RateQuota")
    task = ImageGeneration.async_call(model="wan2.6-t2i", messages=MESSAGES, n=1, api_key=KEY)
    assert task.status_code == 200
    # A 429 on a poll ends the SDK's wait() with that response.
    sdk_sim.set_faults(script=[{"route": "query", "action": "429"}])
    waited = ImageGeneration.wait(task, api_key=KEY)
    assert (waited.status_code, waited.code) == (429, "Throttling.RateQuota")


def test_wait_retries_a_503_poll(sdk_sim: SimulatorThread):
    task = ImageGeneration.async_call(model="wan2.6-t2i", messages=MESSAGES, n=1, api_key=KEY)
    sdk_sim.set_faults(script=[{"route": "query", "action": "503"}])
    done = ImageGeneration.wait(task, api_key=KEY)  # sleeps one second, then polls again
    assert done.output.task_status == "SUCCEEDED"
    assert sdk_sim.state()["requests"]["tasks.get"] == 2


def test_the_sdk_resends_a_dropped_submit(sdk_sim: SimulatorThread):
    sdk_sim.set_faults(script=[{"route": "submit", "action": "drop"}])
    task = ImageGeneration.async_call(model="wan2.6-t2i", messages=MESSAGES, n=1, api_key=KEY)
    assert task.status_code == 200
    state = sdk_sim.state()
    assert state["requests"]["image-generation"] == 2
    assert state["faults_injected"] == {"drop": 1}
    assert state["submissions"] == 1


def test_thread_stops_promptly_with_a_sync_call_in_flight():
    errors: list[BaseException] = []
    with SimulatorThread(SimulatorConfig(seed=1)) as thread:
        url = thread.base_url + "/services/aigc/multimodal-generation/generation"

        def slow_call() -> None:
            try:
                requests.post(
                    url,
                    json={"model": "wan2.6-t2i", "input": {"messages": messages("sim:slow=60")}},
                    headers={"Authorization": f"Bearer {KEY}"},
                    timeout=30,
                )
            except requests.RequestException as error:
                errors.append(error)

        caller = threading.Thread(target=slow_call)
        caller.start()
        deadline = time.monotonic() + 5
        while thread.state()["in_flight"].get("wan2.6-t2i") != 1:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        began = time.monotonic()
    assert time.monotonic() - began < 1  # the sync call is cut, not waited for
    caller.join(5)
    assert not caller.is_alive()
    assert errors, "the cut sync call should end in a connection error"
