"""`python -m bench cluster`: the store and the bot across two processes on PostgreSQL, with
the single process on SQLite beside them in the same run.

Four parts (`--only` picks some), each on a schema of its own in `--postgres`'s database,
dropped afterwards:

* **quota**: `bench/quota.py`'s members (one server, every limit active, the virtual clock)
  split between `--processes` OS processes (multiprocessing, spawned), each running quota's own
  loops on its half against one PostgreSQL database: the throughput phase, then `--trials`
  runs at `--rate` operations per second offered in all (each process paces its share with its
  own pacing process), every phase started by all processes at one moment. Latencies are those
  of every operation of both processes. Then the race: `--race` reservations of one member,
  half from each process at one moment, against a daily limit of 5 images (n = 1 each): the
  cluster must accept exactly 5. The same phases then run on SQLite in this process, as
  `python -m bench quota` does, at the same rate.
* **ack**: `bench/ack.py`'s burst (`--interactions` `/imagine`s within `--within` seconds)
  against two `python -m bot` processes on PostgreSQL, shards 0 and 1 of 2 (SHARD_COUNT,
  SHARD_IDS), the fake Discord with a guild on each shard and the interactions alternating
  between them; then the same burst and guilds against one `python -m bot` on SQLite.
* **failover**: two `python -m bot worker` processes on PostgreSQL against one simulator, each
  with its health endpoint (HEALTH_PORT). `--kills` times: a job is put in flight, the
  dispatcher is SIGKILLed, and a job is submitted at once (reserved and notified as a standby
  front end does); measured from the kill until the other process's /healthz says
  `role: dispatcher`, and until the new job is done. The killed worker is started again (as a
  standby) before the next kill, so the role goes back and forth. Both jobs of every kill must
  end done.

Goals: cluster throughput ≥ 1,000 ops/s; p99 ≤ 10 ms at 1,000 ops/s offered; the race accepts
exactly 5; acknowledgement p99 ≤ 50 ms and none over 3 s with both bots; every kill taken over
(by the other process) with both jobs done.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import os
import socket
import sys
import tempfile
import time
import traceback
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from bench import ack, quota
from bench.common import KEY, percentile, progress, ratio, rounded
from bot.accounting.quota import Limits, Quota, QuotaExceeded
from bot.dashscope.requests import ImageRequest
from bot.discord_ui.app import freeze_heap
from bot.jobs.model import JobState, NewJob
from bot.jobs.store import JobStore
from bot.runtime.dispatcher import NotifyHandover
from bot.storage.db import Database
from bot.storage.postgres import safe_name

DEFAULT_POSTGRES = "postgresql://root@127.0.0.1:5432/test"
PARTS = ("quota", "ack", "failover")
GOAL_OPS = 1000.0
GOAL_P99_MS = 10.0
GOAL_ACK_P99_MS = 50.0
LEAD = 1.0  # seconds between handing a phase to the processes and its start
RACE_GUILD = 3
RACE_USER = 31_337
RACE_LIMIT = 5
# (id >> 22) % 2 picks the shard of 2: these land on 0 and 1.
GUILD_ON_SHARD = ((2000 << 22) | 5, (2001 << 22) | 5)
# Fail-over jobs: one in flight at the kill (a task of 2 s), one submitted after it (0.2 s);
# different models, so the durations each dispatcher relearns at its start stay apart.
IN_FLIGHT_MODEL, AFTER_MODEL = "wan2.2-t2i-flash", "wan2.6-t2i"
IN_FLIGHT_TASK_S, AFTER_TASK_S = 2.0, 0.2
WAIT_S = 60.0  # the longest any one step of the fail-over may take


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--postgres",
        default=os.environ.get("WANBOT_TEST_POSTGRES", DEFAULT_POSTGRES),
        help="a PostgreSQL database to make (and drop) schemas in",
    )
    parser.add_argument("--only", choices=PARTS, action="append", help="run this part (repeat)")
    parser.add_argument("--processes", type=int, default=2, help="quota: processes")
    parser.add_argument("--members", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=5.0, help="quota: length of each phase")
    parser.add_argument("--rate", type=float, default=GOAL_OPS, help="quota: offered ops/s")
    parser.add_argument("--trials", type=int, default=3, help="quota: runs of the paced phase")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--race", type=int, default=200, help="reservations racing for 5")
    parser.add_argument("--interactions", type=int, default=500)
    parser.add_argument("--within", type=float, default=1.0, help="ack: seconds to inject in")
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument("--kills", type=int, default=10, help="failover: dispatchers killed")


@contextlib.asynccontextmanager
async def schema(url: str) -> AsyncIterator[str]:
    from tests.backends import postgres_schema

    async with postgres_schema(url) as scoped:
        yield scoped


# --- quota: the members in several processes ------------------------------------------------


@dataclass(frozen=True)
class Share:
    """What a member process runs: every `count`-th member from `index`, on `target`, on the
    virtual clock started at `origin`."""

    target: str
    members: int
    seed: int
    index: int
    count: int
    origin: tuple[float, float]


def serve_members(conn: Connection, share: Share) -> None:
    """A member process: its share of the members on the database, running each phase it is
    handed and sending back its tally."""
    asyncio.run(_serve_members(conn, share))


async def _serve_members(conn: Connection, share: Share) -> None:
    clock = quota.VirtualClock(share.origin)
    rig = await quota.build(share.target, share.members, share.seed, clock=clock, configure=False)
    rig.members = rig.members[share.index :: share.count]
    rig.rng.seed(share.seed * 1_000 + share.index)
    freeze_heap()
    try:
        conn.send(("ready", None))
        while True:
            command, *values = await asyncio.to_thread(conn.recv)
            if command == "stop":
                return
            try:
                if command == "throughput":
                    result: Any = await quota.throughput(rig, *values)
                elif command == "at_rate":
                    result = await quota.at_rate(rig, *values)
                else:
                    result = await race(rig, *values)
                conn.send(("ok", result))
            except Exception:
                conn.send(("error", traceback.format_exc()))
    finally:
        await rig.db.close()


async def race(rig: quota.Rig, reservations: int, start_at: float) -> dict[str, int]:
    """`reservations` of one image each for the race's member, all at once from `start_at`."""
    await quota.wait_until(start_at)
    request = ImageRequest(model=quota.MODELS[0], prompt="a race", n=1)

    async def one() -> str:
        try:
            await rig.quota.reserve(
                NewJob(request, user_id=RACE_USER, guild_id=RACE_GUILD, channel_id=5)
            )
        except QuotaExceeded as refusal:
            return refusal.limit
        return "accepted"

    outcomes: dict[str, int] = {}
    for outcome in await asyncio.gather(*(one() for _ in range(reservations))):
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    return outcomes


