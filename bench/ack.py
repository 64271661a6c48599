"""`python -m bench ack`: how fast the bot acknowledges interactions under a burst.

The bot runs as production runs it (`python -m bot`, its own process, the built-in simulator
behind it) against the fake Discord in this process. N `/imagine` interactions are injected
through the gateway within one second; for each, the delay from injection to the
acknowledgement request reaching the fake is measured. Discord allows 3 s.

`burst` does this for any number of bot processes at once (`python -m bench cluster` runs two,
one shard each, on PostgreSQL).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.common import percentile, progress, rounded

if TYPE_CHECKING:
    from tests.fakediscord import FakeDiscord

DISCORD_LIMIT = 3.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--interactions", type=int, default=500)
    parser.add_argument("--within", type=float, default=1.0, help="seconds to inject them in")
    parser.add_argument("--users", type=int, default=20)


def bot_environment(fake: FakeDiscord, **settings: str) -> dict[str, str]:
    """The environment of one `python -m bot` against the fake (no limits, the built-in
    simulator), with `settings` (DATABASE_PATH or DATABASE_URL, DEV_GUILD_ID, shards) over it."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DASHSCOPE_", "DISCORD_", "DATABASE_", "SHARD_"))
    }
    env.update(
        DISCORD_TOKEN=fake.token,
        DISCORD_API_BASE_URL=fake.api_base,
        DISCORD_GATEWAY_URL=fake.gateway_url,
        SIMULATOR_SPEED="1000",
        LIMIT_IMAGES_PER_USER_DAY="0",
        LIMIT_CONCURRENT_JOBS_PER_USER="0",
        LIMIT_COOLDOWN_SECONDS="0",
        LIMIT_IMAGES_PER_GUILD_DAY="0",
        LOG_LEVEL=os.environ.get("BENCH_BOT_LOG_LEVEL", "WARNING"),
    )
    env.update(settings)
    return env


async def stop_process(process: asyncio.subprocess.Process, timeout: float = 30.0) -> float:
    """SIGTERM, and the seconds it took to exit (killed after `timeout`; with
    `BENCH_ABORT_HUNG` set, aborted instead, so `-X faulthandler` dumps every thread's stack)."""
    if process.returncode is not None:
        return 0.0
    process.terminate()
    stopping = time.monotonic()
    try:
        await asyncio.wait_for(process.wait(), timeout)
    except TimeoutError:
        if os.environ.get("BENCH_ABORT_HUNG"):
            process.send_signal(6)
        else:
            process.kill()
        await process.wait()
    return time.monotonic() - stopping


async def burst(
    fake: FakeDiscord,
    bots: list[dict[str, str]],
    senders: list[tuple[Any, Any]],
    interactions: int,
    within: float,
    folder: Path,
) -> dict[str, Any]:
    """Start one `python -m bot` per environment in `bots` (in `folder`), wait until every
    one is ready and has synced its commands, inject `interactions` `/imagine`s within
    `within` seconds (from `senders`, (member, channel) pairs, in turn), and measure each
    acknowledgement; then stop the bots."""
    processes = []
    stop_seconds: list[float] = []
    try:
        for env in bots:
            processes.append(
                await asyncio.create_subprocess_exec(
                    *(sys.executable, "-X", "faulthandler", "-m", "bot"),
                    env=env,
                    cwd=folder,
                    stdout=asyncio.subprocess.DEVNULL,
                )
            )
        await fake.wait_ready(timeout=60, count=len(bots))
        await fake.wait_for_request(
            "PUT", "/applications/*/guilds/*/commands", count=len(bots), timeout=60
        )
        progress(f"{len(bots)} bot(s) ready; injecting {interactions} interactions in {within} s")
        spacing = within / max(1, interactions)
        started = time.monotonic()
        injected = []
        for index in range(interactions):
            target = started + index * spacing
            if (wait := target - time.monotonic()) > 0:
                await asyncio.sleep(wait)
            member, channel = senders[index % len(senders)]
            injected.append(
                await fake.slash(
                    "imagine",
                    {"prompt": f"a lighthouse at dusk, study {index}"},
                    user=member,
                    channel=channel,
                )
            )
        injected_in = time.monotonic() - started
        await asyncio.gather(
            *(fake.wait_for_ack(i, timeout=60) for i in injected), return_exceptions=True
        )
        progress("all acknowledged; stopping the bot(s)")
    finally:
        for process in processes:
            stop_seconds.append(await stop_process(process))
    latencies = [i.ack_latency for i in injected if i.ack_latency is not None]
    unacked = sum(1 for i in injected if i.ack_latency is None)
    ms = [latency * 1000 for latency in latencies]
    return {
        "interactions": interactions,
        "injected_within_s": round(injected_in, 3),
        "acknowledged": len(latencies),
        "not_acknowledged": unacked,
        "ack_ms_p50": rounded(percentile(ms, 50), 1),
        "ack_ms_p99": rounded(percentile(ms, 99), 1),
        "ack_ms_max": rounded(max(ms) if ms else None, 1),
        "over_3s": sum(1 for latency in latencies if latency > DISCORD_LIMIT) + unacked,
        "bot_exit_codes": [process.returncode for process in processes],
        "bot_stop_s": [round(seconds, 2) for seconds in stop_seconds],
        "goals": {
            "p99_under_50ms": bool(ms) and (percentile(ms, 99) or 0) < 50,
            "none_over_3s": unacked == 0 and all(x <= DISCORD_LIMIT for x in latencies),
        },
    }


async def _run(args: argparse.Namespace) -> dict[str, Any]:
    from tests.fakediscord import FakeDiscord

    fake = FakeDiscord()
    await fake.start()
    try:
        world = fake.standard_world()
        users = [world.alice, world.bob]
        for k in range(max(0, args.users - len(users))):
            user = fake.create_user(f"member{k}")
            fake.add_member(world.guild, user)
            users.append(user)
        senders = [(user, world.general) for user in users]
        with tempfile.TemporaryDirectory(prefix="wanbot-ack-") as folder:
            env = bot_environment(
                fake, DEV_GUILD_ID=str(world.guild.id), DATABASE_PATH=f"{folder}/wanbot.db"
            )
            report = await burst(fake, [env], senders, args.interactions, args.within, Path(folder))
    finally:
        await fake.stop()
    [report["bot_exit_code"]] = report.pop("bot_exit_codes")
    [report["bot_stop_s"]] = report.pop("bot_stop_s")
    return report


def main(args: argparse.Namespace) -> dict[str, Any]:
    return asyncio.run(_run(args))
