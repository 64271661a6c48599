"""Starting a job from Discord, and answering an interaction when something is refused.

Every entry point (slash commands, the context menu and its modal, reply-to-edit, the Reroll and
Edit buttons) goes through `JobLauncher.launch`: reserve quota and queue the job, post the
public status message with the bot token, hang a thread named from the prompt off it (or stay in
the thread / DM we are in), and record where the job lives so it can finish after a restart.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from urllib.parse import urlsplit

import discord

from bot.dashscope.errors import DashScopeError
from bot.dashscope.requests import ImageRequest, validate
from bot.discord_delivery import post_status
from bot.i18n import Lang, lang_for, text
from bot.images import MAX_UPLOAD_BYTES, prepare_image
from bot.jobs.engine import Engine, EngineStopping
from bot.jobs.model import Job, NewJob
from bot.limits import QuotaExceeded
from bot.policy import Place, apply_policy
from bot.problems import InputRejected

log = logging.getLogger(__name__)

IMAGE_TYPES = ("image/",)
# Where Discord serves attachments. Besides these, the origin of the configured REST API (a proxy,
# or a local stand-in in tests) is trusted like Discord itself.
DISCORD_CDN_HOSTS = ("cdn.discordapp.com", "media.discordapp.net")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif")


class CannotPost(Exception):
    """The bot may not post in the channel the request came from."""


@dataclass(frozen=True)
class Origin:
    """Where a request came from and who made it."""

    channel: discord.abc.Messageable
    user: discord.abc.User
    locale: str

    @property
    def lang(self) -> Lang:
        return lang_for(self.locale)

    @property
    def guild(self) -> discord.Guild | None:
        return getattr(self.channel, "guild", None)

    @property
    def role_ids(self) -> tuple[int, ...]:
        roles = getattr(self.user, "roles", None) or ()
        return tuple(role.id for role in roles if not role.is_default())

    @classmethod
    def of(cls, interaction: discord.Interaction) -> Origin:
        channel = interaction.channel
        assert channel is not None and isinstance(channel, discord.abc.Messageable)
        return cls(channel, interaction.user, str(interaction.locale))


def can_post(channel: discord.abc.Messageable) -> bool:
    """Whether the bot may post (with files) where the request came from, as far as the cached
    guild tells; unknown places (DMs, uncached channels) are tried."""
    guild = getattr(channel, "guild", None)
    me = guild.me if guild is not None else None
    if me is None or not isinstance(channel, discord.abc.GuildChannel | discord.Thread):
        return True
    perms = channel.permissions_for(me)
    send = (
        perms.send_messages_in_threads
        if isinstance(channel, discord.Thread)
        else perms.send_messages
    )
    return perms.view_channel and send and perms.attach_files


def place_of(channel: discord.abc.Messageable) -> Place:
    """Where the request is made: the channel, the channel a thread hangs off, NSFW or not."""
    parent = getattr(channel, "parent", None)
    nsfw = bool(getattr(parent or channel, "nsfw", False))
    return Place(getattr(channel, "id", None), getattr(channel, "parent_id", None), nsfw)


def relative_timestamp(moment: float) -> str:
    """Discord shows `<t:…:R>` as "in 3 hours" in each reader's own language and clock."""
    return f"<t:{int(moment)}:R>"


def refusal_text(error: BaseException, lang: Lang) -> str | None:
    """The user-facing words for a domain error, or None for an unexpected one."""
    if isinstance(error, InputRejected):
        return error.user_message(lang)
    if isinstance(error, QuotaExceeded):
        return error.user_message(lang, relative_timestamp)
    if isinstance(error, DashScopeError):
        return error.user_message(lang)
    if isinstance(error, EngineStopping):
        return text("reply.stopping", lang)
    if isinstance(error, CannotPost):
        return text("reply.cannot_post", lang)
    return None


async def respond(interaction: discord.Interaction, content: str, **kwargs: object) -> None:
    """Reply ephemerally, whether or not the interaction was acknowledged already."""
    if interaction.response.is_done():
        await interaction.followup.send(content, ephemeral=True, **kwargs)  # type: ignore[arg-type]
    else:
        await interaction.response.send_message(content, ephemeral=True, **kwargs)  # type: ignore[arg-type]


async def tell_queued(
    interaction: discord.Interaction, lang: Lang, job: Job, status: discord.Message
) -> None:
    """The private "queued, here is the link" answer. The job is already queued and its public
    status message posted, so a failure here (say the interaction token expired) is only
    logged: telling the user "something went wrong" would be false."""
    try:
        await interaction.followup.send(
            text("reply.queued", lang, job_id=job.id, link=status.jump_url), ephemeral=True
        )
    except discord.HTTPException as exc:
        log.warning("job %s: could not send the queued note (%s); the job goes on", job.id, exc)


