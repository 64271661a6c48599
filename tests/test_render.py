"""Pure helpers of what the bot shows on Discord, table-tested without the bot."""

from __future__ import annotations

import re
from typing import Any

import discord
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.accounting.defaults import MemberDefaults
from bot.dashscope.requests import ImageRequest
from bot.dashscope.tools import Chosen, Pan, expand, pan_scales, upscale, vary, zoom_scales
from bot.discord_ui.image_tools import parse_option
from bot.discord_ui.render import clip, member_words, quoted, result_view, tool_words
from bot.discord_ui.settings import summary
from bot.jobs.model import Job, NewJob


@pytest.mark.parametrize(
    ("value", "limit", "shown"),
    [
        ("", 5, ""),
        ("fox", 5, "fox"),
        ("foxes", 5, "foxes"),  # exactly at the limit: whole
        ("foxtrot", 5, "foxt…"),  # over: cut, with the ellipsis inside the limit
        ("狐狸在雪地里", 4, "狐狸在…"),  # characters, not bytes
        ("ab", 1, "…"),
    ],
)
def test_clip(value: str, limit: int, shown: str) -> None:
    assert clip(value, limit) == shown
    assert len(clip(value, limit)) <= limit


FORGERY = "line one\n# HUGE HEADING\n✅ Done: 4 image(s) in 1 s.\n[link](https://evil.example)"


@pytest.mark.parametrize(
    ("words", "shown"),
    [
        ("a red kite", "a red kite"),
        (
            FORGERY,
            "line one \\# HUGE HEADING ✅ Done: 4 image(s) in 1 s. \\[link\\](<https://evil.example>)",
        ),
        ("@everyone and @here", "\\@everyone and \\@here"),
        (
            "<@123456789012345678> <@!1> <@&2>",
            "\\<\\@123456789012345678\\> \\<\\@!1\\> \\<\\@&2\\>",
        ),
        ("<#123456789012345678>", "\\<\\#123456789012345678\\>"),
        ("<t:1700000000:R> <:wan:42>", "\\<t:1700000000:R\\> \\<:wan:42\\>"),
        ("||spoiler||", "\\|\\|spoiler\\|\\|"),
        ("`code` ```block```", "\\`code\\` \\`\\`\\`block\\`\\`\\`"),
        (
            "**bold** __under__ ~~gone~~ *it*",
            "\\*\\*bold\\*\\* \\_\\_under\\_\\_ \\~\\~gone\\~\\~ \\*it\\*",
        ),
        ("-# small", "\\-\\# small"),
        (">>> quote", "\\>\\>\\> quote"),
        ("> quote", "\\> quote"),
        ("- item", "\\- item"),
        ("+ item", "\\+ item"),
        ("1. first", "1\\. first"),
        ("a back\\slash\\", "a back\\\\slash\\\\"),
        # Links stay whole and visible, never previewed; the punctuation after one stays out.
        ("see https://example.com/a_b*c.", "see <https://example.com/a_b*c>."),
        ("(https://example.com/x)", "(<https://example.com/x>)"),
        ("<https://example.com>", "\\<<https://example.com>\\>"),
        ("[x](<https://evil.example>)", "\\[x\\](\\<<https://evil.example>\\>)"),
        ("mixed 一只猫 🐱 — plain", "mixed 一只猫 🐱 — plain"),
    ],
)
def test_member_words_are_shown_literally(words: str, shown: str) -> None:
    assert member_words(words, 1024, one_line=True) == shown
    assert quoted(words, 1024) == "> " + shown


def test_member_words_keep_their_lines_each_escaped_unless_one_line() -> None:
    assert member_words(FORGERY, 1024) == (
        "line one\n\\# HUGE HEADING\n✅ Done: 4 image(s) in 1 s.\n\\[link\\](<https://evil.example>)"
    )
    assert member_words("a\n\n\n- b\n  1. c\n", 100) == "a\n\\- b\n  1\\. c"
    assert member_words("  spaced \t out  \n", 100, one_line=True) == "spaced out"


