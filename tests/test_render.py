"""Pure helpers of what the bot shows on Discord, table-tested without the bot."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.discord_ui.render import clip, member_words, quoted


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
