"""`python -m bench footprint`: memory and CPU of the engine process with 1,000 jobs in flight,
then whether its memory stays flat over a long run of 10,000 jobs (`bench/longrun.py`).

Three processes: a simulator (`python -m bench _simulator`: the simulator with room for every
task at once and submissions fast enough), this one, and the worker (`python -m bench _worker`:
`bot.runtime.worker.run_worker`, the code behind `python -m bot worker`, with MAX_IN_FLIGHT raised past
the settings' cap of 100). This process queues the jobs in the database (half edits with an
input image, half wan2.6-t2i text-to-image; every task runs `--task-seconds` so they all stay in
flight), starts the worker and waits until every job is submitted. After `--settle` seconds it
samples the worker's resident memory (/proc/PID/status VmRSS) and CPU time (/proc/PID/stat
utime+stime) for `--window` seconds. The simulator's query counters give the worker's query rate meanwhile.

The long run (`long_run` in the document; `--only long` runs it alone, `--long-jobs 0` skips it)
pushes `--long-jobs` jobs through the engine and the Discord delivery port in this process,
against a simulator of its own, sampling memory as it goes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from bench import longrun
from bench.common import EDIT_MODEL, KEY, edit_image_uri, progress, rss_mb
from bot.accounting.quota import Limits, Quota
from bot.dashscope import ImageRequest, validate
from bot.jobs.model import NewJob
from bot.jobs.store import JobStore
from bot.storage.db import Database

T2I_MODEL = "wan2.6-t2i"
GOAL_RSS_MB = 150.0
GOAL_CPU_PERCENT = 5.0
ROOT = Path(__file__).resolve().parent.parent
TICKS = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--jobs", type=int, default=1000, help="jobs in flight (default 1000)")
    parser.add_argument("--window", type=float, default=30.0, help="seconds sampled (default 30)")
    parser.add_argument(
        "--settle",
        type=float,
        default=5.0,
        help="seconds between the last submission and the window (default 5)",
    )
    parser.add_argument(
        "--task-seconds", type=float, default=3600.0, help="how long every task runs"
    )
    parser.add_argument("--submit-rate", type=float, default=100.0, help="worker SUBMIT_RATE")
    parser.add_argument(
        "--task-query-rate", type=float, default=10.0, help="worker TASK_QUERY_RATE"
    )
    parser.add_argument("--only", choices=("in-flight", "long"), help="run one part only")
    parser.add_argument(
        "--long-jobs", type=int, default=10_000, help="jobs in the long run (default 10000)"
    )
    parser.add_argument(
        "--long-window", type=int, default=100, help="long-run jobs unfinished at once"
    )
    parser.add_argument(
        "--long-warmup", type=int, default=2_000, help="long-run jobs before the first sample"
    )
    parser.add_argument(
        "--long-sample-every", type=int, default=1_000, help="long-run jobs between samples"
    )
    parser.add_argument(
        "--long-task-seconds", type=float, default=0.2, help="how long a long-run task runs"
    )


def add_simulator_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--max-in-flight", type=int, default=2000)
    parser.add_argument("--submit-rps", type=int, default=1000)
    parser.add_argument("--task-query-qps", type=int, default=20)


def add_worker_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--max-in-flight", type=int, required=True)


# --- the child processes ---------------------------------------------------------------------


def serve_simulator(args: argparse.Namespace) -> int:
    """Serve a simulator on a free port; print its base URL as one JSON line; stop on SIGTERM."""
    from bot.simulator import SimulatorConfig, start_simulator

    async def serve() -> None:
        config = SimulatorConfig(
            api_keys={KEY},
            max_in_flight={EDIT_MODEL: args.max_in_flight, T2I_MODEL: args.max_in_flight},
            submit_rps={EDIT_MODEL: args.submit_rps, T2I_MODEL: args.submit_rps},
            task_query_qps=args.task_query_qps,
        )
        running = await start_simulator(config, "127.0.0.1", 0)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        print(json.dumps({"base_url": running.base_url, "root_url": running.root_url}), flush=True)
        try:
            await stop.wait()
        finally:
            await running.stop()

    asyncio.run(serve())
    return 0


def run_worker_process(args: argparse.Namespace) -> int:
    """`python -m bot worker --out DIR`, but with a MAX_IN_FLIGHT above the settings' cap."""
    from bot.config import load_settings
    from bot.logs import setup_logging
    from bot.runtime.worker import run_worker

    settings = load_settings()
    settings = settings.model_copy(update={"max_in_flight": args.max_in_flight})
    secret = settings.dashscope_api_key.get_secret_value() if settings.dashscope_api_key else ""
    setup_logging(settings.log_level_number, [secret])
    return asyncio.run(run_worker(settings, args.out))


