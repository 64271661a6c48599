"""SSRF and resource limits end to end: the real bot against the fake Discord and the simulator.

DashScope is reached through a small loopback proxy (the configured `DASHSCOPE_BASE_URL`, so the
one origin besides `*.aliyuncs.com` the bot may fetch results from). The proxy passes the API
through to the simulator and can rewrite the result URLs of a task's answer: to the cloud
metadata address, to another loopback port, to `file://`, to an https host off the allow-list,
to its own origin redirecting elsewhere, or to bodies over `DOWNLOAD_MAX_BYTES`. A separate
"forbidden" server on loopback answers every request with a valid PNG and counts them, so a
single request to it would both make the job succeed and show in its counter.

Attachments for edits come from Discord: the fake's attachment URLs are rewritten to the
forbidden server for `/edit`, the "Edit with Wan" menu and reply-to-edit; the bot must refuse them
without fetching.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import httpx
import pytest
import pytest_asyncio
from aiohttp import web

from bot.config import load_settings
from bot.discord_ui.attachments import AttachmentOrigins
from bot.discord_ui.render import failure_detail
from bot.jobs.model import Job, JobState
from tests.discord_env import (
    BotEnv,
    bot_env,
    embed_fields,
    imagine,
    launch,
    png,
    replies,
    reply_text,
    submit_modal,
)
from tests.figures import record

pytestmark = pytest.mark.asyncio(loop_scope="module")

CAP = 1024 * 1024  # DOWNLOAD_MAX_BYTES for this bot (the smallest the settings allow)
CHUNK = 64 * 1024  # what the huge endpoints write at a time; httpx reads at most this much
HUGE_TOTAL = 64 * 1024 * 1024
READ_SLACK = 64 * 1024  # httpx/httpcore hand over at most one 64 KiB read at a time
METADATA = "http://169.254.169.254/latest/meta-data/iam/security-credentials/"
FIGURES: Counter[str] = Counter()


@dataclass
class Forbidden:
    """A server no request of the bot may reach. It serves a valid PNG to anyone who asks."""

    root: str = ""
    hits: list[str] = field(default_factory=list)
    runner: web.AppRunner | None = None

    async def start(self) -> None:
        image = png(64, 64, (250, 0, 0))

        async def anything(request: web.Request) -> web.Response:
            self.hits.append(request.path_qs)
            return web.Response(body=image, content_type="image/png")

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", anything)
        self.runner, self.root = await serve(app)


@dataclass
class Proxy:
    """DASHSCOPE_BASE_URL for the bot: the simulator behind it, result URLs rewritable."""

    upstream: str = ""  # the simulator's root, set once the simulator runs
    root: str = ""
    runner: web.AppRunner | None = None
    session: aiohttp.ClientSession | None = None
    # (the URL the proxy would give, the image's index) → the URL to give instead
    rewrite: Callable[[str, int], str] | None = None
    rewritten: list[str] = field(default_factory=list)
    hits: Counter[str] = field(default_factory=Counter)
    sent: dict[str, int] = field(default_factory=dict)
    finished: dict[str, asyncio.Event] = field(default_factory=dict)

    @property
    def base_url(self) -> str:
        return f"{self.root}/api/v1"

    async def start(self) -> None:
        self.session = aiohttp.ClientSession(auto_decompress=False)
        app = web.Application()
        app.router.add_route("*", "/api/v1/{tail:.*}", self.api)
        app.router.add_get("/results/{tail:.*}", self.result)
        app.router.add_get("/redirect", self.redirect)
        app.router.add_get("/huge", self.huge)
        app.router.add_get("/huge-declared", self.huge_declared)
        self.runner, self.root = await serve(app)

    async def stop(self) -> None:
        if self.session is not None:
            await self.session.close()
        if self.runner is not None:
            await self.runner.cleanup()

    async def api(self, request: web.Request) -> web.Response:
        assert self.session is not None
        self.hits["api"] += 1
        headers = {
            name: value
            for name, value in request.headers.items()
            if name.lower()
            in ("authorization", "content-type", "x-dashscope-async", "x-dashscope-workspace")
        }
        async with self.session.request(
            request.method,
            self.upstream + request.path_qs,
            data=await request.read(),
            headers=headers,
        ) as answer:
            body = await answer.read()
            content_type = answer.headers.get("Content-Type", "application/json")
            if "json" in content_type:
                body = json.dumps(self._rewrite(json.loads(body)), ensure_ascii=False).encode()
            passed = {k: v for k, v in answer.headers.items() if k.lower() in ("retry-after",)}
            return web.Response(
                status=answer.status, body=body, headers={"Content-Type": content_type, **passed}
            )

    def _rewrite(self, value: Any) -> Any:
        if isinstance(value, dict):
            return {k: self._rewrite(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self._rewrite(v) for v in value]
        if isinstance(value, str) and value.startswith(f"{self.upstream}/results/"):
            ours = self.root + value.removeprefix(self.upstream)
            if self.rewrite is None:
                return ours
            index = int(value.split("?")[0].rsplit("/", 1)[1].split(".")[0])
            new = self.rewrite(ours, index)
            self.rewritten.append(new)
            return new
        return value

    async def result(self, request: web.Request) -> web.Response:
        assert self.session is not None
        self.hits["result"] += 1
        async with self.session.get(self.upstream + request.path_qs) as answer:
            return web.Response(
                status=answer.status,
                body=await answer.read(),
                content_type=answer.content_type,
            )

    async def redirect(self, request: web.Request) -> web.Response:
        self.hits["redirect"] += 1
        raise web.HTTPFound(request.query["to"])

    async def huge(self, request: web.Request) -> web.StreamResponse:
        """A body without Content-Length that would go on for 64 MiB."""
        self.hits["huge"] += 1
        return await self._stream(request, "huge", declared=False)

    async def huge_declared(self, request: web.Request) -> web.StreamResponse:
        """A body that says (truthfully) it is 64 MiB."""
        self.hits["huge-declared"] += 1
        return await self._stream(request, "huge-declared", declared=True)

    async def _stream(
        self, request: web.Request, name: str, *, declared: bool
    ) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "image/png"})
        if declared:
            response.content_length = HUGE_TOTAL
        else:
            response.enable_chunked_encoding()
        self.sent[name] = 0
        done = self.finished.setdefault(name, asyncio.Event())
        done.clear()
        try:
            await response.prepare(request)
            block = b"\x89PNG\r\n\x1a\n".ljust(CHUNK, b"\0")
            while self.sent[name] < HUGE_TOTAL:
                await response.write(block)
                self.sent[name] += len(block)
            await response.write_eof()
        except (ConnectionResetError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            done.set()
        return response


async def serve(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}"


@dataclass
class World:
    env: BotEnv
    proxy: Proxy
    forbidden: Forbidden


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def world(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[World]:
    proxy, forbidden = Proxy(), Forbidden()
    await proxy.start()
    await forbidden.start()
    try:
        async with bot_env(
            tmp_path_factory.mktemp("ssrf"),
            dashscope_base_url=proxy.base_url,
            download_max_bytes=CAP,
        ) as env:
            proxy.upstream = env.sim.root_url
            yield World(env, proxy, forbidden)
    finally:
        await proxy.stop()
        assert forbidden.runner is not None
        await forbidden.runner.cleanup()
    record(
        "ssrf",
        cases=FIGURES["cases"],
        refused=FIGURES["refused"],
        requests_to_forbidden_hosts=len(forbidden.hits),
    )


@pytest.fixture(autouse=True)
def clean(world: World) -> Iterator[None]:
    world.proxy.rewrite = None
    world.proxy.rewritten.clear()
    yield
    world.proxy.rewrite = None
    world.env.check_clean()
    assert world.forbidden.hits == [], world.forbidden.hits


def count(refused: bool = True) -> None:
    FIGURES["cases"] += 1
    FIGURES["refused"] += int(refused)


async def undelivered(world: World, prompt: str, target: str, *, n: int = 1) -> Job:
    """Run /imagine with every result URL replaced by `target`; the finished job."""
    env, w = world.env, world.env.world
    world.proxy.rewrite = lambda ours, index: target
    _, job = await imagine(env, prompt, user=w.alice, n=n)
    return job


# --- the control: the proxied origin itself delivers ------------------------------------------


async def test_results_from_the_configured_origin_are_delivered(world: World) -> None:
    env, w = world.env, world.env.world
    before = world.proxy.hits["result"]
    _, job = await imagine(env, "a plain control picture", user=w.alice, n=2)
    assert job.state is JobState.DONE
    assert world.proxy.hits["result"] - before == 2
    assert len(env.result_messages(job)) == 1
    assert await env.ledger(job.id) == {"reserve": 2, "charge": 2, "refund": 0}
    count(refused=False)


# --- result URLs off the allow-list --------------------------------------------------------------


def off_list_cases(world: World) -> dict[str, str]:
    forbidden, proxy = world.forbidden.root, world.proxy.root
    return {
        "cloud metadata": METADATA,
        "metadata over https": "https://169.254.169.254/latest/meta-data/",
        "another loopback port": f"{forbidden}/secret.png",
        "file": "file:///etc/passwd",
        "https host off the list": "https://images.evil.example/x.png",
        "lookalike of the OSS host": "https://x.oss-cn-beijing.aliyuncs.com.evil.example/x.png",
        "plain http to OSS": "http://x.oss-cn-beijing.aliyuncs.com/x.png",
        "credentials in the URL": f"http://user:pw@{proxy.removeprefix('http://')}/results/x.png",
        "allowed origin redirecting to another port": f"{proxy}/redirect?to={forbidden}/stolen.png",
        "allowed origin redirecting to metadata": f"{proxy}/redirect?to={METADATA}",
        "allowed origin redirecting to a file": f"{proxy}/redirect?to=file:///etc/passwd",
    }


CASE_NAMES = [
    "cloud metadata",
    "metadata over https",
    "another loopback port",
    "file",
    "https host off the list",
    "lookalike of the OSS host",
    "plain http to OSS",
    "credentials in the URL",
    "allowed origin redirecting to another port",
    "allowed origin redirecting to metadata",
    "allowed origin redirecting to a file",
]


def assert_failed_in_words(env: BotEnv, job: Job) -> str:
    assert job.state is JobState.FAILED, (job.state, job.error_message)
    assert env.result_messages(job) == []
    status = env.status_message(job).content
    assert "The images were made but could not be delivered" in status, status
    assert "Nothing was charged." in status, status
    assert job.error_message is not None and "Nothing was charged" in job.error_message
    return status


@pytest.mark.parametrize("case", CASE_NAMES)
async def test_a_result_url_off_the_allow_list_is_refused(world: World, case: str) -> None:
    env = world.env
    target = off_list_cases(world)[case]
    before = Counter(world.proxy.hits)
    job = await undelivered(world, f"refused result {case}", target)
    status = assert_failed_in_words(env, job)
    assert "refused to fetch" not in status and "host not allowed" not in status, status
    assert await env.ledger(job.id) == {"reserve": 1, "charge": 0, "refund": 1}
    assert world.forbidden.hits == []
    assert world.proxy.rewritten and set(world.proxy.rewritten) == {target}
    # Refused means refused once, not retried: a redirect was followed at most once.
    assert world.proxy.hits["redirect"] - before["redirect"] <= 1
    count()


def public_words(env: BotEnv, job: Job) -> list[str]:
    """Everything anyone in the server reads about the job: its messages and their embeds."""
    places = {job.channel_id, job.thread_id} - {None}
    words = []
    for place in places:
        for message in env.fake.messages_in(place or 0, include_ephemeral=False):
            words.append(message.content or "")
            words += [json.dumps(embed, ensure_ascii=False) for embed in message.embeds]
    return words


async def test_a_refused_result_url_is_told_without_the_url_and_detailed_to_the_owner(
    world: World,
) -> None:
    """The leak seen from outside: "…no result image could be downloaded (refused to fetch
    http://localhost:…/results/….png: host not allowed)" in public."""
    env, w = world.env, world.env.world
    target = f"{world.forbidden.root}/results/leak.png"
    job = await undelivered(world, "told in public without the url", target)
    assert_failed_in_words(env, job)
    host = target.split("/")[2]
    public = public_words(env, job)
    assert any(f"<@{w.alice.id}> ❌" in words for words in public)  # the failure notice
    for words in public:
        assert host not in words and "/results/" not in words and "host not allowed" not in words
    [notice] = [
        m
        for m in env.fake.messages_in(job.thread_id or 0, include_ephemeral=False)
        if m.content.startswith(f"<@{w.alice.id}> ❌")
    ]

    async def info(user: Any) -> dict[str, str]:
        inter = await env.fake.click(notice, f"wan:job:{job.id}:info", user=user)
        await env.fake.wait_for_ack(inter)
        await env.fake.settle()
        [answer] = replies(inter)
        assert answer.ephemeral
        return embed_fields(answer)

    owner = await info(w.alice)
    assert "refused to fetch" in owner["Detail (shown to you only)"]
    assert host in owner["Detail (shown to you only)"]
    moderator = await info(w.moderator)
    assert host in moderator["Detail (shown to you only)"]
    other = await info(w.bob)
    assert "Error" in other and not any(host in value for value in other.values())
    assert "Detail (shown to you only)" not in other
    count()


