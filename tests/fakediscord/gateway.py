"""The fake gateway: a websocket speaking Discord's gateway protocol in plain-text JSON frames.

HELLO -> IDENTIFY -> READY + one GUILD_CREATE per guild; heartbeats are ACKed; RESUME replays the
events a session missed; op 7 / dropped connections let a test exercise reconnects.

Shards: each IDENTIFY names ``shard: [id, count]`` (none: ``[0, 1]``) and opens a session of
its own. A guild belongs to shard ``(guild_id >> 22) % count``: its READY entry, GUILD_CREATE
and every event about it go only to that shard's sessions; events without a guild (DMs) go to
shard 0. Identify times are kept per shard, so a test can check their spacing per bucket.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import WSMsgType, web

from .constants import DM_EVENT_INTENTS, GUILD_EVENT_INTENTS, AppFlag, Intent, Op
from .state import Message

if TYPE_CHECKING:
    from .server import FakeDiscord

HEARTBEAT_INTERVAL_MS = 41250
SESSION_STARTS_PER_DAY = 1000
GUILD_LEVEL_EVENTS = {"GUILD_CREATE", "GUILD_UPDATE", "GUILD_DELETE"}

EventData = dict[str, Any] | Callable[["GatewaySession"], dict[str, Any] | None]


@dataclass(eq=False)
class GatewayConnection:
    ws: web.WebSocketResponse
    query: dict[str, str]
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    session: GatewaySession | None = None
    heartbeats: int = 0
    received: list[dict[str, Any]] = field(default_factory=list)
    # (sequence, future): resolved by a client heartbeat whose "d" (its last seq) reaches it
    seq_waiters: list[tuple[int, asyncio.Future[None]]] = field(default_factory=list)


@dataclass(frozen=True)
class Identified:
    """An accepted IDENTIFY: when (``time.monotonic()``), for which shard, which session."""

    at: float
    shard: tuple[int, int]
    session_id: str


@dataclass(eq=False)
class GatewaySession:
    id: str
    identify: dict[str, Any]
    intents: int
    shard: tuple[int, int]
    seq: int = 0
    events: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=2000))
    conn: GatewayConnection | None = None
    ready: bool = False
    resumes: int = 0

    def has_intent(self, bit: int) -> bool:
        return bool(self.intents & bit)

    def covers_guild(self, guild_id: int) -> bool:
        shard_id, shard_count = self.shard
        return (guild_id >> 22) % shard_count == shard_id


class GatewayMixin:
    """Websocket handling for :class:`FakeDiscord` (kept apart for readability)."""

    def _init_gateway(self: FakeDiscord) -> None:
        self.connections: set[GatewayConnection] = set()
        self.sessions: dict[str, GatewaySession] = {}
        self.identifies: list[dict[str, Any]] = []
        self.identified: list[Identified] = []
        self.resumes: list[dict[str, Any]] = []
        self.presence_updates: list[dict[str, Any]] = []
        self.ready_count = 0
        self._ready_cond = asyncio.Condition()

    # ----- public ------------------------------------------------------------------------------
    async def wait_ready(
        self: FakeDiscord, timeout: float = 10.0, *, count: int = 1
    ) -> GatewaySession:
        """Wait until ``count`` IDENTIFYs in total were answered with READY and all GUILD_CREATEs."""
        async with asyncio.timeout(timeout), self._ready_cond:
            await self._ready_cond.wait_for(lambda: self.ready_count >= count)
        return self.latest_session

    @property
    def latest_session(self: FakeDiscord) -> GatewaySession:
        ready = [s for s in self.sessions.values() if s.ready]
        if not ready:
            raise RuntimeError("no bot has identified with the fake gateway")
        return ready[-1]

    def connected_sessions(self: FakeDiscord) -> list[GatewaySession]:
        return [s for s in self.sessions.values() if s.ready and s.conn is not None]

    def shard_of(self: FakeDiscord, guild_id: int, shard_count: int | None = None) -> int:
        """The shard whose sessions get this guild's events (of ``shard_count``, or the fake's)."""
        return (guild_id >> 22) % (shard_count or self.shard_count)

    def identify_times(self: FakeDiscord, shard_id: int) -> list[float]:
        """When each accepted IDENTIFY of this shard arrived (``time.monotonic()``)."""
        return [i.at for i in self.identified if i.shard[0] == shard_id]

    def identifies_too_soon(self: FakeDiscord) -> list[tuple[Identified, Identified]]:
        """Pairs of consecutive IDENTIFYs of one bucket (shard id modulo ``max_concurrency``)
        closer than ``identify_interval``: what real Discord refuses."""
        last: dict[int, Identified] = {}
        pairs = []
        for ident in sorted(self.identified, key=lambda i: i.at):
            bucket = ident.shard[0] % self.max_concurrency
            before = last.get(bucket)
            if before is not None and ident.at - before.at < self.identify_interval:
                pairs.append((before, ident))
            last[bucket] = ident
        return pairs

    def shards_sent(self: FakeDiscord, event: str, data_id: int) -> list[tuple[int, int]]:
        """The shards (``(id, count)``) of the sessions sent ``event`` whose data has this id
        (an interaction's, a message's, a guild's), in the order sent."""
        shards = {i.session_id: i.shard for i in self.identified}
        return [
            shards[sid]
            for sid, name, data in self.gateway_log
            if name == event and isinstance(data, dict) and data.get("id") == str(data_id)
        ]

    async def dispatch(
        self: FakeDiscord,
        event: str,
        data: EventData,
        *,
        guild_id: int | None = None,
        respect_intents: bool = True,
    ) -> int:
        """Send a DISPATCH (op 0) to every ready session that would get it; returns how many.

        ``data`` may be a callable taking the session, for per-session payloads (intents).
        Sessions without a live connection buffer the event for a later RESUME.
        """
        sent = 0
        for session in list(self.sessions.values()):
            if not session.ready:
                continue
            payload = data(session) if callable(data) else data
            if payload is None:
                continue
            if respect_intents and not self._session_wants(session, event, payload, guild_id):
                continue
            await self._send_dispatch(session, event, payload)
            if session.conn is not None:
                sent += 1
        return sent

    async def gateway_barrier(self: FakeDiscord, timeout: float = 5.0) -> None:
        """Return once every connected client has parsed every dispatch sent so far.

        Sends op 1 HEARTBEAT; the client answers in order with its last sequence number, so
        the answer proves the earlier events went through discord.py's parsers (which is also
        when their handler tasks get created). discord.py limits what it sends to 110 frames
        a minute, so do not call this in a tight loop.
        """
        loop = asyncio.get_running_loop()
        waits = []
        for session in self.connected_sessions():
            conn = session.conn
            if conn is None or session.seq == 0:
                continue
            fut: asyncio.Future[None] = loop.create_future()
            conn.seq_waiters.append((session.seq, fut))
            waits.append(fut)
            await self._send(conn, {"op": Op.HEARTBEAT, "d": None, "s": None, "t": None})
        if waits:
            async with asyncio.timeout(timeout):
                await asyncio.gather(*waits)

    async def request_reconnect(self: FakeDiscord) -> None:
        """Send op 7 RECONNECT to every connection (the client should RESUME)."""
        for conn in list(self.connections):
            await self._send(conn, {"op": Op.RECONNECT, "d": None, "s": None, "t": None})

    async def disconnect_all(self: FakeDiscord, code: int = 4000) -> None:
        """Drop every gateway connection with ``code`` (4000: the client RESUMEs)."""
        for conn in list(self.connections):
            await conn.ws.close(code=code, message=b"fake disconnect")

    async def invalidate_sessions(self: FakeDiscord, resumable: bool = False) -> None:
        """Send op 9 INVALID_SESSION to every connection."""
        for conn in list(self.connections):
            if not resumable and conn.session is not None:
                self.sessions.pop(conn.session.id, None)
            await self._send(conn, {"op": Op.INVALID_SESSION, "d": resumable, "s": None, "t": None})

    # ----- internals ---------------------------------------------------------------------------
    def _session_wants(
        self: FakeDiscord,
        session: GatewaySession,
        event: str,
        data: dict[str, Any],
        guild_id: int | None,
    ) -> bool:
        if guild_id is None and isinstance(data, dict):
            raw = data.get("guild_id")
            if raw is None and event in GUILD_LEVEL_EVENTS:
                raw = data.get("id")
            guild_id = int(raw) if raw is not None else None
        if guild_id is not None:
            if not session.covers_guild(guild_id):
                return False
            intent = GUILD_EVENT_INTENTS.get(event)
        else:  # DMs and everything without a guild go to shard 0
            if session.shard[0] != 0:
                return False
            intent = DM_EVENT_INTENTS.get(event)
        return intent is None or session.has_intent(intent)

    def _content_visible(self: FakeDiscord, msg: Message, intents: int | None) -> bool:
        """Whether the message-content rules let the bot see this message's content."""
        if intents is None:  # REST: the application's privileged-intent flag decides
            if self.message_content_enabled:
                return True
        elif intents & Intent.MESSAGE_CONTENT:
            return True
        bot = self.state.bot
        if bot is None:
            return True
        if msg.author.id == bot.id or msg.guild_id is None:
            return True
        return any(u.id == bot.id for u in msg.mentions)

    async def _dispatch_message(self: FakeDiscord, event: str, msg: Message) -> int:
        if msg.ephemeral:
            return 0

        def build(session: GatewaySession) -> dict[str, Any]:
            visible = self._content_visible(msg, session.intents)
            return self.payloads.message(msg, with_content=visible, gateway=True)

        return await self.dispatch(event, build, guild_id=msg.guild_id)

    async def _send(self: FakeDiscord, conn: GatewayConnection, frame: dict[str, Any]) -> None:
        if conn.ws.closed:
            return
        async with conn.lock:
            with contextlib.suppress(ConnectionResetError, RuntimeError):
                await conn.ws.send_str(json.dumps(frame))

    async def _send_dispatch(
        self: FakeDiscord, session: GatewaySession, event: str, data: dict[str, Any]
    ) -> None:
        session.seq += 1
        frame = {"op": Op.DISPATCH, "d": data, "s": session.seq, "t": event}
        session.events.append(frame)
        self.gateway_log.append((session.id, event, data))
        if session.conn is not None:
            await self._send(session.conn, frame)

    async def _gateway_handler(self: FakeDiscord, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=0, autoping=True)
        await ws.prepare(request)
        conn = GatewayConnection(ws=ws, query=dict(request.query))
        self.connections.add(conn)
        try:
            hello = {"heartbeat_interval": HEARTBEAT_INTERVAL_MS, "_trace": ['["fake-gateway"]']}
            await self._send(conn, {"op": Op.HELLO, "d": hello, "s": None, "t": None})
            async for msg in ws:
                if msg.type is not WSMsgType.TEXT:
                    continue
                try:
                    frame = json.loads(msg.data)
                except ValueError:
                    await ws.close(code=4002, message=b"Error while decoding payload.")
                    break
                conn.received.append(frame)
                await self._gateway_frame(conn, frame)
        finally:
            self.connections.discard(conn)
            if conn.session is not None and conn.session.conn is conn:
                conn.session.conn = None
        return ws

    async def _gateway_frame(self: FakeDiscord, conn: GatewayConnection, frame: dict) -> None:
        op = frame.get("op")
        data = frame.get("d")
        if op == Op.HEARTBEAT:
            conn.heartbeats += 1
            seen = data if isinstance(data, int) else 0
            for entry in list(conn.seq_waiters):
                if entry[0] <= seen:
                    conn.seq_waiters.remove(entry)
                    if not entry[1].done():
                        entry[1].set_result(None)
            await self._send(conn, {"op": Op.HEARTBEAT_ACK, "d": None, "s": None, "t": None})
        elif op == Op.IDENTIFY:
            await self._identify(conn, data or {})
        elif op == Op.RESUME:
            await self._resume(conn, data or {})
        elif op == Op.REQUEST_GUILD_MEMBERS:
            await self._request_members(conn, data or {})
        elif op == Op.PRESENCE_UPDATE:
            self.presence_updates.append(data)
        elif op == Op.VOICE_STATE_UPDATE:
            pass
        else:
            await conn.ws.close(code=4001, message=b"Unknown opcode.")

    async def _identify(self: FakeDiscord, conn: GatewayConnection, data: dict[str, Any]) -> None:
        self.identifies.append(data)
        if conn.session is not None:
            await conn.ws.close(code=4005, message=b"Already authenticated.")
            return
        if data.get("token") != self.token:
            await conn.ws.close(code=4004, message=b"Authentication failed.")
            return
        intents = data.get("intents")
        if not isinstance(intents, int):
            await conn.ws.close(code=4013, message=b"Invalid intent(s).")
            return
        if intents & Intent.PRIVILEGED & ~self.allowed_privileged_intents:
            await conn.ws.close(code=4014, message=b"Disallowed intent(s).")
            return
        shard = data.get("shard") or [0, 1]
        shard_id, shard_count = int(shard[0]), int(shard[1])
        if shard_count < 1 or not 0 <= shard_id < shard_count:
            await conn.ws.close(code=4010, message=b"Invalid shard.")
            return
        session = GatewaySession(
            id=secrets.token_hex(16),
            identify=data,
            intents=intents,
            shard=(shard_id, shard_count),
            conn=conn,
        )
        conn.session = session
        self.sessions[session.id] = session
        self.identified.append(Identified(time.monotonic(), session.shard, session.id))
        bot = self.state.bot
        guilds = [
            g
            for g in self.state.guilds.values()
            if bot is not None and bot.id in g.members and session.covers_guild(g.id)
        ]
        ready: dict[str, Any] = {
            "v": 10,
            "user": self._bot_user_payload(),
            "user_settings": {},
            "guilds": [{"id": str(g.id), "unavailable": True} for g in guilds],
            "session_id": session.id,
            "session_type": "normal",
            "resume_gateway_url": self.gateway_url,
            "relationships": [],
            "private_channels": [],
            "presences": [],
            "guild_join_requests": [],
            "geo_ordered_rtc_regions": ["fake"],
            "auth": {},
            "application": {"id": str(self.application_id), "flags": self.application_flags},
            "_trace": ['["fake-gateway"]'],
        }
        if data.get("shard") is not None:
            ready["shard"] = [shard_id, shard_count]
        await self._send_dispatch(session, "READY", ready)
        all_members = bool(intents & Intent.GUILD_MEMBERS)
        for guild in guilds:
            if intents & Intent.GUILDS:
                payload = self.payloads.guild_create(guild, all_members=all_members)
                await self._send_dispatch(session, "GUILD_CREATE", payload)
        session.ready = True
        async with self._ready_cond:
            self.ready_count += 1
            self._ready_cond.notify_all()

    async def _resume(self: FakeDiscord, conn: GatewayConnection, data: dict[str, Any]) -> None:
        self.resumes.append(data)
        session = self.sessions.get(str(data.get("session_id")))
        if session is None or data.get("token") != self.token:
            await self._send(conn, {"op": Op.INVALID_SESSION, "d": False, "s": None, "t": None})
            return
        old = session.conn
        if old is not None and old is not conn:
            old.session = None
            await old.ws.close(code=4000, message=b"Session resumed elsewhere.")
        session.conn = conn
        conn.session = session
        session.resumes += 1
        seq = data.get("seq") or 0
        for frame in list(session.events):
            if frame["s"] > seq:
                await self._send(conn, frame)
        await self._send_dispatch(session, "RESUMED", {"_trace": ['["fake-gateway"]']})

    async def _request_members(self: FakeDiscord, conn: GatewayConnection, data: dict) -> None:
        session = conn.session
        guild = self.state.guilds.get(int(data.get("guild_id", 0)))
        if session is None or guild is None:
            return
        members = list(guild.members.values())
        user_ids = data.get("user_ids")
        not_found: list[str] = []
        if user_ids:
            wanted = {
                int(u) for u in ([user_ids] if isinstance(user_ids, (int, str)) else user_ids)
            }
            not_found = [str(u) for u in wanted if u not in guild.members]
            members = [m for m in members if m.user.id in wanted]
        else:
            query = (data.get("query") or "").lower()
            members = [m for m in members if m.user.username.lower().startswith(query)]
            limit = int(data.get("limit") or 0)
            if limit:
                members = members[:limit]
        chunk = {
            "guild_id": str(guild.id),
            "members": [self.payloads.member(m) for m in members],
            "chunk_index": 0,
            "chunk_count": 1,
            "not_found": not_found,
        }
        if data.get("nonce") is not None:
            chunk["nonce"] = data["nonce"]
        if data.get("presences"):
            chunk["presences"] = []
        await self._send_dispatch(session, "GUILD_MEMBERS_CHUNK", chunk)

    def _app_flags_for_intents(self: FakeDiscord) -> int:
        flags = AppFlag.APPLICATION_COMMAND_BADGE
        if self.allowed_privileged_intents & Intent.MESSAGE_CONTENT:
            flags |= AppFlag.GATEWAY_MESSAGE_CONTENT_LIMITED
        if self.allowed_privileged_intents & Intent.GUILD_MEMBERS:
            flags |= AppFlag.GATEWAY_GUILD_MEMBERS_LIMITED
        if self.allowed_privileged_intents & Intent.GUILD_PRESENCES:
            flags |= AppFlag.GATEWAY_PRESENCE_LIMITED
        return flags
