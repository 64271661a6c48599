"""The edit form (from the "Edit with Wan" message menu or a result's Edit button), and every
form submitted to the bot.

A form keeps nothing in memory: its custom_id (`wan:edit:<message>:<parent job>:<opened by>`)
names the message whose images it edits, so a submit is handled from the submit alone: after a
restart, after discord.py's 10-minute modal timeout, or sent twice. discord.py 2.7 has no
persistent modals (it drops a submit whose custom_id it holds no Modal for), so the form is sent
stopped (discord.py keeps no copy) and every submit reaches `answer_form` through the
`on_interaction` event (cogs/edit.py), which reads the message and its attachments again.
"""

from __future__ import annotations

import re
from typing import Any

import discord

from bot.accounting.defaults import EDIT_DEFAULTS, unset
from bot.dashscope.models import DEFAULT_EDIT_MODEL
from bot.dashscope.requests import ImageRequest
from bot.discord_ui.app import WanBot
from bot.discord_ui.attachments import choose, default_choice, images_from, is_image
from bot.discord_ui.launcher import Origin
from bot.discord_ui.repeats import start_once
from bot.discord_ui.replies import respond, respond_error
from bot.discord_ui.settings import FORM_ID as SETTINGS_FORM_ID
from bot.discord_ui.settings import answer_settings_form
from bot.errors import InputRejected
from bot.i18n import Lang, lang_for, text
from bot.jobs.model import Job

# The message id and the opening interaction's id are snowflakes (at most 20 digits), the parent
# job at most 18 (as in job buttons), and a form on one image of the message names it (at most
# 2 digits): at most 72 characters of Discord's 100.
EDIT_FORM_TEMPLATE = re.compile(
    r"wan:edit:(?P<message_id>[0-9]{1,20}):(?P<parent>[0-9]{1,18}):(?P<opened_by>[0-9]{1,20})"
    r"(?::(?P<image>[0-9]{1,2}))?"
)
INSTRUCTION, NEGATIVE, IMAGES = "instruction", "negative", "images"


def edit_form_id(
    message_id: int, parent_job_id: int | None, opened_by: int, image: int | None = None
) -> str:
    """The form's custom_id; `opened_by` (the opening interaction) tells two forms apart;
    `image` (1-based among the message's images) makes it a form on that image alone."""
    one = f":{image}" if image is not None else ""
    return f"wan:edit:{message_id}:{parent_job_id or 0}:{opened_by}{one}"


def edit_form(
    lang: Lang,
    message: discord.Message,
    opened_by: int,
    *,
    from_bot: bool,
    parent_job_id: int | None = None,
    image: int | None = None,
) -> discord.ui.Modal:
    """The form asking for the instruction (and which images, when the message has several
    and no `image` is given)."""
    form: discord.ui.Modal = discord.ui.Modal(
        title=text("modal.edit_title", lang),
        custom_id=edit_form_id(message.id, parent_job_id, opened_by, image),
    )
    form.add_item(
        discord.ui.TextInput(
            label=text("modal.instruction", lang),
            placeholder=text("modal.instruction_hint", lang),
            style=discord.TextStyle.paragraph,
            max_length=2000,
            custom_id=INSTRUCTION,
        )
    )
    form.add_item(
        discord.ui.TextInput(
            label=text("modal.negative", lang), required=False, max_length=500, custom_id=NEGATIVE
        )
    )
    images = [a for a in message.attachments if is_image(a)]
    if len(images) > 1 and image is None:
        form.add_item(
            discord.ui.TextInput(
                label=text("modal.images", lang),
                default=default_choice(images, from_bot),
                required=False,
                max_length=20,
                custom_id=IMAGES,
            )
        )
    form.stop()  # sent, not kept: the submit is handled from its custom_id
    return form


async def answer_form(bot: WanBot, interaction: discord.Interaction) -> None:
    """Every form submitted to the bot: an edit form starts its edit; anything else (a form of
    another version, a forged one) is answered in words, never with silence."""
    data: dict[str, Any] = dict(interaction.data or {})
    lang = lang_for(str(interaction.locale))
    form = EDIT_FORM_TEMPLATE.fullmatch(str(data.get("custom_id", "")))
    try:
        if data.get("custom_id") == SETTINGS_FORM_ID:  # /settings: the member's own defaults
            await answer_settings_form(bot, interaction, typed_values(data.get("components")))
            return
        if form is None:
            await respond(interaction, text("reply.form_unknown", lang))
            return
        if interaction.guild_id is None and not bot.settings.allow_dms:
            await respond(interaction, text("reply.no_dms", lang))
            return
        values = typed_values(data.get("components"))
        # One form, one job: a second submit of this form is pointed to the first's job.
        await start_once(
            bot.recent_starts,
            interaction,
            form.group(0),
            lambda: submit_edit(bot, interaction, form, values),
        )
    except Exception as error:
        await respond_error(interaction, error)


async def submit_edit(
    bot: WanBot, interaction: discord.Interaction, form: re.Match[str], values: dict[str, str]
) -> tuple[Job, discord.Message]:
    message = await source_message(interaction, int(form["message_id"]))
    picked = choose(list(message.attachments), form["image"] or values.get(IMAGES))
    request = ImageRequest(
        model=DEFAULT_EDIT_MODEL,
        prompt=values.get(INSTRUCTION, ""),
        negative_prompt=values.get(NEGATIVE) or None,
        images=await images_from(picked, bot.attachment_origins),
    )
    origin = Origin.of(interaction)
    parent_job_id = int(form["parent"]) or None
    defaults_for = EDIT_DEFAULTS | {"n"} | unset(negative_prompt=request.negative_prompt)
    return await bot.launcher.launch(
        origin, request, parent_job_id=parent_job_id, defaults_for=defaults_for
    )


async def source_message(interaction: discord.Interaction, message_id: int) -> discord.Message:
    """The message the form edits, read again. Looked up in the channel the form was submitted
    from (where it was opened), so a forged custom_id reaches no other channel's images."""
    channel = interaction.channel
    assert isinstance(channel, discord.abc.Messageable)
    try:
        return await channel.fetch_message(message_id)
    except (discord.NotFound, discord.Forbidden):
        raise InputRejected.one("reply.form_source_gone") from None


def typed_values(components: object) -> dict[str, str]:
    """What the member typed, by field custom_id (action rows and labels walked). Anything not
    text is left out: the payload is the client's, and may hold anything."""
    values: dict[str, str] = {}
    pending = list(components) if isinstance(components, list) else []
    while pending:
        item = pending.pop(0)
        if not isinstance(item, dict):
            continue
        inner = item.get("components")
        pending += inner if isinstance(inner, list) else []
        pending.append(item.get("component"))
        custom_id, value = item.get("custom_id"), item.get("value")
        if isinstance(custom_id, str) and isinstance(value, str):
            values.setdefault(custom_id, value)
    return values
