"""Crash soak, end to end: the real bot process SIGKILLed at random moments under load.

The fake Discord and the DashScope simulator run in this process; the bot runs as
`python -m bot`. Members send jobs of every kind (see `tests.soak`) while the bot is killed
with SIGKILL at least `scale(quick=20, full=40)` times and restarted, until there are at least
`scale(quick=200, full=400)` jobs; a final run lets every job end and is stopped with SIGTERM.

Then every job must have ended in exactly one way: delivered once (each image posted in
exactly one Discord message, charged = images posted), or failed with a message in words and
a full refund, or cancelled and refunded. Nothing lost, nothing posted twice, the ledger
balanced. DashScope tasks orphaned by a kill between the submission and its commit are
counted apart (the job is submitted again; the user is charged and served once).

`SOAK_SEED=N` repeats a run's choices (the kill moments still fall on a live process, so the
timing differs a little). The seed and the figures are printed and are part of every assertion
message. `SOAK_JOBS` and `SOAK_KILLS` override the sizes (for a short run while debugging).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import time
from pathlib import Path

import pytest

from bot.simulator import SimulatorConfig, SimulatorThread
from tests.fakediscord import FakeDiscord
from tests.figures import record, scale
from tests.soak import (
    SIM_KEY,
    BotProcess,
    Members,
    Rounds,
    SoakPlan,
    audit,
    bot_environment,
    check_audit,
    final_run,
    gateway_audit,
    kill_loop,
    simulator_tasks,
)

pytestmark = pytest.mark.slow


async def test_crash_soak_end_to_end(tmp_path: Path) -> None:
    seed = int(os.environ.get("SOAK_SEED") or random.randrange(2**32))
    rng = random.Random(seed)
    print(f"\nsoak seed: {seed} (SOAK_SEED={seed} repeats it)")
    plan = SoakPlan(
        jobs=int(os.environ.get("SOAK_JOBS") or scale(quick=200, full=400)),
        kills=int(os.environ.get("SOAK_KILLS") or scale(quick=20, full=40)),
    )
    db_path = tmp_path / "wanbot.db"
    logs = tmp_path / "logs"
    logs.mkdir()
    began = time.monotonic()
    rounds = Rounds()

    config = SimulatorConfig(api_keys={SIM_KEY}, speed=plan.speed, seed=seed % 2**31)
    async with FakeDiscord() as fake:
        world = fake.standard_world()
        with SimulatorThread(config) as sim:
            bot = BotProcess(bot_environment(fake, sim, db_path), tmp_path, logs)
            members = Members(fake, world, rng)
            await members.post_pictures()
            stop = asyncio.Event()
            load = asyncio.create_task(members.run(plan, stop), name="members")
            try:
                await kill_loop(fake, bot, db_path, plan, rng, rounds, members)
                stop.set()
                await load
                await members.drain()
                await final_run(fake, bot, db_path, plan, rounds)
            finally:
                stop.set()
                if bot.alive:
                    await bot.kill()
                if not load.done():
                    load.cancel()
            tasks = simulator_tasks(sim)
            sim_state = sim.state()
        result = audit(fake, world, members, db_path, tasks)
        gateway, gateway_problems = gateway_audit(fake)

    figures = {
        "seed": seed,
        "kills": rounds.kills,
        "kills_before_ready": rounds.kills_before_ready,
        "restarts": rounds.starts - 1,
        "active_jobs_at_kills_summed": dict(rounds.active_at_kills),
        **result.figures,
        **gateway,
        "sync_jobs": "n/a: no Discord command exposes mode=sync",
        "dashscope_submissions": sim_state["submissions"],
        "dashscope_throttled": sim_state["throttled"],
        "bot_error_log_lines": len(bot.error_lines()),
        "fake_discord_internal_errors": len(fake.internal_errors),
        "final_exit_code": rounds.final_exit_code,
        "kill_rounds_seconds": round(rounds.seconds, 1),
        "final_run_seconds": round(rounds.final_seconds, 1),
        "wall_seconds": round(time.monotonic() - began, 1),
    }
    record("soak", **figures)
    print("soak figures:", json.dumps(figures))
    about = f"\nseed {seed}; figures: {json.dumps(figures)}"

    assert rounds.kills >= plan.kills, about
    assert result.figures["jobs_submitted"] >= plan.jobs, about
    assert rounds.final_exit_code == 0, (
        f"the final run exited {rounds.final_exit_code}\n" + bot.log_text("final")[-4000:] + about
    )
    check_audit(result, members, fake, gateway, gateway_problems, about)
    assert gateway["gateway_sessions_ready"] >= rounds.kills - rounds.kills_before_ready, about
    errors = bot.error_lines()
    assert not errors, "ERROR lines in the bot's logs:\n" + "\n".join(errors[:30]) + about
