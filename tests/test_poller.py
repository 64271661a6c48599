"""The poller's list cadence: lists are as far apart as the notice target allows once a finish
the next list finds has waited for its query token and for the fetches of the other finishes
expected in the gap, and never so close that they take more than half the query budget.
Deterministic: the poller's clock is a FakeClock, and the loop is driven against the in-loop
simulator by moving that clock."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest

from bot.dashscope.client import DashScopeClient
from bot.dashscope.requests import ImageRequest, validate
from bot.dashscope.results import TaskResult, TaskState
from bot.dispatch.durations import Durations
from bot.dispatch.metrics import Metrics
from bot.dispatch.poller import PATIENCE, Poller, Tracked
from bot.dispatch.ratelimit import RateLimiter
from bot.jobs.model import timing_kind
from bot.simulator import RunningSimulator, start_simulator
from tests.engine_helpers import KEY, LEGACY_MODEL, MODEL, FakeClock, sim_settings, wait_until

RATE = 10.0  # task queries per second, the engine's default
LEARNED = (5.0, 15.0, 25.0, 10.0, 20.0)  # what tasks took, in this order
EARLIEST = 0.8 * min(LEARNED)  # Durations.earliest once three are seen
AGE = 15.0  # how long the tracked tasks have run, unless a test says otherwise
KIND = "text-to-image"
VIDEO_MODEL = "wan2.5-t2v-preview"


async def _ignore_reading(tracked: Tracked, result: TaskResult) -> None:
    return None


async def _ignore_state(tracked: Tracked, state: TaskState) -> None:
    return None


def make_poller(clock: FakeClock, base_url: str = "http://127.0.0.1:9/api/v1") -> Poller:
    durations = Durations()
    for model in (MODEL, LEGACY_MODEL):
        for seconds in LEARNED:
            durations.observe(model, 1, seconds)
    return Poller(
        DashScopeClient(KEY, base_url),
        RateLimiter(RATE, burst=1.0),
        durations,
        Metrics(),
        _ignore_reading,
        _ignore_state,
        clock=clock,
    )


def track(poller: Poller, count: int, *, age: float, model: str = MODEL, first: int = 0) -> None:
    for i in range(first, first + count):
        poller.track(Tracked(i, f"task-{i}", model, 1, KIND, submitted_at=poller.clock() - age))


def worst_notice(gap: float, finishes: float) -> float:
    """When a task that finished just after a list is in hand, round trips aside: the gap to the
    next list, a query token for its fetch, and the fetches of the others that list finds (the
    `finishes` per second expected, over the gap)."""
    return gap + 1 / RATE + gap * finishes / RATE


@pytest.mark.parametrize("tasks", [1, 5, 20, 100])
def test_the_gap_leaves_a_finished_task_in_hand_by_the_notice_target(tasks: int) -> None:
    poller = make_poller(FakeClock())
    track(poller, tasks, age=AGE)
    gap = poller.list_gap(poller.clock())
    finishes = tasks / poller.durations.expected(MODEL, 1, KIND)  # each once per mean duration
    assert worst_notice(gap, finishes) == pytest.approx(poller.notice_target)


def test_more_tasks_finishing_bring_the_lists_closer() -> None:
    gaps = []
    for tasks in (1, 5, 20, 100):
        poller = make_poller(FakeClock())
        track(poller, tasks, age=AGE)
        gaps.append(poller.list_gap(poller.clock()))
    assert gaps == sorted(gaps, reverse=True)
    assert len(set(gaps)) == len(gaps)


def test_only_tasks_that_could_be_finishing_count() -> None:
    poller = make_poller(FakeClock())
    track(poller, 5, age=AGE)
    alone = poller.list_gap(poller.clock())
    track(poller, 10, age=EARLIEST - 1, first=5)  # too young to be done
    track(poller, 10, age=AGE, first=15)
    for i in range(15, 25):
        poller.tracked[i].noticed_finished = True  # seen finished: being fetched, not listed
    assert poller.list_gap(poller.clock()) == alone


@pytest.mark.parametrize("models", [1, 2])
def test_lists_never_take_more_than_half_the_budget(models: int) -> None:
    poller = make_poller(FakeClock())
    for m, model in enumerate((MODEL, LEGACY_MODEL)[:models]):
        track(poller, 2000, age=AGE, model=model, first=m * 2000)
    gap = poller.list_gap(poller.clock())
    assert models / gap == pytest.approx(RATE / 2)  # one list per model a gap


def test_the_next_wake_is_the_last_list_plus_the_gap() -> None:
    clock = FakeClock()
    poller = make_poller(clock)
    track(poller, 5, age=EARLIEST - 3)  # could be done in 3 s
    assert poller._next_wake(clock()) == pytest.approx(3.0)
    clock.advance(3.0)
    poller._last_list = clock()
    gap = poller.list_gap(clock())
    assert poller._next_wake(clock()) == pytest.approx(gap)


@asynccontextmanager
async def simulator() -> AsyncIterator[RunningSimulator]:
    sim = await start_simulator(sim_settings())
    try:
        yield sim
    finally:
        await sim.stop()


async def test_the_loop_lists_again_only_when_the_gap_has_passed() -> None:
    async with simulator() as sim, httpx.AsyncClient() as http:
        client = DashScopeClient(KEY, sim.base_url, http=http)
        clock = FakeClock()
        poller = make_poller(clock, sim.base_url)
        poller.client = client
        for i in range(5):  # running past the test: the list shows them RUNNING
            request = validate(ImageRequest(model=MODEL, prompt=f"cadence {i} sim:slow=600"))
            submitted = await client.submit(request)
            poller.track(Tracked(i, submitted.task_id, MODEL, 1, KIND, clock() - EARLIEST - 1))

        def lists() -> int:
            return int(sim.sim.requests["tasks.list"])

        async def wake_and_settle() -> None:
            """Wake the loop with the clock moved and wait until it has looked at it."""
            poller._wake.set()
            await wait_until(lambda: not poller._wake.is_set(), what="the loop woke")

        loop = asyncio.create_task(poller.run())
        try:
            await wait_until(lambda: lists() == 1, what="the first list")
            first = poller._last_list
            gap = poller.list_gap(clock())
            clock.now = first + gap * 0.95
            await wake_and_settle()
            assert poller._last_list == first and lists() == 1
            clock.now = first + gap
            await wake_and_settle()
            await wait_until(lambda: lists() == 2, what="the second list")
            assert poller._last_list == first + gap
            assert sim.sim.requests["tasks.get"] == 0  # the list vouches for running tasks
        finally:
            loop.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await loop


def test_a_kind_of_a_many_kind_model_learns_its_own_durations() -> None:
    """wanx2.1-imageedit upscales in seconds and varies in tens of them: once a kind has three
    samples its own figures count; before that, and for kinds never seen, the model's do."""
    tools = "wanx2.1-imageedit"
    durations = Durations()
    for _ in range(3):
        durations.observe(tools, 1, 4.0, "upscale")
    durations.observe(tools, 1, 40.0, "vary")
    assert durations.expected(tools, 1, "upscale") == 4.0
    assert durations.earliest(tools, 1, "upscale") == pytest.approx(3.2)
    mixed = 4.0 + 0.2 * 36.0
    assert durations.expected(tools, 1, "vary") == pytest.approx(mixed)  # one sample only
    assert durations.expected(tools, 1, "expand") == pytest.approx(mixed)  # none
    for _ in range(2):
        durations.observe(tools, 1, 40.0, "vary")
    assert durations.expected(tools, 1, "vary") == 40.0
    assert durations.earliest(tools, 1, "vary") == pytest.approx(32.0)
    assert durations.earliest(tools, 1) == pytest.approx(3.2)  # the model's: its fastest


