"""The image tools' requests: wanx2.1-imageedit's functions (Upscale, Vary, Zoom out and Pan)
and wan2.6-image's blend, validated and laid out on the wire; their jobs stored with their kind
and parameters on both backends; their prices."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bot.accounting.quota import DEFAULT_LIMITS, Quota
from bot.config import parse_prices
from bot.dashscope import tools
from bot.dashscope.models import (
    DEFAULT_PRICES,
    MODELS,
    SINGAPORE,
    VIRGINIA,
    Kind,
)
from bot.dashscope.requests import ImageRequest, build_body, require_kind, validate
from bot.errors import InputRejected
from bot.jobs.model import JobParams, NewJob
from bot.jobs.store import JobStore
from bot.storage.db import Database
from tests.backends import fresh_database

IMAGE = "data:image/png;base64,iVBORw0KGgo="
EDIT = "wanx2.1-imageedit"


def tool(function: str | None, **fields: Any) -> ImageRequest:
    return ImageRequest(model=EDIT, prompt="a fox", images=(IMAGE,), function=function, **fields)


@pytest.fixture
async def db(backend: str, tmp_path: Path) -> AsyncIterator[Database]:
    async with fresh_database(backend, tmp_path) as database:
        yield database


def keys(error: InputRejected) -> list[str]:
    return [problem.key for problem in error.problems]


@pytest.mark.parametrize(
    ("request_", "kind", "input_", "parameters"),
    [
        (
            tool("super_resolution", upscale_factor=2),
            Kind.UPSCALE,
            {"function": "super_resolution", "prompt": "a fox", "base_image_url": IMAGE},
            {"n": 1, "upscale_factor": 2},
        ),
        (
            tool("description_edit", strength=0.3, seed=7, n=4),
            Kind.VARY,
            {"function": "description_edit", "prompt": "a fox", "base_image_url": IMAGE},
            {"n": 4, "seed": 7, "strength": 0.3},
        ),
        (
            tool("expand", expand=(1.0, 1.0, 2.0, 1.0), watermark=False),
            Kind.EXPAND,
            {"function": "expand", "prompt": "a fox", "base_image_url": IMAGE},
            {
                "n": 1,
                "watermark": False,
                "top_scale": 1.0,
                "bottom_scale": 1.0,
                "left_scale": 2.0,
                "right_scale": 1.0,
            },
        ),
    ],
)
def test_an_imageedit_function_is_laid_out_as_the_sdk_sends_it(
    request_: ImageRequest, kind: Kind, input_: dict[str, Any], parameters: dict[str, Any]
) -> None:
    checked = validate(request_)
    assert checked.kind is kind
    assert build_body(checked) == {"model": EDIT, "input": input_, "parameters": parameters}


def test_a_blend_sends_every_image_in_one_message_in_edit_mode() -> None:
    images = (IMAGE, IMAGE + "A", IMAGE + "B")
    request = validate(
        ImageRequest(model="wan2.6-image", prompt="put the cat on the sofa", images=images, n=2)
    )
    require_kind(request, Kind.BLEND)
    body = build_body(request)
    content = body["input"]["messages"][0]["content"]
    assert content[0] == {"text": "put the cat on the sofa"}
    assert [part["image"] for part in content[1:]] == list(images)
    assert body["parameters"] == {"n": 2, "enable_interleave": False}


@pytest.mark.parametrize(
    ("request_", "expected"),
    [
        (tool(None), ["invalid.function"]),
        (tool("colorization"), ["invalid.function"]),
        (tool("super_resolution", upscale_factor=5), ["invalid.upscale_factor"]),
        (tool("super_resolution", upscale_factor=True), ["invalid.upscale_factor"]),
        (tool("super_resolution"), ["invalid.upscale_factor"]),
        (tool("description_edit", strength=1.5), ["invalid.strength"]),
        (tool("expand", expand=(1.0, 1.0, 2.5, 1.0)), ["invalid.expand_scales"]),
        (tool("expand", expand=(1.0, 1.0)), ["invalid.expand_scales"]),
        (tool("expand"), ["invalid.expand_scales"]),
        (
            tool("expand", expand=(1.0, 1.0, 1.5, 1.0), strength=0.5),
            ["invalid.parameter_unexpected"],
        ),
        (
            tool("super_resolution", upscale_factor=2, size="1024*1024"),
            ["invalid.parameter_unexpected"],
        ),
        (
            tool("super_resolution", upscale_factor=2, negative_prompt="blur"),
            ["invalid.negative_unsupported"],
        ),
        (
            ImageRequest(model="wan2.6-t2i", prompt="a fox", function="expand"),
            ["invalid.function_unexpected"],
        ),
        (
            ImageRequest(model=EDIT, prompt="a fox", function="super_resolution", upscale_factor=2),
            ["invalid.image_count"],
        ),
        (
            ImageRequest(model="wan2.6-image", prompt="a fox", images=(IMAGE,) * 5),
            ["invalid.image_count"],
        ),
    ],
)
def test_a_wrong_tool_request_is_refused_naming_what_to_change(
    request_: ImageRequest, expected: list[str]
) -> None:
    with pytest.raises(InputRejected) as refused:
        validate(request_)
    assert keys(refused.value) == expected


def test_a_text_model_is_refused_for_a_blend_with_the_blend_models_named() -> None:
    with pytest.raises(InputRejected) as refused:
        require_kind(ImageRequest(model="wan2.6-t2i", prompt="x"), Kind.BLEND)
    assert keys(refused.value) == ["invalid.model_not_blend"]
    assert "wan2.6-image" in refused.value.problems[0].values["choices"]


def test_the_tools_model_is_beijing_only_and_blend_everywhere() -> None:
    assert not MODELS[EDIT].offered_in(SINGAPORE)
    assert MODELS["wan2.6-image"].offered_in(VIRGINIA)
    assert MODELS[EDIT].offered_in(None)  # the simulator or a proxy: every model


def test_params_keep_the_tool_and_plain_jobs_keep_their_old_json() -> None:
    params = JobParams("a fox", function="expand", expand=(1.0, 1.0, 2.0, 1.0), source_image=2)
    assert JobParams.from_json(params.to_json()) == params
    plain = JobParams("a fox")
    assert set(json_keys(plain)) == {
        "prompt",
        "negative_prompt",
        "size",
        "seed",
        "prompt_extend",
        "watermark",
    }


def json_keys(params: JobParams) -> list[str]:
    return list(json.loads(params.to_json()))


async def test_a_function_has_a_price_of_its_own_over_its_models(db: Database) -> None:
    prices = {**DEFAULT_PRICES, **parse_prices("wanx2.1-imageedit:super_resolution=0.05")}
    quota = Quota(db, JobStore(db), DEFAULT_LIMITS, prices=prices)
    assert quota.price(tool("super_resolution", upscale_factor=2)) == 0.05
    assert quota.price(tool("expand", expand=(1.0, 1.0, 2.0, 1.0))) == DEFAULT_PRICES[EDIT]
    with pytest.raises(ValueError, match="no function"):
        parse_prices("wanx2.1-imageedit:colorize=0.1")


@pytest.mark.parametrize(
    "request_",
    [
        tool("super_resolution", upscale_factor=4, source_image=2),
        tool("description_edit", strength=0.7, n=2, style="noir"),
        ImageRequest(
            model="wan2.5-i2i-preview", prompt="a fox", images=(IMAGE,), purpose=Kind.VARY
        ),
        ImageRequest(model="wan2.6-image", prompt="blend", images=(IMAGE, IMAGE)),
        ImageRequest(model="wan2.6-t2i", prompt="a fox"),
    ],
)
async def test_a_tool_job_comes_back_from_the_store_as_it_went_in(
    db: Database, request_: ImageRequest
) -> None:
    store = JobStore(db)
    new = NewJob(validate(request_), user_id=1)
    inserted = await db.write(store.insert, new)
    job = await store.get(inserted.id)
    assert job is not None and job.kind is request_.kind is inserted.kind
    images = await store.inputs(job.id)
    assert job.request(images) == new.request


# --- the tools as requests (bot/dashscope/tools.py) ------------------------------------------


def test_zoom_keeps_the_image_in_the_middle_and_pan_grows_one_side() -> None:
    assert tools.zoom_scales(2.0) == (2.0, 2.0, 2.0, 2.0)
    assert tools.pan_scales(tools.Pan.LEFT) == (1.0, 1.0, 2.0, 1.0)
    assert tools.pan_scales(tools.Pan.DOWN) == (1.0, 2.0, 1.0, 1.0)
    for direction in tools.Pan:
        request = validate(tools.expand(tools.Chosen(IMAGE, "a fox"), tools.pan_scales(direction)))
        assert request.kind is Kind.EXPAND and sorted(request.expand or ()) == [1, 1, 1, 2]


def test_every_tool_request_is_valid_and_of_its_kind() -> None:
    chosen = tools.Chosen(IMAGE, "fox " * 400, position=2)  # longer than imageedit takes
    made = {
        Kind.UPSCALE: tools.upscale(chosen, 4),
        Kind.EXPAND: tools.expand(chosen, tools.zoom_scales(1.5)),
    }
    for strength in tools.VARY_STRENGTH:
        made[Kind.VARY] = tools.vary(chosen, strength, 4, None)
        assert made[Kind.VARY].strength == tools.VARY_STRENGTH[strength]
    for kind, request in made.items():
        assert validate(request).kind is kind
        assert request.source_image == 2


def test_vary_falls_back_to_the_edit_model_where_imageedit_is_not_offered() -> None:
    request = validate(tools.vary(tools.Chosen(IMAGE, "a fox"), "strong", 2, SINGAPORE))
    assert (request.model, request.kind, request.n) == ("wan2.5-i2i-preview", Kind.VARY, 2)
    assert tools.offered(Kind.VARY, SINGAPORE) and not tools.offered(Kind.UPSCALE, SINGAPORE)
    assert not tools.offered(Kind.VARY, VIRGINIA)


@pytest.mark.parametrize("count", [0, 1, 5])
def test_a_blend_of_other_than_two_to_four_images_is_refused(count: int) -> None:
    with pytest.raises(InputRejected) as refused:
        tools.blend((IMAGE,) * count, "together")
    assert keys(refused.value) == ["invalid.blend_images"]
    assert refused.value.values == {"low": 2, "high": 4, "count": count}


@pytest.mark.parametrize("count", [2, 3, 4])
def test_a_blend_of_two_to_four_images_is_one_wan26_image_request(count: int) -> None:
    request = validate(tools.blend((IMAGE,) * count, "together", n=2, watermark=True))
    assert (request.model, request.kind, request.n, request.watermark) == (
        "wan2.6-image",
        Kind.BLEND,
        2,
        True,
    )
    content = build_body(request)["input"]["messages"][0]["content"]
    assert content == [{"text": "together"}, *[{"image": IMAGE}] * count]
