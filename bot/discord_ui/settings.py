"""`/settings`: a member's own defaults in an ephemeral view, changed with selects, buttons and a
form (negative prompt and exact size).

Like the job buttons, every component is a `DynamicItem` whose custom_id (`wan:me:pick:<field>`,
`wan:me:set:<action>`) says what it changes, and the form's custom_id is fixed: a click or a
submit is handled from itself and the database alone, after any restart. The view is sent
stopped (discord.py keeps nothing); each change answers by redrawing the message.
"""

from __future__ import annotations

import re
from typing import Any

import discord

from bot.accounting.defaults import MemberDefaults, text_models
from bot.dashscope.requests import ASPECTS
from bot.discord_ui.app import WanBot
from bot.discord_ui.render import FIELD_LIMIT, member_words
from bot.discord_ui.replies import respond_error
from bot.i18n import Lang, lang_for, text

PICK_TEMPLATE = r"wan:me:pick:(?P<field>model|aspect|n)"
SET_TEMPLATE = r"wan:me:set:(?P<action>prompt_extend|watermark|form|reset)"
FORM_ID = "wan:me:form"
NEGATIVE, SIZE = "negative", "size"
_UNSET = "-"  # a select's "not set" option
_NEXT: dict[bool | None, bool | None] = {None: True, True: False, False: None}  # a toggle's turn


def _shown(value: object, lang: Lang) -> str:
    if value is None:
        return text("settings.unset", lang)
    if isinstance(value, bool):
        return text("settings.on" if value else "settings.off", lang)
    return str(value)


def summary(defaults: MemberDefaults, lang: Lang) -> str:
    """The member's defaults in words."""
    shape = defaults.aspect or defaults.size
    # The member's own words, shown literally (a backtick or markup in them is no markup).
    negative = defaults.negative_prompt and member_words(
        defaults.negative_prompt, FIELD_LIMIT, one_line=True
    )
    lines = [
        text("settings.title", lang),
        text("settings.model", lang, value=_shown(defaults.model, lang)),
        text("settings.shape", lang, value=_shown(shape, lang)),
        text("settings.n", lang, value=_shown(defaults.n, lang)),
        text("settings.negative", lang, value=_shown(negative, lang)),
        text("settings.prompt_extend", lang, value=_shown(defaults.prompt_extend, lang)),
        text("settings.watermark", lang, value=_shown(defaults.watermark, lang)),
    ]
    return "\n".join(lines)


def _select(field: str, lang: Lang, current: object, values: list[str]) -> discord.ui.Select[Any]:
    options = [discord.SelectOption(label=text("settings.unset", lang), value=_UNSET)]
    options += [
        discord.SelectOption(label=value, value=value, default=value == str(current))
        for value in values
    ]
    options[0].default = current is None
    return discord.ui.Select(
        custom_id=f"wan:me:pick:{field}",
        placeholder=text(f"settings.pick_{field}", lang),
        options=options,
    )


def settings_view(defaults: MemberDefaults, lang: Lang) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    view.add_item(_select("model", lang, defaults.model, text_models()))
    view.add_item(_select("aspect", lang, defaults.aspect, list(ASPECTS)))
    view.add_item(_select("n", lang, defaults.n, ["1", "2", "3", "4"]))
    buttons = (
        (
            "prompt_extend",
            text("settings.prompt_extend", lang, value=_shown(defaults.prompt_extend, lang)),
        ),
        ("watermark", text("settings.watermark", lang, value=_shown(defaults.watermark, lang))),
        ("form", text("settings.more", lang)),
        ("reset", text("settings.reset", lang)),
    )
    for action, label in buttons:
        style = discord.ButtonStyle.danger if action == "reset" else discord.ButtonStyle.secondary
        view.add_item(discord.ui.Button(label=label, style=style, custom_id=f"wan:me:set:{action}"))
    view.stop()  # sent, not kept: every click is routed by its custom_id
    return view