@dataclass
class MemberProcess:
    process: multiprocessing.process.BaseProcess
    conn: Connection

    async def receive(self) -> Any:
        status, value = await asyncio.to_thread(self.conn.recv)
        if status == "error":
            raise RuntimeError(f"member process {self.process.pid} failed:\n{value}")
        return value


class Members:
    """The member processes, handed each phase together."""

    def __init__(self, processes: list[MemberProcess]) -> None:
        self.processes = processes
        self.loads: list[dict[str, float]] = []  # the machine's, during each phase

    async def all(self, command: str, *values: Any) -> list[Any]:
        start_at = time.perf_counter() + LEAD
        for member in self.processes:
            member.conn.send((command, *values, start_at))
        await quota.wait_until(start_at)
        before = cpu_ticks()
        results = await asyncio.gather(*(m.receive() for m in self.processes))
        self.loads.append(machine_load(before, cpu_ticks()))
        return list(results)

    async def throughput(self, seconds: float) -> quota.Tally:
        return quota.Tally.merge(await self.all("throughput", seconds))

    async def at_rate(self, seconds: float, rate: float) -> quota.Tally:
        share = rate / len(self.processes)
        return quota.Tally.merge(await self.all("at_rate", seconds, share))


@contextlib.asynccontextmanager
async def member_processes(
    target: str, args: argparse.Namespace, origin: tuple[float, float]
) -> AsyncIterator[Members]:
    context = multiprocessing.get_context("spawn")  # no inherited threads, pools or loops
    started: list[MemberProcess] = []
    try:
        for index in range(args.processes):
            ours, theirs = context.Pipe()
            share = Share(target, args.members, args.seed, index, args.processes, origin)
            process = context.Process(
                target=serve_members, args=(theirs, share), name=f"bench-members-{index}"
            )
            process.start()
            theirs.close()
            started.append(MemberProcess(process, ours))
        for member in started:
            await member.receive()  # ready
        yield Members(started)
    finally:
        for member in started:
            with contextlib.suppress(OSError):
                member.conn.send(("stop",))
        for member in started:
            await asyncio.to_thread(member.process.join, 30)
            if member.process.is_alive():
                member.process.kill()
                await asyncio.to_thread(member.process.join)
            member.conn.close()


