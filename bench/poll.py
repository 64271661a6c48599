"""`python -m bench poll`: how the engine watches many tasks, against the official SDK.

N edit tasks (wan2.5-i2i-preview, n=1) against one simulator, at most K of them in flight, with
durations spread evenly over a range in a seeded random order (divided by --speed; set per task
with the `sim:slow=` marker, so both phases see the same durations). Two scenarios (--scenario):

* **burst** (the default): 100 tasks all in flight at once, 10-60 s each;
* **account**: the account's real limits, 40 tasks through 5 slots, 5-25 s each.

Two phases, one after the other, on the same simulator (whose in-flight limit is K):

* **engine**: the job engine in this process (EngineConfig(max_in_flight=K, submit_rate=200,
  task_query_rate=10)); results are handed to a stub fetcher and a null delivery port, so
  only submitting and watching are measured.
* **sdk**: `dashscope.aigc.image_synthesis.AioImageSynthesis.call` once per task, at most K
  calls at once (submit, then the SDK's `wait()`: polls at 0, 1, 2, 4, 6, 8, 12, 16, 20, 25,
  30 … s).

Measured the same way for both:

* queries: the simulator's request counters for `GET /tasks/{id}` and the list `GET /tasks`
  (reset between the phases), both counted as task queries, per finished task;
* notice delay: when the client had the finished task's reading in hand (the engine's
  result handler is entered; the SDK's `call()` returns) minus the task's end time in the
  simulator (exact, not the millisecond wire value);
* peak queries per second: the simulator's highest count of task queries (get, list, cancel)
  in any sliding one-second window.

The engine's own view (the moment the list first showed the task finished, `Tracked.noticed_at`,
minus the wire end_time) is reported too, as `engine.reported_notice_delay_p50/p95`, and the
rest of the notice delay, from that moment to the reading in hand (waiting for a query token
and for the fetches before it), as `engine.fetch_delay_p50/p95`.

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
from dataclasses import dataclass
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
GOAL_NOTICE_P95 = 1.0


@dataclass(frozen=True)
class Scenario:
    tasks: int
    in_flight: int | None  # None: every task at once
    durations: tuple[float, float]  # seconds, before --speed divides them
    goal_queries_per_task: float


SCENARIOS = {
    # Many tasks at once: one list call reports on all of them.
    "burst": Scenario(100, None, (10.0, 60.0), 2.0),
    # The account's real limits: 5 tasks in flight per model (docs/dashscope.md §Rate limits).
    # The floor a 1 s p95 allows: a finish waits for the next list (up to the gap), then
    # about 0.14 s for the fetch (0.1 s of it for a query token after the list's, at 10/s),
    # so the gap can be about 0.87 s. At 5 in flight and 15 s on average, one task finishes
    # every 3 s: 3 / 0.87 = 3.45 lists and one fetch per task, 4.45, plus the run's start and
    # end: 4.58 and 4.63 measured with two orders of the durations. The goal leaves 0.1 for
    # the order.
    "account": Scenario(40, 5, (5.0, 25.0), 4.7),
}


def _range(text: str) -> tuple[float, float]:
    low, sep, high = text.partition("-")
    try:
        values = (float(low), float(high if sep else low))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LOW-HIGH seconds, not {text!r}") from None
    if not 0 < values[0] <= values[1]:
        raise argparse.ArgumentTypeError(f"expected 0 < LOW <= HIGH, not {text!r}")
    return values


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--scenario",
        choices=tuple(SCENARIOS),
        default="burst",
        help="burst: 100 tasks at once, 10-60 s; account: 40 tasks through 5 slots, 5-25 s "
        "(default burst); the options below override its figures",
    )
    parser.add_argument("--tasks", type=int, help="tasks in all")
    parser.add_argument("--in-flight", type=int, help="tasks in flight at once")
    parser.add_argument(
        "--durations", type=_range, metavar="LOW-HIGH", help="task durations, seconds"
    )
    parser.add_argument("--speed", type=float, default=1.0, help="divides the durations")
    parser.add_argument("--seed", type=int, default=7, help="seed for the durations")
    parser.add_argument(
        "--only", choices=("engine", "sdk"), help="run one phase only (for debugging)"
    )


def _durations(tasks: int, bounds: tuple[float, float], speed: float, seed: int) -> list[float]:
    """Durations spread evenly over the range (one in each of `tasks` equal slices, at its middle),
    in a seeded random order: a sample of 40 drawn at random can be seconds off the range's mean,
    and the queries per task move with it."""
    low, high = bounds
    step = (high - low) / tasks
    durations = [round((low + step * (i + 0.5)) / speed, 3) for i in range(tasks)]
    random.Random(seed).shuffle(durations)
    return durations


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


def _peak_in_flight(sim: SimulatorThread) -> int:
    """The most tasks at the simulator at once, from submission to end."""

    def read() -> int:
        moments = []
        for task in sim.sim.store.tasks.values():
            moments.append((task.submitted_at, 1))
            if task.finished_at() is not None:
                moments.append((task.finished_at(), -1))
        peak = current = 0
        for _, step in sorted(moments):  # an end sorts before a start at the same moment
            current += step
            peak = max(peak, current)
        return peak

    return sim.call(read)


def _query_figures(sim: SimulatorThread, finished: int) -> dict[str, Any]:
    """Task queries from the simulator's counters: a list call is a task query too."""
    state = sim.state()
    gets = state["requests"].get("tasks.get", 0)
    lists = state["requests"].get("tasks.list", 0)
    return {
        "task_gets": gets,
        "task_lists": lists,
        "finished_tasks": finished,
        "queries_per_task": round((gets + lists) / finished, 3) if finished else None,
        "peak_qps": state["peak_query_rate"],
        "peak_in_flight": _peak_in_flight(sim),
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


def _deadline(durations: list[float], in_flight: int) -> float:
    """Seconds a phase may take: the durations run `in_flight` at a time, plus room."""
    return sum(durations) / in_flight + max(durations) + 120


async def run_engine(
    sim: SimulatorThread, durations: list[float], in_flight: int, image: str
) -> dict[str, Any]:
    tasks = len(durations)
    seen: dict[str, float] = {}
    reported: list[float] = []
    fetched: list[float] = []
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
                        max_in_flight=in_flight,
                        submit_rate=200.0,
                        task_query_rate=ENGINE_QUERY_RATE,
                    ),
                )
                handler = engine.poller.on_reading

                async def noticed(tracked: Tracked, result: Any) -> None:
                    now = seen.setdefault(tracked.task_id, time.time())
                    if tracked.noticed_at is not None:
                        fetched.append(now - tracked.noticed_at)
                        if result.end_time is not None:
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
                deadline = started + _deadline(durations, in_flight)
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
                    **_query_figures(sim, len(seen)),
                    **_delay_figures(seen, _ended_at(sim, list(seen))),
                    "reported_notice_delay_p50": rounded(percentile(reported, 50)),
                    "reported_notice_delay_p95": rounded(percentile(reported, 95)),
                    "fetch_delay_p50": rounded(percentile(fetched, 50)),
                    "fetch_delay_p95": rounded(percentile(fetched, 95)),
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


