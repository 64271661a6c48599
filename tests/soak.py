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
import os
import re
import signal
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

from PIL import Image

from bot.simulator import SimulatorThread
from tests.fakediscord import FakeDiscord, Interaction, Message

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


def bot_environment(fake: FakeDiscord, sim: SimulatorThread, db_path: Path) -> dict[str, str]:
    """`python -m bot`'s environment: the settings `tests.discord_env.bot_env` gives the bot
    in-process, as variables; nothing DASHSCOPE_/DISCORD_/WANBOT_ inherited."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DASHSCOPE_", "DISCORD_", "WANBOT_"))
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
        DATABASE_PATH=str(db_path),
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

    def start(self, name: str) -> subprocess.Popen[bytes]:
        assert self.proc is None or self.proc.poll() is not None, "the bot is running already"
        self.runs += 1
        self.name = name
        with (self.logs / f"{name}.log").open("ab") as stderr:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "bot"],
                env=self.env,
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


def read_rows(db_path: Path, sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
    if not db_path.exists():
        return []
    connection = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=10)
    try:
        connection.row_factory = sqlite3.Row
        return [dict(row) for row in connection.execute(sql, params).fetchall()]
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):  # the first run has not migrated yet
            return []
        raise
    finally:
        connection.close()


async def count_jobs(db_path: Path) -> int:
    rows = await asyncio.to_thread(read_rows, db_path, "SELECT COUNT(*) AS n FROM jobs")
    return int(rows[0]["n"]) if rows else 0


async def unfinished(db_path: Path) -> tuple[int, int]:
    """(jobs not in a terminal state, failed jobs whose user was not told yet)."""
    rows = await asyncio.to_thread(
        read_rows,
        db_path,
        "SELECT SUM(state NOT IN ('done', 'failed', 'cancelled')) AS active,"
        " SUM(state = 'failed' AND notified_at IS NULL) AS untold FROM jobs",
    )
    if not rows:
        return 0, 0
    return int(rows[0]["active"] or 0), int(rows[0]["untold"] or 0)


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
    """Members of the standard world sending a random mix of jobs through the fake Discord."""

    def __init__(self, fake: FakeDiscord, world: Any, rng: Random) -> None:
        self.fake = fake
        self.world = world
        self.rng = rng
        self.users = [world.alice, world.bob, world.moderator, world.admin]
        self.channels = [world.general, world.art]
        self.requests: list[Request] = []
        self.uploads = [(f"in-{k}.png", picture(rng)) for k in range(4)]
        self.posts: list[Message] = []  # members' pictures, for the menu and replies
        self._followups: set[asyncio.Task[None]] = set()
        self.errors: list[str] = []  # the fake refusing what a member did (a test bug)
        self.crash: BaseException | None = None

    async def post_pictures(self) -> None:
        w = self.world
        self.posts = [
            await self.fake.post_message(
                w.general, w.alice, "my cat", attachments=[("cat.png", picture(self.rng))]
            ),
            await self.fake.post_message(
                w.art,
                w.bob,
                "two sketches",
                attachments=[("a.png", picture(self.rng)), ("b.png", picture(self.rng))],
            ),
            await self.fake.post_message(
                w.general, w.moderator, "a landscape", attachments=[("l.png", picture(self.rng))]
            ),
        ]

    @property
    def bot_up(self) -> bool:
        return bool(self.fake.connected_sessions())

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
        request = Request(len(self.requests) + 1, kind, "ok", user.id, self.bot_up)
        self.requests.append(request)
        n = self.rng.randint(1, 4)
        channel = self.rng.choice(self.channels)
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
                post = self.rng.choice(self.posts)
                prompt = self._prompt(request, "make it snow", 1)
                self._follow(self._menu(request, post, user, prompt))
            else:  # reply-to-edit: mention the bot in a reply to a picture
                post = self.rng.choice(self.posts)
                prompt = self._prompt(request, "add a rainbow", 1)
                channel = self.fake.state.channels[post.channel_id]
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
        try:
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
        for row in await asyncio.to_thread(
            read_rows,
            db_path,
            "SELECT state, COUNT(*) AS n FROM jobs WHERE state NOT IN"
            " ('done', 'failed', 'cancelled') GROUP BY state",
        ):
            out.active_at_kills[row["state"]] += int(row["n"])
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
    db_path: Path,
    tasks: list[tuple[str, str]],
) -> Audit:
    """Every job against Discord, the ledger and the simulator's tasks."""
    jobs = read_rows(db_path, "SELECT * FROM jobs ORDER BY id")
    ledger: dict[int, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
    for row in read_rows(db_path, "SELECT job_id, entry, images FROM ledger"):
        ledger[row["job_id"]][row["entry"]].append(row["images"])
    results: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for row in read_rows(db_path, "SELECT * FROM results"):
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
    for task_id, prompt in tasks:
        match = TOKEN.search(prompt)
        if match is None:
            problems["unknown"].append(f"task {task_id} for prompt {prompt!r}")
            continue
        tasks_of[match[0]].append(task_id)

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


def simulator_tasks(sim: SimulatorThread) -> list[tuple[str, str]]:
    """(task id, prompt) of every asynchronous task the simulator was given."""
    return sim.call(lambda: [(t.task_id, t.prompt) for t in sim.sim.store.listed()])