# --- measuring --------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime (fields 14 and 15)


def _counts(db_path: Path) -> dict[str, int]:
    with sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=10) as conn:
        return dict(conn.execute("SELECT state, COUNT(*) FROM jobs GROUP BY state").fetchall())


def _sim_state(root_url: str) -> dict[str, Any]:
    return httpx.get(f"{root_url}/_sim/state", timeout=10).json()


def _sim_queries(state: dict[str, Any]) -> int:
    requests = state["requests"]
    return sum(requests.get(name, 0) for name in ("tasks.get", "tasks.list", "tasks.cancel"))


async def _queue_jobs(db_path: Path, jobs: int, task_seconds: float) -> None:
    db = await Database.open(db_path)
    try:
        quota = Quota(db, JobStore(db), Limits(0, 0, 0, 0))
        image = edit_image_uri()
        for i in range(jobs):
            edit = i % 2 == 0
            request = validate(
                ImageRequest(
                    model=EDIT_MODEL if edit else T2I_MODEL,
                    prompt=f"footprint job {i} sim:slow={task_seconds:g}",
                    n=1 + i % 2,
                    images=(image,) if edit else (),
                )
            )
            await quota.reserve(NewJob(request=request, user_id=1 + i % 50, guild_id=1))
    finally:
        await db.close()


def _read_line(stream: Any, timeout: float) -> str:
    result: list[str] = []
    reader = threading.Thread(target=lambda: result.append(stream.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    if not result or not result[0]:
        raise RuntimeError("the simulator did not report its address")
    return result[0]


def _stop(process: subprocess.Popen[Any], name: str) -> int | None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            return process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            progress(f"{name} did not stop on SIGTERM; killing it")
            process.kill()
            process.wait(timeout=10)
    return process.returncode


def main(args: argparse.Namespace) -> dict[str, Any]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DASHSCOPE_", "DISCORD_", "WANBOT_"))
    }
    env["PYTHONPATH"] = str(ROOT)
    document: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="wanbot-footprint-") as folder:
        if args.only != "long":
            tmp = Path(folder) / "in-flight"
            tmp.mkdir()
            with _simulator(env, tmp, "--max-in-flight", str(2 * args.jobs)) as address:
                document.update(in_flight(args, env, tmp, address))
        if args.only != "in-flight" and args.long_jobs > 0:
            tmp = Path(folder) / "long"
            tmp.mkdir()
            room = ("--max-in-flight", str(2 * args.long_window), "--task-query-qps", "5000")
            with _simulator(env, tmp, *room) as address:
                document["long_run"] = asyncio.run(
                    longrun.run(
                        address["base_url"],
                        tmp / "wanbot.db",
                        jobs=args.long_jobs,
                        window=args.long_window,
                        sample_every=args.long_sample_every,
                        warmup=min(args.long_warmup, args.long_jobs),
                        task_seconds=args.long_task_seconds,
                    )
                )
    return document


@contextlib.contextmanager
def _simulator(env: dict[str, str], tmp: Path, *options: str) -> Iterator[dict[str, str]]:
    """A simulator process (`python -m bench _simulator`); yields its addresses."""
    with (tmp / "simulator.log").open("wb") as log:
        sim = subprocess.Popen(  # noqa: S603 (our own interpreter and module)
            [sys.executable, "-m", "bench", "_simulator", *options],
            env=env,
            cwd=tmp,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
        )
        try:
            address = json.loads(_read_line(sim.stdout, 30))
            progress(f"simulator at {address['base_url']} (pid {sim.pid})")
            yield address
        finally:
            _stop(sim, "the simulator")
            if sim.stdout is not None:
                sim.stdout.close()


