"""What each server allows: settings with their defaults, server values and role overrides.

Every setting is declared once in `SETTINGS` (type, bounds, whether a role may override it, and
which value is the more generous). A member's effective value is, in order:

1. the most generous value among the roles the member has that set it (an *exempt* role lifts
   the per-member limits altogether),
2. else the server's value,
3. else the bot's default (from the environment).

Changes are validated (a bad value gets a message saying what is expected), written with the old
and new value to the audit log in the same transaction, and can be reset to fall back a level.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from bot.accounting.defaults import NO_DEFAULTS, MemberDefaults
from bot.dashscope.models import MODELS, Kind, ModelSpec, Protocol
from bot.dashscope.requests import ImageRequest, parse_size, size_for_aspect, size_problem
from bot.errors import InputRejected, Problem
from bot.storage.db import Conn, Database

SERVER = 0  # role_id of a server-wide value
_GUILD_ROWS = "SELECT role_id, setting, value FROM limit_settings WHERE guild_id = ?"
# Bumped by triggers on every change to limit_settings (migration 0006); no row: never set.
_VERSION = "SELECT version FROM policy_versions WHERE guild_id = ?"
_POLICIES_PER_GUILD = 512  # distinct role combinations kept per server before starting over

# How values compare: "more" = a larger number is more generous; "less" = smaller; "zero-max"
# = like "more" but 0 means unlimited (the most generous of all).
_MORE, _LESS, _ZERO_MAX = "more", "less", "zero-max"


@dataclass(frozen=True)
class SettingSpec:
    name: str
    kind: str  # int | money | bool | choice | models | model | size | channels | channel
    role: bool  # may a role override it?
    order: str | None = None  # how to pick the most generous among roles
    low: float | None = None
    high: float | None = None
    choices: tuple[str, ...] = ()
    default: str = ""  # the bot's own default (the environment may override the limits')


SETTINGS: dict[str, SettingSpec] = {
    spec.name: spec
    for spec in (
        SettingSpec("images_per_user_day", "int", True, _ZERO_MAX, 0, 100_000, default="25"),
        SettingSpec("concurrent_jobs_per_user", "int", True, _ZERO_MAX, 0, 100, default="2"),
        SettingSpec("cooldown_seconds", "int", True, _LESS, 0, 86_400, default="5"),
        SettingSpec("images_per_guild_day", "int", False, None, 0, 1_000_000, default="200"),
        SettingSpec("monthly_budget", "money", False, None, 0, 10_000_000, default="0"),
        SettingSpec("max_n", "int", True, _MORE, 1, 4, default="4"),
        SettingSpec("allowed_models", "models", False),
        SettingSpec("default_model", "model", False),
        SettingSpec("default_size", "size", False),
        SettingSpec(
            "prompt_extend", "choice", False, choices=("member", "on", "off"), default="member"
        ),
        SettingSpec(
            "watermark", "choice", False, choices=("member", "on", "off"), default="member"
        ),
        SettingSpec("allowed_channels", "channels", False),
        SettingSpec(
            "nsfw_channels", "choice", False, choices=("any", "only", "never"), default="any"
        ),
        SettingSpec("audit_channel", "channel", False),
        SettingSpec("exempt", "bool", True, _MORE, default="0"),
        # Videos (Animate, Video): billed per second, so allowed at all, and capped in seconds.
        SettingSpec("allow_video", "bool", True, _MORE, default="1"),
        SettingSpec("video_seconds_per_user_day", "int", True, _ZERO_MAX, 0, 100_000, default="30"),
        SettingSpec("video_seconds_per_guild_day", "int", False, None, 0, 1_000_000, default="300"),
    )
}

# Set on a role only: a server-wide "exempt" would silently lift every member's limits.
ROLE_ONLY = frozenset({"exempt"})

LIMIT_SETTINGS = (
    "images_per_user_day",
    "concurrent_jobs_per_user",
    "cooldown_seconds",
    "images_per_guild_day",
    "video_seconds_per_user_day",
    "video_seconds_per_guild_day",
)


def validate_value(spec: SettingSpec, raw: str) -> str:
    """The canonical stored text for `raw`, or InputRejected saying what is expected."""
    value = raw.strip()

    def bad(expected: str, **values: object) -> InputRejected:
        # What is expected is a message of its own, so it is in the admin's language too.
        return InputRejected.one(
            "admin.bad_value",
            setting=spec.name,
            value=raw,
            expected=Problem(f"admin.expected.{expected}", values),
        )

    if spec.kind in ("int", "money"):
        expected, bounds = _expected(spec)
        try:
            number = float(value) if spec.kind == "money" else int(value)
        except ValueError:
            raise bad(expected, **bounds) from None
        if (
            not math.isfinite(number)  # "nan" passes both comparisons below
            or (spec.low is not None and number < spec.low)
            or (spec.high is not None and number > spec.high)
        ):
            raise bad(expected, **bounds)
        return f"{number + 0.0:.2f}" if spec.kind == "money" else str(number)  # + 0.0: no "-0.00"
    if spec.kind == "bool":
        lowered = value.lower()
        if lowered in ("yes", "true", "on", "1"):
            return "1"
        if lowered in ("no", "false", "off", "0"):
            return "0"
        raise bad("yes_no")
    if spec.kind == "choice":
        if value.lower() not in spec.choices:
            raise bad("one_of", choices=" | ".join(spec.choices))
        return value.lower()
    if spec.kind in ("models", "model"):
        names = [part.strip() for part in value.replace(" ", ",").split(",") if part.strip()]
        unknown = [n for n in names if n not in MODELS]
        if not names or unknown or (spec.kind == "model" and len(names) != 1):
            raise bad(spec.kind, models=", ".join(MODELS))
        return ",".join(dict.fromkeys(names))
    if spec.kind == "size":
        parsed = parse_size(value)
        if parsed is None:
            raise bad("size")
        return f"{parsed[0]}*{parsed[1]}"
    if spec.kind in ("channels", "channel"):
        ids = [part.strip("<#> ") for part in value.replace(" ", ",").split(",") if part.strip()]
        if (
            not ids
            or any(not (i.isascii() and i.isdigit()) for i in ids)
            or (spec.kind == "channel" and len(ids) > 1)
        ):
            raise bad(spec.kind)
        return ",".join(dict.fromkeys(ids))
    raise AssertionError(f"setting {spec.name} has an unknown kind {spec.kind}")


def _expected(spec: SettingSpec) -> tuple[str, dict[str, object]]:
    """The message key (under admin.expected.) and bounds of a numeric setting."""
    bounds: dict[str, object] = {"low": f"{spec.low or 0:.0f}", "high": f"{spec.high or 0:.0f}"}
    if spec.kind == "money":
        return "money", bounds
    return ("number_unlimited" if spec.order == _ZERO_MAX else "number"), bounds


def _more_generous(spec: SettingSpec, a: str, b: str) -> str:
    if spec.order == _ZERO_MAX:
        fa, fb = float(a), float(b)
        if fa == 0 or fb == 0:
            return a if fa == 0 else b
        return a if fa >= fb else b
    if spec.order == _LESS:
        return a if float(a) <= float(b) else b
    return a if float(a) >= float(b) else b


@dataclass(frozen=True)
class Effective:
    """A setting's value for one member and where it comes from."""

    value: str
    source: str  # "default" | "server" | "role:<id>"


