"""Secrets never leave the process: an end-to-end run at DEBUG whose every output is searched.

The real bot runs as a subprocess (`python -m bot`, so the production logging set-up is what is
tested) with LOG_LEVEL=DEBUG against the fake Discord and the DashScope simulator, both in this
process on loopback. It is driven through successes and failures: /imagine and /edit, DashScope
401 (the key revoked), 500s, dropped connections and moderation, Discord 5xx, 429, 403 and 404
(failed interaction callbacks and follow-ups raise inside command callbacks, so their tracebacks
reach the log), and a delivery refused by Discord that ends in a failure notice. The
`imagine` and `doctor` commands run with a wrong key and a wrong token.

Then everything is searched for the Discord token and the API keys, whole and in recognisable
fragments: the bot's stdout and stderr, the CLI's output, every request the fake Discord received
(messages, embeds, ephemeral answers, thread names, uploaded files), the database file with its
WAL (jobs.error_message, audit_log), and the texts of exceptions raised by failed HTTP calls.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import re
import secrets
import signal
import sqlite3
import sys
import time
import traceback
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import discord
import httpx
import pytest
import pytest_asyncio

from bot.config import ConfigError, load_settings
from bot.dashscope import AuthenticationError, DashScopeClient
from bot.dashscope.retry import NO_RETRIES
from bot.logs import REDACTED
from bot.media.downloads import ResultFetcher
from bot.runtime.target import dashscope_target
from bot.simulator import RunningSimulator, SimulatorConfig, start_simulator
from tests.discord_env import png
from tests.fakediscord import FakeDiscord
from tests.figures import record

pytestmark = pytest.mark.asyncio(loop_scope="module")

ROOT = Path(__file__).resolve().parent.parent
# Distinctive values, each with its own random parts: a token in Discord's three-segment shape,
# keys in DashScope's shape.
TOKEN = f"MTQwWanTok{secrets.token_hex(6)}.Gsec{secrets.token_hex(2)}.{secrets.token_urlsafe(27)}"
KEY = f"sk-wanKey{secrets.token_hex(14)}"
WRONG_KEY = f"sk-wrongKey{secrets.token_hex(14)}"
WRONG_TOKEN = (
    f"MTQwWrong{secrets.token_hex(6)}.Gwrg{secrets.token_hex(2)}.{secrets.token_urlsafe(27)}"
)
SECRETS = {"token": TOKEN, "key": KEY, "wrong key": WRONG_KEY, "wrong token": WRONG_TOKEN}
WINDOW = 12  # any 12 characters of a secret in a row count as a leak
TRACEBACK = "Traceback (most recent call last):"


def fragments(secret: str) -> set[str]:
    """What would give a secret away: itself, its header forms, its encodings, its parts."""
    body = secret.removeprefix("sk-")
    found = {
        secret,
        body,
        f"Bot {secret}",
        f"Bearer {secret}",
        base64.b64encode(secret.encode()).decode(),
        base64.b64encode(secret.encode()).decode()[:WINDOW],
        secret[::-1],
    }
    found |= {part for part in secret.split(".") if len(part) >= 6}
    found |= {body[i : i + WINDOW] for i in range(0, max(1, len(body) - WINDOW + 1))}
    return found


NEEDLES = {name: fragments(value) for name, value in SECRETS.items()}


def leaks(haystack: str, where: str) -> list[str]:
    return [
        f"{where}: {name} fragment {needle!r}"
        for name, needles in NEEDLES.items()
        for needle in needles
        if needle in haystack
    ]


def tracebacks(log: str) -> list[str]:
    """The traceback blocks in a log: from the header to the first unindented line after it."""
    blocks = []
    lines = log.splitlines()
    for start, line in enumerate(lines):
        if line.strip() == TRACEBACK:
            end = start + 1
            while end < len(lines) and (
                lines[end].startswith((" ", "\t")) or not re.match(r"^\d{4}-\d\d-\d\d ", lines[end])
            ):
                end += 1
            blocks.append("\n".join(lines[start:end]))
    return blocks


# --- the run ----------------------------------------------------------------------------------


@dataclass
class Run:
    fake: FakeDiscord
    sim: RunningSimulator
    world: Any
    db_path: Path
    process: asyncio.subprocess.Process | None = None
    out_path: Path | None = None
    err_path: Path | None = None
    cli_outputs: dict[str, str] = field(default_factory=dict)
    exception_texts: list[str] = field(default_factory=list)
    outcomes: dict[str, tuple[str, str | None]] = field(default_factory=dict)

    def db(self) -> sqlite3.Connection:
        return sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True, timeout=5)

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with contextlib.closing(self.db()) as conn:
            return list(conn.execute(sql, params).fetchall())

    def latest_job(self) -> int:
        [(latest,)] = self.query("SELECT COALESCE(MAX(id), 0) FROM jobs")
        return int(latest)

    async def new_job(self, after: int, timeout: float = 15.0) -> int:
        deadline = time.monotonic() + timeout
        while (latest := self.latest_job()) <= after:
            self.alive()
            assert time.monotonic() < deadline, "no job was created"
            await asyncio.sleep(0.05)
        return latest

    async def wait_job(
        self,
        job_id: int,
        states: Iterable[str] = ("done", "failed", "cancelled"),
        timeout: float = 30.0,
    ) -> tuple[str, str | None, int | None]:
        wanted = set(states)
        deadline = time.monotonic() + timeout
        while True:
            [(state, message, thread)] = self.query(
                "SELECT state, error_message, thread_id FROM jobs WHERE id = ?", (job_id,)
            )
            if state in wanted:
                return state, message, thread
            self.alive()
            assert time.monotonic() < deadline, f"job {job_id} is still {state}"
            await asyncio.sleep(0.05)

    def alive(self) -> None:
        assert self.process is not None and self.process.returncode is None, self.stderr()[-3000:]

    def stderr(self) -> str:
        assert self.err_path is not None
        return self.err_path.read_text(errors="replace")

    def stdout(self) -> str:
        assert self.out_path is not None
        return self.out_path.read_text(errors="replace")


def clean_env(**values: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DASHSCOPE_", "DISCORD_", "WANBOT_", "LIMIT_", "LOG_"))
    }
    env["PYTHONPATH"] = str(ROOT)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(values)
    return env


async def run_cli(cwd: Path, *args: str, timeout: float = 60.0, **values: str) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        *args,
        cwd=cwd,
        env=clean_env(LOG_LEVEL="DEBUG", **values),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(process.communicate(), timeout)
    assert process.returncode is not None
    return process.returncode, out.decode(errors="replace")


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def run(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Run]:
    home = tmp_path_factory.mktemp("secrets")
    fake = FakeDiscord(token=TOKEN)
    await fake.start()
    world = fake.standard_world()
    sim = await start_simulator(SimulatorConfig(api_keys={KEY}, speed=300.0, seed=7))
    state = Run(fake, sim, world, home / "wanbot.db")
    state.out_path, state.err_path = home / "bot.stdout", home / "bot.stderr"
    env = clean_env(
        DISCORD_TOKEN=TOKEN,
        DISCORD_API_BASE_URL=fake.api_base,
        DISCORD_GATEWAY_URL=fake.gateway_url,
        DEV_GUILD_ID=str(world.guild.id),
        DASHSCOPE_API_KEY=KEY,
        DASHSCOPE_BASE_URL=sim.base_url,
        DATABASE_PATH=str(state.db_path),
        LOG_LEVEL="DEBUG",
        LIMIT_COOLDOWN_SECONDS="0",
        LIMIT_CONCURRENT_JOBS_PER_USER="0",
    )
    with state.out_path.open("wb") as out, state.err_path.open("wb") as err:
        state.process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot", cwd=home, env=env, stdout=out, stderr=err
        )
    try:
        deadline = time.monotonic() + 30
        while not (fake.connected_sessions() and "logged in as" in state.stderr()):
            state.alive()
            assert time.monotonic() < deadline, state.stderr()[-3000:]
            await asyncio.sleep(0.05)
        await drive(state, home)
    finally:
        process = state.process
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), 30)
            except TimeoutError:
                process.kill()
                await process.wait()
    try:
        yield state
    finally:
        await sim.stop()
        await fake.stop()


async def slash(run: Run, name: str, options: dict[str, Any], **kw: Any) -> Any:
    inter = await run.fake.slash(name, options, channel=run.world.general, **kw)
    await run.fake.wait_for_ack(inter, timeout=10)
    return inter


async def job_from(run: Run, name: str, options: dict[str, Any], **kw: Any) -> int:
    before = run.latest_job()
    await slash(run, name, options, user=kw.pop("user", run.world.alice), **kw)
    return await run.new_job(before)


async def drive(run: Run, home: Path) -> None:
    fake, sim, w = run.fake, run.sim.sim, run.world

    # An interaction callback refused by Discord: the command's defer raises Forbidden inside
    # discord.py's HTTP client; the bot logs it with its traceback and answers again.
    fake.fail_next("POST", "/interactions/*/*/callback", 403, code=50013)
    await slash(run, "imagine", {"prompt": "refused callback"}, user=w.bob)
    await fake.settle()

    # The "queued" follow-up fails with 404 (Unknown Webhook): another traceback, job unharmed.
    fake.fail_next("POST", "/webhooks/*/*", 404, code=10015, message="Unknown Webhook")
    followup_job = await job_from(run, "imagine", {"prompt": "a follow-up that fails"})

    # DashScope 500s and a dropped connection, retried; Discord 502 on an edit and 429 on a post.
    sim.set_faults(
        script=[
            {"route": "submit", "action": "500"},
            {"route": "submit", "action": "503"},
            {"route": "query", "action": "drop"},
        ]
    )
    fake.fail_next("PATCH", "/channels/*/messages/*", 502)
    fake.fail_next("POST", "/channels/*/messages", 429, retry_after=0.3)
    jobs = {
        "imagine": await job_from(run, "imagine", {"prompt": "a lighthouse at dawn", "n": 2}),
        "edit": await job_from(
            run,
            "edit",
            {"prompt": "make it blue"},
            attachments={"image": ("in.png", png(), "image/png")},
        ),
        "moderated input": await job_from(run, "imagine", {"prompt": "x sim:moderate-input"}),
        "moderated output": await job_from(run, "imagine", {"prompt": "y sim:moderate-output"}),
        "follow-up failed": followup_job,
    }
    for name, job_id in jobs.items():
        state, message, _ = await run.wait_job(job_id)
        run.outcomes[name] = (state, message)

    # The key is revoked at DashScope: 401 InvalidApiKey, the job fails in words.
    revoked = dict(sim.keys)
    sim.keys.clear()
    job_id = await job_from(run, "imagine", {"prompt": "with a revoked key"})
    state, message, _ = await run.wait_job(job_id)
    run.outcomes["401"] = (state, message)
    sim.keys.update(revoked)

    # Discord refuses the result post (403): the job fails and the user is told.
    job_id = await job_from(run, "imagine", {"prompt": "refused delivery sim:slow=2"})
    _, _, thread = await run.wait_job(job_id, ("submitted", "running"))
    assert thread is not None
    fake.fail_next("POST", f"/channels/{thread}/messages", 403, code=50013, times=20)
    state, message, _ = await run.wait_job(job_id)
    run.outcomes["delivery refused"] = (state, message)
    fake.clear_faults()
    await fake.settle()

    # The command line with a wrong key, and doctor with a wrong key and a wrong token.
    (home / "cli").mkdir()
    results = await asyncio.gather(
        run_cli(
            home / "cli",
            "imagine",
            "a cli picture",
            "--out",
            str(home / "cli" / "out"),
            DASHSCOPE_API_KEY=WRONG_KEY,
            DASHSCOPE_BASE_URL=run.sim.base_url,
        ),
        run_cli(
            home / "cli",
            "doctor",
            DISCORD_TOKEN=TOKEN,
            DISCORD_API_BASE_URL=fake.api_base,
            DASHSCOPE_API_KEY=WRONG_KEY,
            DASHSCOPE_BASE_URL=run.sim.base_url,
            DATABASE_PATH=str(home / "cli" / "doctor.db"),
        ),
        run_cli(
            home / "cli",
            "doctor",
            DISCORD_TOKEN=WRONG_TOKEN,
            DISCORD_API_BASE_URL=fake.api_base,
            DASHSCOPE_API_KEY=KEY,
            DASHSCOPE_BASE_URL=run.sim.base_url,
            DATABASE_PATH=str(home / "cli" / "doctor.db"),
        ),
    )
    for name, (code, output) in zip(
        ("imagine wrong key", "doctor wrong key", "doctor wrong token"), results, strict=True
    ):
        run.cli_outputs[name] = output
        run.outcomes[name] = (str(code), None)

    run.exception_texts.extend(await failed_call_texts(run))


async def failed_call_texts(run: Run) -> list[str]:
    """The texts (str, repr, formatted traceback) of exceptions from failed HTTP calls made in
    this process with the secrets: a refused key, a refused token, a connection refused."""
    texts: list[str] = []

    def describe(exc: BaseException) -> None:
        texts.extend([str(exc), repr(exc), "".join(traceback.format_exception(exc))])

    async with httpx.AsyncClient() as http:
        client = DashScopeClient(WRONG_KEY, run.sim.base_url, http=http, retry=NO_RETRIES)
        with pytest.raises(AuthenticationError) as caught:
            await client.list_tasks(page_size=1)
        describe(caught.value)
        closed = DashScopeClient(KEY, "http://127.0.0.1:9/api/v1", http=http, retry=NO_RETRIES)
        with pytest.raises(Exception) as caught_closed:
            await closed.list_tasks(page_size=1)
        describe(caught_closed.value)
    old_base = discord.http.Route.BASE
    discord.http.Route.BASE = run.fake.api_base
    http_client = discord.http.HTTPClient(None)  # type: ignore[arg-type]
    try:
        with pytest.raises(discord.LoginFailure) as refused:
            await http_client.static_login(WRONG_TOKEN)
        describe(refused.value)
    finally:
        await http_client.close()
        discord.http.Route.BASE = old_base
    return texts


# --- the searches -------------------------------------------------------------------------------


def fake_discord_texts(fake: FakeDiscord) -> list[tuple[str, str]]:
    """Everything Discord received: requests (bodies, headers, files) and the stored messages."""
    out: list[tuple[str, str]] = []
    for rec in fake.requests:
        body = json.dumps(rec.json, ensure_ascii=False, default=str)
        headers = json.dumps(rec.headers)
        out.append((f"{rec.method} {rec.path}", f"{rec.path} {rec.query} {headers} {body}"))
        for upload in rec.files:
            out.append((f"file {upload.filename}", upload.data.decode("latin-1")))
    for message in fake.state.messages.values():
        shown = json.dumps(
            {
                "content": message.content,
                "embeds": message.embeds,
                "components": message.components,
                "files": [a.filename for a in message.attachments],
            },
            ensure_ascii=False,
            default=str,
        )
        out.append((f"message {message.id}", shown))
    for channel in fake.state.channels.values():
        out.append((f"channel {channel.id}", str(channel.name)))
    for _, modal in fake.modals_sent:
        out.append(("modal", json.dumps(modal, ensure_ascii=False)))
    return out


async def test_nothing_captured_contains_a_secret(run: Run) -> None:
    log = run.stderr() + run.stdout()
    haystacks: list[tuple[str, str]] = [("bot log", log)]
    haystacks += [(f"cli {name}", output) for name, output in run.cli_outputs.items()]
    haystacks += fake_discord_texts(run.fake)
    db_files = [p for p in run.db_path.parent.glob("wanbot.db*") if p.is_file()]
    haystacks += [(f"db file {p.name}", p.read_bytes().decode("latin-1")) for p in db_files]
    db_rows = run.query("SELECT id, state, error_code, error_message FROM jobs")
    db_rows += run.query("SELECT * FROM audit_log")
    haystacks.append(("db rows", json.dumps(db_rows, default=str)))
    haystacks += [("exception text", text) for text in run.exception_texts]

    found = [hit for where, text in haystacks for hit in leaks(text, where)]
    assert found == [], "\n".join(found[:40])

    blocks = tracebacks(log)
    http_failures = [
        b
        for b in blocks
        if ("discord/http.py" in b or "discord/webhook/async_.py" in b)
        and any(f"discord.errors.{name}:" in b for name in ("Forbidden", "NotFound"))
    ]
    record(
        "secrets",
        log_bytes=len(log.encode()),
        log_lines=log.count("\n"),
        messages_searched=len(run.fake.state.messages),
        requests_searched=len(run.fake.requests),
        tracebacks_seen=len(blocks),
        http_failure_tracebacks=len(http_failures),
        exception_texts=len(run.exception_texts),
        db_bytes=sum(p.stat().st_size for p in db_files),
        redactions=log.count(REDACTED),
        leaks=len(found),
    )
    # Not vacuous: the run logged at DEBUG, failed HTTP calls left tracebacks, the DB was read.
    assert " DEBUG " in log and len(log) > 20_000
    assert http_failures, "no traceback of a failed HTTP call was captured"
    assert db_files and len(run.fake.state.messages) > 10


async def test_the_run_went_through_the_failures_it_claims(run: Run) -> None:
    """The scenarios did what they should, so the search above covered them."""
    outcomes = run.outcomes
    assert outcomes["imagine"][0] == "done"
    assert outcomes["edit"][0] == "done"
    assert outcomes["follow-up failed"][0] == "done"
    for name in ("moderated input", "moderated output", "401", "delivery refused"):
        state, message = outcomes[name]
        assert state == "failed" and message, (name, outcomes[name])
    assert "API key was refused" in (outcomes["401"][1] or "")
    assert "could not be delivered" in (outcomes["delivery refused"][1] or "")
    assert outcomes["imagine wrong key"][0] == "1"
    assert outcomes["doctor wrong key"][0] == "1" and outcomes["doctor wrong token"][0] == "1"
    assert "DashScope refused DASHSCOPE_API_KEY" in run.cli_outputs["doctor wrong key"]
    assert "Discord refused DISCORD_TOKEN" in run.cli_outputs["doctor wrong token"]
    log = run.stderr()
    assert "unexpected error in an interaction" in log
    assert "dashscope POST" in log and "-> 500" in log  # the injected 500 was seen and retried
    assert run.process is not None and run.process.returncode == 0, log[-3000:]


# --- repr and str of what holds the secrets ---------------------------------------------------------


async def test_the_search_finds_what_it_looks_for() -> None:
    """The needles work: each form of a leak would be caught."""
    for secret in SECRETS.values():
        body = secret.removeprefix("sk-")
        for leaked in (
            secret,
            f"Authorization: Bot {secret}",
            f"Bearer {secret}",
            body,
            body[5:17],
            secret.split(".")[0],
            base64.b64encode(secret.encode()).decode(),
        ):
            assert leaks(f"... {leaked} ...", "probe"), leaked
    assert leaks(f"key={KEY[:-1]}", "probe")  # a truncated key is still a leak
    assert not leaks("sk- Bot Bearer [redacted] MTQw", "probe")


async def test_settings_never_show_their_secrets() -> None:
    settings = load_settings(discord_token=TOKEN, dashscope_api_key=KEY, _env_file=None)
    shown = [repr(settings), str(settings), settings.model_dump_json(), repr(settings.model_dump())]
    shown += [repr(settings.discord_token), str(settings.dashscope_api_key)]
    for text in shown:
        assert leaks(text, "settings") == []
    with pytest.raises(ConfigError) as bad:
        load_settings(dashscope_api_key=f"{KEY} x", discord_token=TOKEN, _env_file=None)
    assert leaks(str(bad.value), "config error") == []
    assert "DASHSCOPE_API_KEY" in str(bad.value)


async def test_clients_never_show_their_secrets() -> None:
    settings = load_settings(
        discord_token=TOKEN,
        dashscope_api_key=KEY,
        dashscope_base_url="http://127.0.0.1:9/api/v1",
        _env_file=None,
    )
    async with httpx.AsyncClient() as http, dashscope_target(settings) as target:
        client = DashScopeClient(target.api_key, target.base_url, http=http)
        fetcher = ResultFetcher(http, target.base_url)
        discord_http = discord.http.HTTPClient(None)  # type: ignore[arg-type]
        discord_http.token = TOKEN
        try:
            for thing in (client, client.with_retry(NO_RETRIES), http, fetcher, target):
                assert leaks(repr(thing), type(thing).__name__) == []
                assert leaks(str(thing), type(thing).__name__) == []
            assert leaks(repr(discord_http), "discord HTTPClient") == []
            assert leaks(repr(http.headers), "httpx headers") == []
        finally:
            await discord_http.close()
