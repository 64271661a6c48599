"""Injecting what users do: slash commands, context menus, clicks, modal submits, messages.

Every injection builds the real gateway payload and dispatches it over the websocket, so the
bot parses it with discord.py's own code.
"""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING, Any

from .constants import InteractionType, OptionType
from .records import Interaction, UploadedFile
from .state import Attachment, Channel, Member, Message, Role, User

if TYPE_CHECKING:
    from .server import FakeDiscord

# An upload: (filename, bytes) or (filename, bytes, content_type), or an Attachment already stored.
Upload = tuple[str, bytes] | tuple[str, bytes, str] | Attachment
SELECT_TYPES = (3, 5, 6, 7, 8)


def _as_user(value: User | Member) -> User:
    return value.user if isinstance(value, Member) else value


def _infer_type(value: Any) -> int:
    if isinstance(value, bool):
        return OptionType.BOOLEAN
    if isinstance(value, int):
        return OptionType.INTEGER
    if isinstance(value, float):
        return OptionType.NUMBER
    if isinstance(value, (User, Member)):
        return OptionType.USER
    if isinstance(value, Channel):
        return OptionType.CHANNEL
    if isinstance(value, Role):
        return OptionType.ROLE
    if isinstance(value, (Attachment, tuple)):
        return OptionType.ATTACHMENT
    return OptionType.STRING


def _leaf_schema(
    schema: list[dict[str, Any]] | None, path: list[str]
) -> list[dict[str, Any]] | None:
    """The options of the (sub)command at ``path`` in a synced command's option tree."""
    for name in path:
        if schema is None:
            return None
        spec = next((o for o in schema if o["name"] == name), None)
        schema = (spec.get("options") or []) if spec else None
    return schema


