"""Aspect ratios mapped to each model's sizes; members' own defaults: checked when saved,
tolerant when read, stored on each backend, and bounded by the server's policy."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.accounting.defaults import NO_DEFAULTS, DefaultsStore, MemberDefaults, changed, unset
from bot.accounting.policy import apply_policy
from bot.dashscope.models import MODELS, ModelSpec, Protocol
from bot.dashscope.requests import ASPECTS, ImageRequest, parse_size, size_for_aspect, validate
from bot.errors import InputRejected
from bot.presenter import describe, utc_time
from bot.storage.db import Database
from tests.backends import execute, fresh_database
from tests.engine_helpers import FakeClock
from tests.test_policy import GENERAL, policy, request

SIZED = [s for s in MODELS.values() if s.protocol not in (Protocol.IMAGEEDIT, Protocol.VIDEO)]


def refusal(error: pytest.ExceptionInfo[InputRejected]) -> tuple[str, str]:
    return (
        describe(error.value, "en", moment=utc_time) or "",
        describe(error.value, "zh", moment=utc_time) or "",
    )


# --- aspect ratios ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "aspect", "size"),
    [
        # wan2.6-t2i: its documented sizes
        ("wan2.6-t2i", "1:1", "1280*1280"),
        ("wan2.6-t2i", "3:4", "1104*1472"),
        ("wan2.6-t2i", "4:3", "1472*1104"),
        ("wan2.6-t2i", "9:16", "960*1696"),
        ("wan2.6-t2i", "16:9", "1696*960"),
        # computed: multiples of 16 near 1280² pixels
        ("wan2.6-t2i", "2:3", "1056*1584"),
        ("wan2.6-t2i", "21:9", "1984*848"),
        # the older models: their sides 512–1440
        ("wan2.2-t2i-flash", "1:1", "1024*1024"),
        ("wan2.2-t2i-flash", "16:9", "1280*720"),
        ("wan2.2-t2i-flash", "2:3", "768*1152"),
        ("wan2.2-t2i-flash", "4:3", "1168*880"),
        ("wan2.2-t2i-flash", "21:9", "1440*624"),
        # the edit model's documented sizes (768²–1280² px)
        ("wan2.5-i2i-preview", "16:9", "1280*720"),
        ("wan2.5-i2i-preview", "3:4", "960*1280"),
        ("wan2.5-i2i-preview", "21:9", "1344*576"),
        # image tools take no size
        ("wanx2.1-imageedit", "1:1", None),
        ("wan2.6-t2i", "5:4", None),  # not one we offer
    ],
)
def test_size_for_aspect(model: str, aspect: str, size: str | None) -> None:
    assert size_for_aspect(MODELS[model], aspect) == size


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(SIZED), st.sampled_from(ASPECTS))
def test_every_model_and_aspect_gives_an_accepted_size_of_that_ratio(
    spec: ModelSpec, aspect: str
) -> None:
    size = size_for_aspect(spec, aspect)
    assert size is not None
    images = ("data:image/png;base64,AAAA",) * spec.images_min
    made = validate(ImageRequest(model=spec.name, prompt="p", images=images, aspect=aspect))
    assert made.size == size and made.aspect is None
    parsed = parse_size(size)
    assert parsed is not None and parsed[0] % 8 == 0 and parsed[1] % 8 == 0
    width, height = (int(part) for part in aspect.split(":"))
    assert abs(parsed[0] / parsed[1] / (width / height) - 1) < 0.03


def test_size_and_aspect_together_are_refused_in_words() -> None:
    with pytest.raises(InputRejected) as caught:
        validate(ImageRequest(model="wan2.6-t2i", prompt="p", size="1280*1280", aspect="16:9"))
    assert refusal(caught) == (
        "Give either a size or an aspect ratio, not both.",
        "请只给出尺寸或宽高比中的一个，不要同时给出。",
    )


def test_an_aspect_the_model_cannot_make_is_refused_in_words() -> None:
    with pytest.raises(InputRejected) as caught:
        validate(ImageRequest(model="wan2.6-t2i", prompt="p", aspect="5:4"))
    en, zh = refusal(caught)
    assert en.startswith("wan2.6-t2i can't make the aspect ratio `5:4`. Choose one of: 1:1, 2:3")
    assert zh.startswith("wan2.6-t2i 无法生成宽高比 `5:4`")


# --- saving and reading ---------------------------------------------------------------------------


def test_bad_values_are_refused_in_words_naming_each() -> None:
    with pytest.raises(InputRejected) as caught:
        changed(NO_DEFAULTS, model="wan2.5-i2i-preview", n=7, size="10*10")
    en, zh = refusal(caught)
    assert "`wan2.5-i2i-preview` cannot make images from text" in en
    assert "Number of images must be between 1 and 4 (got 7)." in en
    assert "Size 10*10" in en
    assert "`wan2.5-i2i-preview` 不能根据文字生成图片" in zh
    with pytest.raises(InputRejected) as caught:
        changed(NO_DEFAULTS, aspect="7:5")
    assert refusal(caught)[0].startswith("`7:5` is not an aspect ratio I offer.")


def test_an_aspect_replaces_the_size_and_a_size_the_aspect() -> None:
    sized = changed(NO_DEFAULTS, size="1280 x 720", model="wan2.2-t2i-flash")
    assert (sized.size, sized.aspect) == ("1280*720", None)
    shaped = changed(sized, aspect="16:9")
    assert (shaped.size, shaped.aspect) == (None, "16:9")
    assert changed(shaped, size="720*1280").aspect is None
    assert changed(shaped, negative_prompt="  ").negative_prompt is None  # blank: cleared


def test_stored_values_no_longer_valid_are_left_out() -> None:
    stored = json.dumps(
        {"model": "wan9-removed", "n": "two", "aspect": "16:9", "watermark": False, "x": 1}
    )
    assert MemberDefaults.from_json(stored) == MemberDefaults(aspect="16:9", watermark=False)
    assert MemberDefaults.from_json("not json") == NO_DEFAULTS
    assert MemberDefaults.from_json("[1, 2]") == NO_DEFAULTS
    assert MemberDefaults.from_json(None) == NO_DEFAULTS


@pytest.fixture
async def db(backend: str, tmp_path: Path) -> AsyncIterator[Database]:
    async with fresh_database(backend, tmp_path) as database:
        yield database


async def test_store_keeps_each_members_defaults(db: Database) -> None:
    store = DefaultsStore(db, FakeClock(1_700_000_000.0))
    assert await store.get(1) == NO_DEFAULTS
    await store.change(1, n=2, aspect="16:9")
    mine = await store.change(1, watermark=True, negative_prompt="blur")
    assert mine == MemberDefaults(aspect="16:9", n=2, negative_prompt="blur", watermark=True)
    assert await store.get(1) == mine
    assert await store.get(2) == NO_DEFAULTS
    row = await db.fetchone("SELECT defaults, updated_at FROM member_defaults WHERE user_id = 1")
    assert json.loads(row["defaults"]) == {
        "aspect": "16:9",
        "n": 2,
        "negative_prompt": "blur",
        "watermark": True,
    }
    assert row["updated_at"] == 1_700_000_000.0
    with pytest.raises(InputRejected):  # refused: nothing changes
        await store.change(1, n=0)
    assert await store.get(1) == mine
    await store.change(1, n=None, aspect=None, negative_prompt=None, watermark=None)
    assert await db.fetchone("SELECT 1 FROM member_defaults WHERE user_id = 1") is None
    await store.change(1, n=3)
    await store.reset(1)
    assert await store.get(1) == NO_DEFAULTS


async def test_a_stored_default_that_became_invalid_is_ignored(db: Database) -> None:
    await execute(
        db,
        "INSERT INTO member_defaults (user_id, defaults, updated_at) VALUES (?, ?, 0)",
        (5, '{"model": "wan-gone", "n": 3}'),
    )
    store = DefaultsStore(db)
    assert await store.get(5) == MemberDefaults(n=3)
    assert await store.change(5, watermark=False) == MemberDefaults(n=3, watermark=False)


async def test_changes_at_once_each_keep_the_others(db: Database) -> None:
    """Two controls of /settings used at once (two clicks, two processes) each change their
    field: neither change is lost to the other's read of the row."""
    store = DefaultsStore(db)
    for user_id in range(100, 110):
        await asyncio.gather(
            store.change(user_id, n=2),
            store.change(user_id, watermark=True),
            store.change(user_id, aspect="16:9"),
            store.change(user_id, prompt_extend=False),
            store.change(user_id, negative_prompt="blur"),
        )
        assert await store.get(user_id) == MemberDefaults(
            aspect="16:9", n=2, negative_prompt="blur", prompt_extend=False, watermark=True
        )


