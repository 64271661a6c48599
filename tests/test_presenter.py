"""The presenter: every error a member may see, in words, in both languages; errors as data."""

from __future__ import annotations

import importlib
import pkgutil
from datetime import UTC, datetime
from pathlib import PurePosixPath

import pytest

import bot
import cogs
from bot.accounting.quota import (
    BudgetExceeded,
    LimitReached,
    QuotaExceeded,
    VideoBudgetExceeded,
    VideoNotAllowed,
    VideoSecondsReached,
)
from bot.dashscope import errors as ds
from bot.discord_ui.launcher import CannotPost
from bot.discord_ui.replies import relative_timestamp
from bot.dispatch.engine import EngineStopping
from bot.errors import (
    InputRejected,
    Moment,
    Problem,
    UserError,
    problems_from_json,
    problems_to_json,
)
from bot.presenter import describe, render, render_all, utc_time

RENEWS = datetime(2026, 2, 1, tzinfo=UTC).timestamp()
FREES = datetime(2026, 1, 15, 9, 30, tzinfo=UTC).timestamp()
DETAIL = "size 9*9 is not supported"


def common(**more: object) -> dict[str, object]:
    return {"status": 400, "code": "X.Code", "request_id": "req-1", "task_id": "task-1", **more}


# (error, message key, fragments of the English words, fragments of the Chinese words)
CASES: list[tuple[UserError, str, list[str], list[str]]] = [
    (
        InputRejected.one("invalid.seed", seed=-5),
        "invalid.seed",
        ["Seed must be a whole number", "(got -5)"],
        ["种子须为", "（当前 -5）"],
    ),
    (
        InputRejected([Problem("invalid.prompt_empty"), Problem("invalid.seed", {"seed": 9})]),
        "invalid.prompt_empty",
        ["The prompt is empty.", "\nSeed must be", "(got 9)"],
        ["提示词为空", "\n种子须为", "（当前 9）"],
    ),
    (
        InputRejected.one(
            "admin.bad_value",
            setting="max_n",
            value="x",
            expected=Problem("admin.expected.number", {"low": 1, "high": 4}),
        ),
        "admin.bad_value",
        ["`x` is not a valid value for max_n: expected a whole number from 1 to 4."],
        ["`x` 不是 max_n 的有效值：应为 1 到 4 之间的整数。"],
    ),
    (ds.AuthenticationError("no", **common()), "error.authentication", ["API key"], ["API Key"]),
    (ds.PermissionDeniedError("no", **common()), "error.permission", ["billing"], ["欠费"]),
    (
        ds.BadRequestError(DETAIL, **common()),
        "error.bad_request",
        ["refused the request as invalid. Change it", "Info"],
        ["请求无效。请修改后重试", "详情"],
    ),
    (ds.NotFoundError(DETAIL, **common()), "error.not_found", ["does not know"], ["找不到"]),
    (
        ds.ContentRejectedError("m", subject=ds.CONTENT_INPUT_TEXT, **common()),
        "error.content.input_text",
        ["The prompt was blocked"],
        ["提示词未通过内容审核"],
    ),
    (
        ds.ContentRejectedError("m", subject=ds.CONTENT_INPUT_IMAGE, **common()),
        "error.content.input_image",
        ["An input image was blocked"],
        ["输入图片未通过"],
    ),
    (
        ds.ContentRejectedError("m", subject=ds.CONTENT_OUTPUT, **common()),
        "error.content.output",
        ["The generated image was blocked"],
        ["生成的图片未通过"],
    ),
    (
        ds.ContentRejectedError("m", subject=ds.CONTENT_UNKNOWN, **common()),
        "error.content.unknown",
        ["The request was blocked"],
        ["请求未通过内容审核"],
    ),
    (
        ds.ContentRejectedError("m", **common(code="IPInfringementSuspect")),
        "error.content.ip",
        ["copyrighted"],
        ["知识产权"],
    ),
    (
        ds.RateLimitedError("slow", retry_after=3.0, **common()),
        "error.rate_limited",
        ["busy"],
        ["繁忙"],
    ),
    (ds.ServerError("boom", **common()), "error.server", ["internal problem"], ["内部出错"]),
    (ds.DashScopeError("?", **common()), "error.server", ["internal problem"], ["内部出错"]),
    (
        ds.TaskFailedError("bad", **common(code="InternalError.Algo")),
        "error.task_failed",
        ["failed at DashScope (InternalError.Algo)"],
        ["失败（InternalError.Algo）"],
    ),
    (
        ds.TaskFailedError("bad", **common(code=None)),
        "error.task_failed",
        ["failed at DashScope (?)"],
        ["失败（?）"],
    ),
    (ds.TaskExpiredError("gone", **common()), "error.task_expired", ["24 hours"], ["24 小时"]),
    (ds.ConnectionFailedError("down", **common()), "error.connection", ["reach"], ["无法连接"]),
    (
        ds.SubmissionOutcomeUnknownError("lost", **common()),
        "error.outcome_unknown",
        ["paying twice"],
        ["重复计费"],
    ),
    (ds.ResponseFormatError("junk", **common()), "error.bad_response", ["read"], ["无法解析"]),
    (
        ds.DownloadError("HTTP 500", **common()),
        "error.download",
        ["could not be downloaded. Please try again later."],
        ["无法下载结果图片，请稍后再试。"],
    ),
    (
        ds.DownloadRefused("host not allowed", **common()),
        "error.download",
        ["could not be downloaded."],
        ["无法下载结果图片"],
    ),
    (
        LimitReached("cooldown", allowed=30, used=10, frees_at=FREES),
        "quota.cooldown",
        ["one job every 30 s", "next one 2026-01-15 09:30 UTC."],
        ["每 30 秒", "2026-01-15 09:30 UTC后"],
    ),
    (
        LimitReached("concurrent", allowed=2, used=2, frees_at=None),
        "quota.concurrent",
        ["You already have 2 jobs running (the limit is 2)"],
        ["你已有 2 个任务在进行（上限 2 个）"],
    ),
    (
        LimitReached("user_day", allowed=5, used=4, frees_at=FREES),
        "quota.user_day",
        ["used 4 of your 5 images", "free up 2026-01-15 09:30 UTC."],
        ["已使用 4 张图片（上限 5 张）", "2026-01-15 09:30 UTC后"],
    ),
    (
        LimitReached("guild_day", allowed=6, used=6, frees_at=None),
        "quota.guild_day",
        ["This server has used 6 of its 6 images", "More free up ?."],
        ["上限 6 张", "?后"],
    ),
    (
        BudgetExceeded(budget=1.1, spent=0.8, renews_at=RENEWS),
        "quota.budget",
        ["spent 0.80 of its monthly budget of 1.10", "renews 2026-02-01 00:00 UTC."],
        ["本月已用 0.80，月度预算为 1.10", "预算将于2026-02-01 00:00 UTC重置"],
    ),
    (
        VideoBudgetExceeded(budget=4.0, spent=2.8, renews_at=RENEWS, cost=3.0),
        "quota.budget_video",
        ["This video would cost 3.00", "1.20 of its monthly budget of 4.00 left"],
        ["这个视频预计花费 3.00", "只剩 1.20"],
    ),
    (
        VideoSecondsReached("video_user_day", allowed=30, used=25, asked=10, frees_at=FREES),
        "quota.video_user_day",
        ["needs 10 s", "you have 5 s of your 30 s", "free up 2026-01-15 09:30 UTC."],
        ["需要 10 秒", "还剩 5 秒"],
    ),
    (
        VideoNotAllowed(),
        "quota.video_off",
        ["does not allow videos", "allow_video yes"],
        ["不允许生成视频"],
    ),
    (
        EngineStopping("the bot is restarting"),
        "reply.stopping",
        ["restarting"],
        ["正在重启"],
    ),
    (CannotPost(), "reply.cannot_post", ["I can't post in this channel"], ["无法在此频道发言"]),
]


