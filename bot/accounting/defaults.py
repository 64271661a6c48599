"""Members' own defaults (`/settings`): the options a member's requests take when the command
leaves them out, kept per member across servers in `member_defaults` (a JSON object of just the
fields set).

Values are checked when saved (a bad one is refused in words); a stored value that stopped being
valid (a model since removed, say) is left out when read. The server's policy still bounds
them: `apply_policy` in policy.py decides what a default may do.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from bot.dashscope.models import DEFAULT_TEXT_TO_IMAGE_MODEL, MODELS, Kind, models_of
from bot.dashscope.requests import ASPECTS, ImageRequest, parse_size, validate
from bot.errors import InputRejected, Problem
from bot.storage.db import Conn, Database


@dataclass(frozen=True)
class MemberDefaults:
    """None: not set (the server's default, else the model's, applies)."""

    model: str | None = None  # a text-to-image model
    aspect: str | None = None  # one of ASPECTS; never with size
    size: str | None = None  # "W*H"; never with aspect
    n: int | None = None
    negative_prompt: str | None = None
    prompt_extend: bool | None = None
    watermark: bool | None = None

    @property
    def is_empty(self) -> bool:
        return self == NO_DEFAULTS

    def only(self, names: frozenset[str]) -> MemberDefaults:
        """Just the fields named (`size` stands for the aspect too)."""
        keep = names | ({"aspect"} if "size" in names else set())
        return MemberDefaults(**{k: v for k, v in asdict(self).items() if k in keep})

    def to_json(self) -> str:
        return json.dumps({k: v for k, v in asdict(self).items() if v is not None})

    @classmethod
    def from_json(cls, raw: str | None) -> MemberDefaults:
        """The stored defaults, leaving out whatever is no longer valid (never raises)."""
        try:
            stored = json.loads(raw or "{}")
        except ValueError:
            return NO_DEFAULTS
        if not isinstance(stored, dict):
            return NO_DEFAULTS
        names = {f.name for f in fields(cls)}
        kept = MemberDefaults(**{k: v for k, v in stored.items() if k in names})
        drop = {name for name, value in asdict(kept).items() if problems_of(kept, name, value)}
        return replace(kept, **dict.fromkeys(drop))


NO_DEFAULTS = MemberDefaults()
FIELDS = tuple(f.name for f in fields(MemberDefaults))
# What an edit takes from the member's defaults besides n and the negative prompt (when its
# command leaves them out). Not the model (a text-to-image one) nor the aspect ratio or size:
# an edit keeps its image's shape unless the command gives one.
EDIT_DEFAULTS = frozenset({"prompt_extend", "watermark"})


def unset(**given: object) -> frozenset[str]:
    """The options a command left out (None), which the member's defaults may fill."""
    return frozenset(name for name, value in given.items() if value is None)


def text_models() -> list[str]:
    return [spec.name for spec in models_of(Kind.TEXT_TO_IMAGE)]


def problems_of(defaults: MemberDefaults, name: str, value: object) -> list[Problem]:
    """Why `value` cannot be the member's default `name` (empty: it can): the checks of a
    request (`validate`) to the member's default model, else the bot's."""
    if value is None:
        return []
    if name == "model":
        if value in text_models():
            return []
        choices = ", ".join(text_models())
        return [Problem("invalid.model_not_text", {"model": value, "choices": choices})]
    if name == "aspect":
        if value in ASPECTS:
            return []
        return [Problem("invalid.aspect_choice", {"aspect": value, "choices": ", ".join(ASPECTS)})]
    if name in ("prompt_extend", "watermark"):
        ok = isinstance(value, bool)
        return [] if ok else [Problem("invalid.parameter_unexpected", {"parameter": name})]
    model = defaults.model if defaults.model in MODELS else DEFAULT_TEXT_TO_IMAGE_MODEL
    field: dict[str, Any] = {name: value}  # size, n or the negative prompt
    try:
        validate(replace(ImageRequest(model=model, prompt="-"), **field))
    except InputRejected as refused:
        return list(refused.problems)
    return []


def changed(current: MemberDefaults, **changes: Any) -> MemberDefaults:
    """`current` with `changes` (None clears a field), each change checked: raises
    InputRejected naming every bad value. An aspect replaces the size, and a size the aspect."""
    unknown = set(changes) - set(FIELDS)
    if unknown:
        raise ValueError(f"unknown defaults: {sorted(unknown)}")
    if isinstance(changes.get("negative_prompt"), str):
        changes["negative_prompt"] = changes["negative_prompt"].strip() or None
    if isinstance(changes.get("size"), str):
        parsed = parse_size(changes["size"])
        changes["size"] = f"{parsed[0]}*{parsed[1]}" if parsed else changes["size"]
    if changes.get("aspect") is not None:
        changes["size"] = None
    elif changes.get("size") is not None:
        changes["aspect"] = None
    new = replace(current, **changes)
    problems = [p for name in changes for p in problems_of(new, name, getattr(new, name))]
    if problems:
        raise InputRejected(problems)
    return new


class DefaultsStore:
    """The `member_defaults` rows: one per member, across servers."""

    def __init__(self, db: Database, clock: Callable[[], float] = time.time) -> None:
        self.db = db
        self.clock = clock

    async def get(self, user_id: int) -> MemberDefaults:
        row = await self.db.fetchone(
            "SELECT defaults FROM member_defaults WHERE user_id = ?", (user_id,)
        )
        return MemberDefaults.from_json(row["defaults"] if row else None)

    async def change(self, user_id: int, **changes: Any) -> MemberDefaults:
        """Change some of the member's defaults (None clears one); returns them all."""
        return await self.db.write(self._change, user_id, changes)

    async def reset(self, user_id: int) -> None:
        await self.db.write(_delete, user_id)

    def _change(self, conn: Conn, user_id: int, changes: dict[str, Any]) -> MemberDefaults:
        # Two changes at once (two controls clicked, two processes) would each read the row and
        # write back the other's field as it was: one waits for the other.
        conn.lock("member_defaults", user_id)
        row = conn.execute(
            "SELECT defaults FROM member_defaults WHERE user_id = ?", (user_id,)
        ).fetchone()
        new = changed(MemberDefaults.from_json(row["defaults"] if row else None), **changes)
        if new.is_empty:
            _delete(conn, user_id)
            return new
        conn.execute(
            "INSERT INTO member_defaults (user_id, defaults, updated_at) VALUES (?, ?, ?)"
            " ON CONFLICT (user_id) DO UPDATE SET defaults = excluded.defaults,"
            " updated_at = excluded.updated_at",
            (user_id, new.to_json(), self.clock()),
        )
        return new


def _delete(conn: Conn, user_id: int) -> None:
    conn.execute("DELETE FROM member_defaults WHERE user_id = ?", (user_id,))