async def test_one_refused_image_of_two_is_dropped_and_not_charged(world: World) -> None:
    env, w = world.env, world.env.world
    world.proxy.rewrite = lambda ours, index: ours if index == 0 else f"{world.forbidden.root}/x"
    _, job = await imagine(env, "one good one refused", user=w.alice, n=2)
    assert job.state is JobState.DONE
    [message] = env.result_messages(job)
    assert [a.filename for a in message.attachments] == [f"wan-{job.id}-1.png"]
    assert await env.ledger(job.id) == {"reserve": 2, "charge": 1, "refund": 1}
    assert world.forbidden.hits == []
    count()


# --- size caps -----------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["huge", "huge-declared"])
async def test_a_result_over_the_size_cap_stops_at_the_cap(
    world: World, path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = world.env
    consumed: Counter[str] = Counter()
    original = httpx.Response.aiter_bytes

    async def counting(self: httpx.Response, chunk_size: int | None = None) -> AsyncIterator[bytes]:
        async for chunk in original(self, chunk_size):
            consumed[self.request.url.path] += len(chunk)
            yield chunk

    monkeypatch.setattr(httpx.Response, "aiter_bytes", counting)
    job = await undelivered(world, f"too big {path}", f"{world.proxy.root}/{path}")
    status = assert_failed_in_words(env, job)
    assert await env.ledger(job.id) == {"reserve": 1, "charge": 0, "refund": 1}
    await asyncio.wait_for(world.proxy.finished[path].wait(), timeout=10)
    assert world.proxy.hits[path] == 1  # not fetched again and again
    read = consumed[f"/{path}"]
    if path == "huge":
        assert CAP < read <= CAP + READ_SLACK, read
        told = f"result exceeds {CAP} bytes"
    else:  # the declared length is refused before the body is read
        assert read == 0
        told = f"result is {HUGE_TOTAL} bytes, over the cap"
    # Said in Info to the owner and moderators, not in public.
    assert told in (failure_detail(job) or "") and told not in status
    # The stream was cut: far from all 64 MiB left the server (socket buffers hold a few MB).
    assert world.proxy.sent[path] < HUGE_TOTAL // 4
    count()


# --- attachment URLs: only Discord's CDN --------------------------------------------------------

ATTACHMENT_REFUSED = "Could not download `{name}` from Discord. Try again."


def forged_targets(world: World) -> list[str]:
    return [
        f"{world.forbidden.root}/secret.png",
        "http://169.254.169.254/latest/meta-data/cat.png",
        "https://evil.example/cat.png",
        "https://cdn.discordapp.com.evil.example/attachments/1/2/cat.png",
        "http://cdn.discordapp.com/attachments/1/2/cat.png",
        "https://cdn.discordapp.com:8443/attachments/1/2/cat.png",
        "https://user:pw@cdn.discordapp.com/attachments/1/2/cat.png",
        "file:///etc/passwd",
    ]


def forge(world: World, monkeypatch: pytest.MonkeyPatch, urls: dict[int, str]) -> None:
    """Attachments with these ids reach the bot (interactions, messages, REST) with these URLs."""
    payloads = world.env.fake.payloads
    original = payloads.attachment

    def forged(attachment: Any) -> dict[str, Any]:
        data = original(attachment)
        if attachment.id in urls:
            data["url"] = data["proxy_url"] = urls[attachment.id]
        return data

    monkeypatch.setattr(payloads, "attachment", forged)


async def invoke_edit(world: World, attachment: Any, prompt: str, command: str = "edit") -> Any:
    """/edit or /animate of `attachment`, or /blend of it and a second, ordinary image."""
    env, w = world.env, world.env.world
    images: dict[str, Any] = {"image": attachment}
    if command == "blend":
        images = {"image1": attachment, "image2": ("other.png", png())}
    inter = await env.fake.slash(
        command, {"prompt": prompt, **images}, user=w.alice, channel=w.general
    )
    await env.fake.wait_for_ack(inter)
    await env.fake.settle()
    return inter


@pytest.mark.parametrize("command", ["edit", "blend", "animate"])
@pytest.mark.parametrize("which", range(8))
async def test_edit_refuses_an_attachment_url_off_discords_cdn(
    world: World, which: int, command: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    env, w = world.env, world.env.world
    target = forged_targets(world)[which]
    attachment = env.fake.upload(("cat.png", png()), w.general)
    forge(world, monkeypatch, {attachment.id: target})
    jobs, api = await env.job_count(), world.proxy.hits["api"]
    inter = await invoke_edit(world, attachment, "make it blue", command)
    [answer] = [m for m in replies(inter) if not m.loading]
    assert answer.ephemeral
    assert answer.content == ATTACHMENT_REFUSED.format(name="cat.png")
    assert await env.job_count() == jobs and world.proxy.hits["api"] == api
    assert world.forbidden.hits == []
    count()


async def test_edit_with_a_real_attachment_still_works(world: World) -> None:
    env, w = world.env, world.env.world
    attachment = env.fake.upload(("cat.png", png()), w.general)

    inter, job = await launch(env, invoke_edit(world, attachment, "make it green"))
    assert job.state is JobState.DONE, job.error_message
    assert reply_text(inter).startswith(f"Job #{job.id} is queued")
    count(refused=False)


async def test_the_edit_menu_refuses_a_forged_attachment_url(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    env, fake, w = world.env, world.env.fake, world.env.world
    post = await fake.post_message(w.general, w.bob, "my cat", attachments=[("cat.png", png())])
    forge(world, monkeypatch, {post.attachments[0].id: f"{world.forbidden.root}/menu.png"})
    jobs = await env.job_count()
    opened = await fake.message_command("Edit with Wan", post, user=w.alice)
    await fake.wait_for_ack(opened)
    await fake.settle()
    submitted = await submit_modal(env, opened, {"What should change?": "a hat"})
    await fake.settle()
    [answer] = [m for m in replies(submitted) if not m.loading]
    assert answer.ephemeral
    assert answer.content == ATTACHMENT_REFUSED.format(name="cat.png")
    assert await env.job_count() == jobs
    assert world.forbidden.hits == []
    count()


async def test_reply_to_edit_refuses_a_forged_attachment_url(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    env, fake, w = world.env, world.env.fake, world.env.world
    post = await fake.post_message(w.general, w.bob, "look", attachments=[("sky.png", png())])
    forge(world, monkeypatch, {post.attachments[0].id: f"{world.forbidden.root}/reply.png"})
    jobs = await env.job_count()
    ask = await fake.post_message(w.general, w.alice, f"{w.bot.mention} a moon", reference=post)
    await fake.settle()
    [answer] = [
        m
        for m in fake.messages_in(w.general)
        if m.author.id == fake.bot_user.id and m.referenced_id == ask.id
    ]
    assert answer.content == ATTACHMENT_REFUSED.format(name="sky.png")
    assert await env.job_count() == jobs
    assert world.forbidden.hits == []
    count()


async def test_show_skips_forged_result_attachments_and_uses_dashscopes_copy(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    env, w = world.env, world.env.world
    _, job = await imagine(env, "a picture to show again", user=w.alice)
    [result] = env.result_messages(job)
    forge(
        world, monkeypatch, {a.id: f"{world.forbidden.root}/show.png" for a in result.attachments}
    )
    before = world.proxy.hits["result"]
    inter = await env.fake.slash("show", {"job": job.id}, user=w.alice, channel=w.art)
    await env.fake.wait_for_ack(inter)
    await env.fake.settle()
    [shown] = [m for m in replies(inter) if not m.loading]
    assert [a.filename for a in shown.attachments] == [f"wan-{job.id}-1.png"]
    assert embed_fields(shown)["Prompt"] == "a picture to show again"
    assert world.proxy.hits["result"] == before + 1  # fetched again from the allowed origin
    assert world.forbidden.hits == []
    count()


# --- the allow-list for attachments, directly -----------------------------------------------------


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("https://cdn.discordapp.com/attachments/1/2/a.png?ex=1&is=2&hm=3", True),
        ("https://media.discordapp.net/attachments/1/2/a.png", True),
        ("https://CDN.DiscordApp.com/attachments/1/2/a.png", True),
        ("https://cdn.discordapp.com:443/attachments/1/2/a.png", True),
        ("http://cdn.discordapp.com/attachments/1/2/a.png", False),
        ("https://cdn.discordapp.com:8443/a.png", False),
        ("https://cdn.discordapp.com.evil.example/a.png", False),
        ("https://evilcdn.discordapp.com/a.png", False),
        ("https://user@cdn.discordapp.com/a.png", False),
        ("https://169.254.169.254/a.png", False),
        ("http://127.0.0.1:1/a.png", False),
        ("file:///etc/passwd", False),
        ("https://[::1/a.png", False),
        ("", False),
    ],
)
async def test_discord_cdn_url(url: str, allowed: bool) -> None:
    assert AttachmentOrigins.for_api("https://discord.com/api/v10").allows(url) is allowed


async def test_the_configured_api_origin_is_trusted() -> None:
    origins = AttachmentOrigins.for_api("http://127.0.0.1:5000/api/v10")
    assert origins.allows("http://127.0.0.1:5000/attachments/1/2/a.png")
    assert not origins.allows("http://127.0.0.1:5001/attachments/1/2/a.png")
    assert not origins.allows("https://127.0.0.1:5000/attachments/1/2/a.png")


async def test_the_allow_list_follows_the_settings_not_discord_py(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Built from DISCORD_API_BASE_URL: whatever discord.py's Route.BASE says (run_bot points it
    at the same URL for discord.py's own calls) has no say over what the bot fetches."""
    import discord

    monkeypatch.setattr(discord.http.Route, "BASE", "http://127.0.0.1:5001/api/v10")
    monkeypatch.delenv("DISCORD_API_BASE_URL", raising=False)
    settings = load_settings(discord_api_base_url="http://127.0.0.1:5000/api/v10", _env_file=None)
    origins = AttachmentOrigins.from_settings(settings)
    assert origins.allows("http://127.0.0.1:5000/attachments/1/2/a.png")
    assert not origins.allows("http://127.0.0.1:5001/attachments/1/2/a.png")
    assert origins.allows("https://cdn.discordapp.com/attachments/1/2/a.png")
    default = AttachmentOrigins.from_settings(load_settings(_env_file=None))
    assert default.allows("https://discord.com/api/v10/attachments/1/2/a.png")
    assert not default.allows("http://127.0.0.1:5001/attachments/1/2/a.png")


async def test_the_running_bot_holds_the_allow_list_of_its_settings(world: World) -> None:
    env = world.env
    assert env.bot is not None
    assert env.bot.attachment_origins == AttachmentOrigins.from_settings(env.settings)
    assert env.bot.attachment_origins.allows(f"{env.fake.api_base}/attachments/1/2/a.png")
