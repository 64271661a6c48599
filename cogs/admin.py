"""Server admins (`/wanadmin`) and the owner's `/wansync`.

`/wanadmin` is hidden from members without Manage Server (`default_permissions`), and its group
checks again at run time for every subcommand (`ServerAdminGroup`), because a server can override
command permissions. Refusals and errors are answered by the tree's error handler.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import time

import discord
from discord import app_commands
from discord.app_commands import locale_str as _
from discord.ext import commands

from bot.accounting.chart import usage_chart
from bot.accounting.policy import SERVER, SETTINGS, PolicyStore
from bot.accounting.styles import (
    AUDIT_PREFIX,
    NAME_MAX,
    NEGATIVE_MAX,
    SUFFIX_MAX,
    Style,
    StyleStore,
)
from bot.accounting.usage import PERIODS, period_bounds, usage_report
from bot.dashscope.models import Kind
from bot.discord_ui.app import WanBot
from bot.discord_ui.checks import ServerAdminGroup, owner_only
from bot.discord_ui.render import member_words, setting_value
from bot.discord_ui.replies import respond
from bot.i18n import Lang, lang_for, text
from cogs.options import localised, model_choices, style_choices

log = logging.getLogger(__name__)


def _scope(role: discord.Role | None) -> str:
    return f" [@{role.name}]" if role is not None else ""


def _role_of(role: discord.Role | None) -> discord.Role | None:
    """The role a value is for; @everyone is every member, so its value is the server's."""
    return None if role is None or role.is_default() else role


# Discord's limit for an embed's description.
DESCRIPTION_MAX = 4096
AUDIT_VALUE_MAX = 80  # characters of a value in the audit list: long allow-lists are cut
STYLE_WORDS_MAX = 400  # characters of a style's suffix or negative prompt in an answer
STYLE_LINE_ROOM = 130  # a style's line in the list apart from its words: name, model, marks


async def setting_choices(
    interaction: discord.Interaction, current: str
) -> list[app_commands.Choice[str]]:
    return [
        app_commands.Choice(name=name, value=name) for name in SETTINGS if current.lower() in name
    ][:25]


def style_line(style: Style, lang: Lang, limit: int) -> str:
    """A style as admins read it: its name, its words, what it keeps out and its model, the
    admin's words escaped (each at most `limit` characters)."""
    parts = [
        f"**{member_words(style.label, 2 * NAME_MAX)}**: "
        + member_words(style.prompt_suffix, limit, one_line=True)
    ]
    if style.negative_prompt:
        negative = member_words(style.negative_prompt, limit, one_line=True)
        parts.append(text("style.negative", lang, negative=negative))
    if style.model:
        parts.append(f"`{style.model}`")
    return " · ".join(parts)


