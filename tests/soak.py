"""The crash soak's machinery: the bot as a subprocess, members sending jobs, the final audit.

The test process runs the fake Discord (on its event loop) and the DashScope simulator (in a
thread), so both outlive the bot. The bot runs as `python -m bot`, exactly as in production,
and is SIGKILLed at random moments while members use it through the fake Discord:

* `/imagine` with the default model (wan2.6-t2i, asynchronous) and with other text-to-image
  models, n from 1 to 4;
* `/edit` with one or two attachments;
* the message menu **Edit with Wan** on a member's picture, then its modal;
* a reply to a picture that mentions the bot (reply-to-edit);
* a few slow jobs whose Cancel button is clicked;
* a share of them set up to fail at DashScope (prompt markers: a failed task, moderation at
  submission or of the output, some images of n failing).

Every request carries a unique token (`soak-N`) in its prompt, which ties the job row, the
simulator's tasks and the Discord messages together for the audit (`audit`).

What the bot does not answer while it is down (or dying) is counted as "not acknowledged": on
Discord the member sees "The application did not respond". A job exists only once it has a
row in the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import math
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from random import Random
from typing import Any

import httpx
import psycopg
from PIL import Image
from psycopg.rows import dict_row

from bot.simulator import SimulatorThread
from bot.storage.cluster import LEASE_LOCK
from bot.storage.postgres import bind
from tests.fakediscord import Channel, FakeDiscord, Interaction, Message

ROOT = Path(__file__).resolve().parent.parent
SIM_KEY = "sk-soak-test-0123456789abcdef"
TOKEN = re.compile(r"\bsoak-(\d+)\b")
RESULT_FILE = re.compile(r"^wan-(\d+)-(\d+)\.(?:png|jpe?g)$")
CANCEL_BUTTON = re.compile(r"^wan:job:(\d+):cancel$")
NOTICE = re.compile(r"^<@\d+> ❌ ")  # a failure told in a message of its own
TERMINAL = ("done", "failed", "cancelled")
# Text-to-image models of the simulator's region (cn-beijing) other than the default.
OTHER_T2I = (
    "wan2.5-t2i-preview",
    "wan2.2-t2i-plus",
    "wan2.2-t2i-flash",
    "wanx2.1-t2i-plus",
    "wanx2.1-t2i-turbo",
    "wanx2.0-t2i-turbo",
)
KINDS = {  # what members do, and how often
    "imagine": 32,
    "imagine-model": 16,
    "edit": 18,
    "menu": 12,
    "reply": 12,
    "cancel": 5,
    "imagine-slow": 5,
}


@dataclass(frozen=True)
class SoakPlan:
    jobs: int  # at least this many jobs (rows) before the kills stop
    kills: int  # at least this many SIGKILLs
    kill_after: tuple[float, float] = (0.2, 2.0)  # seconds after the bot is ready
    early_kills: float = 0.15  # share of kills at a random moment of the start-up instead
    early_kill_after: tuple[float, float] = (0.1, 1.5)  # seconds after the process started
    rate: float = 12.0  # member actions per second while the bot is up
    rate_down: float = 2.0  # ... and while it is down (they go unanswered)
    max_rounds: int = 200
    ready_timeout: float = 30.0
    final_timeout: float = 120.0
    speed: float = 40.0  # simulator: wan2.6-t2i tasks take about 0.4-1 s


# --- the bot process -----------------------------------------------------------------------


def bot_environment(
    fake: FakeDiscord, sim: SimulatorThread, database: Target, **extra: str
) -> dict[str, str]:
    """`python -m bot`'s environment: the settings `tests.discord_env.bot_env` gives the bot
    in-process, as variables, with the database at `database` (a SQLite file, or a PostgreSQL
    URL) and `extra` variables (a cluster's SHARD_IDS, say); nothing DASHSCOPE_/DISCORD_/
    WANBOT_/DATABASE_ inherited."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DASHSCOPE_", "DISCORD_", "WANBOT_", "DATABASE_"))
    }
    guild = next(iter(fake.state.guilds.values()))
    env.update(
        PYTHONPATH=str(ROOT),
        PYTHONUNBUFFERED="1",
        DISCORD_TOKEN=fake.token,
        DISCORD_API_BASE_URL=fake.api_base,
        DISCORD_GATEWAY_URL=fake.gateway_url,
        DEV_GUILD_ID=str(guild.id),
        DASHSCOPE_API_KEY=SIM_KEY,
        DASHSCOPE_BASE_URL=sim.base_url,
        LOG_LEVEL="INFO",
        LIMIT_IMAGES_PER_USER_DAY="0",
        LIMIT_CONCURRENT_JOBS_PER_USER="0",
        LIMIT_COOLDOWN_SECONDS="0",
        LIMIT_IMAGES_PER_GUILD_DAY="0",
        MAX_IN_FLIGHT="5",
        SUBMIT_RATE="10",
        TASK_QUERY_RATE="10",
        HEALTH_PORT="0",
    )
    if isinstance(database, str):
        env["DATABASE_URL"] = database
    else:
        env["DATABASE_PATH"] = str(database)
    env.update(extra)
    return env


@dataclass
class BotProcess:
    """`python -m bot` started, killed and restarted; one log file per run."""

    env: dict[str, str]
    cwd: Path
    logs: Path
    proc: subprocess.Popen[bytes] | None = None
    runs: int = 0
    name: str = ""  # the current run's

    def start(self, name: str, **env: str) -> subprocess.Popen[bytes]:
        """Start a run called `name` (its log file's name), with `env` over `self.env`."""
        assert self.proc is None or self.proc.poll() is not None, "the bot is running already"
        self.runs += 1
        self.name = name
        with (self.logs / f"{name}.log").open("ab") as stderr:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "bot"],
                env={**self.env, **env},
                cwd=self.cwd,  # no stray .env from the repository
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
            )
        return self.proc

    @property
    def returncode(self) -> int | None:
        return self.proc.returncode if self.proc is not None else None

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    async def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        await asyncio.to_thread(self.proc.wait, 10)

    async def terminate(self, timeout: float = 30.0) -> int:
        """SIGTERM, as a service manager stops it; the exit code (killed if it hangs)."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return await asyncio.to_thread(self.proc.wait, timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            await asyncio.to_thread(self.proc.wait, 10)
            return -999

    def log_text(self, name: str | None = None) -> str:
        path = self.logs / f"{name or self.name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def log_tail(self, chars: int = 3000) -> str:
        return f"\n--- {self.name}.log (end) ---\n" + self.log_text()[-chars:]

    def error_lines(self) -> list[str]:
        """ERROR/CRITICAL lines and tracebacks of every run's log."""
        found = []
        for path in sorted(self.logs.glob("*.log")):
            for line in path.read_text(errors="replace").splitlines():
                if " ERROR " in line or " CRITICAL " in line or line.startswith("Traceback"):
                    found.append(f"{path.stem}: {line}")
        return found


