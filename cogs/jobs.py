"""Job commands (/jobs, /cancel, /show, /quota), and the job buttons registered with the bot.

The buttons themselves (`JobAction`) are in bot/discord_ui/buttons.py.
"""

from __future__ import annotations

import io
import time

import discord
from discord import app_commands
from discord.app_commands import locale_str as _
from discord.ext import commands

from bot.accounting.quota import Standing, next_month_start
from bot.dashscope.errors import DownloadError
from bot.discord_ui.app import WanBot
from bot.discord_ui.buttons import (
    ImageAction,
    JobAction,
    ToolsMenu,
    cancel_job,
    own_job,
    refused_as_deleted,
)
from bot.discord_ui.deletion import record_repost
from bot.discord_ui.delivery import as_jpeg, upload_batches, video_under
from bot.discord_ui.launcher import Origin
from bot.discord_ui.render import failure_words, quoted, result_embed, result_view
from bot.discord_ui.replies import relative_timestamp, respond
from bot.i18n import Lang, lang_for, text
from bot.jobs.model import Job, JobState

JOBS_PROMPT_MAX = 80  # characters of each prompt in the /jobs list


class Jobs(commands.Cog):
    def __init__(self, bot: WanBot) -> None:
        self.bot = bot

    async def cog_load(self) -> None:
        self.bot.add_dynamic_items(JobAction, ImageAction, ToolsMenu)

    async def cog_unload(self) -> None:
        self.bot.remove_dynamic_items(JobAction, ImageAction, ToolsMenu)

    @app_commands.command(name=_("jobs"), description=_("Your recent jobs"))
    async def jobs(self, interaction: discord.Interaction) -> None:
        lang = lang_for(str(interaction.locale))
        jobs = await self.bot.engine.store.recent_for_user(interaction.user.id, 10)
        if not jobs:
            await respond(interaction, text("reply.no_jobs", lang))
            return
        lines = [
            f"**#{job.id}** · {text(job.state.message_key, lang)} · {job.model} · "
            f"{relative_timestamp(job.created_at)}\n"
            f"{quoted(job.params.prompt, JOBS_PROMPT_MAX)}"
            for job in jobs
        ]
        embed = discord.Embed(title=text("reply.jobs_title", lang), description="\n".join(lines))
        await respond(interaction, "", embed=embed)

    @app_commands.command(
        name=_("cancel"), description=_("Cancel a job that has not started drawing")
    )
    @app_commands.describe(job=_("The job number"))
    @app_commands.rename(job=_("job"))
    async def cancel(
        self, interaction: discord.Interaction, job: app_commands.Range[int, 1]
    ) -> None:
        await cancel_job(self.bot, interaction, job)

    @app_commands.command(
        name=_("show"), description=_("Post a finished job again, with working buttons")
    )
    @app_commands.describe(job=_("The job number"))
    @app_commands.rename(job=_("job"))
    async def show(self, interaction: discord.Interaction, job: app_commands.Range[int, 1]) -> None:
        lang = lang_for(str(interaction.locale))
        found = await own_job(self.bot, interaction, job, lang)
        if found is None:
            return
        if await refused_as_deleted(interaction, found, lang):
            return
        # Where /imagine is refused, the images are not shown either (InputRejected, in words).
        await self.bot.launcher.check_showing(Origin.of(interaction))
        if found.state is not JobState.DONE:
            await respond(interaction, nothing_to_show(found, lang))
            return
        await interaction.response.defer(thinking=True)
        files = await self._result_files(found)
        # Under this server's upload cap per message, as the delivery split them; a video
        # re-encoded to fit (one that cannot fit is not posted: its link is in its thread).
        limit = interaction.filesize_limit
        video = found.kind.makes_video
        if video:
            fitted = [(name, await video_under(data, limit), ext) for name, data, ext in files]
            files = [(name, data, ext) for name, data, ext in fitted if data is not None]
        else:
            files = [
                (name, as_jpeg(data, limit), "jpg") if len(data) > limit else (name, data, ext)
                for name, data, ext in files
            ]
        if not files:
            await interaction.followup.send(
                text("reply.results_gone", lang, job_id=job), ephemeral=True
            )
            return
        batches = upload_batches(files, limit)
        for index, batch in enumerate(batches):
            last = index == len(batches) - 1
            posted = await interaction.followup.send(
                wait=True,
                files=[
                    discord.File(io.BytesIO(data), filename=f"{name}.{ext}")
                    for name, data, ext in batch
                ],
                embed=result_embed(found, lang, simulated=self.bot.delivery.simulated)
                if last
                else discord.utils.MISSING,
                view=result_view(
                    found.id,
                    lang,
                    images=shown_images(found, files),
                    region=self.bot.settings.region,
                    video=video,
                )
                if last
                else discord.utils.MISSING,
            )
            await record_repost(self.bot.engine.store, found.id, posted)

    async def _result_files(self, job: Job) -> list[tuple[str, bytes, str]]:
        """The job's images again (name, bytes, extension): from its result messages, else
        from DashScope's URLs."""
        files: list[tuple[str, bytes, str]] = []
        results = await self.bot.engine.store.results(job.id)
        channel_id = job.thread_id or job.channel_id
        seen: set[int] = set()
        for result in results:
            message_id = result.delivered_message_id
            if not message_id or message_id in seen or channel_id is None:
                continue
            seen.add(message_id)
            try:
                message = await self.bot.get_partial_messageable(channel_id).fetch_message(
                    message_id
                )
            except discord.HTTPException:
                continue
            for attachment in message.attachments:
                if not self.bot.attachment_origins.allows(attachment.url):
                    continue
                stem, _, ext = attachment.filename.rpartition(".")
                files.append((stem or attachment.filename, await attachment.read(), ext or "png"))
        if files:
            return files
        for result in results:
            if result.url:
                try:
                    download = await self.bot.engine.fetcher.fetch(
                        result.url, video=job.kind.makes_video
                    )
                except DownloadError:  # expired after 24 h, or refused
                    continue
                if job.kind.makes_video:
                    files.append((f"video-{job.id}", download.content, "mp4"))
                else:
                    files.append((f"wan-{job.id}-{result.position + 1}", download.content, "png"))
        return files

    @app_commands.command(name=_("quota"), description=_("What you have left, and when it frees"))
    async def quota(self, interaction: discord.Interaction) -> None:
        lang = lang_for(str(interaction.locale))
        roles = getattr(interaction.user, "roles", None) or ()
        standing = await self.bot.engine.quota.standing(
            interaction.user.id,
            interaction.guild_id,
            tuple(role.id for role in roles if not role.is_default()),
        )
        limits = standing.limits
        unlimited = text("reply.unlimited", lang)
        lines = [
            text(
                "reply.quota_user",
                lang,
                used=standing.user_images,
                allowed=limits.images_per_user_day or unlimited,
            ),
            text(
                "reply.quota_active",
                lang,
                used=standing.active_jobs,
                allowed=limits.concurrent_jobs_per_user or unlimited,
            ),
        ]
        if interaction.guild_id is not None:
            lines.append(
                text(
                    "reply.quota_guild",
                    lang,
                    used=standing.guild_images,
                    allowed=limits.images_per_guild_day or unlimited,
                )
            )
        # When something frees is told only for the limits that are set (an exempt member's
        # per-member limits are lifted, so theirs are not).
        if standing.user_frees_at and limits.images_per_user_day:
            lines.append(
                text("reply.quota_frees", lang, when=relative_timestamp(standing.user_frees_at))
            )
        if standing.cooldown_until and limits.cooldown_seconds:
            lines.append(
                text("reply.quota_cooldown", lang, when=relative_timestamp(standing.cooldown_until))
            )
        if standing.budget:
            lines.append(
                text(
                    "reply.quota_budget",
                    lang,
                    spent=standing.spent,
                    budget=standing.budget,
                    currency=self.bot.settings.currency,
                    when=relative_timestamp(next_month_start(time.time())),
                )
            )
        if standing.guild_frees_at and limits.images_per_guild_day:
            lines.append(
                text(
                    "reply.quota_guild_frees",
                    lang,
                    when=relative_timestamp(standing.guild_frees_at),
                )
            )
        lines += video_lines(standing, lang)
        if standing.exempt:
            lines.append(text("reply.quota_exempt", lang))
        embed = discord.Embed(title=text("reply.quota_title", lang), description="\n".join(lines))
        await respond(interaction, "", embed=embed)


