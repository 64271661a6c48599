"""A fake Discord (REST v10 + gateway) on 127.0.0.1 for end-to-end tests of discord.py bots.

Typical use::

    async with FakeDiscord() as fake:
        world = fake.standard_world()
        bot = commands.Bot(command_prefix="!", intents=discord.Intents.default(),
                           guild_ready_timeout=0.05)
        async with run_client(bot, fake):
            inter = await fake.slash("imagine", {"prompt": "a cat"}, user=world.alice,
                                     channel=world.general)
            await fake.wait_for_ack(inter)

The harness imports nothing from the bot; it only speaks Discord's wire formats.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import traceback
from collections.abc import AsyncIterator, Iterator
from typing import Any

from .clock import FakeClock
from .constants import MIB, CallbackType, ChannelType, Intent, InteractionType, MessageFlag, Perm
from .gateway import GatewaySession, Identified
from .records import Fault, Interaction, RateViolation, RecordedRequest, UploadedFile
from .server import API_PREFIX, FakeDiscord
from .state import Attachment, Channel, Guild, Member, Message, Role, User


class point_discordpy_at:  # reads as a function; also a context manager
    """Point discord.py's REST base and gateway URL at the fake.

    Takes effect immediately; as a context manager it restores the previous values on exit.
    A bot that reads ``DISCORD_API_BASE_URL`` / ``DISCORD_GATEWAY_URL`` from settings should be
    given ``fake.api_base`` and ``fake.gateway_url`` instead.
    """

    def __init__(self, fake: FakeDiscord) -> None:
        import yarl
        from discord.gateway import DiscordWebSocket
        from discord.http import Route

        self._route = Route
        self._ws = DiscordWebSocket
        self._old = (Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY)
        Route.BASE = fake.api_base
        DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(fake.gateway_url)

    def restore(self) -> None:
        self._route.BASE, self._ws.DEFAULT_GATEWAY = self._old

    def __enter__(self) -> point_discordpy_at:
        return self

    def __exit__(self, *exc: object) -> None:
        self.restore()


class _ErrorCollector(logging.Handler):
    def __init__(self, level: int) -> None:
        super().__init__(level=level)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@contextlib.contextmanager
def capture_discord_errors(
    logger: str = "discord", level: int = logging.ERROR
) -> Iterator[list[logging.LogRecord]]:
    """Collect ERROR records of the ``discord`` logger (callback exceptions end up there).

    discord.py catches exceptions raised in app-command, view and modal callbacks and only logs
    them; a test should fail on any of them: ``assert not records, format_records(records)``.
    """
    handler = _ErrorCollector(level)
    target = logging.getLogger(logger)
    target.addHandler(handler)
    try:
        yield handler.records
    finally:
        target.removeHandler(handler)


def format_records(records: list[logging.LogRecord]) -> str:
    lines = []
    for r in records:
        text = f"{r.name}: {r.getMessage()}"
        if r.exc_info and r.exc_info[1] is not None:
            text += "\n" + "".join(traceback.format_exception(r.exc_info[1]))
        lines.append(text)
    return "\n".join(lines)


@contextlib.asynccontextmanager
async def run_client(
    client: Any,
    fake: FakeDiscord,
    *,
    token: str | None = None,
    timeout: float = 10.0,
) -> AsyncIterator[Any]:
    """Run ``client.start(token)`` against the fake until it is ready; close it on exit.

    Construct the client with a small ``guild_ready_timeout`` (e.g. 0.05): discord.py waits that
    long after the last GUILD_CREATE before ``on_ready`` (default 2 s).
    """
    with point_discordpy_at(fake):
        task = asyncio.create_task(client.start(token or fake.token), name="fakediscord-client")
        ready = asyncio.create_task(client.wait_until_ready())
        try:
            done, _ = await asyncio.wait(
                {task, ready}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
            if task in done:
                task.result()  # raises the start-up error
                raise RuntimeError("client.start() returned before the client was ready")
            if ready not in done:
                raise TimeoutError(f"client not ready after {timeout} s")
            yield client
        finally:
            ready.cancel()
            await client.close()
            if not task.done():
                async with asyncio.timeout(timeout):
                    await task


__all__ = [
    "API_PREFIX",
    "MIB",
    "Attachment",
    "CallbackType",
    "Channel",
    "ChannelType",
    "FakeClock",
    "FakeDiscord",
    "Fault",
    "GatewaySession",
    "Guild",
    "Identified",
    "Intent",
    "Interaction",
    "InteractionType",
    "Member",
    "Message",
    "MessageFlag",
    "Perm",
    "RateViolation",
    "RecordedRequest",
    "Role",
    "UploadedFile",
    "User",
    "capture_discord_errors",
    "format_records",
    "point_discordpy_at",
    "run_client",
]
