"""The long run of `python -m bench footprint`: does memory stay flat over many jobs?

A bot runs for months, so whatever it keeps per job, per channel or per task must be let go.
This process runs the job engine with the Discord delivery port (`DiscordDelivery`, its status
edits, their per-channel spacing and result posts) against a simulator in another process, and
pushes `jobs` short text-to-image jobs through it, `window` at a time, each in a channel of its
own (as members run commands in threads of their own). The Discord client is a stand-in that
answers at once: what is measured is the bot's own bookkeeping, not discord.py's HTTP.

After the first `warmup` jobs, and then after every `sample_every`, it lets every job end and
its end be shown, collects garbage and samples the Python heap (tracemalloc: what was allocated
since halfway through the warm-up and is still alive; by then the caches that fill once, such
as compiled patterns and parsed URLs, are full) and the resident memory (VmRSS: also SQLite's
and the allocator's). Memory is flat when the heap grows less than GOAL_GROWTH_KB per 1,000 jobs
(a least-squares slope over the samples).
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import os
import time
import tracemalloc
from pathlib import Path
from typing import Any

import httpx

from bench.common import KEY, StubFetcher, progress, rss_mb
from bot.accounting.quota import Limits, Quota
from bot.dashscope import DashScopeClient, ImageRequest, validate
from bot.discord_ui.delivery import EDIT_SPACING, DiscordDelivery
from bot.dispatch.engine import Engine, EngineConfig
from bot.jobs.model import JobState, NewJob
from bot.jobs.store import JobStore
from bot.storage.db import Database

MODEL = "wan2.6-t2i"
GOAL_GROWTH_KB = 16.0  # heap growth per 1,000 jobs after warm-up: 16 bytes a job
FIRST_CHANNEL = 10**15  # the stand-in's channel and message ids start here
ROOT = Path(__file__).resolve().parent.parent


class _Message:
    def __init__(self, message_id: int) -> None:
        self.id = message_id


class _Channel:
    """A channel or a message in it: posting and editing answer at once, counted."""

    def __init__(self, discord: StandInDiscord, channel_id: int) -> None:
        self.discord = discord
        self.id = channel_id

    async def send(self, *args: Any, **kwargs: Any) -> _Message:
        self.discord.posts += 1
        return _Message(next(self.discord.ids))

    def get_partial_message(self, message_id: int) -> _Channel:
        return self

    async def edit(self, **kwargs: Any) -> None:
        self.discord.edits += 1


class StandInDiscord:
    """The few calls `DiscordDelivery` makes on its `discord.Client`."""

    def __init__(self) -> None:
        self.ids = itertools.count(FIRST_CHANNEL * 2)
        self.posts = 0
        self.edits = 0

    def get_partial_messageable(self, channel_id: int) -> _Channel:
        return _Channel(self, channel_id)

    def get_guild(self, guild_id: int) -> None:
        return None

    async def create_dm(self, user: Any) -> _Channel:
        return _Channel(self, 0)


def slope(points: list[tuple[float, float]]) -> float | None:
    """Least-squares slope of y over x, or None without two distinct x."""
    n = len(points)
    mean_x = sum(x for x, _ in points) / n if points else 0.0
    mean_y = sum(y for _, y in points) / n if points else 0.0
    spread = sum((x - mean_x) ** 2 for x, _ in points)
    if spread == 0:
        return None
    return sum((x - mean_x) * (y - mean_y) for x, y in points) / spread


async def _drain(engine: Engine) -> None:
    """Wait until every job so far has ended and its end is shown, and the channels' turns have
    passed: what is left in memory then is what the bot keeps for good."""
    while True:
        row = await engine.db.fetchone("SELECT COUNT(*) FROM jobs WHERE notified_at IS NULL")
        if row is not None and row[0] == 0:
            break
        await asyncio.sleep(0.05)
    await asyncio.sleep(EDIT_SPACING + 0.1)


def _sample(jobs: int, started: float) -> dict[str, float]:
    gc.collect()
    heap, _ = tracemalloc.get_traced_memory()
    sample = {
        "jobs": jobs,
        "t": round(time.monotonic() - started, 1),
        "heap_kb": round(heap / 1024, 1),
        "rss_mb": round(rss_mb(os.getpid()), 2),
    }
    progress(f"long run: {sample}")
    return sample


async def run(
    base_url: str,
    db_path: Path,
    *,
    jobs: int,
    window: int,
    sample_every: int,
    warmup: int,
    task_seconds: float,
) -> dict[str, Any]:
    db = await Database.open(db_path)
    try:
        async with httpx.AsyncClient() as http:
            client = DashScopeClient(KEY, base_url, http=http)
            quota = Quota(db, JobStore(db), Limits(0, 0, 0, 0))
            discord = StandInDiscord()
            port = DiscordDelivery(simulated=True)
            config = EngineConfig(
                max_in_flight=window,
                submit_rate=500.0,
                task_query_rate=500.0,
                delivery_concurrency=window,  # final edits wait for their channel's turn
            )
            engine = Engine(db, client, StubFetcher(), port, quota, config)  # type: ignore[arg-type]
            port.attach(discord, engine.expected_seconds)  # type: ignore[arg-type]
            await engine.start()
            try:
                return await _push(engine, jobs, window, sample_every, warmup, task_seconds) | {
                    "discord_posts": discord.posts,
                    "discord_edits": discord.edits,
                }
            finally:
                await engine.stop(grace=5)
                await port.close()
    finally:
        await db.close()
        tracemalloc.stop()


async def _push(
    engine: Engine, jobs: int, window: int, sample_every: int, warmup: int, task_seconds: float
) -> dict[str, Any]:
    started = time.monotonic()
    samples: list[dict[str, float]] = []
    queued = finished = 0
    traced_from = warmup // 2
    marks = sorted({traced_from, warmup, *range(warmup + sample_every, jobs, sample_every), jobs})
    for mark in marks:
        while finished < mark:
            counts = await engine.store.count_by_state()
            finished = sum(counts[state] for state in JobState if state.terminal)
            while queued < mark and queued - finished < window:
                await _queue(engine, queued, task_seconds)
                queued += 1
            await asyncio.sleep(0.05)
        if mark == traced_from:  # from here on, what is allocated and still alive is counted
            tracemalloc.start()
            continue
        await _drain(engine)
        samples.append(_sample(mark, started))
    wall = time.monotonic() - started
    gc.collect()
    largest = [
        {
            "where": _short(str(stat.traceback[0])),
            "kb": round(stat.size / 1024),
            "blocks": stat.count,
        }
        for stat in tracemalloc.take_snapshot().statistics("lineno")[:5]
    ]
    counts = await engine.store.count_by_state()
    heap = slope([(s["jobs"] / 1000, s["heap_kb"]) for s in samples])
    rss = slope([(s["jobs"] / 1000, s["rss_mb"]) for s in samples])
    return {
        "jobs": jobs,
        "job_states": {state.value: n for state, n in counts.items() if n},
        "wall_s": round(wall, 1),
        "jobs_per_second": round(jobs / wall, 1),
        "warmup_jobs": warmup,
        "heap_growth_kb_per_1000_jobs": None if heap is None else round(heap, 2),
        "rss_growth_mb_per_1000_jobs": None if rss is None else round(rss, 2),
        "heap_kb_at_end": samples[-1]["heap_kb"],
        "largest_allocation_sites": largest,  # alive at the end, allocated since traced
        "samples": samples,
        "goals": {
            f"heap_growth_kb_per_1000_jobs<{GOAL_GROWTH_KB:g}": heap is not None
            and heap < GOAL_GROWTH_KB,
        },
    }


def _short(where: str) -> str:
    """A source location, relative to the repository when it is in it."""
    return where.removeprefix(f"{ROOT}/")


async def _queue(engine: Engine, k: int, task_seconds: float) -> None:
    """Accept job `k` and place it, as the launcher does after posting its status message."""
    request = validate(ImageRequest(model=MODEL, prompt=f"long run {k} sim:slow={task_seconds:g}"))
    new = NewJob(request, user_id=1 + k % 50, guild_id=1, channel_id=FIRST_CHANNEL + k)
    job = await engine.submit_job(new, start=False)
    await engine.place(job.id, status_message_id=FIRST_CHANNEL + k, thread_id=None)
