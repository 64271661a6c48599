"""`RecentStarts`, the memory behind "one click, one job": who waits, what is forgotten when."""

from __future__ import annotations

import pytest

from bot.discord_ui.repeats import RecentStarts, Started

KEY = "wan:job:7:reroll"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_a_repeat_waits_for_the_first_start_and_gets_its_job() -> None:
    starts = RecentStarts(window=5.0, clock=Clock())
    assert starts.claim(1, KEY) is None
    earlier = starts.claim(1, KEY)
    assert earlier is not None and not earlier.done()
    starts.finish(1, KEY, Started(42, "https://discord.com/channels/1/2/3"))
    assert earlier.result() == Started(42, "https://discord.com/channels/1/2/3")
    again = starts.claim(1, KEY)
    assert again is not None and again.result().job_id == 42  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("member", "key"), [(2, KEY), (1, "wan:job:8:reroll"), (1, "wan:edit:5:0:9")]
)
async def test_another_member_or_another_button_or_form_is_its_own_start(
    member: int, key: str
) -> None:
    starts = RecentStarts(clock=Clock())
    assert starts.claim(1, KEY) is None
    assert starts.claim(member, key) is None


async def test_a_start_is_forgotten_when_its_window_ends_and_a_failed_one_at_once() -> None:
    clock = Clock()
    starts = RecentStarts(window=5.0, clock=clock)
    assert starts.claim(1, KEY) is None
    starts.finish(1, KEY, Started(1, "link"))
    clock.now += 4.9
    assert starts.claim(1, KEY) is not None
    clock.now += 0.1
    assert starts.claim(1, KEY) is None  # a new start: the window ended

    starts.finish(1, KEY, None)  # that one made nothing (say, refused)
    assert len(starts) == 0
    assert starts.claim(1, KEY) is None


async def test_memory_holds_only_pending_starts_and_the_last_window() -> None:
    clock = Clock()
    starts = RecentStarts(window=50.0, clock=clock)
    for member in range(1000):
        assert starts.claim(member, KEY) is None
        starts.finish(member, KEY, Started(member, "link"))
        clock.now += 1
    # Those that started in the last 50 s (49 whole seconds), plus the one just claimed.
    assert starts.claim(-1, KEY) is None
    assert len(starts) == 50
    clock.now += 50
    assert starts.claim(-2, KEY) is None
    assert len(starts) == 2  # the two still pending
