"""The real bot (`run_bot`, the main job) against the fake Discord and the DashScope simulator.

`BotEnv` starts both stand-ins on loopback, runs `run_bot(settings)` as production does (login,
gateway, setup_hook, command sync to the dev guild), and offers helpers to wait for the engine.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from bot.config import Settings, load_settings
from bot.discord_app import WanBot, run_bot
from bot.jobs.model import Job, JobState
from bot.simulator import RunningSimulator, SimulatorConfig, start_simulator
from tests.fakediscord import FakeDiscord, capture_discord_errors, format_records

SIM_KEY = "sk-e2e-simulator-key-0123456789"


def png(
    width: int = 640, height: int = 480, colour: tuple[int, int, int] = (40, 120, 200)
) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(buffer, "PNG")
    return buffer.getvalue()


@dataclass
class BotEnv:
    fake: FakeDiscord
    sim: RunningSimulator
    settings: Settings
    world: Any
    bot: WanBot | None = None
    task: asyncio.Task[int] | None = None
    errors: list[Any] | None = None

    async def start_bot(self, timeout: float = 15.0) -> WanBot:
        holder: list[WanBot] = []
        self.task = asyncio.create_task(
            run_bot(self.settings, install_signals=False, on_bot=holder.append), name="run_bot"
        )
        deadline = asyncio.get_running_loop().time() + timeout
        while not holder or not holder[0].is_ready():
            if self.task.done():
                raise RuntimeError(f"run_bot ended early: {self.task.result()}")
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError("the bot did not become ready")
            await asyncio.sleep(0.02)
        self.bot = holder[0]
        return self.bot

    async def stop_bot(self) -> int:
        assert self.bot is not None and self.task is not None
        await self.bot.close()
        code = await asyncio.wait_for(self.task, 15)
        self.bot = None
        return code

    async def restart_bot(self) -> WanBot:
        await self.stop_bot()
        return await self.start_bot()

    async def job(self, job_id: int) -> Job:
        assert self.bot is not None
        job = await self.bot.engine.store.get(job_id)
        assert job is not None
        return job

    async def wait_job(self, job_id: int, *states: JobState, timeout: float = 20.0) -> Job:
        wanted = states or (JobState.DONE, JobState.FAILED, JobState.CANCELLED)
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            job = await self.job(job_id)
            if job.state in wanted:
                await self.fake.wait_idle()
                return job
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"job {job_id} is still {job.state}")
            await asyncio.sleep(0.05)

    async def latest_job_id(self) -> int | None:
        assert self.bot is not None
        row = await self.bot.engine.db.fetchone("SELECT MAX(id) FROM jobs")
        return int(row[0]) if row and row[0] is not None else None

    async def new_job(self, after: int | None = None, timeout: float = 10.0) -> int:
        """Wait for a job newer than `after` to be created and placed (status message set)."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            latest = await self.latest_job_id()
            if latest is not None and (after is None or latest > after):
                job = await self.job(latest)
                if job.status_message_id is not None or job.state.terminal:
                    return latest
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError("no new job was created")
            await asyncio.sleep(0.02)

    async def job_count(self) -> int:
        assert self.bot is not None
        row = await self.bot.engine.db.fetchone("SELECT COUNT(*) FROM jobs")
        return int(row[0]) if row else 0


@contextlib.asynccontextmanager
async def bot_env(
    tmp_path: Path, *, speed: float = 300.0, **settings: Any
) -> AsyncIterator[BotEnv]:
    fake = FakeDiscord()
    await fake.start()
    world = fake.standard_world()
    sim = await start_simulator(SimulatorConfig(api_keys={SIM_KEY}, speed=speed, seed=7))
    values: dict[str, Any] = {
        "discord_token": fake.token,
        "discord_api_base_url": fake.api_base,
        "discord_gateway_url": fake.gateway_url,
        "dev_guild_id": world.guild.id,
        "dashscope_api_key": SIM_KEY,
        "dashscope_base_url": sim.base_url,
        "database_path": tmp_path / "wanbot.db",
        "limit_cooldown_seconds": 0,
        "limit_concurrent_jobs_per_user": 0,
        "_env_file": None,
    }
    values.update(settings)
    env = BotEnv(fake, sim, load_settings(**values), world)
    with capture_discord_errors() as errors:
        env.errors = errors
        try:
            await env.start_bot()
            yield env
            assert not errors, format_records(errors)
        finally:
            if env.bot is not None:
                await env.stop_bot()
            await sim.stop()
            await fake.stop()
