"""`python -m bench migrate-db`: how fast `migrate-db` copies a server's history into PostgreSQL,
and how much memory it takes while doing it.

A SQLite history is built through the bot's own code: `--jobs` jobs (default 10,000) from 200
members of 5 servers, reserved with `Quota.reserve` (spread over 30 days, no limits) and ended
as the engine ends them (`Quota.end`): 80 % done (with their results), 10 % failed, 10 %
cancelled. `--edit-share` of them (default 2 %) are edits holding two input images each, as
data URIs of `--input-kb` kilobytes of image bytes (default 384: about 0.5 MB each once base64),
so the inputs weigh about as much as the rest together: the copy must stream them.

The copy itself runs in a child process (`python -m bench _migrate_copy`), exactly as
`python -m bot migrate-db` does (`bot.storage.copy.copy_database`), into a new schema of the
PostgreSQL database at `--to` (default: `WANBOT_TEST_POSTGRES`, else
postgresql://root@127.0.0.1:5432/test), dropped afterwards. Reported: rows and megabytes per
second, and the child's peak resident memory against its memory before copying.

Two speeds, since the input images are megabytes per row and the other rows are small: rows
per second over every table but `job_inputs`, and megabytes of input images per second.
Goals: over 10,000 rows per second, over 20 MB of inputs per second, and the copy's peak memory
growth under 100 MB, whatever the inputs weigh (the whole input set is larger than that).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psycopg

from bench.common import EDIT_MODEL, progress, rss_mb
from bot.accounting.quota import Limits, Quota
from bot.dashscope.models import DEFAULT_PRICES
from bot.dashscope.requests import ImageRequest
from bot.dashscope.results import GeneratedImage, TaskResult, TaskState
from bot.jobs.model import JobState, NewJob
from bot.jobs.store import JobStore
from bot.storage.copy import copy_database
from bot.storage.db import Database, target_secrets

DEFAULT_URL = os.environ.get("WANBOT_TEST_POSTGRES", "postgresql://root@127.0.0.1:5432/test")
MEMBERS, SERVERS = 200, 5
MODELS = ("wan2.6-t2i", "wan2.2-t2i-flash")
BATCH = 200  # reservations at once: they share commits, as a busy bot's do
GOAL_ROWS_PER_S = 10_000
GOAL_INPUT_MB_PER_S = 20
GOAL_MEMORY_MB = 100


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--edit-share", type=float, default=0.02, help="share of edit jobs")
    parser.add_argument("--input-kb", type=int, default=384, help="image bytes per input")
    parser.add_argument("--to", default=DEFAULT_URL, help="PostgreSQL database (a new schema)")
    parser.add_argument("--seed", type=int, default=1)


def add_copy_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source")
    parser.add_argument("target")


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


async def build(path: Path, args: argparse.Namespace) -> int:
    """The history; returns the bytes of input images it holds (as data URIs)."""
    rng = random.Random(args.seed)
    clock = Clock(time.time() - 30 * 86_400)
    step = 30 * 86_400 / max(1, args.jobs)
    db = await Database.open(path)
    store = JobStore(db, clock)
    quota = Quota(db, store, Limits(0, 0, 0, 0), clock, prices=dict(DEFAULT_PRICES))
    inputs = 0
    try:
        for first in range(0, args.jobs, BATCH):
            news = []
            for _ in range(first, min(args.jobs, first + BATCH)):
                images: tuple[str, ...] = ()
                model = rng.choice(MODELS)
                if rng.random() < args.edit_share:
                    model = EDIT_MODEL
                    images = tuple(
                        "data:image/png;base64,"
                        + base64.b64encode(rng.randbytes(args.input_kb * 1024)).decode()
                        for _ in range(2)
                    )
                    inputs += sum(len(uri) for uri in images)
                request = ImageRequest(
                    model=model, prompt="a lighthouse at dusk", n=rng.randint(1, 4), images=images
                )
                news.append(
                    NewJob(
                        request,
                        user_id=1_000 + rng.randrange(MEMBERS),
                        guild_id=500 + rng.randrange(SERVERS),
                        channel_id=900,
                    )
                )
            clock.now += step * len(news)
            jobs = await asyncio.gather(*(quota.reserve(new) for new in news))
            await asyncio.gather(*(_end(db, store, quota, job, rng.random()) for job in jobs))
            if first % 2_000 == 0:
                progress(f"history: {first + len(news)} of {args.jobs} jobs")
    finally:
        await db.close()
    return inputs


async def _end(db: Database, store: JobStore, quota: Quota, job: Any, draw: float) -> None:
    if draw < 0.1:
        await db.write(quota.end, job.id, JobState.CANCELLED, 0)
        return
    if draw < 0.2:
        await db.write(quota.end, job.id, JobState.FAILED, 0, error_code="InternalError")
        return
    result = TaskResult(
        state=TaskState.SUCCEEDED,
        task_id=f"task-{job.id}",
        images=tuple(
            GeneratedImage(f"https://dashscope.example/{job.id}/{i}.png") for i in range(job.n)
        ),
    )

    def finish(conn: Any) -> None:
        store.transition(conn, job.id, JobState.SUBMITTED, task_id=result.task_id)
        store.transition(conn, job.id, JobState.DELIVERING)
        store.save_results(conn, job.id, result, expires_at=job.created_at + 86_400)
        quota.end(conn, job.id, JobState.DONE, job.n)

    await db.write(finish)


def copy_child(args: argparse.Namespace) -> int:
    """In its own process: the copy, as `migrate-db` runs it; one JSON line on stdout."""
    before = rss_mb(os.getpid())
    report = asyncio.run(copy_database(args.source, args.target, progress))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        json.dumps(
            {
                "seconds": report.seconds,
                "table_seconds": report.table_seconds,
                "rows": report.tally.rows,
                "rss_before_mb": before,
                "peak_rss_mb": peak,
            }
        )
    )
    return 0


def main(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="wanbot-bench-migrate-") as folder:
        source = Path(folder) / "wanbot.db"
        started = time.monotonic()
        inputs = asyncio.run(build(source, args))
        progress(f"history built in {time.monotonic() - started:.1f} s")
        schema = f"bench_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(args.to, autocommit=True) as admin:
            admin.execute(f"CREATE SCHEMA {schema}")
        joiner = "&" if "?" in args.to else "?"
        target = f"{args.to}{joiner}options={quote(f'-csearch_path={schema}')}"
        try:
            done = subprocess.run(  # noqa: S603 - this interpreter, our own arguments
                [sys.executable, "-m", "bench", "_migrate_copy", str(source), target],
                capture_output=True,
                text=True,
                check=False,
            )
        finally:
            with psycopg.connect(args.to, autocommit=True) as admin:
                admin.execute(f"DROP SCHEMA {schema} CASCADE")
        if done.returncode != 0:
            stderr = done.stderr
            for secret in target_secrets(args.to):
                stderr = stderr.replace(secret, "[redacted]")
            raise SystemExit(f"the copy failed:\n{stderr}")
        copied = json.loads(done.stdout)
        source_mb = source.stat().st_size / 1e6
    rows = sum(copied["rows"].values())
    seconds = copied["seconds"]
    inputs_seconds = copied["table_seconds"]["job_inputs"]
    other_rows = rows - copied["rows"]["job_inputs"]
    other_seconds = sum(copied["table_seconds"].values()) - inputs_seconds
    growth = copied["peak_rss_mb"] - copied["rss_before_mb"]
    return {
        "benchmark": "migrate-db",
        "jobs": args.jobs,
        "rows": copied["rows"],
        "total_rows": rows,
        "source_mb": round(source_mb, 1),
        "input_images_mb": round(inputs / 1e6, 1),
        "seconds": round(seconds, 2),
        "table_seconds": {name: round(t, 2) for name, t in copied["table_seconds"].items()},
        "rows_per_s": round(rows / seconds),
        "mb_per_s": round(source_mb / seconds, 1),
        "rows_per_s_without_inputs": round(other_rows / other_seconds),
        "input_images_mb_per_s": round(inputs / 1e6 / inputs_seconds, 1),
        "rss_before_mb": round(copied["rss_before_mb"], 1),
        "peak_rss_mb": round(copied["peak_rss_mb"], 1),
        "goals": {
            f"over_{GOAL_ROWS_PER_S}_rows_per_s_without_inputs": (
                other_rows / other_seconds > GOAL_ROWS_PER_S
            ),
            f"inputs_over_{GOAL_INPUT_MB_PER_S}_mb_per_s": (
                inputs / 1e6 / inputs_seconds > GOAL_INPUT_MB_PER_S
            ),
            f"memory_growth_under_{GOAL_MEMORY_MB}_mb": growth < GOAL_MEMORY_MB,
        },
    }
