"""A server's named styles: words added to a prompt, and optionally a negative prompt and a
model, that members pick with `/imagine style:` and admins keep with `/wanadmin styles`.

A style is kept under its name in lower case (two names differing only in case are one style)
with the name as the admin typed it (`label`, what members see). Adding a name that exists
replaces that style. Every change is written to the audit log (as `style:<name>`, the style
summed up in one line as its old and new value) in the same transaction, like settings.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from bot.accounting.policy import write_audit
from bot.dashscope.models import MODELS, Kind, models_of
from bot.dashscope.requests import ImageRequest
from bot.errors import InputRejected, Problem
from bot.storage.db import Conn, Database

NAME_MAX = 32
# Room for the member's words: a 500-character model (the older ones) still takes a prompt of
# 198 characters with the suffix and its joining ", ".
SUFFIX_MAX = 300
NEGATIVE_MAX = 500  # every text-to-image model's negative prompt limit
STYLES_MAX = 25  # as many as autocomplete can offer
AUDIT_PREFIX = "style:"  # the audit log's "setting" of a style change
JOIN = ", "  # between the member's words and the style's
_NAME = re.compile(r"[\w-]+")  # letters (any script), digits, "-" and "_"
_ALL = (
    "SELECT name, label, prompt_suffix, negative_prompt, model, created_by, created_at"
    " FROM server_styles WHERE guild_id = ? ORDER BY name"
)
_ONE = (
    "SELECT name, label, prompt_suffix, negative_prompt, model, created_by, created_at"
    " FROM server_styles WHERE guild_id = ? AND name = ?"
)


@dataclass(frozen=True)
class Style:
    name: str  # the key: the label in lower case
    label: str  # as the admin typed it
    prompt_suffix: str
    negative_prompt: str | None = None
    model: str | None = None
    created_by: int = 0
    created_at: float = 0.0

    @classmethod
    def of(cls, row: Any) -> Style:
        return cls(
            row["name"],
            row["label"],
            row["prompt_suffix"],
            row["negative_prompt"],
            row["model"],
            row["created_by"],
            row["created_at"],
        )

    def summary(self) -> str:
        """The style in one line, for the audit log: `suffix | −negative | model`."""
        parts = [self.prompt_suffix]
        if self.negative_prompt:
            parts.append(f"−{self.negative_prompt}")
        if self.model:
            parts.append(self.model)
        return " | ".join(parts)


def joined(first: str | None, second: str | None) -> str | None:
    """Two texts as one: the first's trailing commas and spaces dropped, then `JOIN`."""
    first = (first or "").strip()
    second = (second or "").strip()
    if not first or not second:
        return first or second or None
    return first.rstrip(",， ") + JOIN + second


def new_style(
    label: str, suffix: str, negative: str | None, model: str | None, *, by_user: int, at: float
) -> Style:
    """The style an admin asked for, or InputRejected naming every value to change."""
    label = label.strip()
    suffix = " ".join(suffix.split())
    negative = " ".join((negative or "").split()) or None
    model = (model or "").strip() or None
    problems = []
    if not (0 < len(label) <= NAME_MAX and _NAME.fullmatch(label)):
        problems.append(Problem("style.bad_name", {"name": shown(label), "limit": NAME_MAX}))
    if not suffix:
        problems.append(Problem("style.empty_suffix"))
    elif len(suffix) > SUFFIX_MAX:
        problems.append(Problem("style.long_suffix", {"length": len(suffix), "limit": SUFFIX_MAX}))
    if negative is not None and len(negative) > NEGATIVE_MAX:
        problems.append(
            Problem("style.long_negative", {"length": len(negative), "limit": NEGATIVE_MAX})
        )
    if model is not None and (model not in MODELS or MODELS[model].kind is not Kind.TEXT_TO_IMAGE):
        models = ", ".join(spec.name for spec in models_of(Kind.TEXT_TO_IMAGE))
        problems.append(Problem("style.bad_model", {"model": shown(model), "models": models}))
    if problems:
        raise InputRejected(problems)
    return Style(label.lower(), label, suffix, negative, model, by_user, at)


def apply_style(request: ImageRequest, style: Style, *, model_chosen: bool) -> ImageRequest:
    """The request with the style's words after the prompt, its negative prompt after the
    member's, and its model when the member chose none (the server's policy then judges that
    model as one chosen: a model the server disallows is refused, not swapped). Refused in words
    when the style makes the prompt or negative prompt too long for the model."""
    model = request.model if model_chosen or not style.model else style.model
    prompt = joined(request.prompt, style.prompt_suffix) or ""
    negative = joined(request.negative_prompt, style.negative_prompt)
    spec = replace(request, model=model).spec  # a model no longer known: refused in words
    problems = []
    if len(prompt) > spec.prompt_max:
        values = {"length": len(prompt), "model": model, "limit": spec.prompt_max}
        room = spec.prompt_max - len(JOIN) - len(style.prompt_suffix)
        problems.append(
            Problem("style.prompt_long", {"style": style.label, "room": room, **values})
        )
    both = negative if style.negative_prompt and request.negative_prompt else None
    if both is not None and len(both) > spec.negative_max:  # the style's alone always fits
        values = {"length": len(both), "limit": spec.negative_max}
        room = spec.negative_max - len(JOIN) - len(style.negative_prompt or "")
        if room > 0:
            problems.append(
                Problem("style.negative_long", {"style": style.label, "room": room, **values})
            )
        else:  # the style's fills it: the member's cannot be shortened to fit, only left out
            values = {"style": style.label, "limit": spec.negative_max}
            problems.append(Problem("style.negative_full", values))
    if problems:
        raise InputRejected(problems)
    return replace(request, model=model, prompt=prompt, negative_prompt=negative, style=style.label)