@pytest.mark.parametrize("limit", [1, 2, 5, 80, 300, 1024])
@pytest.mark.parametrize(
    "words",
    ["a" * 5000, "*" * 5000, "line\n" * 900, "x https://example.com/" + "p" * 3000, "@_" * 900],
)
def test_long_member_words_are_cut_within_the_limit(words: str, limit: int) -> None:
    for one_line in (True, False):
        shown = member_words(words, limit, one_line=one_line)
        assert len(shown) <= limit
        assert shown.endswith("…")
        assert not shown.endswith("\\…")  # an escape is never cut in half
    if "https://" not in words:  # a link too long to fit is left out whole
        assert 301 <= len(quoted(words, 300)) <= 302  # as full as whole escapes allow


def test_a_cut_never_falls_inside_a_link() -> None:
    words = "see https://evil.example.com/path and more"
    assert member_words(words, 30) == "see…"
    assert member_words(words, 40) == "see <https://evil.example.com/path> and…"


@given(st.text())
def test_nothing_a_member_writes_is_read_as_markup(words: str) -> None:
    """What is left after the escapes and the links is free of markup characters."""
    shown = member_words(words, 2000, one_line=True)
    assert "\n" not in shown and len(shown) <= 2000
    plain = re.sub(r"<https?://[^\s<>]+>", "", shown)
    plain = re.sub(r"\\.", "", plain)
    assert not set(plain) & set("\\*_~|`[]<>#@"), shown


def test_settings_show_a_members_negative_prompt_literally() -> None:
    """/settings quotes the member's negative prompt: a backtick in it closes no code span, a
    masked link or a mention in it is no markup."""
    words = "blurry` [free](https://evil.example) **loud**\n@everyone"
    shown = summary(MemberDefaults(negative_prompt=words), "en")
    line = next(line for line in shown.splitlines() if line.startswith("Negative prompt: "))
    assert line == "Negative prompt: " + member_words(words, 1024, one_line=True)
    assert "`" not in line.replace("\\`", "")


# --- the actions on one image of a result ---------------------------------------------------------

PICTURE = "data:image/png;base64,AAAA"


def tool_job(request: ImageRequest, parent: int | None = 12) -> Job:
    return Job.queued(13, NewJob(request=request, user_id=1, parent_job_id=parent), 0.0)


@pytest.mark.parametrize(
    ("request_", "en", "zh"),
    [
        (
            upscale(Chosen(PICTURE, position=2), 2),
            "Upscale ×2 of image 2 of job #12",
            "任务 #12 第 2 张图片的放大 ×2",
        ),
        (upscale(Chosen(PICTURE, position=1), 4), "Upscale ×4 of image 1 of job #12", None),
        (
            expand(Chosen(PICTURE, position=1), zoom_scales(1.5)),
            "Zoom out ×1.5 of image 1 of job #12",
            None,
        ),
        (
            expand(Chosen(PICTURE, position=3), zoom_scales(2.0)),
            "Zoom out ×2 of image 3 of job #12",
            None,
        ),
        (
            expand(Chosen(PICTURE, position=1), pan_scales(Pan.LEFT)),
            "Pan ← of image 1 of job #12",
            "任务 #12 第 1 张图片的平移 ←",
        ),
        (
            expand(Chosen(PICTURE, position=1), pan_scales(Pan.DOWN)),
            "Pan ↓ of image 1 of job #12",
            None,
        ),
        (
            vary(Chosen(PICTURE, position=4), "subtle", 2, None),
            "Vary (subtle) of image 4 of job #12",
            None,
        ),
        (
            vary(Chosen(PICTURE, position=1), "strong", 1, None),
            "Vary (strong) of image 1 of job #12",
            "任务 #12 第 1 张图片的变体（强烈）",
        ),
        # Where imageedit is not offered: an edit model, with no strength.
        (
            vary(Chosen(PICTURE, position=1), "strong", 1, "ap-southeast-1"),
            "Vary of image 1 of job #12",
            None,
        ),
    ],
)
def test_a_tool_job_says_what_it_did_to_which_image(
    request_: ImageRequest, en: str, zh: str | None
) -> None:
    job = tool_job(request_)
    assert tool_words(job, "en") == en
    if zh is not None:
        assert tool_words(job, "zh") == zh


