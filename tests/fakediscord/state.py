"""The fake's world: users, guilds, roles, members, channels, threads, messages, attachments.

Plain mutable records plus the rules that need them (permissions, snowflakes). Wire payloads are
built from these records in ``payloads.py``.
"""

from __future__ import annotations

import itertools
import mimetypes
import re
from dataclasses import dataclass, field
from typing import Any

from .clock import FakeClock
from .constants import DISCORD_EPOCH_MS, MIB, ChannelType, Perm


class Snowflakes:
    """Discord-style ids: milliseconds since the Discord epoch (fake clock) << 22 | counter."""

    def __init__(self, clock: FakeClock) -> None:
        self._clock = clock
        self._counter = itertools.count(1)
        self._last = 0

    def next(self) -> int:
        ms = int(self._clock.now() * 1000) - DISCORD_EPOCH_MS
        value = (ms << 22) | (1 << 17) | (next(self._counter) & 0xFFF)
        if value <= self._last:  # keep ids strictly increasing even within one millisecond
            value = self._last + 1
        self._last = value
        return value


@dataclass(eq=False)
class User:
    id: int
    username: str
    global_name: str | None = None
    bot: bool = False
    locale: str = "en-US"
    avatar: str | None = None
    accepts_dms: bool = True

    @property
    def mention(self) -> str:
        return f"<@{self.id}>"


@dataclass(eq=False)
class Role:
    id: int
    guild_id: int
    name: str
    permissions: int = 0
    position: int = 0
    color: int = 0
    hoist: bool = False
    managed: bool = False
    mentionable: bool = False
    bot_id: int | None = None

    @property
    def mention(self) -> str:
        return f"<@&{self.id}>"


@dataclass(eq=False)
class Member:
    user: User
    guild_id: int
    roles: list[int] = field(default_factory=list)
    nick: str | None = None
    joined_at: float = 0.0

    @property
    def id(self) -> int:
        return self.user.id


@dataclass(eq=False)
class Overwrite:
    id: int
    type: int  # 0 role, 1 member
    allow: int = 0
    deny: int = 0


@dataclass(eq=False)
class Channel:
    """A guild text channel, a thread (type 11/12) or a DM (type 1)."""

    id: int
    type: int
    name: str | None = None
    guild_id: int | None = None
    position: int = 0
    parent_id: int | None = None
    topic: str | None = None
    nsfw: bool = False
    rate_limit_per_user: int = 0
    overwrites: list[Overwrite] = field(default_factory=list)
    recipients: list[User] = field(default_factory=list)
    last_message_id: int | None = None
    deleted: bool = False
    # Switches for the bot in this channel (threads follow their parent).
    can_send: bool = True
    can_create_threads: bool = True
    can_attach: bool = True
    can_view: bool = True
    # Thread fields.
    owner_id: int | None = None
    archived: bool = False
    locked: bool = False
    invitable: bool = True
    auto_archive_duration: int = 1440
    created_at: float = 0.0
    archive_timestamp: float = 0.0
    message_count: int = 0
    total_message_sent: int = 0
    thread_members: set[int] = field(default_factory=set)

    @property
    def is_thread(self) -> bool:
        return self.type in ChannelType.THREADS

    @property
    def is_dm(self) -> bool:
        return self.type == ChannelType.DM

    @property
    def mention(self) -> str:
        return f"<#{self.id}>"


@dataclass(eq=False)
class Guild:
    id: int
    name: str
    owner_id: int
    locale: str = "en-US"
    attachment_size_limit: int = 10 * MIB
    premium_tier: int = 0
    features: list[str] = field(default_factory=list)
    roles: dict[int, Role] = field(default_factory=dict)
    members: dict[int, Member] = field(default_factory=dict)
    channel_ids: list[int] = field(default_factory=list)
    joined_at: float = 0.0
    unavailable: bool = False

    @property
    def everyone(self) -> Role:
        return self.roles[self.id]


@dataclass(eq=False)
class Attachment:
    id: int
    channel_id: int
    filename: str
    data: bytes
    content_type: str | None
    description: str | None = None
    width: int | None = None
    height: int | None = None
    ephemeral: bool = False
    title: str | None = None

    @property
    def size(self) -> int:
        return len(self.data)