async def respond_error(interaction: discord.Interaction, error: BaseException) -> None:
    lang = lang_for(str(interaction.locale))
    message = refusal_text(error, lang)
    if message is None:
        log.error("unexpected error in an interaction", exc_info=error)
        message = text("reply.error", lang)
    try:
        await respond(interaction, message)
    except (discord.HTTPException, RuntimeError) as exc:  # token expired, or shutting down
        log.warning("could not tell the user about an error: %s", exc)


def is_image(attachment: discord.Attachment) -> bool:
    content_type = (attachment.content_type or "").lower()
    return content_type.startswith(IMAGE_TYPES) or attachment.filename.lower().endswith(
        IMAGE_SUFFIXES
    )


def discord_cdn_url(url: str) -> bool:
    """Whether an attachment URL is on Discord's CDN (https), or on the configured REST API's
    own scheme, host and port. Nothing else is fetched: an attachment URL is data from a payload,
    and the bot must not be made to request internal addresses with it (SSRF)."""
    try:
        parts = urlsplit(url)
        port = parts.port
        api = urlsplit(discord.http.Route.BASE)
        api_port = api.port
    except ValueError:
        return False
    host = (parts.hostname or "").lower()
    if not host or parts.username is not None or parts.password is not None:
        return False
    if (parts.scheme, host, port) == (api.scheme, (api.hostname or "").lower(), api_port):
        return True
    return parts.scheme == "https" and port in (None, 443) and host in DISCORD_CDN_HOSTS


async def images_from(attachments: list[discord.Attachment]) -> tuple[str, ...]:
    """Download and normalise attachments into data URIs; refuse what cannot be used."""
    uris = []
    for index, attachment in enumerate(attachments, start=1):
        if not is_image(attachment):
            raise InputRejected.one("reply.not_image_file", filename=attachment.filename)
        if not discord_cdn_url(attachment.url):
            log.warning("refused %s: its URL is not on Discord's CDN", attachment.filename)
            raise InputRejected.one("reply.attachment_fetch", filename=attachment.filename)
        if attachment.size > MAX_UPLOAD_BYTES:
            raise InputRejected.one(
                "reply.attachment_too_big",
                filename=attachment.filename,
                size_mb=attachment.size / 1e6,
                limit_mb=MAX_UPLOAD_BYTES / 1e6,
            )
        try:
            data = await attachment.read()
        except discord.HTTPException:
            raise InputRejected.one(
                "reply.attachment_fetch", filename=attachment.filename
            ) from None
        uris.append(prepare_image(data, index).data_uri)
    return tuple(uris)


class JobLauncher:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    async def launch(
        self,
        origin: Origin,
        request: ImageRequest,
        *,
        parent_job_id: int | None = None,
        reply_to: discord.Message | None = None,
        model_chosen: bool = True,
        size_chosen: bool = True,
    ) -> tuple[Job, discord.Message]:
        """Apply the server's policy, validate, reserve and queue; post the status message and
        its thread."""
        channel = origin.channel
        role_ids = origin.role_ids
        policy = await self.engine.quota.policy.for_member(
            origin.guild.id if origin.guild else None, role_ids
        )
        request = apply_policy(
            policy, request, place_of(channel), model_chosen=model_chosen, size_chosen=size_chosen
        )
        request = validate(request)
        if not can_post(channel):  # before anything is reserved or sent to DashScope
            raise CannotPost()
        in_thread = isinstance(channel, discord.Thread)
        channel_id = getattr(channel, "id", None)
        new = NewJob(
            request=request,
            user_id=origin.user.id,
            guild_id=origin.guild.id if origin.guild else None,
            channel_id=channel_id,
            thread_id=channel_id if in_thread else None,
            locale=origin.locale,
            parent_job_id=parent_job_id,
            role_ids=role_ids,
        )
        # Held until placed: if the status message cannot be posted, the job is cancelled
        # before DashScope ever sees it.
        job = await self.engine.submit_job(new, start=False)
        try:
            status, thread_id = await post_status(
                channel,
                job,
                origin.lang,
                position=self.engine.position(job.id),
                simulated=self._simulated,
                reply_to=reply_to,
            )
        except (discord.Forbidden, discord.NotFound):
            await self.engine.cancel(job.id, origin.user.id, moderator=True)
            raise CannotPost() from None
        except BaseException:  # not shown: it must not run (nor stay reserved) unseen
            await self.engine.cancel(job.id, origin.user.id, moderator=True)
            raise
        job = await self.engine.place(job.id, status_message_id=status.id, thread_id=thread_id)
        return job, status

    @property
    def _simulated(self) -> bool:
        port = self.engine.port
        return bool(getattr(port, "simulated", False))
