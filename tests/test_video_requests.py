"""Video requests (docs/dashscope.md §Video): validated with their defaults filled, laid out as
the SDK's VideoSynthesis sends them, stored and read back, priced per second."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bot.accounting.quota import DEFAULT_LIMITS, Quota
from bot.config import parse_prices
from bot.dashscope.models import DEFAULT_PRICES, MODELS, Kind
from bot.dashscope.requests import ImageRequest, build_body, validate
from bot.dashscope.results import parse_task
from bot.errors import InputRejected
from bot.i18n import text
from bot.jobs.model import NewJob
from bot.jobs.store import JobStore
from bot.storage.db import Database
from tests.backends import fresh_database

IMAGE = "data:image/png;base64,iVBORw0KGgo="


@pytest.fixture
async def db(backend: str, tmp_path: Path) -> AsyncIterator[Database]:
    async with fresh_database(backend, tmp_path) as database:
        yield database


def keys(request: ImageRequest) -> list[str]:
    with pytest.raises(InputRejected) as refused:
        validate(request)
    return [problem.key for problem in refused.value.problems]


def test_an_animation_fills_its_defaults_and_is_laid_out_as_the_sdk_sends_it() -> None:
    request = validate(ImageRequest(model="wan2.5-i2v-preview", prompt="", images=(IMAGE,)))
    assert (request.kind, request.duration, request.resolution, request.size) == (
        Kind.ANIMATE,
        5,
        "720P",
        None,
    )
    assert build_body(request) == {
        "model": "wan2.5-i2v-preview",
        "input": {"img_url": IMAGE},
        "parameters": {"duration": 5, "resolution": "720P"},
    }


def test_a_text_video_picks_its_size_by_aspect_within_its_resolution() -> None:
    request = validate(
        ImageRequest(
            model="wan2.5-t2v-preview",
            prompt="waves at dusk",
            negative_prompt="people",
            aspect="9:16",
            resolution="1080P",
            duration=10,
            audio=False,
            seed=3,
        )
    )
    assert (request.kind, request.size, request.resolution) == (Kind.VIDEO, "1080*1920", "1080P")
    assert build_body(request) == {
        "model": "wan2.5-t2v-preview",
        "input": {"prompt": "waves at dusk", "negative_prompt": "people"},
        "parameters": {"duration": 10, "size": "1080*1920", "seed": 3, "audio": False},
    }
    sized = validate(ImageRequest(model="wan2.6-t2v", prompt="x", size="960x960"))
    assert (sized.size, sized.resolution, sized.duration) == ("960*960", "720P", 5)


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"model": "wan2.5-i2v-preview", "duration": 7}, ["invalid.duration"]),
        ({"model": "wan2.6-i2v", "resolution": "480P"}, ["invalid.resolution"]),
        ({"model": "wan2.2-i2v-plus", "audio": True}, ["invalid.parameter_unexpected"]),
        ({"model": "wan2.5-i2v-preview", "size": "1280*720"}, ["invalid.parameter_unexpected"]),
        ({"model": "wan2.5-i2v-preview", "images": ()}, ["invalid.image_count"]),
        ({"model": "wan2.5-t2v-preview", "images": ()}, ["invalid.prompt_empty"]),
        (
            {"model": "wan2.5-t2v-preview", "prompt": "x", "size": "1000*1000"},
            ["invalid.video_size"],
        ),
        (
            {
                "model": "wan2.5-t2v-preview",
                "prompt": "x",
                "size": "1280*720",
                "resolution": "480P",
            },
            ["invalid.video_size"],
        ),
        ({"model": "wan2.5-t2v-preview", "prompt": "x", "aspect": "21:9"}, ["invalid.aspect"]),
        ({"model": "wan2.5-t2v-preview", "prompt": "x", "n": 2}, ["invalid.n"]),
        ({"model": "wan2.6-t2i", "prompt": "x", "duration": 5}, ["invalid.parameter_unexpected"]),
    ],
)
def test_a_wrong_video_request_is_refused_in_words(
    fields: dict[str, Any], expected: list[str]
) -> None:
    fields = {"prompt": "", "images": (IMAGE,), **fields}
    if MODELS[fields["model"]].kind is not Kind.ANIMATE and fields["images"] == (IMAGE,):
        fields["images"] = ()
    with pytest.raises(InputRejected) as refused:
        validate(ImageRequest(**fields))
    problems = refused.value.problems
    assert [problem.key for problem in problems] == expected
    for problem in problems:
        for lang in ("en", "zh"):
            assert text(problem.key, lang, **problem.values)


def test_a_finished_video_task_reads_as_one_result_with_its_seconds() -> None:
    result = parse_task(
        {
            "request_id": "r",
            "output": {
                "task_id": "t",
                "task_status": "SUCCEEDED",
                "video_url": "https://dashscope-result.example/v.mp4",
                "orig_prompt": "a cat",
                "actual_prompt": "a grey cat stretching in the sun",
            },
            "usage": {"duration": 5, "video_count": 1, "SR": 720},
        }
    )
    assert [image.url for image in result.images] == ["https://dashscope-result.example/v.mp4"]
    assert (result.billed_images, result.video_seconds) == (1, 5.0)
    assert result.actual_prompt == "a grey cat stretching in the sun"


async def test_a_video_is_priced_per_second_at_its_resolution(db: Database) -> None:
    prices = {**DEFAULT_PRICES, **parse_prices("wan2.5-t2v-preview:1080P=1.5")}
    quota = Quota(db, JobStore(db), DEFAULT_LIMITS, prices=prices)
    ten = validate(
        ImageRequest(model="wan2.5-t2v-preview", prompt="x", duration=10, resolution="1080P")
    )
    assert quota.price(ten) == pytest.approx(15.0)
    five = validate(ImageRequest(model="wan2.5-i2v-preview", prompt="", images=(IMAGE,)))
    assert quota.price(five) == pytest.approx(5 * DEFAULT_PRICES["wan2.5-i2v-preview:720P"])
    with pytest.raises(ValueError, match="no resolution"):
        parse_prices("wan2.6-t2v:480P=0.1")


@pytest.mark.parametrize(
    "request_",
    [
        ImageRequest(
            model="wan2.6-i2v", prompt="slow pan", images=(IMAGE,), duration=15, audio=True
        ),
        ImageRequest(model="wan2.6-t2v", prompt="a storm", aspect="1:1", resolution="1080P"),
    ],
)
async def test_a_video_job_comes_back_from_the_store_as_it_went_in(
    db: Database, request_: ImageRequest
) -> None:
    store = JobStore(db)
    new = NewJob(validate(request_), user_id=1)
    inserted = await db.write(store.insert, new)
    job = await store.get(inserted.id)
    assert job is not None and job.kind is request_.kind is inserted.kind
    assert job.request(await store.inputs(job.id)) == new.request
