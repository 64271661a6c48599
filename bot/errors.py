"""Errors a member is told about, as data: a message key and the values its words need.

The words themselves are chosen by `bot.presenter.describe`, in the member's language and for
the place they are shown; nothing here knows a language.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar


@dataclass(frozen=True)
class Moment:
    """A point in time (epoch seconds) in a message's values. Where the words are shown decides
    how it reads: Discord shows `<t:…:R>` in each reader's clock, a terminal a plain time."""

    at: float


@dataclass(frozen=True)
class Problem:
    """One thing to tell: a message key and the values its text needs. A value may itself be a
    Problem (a part of the sentence) or a Moment."""

    key: str
    values: dict[str, object] = field(default_factory=dict)


def problems_to_json(problems: Iterable[Problem]) -> str:
    """Problems as JSON, to keep and tell later in any language (`problems_from_json`)."""
    return json.dumps([_encode(problem) for problem in problems], ensure_ascii=False)


def problems_from_json(data: str) -> tuple[Problem, ...]:
    return tuple(_decode(item) for item in json.loads(data))


def _encode(value: object) -> Any:
    if isinstance(value, Problem):
        return {"key": value.key, "values": {k: _encode(v) for k, v in value.values.items()}}
    if isinstance(value, Moment):
        return {"moment": value.at}
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)  # anything else as the words it formats to


def _decode(value: Any) -> Any:
    if isinstance(value, dict) and "moment" in value:
        return Moment(value["moment"])
    if isinstance(value, dict):
        return Problem(value["key"], {k: _decode(v) for k, v in value["values"].items()})
    return value


class UserError(Exception):
    """Base of every error a member may be told about. `key` and `values` say what to tell;
    `str(error)` stays a log line for operators."""

    message_key: ClassVar[str] = "reply.error"

    @property
    def key(self) -> str:
        return self.message_key

    @property
    def values(self) -> Mapping[str, object]:
        return {}

    @property
    def problems(self) -> tuple[Problem, ...]:
        """What to tell, one sentence each (most errors have one)."""
        return (Problem(self.key, dict(self.values)),)


class InputRejected(UserError):
    """The input cannot be used as it is. Nothing was sent or charged."""

    def __init__(self, problems: list[Problem]) -> None:
        if not problems:
            raise ValueError("InputRejected needs at least one problem")
        self._problems = tuple(problems)
        # For logs: which checks refused, not the words (those are the member's, in their language).
        super().__init__("; ".join(problem.key for problem in problems))

    @classmethod
    def one(cls, key: str, **values: object) -> InputRejected:
        return cls([Problem(key, values)])

    @property
    def key(self) -> str:
        return self._problems[0].key

    @property
    def values(self) -> Mapping[str, object]:
        return self._problems[0].values

    @property
    def problems(self) -> tuple[Problem, ...]:
        return self._problems
