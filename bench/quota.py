"""`python -m bench quota`: reservations and settlements per second on the SQLite store.

One server, 50 members (a mix of five roles with overrides, one exempt), every limit active:
images per member per day, jobs in progress, a cooldown, images per server per day, a monthly
budget with per-model prices, max n and role overrides. Each member's job is one reservation
(`Quota.reserve`: the policy with the member's roles, every limit, the budget, the job row and
the ledger row, in one transaction) and, once the job has been submitted, one settlement (the
engine's last transaction: the job to `done` and `Quota.settle` charging what was delivered,
refunding the rest); in between, one untimed UPDATE moves the job to `delivering`. The
database is a file in a temporary folder (WAL, synchronous=NORMAL, as the bot runs it).

Two phases, on the same database:

* **throughput**: the 50 members as fast as they can (each: reserve, submit, settle, repeat):
  the store's capacity in operations (reservations + settlements) per second. Latency here is
  mostly queueing behind the one writer: with 50 members always waiting it is about
  50 / (cycles per second), whatever the store does.
* **at rate**: the same members, open loop, at a fixed offered rate of operations per second
  (default 2,000: 1,000 reservations and 1,000 settlements), each member's jobs evenly spaced
  and handed to the event loop through a pipe by a pacing process when due (as gateway
  messages arrive: input that wakes the loop);
  latency is measured from when each operation was due, so a stall is not hidden (for
  reservations, also from when `reserve` was called: the difference is the event loop's
  lateness in starting it, not the store).

As in the bot, everything alive once set up is frozen out of the garbage collector's reach
(`gc.freeze`), and only jobs in flight are held.

Time in the quota is a virtual clock running 200 times faster than the wall clock, so members
pass their cooldown between jobs (a real member waits seconds; the benchmark does not).
Goals: over 2,000 operations per second, and p99 under 5 ms at 2,000 per second. The machines
this runs on are shared, and one noisy neighbour can triple a 5-second p99, so phase 2 runs
`--trials` times (default 3) on the same database: `at_rate` is the median trial (by its worse
p99), which the goal is judged on, and `at_rate_trials` lists every trial.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.common import percentile, progress, rounded
from bot.accounting.quota import Limits, Quota, QuotaExceeded
from bot.dashscope.models import DEFAULT_PRICES
from bot.dashscope.requests import ImageRequest
from bot.discord_ui.app import freeze_heap
from bot.jobs.model import Job, JobState, NewJob
from bot.jobs.store import JobStore
from bot.storage.db import Database

GUILD = 1
ADMIN = 2
ROLES = (101, 102, 103, 104, 105)
MODELS = ("wan2.6-t2i", "wan2.2-t2i-flash", "wanx2.1-t2i-turbo")
CLOCK_SPEED = 200.0
GOAL_OPS = 2000.0
GOAL_P99_MS = 5.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--members", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each phase")
    parser.add_argument("--rate", type=float, default=GOAL_OPS, help="offered ops/s, phase 2")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--trials", type=int, default=3, help="runs of phase 2; the median one is judged"
    )


class VirtualClock:
    """`CLOCK_SPEED` times the wall clock from `origin` ((monotonic, time) taken together; now
    by default). Processes given one origin keep one time: both clocks are system-wide."""

    def __init__(self, origin: tuple[float, float] | None = None) -> None:
        self.wall, self.base = origin or (time.monotonic(), time.time())

    def __call__(self) -> float:
        return self.base + (time.monotonic() - self.wall) * CLOCK_SPEED


@dataclass
class Tally:
    """One phase's operations: their latencies, refusals, when the phase started and ended
    (`perf_counter`, the same in every process), and the rate offered (None: saturated)."""

    reserve_ms: list[float] = field(default_factory=list)
    reserve_call_ms: list[float] = field(default_factory=list)
    settle_ms: list[float] = field(default_factory=list)
    refused: dict[str, int] = field(default_factory=dict)
    started: float = 0.0
    ended: float = 0.0
    offered: float | None = None

    @classmethod
    def merge(cls, tallies: list[Tally]) -> Tally:
        """One phase run by several processes at once, as one tally."""
        merged = cls(
            started=min(t.started for t in tallies),
            ended=max(t.ended for t in tallies),
            offered=None if tallies[0].offered is None else sum(t.offered or 0 for t in tallies),
        )
        for tally in tallies:
            merged.reserve_ms += tally.reserve_ms
            merged.reserve_call_ms += tally.reserve_call_ms
            merged.settle_ms += tally.settle_ms
            for limit, count in tally.refused.items():
                merged.refused[limit] = merged.refused.get(limit, 0) + count
        return merged

    def summary(self) -> dict[str, Any]:
        seconds = self.ended - self.started
        reserves, settles = len(self.reserve_ms), len(self.settle_ms)
        extra = {} if self.offered is None else {"offered_ops_per_s": self.offered}
        return {
            "seconds": round(seconds, 3),
            "reservations": reserves,
            "accepted": settles,
            "refused": dict(sorted(self.refused.items())),
            "settlements": settles,
            "ops_per_s": round((reserves + settles) / seconds, 1),
            "reservations_per_s": round(reserves / seconds, 1),
            "settlements_per_s": round(settles / seconds, 1),
            "reserve_ms": latency(self.reserve_ms),
            "reserve_from_call_ms": latency(self.reserve_call_ms),
            "settle_ms": latency(self.settle_ms),
            **extra,
        }


def latency(values: list[float]) -> dict[str, float | None]:
    return {
        "p50": rounded(percentile(values, 50)),
        "p99": rounded(percentile(values, 99)),
        "max": rounded(max(values) if values else None),
    }


@dataclass
class Rig:
    db: Database
    store: JobStore
    quota: Quota
    members: list[tuple[int, tuple[int, ...]]]
    rng: random.Random

    async def reserve(self, index: int, tally: Tally, due: float | None = None) -> Job | None:
        user, roles = self.members[index % len(self.members)]
        request = ImageRequest(
            model=self.rng.choice(MODELS), prompt="a lighthouse", n=self.rng.randint(1, 4)
        )
        called = time.perf_counter()
        started = called if due is None else due
        try:
            job = await self.quota.reserve(
                NewJob(request, user_id=user, guild_id=GUILD, channel_id=5, role_ids=roles)
            )
        except QuotaExceeded as refusal:
            tally.refused[refusal.limit] = tally.refused.get(refusal.limit, 0) + 1
            job = None
        ended = time.perf_counter()
        tally.reserve_ms.append((ended - started) * 1000)
        tally.reserve_call_ms.append((ended - called) * 1000)
        return job

    async def submit(self, job: Job) -> None:
        """What happens between the two (DashScope drew it, the images came back), as one
        statement: the engine's steps there are not what this benchmark measures."""
        await self.db.write(
            lambda raw: raw.execute(
                "UPDATE jobs SET state = 'delivering', task_id = ? WHERE id = ?",
                (f"t{job.id}", job.id),
            )
        )

    async def settle(self, job: Job, tally: Tally, due: float | None = None) -> None:
        delivered = job.n if self.rng.random() < 0.8 else self.rng.randint(0, job.n - 1)
        started = time.perf_counter() if due is None else due
        await self.db.write(self.quota.end, job.id, JobState.DONE, delivered)
        tally.settle_ms.append((time.perf_counter() - started) * 1000)