def test_tool_words_of_other_jobs() -> None:
    # The CLI's tools have no parent job; expand scales of its own are told as they are.
    assert tool_words(tool_job(upscale(Chosen(PICTURE), 2), parent=None), "en") == "Upscale ×2"
    odd = expand(Chosen(PICTURE), (1.2, 1.0, 1.0, 1.5))
    assert tool_words(tool_job(odd, parent=None), "en") == (
        "Zoom out (top ×1.2, bottom ×1.0, left ×1.0, right ×1.5)"
    )
    assert tool_words(tool_job(ImageRequest(model="wan2.6-t2i", prompt="a cat")), "en") is None


def components(view: discord.ui.View) -> list[list[dict[str, Any]]]:
    return [row["components"] for row in view.to_components()]


@pytest.mark.parametrize(
    ("region", "rows"),
    [
        (None, ["U1 U2 U3 U4", "V1 V2 V3 V4", "move", "more", "reroll edit info delete"]),
        ("cn-beijing", ["U1 U2 U3 U4", "V1 V2 V3 V4", "move", "more", "reroll edit info delete"]),
        ("ap-southeast-1", ["V1 V2 V3 V4", "more", "reroll edit info delete"]),
        ("us-east-1", ["more", "reroll edit info delete"]),
    ],
)
def test_a_result_of_four_shows_the_tools_its_region_offers(
    region: str | None, rows: list[str]
) -> None:
    drawn = components(result_view(7, "en", images=[1, 2, 3, 4], region=region))
    shown = [
        " ".join(
            c["label"] if ":img:" in c["custom_id"] else c["custom_id"].rsplit(":", 1)[1]
            for c in row
        )
        if row[0]["type"] == 2
        else row[0]["custom_id"].rsplit(":", 1)[1]
        for row in drawn
    ]
    assert shown == rows
    assert len(drawn) <= 5
    for row in drawn:
        for select in (c for c in row if c["type"] == 3):
            assert len(select["options"]) <= 25
            assert len({o["value"] for o in select["options"]}) == len(select["options"])


def test_a_result_with_an_image_left_out_numbers_the_others_as_they_are() -> None:
    upscale_row, vary_row, move, more, _ = components(result_view(7, "en", images=[1, 3]))
    assert [b["label"] for b in upscale_row] == ["U1", "U3"]
    assert [b["custom_id"] for b in vary_row] == [
        "wan:img:7:1:vary_subtle",
        "wan:img:7:3:vary_subtle",
    ]
    assert {o["value"].split(":")[1] for o in move[0]["options"] + more[0]["options"]} == {"1", "3"}


@pytest.mark.parametrize(
    ("value", "parsed"),
    [
        ("upscale2:1", ("upscale2", 1)),
        ("pan_left:4", ("pan_left", 4)),
        ("edit:2", ("edit", 2)),
        ("sharpen:1", None),
        ("upscale2", None),
        ("upscale2:", None),
        ("upscale2:x", None),
        ("upscale2:²", None),
        ("upscale2:123", None),
        ("", None),
    ],
)
def test_menu_options_this_version_made_are_understood(
    value: str, parsed: tuple[str, int] | None
) -> None:
    assert parse_option(value) == parsed


def test_a_result_of_one_names_its_actions() -> None:
    upscale_row, vary_row, move, more, _ = components(result_view(7, "en"))
    assert [b["label"] for b in upscale_row + vary_row] == ["Upscale ×2", "Vary (subtle)"]
    assert [o["label"] for o in move[0]["options"]][:2] == ["Zoom out ×1.5", "Zoom out ×2"]
    assert [o["label"] for o in more[0]["options"]] == [
        "Upscale ×4",
        "Vary (strong)",
        "Edit this image",
        "Animate",
    ]
    # Where Vary has no strength (no wanx2.1-imageedit), it is not called subtle.
    vary_row, _, _ = components(result_view(7, "en", region="ap-southeast-1"))
    assert [b["label"] for b in vary_row] == ["Vary"]