# --- with the server's policy -------------------------------------------------------------------


def test_defaults_fill_only_what_the_command_left_out() -> None:
    mine = MemberDefaults(model="wan2.2-t2i-flash", n=3, watermark=True, negative_prompt="text")
    given = request(n=1, negative_prompt="people")
    left = mine.only(unset(model=None, n=1, negative_prompt="people", watermark=None))
    made = apply_policy(policy(), given, GENERAL, model_chosen=False, mine=left)
    assert (made.model, made.n, made.negative_prompt, made.watermark) == (
        "wan2.2-t2i-flash",
        1,
        "people",
        True,
    )


def test_an_allowed_model_default_beats_the_servers_default() -> None:
    rules = policy(default_model="wan2.5-t2i-preview")
    mine = MemberDefaults(model="wan2.2-t2i-flash")
    made = apply_policy(rules, request(), GENERAL, model_chosen=False, mine=mine)
    assert made.model == "wan2.2-t2i-flash"


def test_a_disallowed_model_default_falls_back_as_the_servers_default_would() -> None:
    rules = policy(
        allowed_models="wan2.6-t2i, wan2.5-t2i-preview", default_model="wan2.5-t2i-preview"
    )
    mine = MemberDefaults(model="wan2.2-t2i-flash")
    made = apply_policy(rules, request(), GENERAL, model_chosen=False, mine=mine)
    assert made.model == "wan2.5-t2i-preview"
    rules = policy(allowed_models="wan2.5-t2i-preview")
    assert apply_policy(rules, request(), GENERAL, model_chosen=False, mine=mine).model == (
        "wan2.5-t2i-preview"
    )


def test_n_default_is_capped_by_max_n_and_forced_options_stay_forced() -> None:
    rules = policy(max_n="2", watermark="on", prompt_extend="off")
    mine = MemberDefaults(n=4, watermark=False, prompt_extend=True)
    made = apply_policy(rules, request(), GENERAL, mine=mine)
    assert (made.n, made.watermark, made.prompt_extend) == (2, True, False)


def test_aspect_default_is_mapped_for_the_model_the_server_picks() -> None:
    rules = policy(default_model="wan2.2-t2i-flash", default_size="1024*1024")
    mine = MemberDefaults(aspect="16:9")
    made = apply_policy(rules, request(), GENERAL, model_chosen=False, size_chosen=False, mine=mine)
    assert validate(made).size == "1280*720"  # the member's ratio, for the server's model
    # A default size the model cannot make gives way to the server's default size.
    mine = MemberDefaults(size="1696*960")
    made = apply_policy(rules, request(), GENERAL, model_chosen=False, size_chosen=False, mine=mine)
    assert made.size == "1024*1024"