# --- the database (read-only, while the bot may be writing) -----------------------------------

# Where the bot keeps its rows: a SQLite file, or a PostgreSQL URL (`DATABASE_URL`).
Target = Path | str


def read_rows(target: Target, sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
    """Rows as dicts, with `?` placeholders on either backend; none before the first migration."""
    if isinstance(target, str):
        return _read_postgres(target, sql, params)
    if not target.exists():
        return []
    connection = sqlite3.connect(f"file:{target}?mode=ro", uri=True, timeout=10)
    try:
        connection.row_factory = sqlite3.Row
        return [dict(row) for row in connection.execute(sql, params).fetchall()]
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):  # the first run has not migrated yet
            return []
        raise
    finally:
        connection.close()


def _read_postgres(url: str, sql: str, params: tuple[Any, ...]) -> list[dict[str, Any]]:
    query, args = bind(sql, params)
    try:
        with psycopg.connect(url, autocommit=True, connect_timeout=10) as connection:
            cursor = connection.cursor(row_factory=dict_row)
            return list(cursor.execute(query, args).fetchall())
    except psycopg.errors.UndefinedTable:  # the first process has not migrated yet
        return []


async def count_jobs(target: Target) -> int:
    rows = await asyncio.to_thread(read_rows, target, "SELECT COUNT(*) AS n FROM jobs")
    return int(rows[0]["n"]) if rows else 0


async def unfinished(target: Target) -> tuple[int, int]:
    """(jobs not in a terminal state, failed jobs whose user was not told yet)."""
    rows = await asyncio.to_thread(
        read_rows,
        target,
        "SELECT SUM(CASE WHEN state NOT IN ('done', 'failed', 'cancelled') THEN 1 ELSE 0 END)"
        " AS active, SUM(CASE WHEN state = 'failed' AND notified_at IS NULL THEN 1 ELSE 0 END)"
        " AS untold FROM jobs",
    )
    if not rows:
        return 0, 0
    return int(rows[0]["active"] or 0), int(rows[0]["untold"] or 0)


async def active_states(target: Target) -> dict[str, int]:
    """Jobs not ended yet, by state."""
    rows = await asyncio.to_thread(
        read_rows,
        target,
        "SELECT state, COUNT(*) AS n FROM jobs WHERE state NOT IN"
        " ('done', 'failed', 'cancelled') GROUP BY state",
    )
    return {row["state"]: int(row["n"]) for row in rows}


# --- members ---------------------------------------------------------------------------------


def picture(rng: Random, width: int = 640, height: int = 512) -> bytes:
    colour = (rng.randrange(256), rng.randrange(256), rng.randrange(256))
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(buffer, "PNG")
    return buffer.getvalue()


@dataclass
class Request:
    """One thing a member did that should start a job (a command, menu + modal, reply)."""

    number: int
    kind: str
    outcome: str  # what the prompt asks the simulator for: ok, fail, moderated, partial, slow
    user_id: int
    bot_up: bool  # whether the fake had a connected bot when it was sent
    interactions: list[Interaction] = field(default_factory=list)
    reply: Message | None = None
    cancel_clicked: bool = False
    unanswered: int = 0  # interactions tried while no bot was connected (never delivered)
    images: int = 1  # the images the simulator will make (0: the job must fail)

    @property
    def token(self) -> str:
        return f"soak-{self.number}"