async def build(
    target: str | Path,
    members: int,
    seed: int,
    *,
    clock: VirtualClock | None = None,
    configure: bool = True,
) -> Rig:
    """The rig on a database (a SQLite path or a PostgreSQL URL); `configure` writes the
    server's settings (once per database: the other processes of a cluster only open it)."""
    db = await Database.open(target)
    clock = clock or VirtualClock()
    store = JobStore(db, clock=clock)
    limits = Limits(
        images_per_user_day=100_000,
        concurrent_jobs_per_user=3,
        cooldown_seconds=1,
        images_per_guild_day=1_000_000,
    )
    quota = Quota(db, store, limits, clock, prices=dict(DEFAULT_PRICES))
    if configure:
        await configure_server(quota)
    rng = random.Random(seed)
    people = [(10_000 + k, tuple(rng.sample(ROLES[:4], rng.randint(0, 3)))) for k in range(members)]
    people[-1] = (people[-1][0], (ROLES[4],))  # one exempt member
    return Rig(db, store, quota, people, rng)


async def configure_server(quota: Quota) -> None:
    policy = quota.policy
    for setting, value in (
        ("monthly_budget", "10000000"),
        ("max_n", "4"),
        ("images_per_user_day", "50000"),
        ("allowed_models", ",".join(MODELS)),
    ):
        await policy.set(GUILD, setting, value, by_user=ADMIN)
    overrides = [
        (ROLES[0], "images_per_user_day", "100000"),
        (ROLES[1], "images_per_user_day", "80000"),
        (ROLES[1], "cooldown_seconds", "0"),
        (ROLES[2], "concurrent_jobs_per_user", "4"),
        (ROLES[3], "max_n", "4"),
        (ROLES[4], "exempt", "yes"),
    ]
    for role, setting, value in overrides:
        await policy.set(GUILD, setting, value, by_user=ADMIN, role_id=role)


