"""`python -m bench poll`: how the engine watches many tasks, against the official SDK.

N concurrent edit tasks (wan2.5-i2i-preview, n=1) against one simulator, with durations spread
uniformly over 10-60 s (divided by --speed; set per task with the `sim:slow=` marker, so both
phases see the same durations). Two phases, one after the other, on the same simulator:

* **engine**: the job engine in this process (EngineConfig(max_in_flight=N, submit_rate=200,
  task_query_rate=10)); results are handed to a stub fetcher and a null delivery port, so
  only submitting and watching are measured.
* **sdk**: `dashscope.aigc.image_synthesis.AioImageSynthesis.call` once per task, all at once
  (submit, then the SDK's `wait()`: polls at 0, 1, 2, 4, 6, 8, 12, 16, 20, 25, 30 … s).

Measured the same way for both:

* queries: the simulator's request counters for `GET /tasks/{id}` and `GET /tasks` (reset
  between the phases), per task;
* notice delay: when the client had the finished task's reading in hand (the engine's
  result handler is entered; the SDK's `call()` returns) minus the task's end time in the
  simulator (exact, not the millisecond wire value);
* peak queries per second: the simulator's highest count of task queries (get, list, cancel)
  in any sliding one-second window.

The engine's own view (the moment the list first showed the task finished, `Tracked.noticed_at`,
minus the wire end_time) is reported too, as `engine.reported_notice_delay_p50/p95`.

The simulator does not throttle task queries here (task_query_qps is set far above any
client's rate), because the SDK's `wait()` gives up on the first 429; `peak_qps` shows how far
each client would go past the account's budget of 20 queries per second.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import random
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench.common import (
    EDIT_MODEL,
    KEY,
    NullDelivery,
    StubFetcher,
    edit_image_uri,
    percentile,
    progress,
    ratio,
    rounded,
)
from bot.accounting.quota import Limits, Quota
from bot.dashscope import DashScopeClient, ImageRequest, validate
from bot.dispatch.engine import Engine, EngineConfig
from bot.dispatch.poller import Tracked
from bot.jobs.model import NewJob
from bot.jobs.store import JobStore
from bot.simulator import SimulatorConfig, SimulatorThread
from bot.storage.db import Database

ACCOUNT_QUERY_BUDGET = 20  # task queries per second per account (docs/dashscope.md §Rate limits)
ENGINE_QUERY_RATE = 10.0
GOAL_QUERIES_PER_TASK = 2.0
GOAL_NOTICE_P95 = 1.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tasks", type=int, default=100, help="concurrent tasks (default 100)")
    parser.add_argument(
        "--speed", type=float, default=1.0, help="divides the 10-60 s durations (default 1)"
    )
    parser.add_argument("--seed", type=int, default=7, help="seed for the durations")
    parser.add_argument(
        "--only", choices=("engine", "sdk"), help="run one phase only (for debugging)"
    )


def _durations(tasks: int, speed: float, seed: int) -> list[float]:
    rng = random.Random(seed)
    return [round(rng.uniform(10.0, 60.0) / speed, 3) for _ in range(tasks)]


def _prompt(i: int, seconds: float) -> str:
    return f"bench edit {i}: make the sky orange sim:slow={seconds}"


def _ended_at(sim: SimulatorThread, task_ids: list[str]) -> dict[str, float]:
    def read() -> dict[str, float]:
        out = {}
        for task_id in task_ids:
            task = sim.sim.store.tasks.get(task_id)
            if task is not None and task.ended_at is not None:
                out[task_id] = task.ended_at
        return out

    return sim.call(read)


def _query_figures(sim: SimulatorThread, tasks: int) -> dict[str, Any]:
    state = sim.state()
    gets = state["requests"].get("tasks.get", 0)
    lists = state["requests"].get("tasks.list", 0)
    return {
        "task_gets": gets,
        "task_lists": lists,
        "queries_per_task": round((gets + lists) / tasks, 3),
        "peak_qps": state["peak_query_rate"],
        "throttled": state["throttled"],
        "submissions": state["submissions"],
    }


def _delay_figures(seen: dict[str, float], ended: dict[str, float]) -> dict[str, Any]:
    delays = [seen[task_id] - ended[task_id] for task_id in seen if task_id in ended]
    return {
        "notice_delay_p50": rounded(percentile(delays, 50)),
        "notice_delay_p95": rounded(percentile(delays, 95)),
        "notice_delay_max": rounded(max(delays) if delays else None),
        "measured_tasks": len(delays),
    }


async def run_engine(sim: SimulatorThread, durations: list[float], image: str) -> dict[str, Any]:
    tasks = len(durations)
    seen: dict[str, float] = {}
    reported: list[float] = []
    with tempfile.TemporaryDirectory(prefix="wanbot-bench-") as folder:
        db = await Database.open(Path(folder) / "bench.db")
        try:
            async with httpx.AsyncClient(follow_redirects=False) as http:
                client = DashScopeClient(KEY, sim.base_url, http=http)
                quota = Quota(db, JobStore(db), Limits(0, 0, 0, 0))
                port = NullDelivery()
                engine = Engine(
                    db,
                    client,
                    StubFetcher(),  # type: ignore[arg-type]
                    port,
                    quota,
                    EngineConfig(
                        max_in_flight=tasks, submit_rate=200.0, task_query_rate=ENGINE_QUERY_RATE
                    ),
                )
                handler = engine.poller.on_reading

                async def noticed(tracked: Tracked, result: Any) -> None:
                    seen.setdefault(tracked.task_id, time.time())
                    if result.end_time is not None and tracked.noticed_at is not None:
                        reported.append(tracked.noticed_at - result.end_time.timestamp())
                    await handler(tracked, result)

                engine.poller.on_reading = noticed
                await engine.start()
                started = time.monotonic()
                for i, seconds in enumerate(durations):
                    request = validate(
                        ImageRequest(
                            model=EDIT_MODEL, prompt=_prompt(i, seconds), n=1, images=(image,)
                        )
                    )
                    await engine.submit_job(NewJob(request=request, user_id=1 + i % 10))
                progress(f"engine: {tasks} jobs queued")
                deadline = started + max(durations) + 120
                last_report = started
                while not await engine.idle():
                    if time.monotonic() > deadline:
                        raise TimeoutError("the engine did not finish in time")
                    if time.monotonic() - last_report >= 10:
                        last_report = time.monotonic()
                        progress(f"engine: {len(seen)}/{tasks} tasks finished and noticed")
                    await asyncio.sleep(0.2)
                wall = time.monotonic() - started
                await engine.stop()
                figures = {
                    **_query_figures(sim, tasks),
                    **_delay_figures(seen, _ended_at(sim, list(seen))),
                    "reported_notice_delay_p50": rounded(percentile(reported, 50)),
                    "reported_notice_delay_p95": rounded(percentile(reported, 95)),
                    "metric_task_queries": {
                        kind: engine.metrics.value("wanbot_task_queries_total", kind=kind)
                        for kind in ("get", "list")
                    },
                    "delivered": len(port.delivered),
                    "failed": len(port.failures),
                    "wall_s": round(wall, 1),
                }
        finally:
            await db.close()
    return figures


async def run_sdk(sim: SimulatorThread, durations: list[float], image: str) -> dict[str, Any]:
    import dashscope
    from dashscope.aigc.image_synthesis import AioImageSynthesis

    logging.getLogger("dashscope").setLevel(logging.WARNING)
    dashscope.base_http_api_url = sim.base_url  # wait() ignores base_address
    tasks = len(durations)
    seen: dict[str, float] = {}
    outcomes: dict[str, int] = {}

    async def one(i: int, seconds: float) -> None:
        response = await AioImageSynthesis.call(
            model=EDIT_MODEL, prompt=_prompt(i, seconds), images=[image], api_key=KEY, n=1
        )
        returned = time.time()
        output = response.output
        status = (
            str(output.task_status)
            if response.status_code == 200 and output is not None
            else f"HTTP {response.status_code} {response.code}"
        )
        outcomes[status] = outcomes.get(status, 0) + 1
        if response.status_code == 200 and output is not None and output.task_id:
            seen[output.task_id] = returned

    started = time.monotonic()

    async def report() -> None:
        while True:
            await asyncio.sleep(10)
            progress(f"sdk: {len(seen)}/{tasks} calls returned")

    reporter = asyncio.create_task(report())
    try:
        await asyncio.wait_for(
            asyncio.gather(*(one(i, s) for i, s in enumerate(durations))),
            timeout=max(durations) + 120,
        )
    finally:
        reporter.cancel()
        from dashscope.api_entities.aio_session import close_shared_aio_session

        await close_shared_aio_session()
    wall = time.monotonic() - started
    return {
        **_query_figures(sim, tasks),
        **_delay_figures(seen, _ended_at(sim, list(seen))),
        "outcomes": outcomes,
        "http_429_failures": sum(n for status, n in outcomes.items() if "429" in status),
        "wall_s": round(wall, 1),
    }


def main(args: argparse.Namespace) -> dict[str, Any]:
    tasks, speed = args.tasks, args.speed
    durations = _durations(tasks, speed, args.seed)
    image = edit_image_uri()
    config = SimulatorConfig(
        api_keys={KEY},
        seed=args.seed,
        max_in_flight={EDIT_MODEL: max(100, tasks)},
        submit_rps={EDIT_MODEL: max(1000, tasks * 10)},
        task_query_qps=100_000,  # never throttle: the SDK aborts wait() on a 429
    )
    document: dict[str, Any] = {
        "tasks": tasks,
        "model": EDIT_MODEL,
        "durations_s": {
            "min": min(durations),
            "max": max(durations),
            "mean": round(sum(durations) / tasks, 2),
        },
        "speed": speed,
        "engine_config": {
            "max_in_flight": tasks,
            "submit_rate": 200.0,
            "task_query_rate": ENGINE_QUERY_RATE,
        },
        "account_query_budget_qps": ACCOUNT_QUERY_BUDGET,
        "notice_delay": "time the client had the finished reading in hand minus the task's "
        "end time in the simulator, seconds",
    }
    with SimulatorThread(config) as sim:
        if args.only in (None, "engine"):
            progress(f"engine phase: {tasks} tasks, durations {min(durations)}-{max(durations)} s")
            document["engine"] = asyncio.run(run_engine(sim, durations, image))
            progress(f"engine: {document['engine']}")
            sim.reset()
        if args.only in (None, "sdk"):
            progress(f"sdk phase: {tasks} tasks")
            document["sdk"] = asyncio.run(run_sdk(sim, durations, image))
            progress(f"sdk: {document['sdk']}")
    engine, sdk = document.get("engine"), document.get("sdk")
    if engine and sdk:
        document["ratios"] = {
            key: ratio(engine[key], sdk[key])
            for key in (
                "queries_per_task",
                "notice_delay_p50",
                "notice_delay_p95",
                "peak_qps",
                "wall_s",
            )
        }
    if engine:
        p95 = engine["notice_delay_p95"]
        document["goals"] = {
            f"queries_per_task<={GOAL_QUERIES_PER_TASK:g}": engine["queries_per_task"]
            <= GOAL_QUERIES_PER_TASK,
            f"notice_delay_p95<={GOAL_NOTICE_P95:g}s": p95 is not None and p95 <= GOAL_NOTICE_P95,
            f"peak_qps<={ACCOUNT_QUERY_BUDGET}": engine["peak_qps"] <= ACCOUNT_QUERY_BUDGET,
            "all_delivered": engine["delivered"] + engine["failed"] == tasks
            and engine["failed"] == 0,
        }
    return document
