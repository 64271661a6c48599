"""Editing images: /edit with attachments, the "Edit with Wan" message menu, reply-to-edit."""

from __future__ import annotations

import contextlib
import logging
import re

import discord
from discord import app_commands
from discord.app_commands import locale_str as _
from discord.ext import commands

from bot.accounting.defaults import EDIT_DEFAULTS, unset
from bot.dashscope.models import DEFAULT_EDIT_MODEL, SEED_MAX
from bot.dashscope.requests import ImageRequest
from bot.discord_ui.app import WanBot
from bot.discord_ui.attachments import choose, default_choice, images_from, is_image
from bot.discord_ui.launcher import Origin
from bot.discord_ui.modals import answer_form, edit_form
from bot.discord_ui.replies import relative_timestamp, respond, tell_queued
from bot.i18n import Lang, lang_for, text
from bot.presenter import describe
from cogs.options import aspect_choices, localised, size_choices

log = logging.getLogger(__name__)


class Edit(commands.Cog):
    def __init__(self, bot: WanBot) -> None:
        self.bot = bot
        self.menu = app_commands.ContextMenu(name=_("Edit with Wan"), callback=self.edit_message)

    async def cog_load(self) -> None:
        self.bot.tree.add_command(self.menu)

    async def cog_unload(self) -> None:
        self.bot.tree.remove_command(self.menu.name, type=self.menu.type)

    @app_commands.command(
        name=_("edit"), description=_("Change one to three images as you describe")
    )
    @app_commands.describe(
        prompt=_("How to change the images"),
        image=_("The image to edit"),
        image2=_("A second image (optional)"),
        image3=_("A third image (optional)"),
        negative_prompt=_("What to keep out of the image"),
        n=_("Number of images (1–4)"),
        seed=_("Seed for repeatable results (0–2147483647)"),
        size=_("Width×height"),
        aspect=_("Aspect ratio (instead of an exact size)"),
    )
    @localised
    @app_commands.choices(aspect=aspect_choices())
    async def edit(
        self,
        interaction: discord.Interaction,
        prompt: app_commands.Range[str, 1, 2000],
        image: discord.Attachment,
        image2: discord.Attachment | None = None,
        image3: discord.Attachment | None = None,
        negative_prompt: app_commands.Range[str, 1, 500] | None = None,
        n: app_commands.Range[int, 1, 4] | None = None,
        seed: app_commands.Range[int, 0, SEED_MAX] | None = None,
        size: str | None = None,
        aspect: str | None = None,
    ) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        attachments = [a for a in (image, image2, image3) if a is not None]
        request = ImageRequest(
            model=DEFAULT_EDIT_MODEL,
            prompt=prompt,
            negative_prompt=negative_prompt,
            size=size,
            n=1 if n is None else n,
            seed=seed,
            images=await images_from(attachments, self.bot.attachment_origins),
            aspect=aspect,
        )
        origin = Origin.of(interaction)
        job, status = await self.bot.launcher.launch(
            origin,
            request,
            size_chosen=(size or aspect) is not None,
            defaults_for=unset(n=n, negative_prompt=negative_prompt) | EDIT_DEFAULTS,
        )
        await tell_queued(interaction, origin.lang, job, status)

    @edit.autocomplete("size")
    async def _size(
        self, interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        return await size_choices(interaction, current, DEFAULT_EDIT_MODEL)

    async def edit_message(
        self, interaction: discord.Interaction, message: discord.Message
    ) -> None:
        lang = lang_for(str(interaction.locale))
        images = [a for a in message.attachments if is_image(a)]
        if not images:
            await respond(interaction, text("reply.no_images", lang))
            return
        from_bot = self.bot.user is not None and message.author.id == self.bot.user.id
        parent = await self.bot.engine.store.job_for_message(message.id) if from_bot else None
        await interaction.response.send_modal(
            edit_form(
                lang,
                message,
                interaction.id,
                from_bot=from_bot,
                parent_job_id=parent.id if parent else None,
            )
        )

    @commands.Cog.listener()
    async def on_interaction(self, interaction: discord.Interaction) -> None:
        # discord.py holds none of the bot's forms (see modals.py): every submit is ours.
        if interaction.type is discord.InteractionType.modal_submit:
            await answer_form(self.bot, interaction)

    @commands.Cog.listener()
    async def on_message(self, message: discord.Message) -> None:
        """A reply to a message with images that mentions the bot edits those images; inside a
        thread, a reply to one of the bot's results continues the chain (no mention needed)."""
        me = self.bot.user
        if me is None or message.author.bot or message.reference is None:
            return
        mentioned = any(user.id == me.id for user in message.mentions)
        referenced = message.reference.resolved
        if not isinstance(referenced, discord.Message):
            if message.reference.message_id is None:
                return
            try:
                referenced = await message.channel.fetch_message(message.reference.message_id)
            except discord.HTTPException:
                return
        from_bot = referenced.author.id == me.id
        chain = isinstance(message.channel, discord.Thread) and from_bot
        if not (mentioned or chain):
            return
        instruction = re.sub(rf"<@!?{me.id}>", "", message.content).strip()
        if not instruction:
            return  # without the message-content intent, a reply without a mention is empty
        if message.guild is None and not self.bot.settings.allow_dms:
            return
        locale = str(message.guild.preferred_locale) if message.guild else "en-US"
        origin = Origin(message.channel, message.author, locale)
        try:
            images = [a for a in referenced.attachments if is_image(a)]
            picked = choose(images, default_choice(images, from_bot))
            parent = (
                await self.bot.engine.store.job_for_message(referenced.id) if from_bot else None
            )
            request = ImageRequest(
                model=DEFAULT_EDIT_MODEL,
                prompt=instruction,
                images=await images_from(picked, self.bot.attachment_origins),
            )
            await self.bot.launcher.launch(
                origin,
                request,
                parent_job_id=parent.id if parent else None,
                reply_to=message,
                defaults_for=EDIT_DEFAULTS | {"n", "negative_prompt"},
            )
        except Exception as error:
            await self._refuse(message, origin.lang, error)

    async def _refuse(self, message: discord.Message, lang: Lang, error: Exception) -> None:
        words = describe(error, lang, moment=relative_timestamp)
        if words is None:
            log.error("reply-to-edit failed", exc_info=error)
            words = text("reply.error", lang)
        with contextlib.suppress(discord.HTTPException):
            await message.reply(words, mention_author=False)


async def setup(bot: WanBot) -> None:
    await bot.add_cog(Edit(bot))
