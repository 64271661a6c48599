"""Upscale, Zoom out, Pan and Vary as jobs: built by bot.dashscope.tools, run by the engine
against the simulator's wanx2.1-imageedit, and delivered as images of the expected size, the
chosen image's pixels kept where an expansion puts them."""

from __future__ import annotations

import base64
import io
import os
from pathlib import Path

import pytest
from PIL import Image

from bot.dashscope.models import IMAGE_TOOLS_MODEL, Kind
from bot.dashscope.requests import ImageRequest, seeded, validate
from bot.dashscope.tools import Chosen, Pan, expand, pan_scales, upscale, vary, zoom_scales
from bot.jobs.model import JobState, NewJob
from tests.engine_helpers import MODEL, TRAINED_SECONDS, Rig, rig, shrink_backoff, sim_settings

WIDTH, HEIGHT = 640, 520


@pytest.fixture(autouse=True)
def _fast_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    shrink_backoff(monkeypatch)


def chosen_image() -> tuple[Image.Image, Chosen]:
    picture = Image.frombytes("RGB", (WIDTH, HEIGHT), os.urandom(WIDTH * HEIGHT * 3))
    out = io.BytesIO()
    picture.save(out, "PNG")
    uri = "data:image/png;base64," + base64.b64encode(out.getvalue()).decode()
    return picture, Chosen(image=uri, prompt="a lighthouse at dusk", position=1, seed=21)


def delivered(r: Rig, job_id: int) -> list[Image.Image]:
    files = r.manifests()[job_id]["files"]
    return [Image.open(r.out / name).convert("RGB") for name in files]


async def test_each_tool_runs_as_a_job_and_delivers_images_of_its_size(tmp_path: Path) -> None:
    config = sim_settings(submit_rps={MODEL: 50, IMAGE_TOOLS_MODEL: 50})
    async with rig(tmp_path, sim_config=config) as r:
        for n in range(1, 5):  # as if learned: the first poll comes early
            for _ in range(3):
                r.engine.durations.observe(IMAGE_TOOLS_MODEL, n, TRAINED_SECONDS)
        picture, chosen = chosen_image()
        requests: dict[str, ImageRequest] = {
            "upscale": upscale(chosen, 2),
            "zoom": expand(chosen, zoom_scales(2.0)),
            "pan": expand(chosen, pan_scales(Pan.LEFT)),
            "vary": vary(chosen, "strong", 2, None),
        }
        jobs = {
            name: await r.engine.submit_job(NewJob(seeded(validate(request)), user_id=1))
            for name, request in requests.items()
        }
        assert [job.kind for job in jobs.values()] == [
            Kind.UPSCALE,
            Kind.EXPAND,
            Kind.EXPAND,
            Kind.VARY,
        ]
        await r.wait_idle()
        for job in jobs.values():
            done = await r.job(job.id)
            assert done.state is JobState.DONE, (done.kind, done.error_message)
            assert await r.ledger(job.id) == {"reserve": job.n, "charge": job.n, "refund": 0}

        [big] = delivered(r, jobs["upscale"].id)
        assert big.size == (2 * WIDTH, 2 * HEIGHT)
        [zoomed] = delivered(r, jobs["zoom"].id)
        assert zoomed.size == (2 * WIDTH, 2 * HEIGHT)
        middle = (WIDTH // 2, HEIGHT // 2, WIDTH // 2 + WIDTH, HEIGHT // 2 + HEIGHT)
        assert zoomed.crop(middle).tobytes() == picture.tobytes()
        [panned] = delivered(r, jobs["pan"].id)
        assert panned.size == (WIDTH * 3 // 2, HEIGHT)
        assert panned.crop((WIDTH // 2, 0, WIDTH * 3 // 2, HEIGHT)).tobytes() == picture.tobytes()
        varied = delivered(r, jobs["vary"].id)
        assert [image.size for image in varied] == [(WIDTH, HEIGHT)] * 2
        assert len({image.tobytes() for image in [*varied, picture]}) == 3
        sent = r.sim.sim.requests
        assert sent["image2image"] == len(jobs)
        # Durations are relearned after a restart per kind: an upscale is not a vary.
        learned = [(model, kind) for model, _, kind, _ in await r.store.recent_durations()]
        tools = IMAGE_TOOLS_MODEL
        assert learned == [
            (tools, "upscale"),
            (tools, "expand"),
            (tools, "expand"),
            (tools, "vary"),
        ]
