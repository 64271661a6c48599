"""Server styles: what an admin may add (every refusal in words, in English and Chinese), how a
style changes a member's request (prompt, negative prompt, model; too long → words), and the
store on both backends (add, replace, remove, list, the cap, the audit log)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.accounting.policy import PolicyStore
from bot.accounting.quota import DEFAULT_LIMITS, policy_defaults
from bot.accounting.styles import (
    STYLES_MAX,
    Style,
    StyleStore,
    apply_style,
    joined,
    new_style,
)
from bot.dashscope.models import MODELS, Kind, models_of
from bot.dashscope.requests import ImageRequest, validate
from bot.errors import InputRejected
from bot.presenter import describe, utc_time
from tests.backends import fresh_database
from tests.engine_helpers import FakeClock

GUILD = 900
OTHER_GUILD = 901
ADMIN = 5
T2I = ", ".join(spec.name for spec in models_of(Kind.TEXT_TO_IMAGE))


def words(error: InputRejected) -> tuple[str, str]:
    return describe(error, "en", moment=utc_time), describe(error, "zh", moment=utc_time)


def refused(**fields: object) -> tuple[str, str]:
    values = {"label": "noir", "suffix": "in film noir style", "negative": None, "model": None}
    values.update(fields)
    with pytest.raises(InputRejected) as caught:
        new_style(**values, by_user=ADMIN, at=0.0)  # type: ignore[arg-type]
    return words(caught.value)


# --- what an admin may add -------------------------------------------------------------------


def test_a_good_style_is_kept_under_its_lower_case_name() -> None:
    style = new_style(
        " Film-Noir_2 ", " in  film noir\nstyle ", " colour ", "wan2.2-t2i-flash", by_user=7, at=3.0
    )
    assert style == Style(
        "film-noir_2", "Film-Noir_2", "in film noir style", "colour", "wan2.2-t2i-flash", 7, 3.0
    )
    assert style.summary() == "in film noir style | −colour | wan2.2-t2i-flash"
    # Names in any script; no negative, no model.
    style = new_style("水墨", "水墨画风格", None, "", by_user=7, at=3.0)
    assert (style.name, style.negative_prompt, style.model) == ("水墨", None, None)
    assert style.summary() == "水墨画风格"


@pytest.mark.parametrize(
    ("fields", "english", "chinese"),
    [
        (
            {"label": "film noir"},
            "`film noir` can't be a style's name: use 1 to 32 letters, digits, - or _ (no spaces).",
            "`film noir` 不能作为风格名称：请使用 1 到 32 个字母、数字、- 或 _（不含空格）。",
        ),
        (
            {"label": "x" * 33},
            f"`{'x' * 33}` can't be a style's name: use 1 to 32 letters, digits, - or _ (no spaces).",
            f"`{'x' * 33}` 不能作为风格名称：请使用 1 到 32 个字母、数字、- 或 _（不含空格）。",
        ),
        (
            {"label": "y" * 10_000, "model": "m" * 10_000},  # quoted no longer than 64 characters
            f"`{'y' * 64}…` can't be a style's name: use 1 to 32 letters, digits, - or _ (no spaces)."
            f"\n`{'m' * 64}…` is not a text-to-image model. Choose one of: {T2I}.",
            f"`{'y' * 64}…` 不能作为风格名称：请使用 1 到 32 个字母、数字、- 或 _（不含空格）。"
            f"\n`{'m' * 64}…` 不是文生图模型。可选：{T2I}。",
        ),
        (
            {"label": "a`b @here", "model": "`x`"},  # a backtick would end the quote early
            "`a'b @here` can't be a style's name: use 1 to 32 letters, digits, - or _ (no spaces)."
            f"\n`'x'` is not a text-to-image model. Choose one of: {T2I}.",
            "`a'b @here` 不能作为风格名称：请使用 1 到 32 个字母、数字、- 或 _（不含空格）。"
            f"\n`'x'` 不是文生图模型。可选：{T2I}。",
        ),
        (
            {"suffix": "  \n "},
            "A style needs words to add to prompts.",
            "风格需要一段附加到提示词后的文字。",
        ),
        (
            {"suffix": "s" * 301},
            "The style's words are 301 characters; at most 300 are allowed, so that prompts still"
            " fit. Shorten them.",
            "风格的文字有 301 个字符，为了让提示词仍能放得下，最多 300 个，请缩短。",
        ),
        (
            {"negative": "n" * 501},
            "The style's negative prompt is 501 characters; at most 500 are allowed. Shorten it.",
            "风格的反向提示词有 501 个字符，最多 500 个，请缩短。",
        ),
        (
            {"model": "wan2.5-i2i-preview"},
            f"`wan2.5-i2i-preview` is not a text-to-image model. Choose one of: {T2I}.",
            f"`wan2.5-i2i-preview` 不是文生图模型。可选：{T2I}。",
        ),
        (
            {"model": "midjourney"},
            f"`midjourney` is not a text-to-image model. Choose one of: {T2I}.",
            f"`midjourney` 不是文生图模型。可选：{T2I}。",
        ),
    ],
)
def test_bad_values_are_refused_saying_what_to_change(
    fields: dict[str, object], english: str, chinese: str
) -> None:
    assert refused(**fields) == (english, chinese)


def test_every_bad_value_is_named_at_once() -> None:
    english, _ = refused(label="<@1>", suffix="", model="wanx2.1-imageedit")
    assert english.split("\n") == [
        "`<@1>` can't be a style's name: use 1 to 32 letters, digits, - or _ (no spaces).",
        "A style needs words to add to prompts.",
        f"`wanx2.1-imageedit` is not a text-to-image model. Choose one of: {T2I}.",
    ]


@given(label=st.text(max_size=40), suffix=st.text(max_size=320))
def test_a_style_is_either_valid_or_refused_in_words(label: str, suffix: str) -> None:
    try:
        style = new_style(label, suffix, None, None, by_user=1, at=0.0)
    except InputRejected as error:
        assert all(words(error))
        return
    assert 1 <= len(style.label) <= 32 and style.name == style.label.lower()
    assert all(c.isalnum() or c in "-_" for c in style.label)
    assert (
        0 < len(style.prompt_suffix) <= 300 and style.prompt_suffix == style.prompt_suffix.strip()
    )


# --- a style applied to a member's request -----------------------------------------------------


@pytest.mark.parametrize(
    ("first", "second", "together"),
    [
        ("a cat", "in film noir style", "a cat, in film noir style"),
        ("a cat, ", "noir", "a cat, noir"),
        ("一只猫，", "水墨画", "一只猫, 水墨画"),
        ("a cat", None, "a cat"),
        (None, "colour", "colour"),
        ("  ", "", None),
    ],
)
def test_texts_are_joined_with_one_comma(
    first: str | None, second: str | None, together: str | None
) -> None:
    assert joined(first, second) == together


NOIR = Style("noir", "Noir", "in film noir style", "colour", "wan2.2-t2i-flash")


def test_a_style_adds_its_words_negative_prompt_and_model() -> None:
    request = ImageRequest(model="wan2.6-t2i", prompt="a cat", negative_prompt="dogs")
    styled = apply_style(request, NOIR, model_chosen=False)
    assert (styled.prompt, styled.negative_prompt, styled.model, styled.style) == (
        "a cat, in film noir style",
        "dogs, colour",
        "wan2.2-t2i-flash",
        "Noir",
    )
    validate(styled)  # what is sent is a valid request
    # The member's own model stays; without a negative of theirs, the style's is the negative.
    styled = apply_style(ImageRequest(model="wan2.6-t2i", prompt="a cat"), NOIR, model_chosen=True)
    assert (styled.model, styled.negative_prompt) == ("wan2.6-t2i", "colour")
    # A style without a model leaves the request's.
    plain = Style("ink", "Ink", "ink wash", None, None)
    styled = apply_style(request, plain, model_chosen=False)
    assert (styled.model, styled.negative_prompt) == ("wan2.6-t2i", "dogs")


def test_a_style_that_makes_the_prompt_too_long_says_how_long_yours_may_be() -> None:
    request = ImageRequest(model="wan2.6-t2i", prompt="p" * 490, negative_prompt="n" * 495)
    with pytest.raises(InputRejected) as caught:
        apply_style(request, NOIR, model_chosen=False)  # wan2.2-t2i-flash: 500 characters
    assert words(caught.value) == (
        "With the style Noir, the prompt is 510 characters; wan2.2-t2i-flash accepts at most 500."
        " Shorten your prompt to 480 characters or fewer.\n"
        "With the style Noir, the negative prompt is 503 characters; at most 500 are allowed."
        " Shorten yours to 492 characters or fewer.",
        "加上风格 Noir 后，提示词有 510 个字符，wan2.2-t2i-flash 最多接受 500 个。"
        "请把你的提示词缩短到 480 个字符以内。\n"
        "加上风格 Noir 后，反向提示词有 503 个字符，最多 500 个。"
        "请把你的反向提示词缩短到 492 个字符以内。",
    )
    # The same prompt fits the member's own model of 2,000 characters.
    styled = apply_style(ImageRequest("wan2.6-t2i", "p" * 490), NOIR, model_chosen=True)
    assert len(styled.prompt) == 510


def test_a_style_whose_negative_prompt_fills_it_says_to_leave_yours_out() -> None:
    """No length of the member's negative prompt fits beside a style's of 500 characters: the
    refusal says to leave it out, not to shorten it to a negative number of characters."""
    full = Style("full", "Full", "in ink", "n" * 500, None)
    request = ImageRequest(model="wan2.6-t2i", prompt="a cat", negative_prompt="dogs")
    with pytest.raises(InputRejected) as caught:
        apply_style(request, full, model_chosen=True)
    assert words(caught.value) == (
        "The style Full fills the whole negative prompt (500 characters), so it has no room for"
        " yours. Leave out your negative prompt.",
        "风格 Full 已占满反向提示词的全部 500 个字符，放不下你的反向提示词。"
        "请不要填写你的反向提示词。",
    )
    alone = apply_style(replace(request, negative_prompt=None), full, model_chosen=True)
    assert alone.negative_prompt == "n" * 500


# --- the store, on both backends ---------------------------------------------------------------


@pytest.fixture
async def store(backend: str, tmp_path: Path) -> AsyncIterator[StyleStore]:
    async with fresh_database(backend, tmp_path) as db:
        yield StyleStore(db, FakeClock(1_750_000_000.0))


async def test_add_replace_list_remove_with_every_change_audited(store: StyleStore) -> None:
    clock = store.clock
    assert isinstance(clock, FakeClock)
    start = clock.now
    old, noir = await store.add(GUILD, "Noir", "in film noir style", "colour", by_user=ADMIN)
    assert old is None and noir == Style(
        "noir", "Noir", "in film noir style", "colour", None, ADMIN, start
    )
    clock.advance(60)
    await store.add(GUILD, "ink", "ink wash", model="wan2.2-t2i-flash", by_user=ADMIN)
    await store.add(OTHER_GUILD, "noir", "elsewhere", by_user=ADMIN)
    clock.advance(60)
    # The same name in other letters replaces the style, and says what it was.
    old, again = await store.add(GUILD, "NOIR", "high contrast noir", by_user=ADMIN + 1)
    assert old == noir
    assert again == Style("noir", "NOIR", "high contrast noir", None, None, ADMIN + 1, start + 120)
    assert [s.label for s in await store.all(GUILD)] == ["ink", "NOIR"]
    assert await store.pick(GUILD, " noir ") == again
    clock.advance(60)
    assert await store.remove(GUILD, "Ink", by_user=ADMIN) == Style(
        "ink", "ink", "ink wash", None, "wan2.2-t2i-flash", ADMIN, start + 60
    )
    assert [s.label for s in await store.all(GUILD)] == ["NOIR"]
    assert [s.prompt_suffix for s in await store.all(OTHER_GUILD)] == ["elsewhere"]

    # The audit log, as /wanadmin audit reads it, newest first.
    policy = PolicyStore(store.db, policy_defaults(DEFAULT_LIMITS))
    rows = await policy.audit(GUILD)
    assert [
        (r["user_id"], r["role_id"], r["setting"], r["old_value"], r["new_value"], r["created_at"])
        for r in rows
    ] == [
        (ADMIN, 0, "style:ink", "ink wash | wan2.2-t2i-flash", None, start + 180),
        (
            ADMIN + 1,
            0,
            "style:NOIR",
            "in film noir style | −colour",
            "high contrast noir",
            start + 120,
        ),
        (ADMIN, 0, "style:ink", None, "ink wash | wan2.2-t2i-flash", start + 60),
        (ADMIN, 0, "style:Noir", None, "in film noir style | −colour", start),
    ]


async def test_unknown_styles_are_refused_naming_the_servers_styles(store: StyleStore) -> None:
    with pytest.raises(InputRejected) as caught:
        await store.pick(GUILD, "noir")
    assert words(caught.value) == (
        "There is no style `noir` here: this server has no styles yet. Admins add them with"
        " /wanadmin styles add.",
        "这里没有名为 `noir` 的风格：本服务器还没有任何风格。管理员可用 /wanadmin styles add 添加。",
    )
    await store.add(GUILD, "Noir", "noir", by_user=ADMIN)
    await store.add(GUILD, "ink", "ink wash", by_user=ADMIN)
    for attempt in (store.pick(GUILD, "sepia"), store.remove(GUILD, "sepia", by_user=ADMIN)):
        with pytest.raises(InputRejected) as caught:
            await attempt
        assert words(caught.value) == (
            "There is no style `sepia` here. Choose one of: ink, Noir.",
            "这里没有名为 `sepia` 的风格。可选：ink, Noir。",
        )
    with pytest.raises(InputRejected) as caught:
        await store.pick(None, "noir")  # a direct message
    assert words(caught.value)[0] == (
        "Styles belong to servers: choose a style in a server's channel, not in direct messages."
    )


async def test_a_server_has_at_most_25_styles_and_may_still_replace_them(
    store: StyleStore,
) -> None:
    for k in range(STYLES_MAX):
        await store.add(GUILD, f"s{k}", f"words {k}", by_user=ADMIN)
    with pytest.raises(InputRejected) as caught:
        await store.add(GUILD, "one-more", "words", by_user=ADMIN)
    assert words(caught.value) == (
        "This server already has 25 styles, the most it can have. Remove one first with"
        " /wanadmin styles remove.",
        "本服务器已有 25 个风格，已达上限。请先用 /wanadmin styles remove 删除一个。",
    )
    old, new = await store.add(GUILD, "S3", "new words", by_user=ADMIN)
    assert old is not None and new.prompt_suffix == "new words"
    assert len(await store.all(GUILD)) == STYLES_MAX
    await store.add(OTHER_GUILD, "one-more", "words", by_user=ADMIN)  # a cap per server
    row = await store.db.fetchone(
        "SELECT COUNT(*) AS k FROM audit_log WHERE setting = 'style:one-more'"
    )
    assert row is not None and row["k"] == 1  # the refused add left no trace


async def test_styles_apply_through_the_store(store: StyleStore) -> None:
    await store.add(
        GUILD, "Noir", "in film noir style", "colour", "wan2.2-t2i-flash", by_user=ADMIN
    )
    request = ImageRequest(model="wan2.6-t2i", prompt="a cat")
    styled, chosen = await store.apply(GUILD, "noir", request, model_chosen=False)
    assert (styled.model, styled.prompt, chosen) == (
        "wan2.2-t2i-flash",
        "a cat, in film noir style",
        True,
    )
    assert MODELS[styled.model].kind is Kind.TEXT_TO_IMAGE