@pytest.mark.parametrize(
    ("error", "key", "en", "zh"),
    CASES,
    ids=[f"{type(case[0]).__name__}-{case[1]}" for case in CASES],
)
def test_each_error_in_words_in_both_languages(
    error: UserError, key: str, en: list[str], zh: list[str]
) -> None:
    assert error.key == key
    english = describe(error, "en", moment=utc_time)
    chinese = describe(error, "zh", moment=utc_time)
    for fragment in en:
        assert fragment in english
    for fragment in zh:
        assert fragment in chinese
    assert english != chinese
    if isinstance(error, ds.DashScopeError) and len(error.message) > 6:  # kept out of public
        assert error.message not in english and error.message not in chinese


def _user_error_classes() -> set[type[UserError]]:
    for package in (bot, cogs):
        for module in pkgutil.walk_packages(package.__path__, f"{package.__name__}."):
            if not module.name.startswith("bot.simulator"):
                importlib.import_module(module.name)
    found: set[type[UserError]] = set()
    unvisited: list[type[UserError]] = [UserError]
    while unvisited:
        for sub in unvisited.pop().__subclasses__():
            found.add(sub)
            unvisited.append(sub)
    return found


def test_the_table_covers_every_error_a_member_can_see() -> None:
    covered = {type(error) for error, *_ in CASES}
    # The common bases are covered through their subclasses.
    assert _user_error_classes() - covered == {QuotaExceeded}


@pytest.mark.parametrize(
    "error", [ValueError("x"), RuntimeError(), KeyError("k"), KeyboardInterrupt(), Exception()]
)
def test_an_unexpected_error_has_no_words(error: BaseException) -> None:
    assert describe(error, "en", moment=utc_time) is None
    assert describe(error, "zh", moment=relative_timestamp) is None


