"""The real bot (`run_bot`, the main job) against the fake Discord and the DashScope simulator.

`BotEnv` starts both stand-ins on loopback, runs `run_bot(settings)` as production does (login,
gateway, setup_hook, command sync to the dev guild), and offers helpers to wait for the engine.
`bot_envs` runs several bots against the same stand-ins, as several processes (one per shard,
say) would, each with its own database.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import io
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from bot.config import Settings, load_settings
from bot.dashscope.models import MODELS
from bot.dashscope.requests import ImageRequest
from bot.discord_ui.app import WanBot, run_bot
from bot.jobs.model import Job, JobState, NewJob, timing_kind
from bot.runtime.identify import IdentifyGate
from bot.simulator import RunningSimulator, SimulatorConfig, start_simulator
from tests.fakediscord import FakeDiscord, Message, format_records

SIM_KEY = "sk-e2e-simulator-key-0123456789"
# A model the tests may block (see `BotEnv.hold_model`) to keep jobs of it queued.
HELD_MODEL = "wanx2.1-t2i-turbo"
HOLDER_USER_ID = 4242


class _Collector(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@contextlib.contextmanager
def capture_errors(*loggers: str) -> Iterator[list[logging.LogRecord]]:
    """ERROR records of these loggers (discord.py logs callback exceptions; the bot its own)."""
    handler = _Collector()
    targets = [logging.getLogger(name) for name in loggers]
    for target in targets:
        target.addHandler(handler)
    try:
        yield handler.records
    finally:
        for target in targets:
            target.removeHandler(handler)


def png(
    width: int = 640, height: int = 480, colour: tuple[int, int, int] = (40, 120, 200)
) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(buffer, "PNG")
    return buffer.getvalue()


def train(bot: WanBot, seconds: float = 0.2) -> None:
    """Teach the engine that tasks are quick, so the poller lists them at once instead of
    waiting out its cold-start guess (the simulator runs them in a fraction of a second)."""
    for model, spec in MODELS.items():
        for n in range(1, 5):
            for _ in range(3):
                bot.engine.durations.observe(model, n, seconds)
        # A video's duration is learned per length and resolution: each of the model's.
        for length in spec.durations:
            for resolution in spec.resolutions:
                kind = timing_kind(spec.kind.value, length, resolution)
                for _ in range(3):
                    bot.engine.durations.observe(model, 1, seconds, kind)


@dataclass
class BotEnv:
    fake: FakeDiscord
    sim: RunningSimulator
    settings: Settings
    world: Any
    bot: WanBot | None = None
    task: asyncio.Task[int] | None = None
    errors: list[logging.LogRecord] | None = None
    identify_gate: IdentifyGate | None = None  # run_bot's own when None

    async def start_bot(self, timeout: float = 15.0) -> WanBot:
        holder: list[WanBot] = []

        def made(bot: WanBot) -> None:  # before setup_hook starts the engine
            holder.append(bot)
            train(bot)

        self.task = asyncio.create_task(
            run_bot(
                self.settings,
                install_signals=False,
                on_bot=made,
                identify_gate=self.identify_gate,
            ),
            name="run_bot",
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

    def take_errors(self, *needles: str) -> list[logging.LogRecord]:
        """Remove and return the captured ERROR records (those mentioning a needle, if given)."""
        assert self.errors is not None
        taken = [r for r in self.errors if not needles or any(n in r.getMessage() for n in needles)]
        self.errors[:] = [r for r in self.errors if r not in taken]
        return taken

    def check_clean(self) -> None:
        """No ERROR logs, no bug in the fake, no request to a route Discord does not have."""
        assert self.errors is not None
        errors = list(self.errors)
        self.errors.clear()
        assert not errors, format_records(errors)
        assert not self.fake.internal_errors, self.fake.internal_errors
        assert not self.fake.unmatched_requests(), self.fake.unmatched_requests()

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
        """Wait for one of `states` (an end by default); an end also until it is shown (its
        final edit waits for the channel's turn, after the state is committed)."""
        wanted = states or (JobState.DONE, JobState.FAILED, JobState.CANCELLED)
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            job = await self.job(job_id)
            if job.state in wanted and (not job.state.terminal or await self.shown(job_id)):
                await self.fake.wait_idle()
                return job
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"job {job_id} is still {job.state}")
            await asyncio.sleep(0.05)

    async def shown(self, job_id: int) -> bool:
        """Whether the job's end was shown (or the member told why it failed)."""
        assert self.bot is not None
        row = await self.bot.engine.db.fetchone(
            "SELECT notified_at FROM jobs WHERE id = ?", (job_id,)
        )
        return row is not None and row["notified_at"] is not None

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

    async def ledger(self, job_id: int) -> dict[str, int]:
        """The job's quota ledger: {"reserve": n, "charge": k, "refund": n - k}."""
        assert self.bot is not None
        rows = await self.bot.engine.db.fetchall(
            "SELECT entry, images FROM ledger WHERE job_id = ?", (job_id,)
        )
        return {row["entry"]: row["images"] for row in rows}

    async def ledger_rows(self) -> int:
        assert self.bot is not None
        row = await self.bot.engine.db.fetchone("SELECT COUNT(*) FROM ledger")
        return int(row[0]) if row else 0

    async def hold_model(self, model: str = HELD_MODEL, seconds: float = 600.0) -> int:
        """Occupy the model's only slot (settings ``max_in_flight=1``) with a slow task, so
        later jobs of that model stay queued. Returns the holding job's id."""
        assert self.bot is not None
        assert self.settings.max_in_flight == 1, "hold_model needs max_in_flight=1"
        request = ImageRequest(model=model, prompt=f"hold the slot sim:slow={seconds}")
        job = await self.bot.engine.submit_job(NewJob(request=request, user_id=HOLDER_USER_ID))
        await self.wait_job(job.id, JobState.SUBMITTED, JobState.RUNNING)
        return job.id

    def status_message(self, job: Job) -> Message:
        assert job.status_message_id is not None
        return self.fake.get_message(job.status_message_id)

    def result_messages(self, job: Job) -> list[Message]:
        """The bot's messages carrying this job's images (or video), where the job answers."""
        where = job.thread_id or job.channel_id
        assert where is not None
        return [
            m
            for m in self.fake.messages_in(where)
            if m.author.id == self.fake.bot_user.id
            and m.attachments
            and any(
                a.filename.startswith(f"wan-{job.id}-") or a.filename == f"video-{job.id}.mp4"
                for a in m.attachments
            )
        ]

    async def join_guild(self, guild: Any) -> None:
        """The bot joins a guild created after it connected (GUILD_CREATE over the gateway)."""
        payload = self.fake.payloads.guild_create(guild, all_members=False)
        await self.fake.dispatch("GUILD_CREATE", payload)
        await self.fake.settle()
        assert self.bot is not None
        deadline = time.monotonic() + 5
        while self.bot.get_guild(guild.id) is None:
            assert time.monotonic() < deadline, "the bot did not see the new guild"
            await asyncio.sleep(0.01)