async def run_sdk(
    sim: SimulatorThread, durations: list[float], in_flight: int, image: str
) -> dict[str, Any]:
    import dashscope
    from dashscope.aigc.image_synthesis import AioImageSynthesis

    logging.getLogger("dashscope").setLevel(logging.WARNING)
    dashscope.base_http_api_url = sim.base_url  # wait() ignores base_address
    tasks = len(durations)
    seen: dict[str, float] = {}
    outcomes: dict[str, int] = {}
    slots = asyncio.Semaphore(in_flight)  # the account's limit, as the engine keeps it

    async def one(i: int, seconds: float) -> None:
        async with slots:
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
            timeout=_deadline(durations, in_flight),
        )
    finally:
        reporter.cancel()
        from dashscope.api_entities.aio_session import close_shared_aio_session

        await close_shared_aio_session()
    wall = time.monotonic() - started
    return {
        **_query_figures(sim, len(seen)),
        **_delay_figures(seen, _ended_at(sim, list(seen))),
        "outcomes": outcomes,
        "http_429_failures": sum(n for status, n in outcomes.items() if "429" in status),
        "wall_s": round(wall, 1),
    }


def main(args: argparse.Namespace) -> dict[str, Any]:
    scenario = SCENARIOS[args.scenario]
    tasks = args.tasks or scenario.tasks
    in_flight = min(tasks, args.in_flight or scenario.in_flight or tasks)
    bounds = args.durations or scenario.durations
    speed = args.speed
    durations = _durations(tasks, bounds, speed, args.seed)
    image = edit_image_uri()
    config = SimulatorConfig(
        api_keys={KEY},
        seed=args.seed,
        max_in_flight={EDIT_MODEL: in_flight},
        submit_rps={EDIT_MODEL: max(1000, tasks * 10)},
        task_query_qps=100_000,  # never throttle: the SDK aborts wait() on a 429
    )
    document: dict[str, Any] = {
        "scenario": args.scenario,
        "tasks": tasks,
        "in_flight": in_flight,
        "model": EDIT_MODEL,
        "durations_s": {
            "range": list(bounds),
            "min": min(durations),
            "max": max(durations),
            "mean": round(sum(durations) / tasks, 2),
        },
        "speed": speed,
        "engine_config": {
            "max_in_flight": in_flight,
            "submit_rate": 200.0,
            "task_query_rate": ENGINE_QUERY_RATE,
        },
        "account_query_budget_qps": ACCOUNT_QUERY_BUDGET,
        "queries_per_task": "task queries (GET /tasks/{id} and the list GET /tasks) per "
        "finished task",
        "notice_delay": "time the client had the finished reading in hand minus the task's "
        "end time in the simulator, seconds",
    }
    with SimulatorThread(config) as sim:
        if args.only in (None, "engine"):
            progress(
                f"engine phase: {tasks} tasks, {in_flight} in flight, "
                f"durations {min(durations)}-{max(durations)} s"
            )
            document["engine"] = asyncio.run(run_engine(sim, durations, in_flight, image))
            progress(f"engine: {document['engine']}")
            sim.reset()
        if args.only in (None, "sdk"):
            progress(f"sdk phase: {tasks} tasks, {in_flight} calls at once")
            document["sdk"] = asyncio.run(run_sdk(sim, durations, in_flight, image))
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
        per_task = engine["queries_per_task"]
        goal = scenario.goal_queries_per_task
        document["goals"] = {
            f"queries_per_task<={goal:g}": per_task is not None and per_task <= goal,
            f"notice_delay_p95<={GOAL_NOTICE_P95:g}s": p95 is not None and p95 <= GOAL_NOTICE_P95,
            f"peak_qps<={ACCOUNT_QUERY_BUDGET}": engine["peak_qps"] <= ACCOUNT_QUERY_BUDGET,
            "all_delivered": engine["delivered"] + engine["failed"] == tasks
            and engine["failed"] == 0,
        }
    return document