class Admin(commands.Cog):
    wanadmin = ServerAdminGroup(
        name=_("wanadmin"),
        description=_("Server admins: limits, budgets, usage and the audit trail"),
        default_permissions=discord.Permissions(manage_guild=True),
        guild_only=True,
    )
    limits = ServerAdminGroup(
        name=_("limits"), description=_("Show or change this server's settings"), parent=wanadmin
    )
    styles = ServerAdminGroup(
        name=_("styles"),
        description=_("Named styles that members can add to /imagine"),
        parent=wanadmin,
    )

    def __init__(self, bot: WanBot) -> None:
        self.bot = bot

    @property
    def policy(self) -> PolicyStore:
        return self.bot.engine.quota.policy

    @property
    def style_store(self) -> StyleStore:
        return StyleStore(self.bot.svc.db)

    @limits.command(
        name=_("show"), description=_("Every setting, its value and where it comes from")
    )
    async def limits_show(self, interaction: discord.Interaction) -> None:
        lang = lang_for(str(interaction.locale))
        assert interaction.guild is not None
        effective = await self.policy.for_member(interaction.guild_id)
        overrides = await self.policy.overrides(interaction.guild_id or 0)
        lines = []
        for name, value in effective.values.items():
            source = (
                f"<@&{value.source.removeprefix('role:')}>"
                if value.source.startswith("role:")
                else text(f"admin.source.{value.source}", lang)
            )
            lines.append(f"`{name}` = **{setting_value(name, value.value)}** ({source})")
            for row in overrides:
                if row["setting"] == name and row["role_id"] != SERVER:
                    override = setting_value(name, row["value"])
                    lines.append(f"  ↳ <@&{row['role_id']}>: **{override}**")
        embed = discord.Embed(title=text("admin.limits_title", lang), description="\n".join(lines))
        await respond(interaction, "", embed=embed)

    @limits.command(
        name=_("set"), description=_("Change a setting, for the server or for one role")
    )
    @app_commands.describe(
        setting=_("Which setting"),
        value=_("The new value"),
        role=_("Only for members with this role"),
    )
    @app_commands.rename(setting=_("setting"), value=_("value"), role=_("role"))
    @app_commands.autocomplete(setting=setting_choices)
    async def limits_set(
        self,
        interaction: discord.Interaction,
        setting: str,
        value: app_commands.Range[str, 1, 400],
        role: discord.Role | None = None,
    ) -> None:
        lang = lang_for(str(interaction.locale))
        role = _role_of(role)
        old, new = await self.policy.set(
            interaction.guild_id or 0,
            setting,
            value,
            by_user=interaction.user.id,
            role_id=role.id if role else SERVER,
        )
        scope = _scope(role)
        await respond(
            interaction,
            text(
                "admin.set",
                lang,
                setting=setting,
                scope=scope,
                old=setting_value(setting, old),
                new=setting_value(setting, new),
            ),
        )
        await self._post_audit(interaction, lang, setting, scope, old, new)

    @limits.command(name=_("reset"), description=_("Go back to the server's value or the default"))
    @app_commands.describe(setting=_("Which setting"), role=_("Reset only this role's value"))
    @app_commands.rename(setting=_("setting"), role=_("role"))
    @app_commands.autocomplete(setting=setting_choices)
    async def limits_reset(
        self, interaction: discord.Interaction, setting: str, role: discord.Role | None = None
    ) -> None:
        lang = lang_for(str(interaction.locale))
        role = _role_of(role)
        old = await self.policy.reset(
            interaction.guild_id or 0,
            setting,
            by_user=interaction.user.id,
            role_id=role.id if role else SERVER,
        )
        scope = _scope(role)
        source = text("admin.source.server" if role else "admin.source.default", lang)
        await respond(
            interaction,
            text(
                "admin.reset",
                lang,
                setting=setting,
                scope=scope,
                old=setting_value(setting, old),
                source=source,
            ),
        )
        await self._post_audit(interaction, lang, setting, scope, old, None)

    async def _post_audit(
        self,
        interaction: discord.Interaction,
        lang: Lang,
        setting: str,
        scope: str,
        old: str | None,
        new: str | None,
    ) -> None:
        policy = await self.policy.for_member(interaction.guild_id)
        channel_id = policy.text("audit_channel")
        if not channel_id:
            return
        line = text(
            "admin.audit_post",
            lang,
            user=interaction.user.mention,
            setting=setting,
            scope=scope,
            old=setting_value(setting, old),
            new=setting_value(setting, new),
        )
        # Only a channel of this server: an id typed by an admin could name any channel the
        # bot can see, in any server.
        guild = interaction.guild
        channel = guild.get_channel_or_thread(int(channel_id)) if guild is not None else None
        if not isinstance(channel, discord.abc.Messageable):
            log.warning("audit channel %s is not a text channel of server %s", channel_id, guild)
            return
        # If the post fails, the change stands: the audit log in the database has it.
        with contextlib.suppress(discord.HTTPException):
            await channel.send(line, allowed_mentions=discord.AllowedMentions.none())

    @wanadmin.command(name=_("audit"), description=_("The latest setting changes: who, what, when"))
    async def audit(self, interaction: discord.Interaction) -> None:
        lang = lang_for(str(interaction.locale))
        rows = await self.policy.audit(interaction.guild_id or 0)
        if not rows:
            await respond(interaction, text("admin.audit_empty", lang))
            return
        lines = [
            f"<t:{int(r['created_at'])}:R> <@{r['user_id']}> `{r['setting']}`"
            + (f" [<@&{r['role_id']}>]" if r["role_id"] else "")
            + f": {setting_value(r['setting'], r['old_value'], AUDIT_VALUE_MAX)}"
            + f" → {setting_value(r['setting'], r['new_value'], AUDIT_VALUE_MAX)}"
            for r in rows
        ]
        while len("\n".join(lines)) > DESCRIPTION_MAX:  # long allow-lists: the newest that fit
            lines.pop()
        embed = discord.Embed(title=text("admin.audit_title", lang), description="\n".join(lines))
        await respond(interaction, "", embed=embed)

    @wanadmin.command(
        name=_("usage"), description=_("Images, outcomes and cost, with a daily chart")
    )
    @app_commands.describe(user=_("One member (default: the whole server)"), period=_("The period"))
    @app_commands.rename(user=_("user"), period=_("period"))
    @app_commands.choices(period=[app_commands.Choice(name=_(p), value=p) for p in PERIODS])
    async def usage(
        self,
        interaction: discord.Interaction,
        user: discord.User | None = None,
        period: str = "this month",
    ) -> None:
        lang = lang_for(str(interaction.locale))
        await interaction.response.defer(ephemeral=True, thinking=True)
        start, end = period_bounds(period, time.time())
        report = await usage_report(
            self.bot.engine.db,
            interaction.guild_id or 0,
            start,
            end,
            user_id=user.id if user else None,
        )
        currency = self.bot.settings.currency
        lines = [
            text(
                "admin.usage_line",
                lang,
                images=report.images,
                done=report.done,
                failed=report.failed,
                cancelled=report.cancelled,
                cost=report.cost,
                currency=currency,
            )
        ]
        if report.kinds:
            lines.append(f"**{text('admin.usage_kinds', lang)}**")
            lines += [
                text(
                    "admin.usage_kind_line",
                    lang,
                    kind=text(f"admin.kind.{kind.kind.value}", lang),
                    images=kind.images,
                    cost=kind.cost,
                    currency=currency,
                )
                for kind in report.kinds
            ]
        if user is None and report.top:
            lines.append(f"**{text('admin.usage_top', lang)}**")
            lines += [
                f"<@{uid}>: {images} · {cost:.2f} {currency}" for uid, images, cost in report.top
            ]
        title = text("admin.usage_title", lang, period=text(f"admin.period.{period}", lang))
        embed = discord.Embed(title=title, description="\n".join(lines))
        embed.set_image(url="attachment://usage.png")
        # Drawing takes a tenth of a second or more: off the event loop.
        png = await asyncio.to_thread(usage_chart, report.days, currency, lang)
        chart = discord.File(io.BytesIO(png), "usage.png")
        await interaction.followup.send(embed=embed, file=chart, ephemeral=True)

    @styles.command(name=_("add"), description=_("Add a style, or replace the one of that name"))
    @app_commands.describe(
        name=_("The style's name: letters, digits, - and _"),
        suffix=_("Words added after each prompt"),
        negative_prompt=_("What the style keeps out of images (optional)"),
        model=_("The model when the member picks none (optional)"),
    )
    @localised
    async def styles_add(
        self,
        interaction: discord.Interaction,
        name: app_commands.Range[str, 1, NAME_MAX],
        suffix: app_commands.Range[str, 1, SUFFIX_MAX],
        negative_prompt: app_commands.Range[str, 1, NEGATIVE_MAX] | None = None,
        model: str | None = None,
    ) -> None:
        lang = lang_for(str(interaction.locale))
        old, style = await self.style_store.add(
            interaction.guild_id or 0,
            name,
            suffix,
            negative_prompt,
            model,
            by_user=interaction.user.id,
        )
        line = style_line(style, lang, STYLE_WORDS_MAX)
        words = (
            text("style.added", lang, name=style.name, style=line)
            if old is None
            else text(
                "style.replaced",
                lang,
                name=style.name,
                style=line,
                old=style_line(old, lang, STYLE_WORDS_MAX),
            )
        )
        await respond(interaction, words)
        await self._post_audit(
            interaction,
            lang,
            member_words(AUDIT_PREFIX + style.label, 2 * NAME_MAX),
            "",
            old.summary() if old else None,
            style.summary(),
        )

    @styles_add.autocomplete("model")
    async def _style_model(
        self, interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        return await model_choices(interaction, current, Kind.TEXT_TO_IMAGE)

    @styles.command(name=_("remove"), description=_("Remove a style"))
    @app_commands.describe(name=_("Which style"))
    @app_commands.rename(name=_("name"))
    async def styles_remove(
        self, interaction: discord.Interaction, name: app_commands.Range[str, 1, 100]
    ) -> None:
        lang = lang_for(str(interaction.locale))
        old = await self.style_store.remove(
            interaction.guild_id or 0, name, by_user=interaction.user.id
        )
        await respond(
            interaction, text("style.removed", lang, style=style_line(old, lang, STYLE_WORDS_MAX))
        )
        await self._post_audit(
            interaction,
            lang,
            member_words(AUDIT_PREFIX + old.label, 2 * NAME_MAX),
            "",
            old.summary(),
            None,
        )

    @styles_remove.autocomplete("name")
    async def _style_name(
        self, interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        return await style_choices(self.style_store, interaction, current)

    @styles.command(name=_("list"), description=_("This server's styles"))
    async def styles_list(self, interaction: discord.Interaction) -> None:
        lang = lang_for(str(interaction.locale))
        styles = await self.style_store.all(interaction.guild_id or 0)
        if not styles:
            await respond(interaction, text("style.list_empty", lang))
            return
        # Each style's words shortened so that every style fits in one embed.
        room = max(20, (DESCRIPTION_MAX // len(styles) - STYLE_LINE_ROOM) // 2)
        lines = [style_line(style, lang, room) for style in styles]
        embed = discord.Embed(title=text("style.list_title", lang), description="\n".join(lines))
        await respond(interaction, "", embed=embed)

    @app_commands.command(
        name=_("wansync"), description=_("Owner only: publish the slash commands to every server")
    )
    @owner_only
    async def wansync(self, interaction: discord.Interaction) -> None:
        lang = lang_for(str(interaction.locale))
        await interaction.response.defer(ephemeral=True, thinking=True)
        synced = await self.bot.tree.sync()
        await interaction.followup.send(
            text("reply.synced", lang, count=len(synced)), ephemeral=True
        )


async def setup(bot: WanBot) -> None:
    await bot.add_cog(Admin(bot))
