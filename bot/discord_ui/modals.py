"""The modals the bot opens: the edit instruction (from the message menu or the Edit button)."""

from __future__ import annotations

import discord

from bot.dashscope.models import DEFAULT_EDIT_MODEL
from bot.dashscope.requests import ImageRequest
from bot.discord_ui.app import WanBot
from bot.discord_ui.attachments import choose, default_choice, images_from, is_image
from bot.discord_ui.launcher import Origin
from bot.discord_ui.replies import respond_error, tell_queued
from bot.i18n import Lang, text


class EditModal(discord.ui.Modal):
    """Asks for the instruction (and which images, when the message has several)."""

    def __init__(
        self,
        bot: WanBot,
        lang: Lang,
        attachments: list[discord.Attachment],
        *,
        from_bot: bool,
        parent_job_id: int | None = None,
    ) -> None:
        super().__init__(title=text("modal.edit_title", lang), timeout=600)
        self.bot = bot
        self.attachments = attachments
        self.parent_job_id = parent_job_id
        self.instruction: discord.ui.TextInput[EditModal] = discord.ui.TextInput(
            label=text("modal.instruction", lang),
            placeholder=text("modal.instruction_hint", lang),
            style=discord.TextStyle.paragraph,
            max_length=2000,
        )
        self.negative: discord.ui.TextInput[EditModal] = discord.ui.TextInput(
            label=text("modal.negative", lang), required=False, max_length=500
        )
        self.add_item(self.instruction)
        self.add_item(self.negative)
        images = [a for a in attachments if is_image(a)]
        self.images: discord.ui.TextInput[EditModal] | None = None
        if len(images) > 1:
            self.images = discord.ui.TextInput(
                label=text("modal.images", lang),
                default=default_choice(images, from_bot),
                required=False,
                max_length=20,
            )
            self.add_item(self.images)

    async def on_submit(self, interaction: discord.Interaction) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        picked = choose(self.attachments, self.images.value if self.images else None)
        request = ImageRequest(
            model=DEFAULT_EDIT_MODEL,
            prompt=self.instruction.value,
            negative_prompt=self.negative.value or None,
            images=await images_from(picked, self.bot.attachment_origins),
        )
        origin = Origin.of(interaction)
        job, status = await self.bot.launcher.launch(
            origin, request, parent_job_id=self.parent_job_id
        )
        await tell_queued(interaction, origin.lang, job, status)

    # Modal.on_error's own signature, which discord.py narrows from BaseView's (no item).
    async def on_error(  # type: ignore[override]
        self, interaction: discord.Interaction, error: Exception, /
    ) -> None:
        await respond_error(interaction, error)