@dataclass(eq=False)
class Message:
    id: int
    channel_id: int
    guild_id: int | None
    author: User
    content: str = ""
    timestamp: float = 0.0
    edited_timestamp: float | None = None
    type: int = 0
    flags: int = 0
    tts: bool = False
    embeds: list[dict[str, Any]] = field(default_factory=list)
    components: list[dict[str, Any]] = field(default_factory=list)
    attachments: list[Attachment] = field(default_factory=list)
    mentions: list[User] = field(default_factory=list)
    mention_roles: list[int] = field(default_factory=list)
    mention_everyone: bool = False
    nonce: str | int | None = None
    reference: dict[str, Any] | None = None  # message_reference as sent
    referenced_id: int | None = None
    pinned: bool = False
    webhook_id: int | None = None
    application_id: int | None = None
    interaction_metadata: dict[str, Any] | None = None
    interaction_id: int | None = None  # the fake's Interaction that produced it, if any
    thread_id: int | None = None  # thread started from this message
    deleted: bool = False
    reactions: dict[str, set[int]] = field(default_factory=dict)
    source: str = "channel"  # channel | callback | followup | user | system

    @property
    def ephemeral(self) -> bool:
        return bool(self.flags & (1 << 6))

    @property
    def loading(self) -> bool:
        return bool(self.flags & (1 << 7))

    def iter_components(self) -> list[dict[str, Any]]:
        """Every component in the message, nested ones included (rows, sections, containers)."""
        out: list[dict[str, Any]] = []

        def walk(items: list[dict[str, Any]]) -> None:
            for item in items:
                out.append(item)
                walk(item.get("components") or [])
                if isinstance(item.get("accessory"), dict):
                    walk([item["accessory"]])
                if isinstance(item.get("component"), dict):
                    walk([item["component"]])

        walk(self.components)
        return out


MENTION_USER = re.compile(r"<@!?(\d+)>")
MENTION_ROLE = re.compile(r"<@&(\d+)>")


def guess_content_type(filename: str) -> str | None:
    ctype, _ = mimetypes.guess_type(filename)
    if ctype is None and filename.lower().endswith(".webp"):
        return "image/webp"
    return ctype


def image_size(data: bytes) -> tuple[int | None, int | None]:
    """Width and height of an image, as Discord reports them; (None, None) if not an image."""
    try:
        import io

        from PIL import Image

        with Image.open(io.BytesIO(data)) as img:
            return img.width, img.height
    except Exception:
        return None, None


def sanitize_filename(name: str) -> str:
    name = name.replace("\\", "/").rsplit("/", 1)[-1].strip()
    name = re.sub(r"\s+", "_", name)
    name = re.sub(r"[^A-Za-z0-9._-]", "", name)
    return name or "unknown"


