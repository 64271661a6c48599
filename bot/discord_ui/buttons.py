"""The buttons on status and result messages, and what a member can do to a job with them.

Buttons are one `DynamicItem` whose custom_id (`wan:job:<id>:<action>`) names the job, so they
work on any message, after any restart: the job is looked up in the database on each click.
`/cancel` and `/show` share `cancel_job` and `own_job` with them.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

import discord

from bot.dashscope.requests import random_seed
from bot.discord_ui.app import WanBot
from bot.discord_ui.checks import may_moderate
from bot.discord_ui.deletion import delete_for_good
from bot.discord_ui.launcher import Origin
from bot.discord_ui.modals import edit_form
from bot.discord_ui.render import JOB_BUTTON_TEMPLATE, info_embed, job_custom_id
from bot.discord_ui.repeats import start_once
from bot.discord_ui.replies import respond, respond_error
from bot.i18n import Lang, lang_for, text
from bot.jobs.model import Job


async def own_job(
    bot: WanBot, interaction: discord.Interaction, job_id: int, lang: Lang
) -> Job | None:
    """The job, if it exists and the member may act on it; else answer and return None."""
    job = await bot.engine.store.get(job_id)
    if job is None:
        await respond(interaction, text("reply.job_not_found", lang, job_id=job_id))
        return None
    if job.user_id != interaction.user.id and not may_moderate(interaction, job):
        await respond(interaction, text("reply.not_your_job", lang, job_id=job_id))
        return None
    return job


async def cancel_job(bot: WanBot, interaction: discord.Interaction, job_id: int) -> None:
    # Acknowledged first: in a cluster a standby hands the cancel to the dispatcher and reads
    # the outcome from the row for up to `CANCEL_WAIT` seconds, longer than Discord's 3.
    await interaction.response.defer(ephemeral=True, thinking=True)
    job = await bot.engine.store.get(job_id)
    moderator = job is not None and may_moderate(interaction, job)
    outcome = await bot.engine.cancel(job_id, interaction.user.id, moderator=moderator)
    await respond(interaction, outcome.message(str(interaction.locale)))


async def refused_as_deleted(interaction: discord.Interaction, job: Job | None, lang: Lang) -> bool:
    """Answer that the job was deleted for good, if it was: nothing shows or remakes it, even
    from a message a restart kept from its deletion."""
    if job is None or job.deleted_at is None:
        return False
    await respond(interaction, text("reply.job_deleted", lang, job_id=job.id))
    return True


async def show_info(bot: WanBot, interaction: discord.Interaction, job_id: int) -> None:
    lang = lang_for(str(interaction.locale))
    job = await bot.engine.store.get(job_id)
    if job is None:
        await respond(interaction, text("reply.job_not_found", lang, job_id=job_id))
        return
    if await refused_as_deleted(interaction, job, lang):
        return
    results = await bot.engine.store.results(job.id)
    # Anyone may read Info; what went wrong in detail only its owner and moderators.
    private = job.user_id == interaction.user.id or may_moderate(interaction, job)
    embed = info_embed(job, results, str(interaction.locale), private=private)
    await respond(interaction, "", embed=embed)


async def delete_results(bot: WanBot, interaction: discord.Interaction, job_id: int) -> None:
    lang = lang_for(str(interaction.locale))
    job = await own_job(bot, interaction, job_id, lang)
    if job is None:
        return
    await interaction.response.defer(ephemeral=True, thinking=True)
    done = await delete_for_good(
        bot, bot.delivery, bot.engine.store, job.id, interaction.user.id, interaction.message
    )
    words = text("reply.deleted" if done else "reply.deleted_later", lang)
    await interaction.followup.send(words, ephemeral=True)


async def reroll(bot: WanBot, interaction: discord.Interaction, job_id: int) -> None:
    # One click, one job: a double click is pointed to the job the first click started.
    key = job_custom_id(job_id, "reroll")
    await start_once(
        bot.recent_starts, interaction, key, lambda: start_reroll(bot, interaction, job_id)
    )


async def start_reroll(
    bot: WanBot, interaction: discord.Interaction, job_id: int
) -> tuple[Job, discord.Message] | None:
    lang = lang_for(str(interaction.locale))
    job = await bot.engine.store.get(job_id)
    if job is None:
        await respond(interaction, text("reply.job_not_found", lang, job_id=job_id))
        return None
    if await refused_as_deleted(interaction, job, lang):
        return None
    images = await bot.engine.store.inputs(job.id) if job.kind.takes_images else ()
    if job.kind.takes_images and not images:
        await respond(interaction, text("reply.results_gone", lang, job_id=job.id))
        return None
    request = job.request(images)
    request = replace(request, seed=random_seed())
    origin = Origin.of(interaction)
    return await bot.launcher.launch(origin, request, parent_job_id=job.id)


async def open_edit(bot: WanBot, interaction: discord.Interaction, job_id: int) -> None:
    lang = lang_for(str(interaction.locale))
    message = interaction.message
    if message is None or not message.attachments:
        await respond(interaction, text("reply.no_images", lang))
        return
    if await refused_as_deleted(interaction, await bot.engine.store.get(job_id), lang):
        return
    await interaction.response.send_modal(
        edit_form(lang, message, interaction.id, from_bot=True, parent_job_id=job_id)
    )


JobHandler = Callable[[WanBot, discord.Interaction, int], Awaitable[None]]

# What a click does, by the action its custom_id names (render.py draws the buttons).
ACTIONS: dict[str, JobHandler] = {
    "reroll": reroll,
    "edit": open_edit,
    "info": show_info,
    "delete": delete_results,
    "cancel": cancel_job,
}


class JobAction(discord.ui.DynamicItem[discord.ui.Button[Any]], template=JOB_BUTTON_TEMPLATE):
    def __init__(self, job_id: int, action: str) -> None:
        super().__init__(discord.ui.Button(custom_id=job_custom_id(job_id, action)))
        self.job_id = job_id
        self.action = action

    @classmethod
    async def from_custom_id(
        cls,
        interaction: discord.Interaction,
        item: discord.ui.Item[Any],
        match: re.Match[str],
        /,
    ) -> JobAction:
        return cls(int(match["job_id"]), match["action"])

    async def callback(self, interaction: discord.Interaction) -> None:
        bot = interaction.client
        assert isinstance(bot, WanBot)
        handler = ACTIONS.get(self.action)
        try:
            if handler is None:  # a button this version does not have: say so, not silence
                lang = lang_for(str(interaction.locale))
                await respond(interaction, text("reply.unknown_button", lang))
                return
            await handler(bot, interaction, self.job_id)
        except Exception as error:
            await respond_error(interaction, error)
