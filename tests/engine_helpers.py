"""Shared pieces for the job-engine tests: a database + simulator + engine rig, a recording
delivery port, bounded waits, and the ledger invariant every scenario must end with."""

from __future__ import annotations

import asyncio
import inspect
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx
import pytest

from bot.accounting.quota import Limits, Quota, micros, month_start, next_month_start
from bot.backoff import Backoff
from bot.dashscope.client import DashScopeClient
from bot.dashscope.requests import ImageRequest
from bot.dispatch import engine as engine_module
from bot.dispatch import poller as poller_module
from bot.dispatch.delivery import DeliveredImage, FileDelivery
from bot.dispatch.engine import Engine, EngineConfig
from bot.jobs.model import TERMINAL, Job, JobState, NewJob
from bot.jobs.store import JobStore
from bot.media.downloads import ResultFetcher
from bot.simulator import RunningSimulator, SimulatorConfig, start_simulator
from bot.storage.db import Database

KEY = "sk-engine-tests-0123456789"
MODEL = "wan2.6-t2i"
LEGACY_MODEL = "wan2.5-t2i-preview"  # the `results` answer shape, which lists failed images
NO_LIMITS = Limits(
    images_per_user_day=0, concurrent_jobs_per_user=0, cooldown_seconds=0, images_per_guild_day=0
)
# Simulated tasks at speed 400 take 0.04-0.1 s; the engine learns "about 0.15 s" before a test,
# so its first poll comes at 0.12 s instead of the cold-start 5 s.
SIM_SPEED = 400.0
TRAINED_SECONDS = 0.15
# The task list every 0.1 s while a task could be finishing (the shortest gap at 20 queries/s;
# direct polling repeats only every second or more, too slow for a quick suite); generous
# budgets. DIRECT polls task by task.
FAST = EngineConfig(
    max_in_flight=5,
    submit_rate=20.0,
    task_query_rate=20.0,
    use_task_list=True,
    notice_target=0.15,
    stop_grace=0.5,
)
DIRECT = replace(FAST, use_task_list=False)


def sim_settings(**overrides: Any) -> SimulatorConfig:
    """A fast simulator whose submission limit is above the engine's (FAST submits 20/s)."""
    values: dict[str, Any] = {
        "api_keys": {KEY},
        "speed": SIM_SPEED,
        "seed": 7,
        "submit_rps": {MODEL: 50},
    }
    return SimulatorConfig(**{**values, **overrides})


class FakeClock:
    """A clock that moves only when told; starts at the real time so relative texts make sense."""

    def __init__(self, start: float | None = None) -> None:
        self.now = time.time() if start is None else start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def image_request(
    prompt: str = "a red fox in the snow", *, n: int = 1, model: str = MODEL
) -> ImageRequest:
    return ImageRequest(model=model, prompt=prompt, n=n)


def new_job(
    prompt: str = "a red fox in the snow",
    *,
    user: int = 1,
    n: int = 1,
    guild: int | None = None,
    sync: bool = False,
    locale: str = "en",
    model: str = MODEL,
) -> NewJob:
    return NewJob(
        image_request(prompt, n=n, model=model),
        user_id=user,
        guild_id=guild,
        sync=sync,
        locale=locale,
    )