async def quota_part(args: argparse.Namespace) -> dict[str, Any]:
    async with schema(args.postgres) as target:
        origin = (time.monotonic(), time.time())
        setup = await quota.build(target, args.members, args.seed, clock=quota.VirtualClock(origin))
        try:
            for setting, value in (
                ("images_per_user_day", str(RACE_LIMIT)),
                ("concurrent_jobs_per_user", "0"),
                ("cooldown_seconds", "0"),
            ):
                await setup.quota.policy.set(RACE_GUILD, setting, value, by_user=quota.ADMIN)
            async with member_processes(target, args, origin) as members:
                where = f" (PostgreSQL, {args.processes} processes)"
                cluster = await quota.measure(members.throughput, members.at_rate, args, where)
                cluster["throughput"]["machine"] = members.loads[0]
                light = light_rate(cluster["throughput"]["ops_per_s"])
                progress(f"at rate{where}: {light:g} ops/s for {args.seconds} s")
                cluster["at_light_rate"] = (await members.at_rate(args.seconds, light)).summary()
                cluster["at_light_rate"]["machine"] = members.loads[-1]
                progress(f"race: {args.race} reservations for a limit of {RACE_LIMIT}")
                share = [args.race // args.processes] * args.processes
                share[0] += args.race - sum(share)
                sent = time.perf_counter() + LEAD
                for member, reservations in zip(members.processes, share, strict=True):
                    member.conn.send(("race", reservations, sent))
                outcomes: dict[str, int] = {}
                for result in await asyncio.gather(*(m.receive() for m in members.processes)):
                    for outcome, count in result.items():
                        outcomes[outcome] = outcomes.get(outcome, 0) + count
            row = await setup.db.fetchone(
                "SELECT COUNT(*), COALESCE(SUM(images), 0) FROM ledger"
                " WHERE user_id = ? AND entry = 'reserve'",
                (RACE_USER,),
            )
            cluster["ledger_rows_at_end"] = await quota.ledger_rows(setup.db)
        finally:
            await setup.db.close()
    accepted = outcomes.pop("accepted", 0)
    cluster["race"] = {
        "limit": RACE_LIMIT,
        "reservations": args.race,
        "per_process": share,
        "accepted": accepted,
        "refused": outcomes,
        "ledger_reservations": int(row[0]),
        "ledger_images": int(row[1]),
    }
    single = await quota.on_sqlite(args, " (SQLite, this process)", also_at=light)
    c, s = cluster, single
    return {
        "members": args.members,
        "limits": quota.LIMITS,
        "clock": f"virtual, {quota.CLOCK_SPEED:g}x wall time",
        "cluster": {"processes": args.processes, **cluster},
        "sqlite": single,
        "ratios_cluster_to_sqlite": {
            "throughput_ops_per_s": ratio(
                c["throughput"]["ops_per_s"], s["throughput"]["ops_per_s"]
            ),
            "at_rate_reserve_p99": ratio(
                c["at_rate"]["reserve_ms"]["p99"], s["at_rate"]["reserve_ms"]["p99"]
            ),
            "at_rate_settle_p99": ratio(
                c["at_rate"]["settle_ms"]["p99"], s["at_rate"]["settle_ms"]["p99"]
            ),
            "at_light_rate_reserve_p99": ratio(
                c["at_light_rate"]["reserve_ms"]["p99"], s["at_light_rate"]["reserve_ms"]["p99"]
            ),
            "at_light_rate_settle_p99": ratio(
                c["at_light_rate"]["settle_ms"]["p99"], s["at_light_rate"]["settle_ms"]["p99"]
            ),
        },
    }


def light_rate(throughput: float) -> float:
    """A rate the cluster keeps up with: half its throughput, in tens (at least 20)."""
    return float(max(20, int(throughput / 2 / 10) * 10))


def machine_load(before: dict[str, int], after: dict[str, int]) -> dict[str, float]:
    """How busy the machine's CPUs were between two readings of `cpu_ticks`: every process on
    it, the store's server included, and the time the hypervisor took (steal)."""
    spent = {name: after[name] - before[name] for name in after}
    total = sum(spent.values()) or 1
    return {
        "cpus": float(os.cpu_count() or 0),
        "busy_percent": round(100 * (total - spent["idle"] - spent["iowait"]) / total, 1),
        "steal_percent": round(100 * spent["steal"] / total, 1),
    }


def cpu_ticks() -> dict[str, int]:
    """The machine's CPU time so far by kind (the first line of /proc/stat)."""
    names = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1 : 1 + len(names)]
    return dict(zip(names, (int(value) for value in fields), strict=True))


