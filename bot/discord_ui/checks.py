"""Who may use what on Discord, and the words for a member who may not.

discord.py runs the checks (a group's `interaction_check`, `app_commands.checks`) before a
command; a failed one raises a `CheckFailure`, which the tree's error handler answers with
`check_failure_text` in the member's language.
"""

from __future__ import annotations

import time

import discord
from discord import app_commands
from discord.ext import commands

from bot.discord_ui.replies import relative_timestamp
from bot.i18n import Lang, text
from bot.jobs.model import Job

# Permissions with a name in the catalogue (`permission.<flag>`): those the bot needs in a
# channel and those its commands ask of members. Others read as discord.py spells them.
NAMED_PERMISSIONS = frozenset(
    {
        "administrator",
        "manage_guild",
        "manage_messages",
        "view_channel",
        "send_messages",
        "send_messages_in_threads",
        "create_public_threads",
        "attach_files",
        "embed_links",
        "read_message_history",
    }
)


class NotOwner(app_commands.CheckFailure):
    """Only the bot's owner may do this (discord.py has this error for prefix commands only)."""


class NotServerAdmin(app_commands.MissingPermissions):
    """The member lacks Manage Server (or Administrator), or is not in a server at all."""

    def __init__(self) -> None:
        super().__init__(["manage_guild"])


def is_server_admin(interaction: discord.Interaction) -> bool:
    permissions = interaction.permissions
    return interaction.guild_id is not None and (
        permissions.manage_guild or permissions.administrator
    )


def is_moderator(interaction: discord.Interaction) -> bool:
    permissions = interaction.permissions
    return permissions.manage_messages or permissions.manage_guild or permissions.administrator


def may_moderate(interaction: discord.Interaction, job: Job) -> bool:
    """A moderator's right covers the jobs of their own server only: Manage Messages in one
    server says nothing about another server's jobs, nor about jobs made in DMs."""
    return (
        interaction.guild_id is not None
        and job.guild_id == interaction.guild_id
        and is_moderator(interaction)
    )


class ServerAdminGroup(app_commands.Group):
    """A command group for server admins, checked here for every command in it. discord.py asks
    only a command's own group, so a subgroup of an admin group is one of these too."""

    async def interaction_check(self, interaction: discord.Interaction, /) -> bool:
        # Checked at run time as well as hidden by default_permissions: a server can override
        # who sees a command.
        if not is_server_admin(interaction):
            raise NotServerAdmin()
        return True


async def _is_owner(interaction: discord.Interaction) -> bool:
    client = interaction.client
    if not isinstance(client, commands.Bot | commands.AutoShardedBot) or not await client.is_owner(
        interaction.user
    ):
        raise NotOwner()
    return True


owner_only = app_commands.check(_is_owner)


def check_failure_text(error: app_commands.CheckFailure, lang: Lang) -> str:
    """Why the member may not run the command, in words (never silence)."""
    if isinstance(error, NotServerAdmin):
        return text("admin.not_allowed", lang)
    if isinstance(error, NotOwner):
        return text("reply.owner_only", lang)
    if isinstance(error, app_commands.MissingPermissions):
        names = permission_names(error.missing_permissions, lang)
        return text("check.missing_permissions", lang, permissions=names)
    if isinstance(error, app_commands.BotMissingPermissions):
        names = permission_names(error.missing_permissions, lang)
        return text("check.bot_missing_permissions", lang, permissions=names)
    if isinstance(error, app_commands.NoPrivateMessage):
        return text("check.guild_only", lang)
    if isinstance(error, app_commands.CommandOnCooldown):
        when = relative_timestamp(time.time() + error.retry_after)
        return text("check.cooldown", lang, when=when)
    if isinstance(error, app_commands.MissingRole):
        return text("check.missing_role", lang, role=role_name(error.missing_role))
    if isinstance(error, app_commands.MissingAnyRole):
        roles = text("check.separator", lang).join(role_name(r) for r in error.missing_roles)
        return text("check.missing_any_role", lang, roles=roles)
    return text("check.failed", lang)


def permission_names(flags: list[str], lang: Lang) -> str:
    """Permission flags (`manage_guild`) as Discord's settings name them (Manage Server)."""
    names = [
        text(f"permission.{flag}", lang)
        if flag in NAMED_PERMISSIONS
        else flag.replace("_", " ").replace("guild", "server").title()
        for flag in flags
    ]
    return text("check.separator", lang).join(names)


def role_name(role: str | int) -> str:
    """A role the check asked for: by id a mention (shown as its name), by name as typed."""
    return f"<@&{role}>" if isinstance(role, int) else f"@{role}"