@contextlib.asynccontextmanager
async def bot_env(
    tmp_path: Path, *, speed: float = 300.0, **settings: Any
) -> AsyncIterator[BotEnv]:
    async with bot_envs(tmp_path, speed=speed, **settings) as (env,):
        yield env


@contextlib.asynccontextmanager
async def bot_envs(
    tmp_path: Path,
    *own: dict[str, Any],
    speed: float = 300.0,
    fake_options: dict[str, Any] | None = None,
    prepare: Callable[[FakeDiscord, Any], None] | None = None,
    identify_gate: IdentifyGate | None = None,
    **settings: Any,
) -> AsyncIterator[list[BotEnv]]:
    """One bot per dict of `own` settings (over `settings`; one bot if none), all against one
    fake Discord (made with `fake_options`, its world then given to `prepare`) and one
    simulator, each with its own database, started together (as processes would be) and
    sharing `identify_gate` if one is given."""
    fake = FakeDiscord(**(fake_options or {}))
    await fake.start()
    world = fake.standard_world()
    if prepare is not None:
        prepare(fake, world)
    sim = await start_simulator(SimulatorConfig(api_keys={SIM_KEY}, speed=speed, seed=7))
    envs = []
    for index, bot_settings in enumerate(own or ({},)):
        values: dict[str, Any] = {
            "discord_token": fake.token,
            "discord_api_base_url": fake.api_base,
            "discord_gateway_url": fake.gateway_url,
            "dev_guild_id": world.guild.id,
            "dashscope_api_key": SIM_KEY,
            "dashscope_base_url": sim.base_url,
            "database_path": tmp_path / ("wanbot.db" if index == 0 else f"wanbot-{index}.db"),
            "limit_cooldown_seconds": 0,
            "limit_concurrent_jobs_per_user": 0,
            "_env_file": None,
        }
        values.update(settings)
        values.update(bot_settings)
        envs.append(BotEnv(fake, sim, load_settings(**values), world, identify_gate=identify_gate))
    # Garbage an earlier test left (say an unclosed HTTP session) is collected, and logged by
    # asyncio, before this bot's errors are captured, not in the middle of them.
    gc.collect()
    with capture_errors("discord", "bot", "cogs", "asyncio") as errors:
        for env in envs:
            env.errors = errors
        try:
            started = await asyncio.gather(
                *(env.start_bot() for env in envs), return_exceptions=True
            )
            for outcome in started:
                if isinstance(outcome, BaseException):
                    raise outcome
            yield envs
            for env in envs:
                env.check_clean()
        finally:
            for env in envs:
                if env.bot is not None:
                    await env.stop_bot()
                elif env.task is not None and not env.task.done():  # never became ready
                    env.task.cancel()
                    await asyncio.wait([env.task])
            await sim.stop()
            await fake.stop()
        assert not leftover_tasks(), leftover_tasks()


