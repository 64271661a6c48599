"""The Discord bot: a `commands.AutoShardedBot` that owns the services, loads the cogs, routes
errors.

`run_bot(settings)` is the main job (`python -m bot`). Long-lived resources (database, HTTP
pool, DashScope client, engine) are made in `services()` before the bot and passed in; the bot
starts the engine in `setup_hook` (after login, so REST works, and never waiting on the gateway)
and stops it in `close()`. The process runs the shards SHARD_IDS of SHARD_COUNT (unset: every
shard Discord recommends); each IDENTIFY waits its turn at the identify gate.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
from collections.abc import Callable
from typing import Any

import discord
import yarl
from discord import app_commands
from discord.ext import commands

from bot.config import Settings
from bot.discord_ui.attachments import AttachmentOrigins
from bot.discord_ui.checks import check_failure_text
from bot.discord_ui.deletion import finish_pending
from bot.discord_ui.delivery import DiscordDelivery
from bot.discord_ui.launcher import JobLauncher
from bot.discord_ui.repeats import RecentStarts
from bot.discord_ui.replies import respond, respond_error
from bot.dispatch.engine import EngineStopping
from bot.errors import InputRejected
from bot.i18n import command_text, lang_for, text
from bot.runtime.health import start_health
from bot.runtime.identify import DatabaseIdentifyGate, IdentifyGate, LocalIdentifyGate
from bot.runtime.services import Services, services

log = logging.getLogger(__name__)

COGS = (
    "cogs.imagine",
    "cogs.edit",
    "cogs.jobs",
    "cogs.admin",
    "cogs.settings",
    "cogs.blend",
    "cogs.video",
)

# What the bot needs in a channel: view, send (also in threads), create public threads, attach
# files, embed links, read history (to see what a reply refers to).
PERMISSIONS = discord.Permissions(
    view_channel=True,
    send_messages=True,
    send_messages_in_threads=True,
    create_public_threads=True,
    attach_files=True,
    embed_links=True,
    read_message_history=True,
)

SETUP_HELP = """\
wanbot needs a Discord bot token (DISCORD_TOKEN) to run.
1. Open https://discord.com/developers/applications, create an application, and on its "Bot"
   page press "Reset Token" and copy the token.
2. Put it in the environment or in .env as DISCORD_TOKEN=... (see .env.example).
3. Invite the bot to your server with {invite}
   (scopes bot and applications.commands; no privileged intent is needed).
Without DASHSCOPE_API_KEY the bot runs against its built-in simulator, so you can try it first.
To try the command line without Discord: python -m bot imagine "a flower shop" --out out/"""


def invite_url(application_id: int | None) -> str:
    if application_id is None:
        return (
            "the invite link from the developer portal (OAuth2 → URL Generator; set "
            "DISCORD_APPLICATION_ID and this message prints it)"
        )
    return discord.utils.oauth_url(
        application_id,
        permissions=PERMISSIONS,
        scopes=("bot", "applications.commands"),
    )


class WanTranslator(app_commands.Translator):
    """Command names, options and descriptions in each catalogue's language (`[commands]`)."""

    async def translate(
        self,
        string: app_commands.locale_str,
        locale: discord.Locale,
        context: app_commands.TranslationContextTypes,
    ) -> str | None:
        return command_text(string.message, locale.value)


class WanTree(app_commands.CommandTree["WanBot"]):
    """Refuses DMs unless allowed; answers failed checks and domain errors in friendly ephemeral
    messages."""

    async def interaction_check(self, interaction: discord.Interaction) -> bool:
        if interaction.guild_id is None and not self.client.settings.allow_dms:
            await respond(interaction, text("reply.no_dms", lang_for(str(interaction.locale))))
            return False
        return True

    async def on_error(
        self, interaction: discord.Interaction, error: app_commands.AppCommandError
    ) -> None:
        original = getattr(error, "original", error)
        if isinstance(error, app_commands.CommandNotFound) and self.client.stopping:
            # The bot is stopping and unloaded its commands first: say so, not "outdated".
            await respond_error(interaction, EngineStopping("the bot is stopping"))
            return
        if isinstance(error, app_commands.CommandNotFound | app_commands.CommandSignatureMismatch):
            # A client with a stale command list (or a malformed payload): say so, not "error".
            log.warning("interaction for an unknown or changed command: %s", error)
            await respond_error(interaction, InputRejected.one("reply.command_outdated"))
            return
        if isinstance(error, app_commands.CheckFailure):
            lang = lang_for(str(interaction.locale))
            await respond(interaction, check_failure_text(error, lang))
            return
        await respond_error(interaction, original)


