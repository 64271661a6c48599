"""Videos as jobs, end to end through the engine and the simulator: an animation and a text
video run, are downloaded and delivered as MP4s that decode to the asked length and size, and
are charged the seconds DashScope reported; a restart in the middle of a task resumes polling
it; a video task still pending at DashScope can be cancelled, its money and seconds refunded."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import av
import pytest

from bot.dashscope.requests import ImageRequest, validate
from bot.dispatch.delivery import DeliveredImage, FileDelivery
from bot.dispatch.engine import Engine
from bot.jobs.model import Job, JobState, NewJob, timing_kind
from tests.engine_helpers import MODEL, Rig, rig, shrink_backoff, sim_settings, wait_until
from tests.test_simulator import data_uri, png_bytes

I2V, T2V = "wan2.5-i2v-preview", "wan2.5-t2v-preview"
PRICES = {f"{I2V}:480P": 0.3, f"{T2V}:480P": 0.3, f"{T2V}:720P": 0.6}
VIDEO_SIM = {"submit_rps": {I2V: 50, T2V: 50}}


@pytest.fixture(autouse=True)
def _fast_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    shrink_backoff(monkeypatch)


class Recording(FileDelivery):
    """Files, and what the engine handed over with them."""

    def __init__(self, folder: Path) -> None:
        super().__init__(folder)
        self.handed: dict[int, list[DeliveredImage]] = {}

    async def deliver(self, job: Job, images: list[DeliveredImage]) -> list[int | None]:
        self.handed[job.id] = images
        return await super().deliver(job, images)


def probe(data: bytes) -> dict[str, Any]:
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.video[0]
        return {
            "duration": container.duration / av.time_base,
            "size": (stream.codec_context.width, stream.codec_context.height),
        }


def animation(prompt: str = "the lighthouse beam sweeps", **fields: Any) -> ImageRequest:
    image = data_uri(png_bytes(640, 360))
    return validate(
        ImageRequest(
            model=I2V, prompt=prompt, images=(image,), duration=5, resolution="480P", **fields
        )
    )


def text_video(prompt: str = "a paper boat on a stream", **fields: Any) -> ImageRequest:
    fields.setdefault("size", "832*480")
    fields.setdefault("duration", 5)
    return validate(ImageRequest(model=T2V, prompt=prompt, **fields))


def train(engine: Engine, request: ImageRequest, seconds: float = 0.3) -> None:
    """As if learned: the engine asks about a video of this length soon, not in minutes."""
    kind = timing_kind(request.kind.value, request.duration, request.resolution)
    for _ in range(3):
        engine.durations.observe(request.model, 1, seconds, kind)


def delivered_video(r: Rig, job: Job) -> bytes:
    [name] = r.manifests()[job.id]["files"]
    assert name == f"job-{job.id}-1.mp4"
    return (r.out / name).read_bytes()


async def ledger(r: Rig, job: Job) -> dict[str, tuple[int, int, float]]:
    rows = await r.db.fetchall(
        "SELECT entry, images, seconds, unit_price FROM ledger WHERE job_id = ?", (job.id,)
    )
    return {row["entry"]: (row["images"], row["seconds"], row["unit_price"]) for row in rows}


def video_requests(r: Rig) -> int:
    return int(r.sim.sim.requests.get("video-synthesis", 0))


async def test_an_animation_and_a_text_video_are_delivered_as_mp4s_and_charged_by_the_second(
    tmp_path: Path,
) -> None:
    async with rig(tmp_path, sim_config=sim_settings(**VIDEO_SIM)) as r:
        r.quota.prices.update(PRICES)
        r.port.files = files = Recording(r.out)
        requests = [animation(), text_video()]
        for request in requests:
            train(r.engine, request)
        jobs = [await r.engine.submit_job(NewJob(q, user_id=1)) for q in requests]
        # The ETA the status shows: what this model took for videos of this length and size.
        assert [r.engine.expected_seconds(job) for job in jobs] == [pytest.approx(0.3)] * 2
        longer = text_video(duration=10, size="1920*1080")
        unseen = await r.engine.submit_job(NewJob(longer, user_id=1), start=False)
        assert r.engine.expected_seconds(unseen) > 200  # minutes, until one is seen
        await r.engine.cancel(unseen.id, 1)
        await r.wait_idle(timeout=60)
        for job in jobs:
            done = await r.job(job.id)
            assert done.state is JobState.DONE, done.error_message
            assert done.video_seconds == 5
            [handed] = files.handed[job.id]
            assert handed.content_type == "video/mp4"
            # Its link and expiry, for a video too large to upload: the results row's.
            [result] = await r.store.results(job.id)
            assert (handed.url, handed.expires_at) == (result.url, result.expires_at)
            assert handed.url and handed.expires_at
            seen = probe(delivered_video(r, job))
            assert seen["duration"] == pytest.approx(5, abs=0.5)
            assert await ledger(r, job) == {
                "reserve": (1, 5, pytest.approx(1.5)),
                "charge": (1, 5, pytest.approx(1.5)),
                "refund": (0, 0, pytest.approx(1.5)),
            }
        animated, text = (probe(delivered_video(r, job))["size"] for job in jobs)
        assert min(animated) == pytest.approx(480, abs=32)  # 480P in the image's 16:9
        assert animated[0] > animated[1]
        assert text == (832, 480)
        assert video_requests(r) == 2


async def test_a_restart_in_the_middle_of_a_video_task_resumes_polling_it(
    tmp_path: Path,
) -> None:
    """A 10 s clip takes two to five simulated minutes; at speed 100 about a second or two.
    The engine stops while the task runs and a new one takes it up from its row: polled by its
    task id, never submitted again, delivered once."""
    config = sim_settings(speed=100.0, **VIDEO_SIM)
    async with rig(tmp_path, sim_config=config) as r:
        request = text_video(duration=10, size=None, resolution="720P")
        train(r.engine, request, seconds=2.0)
        job = await r.engine.submit_job(NewJob(request, user_id=1))
        await r.wait_state(job.id, JobState.SUBMITTED, JobState.RUNNING)
        await r.engine.stop(grace=0.1)
        assert (await r.job(job.id)).state in (JobState.SUBMITTED, JobState.RUNNING)
        second = r.make_engine()
        train(second, request, seconds=1.0)
        await second.start()
        await wait_until(second.idle, timeout=60, what="the video delivered after the restart")
        done = await r.job(job.id)
        assert done.state is JobState.DONE, done.error_message
        assert probe(delivered_video(r, done))["duration"] == pytest.approx(10, abs=0.5)
        assert video_requests(r) == 1
        assert r.attempts() == [job.idempotency_key]


async def test_a_video_pending_at_dashscope_can_be_cancelled(tmp_path: Path) -> None:
    config = sim_settings(max_in_flight={T2V: 1}, **VIDEO_SIM)
    async with rig(tmp_path, sim_config=config) as r:
        r.quota.prices.update(PRICES)
        train(r.engine, text_video())
        first = await r.engine.submit_job(
            NewJob(text_video("sim:slow=1.5 a long first take"), user_id=1)
        )
        second = await r.engine.submit_job(NewJob(text_video("a second take"), user_id=2))
        pending = await r.wait_state(second.id, JobState.SUBMITTED)
        assert r.sim.sim.status(r.sim.sim.store.tasks[pending.task_id or ""]) == "PENDING"
        outcome = await r.engine.cancel(second.id, 2)
        assert (outcome.cancelled, outcome.key) == (True, "job.cancel.done")
        assert (await r.job(second.id)).state is JobState.CANCELLED
        assert await ledger(r, second) == {
            "reserve": (1, 5, pytest.approx(1.5)),
            "charge": (0, 0, pytest.approx(1.5)),
            "refund": (1, 5, pytest.approx(1.5)),
        }
        assert (await r.quota.standing(2, None)).video_seconds == 0
        await r.wait_idle(timeout=30)
        assert (await r.job(first.id)).state is JobState.DONE


async def test_a_video_model_has_at_most_its_own_tasks_in_flight(tmp_path: Path) -> None:
    """Video models allow fewer tasks at once than image models (2, UNCONFIRMED): a third
    video waits in the queue, not at DashScope."""
    async with rig(tmp_path, sim_config=sim_settings(**VIDEO_SIM)) as r:
        assert (r.engine.max_in_flight(T2V), r.engine.max_in_flight(MODEL)) == (2, 5)
        train(r.engine, text_video())
        jobs = [
            await r.engine.submit_job(NewJob(text_video(f"sim:slow=1 take {i}"), user_id=i))
            for i in range(3)
        ]
        for job in jobs[:2]:
            await r.wait_state(job.id, JobState.SUBMITTED, JobState.RUNNING)
        assert (await r.job(jobs[2].id)).state is JobState.QUEUED
        assert r.engine.position(jobs[2].id) == 1
        await r.wait_idle(timeout=30)
        assert [(await r.job(job.id)).state for job in jobs] == [JobState.DONE] * 3
