"""The official SDK's `VideoSynthesis` against the simulator (on its own thread): an
image-to-video and a text-to-video task end to end, a refusal, and a cancel while pending."""

from __future__ import annotations

import io

import av
import requests
from dashscope import VideoSynthesis

from bot.simulator import SimulatorThread
from tests import test_sdk_conformance
from tests.test_sdk_conformance import KEY, data_uri

# The SDK tests' simulator (loopback only, the SDK pointed at it) and its reset between tests.
sdk_sim, fresh = test_sdk_conformance.sdk_sim, test_sdk_conformance.fresh


def fetch_mp4(url: str) -> tuple[float, tuple[int, int], str, int]:
    """The duration, frame size, video codec and number of audio streams of the MP4 at `url`."""
    response = requests.get(url, timeout=30)
    assert response.status_code == 200
    assert response.headers["content-type"] == "video/mp4"
    with av.open(io.BytesIO(response.content)) as container:
        video = container.streams.video[0].codec_context
        return (
            container.duration / av.time_base,
            (video.width, video.height),
            video.name,
            len(container.streams.audio),
        )


def test_image_to_video_async_call_and_wait(sdk_sim: SimulatorThread):
    task = VideoSynthesis.async_call(
        model="wan2.5-i2v-preview",
        prompt="the lighthouse beam sweeps",
        img_url=data_uri(1024, 768, (40, 80, 160)),
        resolution="480P",
        duration=5,
        seed=11,
        api_key=KEY,
    )
    assert task.status_code == 200, task.message
    assert task.output.task_status == "PENDING"
    done = VideoSynthesis.wait(task, api_key=KEY)
    assert done.output.task_status == "SUCCEEDED"
    assert done.output.orig_prompt == "the lighthouse beam sweeps"
    assert done.usage.video_count == 1
    assert done.usage["duration"] == 5 and done.usage["SR"] == 480
    seconds, size, codec, sounds = fetch_mp4(done.output.video_url)
    assert abs(seconds - 5) <= 0.5
    assert size == (728, 544) and codec == "h264" and sounds == 1  # 4:3 at 480P's pixels


def test_text_to_video_call(sdk_sim: SimulatorThread):
    done = VideoSynthesis.call(
        model="wanx2.1-t2v-turbo",
        prompt="a paper boat drifts on a pond",
        size="832*480",
        prompt_extend=False,
        watermark=True,
        api_key=KEY,
    )
    assert done.status_code == 200, done.message
    assert done.output.task_status == "SUCCEEDED"
    assert "actual_prompt" not in done.output
    assert done.usage.video_duration == 5 and done.usage.video_ratio == "832*480"
    seconds, size, codec, sounds = fetch_mp4(done.output.video_url)
    assert abs(seconds - 5) <= 0.5
    assert (size, codec, sounds) == ((832, 480), "h264", 0)


def test_refusals_through_the_sdk(sdk_sim: SimulatorThread):
    wrong = VideoSynthesis.async_call(
        model="wan2.2-t2v-plus", prompt="x", size="1280*720", api_key=KEY
    )
    assert (wrong.status_code, wrong.code) == (400, "InvalidParameter")
    assert "832*480" in wrong.message
    no_image = VideoSynthesis.async_call(model="wan2.6-i2v", prompt="move", api_key=KEY)
    assert (no_image.status_code, no_image.code) == (400, "InvalidParameter")
    assert "img_url" in no_image.message
    moderated = VideoSynthesis.call(
        model="wan2.5-t2v-preview", prompt="a boat sim:moderate-output", api_key=KEY
    )
    assert moderated.status_code == 200
    assert moderated.output.task_status == "FAILED"
    assert moderated.output.code == "DataInspectionFailed"


def test_cancel_a_pending_video(sdk_sim: SimulatorThread):
    busy = [
        VideoSynthesis.async_call(
            model="wanx2.1-t2v-plus", prompt=f"busy {i} sim:slow=60", api_key=KEY
        )
        for i in range(2)  # the model's two slots
    ]
    assert all(task.status_code == 200 for task in busy)
    queued = VideoSynthesis.async_call(model="wanx2.1-t2v-plus", prompt="later", api_key=KEY)
    assert VideoSynthesis.fetch(queued, api_key=KEY).output.task_status == "PENDING"
    assert VideoSynthesis.cancel(queued, api_key=KEY).status_code == 200
    assert VideoSynthesis.wait(queued, api_key=KEY).output.task_status == "CANCELED"
    refused = VideoSynthesis.cancel(busy[0], api_key=KEY)
    assert (refused.status_code, refused.code) == (400, "UnsupportedOperation")