def quota_goals(args: argparse.Namespace, report: dict[str, Any]) -> dict[str, bool]:
    cluster = report["cluster"]
    paced, saturated, race_result = cluster["at_rate"], cluster["throughput"], cluster["race"]
    return {
        "cluster_over_1000_ops_per_s": saturated["ops_per_s"] >= GOAL_OPS,
        "cluster_p99_under_10ms_at_1000_ops_per_s": args.rate >= GOAL_OPS
        and paced["ops_per_s"] >= 0.95 * GOAL_OPS
        and quota.worst_p99(paced) <= GOAL_P99_MS,
        "race_accepts_exactly_5": race_result["accepted"]
        == race_result["ledger_images"]
        == RACE_LIMIT,
    }


# --- ack: two bots, one shard each -----------------------------------------------------------


async def ack_burst(
    args: argparse.Namespace, shards: int, settings: dict[str, str], folder: Path
) -> dict[str, Any]:
    """The burst against `shards` bots (one shard each when more than one; `settings` over
    each one's environment) in a fake Discord with a guild on each of two shards, the
    interactions alternating between them."""
    from tests.fakediscord import FakeDiscord

    fake = FakeDiscord(shard_count=shards, max_concurrency=shards)
    await fake.start()
    try:
        guilds = [
            fake.create_guild(f"guild {k}", id=guild) for k, guild in enumerate(GUILD_ON_SHARD)
        ]
        users = [fake.create_user(f"member{k}") for k in range(max(1, args.users))]
        for guild in guilds:
            for user in users:
                fake.add_member(guild, user)
        channels = [fake.channel(guild, "general") for guild in guilds]
        senders = [(user, channel) for user in users for channel in channels]
        bots = []
        for index in range(shards):
            own = {"SHARD_COUNT": str(shards), "SHARD_IDS": str(index)} if shards > 1 else {}
            dev_guild = str(guilds[index % len(guilds)].id)
            bots.append(ack.bot_environment(fake, DEV_GUILD_ID=dev_guild, **own, **settings))
        report = await ack.burst(fake, bots, senders, args.interactions, args.within, folder)
        report.pop("goals")  # judged once, for the cluster, in the document's goals
        if shards > 1:
            report["per_shard"] = per_shard(fake, shards)
    finally:
        await fake.stop()
    return report