@dataclass(frozen=True)
class Policy:
    """A member's resolved settings. Shared between members with the same relevant roles: read
    it, never change it."""

    values: dict[str, Effective] = field(default_factory=dict)

    def text(self, name: str) -> str:
        return self.values[name].value

    def int(self, name: str) -> int:
        return int(float(self.values[name].value))

    def money(self, name: str) -> float:
        return float(self.values[name].value)

    @property
    def exempt(self) -> bool:
        return self.values["exempt"].value == "1"

    def list(self, name: str) -> list[str]:
        value = self.values[name].value
        return [part for part in value.split(",") if part] if value else []


class _GuildPolicies:
    """One server's stored settings at one version, and the policies resolved from them."""

    def __init__(self, version: int | None, stored: list[Any]) -> None:
        self.version = version
        self.stored = stored
        self.roles = frozenset(row["role_id"] for row in stored if row["role_id"] != SERVER)
        self.policies: dict[frozenset[int], Policy] = {}


class PolicyStore:
    def __init__(
        self, db: Database, defaults: dict[str, str], clock: Callable[[], float] = time.time
    ) -> None:
        unknown = set(defaults) - set(SETTINGS)
        if unknown:
            raise ValueError(f"unknown settings: {sorted(unknown)}")
        self.db = db
        self.defaults = {name: defaults.get(name, spec.default) for name, spec in SETTINGS.items()}
        self._default_values = {
            name: Effective(value, "default") for name, value in self.defaults.items()
        }
        self.clock = clock
        self._no_guild = self.resolve([])
        # Read and replaced whole per server (one dict operation each), from the database's
        # threads and the event loop: a reader gets a consistent (version, rows) pair.
        self._cache: dict[int, _GuildPolicies] = {}

    def effective(self, conn: Conn, guild_id: int | None, role_ids: Iterable[int] = ()) -> Policy:
        """A member's policy (inside a `Database.write`).

        A reservation asks for this every time, so the resolved policies of a server are kept
        per combination of the roles that have rows there, and reused while the server's
        settings version (bumped by a trigger on any change) is the one they were read at:
        one indexed look-up instead of reading and resolving every setting."""
        if guild_id is None:
            return self._no_guild
        row = conn.execute(_VERSION, (guild_id,)).fetchone()
        version = row[0] if row else None
        cached = self._cache.get(guild_id)
        if cached is None or cached.version != version:
            stored = conn.execute(_GUILD_ROWS, (guild_id,)).fetchall()
            cached = self._cache[guild_id] = _GuildPolicies(version, stored)
            if not stored:  # most servers: every member gets the one default policy
                cached.policies[frozenset()] = self._no_guild
        return self._resolved(cached, role_ids)

    def known(
        self, guild_id: int | None, role_ids: Iterable[int] = ()
    ) -> tuple[int | None, Policy] | None:
        """The member's policy as last read, and the server's settings version it was read at,
        without a look-up: for a caller that checks the version itself, in the same
        transaction as it uses the policy. None when the server's settings were never read."""
        if guild_id is None:
            return None, self._no_guild
        cached = self._cache.get(guild_id)
        return None if cached is None else (cached.version, self._resolved(cached, role_ids))

    def _resolved(self, cached: _GuildPolicies, role_ids: Iterable[int]) -> Policy:
        key = cached.roles.intersection(role_ids)
        policy = cached.policies.get(key)
        if policy is None:
            if len(cached.policies) >= _POLICIES_PER_GUILD:
                cached.policies.clear()
            policy = cached.policies[key] = self.resolve(cached.stored, key)
        return policy

    def resolve(self, stored: list[Any], role_ids: Iterable[int] = ()) -> Policy:
        """The member's policy from the server's stored rows (role_id, setting, value)."""
        values = dict(self._default_values)
        roles = set(role_ids)
        for row in stored:
            if row["role_id"] == SERVER and row["setting"] in SETTINGS:
                values[row["setting"]] = Effective(row["value"], "server")
        best: dict[str, Effective] = {}
        for row in stored:
            name, role_id = row["setting"], row["role_id"]
            spec = SETTINGS.get(name)
            if role_id == SERVER or role_id not in roles or spec is None or not spec.role:
                continue
            current = best.get(name)
            if current is None or _more_generous(spec, row["value"], current.value) == row["value"]:
                best[name] = Effective(row["value"], f"role:{role_id}")
        values.update(best)
        return Policy(values)

    async def set(
        self, guild_id: int, name: str, raw: str, *, by_user: int | None, role_id: int = SERVER
    ) -> tuple[str | None, str]:
        spec = SETTINGS.get(name)
        if spec is None:
            raise InputRejected.one(
                "admin.unknown_setting", setting=name, choices=", ".join(SETTINGS)
            )
        if role_id != SERVER and not spec.role:
            raise InputRejected.one("admin.no_role_override", setting=name)
        if role_id == SERVER and name in ROLE_ONLY:
            raise InputRejected.one("admin.role_only", setting=name)
        value = validate_value(spec, raw)
        if spec.kind == "size":
            self._check_size(value)
        old = await self.db.write(self._set, guild_id, role_id, name, value, by_user)
        return old, value

    def _set(
        self, conn: Conn, guild_id: int, role_id: int, name: str, value: str, by_user: int | None
    ) -> str | None:
        old = self._current(conn, guild_id, role_id, name)
        conn.execute(
            "INSERT INTO limit_settings (guild_id, role_id, setting, value, updated_by,"
            " updated_at) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (guild_id, role_id, setting)"
            " DO UPDATE SET value = excluded.value, updated_by = excluded.updated_by,"
            " updated_at = excluded.updated_at",
            (guild_id, role_id, name, value, by_user, self.clock()),
        )
        write_audit(conn, guild_id, by_user or 0, name, old, value, self.clock(), role_id)
        return old

    async def reset(
        self, guild_id: int, name: str, *, by_user: int, role_id: int = SERVER
    ) -> str | None:
        if name not in SETTINGS:
            raise InputRejected.one(
                "admin.unknown_setting", setting=name, choices=", ".join(SETTINGS)
            )
        return await self.db.write(self._reset, guild_id, role_id, name, by_user)

    def _reset(
        self, conn: Conn, guild_id: int, role_id: int, name: str, by_user: int
    ) -> str | None:
        old = self._current(conn, guild_id, role_id, name)
        conn.execute(
            "DELETE FROM limit_settings WHERE guild_id = ? AND role_id = ? AND setting = ?",
            (guild_id, role_id, name),
        )
        if old is not None:
            write_audit(conn, guild_id, by_user, name, old, None, self.clock(), role_id)
        return old

    async def for_member(self, guild_id: int | None, role_ids: Iterable[int] = ()) -> Policy:
        """A member's policy: the server's settings version read on its own (one look-up),
        and the rows read again only when it has changed since they were resolved."""
        if guild_id is None:
            return self._no_guild
        row = await self.db.fetchone(_VERSION, (guild_id,))
        cached = self._cache.get(guild_id)
        if cached is not None and cached.version == (row[0] if row else None):
            return self._resolved(cached, role_ids)
        return await self.db.write(self.effective, guild_id, tuple(role_ids))

    async def overrides(self, guild_id: int) -> list[Any]:
        """Every stored value of the server: (role_id, setting, value)."""
        return await self.db.fetchall(
            "SELECT role_id, setting, value FROM limit_settings WHERE guild_id = ?"
            " ORDER BY setting, role_id",
            (guild_id,),
        )

    async def audit(self, guild_id: int, limit: int = 15) -> list[Any]:
        return await self.db.fetchall(
            "SELECT * FROM audit_log WHERE guild_id = ? ORDER BY id DESC LIMIT ?",
            (guild_id, limit),
        )

    def _check_size(self, value: str) -> None:
        parsed = parse_size(value)
        assert parsed is not None
        fits = [
            spec.name
            for spec in MODELS.values()
            if spec.kind is Kind.TEXT_TO_IMAGE and size_problem(spec, *parsed) is None
        ]
        if not fits:
            raise InputRejected.one(
                "admin.bad_value",
                setting="default_size",
                value=value,
                expected=Problem("admin.expected.size_fit"),
            )

    def _current(self, conn: Conn, guild_id: int, role_id: int, name: str) -> str | None:
        row = conn.execute(
            "SELECT value FROM limit_settings WHERE guild_id = ? AND role_id = ? AND setting = ?",
            (guild_id, role_id, name),
        ).fetchone()
        return row["value"] if row else None


