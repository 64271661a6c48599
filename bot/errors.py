"""Refusals of bad input: what was wrong and what to change, in the user's language."""

from __future__ import annotations

from dataclasses import dataclass, field

from bot.i18n import Lang, text


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the input: a message key and the values its text needs."""

    key: str
    values: dict[str, object] = field(default_factory=dict)

    def render(self, lang: Lang = "en") -> str:
        # A value may itself be a Problem (a part of the sentence): it is rendered in `lang` too.
        values = {
            name: value.render(lang) if isinstance(value, Problem) else value
            for name, value in self.values.items()
        }
        return text(self.key, lang, **values)


class InputRejected(Exception):
    """The input cannot be used as it is. Nothing was sent or charged."""

    def __init__(self, problems: list[Problem]) -> None:
        if not problems:
            raise ValueError("InputRejected needs at least one problem")
        self.problems = problems
        super().__init__(self.user_message("en"))

    @classmethod
    def one(cls, key: str, **values: object) -> InputRejected:
        return cls([Problem(key, values)])

    def user_message(self, lang: Lang = "en") -> str:
        return "\n".join(problem.render(lang) for problem in self.problems)