class FakeState:
    """Everything the fake knows; ids come from one snowflake generator."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.ids = Snowflakes(clock)
        self.users: dict[int, User] = {}
        self.guilds: dict[int, Guild] = {}
        self.channels: dict[int, Channel] = {}
        self.messages: dict[int, Message] = {}
        self.attachments: dict[int, Attachment] = {}
        self.dm_channels: dict[int, int] = {}  # user id -> DM channel id
        self.bot: User | None = None

    # ----- users, guilds, roles, members -------------------------------------------------------
    def add_user(
        self,
        username: str,
        *,
        id: int | None = None,
        global_name: str | None = None,
        bot: bool = False,
        locale: str = "en-US",
    ) -> User:
        user = User(
            id=id or self.ids.next(),
            username=username,
            global_name=global_name,
            bot=bot,
            locale=locale,
        )
        self.users[user.id] = user
        return user

    def add_guild(
        self,
        name: str,
        *,
        owner: User,
        id: int | None = None,
        locale: str = "en-US",
        attachment_size_limit: int = 10 * MIB,
        everyone_permissions: int = Perm.EVERYONE_DEFAULT,
    ) -> Guild:
        gid = id or self.ids.next()
        guild = Guild(
            id=gid,
            name=name,
            owner_id=owner.id,
            locale=locale,
            attachment_size_limit=attachment_size_limit,
            joined_at=self.clock.now(),
        )
        guild.roles[gid] = Role(
            id=gid, guild_id=gid, name="@everyone", permissions=everyone_permissions
        )
        self.guilds[gid] = guild
        self.add_member(guild, owner)
        return guild

    def add_role(
        self,
        guild: Guild,
        name: str,
        permissions: int = 0,
        *,
        id: int | None = None,
        position: int | None = None,
        hoist: bool = False,
        color: int = 0,
        managed: bool = False,
        bot_id: int | None = None,
    ) -> Role:
        if position is None:
            position = max(r.position for r in guild.roles.values()) + 1
        role = Role(
            id=id or self.ids.next(),
            guild_id=guild.id,
            name=name,
            permissions=permissions,
            position=position,
            hoist=hoist,
            color=color,
            managed=managed,
            bot_id=bot_id,
        )
        guild.roles[role.id] = role
        return role

    def add_member(
        self,
        guild: Guild,
        user: User,
        roles: list[Role] | tuple[Role, ...] = (),
        nick: str | None = None,
    ) -> Member:
        member = guild.members.get(user.id)
        if member is None:
            member = Member(user=user, guild_id=guild.id, joined_at=self.clock.now(), nick=nick)
            guild.members[user.id] = member
        for role in roles:
            if role.id not in member.roles:
                member.roles.append(role.id)
        return member

    # ----- channels ----------------------------------------------------------------------------
    def add_text_channel(
        self,
        guild: Guild,
        name: str,
        *,
        id: int | None = None,
        topic: str | None = None,
        nsfw: bool = False,
        position: int | None = None,
        type: int = ChannelType.GUILD_TEXT,
    ) -> Channel:
        if position is None:
            position = len(guild.channel_ids)
        channel = Channel(
            id=id or self.ids.next(),
            type=type,
            name=name,
            guild_id=guild.id,
            position=position,
            topic=topic,
            nsfw=nsfw,
        )
        self.channels[channel.id] = channel
        guild.channel_ids.append(channel.id)
        return channel

    def add_thread(
        self,
        parent: Channel,
        name: str,
        *,
        owner: User,
        id: int | None = None,
        private: bool = False,
        auto_archive_duration: int = 1440,
        invitable: bool = True,
    ) -> Channel:
        now = self.clock.now()
        thread = Channel(
            id=id or self.ids.next(),
            type=ChannelType.PRIVATE_THREAD if private else ChannelType.PUBLIC_THREAD,
            name=name,
            guild_id=parent.guild_id,
            parent_id=parent.id,
            owner_id=owner.id,
            auto_archive_duration=auto_archive_duration,
            invitable=invitable,
            created_at=now,
            archive_timestamp=now,
            thread_members={owner.id},
        )
        self.channels[thread.id] = thread
        return thread

    def open_dm(self, user: User) -> Channel:
        cid = self.dm_channels.get(user.id)
        if cid is not None:
            return self.channels[cid]
        channel = Channel(id=self.ids.next(), type=ChannelType.DM, recipients=[user])
        self.channels[channel.id] = channel
        self.dm_channels[user.id] = channel.id
        return channel

    def guild_of(self, channel: Channel) -> Guild | None:
        return self.guilds.get(channel.guild_id) if channel.guild_id else None

    def parent_of(self, channel: Channel) -> Channel:
        """The channel whose permissions apply (a thread's parent, else itself)."""
        if channel.is_thread and channel.parent_id in self.channels:
            return self.channels[channel.parent_id]
        return channel

    def threads_of(self, guild: Guild) -> list[Channel]:
        return [
            c
            for c in self.channels.values()
            if c.guild_id == guild.id and c.is_thread and not c.deleted and not c.archived
        ]

    def guild_channels(self, guild: Guild) -> list[Channel]:
        return [self.channels[cid] for cid in guild.channel_ids if not self.channels[cid].deleted]

    # ----- attachments -------------------------------------------------------------------------
    def add_attachment(
        self,
        channel_id: int,
        filename: str,
        data: bytes,
        content_type: str | None = None,
        *,
        description: str | None = None,
        ephemeral: bool = False,
        title: str | None = None,
    ) -> Attachment:
        filename = sanitize_filename(filename)
        if content_type in (None, "", "application/octet-stream"):
            content_type = guess_content_type(filename) or content_type
        width = height = None
        if content_type and content_type.startswith("image/"):
            width, height = image_size(data)
        att = Attachment(
            id=self.ids.next(),
            channel_id=channel_id,
            filename=filename,
            data=data,
            content_type=content_type,
            description=description,
            width=width,
            height=height,
            ephemeral=ephemeral,
            title=title,
        )
        self.attachments[att.id] = att
        return att

    # ----- permissions -------------------------------------------------------------------------
    def base_permissions(self, guild: Guild, user_id: int) -> int:
        if user_id == guild.owner_id:
            return Perm.ALL
        member = guild.members.get(user_id)
        perms = guild.everyone.permissions
        if member is not None:
            for rid in member.roles:
                role = guild.roles.get(rid)
                if role is not None:
                    perms |= role.permissions
        if perms & Perm.ADMINISTRATOR:
            return Perm.ALL
        return perms

    def bot_denies(self, channel: Channel) -> int:
        """The permissions the per-channel switches take away from the bot."""
        deny = 0
        if not channel.can_view:
            deny |= Perm.VIEW_CHANNEL
        if not channel.can_send:
            deny |= Perm.SEND_MESSAGES | Perm.SEND_MESSAGES_IN_THREADS
        if not channel.can_create_threads:
            deny |= Perm.CREATE_PUBLIC_THREADS | Perm.CREATE_PRIVATE_THREADS
        if not channel.can_attach:
            deny |= Perm.ATTACH_FILES
        return deny

    def effective_overwrites(self, channel: Channel) -> list[Overwrite]:
        """The channel's overwrites plus a member overwrite for the bot built from the switches."""
        overwrites = list(channel.overwrites)
        deny = self.bot_denies(channel)
        if deny and self.bot is not None:
            for ow in overwrites:
                if ow.type == 1 and ow.id == self.bot.id:
                    overwrites.remove(ow)
                    overwrites.append(Overwrite(self.bot.id, 1, ow.allow & ~deny, ow.deny | deny))
                    break
            else:
                overwrites.append(Overwrite(self.bot.id, 1, 0, deny))
        return overwrites

    def channel_permissions(self, channel: Channel, user_id: int) -> int:
        """Permissions of a user in a channel, overwrites included (threads use their parent)."""
        if channel.is_dm:
            return (
                Perm.VIEW_CHANNEL
                | Perm.SEND_MESSAGES
                | Perm.EMBED_LINKS
                | Perm.ATTACH_FILES
                | Perm.READ_MESSAGE_HISTORY
                | Perm.ADD_REACTIONS
                | Perm.USE_EXTERNAL_EMOJIS
                | Perm.USE_APPLICATION_COMMANDS
            )
        guild = self.guild_of(channel)
        if guild is None:
            return 0
        base = self.base_permissions(guild, user_id)
        if base == Perm.ALL:
            perms = Perm.ALL
        else:
            source = self.parent_of(channel)
            overwrites = self.effective_overwrites(source)
            perms = base
            member = guild.members.get(user_id)
            role_ids = set(member.roles) if member else set()
            for ow in overwrites:
                if ow.type == 0 and ow.id == guild.id:
                    perms = (perms & ~ow.deny) | ow.allow
            allow = deny = 0
            for ow in overwrites:
                if ow.type == 0 and ow.id in role_ids:
                    allow |= ow.allow
                    deny |= ow.deny
            perms = (perms & ~deny) | allow
            for ow in overwrites:
                if ow.type == 1 and ow.id == user_id:
                    perms = (perms & ~ow.deny) | ow.allow
        if self.bot is not None and user_id == self.bot.id:
            # The switches also bind the guild owner/admin case for the bot.
            perms &= ~self.bot_denies(self.parent_of(channel))
        if not perms & Perm.VIEW_CHANNEL:
            return 0
        return perms