def write_audit(
    conn: Conn,
    guild_id: int,
    user_id: int,
    name: str,
    old: str | None,
    new: str | None,
    at: float,
    role_id: int = SERVER,
) -> None:
    """One change in the server's audit log (`/wanadmin audit`): a setting's, or a style's."""
    conn.execute(
        "INSERT INTO audit_log (guild_id, user_id, role_id, setting, old_value, new_value,"
        " created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (guild_id, user_id, role_id, name, old, new, at),
    )


@dataclass(frozen=True)
class Place:
    """Where a request is made, as far as the policy cares."""

    channel_id: int | None
    parent_id: int | None = None  # the channel a thread hangs off
    nsfw: bool = False


def check_place(policy: Policy, place: Place, *, showing: bool = False) -> None:
    """Raises InputRejected where this server allows no images: outside its allowed channels
    (a thread counts as its channel), or against its age-restricted (NSFW) channel rule. The
    one rule for making images and for showing them again (`showing`: the words say so)."""
    prefix = "policy.show_" if showing else "policy."
    channels = policy.list("allowed_channels")
    if channels and not {str(place.channel_id), str(place.parent_id)} & set(channels):
        raise InputRejected.one(f"{prefix}channel", channels=", ".join(f"<#{c}>" for c in channels))
    rule = policy.text("nsfw_channels")
    if rule == "only" and not place.nsfw:
        raise InputRejected.one(f"{prefix}nsfw_only")
    if rule == "never" and place.nsfw:
        raise InputRejected.one(f"{prefix}no_nsfw")


