"""Errors a member is told about, as data: a message key and the values its words need.

The words themselves are chosen by `bot.presenter.describe`, in the member's language and for
the place they are shown; nothing here knows a language.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import ClassVar


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