def in_flight(
    args: argparse.Namespace, env: dict[str, str], tmp: Path, address: dict[str, str]
) -> dict[str, Any]:
    """The worker with `args.jobs` jobs in flight: its memory and CPU over the window."""
    db_path = tmp / "wanbot.db"
    with contextlib.ExitStack() as logs:
        worker: subprocess.Popen[Any] | None = None
        try:
            started = time.monotonic()
            asyncio.run(_queue_jobs(db_path, args.jobs, args.task_seconds))
            progress(f"{args.jobs} jobs queued in {time.monotonic() - started:.1f} s")
            worker_env = {
                **env,
                "DATABASE_PATH": str(db_path),
                "DASHSCOPE_API_KEY": KEY,
                "DASHSCOPE_BASE_URL": address["base_url"],
                "LOG_LEVEL": "WARNING",
                "SUBMIT_RATE": f"{args.submit_rate:g}",
                "TASK_QUERY_RATE": f"{args.task_query_rate:g}",
            }
            worker_log = tmp / "worker.log"
            worker = subprocess.Popen(  # noqa: S603 (our own interpreter and module)
                [
                    sys.executable,
                    "-m",
                    "bench",
                    "_worker",
                    "--out",
                    str(tmp / "out"),
                    "--max-in-flight",
                    str(args.jobs),
                ],
                env=worker_env,
                cwd=tmp,
                stdout=subprocess.DEVNULL,
                stderr=logs.enter_context(worker_log.open("wb")),
            )
            launched = time.monotonic()
            deadline = launched + 60 + args.jobs / args.submit_rate * 3
            while True:
                if worker.poll() is not None:
                    raise RuntimeError(
                        f"the worker exited ({worker.returncode}): "
                        + worker_log.read_text(errors="replace")[-2000:]
                    )
                counts = _counts(db_path)
                in_flight = counts.get("submitted", 0) + counts.get("running", 0)
                if in_flight >= args.jobs:
                    break
                if time.monotonic() > deadline:
                    raise TimeoutError(f"not all jobs were submitted in time: {counts}")
                time.sleep(0.5)
            submitted_after = time.monotonic() - launched
            progress(f"all {args.jobs} jobs submitted {submitted_after:.1f} s after the start")

            time.sleep(args.settle)  # the last submissions' bookkeeping is not the steady state
            pid = worker.pid
            samples: list[dict[str, float]] = []
            state0 = _sim_state(address["root_url"])
            cpu0, t0 = cpu_seconds(pid), time.monotonic()
            last_cpu, last_t, last_q = cpu0, t0, _sim_queries(state0)
            while (now := time.monotonic()) - t0 < args.window:
                time.sleep(min(5.0, args.window - (now - t0)))
                cpu, t = cpu_seconds(pid), time.monotonic()
                queries = _sim_queries(_sim_state(address["root_url"]))
                sample = {
                    "t": round(t - t0, 1),
                    "rss_mb": round(rss_mb(pid), 1),
                    "cpu_percent": round((cpu - last_cpu) / (t - last_t) * 100, 2),
                    "qps": round((queries - last_q) / (t - last_t), 2),
                }
                samples.append(sample)
                progress(f"sample {sample}")
                last_cpu, last_t, last_q = cpu, t, queries
            cpu1, t1 = cpu_seconds(pid), time.monotonic()
            state1 = _sim_state(address["root_url"])
            counts = _counts(db_path)
            peak_rss = max(s["rss_mb"] for s in samples)
            cpu_percent = (cpu1 - cpu0) / (t1 - t0) * 100
            window_queries = _sim_queries(state1) - _sim_queries(state0)
            requests0, requests1 = state0["requests"], state1["requests"]
            document = {
                "jobs": args.jobs,
                "jobs_in_flight": counts.get("submitted", 0) + counts.get("running", 0),
                "simulator_in_flight": sum(state1["in_flight"].values()),
                "job_states": counts,
                "rss_mb": peak_rss,
                "rss_mb_at_end": samples[-1]["rss_mb"],
                "cpu_percent_of_core": round(cpu_percent, 2),
                "cpu_seconds_in_window": round(cpu1 - cpu0, 3),
                "window_s": round(t1 - t0, 1),
                "settle_s": args.settle,
                "submit_phase_s": round(submitted_after, 1),
                "cpu_seconds_total": round(cpu1, 2),
                "queries_per_second": round(window_queries / (t1 - t0), 2),
                "queries_in_window": {
                    name: requests1.get(name, 0) - requests0.get(name, 0)
                    for name in ("tasks.get", "tasks.list")
                },
                "simulator_throttled": state1["throttled"],
                "worker_config": {
                    "MAX_IN_FLIGHT": args.jobs,
                    "SUBMIT_RATE": args.submit_rate,
                    "TASK_QUERY_RATE": args.task_query_rate,
                },
                "samples": samples,
                "goals": {
                    f"rss_mb<{GOAL_RSS_MB:g}": peak_rss < GOAL_RSS_MB,
                    f"cpu_percent_of_core<{GOAL_CPU_PERCENT:g}": cpu_percent < GOAL_CPU_PERCENT,
                    "all_jobs_in_flight": counts.get("submitted", 0) + counts.get("running", 0)
                    == args.jobs,
                },
            }
            errors = [
                line
                for line in worker_log.read_text(errors="replace").splitlines()
                if " ERROR " in line or "Traceback" in line
            ]
            if errors:
                document["worker_errors"] = errors[:10]
        finally:
            if worker is not None:
                _stop(worker, "the worker")
    return document