def apply_policy(
    policy: Policy,
    request: ImageRequest,
    place: Place,
    *,
    model_chosen: bool = True,
    size_chosen: bool = True,
    n_chosen: bool = True,
    mine: MemberDefaults = NO_DEFAULTS,
) -> ImageRequest:
    """The request as this server allows it: defaults filled in, forced options applied.
    Raises InputRejected when the channel, the model or the count is not allowed.

    `mine` holds the member's own defaults for the options the command left out. They count as
    the member's choice, within the server's rules: a model the server does not allow is passed
    over (the server's default applies), n is capped at max_n, forced options stay forced.
    An n the member did not choose (`n_chosen` False: a Vary makes as many as its result had)
    is capped at max_n too, not refused."""
    check_place(policy, place)
    spec = request.spec
    changes: dict[str, Any] = {}
    allowed = policy.list("allowed_models")
    own = mine.model
    fits = own in MODELS and MODELS[own].kind is spec.kind and (not allowed or own in allowed)
    if not model_chosen and fits:
        changes["model"], model_chosen = own, True
    default_model = policy.text("default_model")
    if not model_chosen and default_model and MODELS[default_model].kind is spec.kind:
        changes["model"] = default_model
    model = changes.get("model", request.model)
    if allowed and model not in allowed and not model_chosen:
        # The member chose no model: take the first allowed one of the right kind, if any.
        fitting = [name for name in allowed if MODELS[name].kind is spec.kind]
        if fitting:
            model = changes["model"] = fitting[0]
    if allowed and model not in allowed:
        raise InputRejected.one("policy.model", model=model, models=", ".join(allowed))
    chosen = MODELS[model]
    if not size_chosen:
        changes.update(
            _own_size(chosen, mine) or _size_default(chosen, policy.text("default_size"))
        )
    if mine.n is not None:
        changes["n"] = min(mine.n, policy.int("max_n"), chosen.n_max)
    elif not n_chosen and isinstance(request.n, int) and request.n > policy.int("max_n"):
        changes["n"] = policy.int("max_n")
    # Past the model's own range, validation's message says more: leave it to validate().
    elif isinstance(request.n, int) and policy.int("max_n") < request.n <= chosen.n_max:
        raise InputRejected.one("policy.max_n", max_n=policy.int("max_n"))
    if mine.negative_prompt and len(mine.negative_prompt) <= chosen.negative_max:
        changes["negative_prompt"] = mine.negative_prompt
    # wanx2.1-imageedit (Upscale, Vary, Zoom out, Pan) takes no prompt extension at all: neither
    # the member's default nor the server's forced value applies to it.
    options: tuple[str, ...] = ("prompt_extend", "watermark")
    if chosen.protocol is Protocol.IMAGEEDIT:
        options = ("watermark",)
    for option in options:
        own = getattr(mine, option)
        if own is not None:
            changes[option] = own
        forced = policy.text(option)
        if forced in ("on", "off"):
            changes[option] = forced == "on"
    return replace(request, **changes) if changes else request


def _size_default(spec: ModelSpec, size: str | None) -> dict[str, Any]:
    """A default size where it fits the model (else the model's own default applies)."""
    parsed = parse_size(size) if size else None
    return {"size": size} if parsed and size_problem(spec, *parsed) is None else {}


def _own_size(spec: ModelSpec, mine: MemberDefaults) -> dict[str, Any]:
    """The member's default aspect ratio or size, where the model can make it."""
    if mine.aspect is not None and size_for_aspect(spec, mine.aspect) is not None:
        return {"aspect": mine.aspect}
    return _size_default(spec, mine.size)
