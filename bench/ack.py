"""`python -m bench ack`: how fast the bot acknowledges interactions under a burst.

The bot runs as production runs it (`python -m bot`, its own process, the built-in simulator
behind it) against the fake Discord in this process. N `/imagine` interactions are injected
through the gateway within one second; for each, the delay from injection to the
acknowledgement request reaching the fake is measured. Discord allows 3 s.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import percentile, progress, rounded

DISCORD_LIMIT = 3.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--interactions", type=int, default=500)
    parser.add_argument("--within", type=float, default=1.0, help="seconds to inject them in")
    parser.add_argument("--users", type=int, default=20)


async def _run(args: argparse.Namespace) -> dict[str, Any]:
    from tests.fakediscord import FakeDiscord

    fake = FakeDiscord()
    await fake.start()
    world = fake.standard_world()
    users = [world.alice, world.bob]
    for k in range(max(0, args.users - len(users))):
        user = fake.create_user(f"member{k}")
        fake.add_member(world.guild, user)
        users.append(user)
    folder = Path(tempfile.mkdtemp(prefix="wanbot-ack-"))
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DASHSCOPE_", "DISCORD_"))
    }
    env.update(
        DISCORD_TOKEN=fake.token,
        DISCORD_API_BASE_URL=fake.api_base,
        DISCORD_GATEWAY_URL=fake.gateway_url,
        DEV_GUILD_ID=str(world.guild.id),
        DATABASE_PATH=str(folder / "wanbot.db"),
        SIMULATOR_SPEED="1000",
        LIMIT_IMAGES_PER_USER_DAY="0",
        LIMIT_CONCURRENT_JOBS_PER_USER="0",
        LIMIT_COOLDOWN_SECONDS="0",
        LIMIT_IMAGES_PER_GUILD_DAY="0",
        LOG_LEVEL=os.environ.get("BENCH_BOT_LOG_LEVEL", "WARNING"),
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-X",
        "faulthandler",
        "-m",
        "bot",
        env=env,
        cwd=folder,
        stdout=asyncio.subprocess.DEVNULL,
    )
    try:
        await fake.wait_ready(timeout=30)
        await fake.wait_for_request("PUT", "/applications/*/guilds/*/commands", timeout=30)
        progress(f"bot ready; injecting {args.interactions} interactions in {args.within} s")
        spacing = args.within / max(1, args.interactions)
        started = time.monotonic()
        interactions = []
        for index in range(args.interactions):
            target = started + index * spacing
            if (wait := target - time.monotonic()) > 0:
                await asyncio.sleep(wait)
            interactions.append(
                await fake.slash(
                    "imagine",
                    {"prompt": f"a lighthouse at dusk, study {index}"},
                    user=users[index % len(users)],
                    channel=world.general,
                )
            )
        injected_in = time.monotonic() - started
        await asyncio.gather(
            *(fake.wait_for_ack(i, timeout=60) for i in interactions), return_exceptions=True
        )
        latencies = [i.ack_latency for i in interactions if i.ack_latency is not None]
        unacked = sum(1 for i in interactions if i.ack_latency is None)
        progress("all acknowledged; stopping the bot")
    finally:
        process.terminate()
        stopping = time.monotonic()
        try:
            await asyncio.wait_for(process.wait(), 30)
        except TimeoutError:
            if os.environ.get("BENCH_ABORT_HUNG"):
                process.send_signal(6)  # with -X faulthandler: dump every thread's stack
            else:
                process.kill()
            await process.wait()
        stop_seconds = time.monotonic() - stopping
        await fake.stop()
    ms = [latency * 1000 for latency in latencies]
    return {
        "interactions": args.interactions,
        "injected_within_s": round(injected_in, 3),
        "acknowledged": len(latencies),
        "not_acknowledged": unacked,
        "ack_ms_p50": rounded(percentile(ms, 50), 1),
        "ack_ms_p99": rounded(percentile(ms, 99), 1),
        "ack_ms_max": rounded(max(ms) if ms else None, 1),
        "over_3s": sum(1 for latency in latencies if latency > DISCORD_LIMIT) + unacked,
        "bot_exit_code": process.returncode,
        "bot_stop_s": round(stop_seconds, 2),
        "goals": {
            "p99_under_50ms": bool(ms) and (percentile(ms, 99) or 0) < 50,
            "none_over_3s": unacked == 0 and all(x <= DISCORD_LIMIT for x in latencies),
        },
    }


def main(args: argparse.Namespace) -> dict[str, Any]:
    return asyncio.run(_run(args))