def per_shard(fake: Any, shards: int) -> dict[str, dict[str, Any]]:
    """Acknowledgement latency of the interactions each shard (process) got."""
    found: dict[str, list[float]] = {}
    for interaction in fake.interactions.values():
        if interaction.ack_latency is None or interaction.channel.guild_id is None:
            continue
        shard = fake.shard_of(interaction.channel.guild_id, shards)
        found.setdefault(str(shard), []).append(interaction.ack_latency * 1000)
    return {
        shard: {
            "acknowledged": len(ms),
            "ack_ms_p50": rounded(percentile(ms, 50), 1),
            "ack_ms_p99": rounded(percentile(ms, 99), 1),
        }
        for shard, ms in sorted(found.items())
    }


async def ack_part(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="wanbot-cluster-ack-") as folder:
        async with schema(args.postgres) as target:
            progress("ack: two bots on PostgreSQL, shards 0 and 1 of 2")
            settings = {"DATABASE_URL": target}
            cluster = await ack_burst(args, 2, settings, Path(folder))
        progress("ack: one bot on SQLite, every shard")
        settings = {"DATABASE_PATH": f"{folder}/wanbot.db"}
        single = await ack_burst(args, 1, settings, Path(folder))
    return {
        "cluster": cluster,
        "sqlite": single,
        "ratios_cluster_to_sqlite": {
            "ack_p50": ratio(cluster["ack_ms_p50"], single["ack_ms_p50"]),
            "ack_p99": ratio(cluster["ack_ms_p99"], single["ack_ms_p99"]),
        },
    }


def ack_goals(report: dict[str, Any]) -> dict[str, bool]:
    cluster = report["cluster"]
    return {
        "cluster_ack_p99_under_50ms": cluster["ack_ms_p99"] is not None
        and cluster["ack_ms_p99"] <= GOAL_ACK_P99_MS,
        "cluster_ack_none_over_3s": cluster["over_3s"] == 0,
    }


# --- failover: SIGKILL the dispatcher ---------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Worker:
    """`python -m bot worker` on the cluster's database, with its /healthz."""

    def __init__(self, name: str, env: dict[str, str], folder: Path) -> None:
        self.name = name
        self.port = free_port()
        self.env = {**env, "HEALTH_PORT": str(self.port)}
        self.folder = folder
        self.log = folder / f"{name}.log"
        self.process: asyncio.subprocess.Process | None = None
        self.exit_codes: list[int | None] = []

    async def start(self) -> None:
        with self.log.open("ab") as log:
            self.process = await asyncio.create_subprocess_exec(
                *(sys.executable, "-m", "bot", "worker", "--out", str(self.folder / "out")),
                env=self.env,
                cwd=self.folder,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=log,
            )

    async def role(self, http: Any) -> str | None:
        """What /healthz says this process is, or None when it does not answer."""
        try:
            answer = await http.get(f"http://127.0.0.1:{self.port}/healthz", timeout=1.0)
        except Exception:  # not listening (yet, or any more)
            return None
        for line in answer.text.splitlines():
            if line.startswith("role: "):
                return str(line.removeprefix("role: "))
        return None

    async def wait_role(self, http: Any, wanted: str) -> None:
        deadline = time.perf_counter() + WAIT_S
        while await self.role(http) != wanted:
            if self.process is not None and self.process.returncode is not None:
                raise RuntimeError(f"{self.name} exited ({self.process.returncode}): {self.tail()}")
            if time.perf_counter() > deadline:
                raise TimeoutError(f"{self.name} did not become the {wanted}: {self.tail()}")
            await asyncio.sleep(0.01)

    async def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.exit_codes.append(await self.process.wait())

    async def stop(self) -> float:
        if self.process is None:
            return 0.0
        seconds = await ack.stop_process(self.process)
        self.exit_codes.append(self.process.returncode)
        return seconds

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""

    def errors(self) -> list[str]:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return [line for line in text.splitlines() if " ERROR " in line or "Traceback" in line]


