"""`python -m bot worker` as a subprocess against a simulator thread: it runs the jobs queued in
the database, serves /healthz and /metrics, stops on SIGTERM and resumes on the next start.

The worker starts cold (it has learned no task durations), so it first looks at a task about
5 s after submitting it; these tests are built around that."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx

from bot.accounting.quota import Quota
from bot.jobs.store import JobStore
from bot.simulator import SimulatorThread
from bot.storage.db import Database
from tests.conftest import ROOT, SIM_KEY, run_cli
from tests.engine_helpers import NO_LIMITS, assert_ledger_balanced, new_job

EXIT_BOUND = 10.0  # seconds a stopping worker may take


def queue_jobs(db_path: Path, jobs: list[tuple[str, int]]) -> list[int]:
    """Insert queued jobs (prompt, n) the way the bot would, before any worker runs."""

    async def insert() -> list[int]:
        db = await Database.open(db_path)
        try:
            quota = Quota(db, JobStore(db), NO_LIMITS)
            return [
                (await quota.reserve(new_job(prompt, n=n, user=i))).id
                for i, (prompt, n) in enumerate(jobs)
            ]
        finally:
            await db.close()

    return asyncio.run(insert())


def states(db_path: Path) -> dict[int, str]:
    with sqlite3.connect(db_path) as conn:
        return dict(conn.execute("SELECT id, state FROM jobs ORDER BY id").fetchall())


def check_ledger(db_path: Path) -> None:
    async def check() -> None:
        db = await Database.open(db_path)
        try:
            await assert_ledger_balanced(db)
        finally:
            await db.close()

    asyncio.run(check())


def worker_env(sim: SimulatorThread, db_path: Path, **extra: str) -> dict[str, str]:
    return {
        "DASHSCOPE_API_KEY": SIM_KEY,
        "DASHSCOPE_BASE_URL": sim.base_url,
        "DATABASE_PATH": str(db_path),
        "LOG_LEVEL": "INFO",
        **extra,
    }


def start_worker(
    tmp_path: Path, env: dict[str, str], *args: str, log_name: str = "worker"
) -> subprocess.Popen[bytes]:
    """Like `run_cli`, but in the background; output goes to files, not to a pipe that fills."""
    base = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DASHSCOPE_", "DISCORD_", "WANBOT_"))
    }
    base["PYTHONPATH"] = str(ROOT)
    base.update(env)
    return subprocess.Popen(
        [sys.executable, "-m", "bot", "worker", "--out", str(tmp_path / "out"), *args],
        env=base,
        cwd=tmp_path,
        stdout=(tmp_path / f"{log_name}.out").open("wb"),
        stderr=(tmp_path / f"{log_name}.err").open("wb"),
    )


def stop_worker(process: subprocess.Popen[bytes]) -> int:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        return process.wait(EXIT_BOUND)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5)
        raise


def wait_for(predicate, timeout: float, what: str, process: subprocess.Popen | None = None):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if process is not None and process.poll() is not None:
            raise AssertionError(f"the worker exited ({process.returncode}) before {what}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def manifests(out: Path) -> dict[int, dict]:
    return {
        record["job_id"]: record
        for record in (json.loads(p.read_text()) for p in out.glob("wanbot-job-*.json"))
    }


def test_worker_runs_queued_jobs_serves_health_and_exits_when_idle(
    tmp_path: Path, simulator: SimulatorThread
) -> None:
    db_path = tmp_path / "data" / "wanbot.db"
    ids = queue_jobs(
        db_path,
        [("a fox", 1), ("two owls", 2), ("sim:moderate-output", 1), ("sim:slow=7 late", 1)],
    )
    port = free_port()
    env = worker_env(simulator, db_path, HEALTH_PORT=str(port))
    process = start_worker(tmp_path, env, "--exit-when-idle")
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=2.0) as http:

            def healthz() -> httpx.Response | None:
                try:
                    return http.get("/healthz")
                except httpx.TransportError:
                    return None

            health = wait_for(healthz, 15, "/healthz", process)
            assert (health.status_code, health.text) == (200, "ok\nrole: single\n")

            def metrics_when_three_ended() -> str | None:
                body = http.get("/metrics").text
                ended = ('wanbot_jobs{state="done"} 2', 'wanbot_jobs{state="failed"} 1')
                return body if all(line in body for line in ended) else None

            # The quick jobs end ~5 s in (the moderated one failed, maybe a moment after the
            # two done); the slow one keeps the worker busy a little longer.
            body = wait_for(metrics_when_three_ended, 20, "two jobs done, one failed", process)
            response = http.get("/metrics")
            assert response.headers["content-type"].startswith("text/plain")
        assert "# TYPE wanbot_jobs gauge" in body
        assert re.search(r'^wanbot_jobs\{state="failed"\} 1$', body, re.M)
        assert re.search(r'^wanbot_jobs\{state="queued"\} 0$', body, re.M)
        assert re.search(r'^wanbot_submissions_total\{model="wan2.6-t2i"\} 4$', body, re.M)
        assert "# TYPE wanbot_task_queries_total counter" in body
        assert process.wait(20) == 0
    finally:
        if process.poll() is None:
            stop_worker(process)
    assert states(db_path) == dict(zip(ids, ["done", "done", "failed", "done"], strict=True))
    out = tmp_path / "out"
    assert sorted(manifests(out)) == [ids[0], ids[1], ids[3]]
    assert [len(manifests(out)[i]["files"]) for i in (ids[0], ids[1], ids[3])] == [1, 2, 1]
    failures = [json.loads(line) for line in (out / "failures.log").read_text().splitlines()]
    assert [f["job_id"] for f in failures] == [ids[2]] and failures[0]["message"]
    check_ledger(db_path)


def test_sigterm_stops_the_worker_and_a_restart_finishes_the_jobs(
    tmp_path: Path, simulator: SimulatorThread
) -> None:
    db_path = tmp_path / "wanbot.db"
    ids = queue_jobs(db_path, [("first", 1), ("second", 2), ("third", 1)])
    env = worker_env(simulator, db_path)
    process = start_worker(tmp_path, env, log_name="first-run")
    try:
        wait_for(
            lambda: set(states(db_path).values()) <= {"submitted", "running"},
            15,
            "every job submitted",
            process,
        )
    finally:
        started = time.monotonic()
        code = stop_worker(process)
    assert code == 0
    assert time.monotonic() - started < EXIT_BOUND
    # Cut off mid-flight: the tasks exist at DashScope, nothing is delivered yet.
    assert set(states(db_path).values()) <= {"submitted", "running"}
    assert simulator.state()["submissions"] == 3
    assert not (tmp_path / "out").exists() or not manifests(tmp_path / "out")
    check_ledger(db_path)

    out = str(tmp_path / "out")
    again = run_cli("worker", "--out", out, "--exit-when-idle", env=env, cwd=tmp_path, timeout=40)
    assert again.returncode == 0, again.stderr[-2000:]
    assert states(db_path) == dict.fromkeys(ids, "done")
    assert simulator.state()["submissions"] == 3  # polled by task id, not submitted again
    assert sorted(manifests(tmp_path / "out")) == ids
    check_ledger(db_path)
