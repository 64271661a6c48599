"""FakeDiscord: an aiohttp app on 127.0.0.1 speaking Discord's REST v10 and gateway protocols.

Start it, point discord.py at it (``point_discordpy_at``), run a real client with ``start(token)``,
then drive it with gateway events and interactions and assert on the recorded requests.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import secrets
import time
from collections import deque
from typing import Any

from aiohttp import web

from .clock import FakeClock
from .constants import (
    ALLOWED_CALLBACKS,
    MIB,
    CallbackType,
    ChannelType,
    Intent,
    InteractionType,
    MessageFlag,
    MessageType,
    Perm,
)
from .gateway import SESSION_STARTS_PER_DAY, GatewayMixin
from .inject import InjectMixin
from .payloads import PayloadBuilder
from .payloads import user as user_payload
from .records import Fault, Interaction, RateViolation, RecordedRequest, UploadedFile, path_pattern
from .state import (
    MENTION_ROLE,
    MENTION_USER,
    Attachment,
    Channel,
    FakeState,
    Guild,
    Message,
    Role,
    User,
)

log = logging.getLogger("fakediscord")
# Names of the tasks discord.py 2.7 runs handlers in (settle() waits for these).
BUSY_TASKS = (
    "CommandTree-invoker",
    "discord-ui-view-dispatch-",
    "discord-ui-modal-dispatch-",
    "discord-ui-dynamic-item-",
    "discord.py: ",
)
API_PREFIX = "/api/v10"
JSON = "application/json"
REC = web.RequestKey("fakediscord_rec", RecordedRequest)
COMMAND_NAME = re.compile(r"^[-_\w]{1,32}$")


class ApiError(Exception):
    """Raised inside handlers; turned into Discord's JSON error body."""

    def __init__(
        self,
        status: int,
        code: int,
        message: str,
        errors: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.errors = errors
        self.headers = headers or {}
        self.extra = extra or {}


def form_error(field: str, code: str, message: str) -> ApiError:
    errors: dict[str, Any] = {}
    node = errors
    parts = field.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = {"_errors": [{"code": code, "message": message}]}
    return ApiError(400, 50035, "Invalid Form Body", errors)


def unknown_channel() -> ApiError:
    return ApiError(404, 10003, "Unknown Channel")


def unknown_message() -> ApiError:
    return ApiError(404, 10008, "Unknown Message")


def missing_permissions() -> ApiError:
    return ApiError(403, 50013, "Missing Permissions")


DROP = 0  # a fault's status meaning: drop the connection, answer nothing


def truthy(value: str | None) -> bool:
    return value is not None and value.lower() in ("1", "true", "yes")


class FakeDiscord(GatewayMixin, InjectMixin):
    """A fake Discord (REST + gateway) for one bot application.

    Parameters are the bot's identity; ``allowed_privileged_intents`` are the privileged
    intents enabled for the application (IDENTIFY asking for others is closed with 4014).
    ``shard_count`` and ``max_concurrency`` are what ``GET /gateway/bot`` recommends and allows;
    ``identify_interval`` is Discord's spacing of two IDENTIFYs in one bucket (shard id modulo
    ``max_concurrency``), which ``identifies_too_soon()`` checks (shorten it to keep tests fast).
    """

    def __init__(
        self,
        *,
        token: str = "fake.bot.token",  # noqa: S107 - a fake's token
        bot_id: int | None = None,
        bot_name: str = "wanbot",
        application_id: int | None = None,
        owner_id: int | None = None,
        owner_name: str = "owner",
        allowed_privileged_intents: int = Intent.PRIVILEGED,
        attachment_ttl: float = 24 * 3600,
        interaction_ack_window: float = 3.0,
        interaction_token_ttl: float = 15 * 60,
        nonce_window: float = 5 * 60,
        clock: FakeClock | None = None,
        shard_count: int = 1,
        max_concurrency: int = 1,
        identify_interval: float = 5.0,
    ) -> None:
        self.token = token
        self.clock = clock or FakeClock()
        self.state = FakeState(self.clock)
        self.bot_user = self.state.add_user(bot_name, id=bot_id, bot=True)
        self.state.bot = self.bot_user
        self.application_id = application_id or self.bot_user.id
        self.owner = self.state.add_user(owner_name, id=owner_id)
        self.allowed_privileged_intents = allowed_privileged_intents
        self.attachment_ttl = attachment_ttl
        self.interaction_ack_window = interaction_ack_window
        self.interaction_token_ttl = interaction_token_ttl
        self.nonce_window = nonce_window
        self.latency = 0.0  # seconds added to every REST answer
        self.shard_count = shard_count
        self.max_concurrency = max_concurrency
        self.identify_interval = identify_interval

        # Per-channel message create/edit limit (Discord: about 5 per 5 s).
        self.channel_rate_limit = 5
        self.channel_rate_window = 5.0
        self.enforce_channel_rate_limit = False
        self.rate_violations: list[RateViolation] = []
        self._channel_hits: dict[int, deque[float]] = {}

        self.requests: list[RecordedRequest] = []
        self.internal_errors: list[BaseException] = []  # bugs in the fake itself; assert empty
        self.interactions: dict[int, Interaction] = {}
        self._by_token: dict[str, Interaction] = {}
        self.modals_sent: list[tuple[Interaction, dict[str, Any]]] = []
        self.global_commands: list[dict[str, Any]] = []
        self.guild_commands: dict[int, list[dict[str, Any]]] = {}
        self._command_ids: dict[tuple[int | None, str, int], int] = {}
        self._nonces: dict[tuple[int, str], tuple[int, float]] = {}
        self._faults: list[Fault] = []
        self.gateway_log: list[tuple[str, str, Any]] = []

        self._request_cond = asyncio.Condition()
        self._inflight = 0
        self._last_activity = time.monotonic()
        self._runner: web.AppRunner | None = None
        self.host = "127.0.0.1"
        self.port = 0
        self._payloads: PayloadBuilder | None = None
        self._init_gateway()

    # ----- lifecycle ---------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def api_base(self) -> str:
        """What ``discord.http.Route.BASE`` is set to."""
        return f"{self.base_url}{API_PREFIX}"

    @property
    def gateway_url(self) -> str:
        """What ``DiscordWebSocket.DEFAULT_GATEWAY`` is set to (as a ``yarl.URL``)."""
        return f"ws://{self.host}:{self.port}/gateway"

    @property
    def payloads(self) -> PayloadBuilder:
        if self._payloads is None:
            raise RuntimeError("FakeDiscord is not started")
        return self._payloads

    @property
    def message_content_enabled(self) -> bool:
        return bool(self.allowed_privileged_intents & Intent.MESSAGE_CONTENT)

    @property
    def application_flags(self) -> int:
        return self._app_flags_for_intents()

    async def start(self) -> FakeDiscord:
        app = web.Application(client_max_size=256 * MIB, middlewares=[self._middleware])
        self._add_routes(app)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, 0)
        await site.start()
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self._payloads = PayloadBuilder(
            self.state,
            base_url=self.base_url,
            application_id=self.application_id,
            attachment_ttl=self.attachment_ttl,
        )
        return self

    async def stop(self) -> None:
        for conn in list(self.connections):
            with contextlib.suppress(Exception):
                await conn.ws.close(code=1001, message=b"fake discord stopping")
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeDiscord:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # ----- world building ----------------------------------------------------------------------
    def create_user(
        self, username: str, *, locale: str = "en-US", id: int | None = None, bot: bool = False
    ) -> User:
        return self.state.add_user(username, id=id, locale=locale, bot=bot)

    def create_guild(
        self,
        name: str = "Test Guild",
        *,
        owner: User | None = None,
        channels: tuple[str, ...] | list[str] = ("general",),
        locale: str = "en-US",
        attachment_size_limit: int = 10 * MIB,
        bot_permissions: int = Perm.BOT_DEFAULT,
        bot_member: bool = True,
        id: int | None = None,
    ) -> Guild:
        """A guild with @everyone, the bot's managed role and member, and text channels."""
        guild = self.state.add_guild(
            name,
            owner=owner or self.owner,
            id=id,
            locale=locale,
            attachment_size_limit=attachment_size_limit,
        )
        if bot_member:
            role = self.state.add_role(
                guild,
                self.bot_user.username,
                bot_permissions,
                managed=True,
                bot_id=self.bot_user.id,
            )
            self.state.add_member(guild, self.bot_user, [role])
        for channel_name in channels:
            self.state.add_text_channel(guild, channel_name)
        return guild

    def create_role(
        self, guild: Guild, name: str, permissions: int = 0, *, position: int | None = None
    ) -> Role:
        return self.state.add_role(guild, name, permissions, position=position)

    def add_member(
        self,
        guild: Guild,
        user: User,
        roles: list[Role] | tuple[Role, ...] = (),
        nick: str | None = None,
    ):
        return self.state.add_member(guild, user, roles, nick)

    def create_text_channel(
        self,
        guild: Guild,
        name: str,
        *,
        topic: str | None = None,
        nsfw: bool = False,
        can_send: bool = True,
        can_create_threads: bool = True,
        can_attach: bool = True,
    ) -> Channel:
        channel = self.state.add_text_channel(guild, name, topic=topic, nsfw=nsfw)
        channel.can_send = can_send
        channel.can_create_threads = can_create_threads
        channel.can_attach = can_attach
        return channel

    def open_dm(self, user: User) -> Channel:
        return self.state.open_dm(user)

    def channel(self, guild: Guild, name: str) -> Channel:
        for c in self.state.guild_channels(guild):
            if c.name == name:
                return c
        raise KeyError(name)

    def standard_world(self) -> Any:
        """A guild with #general and #art, and users: alice, bob, a moderator and an admin."""
        from types import SimpleNamespace

        guild = self.create_guild("Wan Test Guild", channels=("general", "art"))
        mod_role = self.create_role(guild, "Moderator", Perm.MANAGE_MESSAGES | Perm.MANAGE_THREADS)
        admin_role = self.create_role(guild, "Admin", Perm.MANAGE_GUILD | Perm.MANAGE_MESSAGES)
        alice = self.create_user("alice")
        bob = self.create_user("bob", locale="de")
        moderator = self.create_user("mod")
        admin = self.create_user("admin")
        self.add_member(guild, alice)
        self.add_member(guild, bob)
        self.add_member(guild, moderator, [mod_role])
        self.add_member(guild, admin, [admin_role])
        return SimpleNamespace(
            guild=guild,
            general=self.channel(guild, "general"),
            art=self.channel(guild, "art"),
            alice=alice,
            bob=bob,
            moderator=moderator,
            admin=admin,
            mod_role=mod_role,
            admin_role=admin_role,
            bot=self.bot_user,
            owner=self.owner,
        )

    async def set_channel_permissions(
        self,
        channel: Channel,
        *,
        can_send: bool | None = None,
        can_create_threads: bool | None = None,
        can_attach: bool | None = None,
        can_view: bool | None = None,
    ) -> None:
        """Flip the bot's switches in a channel and tell connected bots (CHANNEL_UPDATE)."""
        for name, value in (
            ("can_send", can_send),
            ("can_create_threads", can_create_threads),
            ("can_attach", can_attach),
            ("can_view", can_view),
        ):
            if value is not None:
                setattr(channel, name, value)
        if channel.guild_id is not None and not channel.is_thread:
            await self.dispatch("CHANNEL_UPDATE", self.payloads.channel(channel))

    async def delete_channel(self, channel: Channel) -> None:
        channel.deleted = True
        # Its threads go with it; Discord sends only CHANNEL_DELETE (clients drop the threads).
        for thread in self.state.channels.values():
            if thread.is_thread and thread.parent_id == channel.id:
                thread.deleted = True
        if channel.guild_id is not None:
            event = "THREAD_DELETE" if channel.is_thread else "CHANNEL_DELETE"
            data = self.payloads.channel(channel)
            if channel.is_thread:
                data = {k: data[k] for k in ("id", "guild_id", "parent_id", "type")}
            await self.dispatch(event, data)

    # ----- queries on what was recorded --------------------------------------------------------
    def requests_to(
        self, method: str | None = None, path: str | None = None
    ) -> list[RecordedRequest]:
        """Recorded requests by method and path (``*`` = one segment, ``**`` = anything)."""
        regex = path_pattern(path) if path is not None else None
        return [
            r
            for r in self.requests
            if (method is None or r.method == method.upper())
            and (regex is None or regex.fullmatch(r.path))
        ]

    def unmatched_requests(self) -> list[RecordedRequest]:
        """Requests that hit the catch-all (routes the fake does not know)."""
        return [r for r in self.requests if r.unmatched]

    def messages_in(
        self,
        channel: Channel | int,
        *,
        include_deleted: bool = False,
        include_ephemeral: bool = True,
    ) -> list[Message]:
        cid = channel if isinstance(channel, int) else channel.id
        return [
            m
            for m in self.state.messages.values()
            if m.channel_id == cid
            and (include_deleted or not m.deleted)
            and (include_ephemeral or not m.ephemeral)
        ]

    def get_message(self, message_id: int) -> Message:
        return self.state.messages[message_id]

    def callbacks_for(self, interaction: Interaction) -> list[RecordedRequest]:
        return self.requests_to(
            "POST", f"/interactions/{interaction.id}/{interaction.token}/callback"
        )

    def followups_for(self, interaction: Interaction) -> list[RecordedRequest]:
        return self.requests_to("POST", f"/webhooks/{self.application_id}/{interaction.token}")

    def webhook_requests_for(self, interaction: Interaction) -> list[RecordedRequest]:
        return self.requests_to(None, f"/webhooks/{self.application_id}/{interaction.token}**")

    def thread(self, thread_id: int) -> Channel:
        channel = self.state.channels[thread_id]
        if not channel.is_thread:
            raise KeyError(thread_id)
        return channel

    def attachment_bytes(self, attachment_id: int) -> bytes:
        return self.state.attachments[attachment_id].data

    # ----- waiting -----------------------------------------------------------------------------
    async def wait_for_request(
        self,
        method: str | None,
        path: str | None,
        *,
        count: int = 1,
        timeout: float = 5.0,
    ) -> list[RecordedRequest]:
        """Wait until ``count`` answered requests match; returns all matches."""

        def matches() -> list[RecordedRequest]:
            return [r for r in self.requests_to(method, path) if r.status is not None]

        async with asyncio.timeout(timeout), self._request_cond:
            await self._request_cond.wait_for(lambda: len(matches()) >= count)
        return matches()

    async def wait_for_ack(self, interaction: Interaction, timeout: float = 5.0) -> Interaction:
        async with asyncio.timeout(timeout):
            await interaction.acked.wait()
        return interaction

    async def settle(self, timeout: float = 5.0) -> None:
        """Wait until the bot has finished reacting to everything sent so far.

        Repeats until a round changes nothing: a gateway barrier (the client parsed every
        dispatch), then discord.py's handler tasks (app commands, view/modal/dynamic-item
        callbacks, ``on_*`` events) finish, then no REST request is in flight. View timeouts,
        ``ext.tasks`` loops and the bot's own background tasks are not waited for. A handler
        blocked on something the test has not done yet makes this time out.
        """
        current = asyncio.current_task()
        async with asyncio.timeout(timeout):
            while True:
                marker = (len(self.requests), len(self.gateway_log), len(self.interactions))
                await self.gateway_barrier(timeout)
                while True:
                    busy = [
                        t
                        for t in asyncio.all_tasks()
                        if t is not current and not t.done() and t.get_name().startswith(BUSY_TASKS)
                    ]
                    if not busy and not self._inflight:
                        break
                    if busy:
                        await asyncio.wait(busy)
                    else:
                        await asyncio.sleep(0.002)
                if marker == (len(self.requests), len(self.gateway_log), len(self.interactions)):
                    return

    async def wait_idle(self, quiet: float = 0.05, timeout: float = 5.0) -> None:
        """Wait until no REST request is in flight and none arrived for ``quiet`` seconds."""
        async with asyncio.timeout(timeout):
            while True:
                idle_for = time.monotonic() - self._last_activity
                if self._inflight == 0 and idle_for >= quiet:
                    return
                await asyncio.sleep(max(0.005, quiet - idle_for))

    # ----- fault injection ---------------------------------------------------------------------
    def fail_next(
        self,
        method: str,
        path: str,
        status: int = 500,
        *,
        times: int = 1,
        retry_after: float | None = None,
        code: int | None = None,
        message: str | None = None,
        body: Any = None,
        headers: dict[str, str] | None = None,
        delay: float = 0.0,
        is_global: bool = False,
    ) -> Fault:
        """Answer the next ``times`` requests matching ``method path`` with ``status``; status 0
        (``DROP``) answers nothing: the connection is dropped, as a proxy or a dying process may.

        429 gets Discord's body (``retry_after``, ``global``) and headers (``Retry-After``,
        ``X-RateLimit-*`` and ``Via``: without ``Via`` discord.py treats a 429 as a Cloudflare ban
        and raises instead of retrying).
        """
        hdrs = dict(headers or {})
        if status == 429:
            ra = 0.05 if retry_after is None else retry_after
            if body is None:
                body = {
                    "message": "You are being rate limited.",
                    "retry_after": ra,
                    "global": is_global,
                }
                if code is not None:
                    body["code"] = code
            hdrs.setdefault("Retry-After", str(max(1, int(ra + 0.999))))
            hdrs.setdefault("X-RateLimit-Limit", "5")
            hdrs.setdefault("X-RateLimit-Remaining", "0")
            hdrs.setdefault("X-RateLimit-Reset", f"{time.time() + ra:.3f}")
            hdrs.setdefault("X-RateLimit-Reset-After", f"{ra:.3f}")
            hdrs.setdefault("X-RateLimit-Bucket", "fakebucket" + secrets.token_hex(4))
            hdrs.setdefault("X-RateLimit-Scope", "shared" if not is_global else "global")
            if is_global:
                hdrs.setdefault("X-RateLimit-Global", "true")
            hdrs.setdefault("Via", "1.1 google")
        elif body is None and status != DROP:
            default_messages = {
                400: "Bad Request",
                401: "401: Unauthorized",
                403: "Missing Permissions",
                404: "404: Not Found",
                500: "500: Internal Server Error",
                502: "502: Bad Gateway",
                503: "503: Service Unavailable",
                504: "504: Gateway Timeout",
            }
            body = {
                "message": message or default_messages.get(status, f"{status}"),
                "code": code if code is not None else 0,
            }
        fault = Fault(
            method=method.upper(),
            pattern=path_pattern(path),
            status=status,
            body=body,
            headers=hdrs,
            delay=delay,
            times=times,
        )
        self._faults.append(fault)
        return fault

    def clear_faults(self) -> None:
        self._faults.clear()

    def _take_fault(self, method: str, path: str) -> Fault | None:
        for fault in self._faults:
            if fault.method in (method, "*") and fault.pattern.fullmatch(path):
                fault.hits += 1
                fault.times -= 1
                if fault.times <= 0:
                    self._faults.remove(fault)
                return fault
        return None

    # ----- HTTP plumbing -----------------------------------------------------------------------
    @staticmethod
    def json_response(
        data: Any, status: int = 200, headers: dict[str, str] | None = None
    ) -> web.Response:
        """JSON with ``Content-Type: application/json`` exactly (no charset: discord.py needs it)."""
        hdrs = {"Content-Type": JSON}
        hdrs.update(headers or {})
        return web.Response(body=json.dumps(data).encode(), status=status, headers=hdrs)

    def _error_response(self, err: ApiError) -> web.Response:
        body: dict[str, Any] = {"message": err.message, "code": err.code}
        if err.errors:
            body["errors"] = err.errors
        body.update(err.extra)
        return self.json_response(body, err.status, err.headers)

    async def _record(self, request: web.Request) -> RecordedRequest:
        path = request.path
        rel = path[len(API_PREFIX) :] if path.startswith(API_PREFIX + "/") else path
        headers = {k: v for k, v in request.headers.items() if k.lower() != "authorization"}
        rec = RecordedRequest(
            method=request.method,
            path=rel,
            query=dict(request.query),
            headers=headers,
            time=self.clock.now(),
        )
        ctype = request.content_type
        if ctype == "multipart/form-data":
            rec.multipart = True
            reader = await request.multipart()
            async for part in reader:
                if part is None:
                    break
                name = part.name or ""
                if part.filename is None and name == "payload_json":
                    rec.json = json.loads(await part.text())
                elif part.filename is not None:
                    data = await part.read(decode=False)
                    rec.files.append(
                        UploadedFile(
                            field=name,
                            filename=part.filename,
                            data=bytes(data),
                            content_type=part.headers.get("Content-Type"),
                        )
                    )
                else:
                    rec.json = rec.json or {}
                    rec.json[name] = await part.text()
        elif request.can_read_body:
            raw = await request.read()
            if raw:
                try:
                    rec.json = json.loads(raw)
                except ValueError:
                    rec.json = raw.decode(errors="replace")
        return rec

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        path = request.path
        if path == "/gateway" or path.startswith(("/attachments/", "/media/attachments/")):
            return await handler(request)
        self._inflight += 1
        self._last_activity = time.monotonic()
        rec: RecordedRequest | None = None
        try:
            rec = await self._record(request)
            self.requests.append(rec)
            request[REC] = rec
            resp = await self._dispatch_api(request, handler, rec)
            rec.status = resp.status
            if isinstance(resp, web.Response) and resp.body and resp.content_type == JSON:
                rec.response = json.loads(resp.body)  # type: ignore[arg-type]
            return resp
        finally:
            self._inflight -= 1
            self._last_activity = time.monotonic()
            async with self._request_cond:
                self._request_cond.notify_all()

    async def _dispatch_api(
        self, request: web.Request, handler: Any, rec: RecordedRequest
    ) -> web.StreamResponse:
        if not request.path.startswith(API_PREFIX + "/"):
            return await handler(request)  # the catch-all answers 404
        token_routes = rec.path.startswith(("/interactions/", "/webhooks/"))
        if not token_routes and request.headers.get("Authorization") != f"Bot {self.token}":
            rec.authorized = False
            return self.json_response({"message": "401: Unauthorized", "code": 0}, 401)
        fault = self._take_fault(rec.method, rec.path)
        if fault is not None:
            rec.fault = True
            if fault.delay:
                await asyncio.sleep(fault.delay)
            if fault.status == DROP:
                if request.transport is not None:
                    request.transport.abort()
                raise web.HTTPException()  # aiohttp gives up on the request: nothing is sent
            if fault.body is None:
                return web.Response(status=fault.status, headers=fault.headers)
            return self.json_response(fault.body, fault.status, fault.headers)
        if self.latency:
            await asyncio.sleep(self.latency)
        try:
            return await handler(request)
        except ApiError as err:
            return self._error_response(err)
        except web.HTTPException:
            raise
        except (
            Exception
        ) as exc:  # a bug in the fake: answer 400 (not 5xx, which discord.py retries)
            self.internal_errors.append(exc)
            log.exception("fakediscord: %s %s failed", rec.method, rec.path)
            return self.json_response(
                {"message": f"fakediscord internal error: {exc!r}", "code": 0}, 400
            )

    def _add_routes(self, app: web.Application) -> None:
        r = app.router
        a = API_PREFIX
        r.add_get("/gateway", self._gateway_handler)
        r.add_get("/attachments/{channel}/{id}/{filename}", self._serve_attachment)
        r.add_get("/media/attachments/{channel}/{id}/{filename}", self._serve_attachment)
        r.add_get(f"{a}/users/@me", self._get_me)
        r.add_post(f"{a}/users/@me/channels", self._open_dm)
        r.add_get(f"{a}/users/{{user}}", self._get_user)
        r.add_get(f"{a}/oauth2/applications/@me", self._get_application)
        r.add_get(f"{a}/applications/@me", self._get_application)
        r.add_get(f"{a}/gateway", self._get_gateway)
        r.add_get(f"{a}/gateway/bot", self._get_gateway_bot)
        r.add_route("*", f"{a}/applications/{{app}}/commands", self._commands)
        r.add_route("*", f"{a}/applications/{{app}}/commands/{{cmd}}", self._command)
        r.add_route("*", f"{a}/applications/{{app}}/guilds/{{guild}}/commands", self._commands)
        r.add_route(
            "*", f"{a}/applications/{{app}}/guilds/{{guild}}/commands/{{cmd}}", self._command
        )
        r.add_post(f"{a}/interactions/{{id}}/{{token}}/callback", self._interaction_callback)
        r.add_post(f"{a}/webhooks/{{app}}/{{token}}", self._webhook_execute)
        r.add_route(
            "*", f"{a}/webhooks/{{app}}/{{token}}/messages/{{message}}", self._webhook_message
        )
        r.add_route("*", f"{a}/channels/{{channel}}", self._channel)
        r.add_get(f"{a}/channels/{{channel}}/messages", self._list_messages)
        r.add_post(f"{a}/channels/{{channel}}/messages", self._create_message_route)
        r.add_route("*", f"{a}/channels/{{channel}}/messages/{{message}}", self._message_route)
        r.add_post(
            f"{a}/channels/{{channel}}/messages/{{message}}/threads", self._thread_from_message
        )
        r.add_post(f"{a}/channels/{{channel}}/threads", self._thread_without_message)
        r.add_route("*", f"{a}/channels/{{channel}}/thread-members/{{user}}", self._thread_member)
        r.add_post(f"{a}/channels/{{channel}}/typing", self._typing)
        r.add_route(
            "*",
            f"{a}/channels/{{channel}}/messages/{{message}}/reactions/{{emoji}}/{{user}}",
            self._reaction,
        )
        r.add_get(f"{a}/guilds/{{guild}}", self._get_guild)
        r.add_get(f"{a}/guilds/{{guild}}/channels", self._get_guild_channels)
        r.add_get(f"{a}/guilds/{{guild}}/roles", self._get_roles)
        r.add_get(f"{a}/guilds/{{guild}}/members/{{user}}", self._get_member)
        r.add_get(f"{a}/guilds/{{guild}}/threads/active", self._active_threads)
        r.add_route("*", "/{tail:.*}", self._catch_all)

    # ----- helpers used by handlers ------------------------------------------------------------
    @staticmethod
    def _id(request: web.Request, key: str, err: ApiError | None = None) -> int:
        value = request.match_info[key]
        if not value.isdigit():
            raise err or form_error(key, "NUMBER_TYPE_COERCE", f'Value "{value}" is not snowflake.')
        return int(value)

    def _get_channel(self, request: web.Request) -> Channel:
        cid = self._id(request, "channel", unknown_channel())
        channel = self.state.channels.get(cid)
        if channel is None or channel.deleted:
            raise unknown_channel()
        if channel.guild_id is not None:
            guild = self.state.guild_of(channel)
            if guild is None or self.bot_user.id not in guild.members:
                raise ApiError(403, 50001, "Missing Access")
            perms = self.state.channel_permissions(channel, self.bot_user.id)
            if not perms & Perm.VIEW_CHANNEL:
                raise ApiError(403, 50001, "Missing Access")
        return channel

    def _bot_perms(self, channel: Channel) -> int:
        return self.state.channel_permissions(channel, self.bot_user.id)

    def _message_in(self, channel: Channel, message_id: int) -> Message:
        msg = self.state.messages.get(message_id)
        if msg is None or msg.deleted or msg.channel_id != channel.id or msg.ephemeral:
            raise unknown_message()
        return msg

    def _upload_limit(self, channel: Channel) -> int:
        guild = self.state.guild_of(channel)
        return guild.attachment_size_limit if guild else 10 * MIB

    def _rate_check(self, channel: Channel, rec: RecordedRequest) -> dict[str, str]:
        """Track the per-channel window; 429 when enforced. Returns headers for the answer."""
        now = self.clock.now()
        hits = self._channel_hits.setdefault(channel.id, deque())
        while hits and hits[0] <= now - self.channel_rate_window:
            hits.popleft()
        if len(hits) >= self.channel_rate_limit:
            self.rate_violations.append(
                RateViolation(channel.id, rec.method, rec.path, now, len(hits) + 1)
            )
            if self.enforce_channel_rate_limit:
                retry = max(0.001, hits[0] + self.channel_rate_window - now)
                headers = {
                    "Retry-After": str(max(1, int(retry + 0.999))),
                    "X-RateLimit-Limit": str(self.channel_rate_limit),
                    "X-RateLimit-Remaining": "0",
                    "X-RateLimit-Reset": f"{time.time() + retry:.3f}",
                    "X-RateLimit-Reset-After": f"{retry:.3f}",
                    "X-RateLimit-Bucket": f"fakechannel{channel.id}",
                    "X-RateLimit-Scope": "shared",
                    "Via": "1.1 google",
                }
                raise ApiError(
                    429,
                    20028,
                    "You are being rate limited.",
                    headers=headers,
                    extra={"retry_after": retry, "global": False},
                )
        hits.append(now)
        if not self.enforce_channel_rate_limit:
            return {}
        remaining = max(0, self.channel_rate_limit - len(hits))
        reset_after = hits[0] + self.channel_rate_window - now
        return {
            "X-RateLimit-Limit": str(self.channel_rate_limit),
            "X-RateLimit-Remaining": str(remaining),
            "X-RateLimit-Reset": f"{time.time() + reset_after:.3f}",
            "X-RateLimit-Reset-After": f"{reset_after:.3f}",
            "X-RateLimit-Bucket": f"fakechannel{channel.id}",
        }

    def _bot_user_payload(self) -> dict[str, Any]:
        return user_payload(self.bot_user, private=True)

    # ----- message bodies ----------------------------------------------------------------------
    def _validate_body(
        self, body: dict[str, Any], files: list[UploadedFile], limit: int, *, edit: bool = False
    ) -> None:
        total = sum(f.size for f in files)
        if total > limit:
            raise ApiError(413, 40005, "Request entity too large")
        content = body.get("content")
        if content is not None and not isinstance(content, str):
            content = str(content)
        if content is not None and len(content) > 2000:
            raise form_error("content", "BASE_TYPE_MAX_LENGTH", "Must be 2000 or fewer in length.")
        embeds = body.get("embeds") or ([body["embed"]] if body.get("embed") else [])
        if len(embeds) > 10:
            raise form_error("embeds", "BASE_TYPE_MAX_LENGTH", "Must be 10 or fewer in length.")
        for i, embed in enumerate(embeds):
            size = sum(len(str(embed.get(k) or "")) for k in ("title", "description"))
            size += sum(
                len(f.get("name", "")) + len(f.get("value", "")) for f in embed.get("fields") or []
            )
            if size > 6000:
                raise form_error(
                    f"embeds.{i}", "BASE_TYPE_MAX_LENGTH", "Embed size exceeds maximum size of 6000"
                )
            if len(embed.get("fields") or []) > 25:
                raise form_error(
                    f"embeds.{i}.fields", "BASE_TYPE_MAX_LENGTH", "Must be 25 or fewer in length."
                )
        attachments = body.get("attachments") or []
        if len(files) > 10 or len(attachments) > 10:
            raise form_error(
                "attachments", "BASE_TYPE_MAX_LENGTH", "Must be 10 or fewer in length."
            )
        components = body.get("components") or []
        flags = int(body.get("flags") or 0)
        if not flags & MessageFlag.IS_COMPONENTS_V2 and len(components) > 5:
            raise form_error("components", "BASE_TYPE_MAX_LENGTH", "Must be 5 or fewer in length.")
        nonce = body.get("nonce")
        if isinstance(nonce, str) and len(nonce) > 25:
            raise form_error("nonce", "BASE_TYPE_MAX_LENGTH", "Must be 25 or fewer in length.")
        if not edit and not (
            (content or "").strip()
            or embeds
            or files
            or components
            or body.get("sticker_ids")
            or body.get("poll")
        ):
            raise ApiError(400, 50006, "Cannot send an empty message")

    def _attachments_for(
        self,
        channel_id: int,
        body: dict[str, Any],
        files: list[UploadedFile],
        existing: list[Attachment],
        *,
        ephemeral: bool = False,
    ) -> list[Attachment] | None:
        """New attachment list from ``attachments`` metadata plus ``files[n]``; None = unchanged."""
        by_index: dict[int, UploadedFile] = {}
        for pos, f in enumerate(files):
            m = re.fullmatch(r"files\[(\d+)\]", f.field)
            by_index[int(m.group(1)) if m else pos] = f
        meta = body.get("attachments")
        if meta is None and not files:
            return None
        result: list[Attachment] = [] if meta is not None else list(existing)
        used: set[int] = set()
        existing_by_id = {a.id: a for a in existing}
        for item in meta or []:
            try:
                key = int(item.get("id"))
            except (TypeError, ValueError):
                raise form_error(
                    "attachments", "BASE_TYPE_REQUIRED", "This field is required"
                ) from None
            if key in by_index and key not in existing_by_id:
                f = by_index[key]
                used.add(key)
                result.append(
                    self.state.add_attachment(
                        channel_id,
                        item.get("filename") or f.filename,
                        f.data,
                        f.content_type,
                        description=item.get("description"),
                        ephemeral=ephemeral,
                        title=item.get("title"),
                    )
                )
            elif key in existing_by_id:
                result.append(existing_by_id[key])
            else:
                raise form_error(
                    "attachments", "ATTACHMENT_NOT_FOUND", f"Unknown attachment id {key}"
                )
        for key, f in sorted(by_index.items()):
            if key not in used:
                result.append(
                    self.state.add_attachment(
                        channel_id, f.filename, f.data, f.content_type, ephemeral=ephemeral
                    )
                )
        return result

    def _mentions(self, content: str, channel: Channel) -> tuple[list[User], list[int], bool]:
        users: list[User] = []
        for uid in MENTION_USER.findall(content or ""):
            u = self.state.users.get(int(uid))
            if u is not None and u not in users:
                users.append(u)
        roles: list[int] = []
        guild = self.state.guild_of(channel)
        for rid in MENTION_ROLE.findall(content or ""):
            if guild is not None and int(rid) in guild.roles and int(rid) not in roles:
                roles.append(int(rid))
        everyone = "@everyone" in (content or "") or "@here" in (content or "")
        return users, roles, everyone

    def _new_message(
        self,
        channel: Channel,
        author: User,
        body: dict[str, Any],
        files: list[UploadedFile],
        *,
        source: str,
        type: int | None = None,
        flags: int = 0,
        interaction: Interaction | None = None,
    ) -> Message:
        content = body.get("content")
        content = "" if content is None else str(content)
        embeds = list(body.get("embeds") or ([body["embed"]] if body.get("embed") else []))
        msg = Message(
            id=self.state.ids.next(),
            channel_id=channel.id,
            guild_id=channel.guild_id,
            author=author,
            content=content,
            timestamp=self.clock.now(),
            flags=flags,
            tts=bool(body.get("tts")),
            embeds=embeds,
            components=list(body.get("components") or []),
            nonce=body.get("nonce"),
            source=source,
        )
        mentions, roles, everyone = self._mentions(content, channel)
        msg.mentions, msg.mention_roles = mentions, roles
        msg.mention_everyone = everyone and self._can_mention_everyone(channel, author, body)
        ref = body.get("message_reference")
        if ref:
            ref_id = int(ref.get("message_id"))
            target = self.state.messages.get(ref_id)
            ref_channel = int(ref.get("channel_id") or channel.id)
            if target is None or target.deleted or target.channel_id != ref_channel:
                if ref.get("fail_if_not_exists", True):
                    raise form_error(
                        "message_reference", "MESSAGE_REFERENCE_UNKNOWN_MESSAGE", "Unknown message"
                    )
            else:
                msg.reference = {
                    "type": int(ref.get("type", 0)),
                    "message_id": str(target.id),
                    "channel_id": str(target.channel_id),
                }
                if target.guild_id is not None:
                    msg.reference["guild_id"] = str(target.guild_id)
                msg.referenced_id = target.id
                replied = (body.get("allowed_mentions") or {}).get("replied_user", True)
                if replied and target.author not in msg.mentions and target.author.id != author.id:
                    msg.mentions.append(target.author)
        if type is not None:
            msg.type = type
        elif msg.referenced_id is not None and msg.reference and msg.reference["type"] == 0:
            msg.type = MessageType.REPLY
        attachments = self._attachments_for(channel.id, body, files, [], ephemeral=msg.ephemeral)
        msg.attachments = attachments or []
        if interaction is not None:
            self._attach_interaction(msg, interaction)
        self.state.messages[msg.id] = msg
        channel.last_message_id = msg.id
        if channel.is_thread:
            channel.message_count += 1
            channel.total_message_sent += 1
        return msg

    def _can_mention_everyone(self, channel: Channel, author: User, body: dict[str, Any]) -> bool:
        allowed = body.get("allowed_mentions")
        if allowed is not None and "everyone" not in (allowed.get("parse") or []):
            return False
        return bool(self.state.channel_permissions(channel, author.id) & Perm.MENTION_EVERYONE)

    def _attach_interaction(self, msg: Message, inter: Interaction) -> None:
        msg.webhook_id = self.application_id
        msg.application_id = self.application_id
        msg.interaction_id = inter.id
        meta: dict[str, Any] = {
            "id": str(inter.id),
            "type": inter.type,
            "user": user_payload(inter.user),
            "authorizing_integration_owners": inter.payload.get(
                "authorizing_integration_owners", {}
            ),
        }
        data = inter.data
        if inter.type == InteractionType.APPLICATION_COMMAND:
            meta["name"] = data.get("name", "")
            meta["command_type"] = data.get("type", 1)
            msg.type = (
                MessageType.CHAT_INPUT_COMMAND
                if data.get("type", 1) == 1
                else MessageType.CONTEXT_MENU_COMMAND
            )
        if inter.message is not None and inter.type == InteractionType.MESSAGE_COMPONENT:
            meta["interacted_message_id"] = str(inter.message.id)
        if inter.original is not None and inter.original is not msg:
            meta["original_response_message_id"] = str(inter.original.id)
        msg.interaction_metadata = meta

    def _apply_edit(self, msg: Message, body: dict[str, Any], files: list[UploadedFile]) -> None:
        """Apply an edit body; all-or-nothing (an edit that empties the message is refused)."""
        content = msg.content
        if "content" in body:
            content = "" if body["content"] is None else str(body["content"])
        embeds = msg.embeds
        if "embeds" in body:
            embeds = list(body["embeds"] or [])
        elif "embed" in body:
            embeds = [body["embed"]] if body["embed"] else []
        components = msg.components
        if "components" in body:
            components = list(body["components"] or [])
        flags = msg.flags
        if body.get("flags") is not None:
            mutable = MessageFlag.SUPPRESS_EMBEDS | MessageFlag.IS_COMPONENTS_V2
            flags = (flags & ~mutable) | (int(body["flags"]) & mutable)
        attachments = self._attachments_for(
            msg.channel_id, body, files, msg.attachments, ephemeral=msg.ephemeral
        )
        if attachments is None:
            attachments = msg.attachments
        if not (content.strip() or embeds or attachments or components):
            raise ApiError(400, 50006, "Cannot send an empty message")
        if content != msg.content:
            channel = self.state.channels[msg.channel_id]
            msg.mentions, msg.mention_roles, _ = self._mentions(content, channel)
        msg.content, msg.embeds, msg.components, msg.attachments = (
            content,
            embeds,
            components,
            attachments,
        )
        msg.flags = flags & ~MessageFlag.LOADING
        msg.edited_timestamp = self.clock.now()

    def _rest_message(self, msg: Message) -> dict[str, Any]:
        return self.payloads.message(msg, with_content=self._content_visible(msg, None))

    async def _unarchive_if_needed(self, channel: Channel) -> None:
        if channel.is_thread and channel.archived:
            if channel.locked and not self._bot_perms(channel) & Perm.MANAGE_THREADS:
                raise ApiError(400, 50083, "Thread is archived")
            channel.archived = False
            channel.archive_timestamp = self.clock.now()
            await self.dispatch("THREAD_UPDATE", self.payloads.thread(channel))

    # ----- handlers: identity, gateway, attachments --------------------------------------------
    async def _get_me(self, request: web.Request) -> web.Response:
        return self.json_response(self._bot_user_payload())

    async def _get_user(self, request: web.Request) -> web.Response:
        uid = self._id(request, "user", ApiError(404, 10013, "Unknown User"))
        u = self.state.users.get(uid)
        if u is None:
            raise ApiError(404, 10013, "Unknown User")
        return self.json_response(user_payload(u))

    async def _get_application(self, request: web.Request) -> web.Response:
        return self.json_response(
            {
                "id": str(self.application_id),
                "name": self.bot_user.username,
                "icon": None,
                "description": "A fake application",
                "summary": "",
                "type": None,
                "hook": True,
                "bot_public": True,
                "bot_require_code_grant": False,
                "verify_key": "0" * 64,
                "owner": user_payload(self.owner),
                "team": None,
                "flags": self.application_flags,
                "bot": user_payload(self.bot_user),
                "redirect_uris": [],
                "interactions_endpoint_url": None,
                "role_connections_verification_url": None,
                "tags": [],
                "install_params": None,
                "integration_types_config": {"0": {}},
                "approximate_guild_count": len(self.state.guilds),
                "approximate_user_install_count": 0,
            }
        )

    async def _get_gateway(self, request: web.Request) -> web.Response:
        return self.json_response({"url": self.gateway_url})

    async def _get_gateway_bot(self, request: web.Request) -> web.Response:
        return self.json_response(
            {
                "url": self.gateway_url,
                "shards": self.shard_count,
                "session_start_limit": {
                    "total": SESSION_STARTS_PER_DAY,
                    "remaining": max(0, SESSION_STARTS_PER_DAY - len(self.identified)),
                    "reset_after": 14_400_000,
                    "max_concurrency": self.max_concurrency,
                },
            }
        )

    async def _serve_attachment(self, request: web.Request) -> web.Response:
        att = (
            self.state.attachments.get(int(request.match_info["id"]))
            if request.match_info["id"].isdigit()
            else None
        )
        if att is None or str(att.channel_id) != request.match_info["channel"]:
            return web.Response(status=404, text="Not Found")
        ex = request.query.get("ex")
        if ex is not None:
            try:
                expired = int(ex, 16) < self.clock.now()
            except ValueError:
                expired = True
            if expired:
                return web.Response(status=404, text="This content is no longer available.")
        return web.Response(
            body=att.data, headers={"Content-Type": att.content_type or "application/octet-stream"}
        )

    async def _catch_all(self, request: web.Request) -> web.Response:
        rec = request.get(REC)
        if rec is not None:
            rec.unmatched = True
        return self.json_response({"message": "404: Not Found", "code": 0}, 404)

    # ----- handlers: application commands ------------------------------------------------------
    def _command_app(self, request: web.Request) -> None:
        if request.match_info["app"] != str(self.application_id):
            raise ApiError(403, 50001, "Missing Access")

    def _command_guild(self, request: web.Request) -> int | None:
        if "guild" not in request.match_info:
            return None
        gid = self._id(request, "guild", ApiError(404, 10004, "Unknown Guild"))
        guild = self.state.guilds.get(gid)
        if guild is None or self.bot_user.id not in guild.members:
            raise ApiError(403, 50001, "Missing Access")
        return gid

    def _normalise_command(
        self, data: dict[str, Any], guild_id: int | None, index: int
    ) -> dict[str, Any]:
        ctype = int(data.get("type", 1))
        name = data.get("name")
        prefix = str(index)
        if ctype == 1:
            valid = (
                isinstance(name, str) and bool(COMMAND_NAME.match(name)) and name == name.lower()
            )
        else:  # context menus allow spaces and capitals
            valid = isinstance(name, str) and 1 <= len(name) <= 32
        if not valid:
            raise form_error(
                f"{prefix}.name", "APPLICATION_COMMAND_INVALID_NAME", "Command name is invalid"
            )
        description = data.get("description") or ""
        if ctype == 1 and not 1 <= len(description) <= 100:
            raise form_error(
                f"{prefix}.description",
                "BASE_TYPE_BAD_LENGTH",
                "Must be between 1 and 100 in length.",
            )
        if ctype != 1 and description:
            raise form_error(
                f"{prefix}.description",
                "APPLICATION_COMMAND_CONTEXT_MENU_DESCRIPTION",
                "Context menu commands cannot have description",
            )
        self._validate_options(data.get("options") or [], f"{prefix}.options")
        key = (guild_id, name, ctype)
        cid = self._command_ids.get(key)
        if cid is None:
            cid = self._command_ids[key] = self.state.ids.next()
        out = {
            "id": str(cid),
            "application_id": str(self.application_id),
            "version": str(self.state.ids.next()),
            "type": ctype,
            "name": name,
            "name_localizations": data.get("name_localizations"),
            "description": description,
            "description_localizations": data.get("description_localizations"),
            "default_member_permissions": data.get("default_member_permissions"),
            "nsfw": bool(data.get("nsfw", False)),
            "contexts": data.get("contexts"),
            "integration_types": data.get("integration_types") or [0],
        }
        if guild_id is not None:
            out["guild_id"] = str(guild_id)
        else:
            out["dm_permission"] = data.get("dm_permission", True)
        if data.get("options"):
            out["options"] = [self._normalise_option(o) for o in data["options"]]
        return out

    def _normalise_option(self, option: dict[str, Any]) -> dict[str, Any]:
        out = dict(option)
        out.setdefault("description", "")
        if out.get("options"):
            out["options"] = [self._normalise_option(o) for o in out["options"]]
        return out

    def _validate_options(self, options: list[dict[str, Any]], where: str) -> None:
        if len(options) > 25:
            raise form_error(where, "BASE_TYPE_MAX_LENGTH", "Must be 25 or fewer in length.")
        names: set[str] = set()
        seen_optional = False
        for i, opt in enumerate(options):
            name = opt.get("name")
            if not isinstance(name, str) or not COMMAND_NAME.match(name) or name != name.lower():
                raise form_error(
                    f"{where}.{i}.name",
                    "APPLICATION_COMMAND_INVALID_NAME",
                    "Command name is invalid",
                )
            if name in names:
                raise form_error(
                    f"{where}.{i}.name",
                    "APPLICATION_COMMAND_OPTIONS_NAME_ALREADY_EXISTS",
                    "Option names must be unique",
                )
            names.add(name)
            if not 1 <= len(opt.get("description") or "") <= 100:
                raise form_error(
                    f"{where}.{i}.description",
                    "BASE_TYPE_BAD_LENGTH",
                    "Must be between 1 and 100 in length.",
                )
            if len(opt.get("choices") or []) > 25:
                raise form_error(
                    f"{where}.{i}.choices", "BASE_TYPE_MAX_LENGTH", "Must be 25 or fewer in length."
                )
            if opt.get("type") in (1, 2):
                self._validate_options(opt.get("options") or [], f"{where}.{i}.options")
                continue
            if opt.get("required"):
                if seen_optional:
                    raise form_error(
                        f"{where}.{i}.required",
                        "APPLICATION_COMMAND_OPTIONS_REQUIRED_INVALID",
                        "Required options must be placed before non-required options",
                    )
            else:
                seen_optional = True

    def _command_list(self, guild_id: int | None) -> list[dict[str, Any]]:
        if guild_id is None:
            return self.global_commands
        return self.guild_commands.setdefault(guild_id, [])

    async def _commands(self, request: web.Request) -> web.Response:
        self._command_app(request)
        guild_id = self._command_guild(request)
        rec: RecordedRequest = request[REC]
        if request.method == "GET":
            return self.json_response(self._command_list(guild_id))
        if request.method == "PUT":
            body = rec.json or []
            if not isinstance(body, list):
                raise form_error(
                    "_root", "LIST_TYPE_CONVERT", "Only iterables may be used in a ListType"
                )
            if len(body) > 100:
                raise form_error("_root", "BASE_TYPE_MAX_LENGTH", "Must be 100 or fewer in length.")
            seen: set[tuple[str, int]] = set()
            commands = []
            for i, cmd in enumerate(body):
                norm = self._normalise_command(cmd, guild_id, i)
                key = (norm["name"], norm["type"])
                if key in seen:
                    raise form_error(
                        f"{i}.name",
                        "APPLICATION_COMMANDS_DUPLICATE_NAME",
                        "Application command names must be unique",
                    )
                seen.add(key)
                commands.append(norm)
            if guild_id is None:
                self.global_commands = commands
            else:
                self.guild_commands[guild_id] = commands
            return self.json_response(commands)
        if request.method == "POST":
            norm = self._normalise_command(rec.json or {}, guild_id, 0)
            lst = self._command_list(guild_id)
            lst[:] = [c for c in lst if (c["name"], c["type"]) != (norm["name"], norm["type"])] + [
                norm
            ]
            return self.json_response(norm, 201)
        return self._error_response(ApiError(405, 0, "405: Method Not Allowed"))

    async def _command(self, request: web.Request) -> web.Response:
        self._command_app(request)
        guild_id = self._command_guild(request)
        lst = self._command_list(guild_id)
        cmd = next((c for c in lst if c["id"] == request.match_info["cmd"]), None)
        if cmd is None:
            raise ApiError(404, 10063, "Unknown application command")
        if request.method == "GET":
            return self.json_response(cmd)
        if request.method == "DELETE":
            lst.remove(cmd)
            return web.Response(status=204)
        if request.method == "PATCH":
            rec: RecordedRequest = request[REC]
            merged = {**cmd, **(rec.json or {})}
            norm = self._normalise_command(merged, guild_id, 0)
            lst[lst.index(cmd)] = norm
            return self.json_response(norm)
        return self._error_response(ApiError(405, 0, "405: Method Not Allowed"))

    # ----- handlers: interactions --------------------------------------------------------------
    async def _interaction_callback(self, request: web.Request) -> web.StreamResponse:
        rec: RecordedRequest = request[REC]
        iid = request.match_info["id"]
        inter = self.interactions.get(int(iid)) if iid.isdigit() else None
        if inter is None or inter.token != request.match_info["token"]:
            raise ApiError(404, 10062, "Unknown interaction")
        now = self.clock.now()
        if inter.acknowledged:
            raise ApiError(400, 40060, "Interaction has already been acknowledged.")
        if now - inter.injected_at > self.interaction_ack_window:
            raise ApiError(404, 10062, "Unknown interaction")
        body = rec.json if isinstance(rec.json, dict) else {}
        ctype = body.get("type")
        if ctype not in ALLOWED_CALLBACKS.get(inter.type, set()):
            raise form_error(
                "type",
                "INTERACTION_CALLBACK_TYPE_INVALID",
                f"Interaction callback type {ctype} is not valid here",
            )
        data = body.get("data") or {}
        channel = inter.channel
        resource: dict[str, Any] | None = {"type": ctype}
        ephemeral = bool(int(data.get("flags") or 0) & MessageFlag.EPHEMERAL)
        if ctype == CallbackType.CHANNEL_MESSAGE_WITH_SOURCE:
            self._validate_body(data, rec.files, self._interaction_limit(inter))
            flags = int(data.get("flags") or 0) & (
                MessageFlag.EPHEMERAL
                | MessageFlag.SUPPRESS_EMBEDS
                | MessageFlag.SUPPRESS_NOTIFICATIONS
                | MessageFlag.IS_COMPONENTS_V2
            )
            msg = self._new_message(
                channel,
                self.bot_user,
                data,
                rec.files,
                source="callback",
                flags=flags,
                interaction=inter,
            )
            self._ack(inter, ctype, data, now)
            inter.original = msg
            await self._dispatch_message("MESSAGE_CREATE", msg)
            resource["message"] = self.payloads.message(msg)
        elif ctype == CallbackType.DEFERRED_CHANNEL_MESSAGE_WITH_SOURCE:
            flags = MessageFlag.LOADING | (MessageFlag.EPHEMERAL if ephemeral else 0)
            msg = self._new_message(
                channel, self.bot_user, {}, [], source="callback", flags=flags, interaction=inter
            )
            self._ack(inter, ctype, data, now)
            inter.original = msg
            await self._dispatch_message("MESSAGE_CREATE", msg)
            resource["message"] = self.payloads.message(msg)
        elif ctype in (CallbackType.DEFERRED_UPDATE_MESSAGE, CallbackType.UPDATE_MESSAGE):
            target = inter.message
            if target is None:
                raise form_error(
                    "type",
                    "INTERACTION_CALLBACK_TYPE_INVALID",
                    "This interaction has no message to update",
                )
            if ctype == CallbackType.UPDATE_MESSAGE:
                self._validate_body(data, rec.files, self._interaction_limit(inter), edit=True)
                self._apply_edit(target, data, rec.files)
            self._ack(inter, ctype, data, now)
            inter.original = target
            if ctype == CallbackType.UPDATE_MESSAGE:
                await self._dispatch_message("MESSAGE_UPDATE", target)
            resource["message"] = self.payloads.message(target)
        elif ctype == CallbackType.APPLICATION_COMMAND_AUTOCOMPLETE_RESULT:
            choices = data.get("choices") or []
            if len(choices) > 25:
                raise form_error(
                    "data.choices", "BASE_TYPE_MAX_LENGTH", "Must be 25 or fewer in length."
                )
            self._ack(inter, ctype, data, now)
            inter.choices = choices
        elif ctype == CallbackType.MODAL:
            if not data.get("custom_id") or not data.get("title") or not data.get("components"):
                raise form_error("data", "BASE_TYPE_REQUIRED", "This field is required")
            self._ack(inter, ctype, data, now)
            inter.modal = data
            self.modals_sent.append((inter, data))
        else:  # PONG
            self._ack(inter, ctype, data, now)
            resource = None
        if not truthy(rec.query.get("with_response")):
            return web.Response(status=204)
        original = inter.original
        answer: dict[str, Any] = {
            "interaction": {
                "id": str(inter.id),
                "type": inter.type,
                "response_message_id": str(original.id) if original is not None else None,
                "response_message_loading": bool(original is not None and original.loading),
                "response_message_ephemeral": bool(original is not None and original.ephemeral),
            }
        }
        if original is None:
            for key in (
                "response_message_id",
                "response_message_loading",
                "response_message_ephemeral",
            ):
                answer["interaction"].pop(key)
        if resource is not None:
            answer["resource"] = resource
        return self.json_response(answer)

    def _ack(self, inter: Interaction, ctype: int, data: dict[str, Any], now: float) -> None:
        inter.response_type = ctype
        inter.response_data = data
        inter.acked_at = now
        inter.acked.set()

    def _interaction_limit(self, inter: Interaction) -> int:
        return int(inter.payload.get("attachment_size_limit") or 10 * MIB)

    def _webhook_interaction(self, request: web.Request) -> Interaction:
        if request.match_info["app"] != str(self.application_id):
            raise ApiError(404, 10015, "Unknown Webhook")
        inter = self._by_token.get(request.match_info["token"])
        if inter is None:
            raise ApiError(401, 50027, "Invalid Webhook Token")
        if self.clock.now() - inter.injected_at > self.interaction_token_ttl:
            raise ApiError(401, 50027, "Invalid Webhook Token")
        if not inter.acknowledged:
            raise ApiError(404, 10015, "Unknown Webhook")
        return inter

    async def _webhook_execute(self, request: web.Request) -> web.StreamResponse:
        rec: RecordedRequest = request[REC]
        inter = self._webhook_interaction(request)
        body = rec.json if isinstance(rec.json, dict) else {}
        channel = inter.channel
        thread_id = rec.query.get("thread_id")
        if thread_id:
            thread = self.state.channels.get(int(thread_id)) if thread_id.isdigit() else None
            if thread is None or not thread.is_thread or thread.parent_id != channel.id:
                raise unknown_channel()
            channel = thread
        if channel.deleted:
            raise unknown_channel()
        self._validate_body(body, rec.files, self._interaction_limit(inter))
        headers = self._rate_check(channel, rec)
        original = inter.original
        if (
            inter.response_type == CallbackType.DEFERRED_CHANNEL_MESSAGE_WITH_SOURCE
            and original is not None
            and original.loading
            and not thread_id
        ):
            # Discord: the first follow-up after a deferred reply edits the "thinking" message.
            self._apply_edit(original, {k: v for k, v in body.items() if k != "flags"}, rec.files)
            msg = original
            await self._dispatch_message("MESSAGE_UPDATE", msg)
        else:
            flags = int(body.get("flags") or 0) & (
                MessageFlag.EPHEMERAL
                | MessageFlag.SUPPRESS_EMBEDS
                | MessageFlag.SUPPRESS_NOTIFICATIONS
                | MessageFlag.IS_COMPONENTS_V2
            )
            msg = self._new_message(
                channel,
                self.bot_user,
                body,
                rec.files,
                source="followup",
                flags=flags,
                interaction=inter,
            )
            await self._dispatch_message("MESSAGE_CREATE", msg)
        inter.followups.append(msg)
        if not truthy(rec.query.get("wait")):
            return web.Response(status=204, headers=headers)
        return self.json_response(self.payloads.message(msg), 200, headers)

    async def _webhook_message(self, request: web.Request) -> web.StreamResponse:
        rec: RecordedRequest = request[REC]
        inter = self._webhook_interaction(request)
        key = request.match_info["message"]
        if key == "@original":
            msg = inter.original
        else:
            mid = int(key) if key.isdigit() else -1
            msg = next(
                (m for m in [inter.original, *inter.followups] if m is not None and m.id == mid),
                None,
            )
        if msg is None or msg.deleted:
            raise unknown_message()
        if request.method == "GET":
            return self.json_response(self.payloads.message(msg))
        if request.method == "PATCH":
            body = rec.json if isinstance(rec.json, dict) else {}
            self._validate_body(body, rec.files, self._interaction_limit(inter), edit=True)
            headers = self._rate_check(self.state.channels[msg.channel_id], rec)
            self._apply_edit(msg, body, rec.files)
            await self._dispatch_message("MESSAGE_UPDATE", msg)
            return self.json_response(self.payloads.message(msg), 200, headers)
        if request.method == "DELETE":
            msg.deleted = True
            await self._dispatch_delete(msg)
            return web.Response(status=204)
        return self._error_response(ApiError(405, 0, "405: Method Not Allowed"))

    async def _dispatch_delete(self, msg: Message) -> None:
        if msg.ephemeral:
            return
        data = {"id": str(msg.id), "channel_id": str(msg.channel_id)}
        if msg.guild_id is not None:
            data["guild_id"] = str(msg.guild_id)
        await self.dispatch("MESSAGE_DELETE", data, guild_id=msg.guild_id)

    # ----- handlers: channels and messages -----------------------------------------------------
    async def _channel(self, request: web.Request) -> web.Response:
        channel = self._get_channel(request)
        rec: RecordedRequest = request[REC]
        if request.method == "GET":
            return self.json_response(self.payloads.channel(channel))
        perms = self._bot_perms(channel)
        if request.method == "PATCH":
            body = rec.json if isinstance(rec.json, dict) else {}
            if channel.is_thread:
                if channel.owner_id != self.bot_user.id and not perms & Perm.MANAGE_THREADS:
                    raise missing_permissions()
                # An archived thread changes only while being unarchived; a locked one, only
                # by members with Manage Threads.
                if channel.archived and body.get("archived") is not False:
                    raise ApiError(400, 50083, "Thread is archived")
                if channel.archived and channel.locked and not perms & Perm.MANAGE_THREADS:
                    raise missing_permissions()
                # Locking is a moderator's act: even the thread's creator needs Manage Threads.
                if body.get("locked") and not perms & Perm.MANAGE_THREADS:
                    raise missing_permissions()
                for key in (
                    "name",
                    "archived",
                    "locked",
                    "auto_archive_duration",
                    "rate_limit_per_user",
                    "invitable",
                ):
                    if key in body:
                        setattr(channel, key, body[key])
                if "archived" in body:
                    channel.archive_timestamp = self.clock.now()
                await self.dispatch("THREAD_UPDATE", self.payloads.thread(channel))
            else:
                if channel.is_dm or not perms & Perm.MANAGE_CHANNELS:
                    raise missing_permissions()
                for key in ("name", "topic", "nsfw", "rate_limit_per_user", "position"):
                    if key in body:
                        setattr(channel, key, body[key])
                await self.dispatch("CHANNEL_UPDATE", self.payloads.channel(channel))
            return self.json_response(self.payloads.channel(channel))
        if request.method == "DELETE":
            if channel.is_thread:
                allowed = channel.owner_id == self.bot_user.id or perms & Perm.MANAGE_THREADS
            else:
                allowed = channel.is_dm or perms & Perm.MANAGE_CHANNELS
            if not allowed:
                raise missing_permissions()
            payload = self.payloads.channel(channel)
            await self.delete_channel(channel)
            return self.json_response(payload)
        return self._error_response(ApiError(405, 0, "405: Method Not Allowed"))

    async def _list_messages(self, request: web.Request) -> web.Response:
        channel = self._get_channel(request)
        if not self._bot_perms(channel) & Perm.READ_MESSAGE_HISTORY:
            return self.json_response([])
        q = request.query
        limit = max(1, min(100, int(q.get("limit", 50))))
        msgs = sorted(self.messages_in(channel, include_ephemeral=False), key=lambda m: m.id)
        if "before" in q:
            msgs = [m for m in msgs if m.id < int(q["before"])][-limit:]
        elif "after" in q:
            msgs = [m for m in msgs if m.id > int(q["after"])][:limit]
        elif "around" in q:
            around = int(q["around"])
            older = [m for m in msgs if m.id < around][-(limit // 2) :]
            newer = [m for m in msgs if m.id >= around][: limit - len(older)]
            msgs = older + newer
        else:
            msgs = msgs[-limit:]
        msgs.sort(key=lambda m: m.id, reverse=True)
        return self.json_response([self._rest_message(m) for m in msgs])

    def _check_send(self, channel: Channel, files: list[UploadedFile]) -> None:
        if channel.is_dm:
            if not all(u.accepts_dms for u in channel.recipients):
                raise ApiError(403, 50007, "Cannot send messages to this user")
            return
        perms = self._bot_perms(channel)
        needed = Perm.SEND_MESSAGES_IN_THREADS if channel.is_thread else Perm.SEND_MESSAGES
        if not perms & needed:
            raise missing_permissions()
        if files and not perms & Perm.ATTACH_FILES:
            raise missing_permissions()

    async def _create_message_route(self, request: web.Request) -> web.Response:
        rec: RecordedRequest = request[REC]
        channel = self._get_channel(request)
        headers = self._rate_check(channel, rec)
        body = rec.json if isinstance(rec.json, dict) else {}
        self._validate_body(body, rec.files, self._upload_limit(channel))
        self._check_send(channel, rec.files)
        nonce = body.get("nonce")
        if nonce is not None and body.get("enforce_nonce"):
            seen = self._nonces.get((channel.id, str(nonce)))
            if seen is not None and self.clock.now() - seen[1] <= self.nonce_window:
                earlier = self.state.messages.get(seen[0])
                if earlier is not None:
                    return self.json_response(self._rest_message(earlier), 200, headers)
        await self._unarchive_if_needed(channel)
        msg = self._new_message(channel, self.bot_user, body, rec.files, source="channel")
        if nonce is not None and body.get("enforce_nonce"):
            self._nonces[(channel.id, str(nonce))] = (msg.id, self.clock.now())
        await self._dispatch_message("MESSAGE_CREATE", msg)
        return self.json_response(self._rest_message(msg), 200, headers)

    async def _message_route(self, request: web.Request) -> web.StreamResponse:
        rec: RecordedRequest = request[REC]
        channel = self._get_channel(request)
        msg = self._message_in(channel, self._id(request, "message", unknown_message()))
        if request.method == "GET":
            if not self._bot_perms(channel) & Perm.READ_MESSAGE_HISTORY:
                raise missing_permissions()
            return self.json_response(self._rest_message(msg))
        if channel.is_thread and channel.archived:  # only sending a message unarchives
            raise ApiError(400, 50083, "Thread is archived")
        if request.method == "PATCH":
            body = rec.json if isinstance(rec.json, dict) else {}
            if msg.author.id != self.bot_user.id and set(body) - {"flags"}:
                raise ApiError(403, 50005, "Cannot edit a message authored by another user")
            headers = self._rate_check(channel, rec)
            self._validate_body(body, rec.files, self._upload_limit(channel), edit=True)
            if rec.files and not channel.is_dm and not self._bot_perms(channel) & Perm.ATTACH_FILES:
                raise missing_permissions()
            self._apply_edit(msg, body, rec.files)
            await self._dispatch_message("MESSAGE_UPDATE", msg)
            return self.json_response(self._rest_message(msg), 200, headers)
        if request.method == "DELETE":
            own = msg.author.id == self.bot_user.id
            if not own and (channel.is_dm or not self._bot_perms(channel) & Perm.MANAGE_MESSAGES):
                raise missing_permissions()
            msg.deleted = True
            await self._dispatch_delete(msg)
            return web.Response(status=204)
        return self._error_response(ApiError(405, 0, "405: Method Not Allowed"))

    def _thread_name(self, body: dict[str, Any]) -> str:
        name = body.get("name")
        if not isinstance(name, str) or not 1 <= len(name) <= 100:
            raise form_error("name", "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 100 in length.")
        return name

    async def _announce_thread(self, thread: Channel) -> None:
        await self.dispatch("THREAD_CREATE", self.payloads.thread(thread, newly_created=True))

    async def _thread_from_message(self, request: web.Request) -> web.Response:
        rec: RecordedRequest = request[REC]
        channel = self._get_channel(request)
        if channel.type not in (ChannelType.GUILD_TEXT, ChannelType.GUILD_ANNOUNCEMENT):
            raise ApiError(400, 50024, "Cannot execute action on this channel type")
        msg = self._message_in(channel, self._id(request, "message", unknown_message()))
        body = rec.json if isinstance(rec.json, dict) else {}
        name = self._thread_name(body)
        if not self._bot_perms(channel) & Perm.CREATE_PUBLIC_THREADS:
            raise missing_permissions()
        if msg.thread_id is not None:
            raise ApiError(400, 160004, "A thread has already been created for this message")
        thread = self.state.add_thread(
            channel,
            name,
            owner=self.bot_user,
            id=msg.id,
            auto_archive_duration=int(body.get("auto_archive_duration") or 1440),
        )
        thread.rate_limit_per_user = int(body.get("rate_limit_per_user") or 0)
        msg.thread_id = thread.id
        await self._announce_thread(thread)
        return self.json_response(self.payloads.thread(thread), 201)

    async def _thread_without_message(self, request: web.Request) -> web.Response:
        rec: RecordedRequest = request[REC]
        channel = self._get_channel(request)
        if channel.type not in (ChannelType.GUILD_TEXT, ChannelType.GUILD_ANNOUNCEMENT):
            raise ApiError(400, 50024, "Cannot execute action on this channel type")
        body = rec.json if isinstance(rec.json, dict) else {}
        name = self._thread_name(body)
        private = int(body.get("type") or ChannelType.PRIVATE_THREAD) == ChannelType.PRIVATE_THREAD
        needed = Perm.CREATE_PRIVATE_THREADS if private else Perm.CREATE_PUBLIC_THREADS
        if not self._bot_perms(channel) & needed:
            raise missing_permissions()
        thread = self.state.add_thread(
            channel,
            name,
            owner=self.bot_user,
            private=private,
            auto_archive_duration=int(body.get("auto_archive_duration") or 1440),
            invitable=bool(body.get("invitable", True)),
        )
        thread.rate_limit_per_user = int(body.get("rate_limit_per_user") or 0)
        await self._announce_thread(thread)
        if not private:
            system = self._new_message(
                channel,
                self.bot_user,
                {"content": name},
                [],
                source="system",
                type=MessageType.THREAD_CREATED,
            )
            system.reference = {
                "type": 0,
                "channel_id": str(thread.id),
                "guild_id": str(channel.guild_id),
            }
            await self._dispatch_message("MESSAGE_CREATE", system)
        return self.json_response(self.payloads.thread(thread), 201)

    async def _thread_member(self, request: web.Request) -> web.Response:
        channel = self._get_channel(request)
        if not channel.is_thread:
            raise ApiError(400, 50024, "Cannot execute action on this channel type")
        key = request.match_info["user"]
        uid = self.bot_user.id if key == "@me" else self._id(request, "user")
        if uid not in self.state.users:
            raise ApiError(404, 10013, "Unknown User")
        if request.method == "PUT":
            channel.thread_members.add(uid)
        elif request.method == "DELETE":
            channel.thread_members.discard(uid)
        elif request.method == "GET":
            if uid not in channel.thread_members:
                raise ApiError(404, 10007, "Unknown Member")
            return self.json_response(
                {
                    "id": str(channel.id),
                    "user_id": str(uid),
                    "join_timestamp": self.clock.iso(),
                    "flags": 0,
                }
            )
        return web.Response(status=204)

    async def _typing(self, request: web.Request) -> web.Response:
        channel = self._get_channel(request)
        self._check_send(channel, [])
        return web.Response(status=204)

    async def _reaction(self, request: web.Request) -> web.Response:
        channel = self._get_channel(request)
        msg = self._message_in(channel, self._id(request, "message", unknown_message()))
        emoji = request.match_info["emoji"]
        who = request.match_info["user"]
        if who != "@me":
            if request.method != "DELETE" or not self._bot_perms(channel) & Perm.MANAGE_MESSAGES:
                raise missing_permissions()
            uid = self._id(request, "user")
        else:
            uid = self.bot_user.id
        if request.method == "PUT":
            if not channel.is_dm and not self._bot_perms(channel) & Perm.ADD_REACTIONS:
                raise missing_permissions()
            msg.reactions.setdefault(emoji, set()).add(uid)
            event = "MESSAGE_REACTION_ADD"
        elif request.method == "DELETE":
            msg.reactions.get(emoji, set()).discard(uid)
            event = "MESSAGE_REACTION_REMOVE"
        else:
            return self._error_response(ApiError(405, 0, "405: Method Not Allowed"))
        data: dict[str, Any] = {
            "user_id": str(uid),
            "channel_id": str(channel.id),
            "message_id": str(msg.id),
            "emoji": {"id": None, "name": emoji},
            "burst": False,
            "type": 0,
        }
        if msg.guild_id is not None:
            data["guild_id"] = str(msg.guild_id)
        await self.dispatch(event, data, guild_id=msg.guild_id)
        return web.Response(status=204)

    async def _open_dm(self, request: web.Request) -> web.Response:
        rec: RecordedRequest = request[REC]
        body = rec.json if isinstance(rec.json, dict) else {}
        rid = body.get("recipient_id")
        target = self.state.users.get(int(rid)) if str(rid).isdigit() else None
        if target is None:
            raise ApiError(404, 10013, "Unknown User")
        return self.json_response(self.payloads.channel(self.state.open_dm(target)))

    # ----- handlers: guilds --------------------------------------------------------------------
    def _get_guild_obj(self, request: web.Request) -> Guild:
        gid = self._id(request, "guild", ApiError(404, 10004, "Unknown Guild"))
        guild = self.state.guilds.get(gid)
        if guild is None:
            raise ApiError(404, 10004, "Unknown Guild")
        if self.bot_user.id not in guild.members:
            raise ApiError(403, 50001, "Missing Access")
        return guild

    async def _get_guild(self, request: web.Request) -> web.Response:
        guild = self._get_guild_obj(request)
        data = self.payloads.guild(guild)
        if truthy(request.query.get("with_counts")):
            data["approximate_member_count"] = len(guild.members)
            data["approximate_presence_count"] = 0
        return self.json_response(data)

    async def _get_guild_channels(self, request: web.Request) -> web.Response:
        guild = self._get_guild_obj(request)
        return self.json_response(
            [self.payloads.channel(c) for c in self.state.guild_channels(guild)]
        )

    async def _get_roles(self, request: web.Request) -> web.Response:
        guild = self._get_guild_obj(request)
        from .payloads import role

        return self.json_response([role(r) for r in guild.roles.values()])

    async def _get_member(self, request: web.Request) -> web.Response:
        guild = self._get_guild_obj(request)
        uid = self._id(request, "user", ApiError(404, 10013, "Unknown User"))
        member = guild.members.get(uid)
        if member is None:
            raise ApiError(404, 10007, "Unknown Member")
        return self.json_response(self.payloads.member(member))

    async def _active_threads(self, request: web.Request) -> web.Response:
        guild = self._get_guild_obj(request)
        threads = self.state.threads_of(guild)
        return self.json_response(
            {"threads": [self.payloads.thread(t) for t in threads], "members": []}
        )
