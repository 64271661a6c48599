"""Answering an interaction: ephemeral replies, the "queued" note, and refusals in words."""

from __future__ import annotations

import logging
from typing import Any

import aiohttp
import discord

from bot.i18n import Lang, lang_for, text
from bot.jobs.model import Job
from bot.presenter import describe

log = logging.getLogger(__name__)


def relative_timestamp(moment: float) -> str:
    """Discord shows `<t:…:R>` as "in 3 hours" in each reader's own language and clock."""
    return f"<t:{int(moment)}:R>"


async def respond(interaction: discord.Interaction, content: str, **kwargs: Any) -> None:
    """Reply ephemerally, whether or not the interaction was acknowledged already."""
    if interaction.response.is_done():
        await interaction.followup.send(content, ephemeral=True, **kwargs)
    else:
        await interaction.response.send_message(content, ephemeral=True, **kwargs)


async def tell_queued(
    interaction: discord.Interaction, lang: Lang, job: Job, status: discord.Message
) -> None:
    """The private "queued, here is the link" answer. The job is already queued and its public
    status message posted, so a failure here (say the interaction token expired, or the
    connection dropped as the bot shuts down) is only logged: telling the user "something went wrong" would be false."""
    try:
        await interaction.followup.send(
            text("reply.queued", lang, job_id=job.id, link=status.jump_url), ephemeral=True
        )
    except (discord.HTTPException, aiohttp.ClientError) as exc:  # refused, or cut off
        log.warning("job %s: could not send the queued note (%s); the job goes on", job.id, exc)


async def respond_error(interaction: discord.Interaction, error: BaseException) -> None:
    lang = lang_for(str(interaction.locale))
    message = describe(error, lang, moment=relative_timestamp)
    if message is None:
        log.error("unexpected error in an interaction", exc_info=error)
        message = text("reply.error", lang)
    try:
        await respond(interaction, message)
    except (discord.HTTPException, RuntimeError) as exc:  # token expired, or shutting down
        log.warning("could not tell the user about an error: %s", exc)