class Members:
    """Members of the standard world sending a random mix of jobs through the fake Discord, in
    `channels` (#general and #art of the world's guild unless given: pairs of #general and #art
    of several guilds, say, each guild on its own shard)."""

    def __init__(
        self, fake: FakeDiscord, world: Any, rng: Random, channels: list[Channel] | None = None
    ) -> None:
        self.fake = fake
        self.world = world
        self.rng = rng
        self.users = [world.alice, world.bob, world.moderator, world.admin]
        self.channels = channels or [world.general, world.art]
        self.requests: list[Request] = []
        self.uploads = [(f"in-{k}.png", picture(rng)) for k in range(4)]
        self.posts: list[Message] = []  # members' pictures, for the menu and replies
        self._followups: set[asyncio.Task[None]] = set()
        self.errors: list[str] = []  # the fake refusing what a member did (a test bug)
        self.crash: BaseException | None = None

    async def post_pictures(self) -> None:
        """Members' pictures, for the menu and replies: three in each guild of `channels`."""
        w = self.world
        for general, art in zip(self.channels[::2], self.channels[1::2], strict=True):
            self.posts += [
                await self.fake.post_message(
                    general, w.alice, "my cat", attachments=[("cat.png", picture(self.rng))]
                ),
                await self.fake.post_message(
                    art,
                    w.bob,
                    "two sketches",
                    attachments=[("a.png", picture(self.rng)), ("b.png", picture(self.rng))],
                ),
                await self.fake.post_message(
                    general,
                    w.moderator,
                    "a landscape",
                    attachments=[("l.png", picture(self.rng))],
                ),
            ]

    @property
    def bot_up(self) -> bool:
        """Some bot process is connected (members act at the full rate)."""
        return bool(self.fake.connected_sessions())

    def up(self, channel: Channel) -> bool:
        """A bot process runs the shard of the channel's guild (its events reach a bot)."""
        return any(
            channel.guild_id is None or session.covers_guild(channel.guild_id)
            for session in self.fake.connected_sessions()
        )

    def _reach(self, channel: Channel) -> None:
        """Raise as the fake does when no bot at all is connected, when none runs the shard of
        the channel's guild (the fake would keep the event for a session that never resumes)."""
        if not self.up(channel):
            raise RuntimeError("no bot is connected to the fake gateway for this guild's shard")

    def _prompt(self, request: Request, words: str, n: int) -> str:
        roll = self.rng.random()
        marker = ""
        request.images = n
        if request.kind in ("cancel", "imagine-slow"):
            request.outcome = "slow"
            marker = f"sim:slow={self.rng.choice((2.5, 3, 4))}"
        elif roll < 0.07:
            request.outcome, marker = "fail", "sim:fail=InternalError.Algo"
            request.images = 0
        elif roll < 0.11:
            request.outcome, marker = "moderated", "sim:moderate-output"
            request.images = 0
        elif roll < 0.14:
            request.outcome, marker = "moderated", "sim:moderate-input"
            request.images = 0
        elif roll < 0.22 and n >= 2:
            failing = self.rng.randint(1, n - 1)
            request.outcome, marker = "partial", f"sim:partial={failing}"
            request.images = n - failing
        elif roll < 0.27:
            request.outcome, marker = "slow", f"sim:slow={self.rng.choice((1.5, 2.5))}"
        return " ".join(part for part in (request.token, words, marker) if part)

    async def act(self) -> Request:
        """Do one random thing; follow-ups (a modal, a Cancel click) run in the background."""
        kind = self.rng.choices(list(KINDS), weights=list(KINDS.values()))[0]
        user = self.rng.choice(self.users)
        n = self.rng.randint(1, 4)
        post = self.rng.choice(self.posts)  # for the menu and replies
        if kind in ("menu", "reply"):
            channel = self.fake.state.channels[post.channel_id]
        else:
            channel = self.rng.choice(self.channels)
        request = Request(len(self.requests) + 1, kind, "ok", user.id, self.up(channel))
        self.requests.append(request)
        try:
            if kind in ("imagine", "cancel", "imagine-slow"):
                options: dict[str, Any] = {"prompt": self._prompt(request, "a lighthouse", n)}
                if n > 1:
                    options["n"] = n
                if self.rng.random() < 0.3:
                    options["seed"] = self.rng.randrange(2**31)
                await self._slash(request, "imagine", options, user, channel)
                if kind == "cancel":
                    self._follow(self._cancel(request, user))
            elif kind == "imagine-model":
                options = {
                    "prompt": self._prompt(request, "a tea house", n),
                    "model": self.rng.choice(OTHER_T2I),
                    "n": n,
                }
                await self._slash(request, "imagine", options, user, channel)
            elif kind == "edit":
                count = self.rng.choice((1, 1, 2))
                options = {"prompt": self._prompt(request, "paint it in ink", n), "n": n}
                picked = self.rng.sample(self.uploads, count)
                uploads = dict(zip(("image", "image2"), picked, strict=False))
                await self._slash(request, "edit", options, user, channel, attachments=uploads)
            elif kind == "menu":
                prompt = self._prompt(request, "make it snow", 1)
                self._follow(self._menu(request, post, user, prompt))
            else:  # reply-to-edit: mention the bot in a reply to a picture
                prompt = self._prompt(request, "add a rainbow", 1)
                request.reply = await self.fake.post_message(
                    channel, user, f"<@{self.world.bot.id}> {prompt}", reference=post
                )
        except RuntimeError as exc:  # "no bot is connected to the fake gateway"
            if "no bot is connected" not in str(exc):
                raise
            request.unanswered += 1
        return request

    async def _slash(
        self,
        request: Request,
        name: str,
        options: dict[str, Any],
        user: Any,
        channel: Any,
        attachments: dict[str, tuple[str, bytes]] | None = None,
    ) -> None:
        self._reach(channel)
        interaction = await self.fake.slash(
            name, options, user=user, channel=channel, attachments=attachments
        )
        request.interactions.append(interaction)

    def _follow(self, coroutine: Any) -> None:
        task = asyncio.create_task(coroutine)
        self._followups.add(task)
        task.add_done_callback(self._followups.discard)

    async def _acked(self, interaction: Interaction, timeout: float = 5.0) -> bool:
        with contextlib.suppress(TimeoutError):
            await self.fake.wait_for_ack(interaction, timeout)
        return interaction.acknowledged

    async def _menu(self, request: Request, post: Message, user: Any, prompt: str) -> None:
        channel = self.fake.state.channels[post.channel_id]
        try:
            self._reach(channel)
            opened = await self.fake.message_command("Edit with Wan", post, user=user)
        except RuntimeError:
            request.unanswered += 1
            return
        request.interactions.append(opened)
        if not await self._acked(opened) or opened.modal is None:
            return
        await asyncio.sleep(self.rng.uniform(0.05, 0.4))  # the member types
        fields = {first_text_input(opened.modal): prompt}
        try:
            self._reach(channel)
            submitted = await self.fake.submit_modal(fields=fields, interaction=opened)
        except RuntimeError:
            request.unanswered += 1
            return
        except ValueError as exc:
            self.errors.append(f"modal of {request.token}: {exc}")
            return
        request.interactions.append(submitted)

    async def _cancel(self, request: Request, user: Any) -> None:
        if not request.interactions or not await self._acked(request.interactions[0]):
            return
        await asyncio.sleep(self.rng.uniform(0.1, 1.0))
        status = self.status_message(request)
        if status is None:
            return
        custom_id = next(
            (
                c["custom_id"]
                for c in status.iter_components()
                if CANCEL_BUTTON.match(c.get("custom_id") or "")
            ),
            None,
        )
        if custom_id is None:
            return
        try:
            self._reach(self.fake.state.channels[status.channel_id])
            click = await self.fake.click(status, custom_id, user=user, force=True)
        except RuntimeError:
            request.unanswered += 1
            return
        request.cancel_clicked = True
        request.interactions.append(click)

    def status_message(self, request: Request) -> Message | None:
        for message in reversed(list(self.fake.state.messages.values())):
            if (
                message.author.id == self.world.bot.id
                and request.token in message.content
                and any(
                    CANCEL_BUTTON.match(c.get("custom_id") or "") for c in message.iter_components()
                )
            ):
                return message
        return None

    async def run(self, plan: SoakPlan, stop: asyncio.Event) -> None:
        """Act at `plan.rate` per second while the bot is connected, `rate_down` while not."""
        try:
            while not stop.is_set():
                await self.act()
                rate = plan.rate if self.bot_up else plan.rate_down
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.rng.expovariate(rate))
        except Exception as exc:  # a bug in the test: stop the soak early, report it
            self.crash = exc
            raise

    async def drain(self, timeout: float = 15.0) -> None:
        if self._followups:
            await asyncio.wait(set(self._followups), timeout=timeout)
        for task in list(self._followups):
            task.cancel()