def test_a_video_learns_its_durations_per_length_and_resolution() -> None:
    """Before anything is seen a video is expected to take minutes, longer for more seconds and
    pixels; what is learned counts for that model, length and resolution only (the model's
    other videos say little about it), and the ETA follows."""
    i2v = "wan2.5-i2v-preview"
    short, long = timing_kind("animate", 5, "480P"), timing_kind("animate", 10, "1080P")
    durations = Durations()
    assert 60 < durations.expected(i2v, 1, short) < durations.expected(i2v, 1, long)
    assert durations.expected(i2v, 1, short) > durations.expected(MODEL, 1, KIND)
    assert durations.earliest(i2v, 1, short) == durations.expected(i2v, 1, short) / 2
    for seconds in (100.0, 110.0, 120.0):
        durations.observe(i2v, 1, seconds, short)
    assert durations.expected(i2v, 1, short) == pytest.approx(105.6)
    assert durations.earliest(i2v, 1, short) == pytest.approx(80.0)
    assert durations.expected(i2v, 1, long) > 200  # still its own prior, not the 5 s figures
    durations.observe(i2v, 1, 400.0, long)
    assert durations.expected(i2v, 1, long) == 400.0  # its own from the first sample


def test_videos_running_for_minutes_leave_the_lists_to_images() -> None:
    """A video is not listed before it could finish, and then only every few seconds: images
    in flight meanwhile are listed at every list."""
    clock = FakeClock()
    poller = make_poller(clock)
    video = timing_kind("video", 5, "720P")
    expected = poller.durations.expected(VIDEO_MODEL, 1, video)
    track(poller, 3, age=AGE)
    for i in range(10, 14):
        poller.track(Tracked(i, f"task-{i}", VIDEO_MODEL, 1, video, submitted_at=clock() - 5))
    assert {t.model for t in poller._listed(clock())} == {MODEL}  # the videos just started
    clock.advance(expected)  # every video could be finishing now
    now = clock()
    assert {t.job_id for t in poller._listed(now)} == {0, 1, 2, 10, 11, 12, 13}
    for t in poller._listed(now):  # as a list round marks them
        t.listed_at = now
    clock.advance(1.0)
    assert {t.job_id for t in poller._listed(clock())} == {0, 1, 2}
    clock.advance(expected / PATIENCE)
    assert {t.job_id for t in poller._listed(clock())} == {0, 1, 2, 10, 11, 12, 13}