def video_lines(standing: Standing, lang: Lang) -> list[str]:
    """/quota's lines on videos: forbidden here, or seconds used of the member's cap (and when
    more free up, when there is a cap)."""
    if not standing.video_allowed:
        return [text("reply.quota_video_off", lang)]
    allowed = standing.limits.video_seconds_per_user_day
    used = standing.video_seconds
    lines = [
        text("reply.quota_video", lang, used=used, allowed=allowed or text("reply.unlimited", lang))
    ]
    if allowed and standing.video_frees_at:
        when = relative_timestamp(standing.video_frees_at)
        lines.append(text("reply.quota_video_frees", lang, when=when))
    return lines


def shown_images(job: Job, files: list[tuple[str, bytes, str]]) -> list[int]:
    """The positions (from 1) of the images a repost shows, from their names (`wan-<job>-<k>`)."""
    numbers = [name.removeprefix(f"wan-{job.id}-") for name, _, _ in files]
    return [int(k) for k in numbers if k.isascii() and k.isdigit()]


def nothing_to_show(job: Job, lang: Lang) -> str:
    """Why a job that is not done has no images: cancelled, failed (and why), or not yet."""
    if job.state is JobState.CANCELLED:
        return text("reply.show_cancelled", lang, job_id=job.id)
    if job.state is JobState.FAILED:
        reason = failure_words(job, lang) or text("reply.error", lang)
        return text("reply.show_failed", lang, job_id=job.id, reason=reason)
    state = text(job.state.message_key, lang)
    return text("reply.job_not_finished", lang, job_id=job.id, state=state)


async def setup(bot: WanBot) -> None:
    await bot.add_cog(Jobs(bot))