async def show_settings(bot: WanBot, interaction: discord.Interaction) -> None:
    """The answer to /settings: the member's defaults, ephemeral, with the controls."""
    lang = lang_for(str(interaction.locale))
    defaults = await bot.launcher.defaults.get(interaction.user.id)
    await interaction.response.send_message(
        summary(defaults, lang), view=settings_view(defaults, lang), ephemeral=True
    )


async def _redraw(interaction: discord.Interaction, defaults: MemberDefaults) -> None:
    lang = lang_for(str(interaction.locale))
    await interaction.response.edit_message(
        content=summary(defaults, lang), view=settings_view(defaults, lang)
    )


def _bot(interaction: discord.Interaction) -> WanBot:
    bot = interaction.client
    assert isinstance(bot, WanBot)
    return bot


def settings_form(defaults: MemberDefaults, lang: Lang) -> discord.ui.Modal:
    form: discord.ui.Modal = discord.ui.Modal(
        title=text("settings.form_title", lang), custom_id=FORM_ID
    )
    form.add_item(
        discord.ui.TextInput(
            label=text("settings.form_negative", lang),
            style=discord.TextStyle.paragraph,
            default=defaults.negative_prompt,
            required=False,
            max_length=500,
            custom_id=NEGATIVE,
        )
    )
    form.add_item(
        discord.ui.TextInput(
            label=text("settings.form_size", lang),
            placeholder="1280*720",
            default=defaults.size,
            required=False,
            max_length=11,
            custom_id=SIZE,
        )
    )
    form.stop()  # sent, not kept: the submit is handled from its custom_id
    return form


async def answer_settings_form(
    bot: WanBot, interaction: discord.Interaction, values: dict[str, str]
) -> None:
    """The form's submit: the negative prompt and the exact size (empty clears them; a size
    given replaces the aspect ratio)."""
    store = bot.launcher.defaults
    size = values.get(SIZE, "").strip() or None
    changes: dict[str, Any] = {"negative_prompt": values.get(NEGATIVE, "").strip() or None}
    current = await store.get(interaction.user.id)
    if size is not None or current.aspect is None:
        changes["size"] = size  # left empty while an aspect is set: the aspect stays
    defaults = await store.change(interaction.user.id, **changes)
    await _redraw(interaction, defaults)


class SettingsPick(discord.ui.DynamicItem[discord.ui.Select[Any]], template=PICK_TEMPLATE):
    def __init__(self, field: str) -> None:
        super().__init__(discord.ui.Select(custom_id=f"wan:me:pick:{field}"))
        self.field = field

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> SettingsPick:
        return cls(match["field"])

    async def callback(self, interaction: discord.Interaction) -> None:
        try:
            data: dict[str, Any] = dict(interaction.data or {})
            chosen = str((data.get("values") or [_UNSET])[0])
            value: object = None if chosen == _UNSET else chosen
            if self.field == "n" and chosen.isdigit():
                value = int(chosen)
            store = _bot(interaction).launcher.defaults
            await _redraw(
                interaction, await store.change(interaction.user.id, **{self.field: value})
            )
        except Exception as error:
            await respond_error(interaction, error)


class SettingsButton(discord.ui.DynamicItem[discord.ui.Button[Any]], template=SET_TEMPLATE):
    def __init__(self, action: str) -> None:
        super().__init__(discord.ui.Button(custom_id=f"wan:me:set:{action}"))
        self.action = action

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> SettingsButton:
        return cls(match["action"])

    async def callback(self, interaction: discord.Interaction) -> None:
        try:
            store = _bot(interaction).launcher.defaults
            user_id = interaction.user.id
            if self.action == "reset":
                await store.reset(user_id)
                await _redraw(interaction, await store.get(user_id))
            elif self.action == "form":
                lang = lang_for(str(interaction.locale))
                await interaction.response.send_modal(settings_form(await store.get(user_id), lang))
            else:
                current = getattr(await store.get(user_id), self.action)
                changed = await store.change(user_id, **{self.action: _NEXT[current]})
                await _redraw(interaction, changed)
        except Exception as error:
            await respond_error(interaction, error)