class InjectMixin:
    """User actions for :class:`FakeDiscord`."""

    require_synced_commands = False

    # ----- core --------------------------------------------------------------------------------
    async def inject_interaction(
        self: FakeDiscord,
        type: int,
        data: dict[str, Any] | None,
        *,
        user: User | Member,
        channel: Channel,
        message: Message | None = None,
        locale: str | None = None,
    ) -> Interaction:
        """Build an INTERACTION_CREATE payload and dispatch it; returns the record."""
        if not self.connected_sessions():
            raise RuntimeError("no bot is connected to the fake gateway (await fake.wait_ready())")
        invoker = _as_user(user)
        iid = self.state.ids.next()
        token = "aW50ZXJhY3Rpb246" + secrets.token_urlsafe(48)
        payload = self.payloads.interaction(
            id=iid,
            token=token,
            type=type,
            data=data,
            invoker=invoker,
            channel=channel,
            locale=locale or invoker.locale,
            message=message,
        )
        inter = Interaction(
            id=iid,
            token=token,
            type=type,
            payload=payload,
            user=invoker,
            channel=channel,
            injected_at=self.clock.now(),
            message=message,
        )
        self.interactions[iid] = inter
        self._by_token[token] = inter
        await self.dispatch("INTERACTION_CREATE", payload, guild_id=channel.guild_id)
        return inter

    def find_command(
        self: FakeDiscord, name: str, type: int, channel: Channel
    ) -> tuple[dict[str, Any] | None, int | None]:
        """The synced command (guild first, then global) and its guild id, if it was synced."""
        if channel.guild_id is not None:
            for cmd in self.guild_commands.get(channel.guild_id, []):
                if cmd["name"] == name and cmd["type"] == type:
                    return cmd, channel.guild_id
        for cmd in self.global_commands:
            if cmd["name"] == name and cmd["type"] == type:
                return cmd, None
        if self.require_synced_commands:
            raise ValueError(f"command {name!r} (type {type}) was never synced")
        return None, None

    def _check_command_permissions(
        self: FakeDiscord, cmd: dict[str, Any] | None, user: User, channel: Channel
    ) -> None:
        """Discord hides commands whose default_member_permissions the member lacks."""
        if cmd is None or channel.guild_id is None:
            return
        required = cmd.get("default_member_permissions")
        if required is None:
            return
        guild = self.state.guild_of(channel)
        assert guild is not None
        perms = self.state.base_permissions(guild, user.id)
        if int(required) & ~perms:
            raise PermissionError(
                f"{user.username} cannot use /{cmd['name']}: Discord only shows it to members with"
                f" permissions {required} (pass force=True to inject anyway)"
            )

    def _command_data(
        self: FakeDiscord, name: str, type: int, channel: Channel
    ) -> tuple[dict[str, Any], dict[str, Any] | None]:
        cmd, guild_id = self.find_command(name, type, channel)
        data: dict[str, Any] = {
            "id": cmd["id"] if cmd else str(self.state.ids.next()),
            "name": name,
            "type": type,
        }
        if guild_id is not None:
            data["guild_id"] = str(guild_id)
        return data, cmd

    # ----- uploads and option values -----------------------------------------------------------
    def upload(
        self: FakeDiscord, spec: Upload, channel: Channel, *, ephemeral: bool = True
    ) -> Attachment:
        """Store an uploaded file the way Discord does for command options (ephemeral CDN)."""
        if isinstance(spec, Attachment):
            return spec
        filename, data, *rest = spec
        content_type = rest[0] if rest else None
        return self.state.add_attachment(
            channel.id, filename, data, content_type, ephemeral=ephemeral
        )

    def _option_value(
        self: FakeDiscord,
        otype: int,
        name: str,
        value: Any,
        invoker: User,
        channel: Channel,
        resolved: dict[str, Any],
    ) -> Any:
        if otype == OptionType.STRING:
            return str(value)
        if otype == OptionType.INTEGER:
            return int(value)
        if otype == OptionType.NUMBER:
            return float(value)
        if otype == OptionType.BOOLEAN:
            return bool(value)
        if otype in (OptionType.USER, OptionType.MENTIONABLE) and isinstance(value, (User, Member)):
            target = _as_user(value)
            self.payloads.resolved_user(target, channel, resolved)
            return str(target.id)
        if otype in (OptionType.ROLE, OptionType.MENTIONABLE) and isinstance(value, Role):
            from .payloads import role

            resolved.setdefault("roles", {})[str(value.id)] = role(value)
            return str(value.id)
        if otype == OptionType.CHANNEL and isinstance(value, Channel):
            self.payloads.resolved_channel(value, invoker, resolved)
            return str(value.id)
        if otype == OptionType.ATTACHMENT:
            att = self.upload(value, channel)
            resolved.setdefault("attachments", {})[str(att.id)] = self.payloads.attachment(att)
            return str(att.id)
        raise TypeError(f"option {name!r}: cannot send {value!r} as option type {otype}")

    def _leaf_options(
        self: FakeDiscord,
        schema: list[dict[str, Any]] | None,
        values: dict[str, Any],
        invoker: User,
        channel: Channel,
        resolved: dict[str, Any],
        focused: str | None,
    ) -> list[dict[str, Any]]:
        specs = {o["name"]: o for o in schema or []}
        if schema is not None:
            unknown = set(values) - set(specs)
            if unknown:
                raise ValueError(
                    f"unknown option(s) {sorted(unknown)}; the command has {sorted(specs)}"
                )
            if focused is None:
                missing = [n for n, o in specs.items() if o.get("required") and n not in values]
                if missing:
                    raise ValueError(f"required option(s) missing: {missing}")
        out = []
        for name, value in values.items():
            spec = specs.get(name)
            otype = spec["type"] if spec else _infer_type(value)
            entry: dict[str, Any] = {"name": name, "type": otype}
            if focused == name:
                entry["value"] = str(value)
                entry["focused"] = True
            else:
                entry["value"] = self._option_value(otype, name, value, invoker, channel, resolved)
                choices = (spec or {}).get("choices")
                if choices and entry["value"] not in [c["value"] for c in choices]:
                    raise ValueError(f"option {name!r}: {value!r} is not one of the choices")
            out.append(entry)
        return out

    def _build_options(
        self: FakeDiscord,
        path: list[str],
        schema: list[dict[str, Any]] | None,
        values: dict[str, Any],
        invoker: User,
        channel: Channel,
        resolved: dict[str, Any],
        focused: str | None = None,
    ) -> list[dict[str, Any]]:
        if not path:
            return self._leaf_options(schema, values, invoker, channel, resolved, focused)
        name = path[0]
        spec = next((o for o in schema or [] if o["name"] == name), None)
        if schema is not None and spec is None:
            raise ValueError(f"unknown subcommand {name!r}")
        otype = (
            spec["type"]
            if spec
            else (OptionType.SUB_COMMAND_GROUP if len(path) > 1 else OptionType.SUB_COMMAND)
        )
        inner_schema = (spec.get("options") or []) if spec else None
        inner = self._build_options(
            path[1:], inner_schema, values, invoker, channel, resolved, focused
        )
        return [{"name": name, "type": otype, "options": inner}]

    # ----- application commands ----------------------------------------------------------------
    async def slash(
        self: FakeDiscord,
        name: str,
        options: dict[str, Any] | None = None,
        *,
        user: User | Member,
        channel: Channel,
        locale: str | None = None,
        attachments: dict[str, Upload] | list[Upload] | tuple[Upload, ...] | None = None,
        force: bool = False,
    ) -> Interaction:
        """Invoke ``/name`` (``"group sub"`` for subcommands) with option values.

        Option types come from the synced command when there is one, else from the Python
        values: str, int, float, bool, User/Member, Channel, Role, and uploads for attachment
        options (``(filename, bytes[, content_type])``). ``attachments`` is a dict
        {option name: upload}, or a list filling the command's attachment options in order.
        """
        invoker = _as_user(user)
        parts = name.split()
        data, cmd = self._command_data(parts[0], 1, channel)
        if not force:
            self._check_command_permissions(cmd, invoker, channel)
        schema = (cmd.get("options") or []) if cmd else None
        leaf_schema = _leaf_schema(schema, parts[1:])
        values = dict(options or {})
        if isinstance(attachments, (list, tuple)):
            if leaf_schema is None:
                raise ValueError("attachments as a list needs a synced command; pass a dict")
            slots = [o["name"] for o in leaf_schema if o.get("type") == OptionType.ATTACHMENT]
            if len(attachments) > len(slots):
                raise ValueError(f"{len(attachments)} uploads but attachment options are {slots}")
            values.update(zip(slots, attachments, strict=False))
        else:
            values.update(attachments or {})
        resolved: dict[str, Any] = {}
        opts = self._build_options(parts[1:], schema, values, invoker, channel, resolved)
        if opts:
            data["options"] = opts
        if resolved:
            data["resolved"] = resolved
        return await self.inject_interaction(
            InteractionType.APPLICATION_COMMAND, data, user=invoker, channel=channel, locale=locale
        )

    async def autocomplete(
        self: FakeDiscord,
        name: str,
        options: dict[str, Any],
        focused: str,
        *,
        user: User | Member,
        channel: Channel,
        locale: str | None = None,
    ) -> Interaction:
        """The user is typing into option ``focused``; the bot should answer with choices."""
        invoker = _as_user(user)
        parts = name.split()
        data, cmd = self._command_data(parts[0], 1, channel)
        resolved: dict[str, Any] = {}
        schema = (cmd.get("options") or []) if cmd else None
        data["options"] = self._build_options(
            parts[1:], schema, dict(options), invoker, channel, resolved, focused=focused
        )
        if resolved:
            data["resolved"] = resolved
        return await self.inject_interaction(
            InteractionType.APPLICATION_COMMAND_AUTOCOMPLETE,
            data,
            user=invoker,
            channel=channel,
            locale=locale,
        )

    async def message_command(
        self: FakeDiscord,
        name: str,
        target_message: Message,
        *,
        user: User | Member,
        channel: Channel | None = None,
        locale: str | None = None,
        force: bool = False,
    ) -> Interaction:
        """Right-click a message -> Apps -> ``name`` (a message context-menu command)."""
        invoker = _as_user(user)
        channel = channel or self.state.channels[target_message.channel_id]
        data, cmd = self._command_data(name, 3, channel)
        if not force:
            self._check_command_permissions(cmd, invoker, channel)
        data["target_id"] = str(target_message.id)
        data["resolved"] = {
            "messages": {str(target_message.id): self.payloads.message(target_message)}
        }
        return await self.inject_interaction(
            InteractionType.APPLICATION_COMMAND, data, user=invoker, channel=channel, locale=locale
        )

    async def user_command(
        self: FakeDiscord,
        name: str,
        target: User | Member,
        *,
        user: User | Member,
        channel: Channel,
        locale: str | None = None,
        force: bool = False,
    ) -> Interaction:
        """Right-click a user -> Apps -> ``name`` (a user context-menu command)."""
        invoker = _as_user(user)
        data, cmd = self._command_data(name, 2, channel)
        if not force:
            self._check_command_permissions(cmd, invoker, channel)
        target_user = _as_user(target)
        resolved: dict[str, Any] = {}
        self.payloads.resolved_user(target_user, channel, resolved)
        data["target_id"] = str(target_user.id)
        data["resolved"] = resolved
        return await self.inject_interaction(
            InteractionType.APPLICATION_COMMAND, data, user=invoker, channel=channel, locale=locale
        )

    # ----- components and modals ---------------------------------------------------------------
    async def click(
        self: FakeDiscord,
        message: Message,
        custom_id: str,
        *,
        user: User | Member,
        values: list[Any] | None = None,
        locale: str | None = None,
        force: bool = False,
    ) -> Interaction:
        """Click a button (or choose ``values`` in a select) on a message the fake stored.

        The component must exist on the message and not be disabled, as on Discord, unless
        ``force=True`` (e.g. to click a button of a message from before a restart).
        """
        component = next(
            (c for c in message.iter_components() if c.get("custom_id") == custom_id), None
        )
        if not force:
            if component is None:
                found = [
                    c.get("custom_id") for c in message.iter_components() if c.get("custom_id")
                ]
                raise ValueError(
                    f"message {message.id} has no component {custom_id!r} (has {found})"
                )
            if component.get("disabled"):
                raise ValueError(f"component {custom_id!r} is disabled")
        ctype = component["type"] if component else (2 if values is None else 3)
        data: dict[str, Any] = {"custom_id": custom_id, "component_type": ctype}
        channel = self.state.channels[message.channel_id]
        invoker = _as_user(user)
        if ctype in SELECT_TYPES:
            resolved: dict[str, Any] = {}
            out = []
            for v in values or []:
                if isinstance(v, (User, Member)):
                    self.payloads.resolved_user(_as_user(v), channel, resolved)
                    out.append(str(_as_user(v).id))
                elif isinstance(v, Role):
                    from .payloads import role

                    resolved.setdefault("roles", {})[str(v.id)] = role(v)
                    out.append(str(v.id))
                elif isinstance(v, Channel):
                    self.payloads.resolved_channel(v, invoker, resolved)
                    out.append(str(v.id))
                else:
                    out.append(str(v))
            data["values"] = out
            if resolved:
                data["resolved"] = resolved
        return await self.inject_interaction(
            InteractionType.MESSAGE_COMPONENT,
            data,
            user=invoker,
            channel=channel,
            message=message,
            locale=locale,
        )

    async def select(
        self: FakeDiscord,
        message: Message,
        custom_id: str,
        values: list[Any],
        *,
        user: User | Member,
        locale: str | None = None,
    ) -> Interaction:
        return await self.click(message, custom_id, user=user, values=values, locale=locale)

    def find_modal(
        self: FakeDiscord, custom_id: str | None = None, user: User | Member | None = None
    ) -> tuple[Interaction, dict[str, Any]] | None:
        """The latest modal the bot sent (optionally with this custom_id / to this user)."""
        for inter, modal in reversed(self.modals_sent):
            if custom_id is not None and modal.get("custom_id") != custom_id:
                continue
            if user is not None and inter.user.id != _as_user(user).id:
                continue
            return inter, modal
        return None

    async def submit_modal(
        self: FakeDiscord,
        custom_id: str | None = None,
        fields: dict[str, Any] | None = None,
        *,
        user: User | Member | None = None,
        channel: Channel | None = None,
        interaction: Interaction | None = None,
        locale: str | None = None,
        force: bool = False,
    ) -> Interaction:
        """Submit a modal the bot sent, with ``fields`` = {component custom_id: value}.

        The submission mirrors the modal's layout (action rows or labels). Text inputs take a
        str, selects a list, file uploads a list of uploads. Without a matching modal sent
        earlier this raises, unless ``force=True`` (then action rows of text inputs are sent;
        discord.py still drops it unless that process sent the modal).
        """
        fields = dict(fields or {})
        origin: Interaction | None = interaction
        modal = interaction.modal if interaction is not None else None
        if modal is None:
            found = self.find_modal(custom_id, user if origin is None else None)
            if found is not None:
                origin, modal = found
        resolved: dict[str, Any] = {}
        if modal is None:
            if not force or custom_id is None or channel is None or user is None:
                raise ValueError(f"the bot never sent a modal with custom_id {custom_id!r}")
            components = [
                {"type": 1, "components": [{"type": 4, "custom_id": k, "value": str(v)}]}
                for k, v in fields.items()
            ]
            modal_id = custom_id
        else:
            assert origin is not None
            channel = channel or origin.channel
            components = self._modal_submission(
                modal.get("components") or [], fields, channel, resolved
            )
            if fields and not force:
                raise ValueError(
                    f"modal {modal.get('custom_id')!r} has no field(s) {sorted(fields)}"
                )
            modal_id = modal["custom_id"]
        invoker = _as_user(user) if user is not None else origin.user  # type: ignore[union-attr]
        channel = channel or origin.channel  # type: ignore[union-attr]
        data: dict[str, Any] = {"custom_id": modal_id, "components": components}
        if resolved:
            data["resolved"] = resolved
        message = origin.message if origin is not None and origin.type == 3 else None
        return await self.inject_interaction(
            InteractionType.MODAL_SUBMIT,
            data,
            user=invoker,
            channel=channel,
            message=message,
            locale=locale,
        )

    def _modal_submission(
        self: FakeDiscord,
        components: list[dict[str, Any]],
        fields: dict[str, Any],
        channel: Channel,
        resolved: dict[str, Any],
    ) -> list[dict[str, Any]]:
        """Turn the modal's components into submitted components; consumes ``fields``."""
        out: list[dict[str, Any]] = []
        for comp in components:
            ctype = comp.get("type")
            entry: dict[str, Any] = {"type": ctype}
            if comp.get("id") is not None:
                entry["id"] = comp["id"]
            if ctype == 1:
                entry["components"] = self._modal_submission(
                    comp.get("components") or [], fields, channel, resolved
                )
            elif ctype == 18:  # label wrapping one component
                inner = self._modal_submission([comp["component"]], fields, channel, resolved)
                if not inner:
                    continue
                entry["component"] = inner[0]
            elif comp.get("custom_id") is not None:
                cid = comp["custom_id"]
                entry["custom_id"] = cid
                given = fields.pop(cid, None)
                if ctype == 4:  # text input
                    value = (comp.get("value") or "") if given is None else str(given)
                    if comp.get("required", True) and not value:
                        raise ValueError(f"text input {cid!r} is required")
                    min_len, max_len = comp.get("min_length"), comp.get("max_length")
                    if (min_len and len(value) < min_len) or (max_len and len(value) > max_len):
                        raise ValueError(f"text input {cid!r}: length {len(value)} out of bounds")
                    entry["value"] = value
                elif ctype == 19:  # file upload
                    ids = []
                    for spec in given or []:
                        att = self.upload(spec, channel)
                        resolved.setdefault("attachments", {})[str(att.id)] = (
                            self.payloads.attachment(att)
                        )
                        ids.append(str(att.id))
                    entry["values"] = ids
                elif ctype in SELECT_TYPES:
                    entry["values"] = [str(getattr(v, "id", v)) for v in given or []]
                elif isinstance(given, list):
                    entry["values"] = [str(v) for v in given]
                elif given is not None:
                    entry["value"] = given
            else:
                continue  # text displays and other static items are not submitted
            out.append(entry)
        return out

    # ----- plain messages ----------------------------------------------------------------------
    async def post_message(
        self: FakeDiscord,
        channel: Channel,
        author: User | Member,
        content: str = "",
        *,
        attachments: list[Upload] | tuple[Upload, ...] = (),
        mentions: list[User | Member] | tuple[User | Member, ...] = (),
        reference: Message | None = None,
        mention_author: bool = True,
        embeds: list[dict[str, Any]] | None = None,
        nonce: str | None = None,
    ) -> Message:
        """A user posts a message (stored, attachments served) and MESSAGE_CREATE is dispatched.

        ``<@id>`` mentions in the content are parsed like Discord does; ``mentions`` adds more.
        A reply (``reference``) mentions the replied-to author unless ``mention_author=False``.
        """
        author_user = _as_user(author)
        guild = self.state.guild_of(channel)
        if guild is not None and author_user.id not in guild.members:
            raise ValueError(f"{author_user.username} is not a member of {guild.name}")
        if channel.deleted:
            raise ValueError("channel was deleted")
        body: dict[str, Any] = {"content": content, "embeds": embeds or []}
        if nonce is not None:
            body["nonce"] = nonce
        if reference is not None:
            body["message_reference"] = {
                "message_id": str(reference.id),
                "channel_id": str(reference.channel_id),
            }
            body["allowed_mentions"] = {"replied_user": mention_author}
        files = []
        stored: list[Attachment] = []
        for i, spec in enumerate(attachments):
            if isinstance(spec, Attachment):
                stored.append(spec)
                continue
            filename, data, *rest = spec
            files.append(UploadedFile(f"files[{i}]", filename, data, rest[0] if rest else None))
        msg = self._new_message(channel, author_user, body, files, source="user")
        msg.attachments = stored + msg.attachments
        for extra in mentions:
            u = _as_user(extra)
            if u not in msg.mentions:
                msg.mentions.append(u)
        if channel.is_thread and author_user.id not in channel.thread_members:
            channel.thread_members.add(author_user.id)
        await self._dispatch_message("MESSAGE_CREATE", msg)
        return msg

    async def edit_user_message(self: FakeDiscord, message: Message, content: str) -> Message:
        """A user edits their message (MESSAGE_UPDATE)."""
        self._apply_edit(message, {"content": content}, [])
        await self._dispatch_message("MESSAGE_UPDATE", message)
        return message

    async def delete_user_message(self: FakeDiscord, message: Message) -> None:
        message.deleted = True
        await self._dispatch_delete(message)


__all__ = ["InjectMixin", "Upload"]