def first_text_input(modal: dict[str, Any]) -> str:
    """The custom_id of a modal's first text input (the edit modal asks the instruction first)."""

    def walk(items: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for item in items:
            if item.get("type") == 4:
                yield item
            if item.get("component"):
                yield from walk([item["component"]])
            yield from walk(item.get("components") or [])

    return str(next(walk(modal.get("components") or []))["custom_id"])


# --- the kill loop ---------------------------------------------------------------------------


@dataclass
class Rounds:
    kills: int = 0
    kills_before_ready: int = 0
    starts: int = 0
    active_at_kills: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0
    final_seconds: float = 0.0
    final_exit_code: int | None = None


async def wait_ready(fake: FakeDiscord, bot: BotProcess, count: int, timeout: float) -> None:
    """Until the fake answered `count` IDENTIFYs in all (the bot's gateway is up)."""
    deadline = time.monotonic() + timeout
    while fake.ready_count < count:
        if not bot.alive:
            raise RuntimeError("the bot exited during start-up" + bot.log_tail())
        if time.monotonic() > deadline:
            raise TimeoutError(f"the bot was not ready after {timeout} s" + bot.log_tail())
        await asyncio.sleep(0.02)


async def kill_loop(
    fake: FakeDiscord,
    bot: BotProcess,
    db_path: Path,
    plan: SoakPlan,
    rng: Random,
    out: Rounds,
    members: Members,
) -> None:
    started = time.monotonic()
    for round_no in range(plan.max_rounds):
        if members.crash is not None:
            break
        if out.kills >= plan.kills and await count_jobs(db_path) >= plan.jobs:
            break
        ready_before = fake.ready_count
        bot.start(f"round-{round_no:03d}")
        out.starts += 1
        began = time.monotonic()
        if rng.random() < plan.early_kills:
            await asyncio.sleep(rng.uniform(*plan.early_kill_after))
            if fake.ready_count == ready_before:
                out.kills_before_ready += 1
        else:
            await wait_ready(fake, bot, ready_before + 1, plan.ready_timeout)
            await asyncio.sleep(rng.uniform(*plan.kill_after))
        assert bot.alive, (
            f"round {round_no}: the bot exited by itself after {time.monotonic() - began:.1f} s"
            + bot.log_tail()
        )
        await bot.kill()
        out.kills += 1
        out.active_at_kills.update(await active_states(db_path))
        await asyncio.sleep(rng.uniform(0.0, 0.3))  # down for a moment
    out.seconds = time.monotonic() - started


async def final_run(
    fake: FakeDiscord, bot: BotProcess, db_path: Path, plan: SoakPlan, out: Rounds
) -> None:
    """Start the bot once more, let every job end, then stop it with SIGTERM."""
    started = time.monotonic()
    ready_before = fake.ready_count
    bot.start("final")
    out.starts += 1
    await wait_ready(fake, bot, ready_before + 1, plan.ready_timeout)
    deadline = time.monotonic() + plan.final_timeout
    while True:
        active, untold = await unfinished(db_path)
        if not active and not untold:
            break
        if time.monotonic() > deadline or not bot.alive:
            break
        await asyncio.sleep(0.25)
    with contextlib.suppress(TimeoutError):
        await fake.wait_idle(quiet=1.5, timeout=10)
    out.final_seconds = time.monotonic() - started
    out.final_exit_code = await bot.terminate() if bot.alive else bot.returncode


# --- the audit -------------------------------------------------------------------------------


@dataclass
class Audit:
    figures: dict[str, Any]
    problems: dict[str, list[str]]  # invariant -> what broke it (empty lists when all is well)


def audit(
    fake: FakeDiscord,
    world: Any,
    members: Members,
    database: Target,
    tasks: list[SimTask],
) -> Audit:
    """Every job against Discord, the ledger and the simulator's tasks."""
    jobs = read_rows(database, "SELECT * FROM jobs ORDER BY id")
    ledger: dict[int, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
    for row in read_rows(database, "SELECT job_id, entry, images FROM ledger"):
        ledger[row["job_id"]][row["entry"]].append(row["images"])
    results: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for row in read_rows(database, "SELECT * FROM results"):
        results[row["job_id"]].append(row)

    bot_id = world.bot.id
    bot_messages = [m for m in fake.state.messages.values() if m.author.id == bot_id]
    # Images posted per job: {job: {position: [message ids]}} (deleted messages count too).
    posted: dict[int, dict[int, list[int]]] = defaultdict(lambda: defaultdict(list))
    for message in bot_messages:
        for attachment in message.attachments:
            match = RESULT_FILE.match(attachment.filename)
            if match:
                posted[int(match[1])][int(match[2])].append(message.id)

    by_token = {request.token: request for request in members.requests}
    jobs_of: dict[str, list[int]] = defaultdict(list)
    tasks_of: dict[str, list[str]] = defaultdict(list)
    problems: dict[str, list[str]] = {
        k: []
        for k in (
            "lost",
            "duplicated",
            "ledger_imbalance",
            "failed_untold",
            "wrong_outcome",
            "unknown",
        )
    }
    for task in tasks:
        match = TOKEN.search(task.prompt)
        if match is None:
            problems["unknown"].append(f"task {task.task_id} for prompt {task.prompt!r}")
            continue
        tasks_of[match[0]].append(task.task_id)

    states: Counter[str] = Counter()
    kinds: Counter[str] = Counter()
    models: Counter[str] = Counter()
    repeated_notices = 0
    statusless: dict[tuple[int, str], list[tuple[str, bool]]] = defaultdict(list)
    delivered_once = failed_told_refunded = cancelled_refunded = 0
    images_charged = images_posted = orphans = 0
    no_status_message = stale_status = 0
    for job in jobs:
        job_id, state = job["id"], job["state"]
        params = json.loads(job["params"])
        match = TOKEN.search(params.get("prompt") or "")
        token = match[0] if match else None
        request = by_token.get(token or "")
        states[state] += 1
        kinds[request.kind if request else "?"] += 1
        if request is None or token is None:
            problems["unknown"].append(
                f"job {job_id}: no member asked for {params.get('prompt')!r}"
            )
            continue
        jobs_of[token].append(job_id)
        about = f"job {job_id} ({request.kind}, {request.outcome}, {state})"

        # The ledger: one reserve of n, settled once, reserve = charge + refund.
        entries = ledger.get(job_id, {})
        counts = {entry: len(values) for entry, values in entries.items()}
        reserve = sum(entries.get("reserve", []))
        charge = sum(entries.get("charge", []))
        refund = sum(entries.get("refund", []))
        images = posted.get(job_id, {})
        copies = [len(ids) for ids in images.values()]
        images_charged += charge
        images_posted += len(images)
        if counts != {"reserve": 1, "charge": 1, "refund": 1} or reserve != job["n"]:
            problems["ledger_imbalance"].append(f"{about}: ledger {dict(counts)} {dict(entries)}")
        elif reserve != charge + refund:
            problems["ledger_imbalance"].append(f"{about}: {reserve} != {charge} + {refund}")
        elif charge != len(images):
            problems["ledger_imbalance"].append(
                f"{about}: charged {charge}, {len(images)} image(s) posted"
            )
        if any(c > 1 for c in copies):
            problems["duplicated"].append(f"{about}: images posted {dict(images)}")

        # The outcome the prompt asked for: its images, a failure, or a cancel (if clicked).
        if state == "done" and charge != request.images:
            problems["wrong_outcome"].append(f"{about}: {charge} image(s), {request.images} made")
        elif state == "failed" and request.images:
            problems["wrong_outcome"].append(f"{about}: {job['error_code']}")
        elif state == "cancelled" and not request.cancel_clicked:
            problems["wrong_outcome"].append(f"{about}: nobody cancelled it")
        if job["status_message_id"] is None:
            no_status_message += 1
        status = (
            fake.state.messages.get(job["status_message_id"]) if job["status_message_id"] else None
        )
        if state not in TERMINAL:
            problems["lost"].append(f"{about}: not finished")
        elif state == "done":
            # What the row says was posted where (positions 0-based; file names are 1-based).
            recorded = {
                r["position"]: r["delivered_message_id"]
                for r in results.get(job_id, [])
                if r["delivered_message_id"] is not None
            }
            shown = {pos - 1: ids[0] for pos, ids in images.items()}
            if not images:
                problems["lost"].append(f"{about}: done, but no image was posted")
            elif recorded != shown:
                problems["lost"].append(f"{about}: recorded {recorded}, posted {shown}")
            elif charge == len(images) and all(c == 1 for c in copies):
                delivered_once += 1
            if status is not None and "✅" not in status.content:
                stale_status += 1
        else:
            if images:
                problems["duplicated"].append(f"{about}: images posted {dict(images)}")
            if charge != 0 or refund != job["n"]:
                problems["ledger_imbalance"].append(f"{about}: {dict(entries)}")
            if state == "failed" and status is None:  # told in a message of its own
                notice = f"<@{job['user_id']}> ❌ {job['error_message']}"
                key = (job["thread_id"] or job["channel_id"], notice)
                statusless[key].append((about, charge == 0 and refund == job["n"]))
            elif state == "failed" and status is not None:
                words = job["error_message"] or ""
                if not words or words not in status.content:
                    problems["failed_untold"].append(f"{about}: {job['error_code']}: {words!r}")
                elif charge == 0 and refund == job["n"]:
                    failed_told_refunded += 1
            elif charge == 0 and refund == job["n"]:
                cancelled_refunded += 1
        task_ids = tasks_of.get(token, [])
        if job["task_id"] is not None and job["task_id"] not in task_ids:
            problems["unknown"].append(f"{about}: task {job['task_id']} unknown to DashScope")
        # A task whose id a kill kept from being committed is orphaned, and the job submitted
        # again at the next start: one more attempt each. More tasks than attempts: a bug.
        if len(task_ids) > max(1, job["submit_attempts"]):
            problems["duplicated"].append(
                f"{about}: {len(task_ids)} tasks at DashScope for"
                f" {job['submit_attempts']} submission attempt(s)"
            )
        orphans += max(0, len(task_ids) - 1)
        models[job["model"]] += 1

    # Failed jobs that never got a status message are told in a message of their own, the
    # same words for the same error: enough of them for the jobs, where the jobs live.
    notices = Counter((m.channel_id, m.content) for m in bot_messages if NOTICE.match(m.content))
    for key, told in statusless.items():
        sent = notices[key]
        for about, _ in told[sent:]:
            problems["failed_untold"].append(f"{about}: no notice {key[1]!r}")
        failed_told_refunded += sum(refunded for _, refunded in told[:sent])
        repeated_notices += max(0, sent - len(told))

    for token, ids in jobs_of.items():
        if len(ids) > 1:
            problems["duplicated"].append(f"{token}: one request made jobs {ids}")
    for token in tasks_of:
        if token not in jobs_of:
            problems["unknown"].append(f"{token}: tasks at DashScope but no job")

    problems["refused"] = [
        f"{r.token} ({r.kind}): {answer}"
        for r in members.requests
        if r.token not in jobs_of and (answer := refusal(r))
    ]
    # Result posts repeated by a process after its predecessor posted them and died before
    # recording it: Discord's nonce check must have answered with the first message.
    posts: dict[str, list[Any]] = defaultdict(list)
    for rec in fake.requests_to("POST", "/channels/*/messages"):
        nonce = str((rec.json or {}).get("nonce") or "") if isinstance(rec.json, dict) else ""
        if nonce.startswith("wb") and rec.status == 200 and isinstance(rec.response, dict):
            posts[nonce].append(rec.response.get("id"))
    repeated = {nonce: ids for nonce, ids in posts.items() if len(ids) > 1}
    for nonce, ids in repeated.items():
        if len(set(ids)) > 1:
            problems["duplicated"].append(f"nonce {nonce}: posted as messages {ids}")
    # Status messages: one per job, the one its row names. A kill between posting it and
    # recording it leaves one that nobody updates (the job still runs and delivers).
    status_ids = {job["status_message_id"] for job in jobs}
    stray_status = sum(
        1
        for m in bot_messages
        if TOKEN.search(m.content) and m.id not in status_ids and not m.ephemeral
    )
    interactions = [i for r in members.requests for i in r.interactions]
    asked = [r for r in members.requests if r.interactions or r.reply is not None]
    no_job_acked = sum(
        1
        for r in members.requests
        if r.token not in jobs_of and any(i.acknowledged for i in r.interactions)
    )
    figures: dict[str, Any] = {
        "member_actions": len(members.requests),
        "member_actions_while_bot_down": sum(1 for r in members.requests if not r.bot_up),
        "interactions_sent": len(interactions),
        "interactions_not_acknowledged": sum(1 for i in interactions if not i.acknowledged)
        + sum(r.unanswered for r in members.requests),
        "interactions_while_no_bot_connected": sum(r.unanswered for r in members.requests),
        "requests_acknowledged_without_job": no_job_acked,
        "requests_refused": len(problems["refused"]),
        "replies_to_edit_sent": sum(1 for r in members.requests if r.reply is not None),
        "replies_to_edit_without_job": sum(
            1 for r in members.requests if r.reply is not None and r.token not in jobs_of
        ),
        "requests_reaching_discord": len(asked),
        "cancel_clicks": sum(1 for r in members.requests if r.cancel_clicked),
        "jobs_submitted": len(jobs),
        "jobs_by_kind": dict(sorted(kinds.items())),
        "jobs_by_state": dict(sorted(states.items())),
        "jobs_by_model": dict(sorted(models.items())),
        "delivered_once": delivered_once,
        "failed_with_message_and_refund": failed_told_refunded,
        "cancelled_with_refund": cancelled_refunded,
        "lost": len(problems["lost"]),
        "duplicated": len(problems["duplicated"]),
        "ledger_imbalance": len(problems["ledger_imbalance"]),
        "failed_without_message": len(problems["failed_untold"]),
        "wrong_outcome": len(problems["wrong_outcome"]),
        "orphan_tasks_at_dashscope": orphans,
        "tasks_at_dashscope": len(tasks),
        "images_charged": images_charged,
        "images_posted": images_posted,
        "jobs_without_status_message": no_status_message,
        "done_jobs_with_stale_status": stale_status,
        "failure_notices_repeated": repeated_notices,
        "status_messages_never_recorded": stray_status,
        "result_posts_repeated_after_kill": len(repeated),
    }
    return Audit(figures, problems)


def refusal(request: Request) -> str | None:
    """What the bot answered a request that made no job (None: no answer in words)."""
    for interaction in reversed(request.interactions):
        answers = [interaction.original, *interaction.followups]
        for answer in reversed(answers):
            if answer is not None and answer.content:
                return answer.content
    return None


def check_audit(
    result: Audit,
    members: Members,
    fake: FakeDiscord,
    gateway: dict[str, Any],
    gateway_problems: list[str],
    about: str,
) -> None:
    """What every soak asserts of its audit: each job ended in exactly one way (delivered once,
    failed told and refunded, cancelled refunded), nothing lost, doubled or unaccounted for, the
    ledger balanced, every kind of job seen, and each bot session begun afresh."""

    def show(key: str) -> str:
        return "\n  ".join(result.problems[key][:20]) + about

    assert not result.problems["lost"], "lost jobs:\n  " + show("lost")
    assert not result.problems["duplicated"], "duplicates:\n  " + show("duplicated")
    assert not result.problems["ledger_imbalance"], "ledger:\n  " + show("ledger_imbalance")
    assert not result.problems["failed_untold"], "failed, never told:\n  " + show("failed_untold")
    assert not result.problems["wrong_outcome"], "wrong outcome:\n  " + show("wrong_outcome")
    assert not result.problems["refused"], "refused:\n  " + show("refused")
    assert not result.problems["unknown"], "unaccounted for:\n  " + show("unknown")
    assert not gateway_problems, "\n".join(gateway_problems) + about
    # Every process that got as far as the gateway identified (none could resume a session).
    assert gateway["gateway_sessions_ready"] == gateway["gateway_identifies"], about
    missing = set(KINDS) - set(result.figures["jobs_by_kind"])
    assert not missing, f"no job of kind(s) {missing}" + about
    assert not members.errors, "\n".join(members.errors) + about
    assert not fake.internal_errors, f"{fake.internal_errors}" + about
    states = result.figures["jobs_by_state"]
    ended = (
        result.figures["delivered_once"]
        + result.figures["failed_with_message_and_refund"]
        + result.figures["cancelled_with_refund"]
    )
    assert ended == result.figures["jobs_submitted"], about
    assert states.get("done", 0) > 0 and states.get("failed", 0) > 0, about
    assert result.figures["images_charged"] == result.figures["images_posted"], about


def gateway_audit(fake: FakeDiscord) -> tuple[dict[str, Any], list[str]]:
    """Each bot process identified afresh after its predecessor died: READY, then the guild."""
    first: dict[str, list[str]] = defaultdict(list)
    for session_id, event, _ in fake.gateway_log:
        if len(first[session_id]) < 2:
            first[session_id].append(event)
    problems = [
        f"session {session_id} began with {events}"
        for session_id, events in first.items()
        if events != ["READY", "GUILD_CREATE"]
    ]
    figures = {
        "gateway_identifies": len(fake.identifies),
        "gateway_sessions_ready": fake.ready_count,
        "gateway_resumes": len(fake.resumes),
    }
    return figures, problems


@dataclass(frozen=True)
class SimTask:
    """An asynchronous task as the simulator saw it."""

    task_id: str
    prompt: str
    key_id: str  # which API key submitted it (`key_id`)
    submitted_at: float  # wall clock (time.time())
    ran: bool  # not cancelled while it waited (the simulator cancels only pending tasks)


def simulator_tasks(sim: SimulatorThread) -> list[SimTask]:
    """Every asynchronous task the simulator was given."""
    return sim.call(
        lambda: [
            SimTask(t.task_id, t.prompt, t.api_key_id, t.submitted_at, t.canceled_at is None)
            for t in sim.sim.store.listed()
        ]
    )


def key_id(sim: SimulatorThread, key: str) -> str:
    """The id the simulator gives the tasks an API key submits (as DashScope's task list)."""
    return sim.call(lambda: sim.sim.authenticate(f"Bearer {key}"))


# --- the cluster: two processes on PostgreSQL, a shard each --------------------------------------


@dataclass(frozen=True)
class ClusterPlan(SoakPlan):
    """`kills` counts the dispatcher's SIGKILLs (each one a fail-over)."""

    kill_after: tuple[float, float] = (0.3, 2.5)  # seconds of load between two kills
    # What one dispatcher keeps up with (MAX_IN_FLIGHT 5 per model), so a kill finds a cluster
    # at work, not a backlog that only grows.
    rate: float = 4.0
    standby_kills: float = 0.25  # share of kills that hit the standby instead
    # Share of the dispatcher's rounds that cut its lease connection (PostgreSQL ends that
    # session, as a network cut would) instead of killing it: it lives on for a moment,
    # fenced, until it finds out and exits 1 to come back as a standby.
    lease_cuts: float = 0.2
    early_kills: float = 0.2  # share of restarts killed again during their start-up
    max_rounds: int = 80
    failover_timeout: float = 30.0


@dataclass
class Run:
    """One `python -m bot` of a cluster node, from its start to its kill or exit."""

    name: str
    pid: int
    key_id: str  # its own DashScope key's id: the simulator's tasks say who submitted them
    started: float  # wall clock, as the simulator's task times
    started_monotonic: float
    ended: float | None = None  # wall clock
    ending: str = ""  # how: "killed (dispatcher)", "exit 0", ...


@dataclass
class Node:
    """One process of the cluster: a shard of two, its health endpoint, its runs."""

    name: str
    shard: int
    bot: BotProcess
    health_port: int
    runs: list[Run] = field(default_factory=list)

    @property
    def run(self) -> Run:
        return self.runs[-1]

    @property
    def holder(self) -> str:
        """How the lease row names this process (`bot.runtime.dispatcher.holder_name`)."""
        return f"{socket.gethostname()}:{self.run.pid}"


@dataclass
class ClusterRounds:
    failovers: list[float] = field(default_factory=list)  # seconds, one per dispatcher kill
    cut_failovers: list[float] = field(default_factory=list)  # seconds, one per lease cut
    standby_kills: int = 0
    startup_kills: int = 0  # restarted processes killed again before they were ready
    starts: int = 0
    active_at_kills: Counter[str] = field(default_factory=Counter)
    epochs: list[int] = field(default_factory=list)  # the lease's epoch after each fail-over
    lease_problems: list[str] = field(default_factory=list)
    two_dispatchers_seen: int = 0  # /healthz of both said dispatcher at once
    seconds: float = 0.0
    final_seconds: float = 0.0
    final_exit_codes: dict[str, int | None] = field(default_factory=dict)

    @property
    def kills(self) -> int:
        return len(self.failovers) + self.standby_kills + self.startup_kills


def cut_lease(url: str) -> int:
    """End the PostgreSQL session holding the dispatcher's lease (as a cut network would);
    how many sessions were ended (1). pg_locks shows a bigint key as its high and low halves."""
    rows = read_rows(
        url,
        f"WITH lease AS (SELECT {LEASE_LOCK} AS key)"  # noqa: S608 (our own SQL)
        " SELECT pg_terminate_backend(pid) AS ended FROM pg_locks, lease"
        " WHERE locktype = 'advisory' AND granted AND objsubid = 1"
        " AND classid::bigint = (key >> 32) & 4294967295 AND objid::bigint = key & 4294967295"
        " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
    )
    return sum(1 for row in rows if row["ended"])


# What the engine logs when the fence refused to record a task it submitted.
REFUSED = re.compile(r"the lease moved on before task (\S+) was recorded")
# What a dispatcher whose lease connection failed logs as it begins to stop (then it exits 1).
STOPPING = ("lease: lost", "the dispatcher's lease is lost")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Cluster:
    """Two bot processes on one PostgreSQL database (`url`), shards 0 and 1 of 2, each with a
    health endpoint and, per run, a DashScope key of its own (from `keys`)."""

    def __init__(
        self,
        fake: FakeDiscord,
        sim: SimulatorThread,
        url: str,
        folder: Path,
        keys: list[str],
    ) -> None:
        self.fake = fake
        self.sim = sim
        self.url = url
        self.keys = iter(keys)
        self.nodes: list[Node] = []
        for name, shard in (("a", 0), ("b", 1)):
            port = free_port()
            env = bot_environment(
                fake,
                sim,
                url,
                SHARD_COUNT="2",
                SHARD_IDS=str(shard),
                HEALTH_PORT=str(port),
            )
            logs = folder / "logs" / name
            logs.mkdir(parents=True)
            self.nodes.append(Node(name, shard, BotProcess(env, folder, logs), port))
        self.runs: dict[str, Run] = {}  # by key id
        self.http = httpx.AsyncClient(timeout=1.0)

    async def close(self) -> None:
        for node in self.nodes:
            if node.bot.alive:
                await self.kill(node, "killed (test ended)")
        await self.http.aclose()

    def start(self, node: Node) -> None:
        key = next(self.keys)
        name = f"{node.name}-{len(node.runs):03d}"
        proc = node.bot.start(name, DASHSCOPE_API_KEY=key)
        run = Run(name, proc.pid, key_id(self.sim, key), time.time(), time.monotonic())
        node.runs.append(run)
        self.runs[run.key_id] = run

    async def kill(self, node: Node, why: str) -> None:
        node.run.ended, node.run.ending = time.time(), why
        await node.bot.kill()

    async def terminate(self, node: Node) -> int:
        code = await node.bot.terminate()
        node.run.ended, node.run.ending = time.time(), f"exit {code}"
        return code

    async def wait_exit(self, node: Node, timeout: float) -> int | None:
        """The exit code of a run that is to exit by itself (None: killed after `timeout`)."""
        assert node.bot.proc is not None
        try:
            code: int | None = await asyncio.to_thread(node.bot.proc.wait, timeout)
        except subprocess.TimeoutExpired:
            await node.bot.kill()
            code = None
        node.run.ended, node.run.ending = time.time(), f"{node.run.ending}: exit {code}"
        return code

    def other(self, node: Node) -> Node:
        return next(n for n in self.nodes if n is not node)

    def check_alive(self) -> None:
        """Every node's process runs: one that exited by itself fails the soak."""
        for node in self.nodes:
            if not node.bot.alive and not node.run.ending:
                node.run.ended, node.run.ending = time.time(), f"exit {node.bot.returncode}"
                raise AssertionError(
                    f"{node.run.name} exited by itself ({node.bot.returncode})"
                    + node.bot.log_tail()
                )

    async def role(self, node: Node) -> str | None:
        """The role its /healthz names (None: no answer, or not alive)."""
        if not node.bot.alive:
            return None
        try:
            answer = await self.http.get(f"http://127.0.0.1:{node.health_port}/healthz")
        except httpx.HTTPError:
            return None
        for line in answer.text.splitlines():
            key, _, value = line.partition(": ")
            if key == "role":
                return value.strip()
        return None

    def gateway_up(self, node: Node) -> bool:
        """The run's own session of its shard is ready and connected."""
        mine = [
            i
            for i in self.fake.identified
            if i.shard[0] == node.shard and i.at >= node.run.started_monotonic
        ]
        if not mine:
            return False
        session = self.fake.sessions.get(mine[-1].session_id)
        return session is not None and session.ready and session.conn is not None

    async def wait_ready(self, node: Node, timeout: float) -> None:
        """Until the run's gateway is up and its /healthz answers with a cluster role."""
        deadline = time.monotonic() + timeout
        while not (self.gateway_up(node) and await self.role(node) in ("standby", "dispatcher")):
            self.check_alive()
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{node.run.name} not ready after {timeout} s" + node.bot.log_tail()
                )
            await asyncio.sleep(0.05)

    async def roles(self, out: ClusterRounds, timeout: float = 30.0) -> tuple[Node, Node]:
        """(the dispatcher, the standby), by their /healthz."""
        deadline = time.monotonic() + timeout
        while True:
            self.check_alive()
            roles = [await self.role(node) for node in self.nodes]
            if roles.count("dispatcher") > 1:
                out.two_dispatchers_seen += 1
            elif roles.count("dispatcher") == 1 and roles.count("standby") == 1:
                dispatcher = self.nodes[roles.index("dispatcher")]
                return dispatcher, self.other(dispatcher)
            if time.monotonic() > deadline:
                raise TimeoutError(f"no dispatcher and standby after {timeout} s: {roles}")
            await asyncio.sleep(0.05)

    async def wait_dispatcher(self, node: Node, since: float, timeout: float) -> float:
        """Seconds from `since` (monotonic) until the node's /healthz says dispatcher."""
        while await self.role(node) != "dispatcher":
            self.check_alive()
            if time.monotonic() - since > timeout:
                raise TimeoutError(
                    f"{node.run.name} did not take over within {timeout} s" + node.bot.log_tail()
                )
            await asyncio.sleep(0.02)
        return time.monotonic() - since

    def lease(self) -> dict[str, Any]:
        rows = read_rows(self.url, "SELECT epoch, holder FROM dispatcher_lease WHERE id = 1")
        return rows[0] if rows else {"epoch": 0, "holder": None}

    def refused_tasks(self) -> set[str]:
        """The tasks whose record the lease's fence refused, as their dispatchers logged."""
        return {
            match[1]
            for node in self.nodes
            for path in node.bot.logs.glob("*.log")
            for match in REFUSED.finditer(path.read_text(errors="replace"))
        }

    def error_lines(self) -> tuple[list[str], list[str]]:
        """Every run's ERROR lines and tracebacks, and apart those of runs whose lease was cut
        that come from its stopping: what it must log, and what fails in the handlers of
        requests still arriving while it shuts down."""
        errors: list[str] = []
        while_stopping: list[str] = []
        for node in self.nodes:
            for run in node.runs:
                cut = "lease cut" in run.ending
                stopping = False
                for line in node.bot.log_text(run.name).splitlines():
                    stopping = stopping or (cut and any(words in line for words in STOPPING))
                    if " ERROR " in line or " CRITICAL " in line or line.startswith("Traceback"):
                        (while_stopping if stopping else errors).append(f"{run.name}: {line}")
        return errors, while_stopping


async def cluster_kill_loop(
    cluster: Cluster, plan: ClusterPlan, rng: Random, out: ClusterRounds, members: Members
) -> None:
    """Start both nodes; then, round after round under the members' load, SIGKILL the
    dispatcher (a fail-over, timed) or the standby, restart it (sometimes killing it again
    during its start-up), until there were `plan.kills` fail-overs and `plan.jobs` jobs."""
    started = time.monotonic()
    for node in cluster.nodes:
        cluster.start(node)
        out.starts += 1
    for node in cluster.nodes:
        await cluster.wait_ready(node, plan.ready_timeout)
    for _ in range(plan.max_rounds):
        if members.crash is not None:
            break
        if (
            len(out.failovers) >= plan.kills
            and out.standby_kills > 0
            and await count_jobs(cluster.url) >= plan.jobs
        ):
            break
        await asyncio.sleep(rng.uniform(*plan.kill_after))
        dispatcher, standby = await cluster.roles(out)
        if rng.random() < plan.standby_kills:
            victim = standby
            await cluster.kill(standby, "killed (standby)")
            out.standby_kills += 1
        else:
            victim = dispatcher
            before = await asyncio.to_thread(cluster.lease)
            cut = rng.random() < plan.lease_cuts
            dropped_at = time.monotonic()
            if cut:
                dispatcher.run.ending = "lease cut"  # its exit is expected now
                await asyncio.to_thread(cut_lease, cluster.url)
            else:
                await cluster.kill(dispatcher, "killed (dispatcher)")
            seconds = await cluster.wait_dispatcher(standby, dropped_at, plan.failover_timeout)
            (out.cut_failovers if cut else out.failovers).append(round(seconds, 3))
            if cut:  # it finds out and exits 1, to come back as a standby
                code = await cluster.wait_exit(dispatcher, plan.failover_timeout)
                if code != 1:
                    out.lease_problems.append(f"{dispatcher.run.name} exited {code} after a cut")
            after = await asyncio.to_thread(cluster.lease)
            out.epochs.append(int(after["epoch"]))
            if after["holder"] != standby.holder or after["epoch"] <= before["epoch"]:
                out.lease_problems.append(f"lease {before} -> {after}, {standby.holder} took over")
        out.active_at_kills.update(await active_states(cluster.url))
        await asyncio.sleep(rng.uniform(0.0, 0.3))  # down for a moment
        cluster.start(victim)
        out.starts += 1
        if rng.random() < plan.early_kills:
            await asyncio.sleep(rng.uniform(*plan.early_kill_after))
            if not cluster.gateway_up(victim):
                cluster.check_alive()
                await cluster.kill(victim, "killed (starting)")
                out.startup_kills += 1
                await asyncio.sleep(rng.uniform(0.0, 0.3))
                cluster.start(victim)
                out.starts += 1
        await cluster.wait_ready(victim, plan.ready_timeout)
    out.seconds = time.monotonic() - started


async def cluster_final(cluster: Cluster, plan: ClusterPlan, out: ClusterRounds) -> None:
    """Both nodes run until every job has ended and been told; then SIGTERM, standby first."""
    started = time.monotonic()
    deadline = started + plan.final_timeout
    while True:
        active, untold = await unfinished(cluster.url)
        if (not active and not untold) or time.monotonic() > deadline:
            break
        cluster.check_alive()
        await asyncio.sleep(0.25)
    with contextlib.suppress(TimeoutError):
        await cluster.fake.wait_idle(quiet=1.5, timeout=10)
    dispatcher, standby = await cluster.roles(out)
    out.final_seconds = time.monotonic() - started
    for node in (standby, dispatcher):
        out.final_exit_codes[node.run.name] = await cluster.terminate(node)


def submissions_audit(
    tasks: list[SimTask], runs: dict[str, Run], refused: set[str]
) -> tuple[dict[str, Any], list[str]]:
    """Which process submitted each job's tasks (each run has a key of its own), and whether
    two dispatchers ever submitted one job at once.

    A job with tasks from two runs was submitted by two dispatchers. When the first was dead
    (killed) by the time the second submitted, its task is an orphan: its id never committed, so
    the next dispatcher submitted again, as after a restart. When the first was alive, its
    record of the task must have been refused by the lease's fence (`refused`: the task ids it
    logged), the task then cancelled unless it had started. Anything else is a double
    submission: two dispatchers acting at once."""
    by_token: dict[str, list[SimTask]] = defaultdict(list)
    problems = []
    for task in tasks:
        match = TOKEN.search(task.prompt)
        if task.key_id not in runs:
            problems.append(f"task {task.task_id}: submitted with a key no run had")
        if match is not None:
            by_token[match[0]].append(task)
    orphans = same_run = fenced = fenced_ran = doubles = 0
    for token, mine in by_token.items():
        mine.sort(key=lambda task: task.submitted_at)
        for index, later in enumerate(mine):
            for earlier in mine[:index]:
                first, second = runs.get(earlier.key_id), runs.get(later.key_id)
                if first is None or second is None:
                    continue
                if first is second:
                    same_run += 1
                elif first.ended is not None and first.ended <= later.submitted_at:
                    orphans += 1
                elif earlier.task_id in refused:
                    fenced += 1
                    fenced_ran += earlier.ran and later.ran
                else:
                    doubles += 1
                    problems.append(
                        f"{token}: task {earlier.task_id} by {first.name} and {later.task_id}"
                        f" by {second.name}, both alive, neither refused by the fence"
                    )
    figures = {
        "jobs_submitted_more_than_once": sum(1 for mine in by_token.values() if len(mine) > 1),
        "orphan_tasks_of_killed_dispatchers": orphans,
        "resubmitted_by_the_same_process": same_run,
        "double_submissions": doubles,
        "submissions_refused_by_the_fence": fenced,
        "refused_submissions_that_ran_anyway": fenced_ran,
        "tasks_by_run": dict(Counter(runs[t.key_id].name for t in tasks if t.key_id in runs)),
    }
    return figures, problems


def percentile(values: list[float], share: float) -> float | None:
    """The nearest-rank percentile (`share` 0.95: p95); None of nothing."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]