def leftover_tasks() -> list[asyncio.Task[Any]]:
    """Tasks of the bot's own code still pending after it stopped."""
    current = asyncio.current_task()
    left = []
    for task in asyncio.all_tasks():
        code = getattr(task.get_coro(), "cr_code", None)
        filename = code.co_filename if code is not None else ""
        if (
            task is not current
            and not task.done()
            and ("/bot/" in filename or "/cogs/" in filename)
        ):
            left.append(task)
    return left


# --- helpers for the scenarios ---------------------------------------------------------------


def replies(interaction: Any) -> list[Message]:
    """What the user saw in answer to an interaction: the original response, then follow-ups."""
    out = [interaction.original] if interaction.original is not None else []
    out += [m for m in interaction.followups if m not in out]
    return out


def reply_text(interaction: Any) -> str:
    """The text of the latest answer to an interaction (asserting there is one)."""
    answers = replies(interaction)
    assert answers, f"interaction {interaction.id} got no answer"
    return answers[-1].content


def embed_fields(message: Message, index: int = 0) -> dict[str, str]:
    return {f["name"]: f["value"] for f in message.embeds[index].get("fields") or []}


def custom_ids(message: Message) -> list[str]:
    return [c["custom_id"] for c in message.iter_components() if c.get("custom_id")]


async def invoke(
    env: BotEnv,
    name: str,
    options: dict[str, Any] | None = None,
    *,
    user: Any,
    channel: Any = None,
    **kwargs: Any,
) -> Any:
    """Run a slash command and wait until the bot has finished answering it."""
    interaction = await env.fake.slash(
        name, options, user=user, channel=channel or env.world.general, **kwargs
    )
    await env.fake.wait_for_ack(interaction)
    await env.fake.settle()
    return interaction


async def launch(
    env: BotEnv,
    action: Any,
    *,
    wait: bool = True,
    states: tuple[JobState, ...] = (),
) -> tuple[Any, Job]:
    """Do something that starts a job (`action` is an awaitable returning the interaction or
    message); return it and the new job, finished unless `wait=False`."""
    before = await env.latest_job_id()
    started = await action
    job_id = await env.new_job(after=before)
    job = await env.wait_job(job_id, *states) if wait or states else await env.job(job_id)
    await env.fake.settle()
    return started, job


async def imagine(
    env: BotEnv,
    prompt: str,
    *,
    user: Any,
    channel: Any = None,
    wait: bool = True,
    states: tuple[JobState, ...] = (),
    locale: str | None = None,
    **options: Any,
) -> tuple[Any, Job]:
    async def run() -> Any:
        interaction = await env.fake.slash(
            "imagine",
            {"prompt": prompt, **options},
            user=user,
            channel=channel or env.world.general,
            locale=locale,
        )
        await env.fake.wait_for_ack(interaction)
        return interaction

    return await launch(env, run(), wait=wait, states=states)


def modal_inputs(modal: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The text inputs of a modal the bot sent, by label (rows and labels both walked)."""
    found: dict[str, dict[str, Any]] = {}

    def walk(items: list[dict[str, Any]], label: str | None = None) -> None:
        for item in items:
            if item.get("type") == 18:  # a label wrapping one component
                walk([item["component"]], item.get("label"))
            elif item.get("type") == 4:
                found[label or item.get("label") or item["custom_id"]] = item
            else:
                walk(item.get("components") or [], label)

    walk(modal.get("components") or [])
    return found


async def submit_modal(env: BotEnv, opened: Any, values: dict[str, str]) -> Any:
    """Fill the modal that `opened` (an interaction) got, by field label, and submit it."""
    assert opened.modal is not None, f"no modal was sent (answer: {replies(opened)})"
    inputs = modal_inputs(opened.modal)
    unknown = set(values) - set(inputs)
    assert not unknown, f"the modal has no field(s) {unknown}; it has {list(inputs)}"
    fields = {inputs[label]["custom_id"]: value for label, value in values.items()}
    await env.fake.settle()  # discord.py registers the modal after answering
    submitted = await env.fake.submit_modal(fields=fields, interaction=opened)
    await env.fake.wait_for_ack(submitted)
    return submitted
