"""Builders for Discord wire objects (API v10) from the fake's records.

Each builder returns the JSON-ready dict Discord would send. Keys discord.py 2.7 requires are
always present; most optional keys are filled the way Discord fills them.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from .constants import ChannelType, MessageType

if TYPE_CHECKING:
    from .state import Attachment, Channel, FakeState, Guild, Member, Message, Role, User


def snowflake(value: int | None) -> str | None:
    return None if value is None else str(value)


def user(u: User, *, private: bool = False) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": str(u.id),
        "username": u.username,
        "discriminator": "0",
        "global_name": u.global_name,
        "avatar": u.avatar,
        "avatar_decoration_data": None,
        "banner": None,
        "accent_color": None,
        "public_flags": 0,
        "flags": 0,
        "primary_guild": None,
        "collectibles": None,
    }
    if u.bot:
        data["bot"] = True
    if private:  # GET /users/@me and READY
        data.update(
            verified=True,
            mfa_enabled=False,
            email=None,
            locale=u.locale,
            premium_type=0,
            bio="",
        )
    return data


def role(r: Role) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": str(r.id),
        "name": r.name,
        "color": r.color,
        "colors": {"primary_color": r.color, "secondary_color": None, "tertiary_color": None},
        "hoist": r.hoist,
        "icon": None,
        "unicode_emoji": None,
        "position": r.position,
        "permissions": str(r.permissions),
        "managed": r.managed,
        "mentionable": r.mentionable,
        "flags": 0,
    }
    if r.bot_id is not None:
        data["tags"] = {"bot_id": str(r.bot_id)}
    return data


def attachment_url(base_url: str, a: Attachment, expires: float) -> str:
    ex = f"{int(expires):x}"
    sig = hashlib.sha256(f"{a.id}:{ex}".encode()).hexdigest()[:32]
    return f"{base_url}/attachments/{a.channel_id}/{a.id}/{quote(a.filename)}?ex={ex}&is={ex}&hm={sig}&"


class PayloadBuilder:
    """Builds payloads that depend on the fake's state, base URL and clock."""

    def __init__(
        self, state: FakeState, *, base_url: str, application_id: int, attachment_ttl: float
    ) -> None:
        self.state = state
        self.base_url = base_url
        self.application_id = application_id
        self.attachment_ttl = attachment_ttl

    @property
    def clock(self):
        return self.state.clock

    # ----- members ----------------------------------------------------------------------------
    def member(self, m: Member, *, with_user: bool = True, channel: Channel | None = None) -> dict:
        data: dict[str, Any] = {
            "nick": m.nick,
            "avatar": None,
            "banner": None,
            "roles": [str(r) for r in m.roles],
            "joined_at": self.clock.iso(m.joined_at),
            "premium_since": None,
            "deaf": False,
            "mute": False,
            "flags": 0,
            "pending": False,
            "communication_disabled_until": None,
            "unusual_dm_activity_until": None,
        }
        if with_user:
            data["user"] = user(m.user)
        if channel is not None:  # interaction payloads carry the member's channel permissions
            data["permissions"] = str(self.state.channel_permissions(channel, m.user.id))
        return data

    # ----- channels ---------------------------------------------------------------------------
    def overwrites(self, channel: Channel) -> list[dict[str, Any]]:
        return [
            {"id": str(o.id), "type": o.type, "allow": str(o.allow), "deny": str(o.deny)}
            for o in self.state.effective_overwrites(channel)
        ]

    def channel(self, c: Channel, *, permissions_for: int | None = None) -> dict[str, Any]:
        if c.is_dm:
            data: dict[str, Any] = {
                "id": str(c.id),
                "type": ChannelType.DM,
                "last_message_id": snowflake(c.last_message_id),
                "recipients": [user(u) for u in c.recipients],
                "flags": 0,
            }
        elif c.is_thread:
            data = self.thread(c)
        else:
            data = {
                "id": str(c.id),
                "type": c.type,
                "guild_id": str(c.guild_id),
                "name": c.name,
                "position": c.position,
                "permission_overwrites": self.overwrites(c),
                "parent_id": snowflake(c.parent_id),
                "topic": c.topic,
                "nsfw": c.nsfw,
                "last_message_id": snowflake(c.last_message_id),
                "rate_limit_per_user": c.rate_limit_per_user,
                "last_pin_timestamp": None,
                "default_auto_archive_duration": 1440,
                "default_thread_rate_limit_per_user": 0,
                "flags": 0,
            }
        if permissions_for is not None:
            data["permissions"] = str(self.state.channel_permissions(c, permissions_for))
        return data

    def thread(self, t: Channel, *, newly_created: bool = False) -> dict[str, Any]:
        metadata: dict[str, Any] = {
            "archived": t.archived,
            "auto_archive_duration": t.auto_archive_duration,
            "archive_timestamp": self.clock.iso(t.archive_timestamp),
            "locked": t.locked,
            "create_timestamp": self.clock.iso(t.created_at),
        }
        if t.type == ChannelType.PRIVATE_THREAD:
            metadata["invitable"] = t.invitable
        data: dict[str, Any] = {
            "id": str(t.id),
            "type": t.type,
            "guild_id": str(t.guild_id),
            "parent_id": str(t.parent_id),
            "owner_id": str(t.owner_id),
            "name": t.name,
            "last_message_id": snowflake(t.last_message_id),
            "message_count": t.message_count,
            "member_count": len(t.thread_members),
            "rate_limit_per_user": t.rate_limit_per_user,
            "thread_metadata": metadata,
            "total_message_sent": t.total_message_sent,
            "flags": 0,
            "position": 0,
        }
        bot = self.state.bot
        if bot is not None and bot.id in t.thread_members:
            data["member"] = {
                "id": str(t.id),
                "user_id": str(bot.id),
                "join_timestamp": self.clock.iso(t.created_at),
                "flags": 1,
            }
        if newly_created:
            data["newly_created"] = True
        return data

    # ----- guilds -----------------------------------------------------------------------------
    def guild(self, g: Guild) -> dict[str, Any]:
        """The REST guild object (GET /guilds/{id})."""
        return {
            "id": str(g.id),
            "name": g.name,
            "icon": None,
            "splash": None,
            "discovery_splash": None,
            "owner_id": str(g.owner_id),
            "afk_channel_id": None,
            "afk_timeout": 300,
            "widget_enabled": False,
            "verification_level": 0,
            "default_message_notifications": 1,
            "explicit_content_filter": 0,
            "roles": [role(r) for r in g.roles.values()],
            "emojis": [],
            "stickers": [],
            "features": list(g.features),
            "mfa_level": 0,
            "application_id": None,
            "system_channel_id": None,
            "system_channel_flags": 0,
            "rules_channel_id": None,
            "public_updates_channel_id": None,
            "safety_alerts_channel_id": None,
            "max_members": 500000,
            "max_presences": None,
            "max_video_channel_users": 25,
            "max_stage_video_channel_users": 50,
            "vanity_url_code": None,
            "description": None,
            "banner": None,
            "premium_tier": g.premium_tier,
            "premium_subscription_count": 0,
            "premium_progress_bar_enabled": False,
            "preferred_locale": g.locale,
            "nsfw_level": 0,
            "incidents_data": None,
        }

    def guild_create(self, g: Guild, *, all_members: bool) -> dict[str, Any]:
        """The gateway GUILD_CREATE payload (full guild with channels, threads, members)."""
        data = self.guild(g)
        bot = self.state.bot
        if all_members:
            members = list(g.members.values())
        else:
            members = [m for m in g.members.values() if bot is not None and m.user.id == bot.id]
        data.update(
            joined_at=self.clock.iso(g.joined_at),
            large=len(g.members) > 250,
            unavailable=False,
            lazy=True,
            member_count=len(g.members),
            voice_states=[],
            members=[self.member(m) for m in members],
            channels=[self.channel(c) for c in self.state.guild_channels(g)],
            threads=[self.thread(t) for t in self.state.threads_of(g)],
            presences=[],
            stage_instances=[],
            guild_scheduled_events=[],
            soundboard_sounds=[],
            embedded_activities=[],
            application_command_counts={},
            home_header=None,
            version=1,
            hub_type=None,
        )
        return data

    # ----- attachments and messages -----------------------------------------------------------
    def attachment(self, a: Attachment) -> dict[str, Any]:
        url = attachment_url(self.base_url, a, self.clock.now() + self.attachment_ttl)
        data: dict[str, Any] = {
            "id": str(a.id),
            "filename": a.filename,
            "size": a.size,
            "url": url,
            "proxy_url": url.replace("/attachments/", "/media/attachments/", 1),
            "content_type": a.content_type,
            "flags": 0,
        }
        if a.width is not None:
            data["width"] = a.width
            data["height"] = a.height
            data["placeholder"] = "AAAAAAAAAAAAAAAAAAAAAAAAAA=="
            data["placeholder_version"] = 1
        if a.description is not None:
            data["description"] = a.description
        if a.title is not None:
            data["title"] = a.title
        if a.ephemeral:
            data["ephemeral"] = True
        return data

    def message(
        self,
        m: Message,
        *,
        with_content: bool = True,
        gateway: bool = False,
        with_reference: bool = True,
    ) -> dict[str, Any]:
        """A message object. ``with_content=False`` blanks what the message-content intent hides."""
        data: dict[str, Any] = {
            "id": str(m.id),
            "channel_id": str(m.channel_id),
            "author": user(m.author),
            "content": m.content if with_content else "",
            "timestamp": self.clock.iso(m.timestamp),
            "edited_timestamp": None
            if m.edited_timestamp is None
            else self.clock.iso(m.edited_timestamp),
            "tts": m.tts,
            "mention_everyone": m.mention_everyone,
            "mentions": [],
            "mention_roles": [str(r) for r in m.mention_roles],
            "attachments": [self.attachment(a) for a in m.attachments] if with_content else [],
            "embeds": list(m.embeds) if with_content else [],
            "components": list(m.components) if with_content else [],
            "pinned": m.pinned,
            "type": m.type,
            "flags": m.flags,
        }
        guild = self.state.guilds.get(m.guild_id) if m.guild_id else None
        for u in m.mentions:
            mention = user(u)
            if guild is not None and u.id in guild.members:
                mention["member"] = self.member(guild.members[u.id], with_user=False)
            data["mentions"].append(mention)
        if m.nonce is not None:
            data["nonce"] = m.nonce
        if m.webhook_id is not None:
            data["webhook_id"] = str(m.webhook_id)
        if m.application_id is not None:
            data["application_id"] = str(m.application_id)
        if m.interaction_metadata is not None:
            data["interaction_metadata"] = m.interaction_metadata
            data["interaction"] = {
                "id": m.interaction_metadata["id"],
                "type": m.interaction_metadata["type"],
                "name": m.interaction_metadata.get("name", ""),
                "user": m.interaction_metadata["user"],
            }
        if m.reactions:
            bot_id = self.state.bot.id if self.state.bot else None
            data["reactions"] = [
                {
                    "emoji": {"id": None, "name": emoji},
                    "count": len(users),
                    "count_details": {"burst": 0, "normal": len(users)},
                    "me": bot_id in users,
                    "me_burst": False,
                    "burst_colors": [],
                }
                for emoji, users in m.reactions.items()
                if users
            ]
        if m.reference is not None:
            data["message_reference"] = m.reference
            if with_reference and m.type == MessageType.REPLY:
                ref = self.state.messages.get(m.referenced_id) if m.referenced_id else None
                data["referenced_message"] = (
                    None
                    if ref is None or ref.deleted
                    else self.message(ref, with_content=with_content, with_reference=False)
                )
        if m.thread_id is not None and m.thread_id in self.state.channels:
            data["thread"] = self.thread(self.state.channels[m.thread_id])
        if gateway and guild is not None:
            data["guild_id"] = str(guild.id)
            member = guild.members.get(m.author.id)
            if member is not None and m.webhook_id is None:
                data["member"] = self.member(member, with_user=False)
        return data

    # ----- interactions -----------------------------------------------------------------------
    def interaction(
        self,
        *,
        id: int,
        token: str,
        type: int,
        data: dict[str, Any] | None,
        invoker: User,
        channel: Channel,
        locale: str,
        message: Message | None = None,
    ) -> dict[str, Any]:
        """An INTERACTION_CREATE payload, as the gateway delivers it."""
        guild = self.state.guild_of(channel)
        bot = self.state.bot
        assert bot is not None
        payload: dict[str, Any] = {
            "id": str(id),
            "application_id": str(self.application_id),
            "type": type,
            "token": token,
            "version": 1,
            "locale": locale,
            "app_permissions": str(self.state.channel_permissions(channel, bot.id)),
            "entitlements": [],
            "entitlement_sku_ids": [],
            "attachment_size_limit": guild.attachment_size_limit if guild else 10 * 1024 * 1024,
            "channel_id": str(channel.id),
            "channel": self.channel(channel, permissions_for=invoker.id),
        }
        if data is not None:
            payload["data"] = data
        if guild is not None:
            member = guild.members.get(invoker.id)
            if member is None:
                raise ValueError(f"user {invoker.username} is not a member of guild {guild.name}")
            payload.update(
                guild_id=str(guild.id),
                guild={
                    "id": str(guild.id),
                    "locale": guild.locale,
                    "features": list(guild.features),
                },
                guild_locale=guild.locale,
                member=self.member(member, channel=channel),
                authorizing_integration_owners={"0": str(guild.id)},
                context=0,
            )
        else:
            payload.update(
                user=user(invoker),
                authorizing_integration_owners={"0": "0"},
                context=1,
            )
        if message is not None:
            payload["message"] = self.message(message)
        return payload

    def resolved_user(self, u: User, channel: Channel, resolved: dict[str, Any]) -> None:
        resolved.setdefault("users", {})[str(u.id)] = user(u)
        guild = self.state.guild_of(channel)
        if guild is not None and u.id in guild.members:
            member = self.member(guild.members[u.id], with_user=False, channel=channel)
            resolved.setdefault("members", {})[str(u.id)] = member

    def resolved_channel(self, c: Channel, invoker: User, resolved: dict[str, Any]) -> None:
        data = self.channel(c, permissions_for=invoker.id)
        resolved.setdefault("channels", {})[str(c.id)] = data