async def wait_until(
    predicate: Callable[[], Any], *, timeout: float = 10.0, interval: float = 0.02, what: str = ""
) -> Any:
    """Poll `predicate` (sync or async) until truthy; fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or predicate}")
        await asyncio.sleep(interval)


def train(engine: Engine, seconds: float = TRAINED_SECONDS) -> None:
    for model in (MODEL, LEGACY_MODEL):
        for n in range(1, 5):
            for _ in range(3):
                engine.durations.observe(model, n, seconds)


def shrink_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    """Shrink the engine's and the poller's retry waits 50-fold (a first wait of 2 s → 0.04 s)
    so retry paths run in milliseconds; the rule (`bot.backoff`) is unchanged."""
    for module, name in (
        (engine_module, "SUBMIT_BACKOFF"),
        (engine_module, "DELIVERY_BACKOFF"),
        (poller_module, "QUERY_BACKOFF"),
    ):
        real = getattr(module, name)
        monkeypatch.setattr(module, name, Backoff(real.initial / 50, real.cap / 50))


@dataclass
class Submission:
    at: float  # time.monotonic() when the simulator accepted it
    prompt: str
    task_id: str
    sim_in_flight: int  # PENDING + RUNNING tasks at the simulator right after it


def record_submissions(running: RunningSimulator) -> list[Submission]:
    """Record every task the simulator creates, with its in-flight count at that moment."""
    sim = running.sim
    original = sim.create_task
    seen: list[Submission] = []

    def create_task(*args: Any, **kwargs: Any) -> Any:
        task = original(*args, **kwargs)
        if task.listed:
            counts = sim.store.counts(sim.now(), sim.faults.task_ttl)
            seen.append(
                Submission(
                    time.monotonic(),
                    task.prompt,
                    task.task_id,
                    counts["PENDING"] + counts["RUNNING"],
                )
            )
        return task

    sim.create_task = create_task  # type: ignore[method-assign]
    return seen


Hook = Callable[[Job], Awaitable[None]]


class RecordingPort:
    """A FileDelivery with a record of every call and hooks to fail, block or crash a delivery."""

    def __init__(self, folder: Path) -> None:
        self.files = FileDelivery(folder)
        self.folder = folder
        self.statuses: list[tuple[int, JobState, int | None]] = []
        self.deliver_calls: list[int] = []
        self.delivered: list[int] = []
        self.failures: list[tuple[int, str]] = []
        self.placed_again: list[int] = []
        self.unshown: set[JobState] = set()  # states whose status fails to show (a 5xx)
        self.final_gate: asyncio.Event | None = None  # final statuses wait for it (slow edits)
        self.untold = False  # failure notices fail to show (a 5xx)
        self.place_again_answer: tuple[int | None, int | None] | None = (None, None)
        self.before_deliver: Hook | None = None  # may raise DeliveryError
        self.after_write: Hook | None = None  # runs after the files exist: a crash point

    async def status_changed(self, job: Job, position: int | None = None) -> bool | None:
        if self.final_gate is not None and job.state.terminal:
            await self.final_gate.wait()
        self.statuses.append((job.id, job.state, position))
        return False if job.state in self.unshown else None

    async def place_again(self, job: Job) -> tuple[int | None, int | None] | None:
        self.placed_again.append(job.id)
        return self.place_again_answer

    async def deliver(self, job: Job, images: list[DeliveredImage]) -> list[int | None]:
        self.deliver_calls.append(job.id)
        if self.before_deliver is not None:
            await self.before_deliver(job)
        ids = await self.files.deliver(job, images)
        if self.after_write is not None:
            await self.after_write(job)
        self.delivered.append(job.id)
        return ids

    async def failed(self, job: Job, message: str) -> bool | None:
        self.failures.append((job.id, message))
        if self.untold:
            return False
        await self.files.failed(job, message)
        return None


@dataclass
class Rig:
    db: Database
    store: JobStore
    quota: Quota
    sim: RunningSimulator
    http: httpx.AsyncClient
    client: DashScopeClient
    port: RecordingPort
    out: Path
    engine: Engine
    engines: list[Engine] = field(default_factory=list)

    def make_engine(
        self, config: EngineConfig | None = None, port: Any = None, *, trained: bool = True
    ) -> Engine:
        fetcher = ResultFetcher(self.http, self.sim.base_url)
        engine = Engine(
            self.db, self.client, fetcher, port or self.port, self.quota, config or FAST
        )
        if trained:
            train(engine)
        self.engines.append(engine)
        return engine

    async def job(self, job_id: int) -> Job:
        job = await self.store.get(job_id)
        assert job is not None
        return job

    async def wait_state(self, job_id: int, *states: JobState, timeout: float = 10.0) -> Job:
        async def reached() -> Job | None:
            job = await self.store.get(job_id)
            if job is None or job.state not in states:
                return None
            if job.state is JobState.FAILED:
                # The user is told after the state is committed: wait for the notice too.
                row = await self.db.fetchone("SELECT notified_at FROM jobs WHERE id = ?", (job_id,))
                if row is None or row["notified_at"] is None:
                    return None
            return job

        return await wait_until(reached, timeout=timeout, what=f"job {job_id} in {states}")

    async def wait_idle(self, engine: Engine | None = None, timeout: float = 15.0) -> None:
        await wait_until((engine or self.engine).idle, timeout=timeout, what="engine idle")

    async def ledger(self, job_id: int) -> dict[str, int]:
        rows = await self.db.fetchall(
            "SELECT entry, images FROM ledger WHERE job_id = ?", (job_id,)
        )
        return {row["entry"]: row["images"] for row in rows}

    def manifests(self) -> dict[int, dict[str, Any]]:
        found = {}
        for path in self.out.glob("wanbot-job-*.json"):
            record = json.loads(path.read_text(encoding="utf-8"))
            found[record["job_id"]] = record
        return found

    def failure_log(self) -> list[dict[str, Any]]:
        path = self.out / "failures.log"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]

    def attempts(self) -> list[str]:
        path = self.out / "attempts.log"
        return path.read_text(encoding="utf-8").split() if path.exists() else []


@asynccontextmanager
async def rig(
    tmp_path: Path,
    *,
    sim_config: SimulatorConfig | None = None,
    config: EngineConfig | None = None,
    limits: Limits = NO_LIMITS,
    trained: bool = True,
    start: bool = True,
) -> AsyncIterator[Rig]:
    """A database in tmp_path, an in-loop simulator, and an engine delivering to tmp_path/out.
    On the way out every engine is stopped and the ledger invariant is checked."""
    sim = await start_simulator(sim_config or sim_settings())
    db = await Database.open(tmp_path / "wanbot.db")
    http = httpx.AsyncClient()
    engines: list[Engine] = []
    try:
        store = JobStore(db)
        quota = Quota(db, store, limits)
        client = DashScopeClient(KEY, sim.base_url, http=http)
        out = tmp_path / "out"
        port = RecordingPort(out)
        setup = Rig(db, store, quota, sim, http, client, port, out, None, engines)  # type: ignore[arg-type]
        setup.engine = setup.make_engine(config, trained=trained)
        if start:
            await setup.engine.start()
        yield setup
        for engine in engines:
            await engine.stop(grace=0.5)
        await assert_ledger_balanced(db)
    finally:
        for engine in engines:
            if engine._loops:
                await engine.stop(grace=0.1)
        await http.aclose()
        await db.close()
        await sim.stop()


async def assert_ledger_balanced(db: Database) -> None:
    """For every job: one reservation of n images; a terminal job is settled exactly once with
    reserve = charge + refund, and the charge equals the images actually delivered (result rows
    with a delivered message id); failed and cancelled jobs are charged nothing; an active job
    has neither a charge nor a refund yet."""
    jobs = await db.fetchall("SELECT id, state, n FROM jobs ORDER BY id")
    for job in jobs:
        rows = await db.fetchall(
            "SELECT entry, images FROM ledger WHERE job_id = ? ORDER BY id", (job["id"],)
        )
        entries = [row["entry"] for row in rows]
        images = {row["entry"]: row["images"] for row in rows}
        assert len(entries) == len(set(entries)), (job["id"], entries)
        assert images.get("reserve") == job["n"], (job["id"], images)
        state = JobState(job["state"])
        if state not in TERMINAL:
            assert set(images) == {"reserve"}, (job["id"], state, images)
            continue
        assert set(images) == {"reserve", "charge", "refund"}, (job["id"], state, images)
        assert images["charge"] + images["refund"] == images["reserve"], (job["id"], images)
        row = await db.fetchone(
            "SELECT COUNT(*) AS k FROM results WHERE job_id = ?"
            " AND delivered_message_id IS NOT NULL",
            (job["id"],),
        )
        assert row is not None
        assert images["charge"] == row["k"], (job["id"], state, images, row["k"])
        if state is not JobState.DONE:
            assert images["charge"] == 0, (job["id"], state, images)


async def spent_this_month(db: Database, guild_id: int, now: float) -> float:
    """Money held or charged by a server's jobs reserved in the calendar month (UTC) holding
    `now`, summed from the ledger row by row: what the quota's running total must equal."""
    rows = await db.fetchall(
        "SELECT r.images AS reserved, r.unit_price, c.images AS charged,"
        " c.unit_price AS charged_price FROM ledger r"
        " LEFT JOIN ledger c ON c.job_id = r.job_id AND c.entry = 'charge'"
        " WHERE r.entry = 'reserve' AND r.guild_id = ? AND r.created_at >= ? AND r.created_at < ?",
        (guild_id, month_start(now), next_month_start(now)),
    )
    # A settled job costs what its charge row says (a video's seconds may cost less than it
    # reserved); one in flight, what it reserved.
    return (
        sum(
            row["reserved"] * micros(row["unit_price"])
            if row["charged"] is None
            else row["charged"] * micros(row["charged_price"])
            for row in rows
        )
        / 1_000_000
    )
