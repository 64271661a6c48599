"""Words for errors: any `UserError` told in the member's language.

Errors carry only data (a message key and values); this is the one place that turns them into
text. Moments in time are formatted by the caller's `moment` formatter, because how a time reads
depends on where it is shown: Discord passes `relative_timestamp` (`<t:…:R>`, shown in each
reader's clock), the engine and the command line pass `utc_time`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import overload

from bot.errors import Moment, Problem, UserError
from bot.i18n import Lang, text

MomentFormat = Callable[[float], str]


def utc_time(at: float) -> str:
    """A moment as plain text for places that cannot show Discord's timestamps."""
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M UTC")


@overload
def describe(error: UserError, lang: Lang, *, moment: MomentFormat) -> str: ...
@overload
def describe(error: BaseException, lang: Lang, *, moment: MomentFormat) -> str | None: ...
def describe(error: BaseException, lang: Lang, *, moment: MomentFormat) -> str | None:
    """What to tell the member about `error`, or None when it is not theirs to read (an
    unexpected error: log it and say something went wrong)."""
    if not isinstance(error, UserError):
        return None
    return render_all(error.problems, lang, moment=moment)


def render_all(problems: Iterable[Problem], lang: Lang, *, moment: MomentFormat) -> str:
    """Several problems' sentences, one a line."""
    return "\n".join(render(problem, lang, moment=moment) for problem in problems)


def render(problem: Problem, lang: Lang, *, moment: MomentFormat) -> str:
    """One problem's sentence; values that are problems or moments are rendered here too."""
    values = {name: _value(value, lang, moment) for name, value in problem.values.items()}
    return text(problem.key, lang, **values)


def _value(value: object, lang: Lang, moment: MomentFormat) -> object:
    if isinstance(value, Problem):
        return render(value, lang, moment=moment)
    if isinstance(value, Moment):
        return moment(value.at)
    return value