async def wait_until(moment: float | None) -> None:
    """Sleep until `perf_counter()` reaches `moment` (None: go at once): processes given one
    moment start a phase together."""
    if moment is not None and (wait := moment - time.perf_counter()) > 0:
        await asyncio.sleep(wait)


async def throughput(rig: Rig, seconds: float, start_at: float | None = None) -> Tally:
    await wait_until(start_at)
    tally = Tally()
    stop = time.perf_counter() + seconds

    async def member(index: int) -> None:
        while time.perf_counter() < stop:
            job = await rig.reserve(index, tally)
            if job is not None:
                await rig.submit(job)
                await rig.settle(job, tally)
            else:
                await asyncio.sleep(0.001)

    tally.started = time.perf_counter()
    await asyncio.gather(*(member(k) for k in range(len(rig.members))))
    tally.ended = time.perf_counter()
    return tally


# The pacing process: writes one byte to a pipe when each job is due.
_PACER = """
import os, sys, time
started, per_second, count, fd = float(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
for index in range(count):
    wait = started + index / per_second - time.perf_counter()
    if wait > 0:
        time.sleep(wait)
    os.write(fd, b".")
"""


async def at_rate(rig: Rig, seconds: float, rate: float, start_at: float | None = None) -> Tally:
    """Open loop: job k is due at k / (rate / 2) s (each job is two operations) from
    `start_at` (default: half a second from now); its settlement is due as soon as it was
    submitted.

    Requests reach the event loop as the bot's do, as input on a file descriptor: a pacing
    process writes a byte to a pipe when each job is due, and the loop wakes to read it as it
    wakes for a gateway message. (An `asyncio.sleep` pacer would add the loop's timer
    granularity, up to ~1 ms per wake-up, to every latency measured from the due time; a pacing
    thread would compete for the GIL as no gateway message does.) `perf_counter` is the
    system's monotonic clock, the same in both processes."""
    tally = Tally(offered=rate)
    jobs_per_s = rate / 2
    count = int(seconds * jobs_per_s)
    loop = asyncio.get_running_loop()
    running: set[asyncio.Task[None]] = set()  # only jobs in flight, as the bot holds them
    handed_over = asyncio.Event()
    launched = 0

    async def one(index: int, due: float) -> None:
        job = await rig.reserve(index, tally, due)
        if job is not None:
            await rig.submit(job)
            await rig.settle(job, tally, time.perf_counter())

    def arrived() -> None:
        nonlocal launched
        try:
            data = os.read(reading, 4096)
        except BlockingIOError:
            return
        if not data:
            loop.remove_reader(reading)
            handed_over.set()
            return
        for _ in data:
            task = loop.create_task(one(launched, started + launched / jobs_per_s))
            running.add(task)
            task.add_done_callback(running.discard)
            launched += 1

    reading, writing = os.pipe()
    os.set_blocking(reading, False)
    # The pacer's start-up is not part of the run.
    started = time.perf_counter() + 0.5 if start_at is None else start_at
    pacer = await asyncio.create_subprocess_exec(
        *(sys.executable, "-c", _PACER, repr(started), repr(jobs_per_s), str(count), str(writing)),
        pass_fds=(writing,),
    )
    os.close(writing)
    loop.add_reader(reading, arrived)
    try:
        await handed_over.wait()
        while running:
            await asyncio.gather(*running)
    finally:
        loop.remove_reader(reading)
        os.close(reading)
        await pacer.wait()
    if pacer.returncode != 0 or launched != count:
        raise RuntimeError(f"the pacing process failed: {launched} of {count} jobs handed over")
    tally.started, tally.ended = started, time.perf_counter()
    return tally