class WanBot(commands.AutoShardedBot):
    def __init__(
        self, svc: Services, port: DiscordDelivery, *, identify_gate: IdentifyGate | None = None
    ) -> None:
        intents = discord.Intents.none()
        intents.guilds = True
        intents.guild_messages = True  # replies that mention the bot carry their content
        intents.dm_messages = True
        super().__init__(
            command_prefix=commands.when_mentioned,
            intents=intents,
            tree_cls=WanTree,
            help_command=None,
            allowed_mentions=discord.AllowedMentions.none(),
            owner_ids=svc.settings.owner_id_set or None,
            guild_ready_timeout=1.0,
            shard_count=svc.settings.shard_count,
        )
        # Set here, not passed: discord.py's options type it as a list, though None (every
        # shard) is its default. The settings checked that ids come with a count.
        self.shard_ids = svc.settings.shard_ids
        self.svc = svc
        self.settings = svc.settings
        self.engine = svc.engine
        self.delivery = port
        self.launcher = JobLauncher(svc.engine)
        self.recent_starts = RecentStarts()  # one click or form, one job
        # From the settings, not from discord.py's Route.BASE (which run_bot points there too).
        self.attachment_origins = AttachmentOrigins.from_settings(svc.settings)
        self.owns_process = False  # set by run_bot when the bot is the process's main job
        self.stopping = False  # close() has begun: its commands are being unloaded
        # Shared with other processes when they share a database; this process's own otherwise.
        self.identify_gate = identify_gate or default_identify_gate(svc)
        self.max_concurrency = 1  # sessions Discord lets start per 5 s (from GET /gateway/bot)
        port.attach(self, svc.engine.expected_seconds, svc.engine.store.get)

    async def launch_shards(self) -> None:
        await self.read_session_start_limit()
        # With the count known, discord.py connects to DISCORD_GATEWAY_URL, not the URL
        # /gateway/bot names (a proxy or a stand-in stays in the path).
        await super().launch_shards()

    async def read_session_start_limit(self) -> None:
        """GET /gateway/bot, once per start: the shard count when none is set, and how many
        sessions may start per 5 s. discord.py reads it only without a count, and keeps only
        the count."""
        try:
            shards, _, limit = await self.http.get_bot_gateway()
        except (discord.GatewayNotFound, OSError):
            if self.shard_count is None:
                raise
            log.warning("GET /gateway/bot failed: starting one session per 5 s")
            return
        if self.shard_count is None:
            self.shard_count = shards
        self.max_concurrency = max(1, int(limit.get("max_concurrency") or 1))
        log.info(
            "starting shards %s of %d, %d at a time",
            self.shard_ids or f"0-{self.shard_count - 1}",
            self.shard_count,
            self.max_concurrency,
        )

    async def before_identify_hook(self, shard_id: int | None, *, initial: bool = False) -> None:
        """The gate spaces identifies across processes (discord.py only sleeps 5 s before
        each but the first of its own)."""
        await self.identify_gate.wait_turn(shard_id or 0, self.max_concurrency)

    async def setup_hook(self) -> None:
        await self.tree.set_translator(WanTranslator())
        for name in COGS:
            await self.load_extension(name)
        await self.svc.dispatch.start()
        # Deletions a restart interrupted: their prompt must not stay on show.
        await finish_pending(self, self.delivery, self.engine.store)
        if self.owns_process:
            freeze_heap()
        if self.settings.dev_guild_id:
            guild = discord.Object(self.settings.dev_guild_id)
            self.tree.copy_global_to(guild=guild)
            synced = await self.tree.sync(guild=guild)
            log.info("synced %d commands to the dev server %s", len(synced), guild.id)

    async def close(self) -> None:
        self.stopping = True
        await self.finish_answering(self.engine.config.stop_grace)
        log.info("closing: unloading the cogs")
        for name in list(self.extensions):
            await self.unload_extension(name)
        log.info("closing: stopping the engine")
        await self.svc.dispatch.stop()
        await self.delivery.close()
        log.info("closing: disconnecting from Discord")
        await super().close()

    async def finish_answering(self, grace: float) -> None:
        """Give the interactions (and replies) being answered up to `grace` seconds to finish,
        with the database and the connections still open: a member whose command was
        acknowledged is told what became of it, and nothing is cut off half-way."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        while (pending := answering_tasks()) and (left := deadline - loop.time()) > 0:
            log.info("closing: %d interaction(s) still being answered", len(pending))
            await asyncio.wait(pending, timeout=left)

    async def on_interaction(self, interaction: discord.Interaction) -> None:
        # Only interactions say how large an upload this guild takes (boosts raise it).
        self.delivery.learn_upload_limit(interaction.guild_id, interaction.filesize_limit)

    async def on_message(self, message: discord.Message, /) -> None:
        """No prefix commands: a message starting with the bot's mention is a reply-to-edit
        (cogs.edit listens for it), not a command. `commands.Bot` would otherwise look up its
        first word as a command and log CommandNotFound as an error for every such reply."""

    async def on_shard_ready(self, shard_id: int) -> None:
        log.info("shard %d of %s ready", shard_id, self.shard_count)

    async def on_ready(self) -> None:
        assert self.user is not None
        log.info(
            "logged in as %s (%s) in %d servers on shards %s of %s",
            self.user,
            self.user.id,
            len(self.guilds),
            sorted(self.shards),
            self.shard_count,
        )

    async def on_error(self, event_method: str, /, *args: Any, **kwargs: Any) -> None:
        log.exception("error in %s", event_method)


# discord.py runs each slash command and context menu, button, form and message event in a task
# of its own, named so (the job buttons and the image tools are dynamic items).
ANSWERING_TASKS = (
    "CommandTree-invoker",
    "discord-ui-view-dispatch-",
    "discord-ui-dynamic-item-",
    "discord-ui-modal-dispatch-",
    "discord.py: on_message",
)


def answering_tasks() -> set[asyncio.Task[Any]]:
    """This loop's tasks answering an interaction or a message, but the caller's."""
    current = asyncio.current_task()
    return {
        task
        for task in asyncio.all_tasks()
        if task is not current and not task.done() and task.get_name().startswith(ANSWERING_TASKS)
    }


def default_identify_gate(svc: Services) -> IdentifyGate:
    """Shared through PostgreSQL by the processes of a cluster; this process's own on SQLite."""
    if svc.dispatch.lease is not None:
        return DatabaseIdentifyGate(svc.db)
    return LocalIdentifyGate()


