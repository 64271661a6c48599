"""Pure helpers of what the bot shows on Discord, table-tested without the bot."""

from __future__ import annotations

import pytest

from bot.discord_ui.render import clip


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