async def measure(
    saturate: Callable[[float], Awaitable[Tally]],
    pace: Callable[[float, float], Awaitable[Tally]],
    args: argparse.Namespace,
    where: str = "",
) -> dict[str, Any]:
    """Both phases on one store (`saturate(seconds)`, then `--trials` runs of
    `pace(seconds, rate)`): the throughput, the median paced trial (by its worse p99) and
    every trial."""
    progress(f"throughput{where}: {args.members} members for {args.seconds} s")
    saturated = (await saturate(args.seconds)).summary()
    trials = []
    for trial in range(1, max(1, args.trials) + 1):
        progress(f"at rate{where}: {args.rate:g} ops/s for {args.seconds} s (trial {trial})")
        trials.append((await pace(args.seconds, args.rate)).summary())
    return {
        "throughput": saturated,
        "at_rate": sorted(trials, key=worst_p99)[len(trials) // 2],
        "at_rate_trials": [
            {
                "ops_per_s": t["ops_per_s"],
                "reserve_p50_ms": t["reserve_ms"]["p50"],
                "reserve_p99_ms": t["reserve_ms"]["p99"],
                "settle_p99_ms": t["settle_ms"]["p99"],
                "max_ms": max(t["reserve_ms"]["max"] or 0, t["settle_ms"]["max"] or 0),
            }
            for t in trials
        ],
    }


async def ledger_rows(db: Database) -> int:
    row = await db.fetchone("SELECT COUNT(*) AS k FROM ledger")
    return int(row["k"]) if row else 0


LIMITS = (
    "images/member/day, jobs in progress, 1 s cooldown, images/server/day, "
    "monthly budget with prices, allowed models, max n; 5 roles with overrides, 1 exempt"
)


async def on_sqlite(
    args: argparse.Namespace, where: str = "", also_at: float | None = None
) -> dict[str, Any]:
    """Both phases on a SQLite file in a temporary folder, from this process, and the ledger's
    rows at the end; with `also_at`, one more paced run at that rate (`at_light_rate`)."""
    with tempfile.TemporaryDirectory(prefix="wanbot-quota-") as folder:
        rig = await build(Path(folder) / "wanbot.db", args.members, args.seed)
        freeze_heap()  # as the bot does once started
        try:
            phases = await measure(
                lambda seconds: throughput(rig, seconds),
                lambda seconds, rate: at_rate(rig, seconds, rate),
                args,
                where,
            )
            if also_at is not None:
                progress(f"at rate{where}: {also_at:g} ops/s for {args.seconds} s")
                phases["at_light_rate"] = (await at_rate(rig, args.seconds, also_at)).summary()
            return {"ledger_rows_at_end": await ledger_rows(rig.db), **phases}
        finally:
            await rig.db.close()


async def _run(args: argparse.Namespace) -> dict[str, Any]:
    phases = await on_sqlite(args)
    saturated, paced = phases["throughput"], phases["at_rate"]
    return {
        "members": args.members,
        "limits": LIMITS,
        "clock": f"virtual, {CLOCK_SPEED:g}x wall time",
        **phases,
        "goals": {
            "over_2000_ops_per_s": saturated["ops_per_s"] > GOAL_OPS,
            "p99_under_5ms_at_2000_ops_per_s": args.rate >= GOAL_OPS
            and paced["ops_per_s"] >= 0.95 * GOAL_OPS
            and worst_p99(paced) < GOAL_P99_MS,
        },
    }


def worst_p99(summary: dict[str, Any]) -> float:
    values = [summary["reserve_ms"]["p99"], summary["settle_ms"]["p99"]]
    return max(v if v is not None else float("inf") for v in values)


def main(args: argparse.Namespace) -> dict[str, Any]:
    return asyncio.run(_run(args))
