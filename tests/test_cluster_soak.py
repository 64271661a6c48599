"""Cluster soak, end to end: two bot processes on PostgreSQL, the dispatcher SIGKILLed at random.

The fake Discord (two shards, a guild on each) and the DashScope simulator run in this process;
two `python -m bot` processes share one PostgreSQL database (a schema of their own), process
"a" running shard 0 and "b" shard 1 of 2, so each answers its own guild's members. One of them
holds the dispatcher's lease and talks to DashScope; the other hands it jobs and cancels.

Members send jobs of every kind in both guilds (see `tests.soak`) while the test finds the
dispatcher by /healthz, SIGKILLs it at random moments (at least `scale(quick=10, full=20)`
times; the standby now and then too, and a restarted process sometimes during its start-up),
and restarts the killed process. Each dispatcher kill is a fail-over, timed from the kill until
the other process's /healthz says `role: dispatcher` (its lease row's epoch moved on, naming it
as the holder). Now and then the dispatcher's lease connection is cut instead (PostgreSQL ends
that session, as a network cut would): the process lives on, fenced, until it finds out and
exits 1 to come back as a standby; what it logs while it stops is counted apart. After the
kills both processes run until every job has ended, and are stopped with SIGTERM.

The audit is the crash soak's (lost 0, duplicated 0, ledger imbalance 0, every failure told and
refunded) plus: no job submitted by two dispatchers at once. Each run has a DashScope key of its
own, so the simulator's tasks say which process submitted them: a task of a dispatcher killed
before it could record the task id is an orphan (counted apart, as in the crash soak), and one
whose record the fence refused is cancelled if it had not started (counted either way); any
other job submitted by two live processes is a double submission. Fail-over times are reported (`tests/figures.py`, section "cluster_soak"); their
goal (p95 at most 5 s) is judged by `python -m bench reliability`, not asserted here.

`SOAK_SEED=N` repeats a run's choices; `SOAK_JOBS` and `SOAK_KILLS` override the sizes.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import time
from pathlib import Path
from typing import Any

import pytest

from bot.i18n import lang_for, text
from bot.simulator import SimulatorConfig, SimulatorThread
from tests.backends import postgres_schema
from tests.fakediscord import FakeDiscord, Perm
from tests.figures import record, scale
from tests.soak import (
    Cluster,
    ClusterPlan,
    ClusterRounds,
    Members,
    audit,
    check_audit,
    cluster_final,
    cluster_kill_loop,
    gateway_audit,
    percentile,
    simulator_tasks,
    submissions_audit,
)

pytestmark = pytest.mark.slow

# The fake Discord: 2 shards, each its own identify bucket. It checks the spacing of identifies
# per bucket a little under the 5 s the bots' shared gate keeps (the gate takes its turn just
# before the identify is sent, so two may arrive a few milliseconds closer than their turns).
MODERATOR = Perm.MANAGE_MESSAGES | Perm.MANAGE_THREADS
FAKE = {"shard_count": 2, "max_concurrency": 2, "identify_interval": 4.5}


def second_guild(fake: FakeDiscord, world: Any) -> Any:
    """A guild on the other shard of 2 than the world's, with #general and #art and the
    world's members; both guilds' channels, #general then #art of each."""
    first = world.guild.id
    guild = fake.create_guild("Second Guild", channels=("general", "art"), id=first + (1 << 22))
    for user in (world.alice, world.bob, world.admin):
        fake.add_member(guild, user)
    fake.add_member(guild, world.moderator, [fake.create_role(guild, "Moderator", MODERATOR)])
    assert {fake.shard_of(first, 2), fake.shard_of(guild.id, 2)} == {0, 1}
    return [world.general, world.art, fake.channel(guild, "general"), fake.channel(guild, "art")]


