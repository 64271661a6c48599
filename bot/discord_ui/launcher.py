"""Starting a job from Discord.

Every entry point (slash commands, the context menu and its modal, reply-to-edit, the Reroll and
Edit buttons) goes through `JobLauncher.launch`: reserve quota and queue the job, post the
public status message with the bot token, hang a thread named from the prompt off it (or stay in
the thread / DM we are in), and record where the job lives so it can finish after a restart.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import discord

from bot.accounting.defaults import NO_DEFAULTS, DefaultsStore
from bot.accounting.policy import Place, Policy, apply_policy, check_place
from bot.dashscope.requests import ImageRequest, seeded, validate
from bot.discord_ui.delivery import post_status
from bot.dispatch.engine import Engine
from bot.errors import UserError
from bot.i18n import Lang, lang_for
from bot.jobs.model import Job, NewJob

log = logging.getLogger(__name__)


class CannotPost(UserError):
    """The bot may not post in the channel the request came from."""

    message_key = "reply.cannot_post"


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


class JobLauncher:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.defaults = DefaultsStore(engine.db)

    async def launch(
        self,
        origin: Origin,
        request: ImageRequest,
        *,
        parent_job_id: int | None = None,
        reply_to: discord.Message | None = None,
        model_chosen: bool = True,
        size_chosen: bool = True,
        n_chosen: bool = True,
        defaults_for: frozenset[str] = frozenset(),
    ) -> tuple[Job, discord.Message]:
        """Apply the member's own defaults (for the options named in `defaults_for`, those the
        command left out) and the server's policy, validate, reserve and queue; post the status
        message and its thread. `n_chosen` False: the member did not pick n (a Vary takes its
        result's), so it is cut to the member's max_n rather than refused."""
        channel = origin.channel
        role_ids = origin.role_ids
        policy = await self._policy(origin)
        mine = NO_DEFAULTS
        if defaults_for:
            mine = (await self.defaults.get(origin.user.id)).only(defaults_for)
        request = apply_policy(
            policy,
            request,
            place_of(channel),
            model_chosen=model_chosen,
            size_chosen=size_chosen,
            n_chosen=n_chosen,
            mine=mine,
        )
        request = seeded(validate(request))
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

    async def check_showing(self, origin: Origin) -> None:
        """Raises InputRejected where the server's rules would not let this member make images:
        a job's images are shown again only where they could have been made."""
        check_place(await self._policy(origin), place_of(origin.channel), showing=True)

    async def _policy(self, origin: Origin) -> Policy:
        guild_id = origin.guild.id if origin.guild else None
        return await self.engine.quota.policy.for_member(guild_id, origin.role_ids)

    @property
    def _simulated(self) -> bool:
        port = self.engine.port
        return bool(getattr(port, "simulated", False))