class StyleStore:
    def __init__(self, db: Database, clock: Callable[[], float] = time.time) -> None:
        self.db = db
        self.clock = clock

    async def add(
        self,
        guild_id: int,
        label: str,
        suffix: str,
        negative: str | None = None,
        model: str | None = None,
        *,
        by_user: int,
    ) -> tuple[Style | None, Style]:
        """Add the style, or replace the one of that name: (the old one or None, the new)."""
        style = new_style(label, suffix, negative, model, by_user=by_user, at=self.clock())
        return await self.db.write(self._add, guild_id, style)

    def _add(self, conn: Conn, guild_id: int, style: Style) -> tuple[Style | None, Style]:
        conn.lock("styles", guild_id)  # two adds at once cannot both pass the cap
        old = _get(conn, guild_id, style.name)
        if old is None:
            row = conn.execute(
                "SELECT COUNT(*) AS k FROM server_styles WHERE guild_id = ?", (guild_id,)
            ).fetchone()
            if row["k"] >= STYLES_MAX:
                raise InputRejected.one("style.too_many", limit=STYLES_MAX)
        conn.execute(
            "INSERT INTO server_styles (guild_id, name, label, prompt_suffix, negative_prompt, model, created_by, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (guild_id, name) DO UPDATE SET label = excluded.label,"
            " prompt_suffix = excluded.prompt_suffix, negative_prompt = excluded.negative_prompt,"
            " model = excluded.model, created_by = excluded.created_by,"
            " created_at = excluded.created_at",
            (
                guild_id,
                style.name,
                style.label,
                style.prompt_suffix,
                style.negative_prompt,
                style.model,
                style.created_by,
                style.created_at,
            ),
        )
        write_audit(
            conn,
            guild_id,
            style.created_by,
            AUDIT_PREFIX + style.label,
            old.summary() if old else None,
            style.summary(),
            style.created_at,
        )
        return old, style

    async def remove(self, guild_id: int, name: str, *, by_user: int) -> Style:
        """Remove the style; refused naming the server's styles when there is none of that name."""
        return await self.db.write(self._remove, guild_id, name.strip().lower(), by_user)

    def _remove(self, conn: Conn, guild_id: int, name: str, by_user: int) -> Style:
        old = _get(conn, guild_id, name)
        if old is None:
            raise unknown(name, _labels(conn, guild_id))
        conn.execute("DELETE FROM server_styles WHERE guild_id = ? AND name = ?", (guild_id, name))
        write_audit(
            conn, guild_id, by_user, AUDIT_PREFIX + old.label, old.summary(), None, self.clock()
        )
        return old

    async def apply(
        self, guild_id: int | None, name: str, request: ImageRequest, *, model_chosen: bool
    ) -> tuple[ImageRequest, bool]:
        """The request with the style named `name` applied (`apply_style`), and whether a model
        is now chosen (the member's or the style's)."""
        style = await self.pick(guild_id, name)
        styled = apply_style(request, style, model_chosen=model_chosen)
        return styled, model_chosen or style.model is not None

    async def all(self, guild_id: int) -> list[Style]:
        rows = await self.db.fetchall(_ALL, (guild_id,))
        return [Style.of(row) for row in rows]

    async def pick(self, guild_id: int | None, name: str) -> Style:
        """The style a member named; refused in words outside servers, or naming the server's
        styles when it has none of that name."""
        if guild_id is None:
            raise InputRejected.one("style.not_here")
        row = await self.db.fetchone(_ONE, (guild_id, name.strip().lower()))
        if row is not None:
            return Style.of(row)
        raise unknown(name, [row["label"] for row in await self.db.fetchall(_ALL, (guild_id,))])


def shown(typed: str) -> str:
    """What someone typed, as a refusal quotes it (in a code span, where nothing is markup but a
    backtick, which would end it: shown as '): no longer than any name could be, and more."""
    typed = typed.replace("`", "'")
    return typed if len(typed) <= 2 * NAME_MAX else typed[: 2 * NAME_MAX] + "…"


def unknown(name: str, labels: list[str]) -> InputRejected:
    if not labels:
        return InputRejected.one("style.none", name=shown(name))
    return InputRejected.one("style.unknown", name=shown(name), styles=", ".join(labels))


def _get(conn: Conn, guild_id: int, name: str) -> Style | None:
    row = conn.execute(_ONE, (guild_id, name)).fetchone()
    return Style.of(row) if row else None


def _labels(conn: Conn, guild_id: int) -> list[str]:
    return [row["label"] for row in conn.execute(_ALL, (guild_id,)).fetchall()]