class Jobs:
    """Jobs put in from outside the workers, as a standby front end puts them: reserved, then
    notified."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.quota = Quota(db, JobStore(db), Limits(0, 0, 0, 0))
        self.handover = NotifyHandover(db)
        self.count = 0

    async def submit(self, model: str, task_seconds: float) -> int:
        self.count += 1
        request = ImageRequest(
            model=model, prompt=f"fail-over {self.count} sim:slow={task_seconds:g}", n=1
        )
        job = await self.quota.reserve(NewJob(request, user_id=1 + self.count, guild_id=1))
        await self.handover.job_queued(job.id)
        return job.id

    async def wait(self, job_id: int, until: Callable[[Any], bool]) -> Any:
        deadline = time.perf_counter() + WAIT_S
        while True:
            row = await self.db.fetchone("SELECT state, task_id FROM jobs WHERE id = ?", (job_id,))
            if row is not None and until(row):
                return row
            if time.perf_counter() > deadline:
                raise TimeoutError(f"job {job_id}: still {row['state'] if row else 'missing'}")
            await asyncio.sleep(0.01)

    async def steps(self, job_id: int, since: float) -> dict[str, float | None]:
        """When the job was submitted, had its result and ended, in seconds from `since`
        (the wall clock the rows keep)."""
        row = await self.db.fetchone(
            "SELECT submitted_at, delivering_at, finished_at FROM jobs WHERE id = ?", (job_id,)
        )
        return {
            step: None if row[column] is None else round(row[column] - since, 3)
            for step, column in (
                ("submitted", "submitted_at"),
                ("result", "delivering_at"),
                ("ended", "finished_at"),
            )
        }

    async def ended(self, job_id: int) -> str:
        row = await self.wait(job_id, lambda r: JobState(r["state"]).terminal)
        return str(row["state"])


async def failover_part(args: argparse.Namespace) -> dict[str, Any]:
    import httpx

    from bot.simulator import SimulatorConfig, start_simulator

    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DASHSCOPE_", "DISCORD_", "DATABASE_", "SHARD_", "HEALTH_"))
    }
    kills: list[dict[str, Any]] = []
    sim = await start_simulator(SimulatorConfig(api_keys={KEY}), "127.0.0.1", 0)
    try:
        with tempfile.TemporaryDirectory(prefix="wanbot-cluster-failover-") as folder:
            async with schema(args.postgres) as target, httpx.AsyncClient() as http:
                env.update(
                    DATABASE_URL=target,
                    DASHSCOPE_API_KEY=KEY,
                    DASHSCOPE_BASE_URL=sim.base_url,
                    LOG_LEVEL=os.environ.get("BENCH_BOT_LOG_LEVEL", "WARNING"),
                )
                workers = [Worker(f"worker{k}", env, Path(folder)) for k in range(2)]
                db = await Database.open(target)
                try:
                    await kill_in_turn(args, http, Jobs(db), workers, kills)
                finally:
                    stop_seconds = [await worker.stop() for worker in workers]
                    await db.close()
            errors = [line for worker in workers for line in worker.errors()]
    finally:
        await sim.stop()
    return {
        "kills": args.kills,
        "takeover_s": summary([k["takeover_s"] for k in kills]),
        "job_after_kill_submitted_s": summary(
            [k["job_after_kill_steps_s"]["submitted"] for k in kills]
        ),
        "job_after_kill_done_s": summary([k["job_done_s"] for k in kills]),
        "task_seconds": {"in_flight_at_kill": IN_FLIGHT_TASK_S, "submitted_after": AFTER_TASK_S},
        "every_kill": kills,
        "workers_stop_s": [round(seconds, 2) for seconds in stop_seconds],
        "workers_exit_codes": {worker.name: worker.exit_codes for worker in workers},
        "worker_errors": errors[:10],
    }


async def kill_in_turn(
    args: argparse.Namespace, http: Any, jobs: Jobs, workers: list[Worker], kills: list[Any]
) -> None:
    """Start the workers, warm the dispatcher up, then kill whichever dispatches, `--kills`
    times, starting the killed one again as a standby each time."""
    for worker in workers:
        await worker.start()
    leader = await first_dispatcher(http, workers)
    follower = workers[1 - workers.index(leader)]
    await follower.wait_role(http, "standby")
    progress("failover: warming up (the durations each new dispatcher relearns)")
    warm = [
        await jobs.submit(model, seconds)
        for model, seconds in ((IN_FLIGHT_MODEL, IN_FLIGHT_TASK_S), (AFTER_MODEL, AFTER_TASK_S))
        for _ in range(3)
    ]
    await asyncio.gather(*(jobs.ended(job) for job in warm))
    for kill in range(1, args.kills + 1):
        progress(f"failover: kill {kill} of {args.kills} ({leader.name})")
        kills.append(await one_kill(http, jobs, leader, follower))
        await leader.start()  # back as a standby
        await leader.wait_role(http, "standby")
        leader, follower = follower, leader


async def first_dispatcher(http: Any, workers: list[Worker]) -> Worker:
    deadline = time.perf_counter() + WAIT_S
    while True:
        for worker in workers:
            if await worker.role(http) == "dispatcher":
                return worker
        if time.perf_counter() > deadline:
            raise TimeoutError("no worker became the dispatcher: " + workers[0].tail())
        await asyncio.sleep(0.05)


async def one_kill(http: Any, jobs: Jobs, leader: Worker, follower: Worker) -> dict[str, Any]:
    """Kill the dispatcher with a job in flight; submit one at once; time the takeover and the
    new job's end; both jobs must end done."""
    in_flight = await jobs.submit(IN_FLIGHT_MODEL, IN_FLIGHT_TASK_S)
    await jobs.wait(in_flight, lambda row: row["task_id"] is not None)
    killed, killed_at = time.perf_counter(), time.time()
    await leader.kill()
    after = await jobs.submit(AFTER_MODEL, AFTER_TASK_S)
    await follower.wait_role(http, "dispatcher")
    took_over = time.perf_counter() - killed
    after_state = await jobs.ended(after)
    done = time.perf_counter() - killed
    return {
        "takeover_s": round(took_over, 3),
        "job_done_s": round(done, 3),
        "job_after_kill": after_state,
        "job_after_kill_steps_s": await jobs.steps(after, killed_at),
        "job_in_flight_at_kill": await jobs.ended(in_flight),
    }