def test_moments_are_formatted_by_the_callers_formatter() -> None:
    refusal = BudgetExceeded(budget=5.0, spent=5.0, renews_at=RENEWS)
    assert refusal.values["when"] == Moment(RENEWS)
    on_discord = describe(refusal, "en", moment=relative_timestamp)
    assert on_discord.endswith(f"The budget renews <t:{int(RENEWS)}:R>.")
    assert describe(refusal, "zh", moment=relative_timestamp).endswith(
        f"预算将于<t:{int(RENEWS)}:R>重置。"
    )
    assert describe(refusal, "en", moment=lambda at: f"@{at:.0f}").endswith(
        f"renews @{RENEWS:.0f}."
    )
    # Unknown frees-at: no moment to format, so the formatter is never asked.
    never = LimitReached("user_day", allowed=3, used=0, frees_at=None)
    assert describe(never, "en", moment=lambda at: pytest.fail("asked")).endswith("up ?.")


def test_utc_time() -> None:
    assert utc_time(0) == "1970-01-01 00:00 UTC"
    assert utc_time(FREES + 59.9) == "2026-01-15 09:30 UTC"


def test_a_moment_inside_a_problem_part_is_formatted_in_the_same_language() -> None:
    part = Problem("quota.cooldown", {"allowed": 5, "used": 1, "when": Moment(FREES)})
    problem = Problem("admin.bad_value", {"setting": "s", "value": "v", "expected": part})
    en = render(problem, "en", moment=relative_timestamp)
    zh = render(problem, "zh", moment=relative_timestamp)
    assert (
        f"expected Slow down a little: one job every 5 s. You can start the next one <t:{int(FREES)}:R>."
        in en
    )
    assert f"应为 请稍等：每 5 秒只能提交一个任务。<t:{int(FREES)}:R>后可以再提交。" in zh


# --- errors are data ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "code", "cls"),
    [
        (400, "InvalidParameter", ds.BadRequestError),
        (401, "InvalidApiKey", ds.AuthenticationError),
        (429, "Throttling.RateQuota", ds.RateLimitedError),
        (500, "InternalError", ds.ServerError),
        (400, "DataInspectionFailed", ds.ContentRejectedError),
    ],
)
def test_dashscope_errors_carry_their_data(status: int, code: str, cls: type) -> None:
    error = ds.error_from_response(
        status, code, "Input text may contain inappropriate content.", "req-9", task_id="t-9"
    )
    assert type(error) is cls
    assert (error.status, error.code, error.request_id, error.task_id) == (
        status,
        code,
        "req-9",
        "t-9",
    )
    assert error.message == "Input text may contain inappropriate content."
    assert error.values == {"detail": error.message, "code": code}
    assert error.problems == (Problem(error.key, {"detail": error.message, "code": code}),)
    # The log line is the operator's: code, status and ids, in English, no i18n.
    assert str(error) == (
        f"{code}: Input text may contain inappropriate content. "
        f"(HTTP {status}, request id req-9, task t-9)"
    )


def test_a_content_refusal_chooses_its_words_by_what_was_refused() -> None:
    text_refused = ds.error_from_response(400, "DataInspectionFailed", "Input text bad", "r")
    assert isinstance(text_refused, ds.ContentRejectedError)
    assert (text_refused.subject, text_refused.key) == ("input_text", "error.content.input_text")
    ip = ds.error_from_response(400, "IPInfringementSuspect", "Input data is suspected", "r")
    assert isinstance(ip, ds.ContentRejectedError) and ip.key == "error.content.ip"


def test_quota_refusals_carry_their_data() -> None:
    limit = LimitReached("user_day", allowed=5, used=4, frees_at=FREES)
    assert (limit.limit, limit.allowed, limit.used, limit.frees_at) == ("user_day", 5, 4, FREES)
    assert limit.values == {"allowed": 5, "used": 4, "when": Moment(FREES)}
    assert str(limit) == f"user_day: used 4 of 5; frees at {FREES}"
    budget = BudgetExceeded(budget=2.5, spent=2.25, renews_at=RENEWS)
    assert (budget.limit, budget.budget, budget.spent, budget.frees_at) == (
        "budget",
        2.5,
        2.25,
        RENEWS,
    )
    assert budget.values == {"allowed": 2.5, "used": 2.25, "when": Moment(RENEWS)}


def test_input_rejected_keeps_every_problem_and_logs_their_keys() -> None:
    problems = [Problem("invalid.prompt_empty"), Problem("invalid.seed", {"seed": 9})]
    error = InputRejected(problems)
    assert error.problems == tuple(problems)
    assert (error.key, error.values) == ("invalid.prompt_empty", {})
    assert str(error) == "invalid.prompt_empty; invalid.seed"
    with pytest.raises(ValueError, match="at least one problem"):
        InputRejected([])


def test_problems_kept_as_json_are_told_the_same_in_every_language() -> None:
    """A failure is stored as data and told later in each reader's language."""
    problems = (
        Problem("quota.user_day", {"used": 5, "allowed": 5, "when": Moment(FREES)}),
        Problem("image.fetch", {"index": 2, "detail": Problem("reply.error")}),
        Problem("error.download", {"detail": PurePosixPath("a/b.png")}),  # kept as its words
    )
    kept = problems_from_json(problems_to_json(problems))
    assert kept[:2] == problems[:2]
    assert kept[2] == Problem("error.download", {"detail": "a/b.png"})
    for lang in ("en", "zh"):
        assert render_all(kept, lang, moment=utc_time) == render_all(
            problems, lang, moment=utc_time
        )