async def test_cluster_soak_end_to_end(tmp_path: Path) -> None:
    seed = int(os.environ.get("SOAK_SEED") or random.randrange(2**32))
    rng = random.Random(seed)
    print(f"\ncluster soak seed: {seed} (SOAK_SEED={seed} repeats it)")
    plan = ClusterPlan(
        jobs=int(os.environ.get("SOAK_JOBS") or scale(quick=200, full=400)),
        kills=int(os.environ.get("SOAK_KILLS") or scale(quick=10, full=20)),
    )
    began = time.monotonic()
    rounds = ClusterRounds()
    # One key per run, so every task at DashScope names the process that submitted it.
    keys = [f"sk-soak-cluster-{n:04d}-0123456789abcdef" for n in range(4 * plan.max_rounds + 4)]
    config = SimulatorConfig(api_keys=set(keys), speed=plan.speed, seed=seed % 2**31)

    async with postgres_schema() as url, FakeDiscord(**FAKE) as fake:
        world = fake.standard_world()
        channels = second_guild(fake, world)
        with SimulatorThread(config) as sim:
            cluster = Cluster(fake, sim, url, tmp_path, keys)
            members = Members(fake, world, rng, channels)
            await members.post_pictures()
            stop = asyncio.Event()
            load = asyncio.create_task(members.run(plan, stop), name="members")
            try:
                await cluster_kill_loop(cluster, plan, rng, rounds, members)
                stop.set()
                await load
                await members.drain()
                await cluster_final(cluster, plan, rounds)
            finally:
                stop.set()
                await cluster.close()
                if not load.done():
                    load.cancel()
            tasks = simulator_tasks(sim)
            sim_state = sim.state()
        result = audit(fake, world, members, url, tasks)
        refused = cluster.refused_tasks()
        submissions, submission_problems = submissions_audit(tasks, cluster.runs, refused)
        gateway, gateway_problems = gateway_audit(fake)
        too_soon = fake.identifies_too_soon()
        errors, errors_while_stopping = cluster.error_lines()

    failovers = rounds.failovers
    # A process whose lease was cut stops (to come back as a standby): a request reaching it
    # meanwhile is told that the bot is restarting, nothing charged. Any other refusal is not.
    stopping = text("reply.stopping", lang_for("en-US"))
    refused_while_stopping = [r for r in result.problems["refused"] if r.endswith(stopping)]
    result.problems["refused"] = [
        r for r in result.problems["refused"] if r not in refused_while_stopping
    ]
    figures = {
        "seed": seed,
        "processes": 2,
        "shards": 2,
        "kills": rounds.kills,
        "dispatcher_kills": len(failovers),
        "standby_kills": rounds.standby_kills,
        "kills_during_start_up": rounds.startup_kills,
        "restarts": rounds.starts - 2,
        "failover_seconds": failovers,
        "failover_p50_seconds": percentile(failovers, 0.5),
        "failover_p95_seconds": percentile(failovers, 0.95),
        "failover_max_seconds": max(failovers, default=None),
        "lease_cuts": len(rounds.cut_failovers),
        "failover_after_cut_seconds": rounds.cut_failovers,
        "final_lease_epoch": rounds.epochs[-1] if rounds.epochs else None,
        "two_dispatchers_seen": rounds.two_dispatchers_seen,
        "active_jobs_at_kills_summed": dict(rounds.active_at_kills),
        **result.figures,
        "requests_refused_while_stopping": len(refused_while_stopping),
        **submissions,
        **gateway,
        "identifies_too_soon": len(too_soon),
        "dashscope_submissions": sim_state["submissions"],
        "dashscope_throttled": sim_state["throttled"],
        "bot_error_log_lines": len(errors),
        "error_log_lines_of_cut_processes_stopping": len(errors_while_stopping),
        "fake_discord_internal_errors": len(fake.internal_errors),
        "final_exit_codes": rounds.final_exit_codes,
        "kill_rounds_seconds": round(rounds.seconds, 1),
        "final_run_seconds": round(rounds.final_seconds, 1),
        "wall_seconds": round(time.monotonic() - began, 1),
    }
    record("cluster_soak", **figures)
    print("cluster soak figures:", json.dumps(figures))
    about = f"\nseed {seed}; figures: {json.dumps(figures)}"

    assert len(failovers) >= plan.kills and rounds.standby_kills > 0, about
    assert result.figures["jobs_submitted"] >= plan.jobs, about
    assert not rounds.lease_problems, "\n".join(rounds.lease_problems) + about
    assert rounds.two_dispatchers_seen == 0, about
    assert rounds.final_exit_codes and set(rounds.final_exit_codes.values()) == {0}, about
    assert not refused_while_stopping or rounds.cut_failovers, about
    check_audit(result, members, fake, gateway, gateway_problems, about)
    assert not submission_problems, "\n".join(submission_problems[:20]) + about
    assert not too_soon, f"identifies closer than the bucket's interval: {too_soon}" + about
    assert not errors, "ERROR lines in the bots' logs:\n" + "\n".join(errors[:30]) + about