def summary(values: list[float]) -> dict[str, float | None]:
    return {
        "p50": rounded(percentile(values, 50)),
        "p95": rounded(percentile(values, 95)),
        "max": rounded(max(values) if values else None),
    }


def failover_goals(args: argparse.Namespace, report: dict[str, Any]) -> dict[str, bool]:
    kills = report["every_kill"]
    return {
        "every_kill_taken_over_with_its_jobs_done": len(kills) == args.kills
        and all(
            k["job_after_kill"] == JobState.DONE.value
            and k["job_in_flight_at_kill"] == JobState.DONE.value
            for k in kills
        ),
    }


async def _run(args: argparse.Namespace) -> dict[str, Any]:
    parts = args.only or list(PARTS)
    document: dict[str, Any] = {"postgres": safe_name(args.postgres)}
    goals: dict[str, bool] = {}
    if "quota" in parts:
        document["quota"] = await quota_part(args)
        goals.update(quota_goals(args, document["quota"]))
    if "ack" in parts:
        document["ack"] = await ack_part(args)
        goals.update(ack_goals(document["ack"]))
    if "failover" in parts:
        document["failover"] = await failover_part(args)
        goals.update(failover_goals(args, document["failover"]))
    document["goals"] = goals
    return document


def main(args: argparse.Namespace) -> dict[str, Any]:
    return asyncio.run(_run(args))