def freeze_heap() -> None:
    """Put everything alive once the bot has started (modules, the command tree, clients,
    settings: a few hundred thousand objects) out of the cyclic garbage collector's reach. A full
    collection then scans only what was made since, instead of pausing the event loop for tens
    of milliseconds every time it runs (measured by `python -m bench quota`)."""
    gc.collect()
    gc.freeze()
    log.info("started: %d objects set aside from garbage collection", gc.get_freeze_count())


def point_discord_at(settings: Settings) -> None:
    """discord.py's own REST and gateway calls go to the configured URLs (a proxy, or a local
    stand-in in tests). The bot's own code reads the settings, never these."""
    discord.http.Route.BASE = settings.discord_api_base_url
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(settings.discord_gateway_url)


async def run_bot(
    settings: Settings,
    *,
    install_signals: bool = True,
    on_bot: Callable[[WanBot], None] | None = None,
    identify_gate: IdentifyGate | None = None,
) -> int:
    """The main job: run the bot until SIGTERM/SIGINT (or `bot.close()`); exit code.
    `identify_gate` is shared by the processes that share a database (default: this process's)."""
    if settings.discord_token is None:
        print(SETUP_HELP.format(invite=invite_url(settings.discord_application_id)))
        return 2
    point_discord_at(settings)
    port = DiscordDelivery(simulated=settings.simulated, region=settings.region)
    async with services(settings, port) as svc:
        if svc.simulated:
            log.warning("no DASHSCOPE_API_KEY: every result is simulated")
        bot = WanBot(svc, port, identify_gate=identify_gate)
        bot.owns_process = install_signals
        if on_bot is not None:
            on_bot(bot)
        closing: list[asyncio.Task[None]] = []
        exit_code = 0

        def stop() -> None:
            if not closing:
                log.info("stopping: finishing in-flight work")
                closing.append(asyncio.get_running_loop().create_task(bot.close()))

        def lease_lost() -> None:  # come back as a standby: the supervisor restarts us
            nonlocal exit_code
            exit_code = 1
            stop()

        svc.dispatch.on_lost = lease_lost
        health = None
        if settings.health_port:
            health = await start_health(svc.dispatch, settings.health_host, settings.health_port)

        if install_signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                asyncio.get_running_loop().add_signal_handler(sig, stop)
        try:
            async with bot:
                await bot.start(settings.discord_token.get_secret_value())
        except discord.LoginFailure:
            log.error("Discord refused the token: check DISCORD_TOKEN (Bot → Reset Token)")
            return 2
        finally:
            if health is not None:
                await health.cleanup()
        log.info("stopped")
    return exit_code
