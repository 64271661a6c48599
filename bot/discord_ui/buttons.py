"""The buttons on status and result messages, and what a member can do to a job with them.

Buttons are one `DynamicItem` whose custom_id (`wan:job:<id>:<action>`) names the job, so they
work on any message, after any restart: the job is looked up in the database on each click.
`/cancel` and `/show` share `cancel_job` and `own_job` with them. The actions on one image of a
result (Upscale, Vary, Zoom out, Pan, Edit this image: bot/discord_ui/image_tools.py) are two
more: `ImageAction` (a button naming the job, the image and the tool) and `ToolsMenu` (a menu
naming the job, each option the tool and the image).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

import discord

from bot.dashscope.requests import ImageRequest, random_seed
from bot.dashscope.tools import Chosen
from bot.discord_ui.app import WanBot
from bot.discord_ui.attachments import is_image, prepared_from
from bot.discord_ui.checks import may_moderate
from bot.discord_ui.deletion import delete_for_good
from bot.discord_ui.image_tools import (
    IMAGE_BUTTON_TEMPLATE,
    MENUS,
    TOOLS,
    TOOLS_MENU_TEMPLATE,
    ImageTool,
    image_custom_id,
    label_key,
    menu_custom_id,
    parse_option,
    shown,
)
from bot.discord_ui.launcher import Origin
from bot.discord_ui.modals import edit_form
from bot.discord_ui.render import JOB_BUTTON_TEMPLATE, info_embed, job_custom_id
from bot.discord_ui.repeats import start_once
from bot.discord_ui.replies import respond, respond_error
from bot.errors import InputRejected
from bot.i18n import Lang, lang_for, text
from bot.jobs.model import Job
from bot.media.inputs import PreparedImage


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


# --- actions on one image of a result ---------------------------------------------------------


async def use_tool(
    bot: WanBot, interaction: discord.Interaction, job_id: int, position: int, tool: ImageTool
) -> None:
    """A click on a tool for one image: Edit this image opens the form; every other tool makes
    a job, once per click (a double click is pointed to the job the first one started)."""
    if tool.build is None:
        await open_image_edit(bot, interaction, job_id, position)
        return
    key = image_custom_id(job_id, position, tool.name)
    await start_once(
        bot.recent_starts,
        interaction,
        key,
        lambda: start_tool(bot, interaction, job_id, position, tool),
    )


async def start_tool(
    bot: WanBot, interaction: discord.Interaction, job_id: int, position: int, tool: ImageTool
) -> tuple[Job, discord.Message] | None:
    """The tool's job on image `position` of the job, charged to the clicker under the
    clicker's limits and the server's policy (as Reroll: anyone who sees a result may use it)."""
    lang = lang_for(str(interaction.locale))
    job = await tool_job(bot, interaction, job_id, lang)
    if job is None:
        return None
    region = bot.settings.region
    if not shown(tool, region):  # a button from before the region changed
        await respond(interaction, text("tool.not_offered", lang, tool=text(tool.label_key, lang)))
        return None
    _, attachment = await result_attachment(bot, interaction, job, position)
    [image] = await prepared_from([attachment], bot.attachment_origins, tool.sides, first=position)
    assert tool.build is not None
    chosen = Chosen(
        image.data_uri,
        prompt=job.params.prompt,
        position=position,
        watermark=job.params.watermark,
    )
    request = tool.build(chosen, job, region)
    check_sides(request, image, position, text(label_key(tool, region), lang))
    origin = Origin.of(interaction)
    # A Vary makes as many images as its result had: the clicker's max_n cuts that, in silence.
    return await bot.launcher.launch(origin, request, parent_job_id=job.id, n_chosen=False)


def check_sides(request: ImageRequest, image: PreparedImage, position: int, tool: str) -> None:
    """Refuse, in words, an image the tool's model does not take (an image already upscaled
    ×4 is too large to upscale again)."""
    sides = request.spec.input_sides
    if not all(sides.min_side <= side <= sides.max_side for side in (image.width, image.height)):
        raise InputRejected.one(
            "tool.image_sides",
            tool=tool,
            image=position,
            width=image.width,
            height=image.height,
            low=sides.min_side,
            high=sides.max_side,
        )


async def tool_job(
    bot: WanBot, interaction: discord.Interaction, job_id: int, lang: Lang
) -> Job | None:
    """The job whose image is acted on, if it may be; else answer and return None. Only where
    its result was posted (its server; in DMs its owner's): a forged custom_id reaches no
    other server's images."""
    job = await bot.engine.store.get(job_id)
    if job is None:
        await respond(interaction, text("reply.job_not_found", lang, job_id=job_id))
        return None
    if await refused_as_deleted(interaction, job, lang):
        return None
    elsewhere = job.guild_id != interaction.guild_id or (
        job.guild_id is None and job.user_id != interaction.user.id
    )
    if elsewhere:
        await respond(interaction, text("tool.elsewhere", lang, job_id=job.id))
        return None
    return job


async def result_attachment(
    bot: WanBot, interaction: discord.Interaction, job: Job, position: int
) -> tuple[discord.Message, discord.Attachment]:
    """The message holding image `position` (1-based) of the job's result, and its attachment:
    the clicked message when it holds it (a result, or its /show repost), else the message the
    image was delivered in (a result too large for one message). InputRejected, in words, when
    the image is gone."""
    stem = f"wan-{job.id}-{position}."

    def find(message: discord.Message) -> discord.Attachment | None:
        return next(
            (a for a in message.attachments if a.filename.startswith(stem) and is_image(a)), None
        )

    clicked = interaction.message
    if clicked is not None and (attachment := find(clicked)) is not None:
        return clicked, attachment
    gone = InputRejected.one("tool.image_gone", image=position, job_id=job.id)
    results = await bot.engine.store.results(job.id)
    row = next((r for r in results if r.position == position - 1), None)
    where = job.thread_id or job.channel_id
    if row is None or not row.delivered_message_id or where is None:
        raise gone
    try:
        message = await bot.get_partial_messageable(where).fetch_message(row.delivered_message_id)
    except (discord.NotFound, discord.Forbidden):
        raise gone from None
    attachment = find(message)
    if attachment is None:
        raise gone
    return message, attachment


async def open_image_edit(
    bot: WanBot, interaction: discord.Interaction, job_id: int, position: int
) -> None:
    """The Edit form on image `position` alone (no question which images)."""
    lang = lang_for(str(interaction.locale))
    job = await tool_job(bot, interaction, job_id, lang)
    if job is None:
        return
    message, attachment = await result_attachment(bot, interaction, job, position)
    images = [a for a in message.attachments if is_image(a)]
    await interaction.response.send_modal(
        edit_form(
            lang,
            message,
            interaction.id,
            from_bot=True,
            parent_job_id=job.id,
            image=images.index(attachment) + 1,
        )
    )


class ImageAction(discord.ui.DynamicItem[discord.ui.Button[Any]], template=IMAGE_BUTTON_TEMPLATE):
    """A tool's button for one image (U1, V2…): `wan:img:<job>:<image>:<tool>`."""

    def __init__(self, job_id: int, position: int, tool: str) -> None:
        super().__init__(discord.ui.Button(custom_id=image_custom_id(job_id, position, tool)))
        self.job_id = job_id
        self.position = position
        self.tool = tool

    @classmethod
    async def from_custom_id(
        cls,
        interaction: discord.Interaction,
        item: discord.ui.Item[Any],
        match: re.Match[str],
        /,
    ) -> ImageAction:
        return cls(int(match["job_id"]), int(match["position"]), match["tool"])

    async def callback(self, interaction: discord.Interaction) -> None:
        await run_tool(interaction, self.job_id, f"{self.tool}:{self.position}")


class ToolsMenu(discord.ui.DynamicItem[discord.ui.Select[Any]], template=TOOLS_MENU_TEMPLATE):
    """A menu of tools for each image ("Zoom out or pan…", "More…"): `wan:tools:<job>:<menu>`,
    each option `<tool>:<image>`."""

    def __init__(self, job_id: int, menu: str) -> None:
        super().__init__(discord.ui.Select(custom_id=menu_custom_id(job_id, menu)))
        self.job_id = job_id
        self.menu = menu

    @classmethod
    async def from_custom_id(
        cls,
        interaction: discord.Interaction,
        item: discord.ui.Item[Any],
        match: re.Match[str],
        /,
    ) -> ToolsMenu:
        return cls(int(match["job_id"]), match["menu"])

    async def callback(self, interaction: discord.Interaction) -> None:
        values = self.item.values
        choice = values[0] if len(values) == 1 and self.menu in MENUS else ""
        await run_tool(interaction, self.job_id, choice)


async def run_tool(interaction: discord.Interaction, job_id: int, choice: str) -> None:
    """A button's or menu option's `<tool>:<image>`, answered in words whatever happens."""
    bot = interaction.client
    assert isinstance(bot, WanBot)
    try:
        parsed = parse_option(choice)
        if parsed is None:  # an option this version did not make: say so, not silence
            lang = lang_for(str(interaction.locale))
            await respond(interaction, text("reply.unknown_button", lang))
            return
        name, position = parsed
        await use_tool(bot, interaction, job_id, position, TOOLS[name])
    except Exception as error:
        await respond_error(interaction, error)
