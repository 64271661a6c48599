"""The server policy: every setting's validation (with the exact refusal in English and Chinese),
role overrides (the most generous wins, 0 = unlimited, the shortest cooldown, exempt roles),
where each value comes from, resets falling back a level, the audit trail, and `apply_policy`
on a request (channels and threads, NSFW rule, models, defaults, max n, forced options)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.accounting.policy import (
    SERVER,
    SETTINGS,
    Effective,
    Place,
    Policy,
    PolicyStore,
    apply_policy,
    check_place,
    validate_value,
)
from bot.accounting.quota import Limits, limits_of, policy_defaults
from bot.dashscope.models import MODELS
from bot.dashscope.requests import ImageRequest
from bot.discord_ui.launcher import place_of
from bot.errors import InputRejected
from bot.presenter import describe, utc_time
from bot.storage.db import Conn, Database
from tests.backends import execute, fresh_database
from tests.engine_helpers import FakeClock

GUILD = 500
OTHER_GUILD = 501
ADMIN = 77
ROLE_A, ROLE_B, ROLE_C = 11, 12, 13
MODEL_LIST = ", ".join(MODELS)
DEFAULTS = Limits(
    images_per_user_day=25,
    concurrent_jobs_per_user=2,
    cooldown_seconds=5,
    images_per_guild_day=200,
    video_seconds_per_user_day=30,
    video_seconds_per_guild_day=300,
)


def refusal(error: pytest.ExceptionInfo[InputRejected]) -> tuple[str, str]:
    return describe(error.value, "en", moment=utc_time), describe(
        error.value, "zh", moment=utc_time
    )


# --- validation of every setting -------------------------------------------------------------

GOOD: list[tuple[str, str, str]] = [
    ("images_per_user_day", "0", "0"),
    ("images_per_user_day", " 40 ", "40"),
    ("images_per_user_day", "100000", "100000"),
    ("concurrent_jobs_per_user", "3", "3"),
    ("concurrent_jobs_per_user", "100", "100"),
    ("cooldown_seconds", "0", "0"),
    ("cooldown_seconds", "86400", "86400"),
    ("images_per_guild_day", "1000000", "1000000"),
    ("images_per_guild_day", "0", "0"),
    ("monthly_budget", "50", "50.00"),
    ("monthly_budget", "12.345", "12.35"),
    ("monthly_budget", "0", "0.00"),
    ("monthly_budget", "-0", "0.00"),
    ("monthly_budget", "1e3", "1000.00"),
    ("monthly_budget", "10000000", "10000000.00"),
    ("max_n", "1", "1"),
    ("max_n", "4", "4"),
    ("allowed_models", "wan2.6-t2i", "wan2.6-t2i"),
    ("allowed_models", "wan2.6-t2i, wan2.2-t2i-flash", "wan2.6-t2i,wan2.2-t2i-flash"),
    ("allowed_models", "wan2.6-t2i wan2.6-t2i,wan2.5-i2i-preview", "wan2.6-t2i,wan2.5-i2i-preview"),
    ("default_model", " wan2.2-t2i-flash ", "wan2.2-t2i-flash"),
    ("default_size", "1280*1280", "1280*1280"),
    ("default_size", "1024x1024", "1024*1024"),
    ("default_size", "1104 × 1472", "1104*1472"),
    ("prompt_extend", "member", "member"),
    ("prompt_extend", "ON", "on"),
    ("watermark", "off", "off"),
    ("watermark", "On", "on"),
    ("allowed_channels", "<#123>", "123"),
    ("allowed_channels", "<#123> <#456>,789", "123,456,789"),
    ("allowed_channels", "<#123>,<#123>", "123"),
    ("nsfw_channels", "any", "any"),
    ("nsfw_channels", "Only", "only"),
    ("nsfw_channels", "never", "never"),
    ("audit_channel", "<#999>", "999"),
    ("audit_channel", "999", "999"),
    ("exempt", "yes", "1"),
    ("exempt", "TRUE", "1"),
    ("exempt", "no", "0"),
    ("exempt", "off", "0"),
    ("allow_video", "no", "0"),
    ("allow_video", "Yes", "1"),
    ("video_seconds_per_user_day", "0", "0"),
    ("video_seconds_per_user_day", "60", "60"),
    ("video_seconds_per_guild_day", "600", "600"),
]

NUMBER = "a whole number from {} to {}"
NUMBER_ZH = "{} 到 {} 之间的整数"
UNLIMITED = " (0 = no limit)"
UNLIMITED_ZH = "（0 = 不限）"
MONEY = "an amount from 0 to 10000000 (0 = no budget)"
MONEY_ZH = "0 到 10000000 之间的金额（0 = 不设预算）"
MODELS_EN = f"model names from: {MODEL_LIST}"
MODELS_ZH = f"{MODEL_LIST} 中的一个或多个模型名称"
MODEL_EN = f"one model name from: {MODEL_LIST}"
MODEL_ZH = f"{MODEL_LIST} 中的一个模型名称"
CHANNELS = ("channel mentions or ids, e.g. #art", "频道提及或频道 ID，例如 #art")
CHANNEL = ("one channel mention or id, e.g. #art", "一个频道提及或频道 ID，例如 #art")
SIZE = ("WIDTH*HEIGHT, e.g. 1280*1280", "宽*高，例如 1280*1280")
SIZE_FIT = (
    "a size some text-to-image model accepts, e.g. 1280*1280",
    "某个文生图模型支持的尺寸，例如 1280*1280",
)
MEMBER_ON_OFF = ("one of member | on | off", "member | on | off 之一")

# (setting, raw value, what is expected in English, in Chinese)
BAD: list[tuple[str, str, str, str]] = [
    (
        "images_per_user_day",
        "lots",
        NUMBER.format(0, 100000) + UNLIMITED,
        NUMBER_ZH.format(0, 100000) + UNLIMITED_ZH,
    ),
    (
        "images_per_user_day",
        "-1",
        NUMBER.format(0, 100000) + UNLIMITED,
        NUMBER_ZH.format(0, 100000) + UNLIMITED_ZH,
    ),
    (
        "images_per_user_day",
        "2.5",
        NUMBER.format(0, 100000) + UNLIMITED,
        NUMBER_ZH.format(0, 100000) + UNLIMITED_ZH,
    ),
    (
        "images_per_user_day",
        "100001",
        NUMBER.format(0, 100000) + UNLIMITED,
        NUMBER_ZH.format(0, 100000) + UNLIMITED_ZH,
    ),
    (
        "concurrent_jobs_per_user",
        "101",
        NUMBER.format(0, 100) + UNLIMITED,
        NUMBER_ZH.format(0, 100) + UNLIMITED_ZH,
    ),
    ("cooldown_seconds", "86401", NUMBER.format(0, 86400), NUMBER_ZH.format(0, 86400)),
    ("cooldown_seconds", "5s", NUMBER.format(0, 86400), NUMBER_ZH.format(0, 86400)),
    ("images_per_guild_day", "1000001", NUMBER.format(0, 1000000), NUMBER_ZH.format(0, 1000000)),
    (
        "video_seconds_per_user_day",
        "5s",
        NUMBER.format(0, 100000) + UNLIMITED,
        NUMBER_ZH.format(0, 100000) + UNLIMITED_ZH,
    ),
    ("video_seconds_per_guild_day", "-1", NUMBER.format(0, 1000000), NUMBER_ZH.format(0, 1000000)),
    ("monthly_budget", "-5", MONEY, MONEY_ZH),
    ("monthly_budget", "nan", MONEY, MONEY_ZH),
    ("monthly_budget", "inf", MONEY, MONEY_ZH),
    ("monthly_budget", "¥50", MONEY, MONEY_ZH),
    ("monthly_budget", "10000000.01", MONEY, MONEY_ZH),
    ("max_n", "0", NUMBER.format(1, 4), NUMBER_ZH.format(1, 4)),
    ("max_n", "5", NUMBER.format(1, 4), NUMBER_ZH.format(1, 4)),
    ("allowed_models", "dall-e-3", MODELS_EN, MODELS_ZH),
    ("allowed_models", "wan2.6-t2i,nope", MODELS_EN, MODELS_ZH),
    ("allowed_models", " , ", MODELS_EN, MODELS_ZH),
    ("default_model", "wan2.6-t2i,wan2.2-t2i-flash", MODEL_EN, MODEL_ZH),
    ("default_model", "WAN2.6-T2I", MODEL_EN, MODEL_ZH),
    ("default_size", "big", *SIZE),
    ("default_size", "1280", *SIZE),
    ("default_size", "100*100", *SIZE_FIT),
    ("default_size", "5000*500", *SIZE_FIT),
    ("prompt_extend", "yes", *MEMBER_ON_OFF),
    ("watermark", "always", *MEMBER_ON_OFF),
    ("allowed_channels", "#art", *CHANNELS),
    ("allowed_channels", "<@&123>", *CHANNELS),
    ("allowed_channels", ",", *CHANNELS),
    ("nsfw_channels", "sometimes", "one of any | only | never", "any | only | never 之一"),
    ("audit_channel", "<#1> <#2>", *CHANNEL),
    ("audit_channel", "general", *CHANNEL),
    ("exempt", "maybe", "yes or no", "yes 或 no"),
    ("allow_video", "sometimes", "yes or no", "yes 或 no"),
]


def test_the_tables_cover_every_setting() -> None:
    assert {name for name, _, _ in GOOD} == set(SETTINGS)
    assert {name for name, *_ in BAD} == set(SETTINGS)


@pytest.mark.parametrize(("setting", "raw", "stored"), GOOD)
def test_good_values_are_stored_in_canonical_form(setting: str, raw: str, stored: str) -> None:
    assert validate_value(SETTINGS[setting], raw) == stored
    # The canonical form is itself valid and stable.
    assert validate_value(SETTINGS[setting], stored) == stored


@pytest.mark.parametrize(("setting", "raw", "expected", "expected_zh"), BAD)
async def test_bad_values_are_refused_saying_what_is_expected(
    store: PolicyStore, setting: str, raw: str, expected: str, expected_zh: str
) -> None:
    with pytest.raises(InputRejected) as caught:
        await store.set(
            GUILD, setting, raw, by_user=ADMIN, role_id=ROLE_A if setting == "exempt" else SERVER
        )
    assert refusal(caught) == (
        f"`{raw}` is not a valid value for {setting}: expected {expected}.",
        f"`{raw}` 不是 {setting} 的有效值：应为 {expected_zh}。",
    )
    assert await store.overrides(GUILD) == []
    assert await store.audit(GUILD) == []


async def test_unknown_settings_and_wrong_scopes_are_refused(store: PolicyStore) -> None:
    names = ", ".join(SETTINGS)
    with pytest.raises(InputRejected) as caught:
        await store.set(GUILD, "images_per_year", "5", by_user=ADMIN)
    assert refusal(caught) == (
        f"There is no setting `images_per_year`. Settings: {names}.",
        f"没有名为 `images_per_year` 的设置。可用设置：{names}。",
    )
    with pytest.raises(InputRejected) as caught:
        await store.reset(GUILD, "images_per_year", by_user=ADMIN)
    assert refusal(caught)[0].startswith("There is no setting `images_per_year`.")

    server_only = [name for name, spec in SETTINGS.items() if not spec.role]
    assert server_only == [
        "images_per_guild_day",
        "monthly_budget",
        "allowed_models",
        "default_model",
        "default_size",
        "prompt_extend",
        "watermark",
        "allowed_channels",
        "nsfw_channels",
        "audit_channel",
        "video_seconds_per_guild_day",
    ]
    for name in server_only:
        with pytest.raises(InputRejected) as caught:
            await store.set(GUILD, name, "1", by_user=ADMIN, role_id=ROLE_A)
        assert refusal(caught) == (
            f"{name} applies to the whole server; it can't be set for a role.",
            f"{name} 作用于整个服务器，不能按身份组设置。",
        )
    # Exempt is for a role only: server-wide it would silently lift every member's limits.
    with pytest.raises(InputRejected) as caught:
        await store.set(GUILD, "exempt", "yes", by_user=ADMIN)
    assert refusal(caught) == (
        "exempt is set for a role only: choose the role.",
        "exempt 只能按身份组设置，请选择身份组。",
    )
    assert await store.overrides(GUILD) == []
    assert await store.audit(GUILD) == []


def test_unknown_defaults_are_a_programming_error() -> None:
    with pytest.raises(ValueError, match="unknown settings"):
        PolicyStore(None, {"images_per_year": "3"})  # type: ignore[arg-type]


# --- the store: sources, role precedence, reset, audit --------------------------------------


@pytest.fixture
async def db(backend: str, tmp_path: Path) -> AsyncIterator[Database]:
    async with fresh_database(backend, tmp_path) as database:
        yield database


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(1_750_000_000.0)


@pytest.fixture
def store(db: Database, clock: FakeClock) -> PolicyStore:
    return PolicyStore(db, policy_defaults(DEFAULTS), clock)


async def effective(store: PolicyStore, *roles: int, guild: int | None = GUILD) -> Policy:
    return await store.for_member(guild, roles)


async def test_defaults_then_server_then_role_with_their_sources(store: PolicyStore) -> None:
    policy = await effective(store)
    assert {name: e.source for name, e in policy.values.items()} == dict.fromkeys(
        SETTINGS, "default"
    )
    assert policy.values["images_per_user_day"] == Effective("25", "default")
    assert policy.values["monthly_budget"] == Effective("0", "default")
    assert policy.values["nsfw_channels"] == Effective("any", "default")
    assert policy.values["allowed_channels"] == Effective("", "default")
    assert not policy.exempt

    await store.set(GUILD, "images_per_user_day", "40", by_user=ADMIN)
    await store.set(GUILD, "images_per_user_day", "5", by_user=ADMIN, role_id=ROLE_A)
    await store.set(GUILD, "monthly_budget", "30", by_user=ADMIN)

    plain = await effective(store)
    assert plain.values["images_per_user_day"] == Effective("40", "server")
    assert plain.values["monthly_budget"] == Effective("30.00", "server")
    assert plain.values["cooldown_seconds"] == Effective("5", "default")
    # A role's own number applies to its members, even a stricter one (a "newcomers" role).
    member = await effective(store, ROLE_A)
    assert member.values["images_per_user_day"] == Effective("5", f"role:{ROLE_A}")
    # A role that sets nothing leaves the server's value; unknown roles change nothing.
    assert (await effective(store, ROLE_B, 999)).values["images_per_user_day"] == Effective(
        "40", "server"
    )
    # Other servers and DMs keep the defaults.
    assert (await effective(store, ROLE_A, guild=OTHER_GUILD)).values[
        "images_per_user_day"
    ] == Effective("25", "default")
    assert (await effective(store, ROLE_A, guild=None)).values["images_per_user_day"] == Effective(
        "25", "default"
    )
    assert [(r["role_id"], r["setting"], r["value"]) for r in await store.overrides(GUILD)] == [
        (SERVER, "images_per_user_day", "40"),
        (ROLE_A, "images_per_user_day", "5"),
        (SERVER, "monthly_budget", "30.00"),
    ]


@pytest.mark.parametrize(
    ("setting", "values", "winner"),
    [
        ("images_per_user_day", {ROLE_A: "10", ROLE_B: "50", ROLE_C: "30"}, ROLE_B),
        ("images_per_user_day", {ROLE_A: "10", ROLE_B: "0", ROLE_C: "99999"}, ROLE_B),
        ("concurrent_jobs_per_user", {ROLE_A: "0", ROLE_B: "5"}, ROLE_A),
        ("concurrent_jobs_per_user", {ROLE_A: "1", ROLE_B: "3"}, ROLE_B),
        ("cooldown_seconds", {ROLE_A: "30", ROLE_B: "5", ROLE_C: "60"}, ROLE_B),
        ("cooldown_seconds", {ROLE_A: "30", ROLE_B: "0"}, ROLE_B),
        ("max_n", {ROLE_A: "2", ROLE_B: "4", ROLE_C: "1"}, ROLE_B),
        ("exempt", {ROLE_A: "no", ROLE_B: "yes"}, ROLE_B),
    ],
)
async def test_with_several_roles_the_most_generous_value_wins(
    store: PolicyStore, setting: str, values: dict[int, str], winner: int
) -> None:
    await store.set(GUILD, "images_per_user_day", "7", by_user=ADMIN)
    await store.set(GUILD, "cooldown_seconds", "600", by_user=ADMIN)
    for role, value in values.items():
        await store.set(GUILD, setting, value, by_user=ADMIN, role_id=role)
    expected = validate_value(SETTINGS[setting], values[winner])
    for order in (list(values), list(reversed(values))):  # insertion order does not matter
        policy = await effective(store, *order)
        assert policy.values[setting] == Effective(expected, f"role:{winner}")
    # Each role alone gives its own value.
    for role, value in values.items():
        alone = (await effective(store, role)).values[setting]
        assert alone == Effective(validate_value(SETTINGS[setting], value), f"role:{role}")


async def test_an_exempt_role_lifts_the_per_member_limits_only(store: PolicyStore) -> None:
    await store.set(GUILD, "images_per_user_day", "3", by_user=ADMIN)
    await store.set(GUILD, "images_per_guild_day", "50", by_user=ADMIN)
    await store.set(GUILD, "cooldown_seconds", "60", by_user=ADMIN)
    await store.set(GUILD, "monthly_budget", "10", by_user=ADMIN)
    await store.set(GUILD, "exempt", "yes", by_user=ADMIN, role_id=ROLE_A)
    await store.set(GUILD, "exempt", "no", by_user=ADMIN, role_id=ROLE_B)

    staff = await effective(store, ROLE_A)
    assert staff.exempt
    assert limits_of(staff) == Limits(0, 0, 0, 50, 0, 300)  # the server's caps still hold
    assert staff.money("monthly_budget") == 10.0  # and so does the budget
    both = await effective(store, ROLE_B, ROLE_A)
    assert both.exempt and both.values["exempt"].source == f"role:{ROLE_A}"
    other = await effective(store, ROLE_B)
    assert not other.exempt
    assert limits_of(other) == Limits(3, 2, 60, 50, 30, 300)


async def test_role_rows_of_server_only_settings_are_ignored(
    store: PolicyStore, db: Database
) -> None:
    """Written by hand (or by an older version): a role cannot loosen a server-wide setting."""
    await execute(
        db,
        "INSERT INTO limit_settings (guild_id, role_id, setting, value, updated_at)"
        " VALUES (?, ?, 'images_per_guild_day', '0', 0), (?, ?, 'retired_setting', '1', 0)",
        (GUILD, ROLE_A, GUILD, SERVER),
    )
    policy = await effective(store, ROLE_A)
    assert policy.values["images_per_guild_day"] == Effective("200", "default")
    assert "retired_setting" not in policy.values


async def test_reset_falls_back_one_level_at_a_time(store: PolicyStore) -> None:
    await store.set(GUILD, "cooldown_seconds", "30", by_user=ADMIN)
    await store.set(GUILD, "cooldown_seconds", "2", by_user=ADMIN, role_id=ROLE_A)
    assert (await effective(store, ROLE_A)).values["cooldown_seconds"] == Effective(
        "2", f"role:{ROLE_A}"
    )
    assert await store.reset(GUILD, "cooldown_seconds", by_user=ADMIN, role_id=ROLE_A) == "2"
    assert (await effective(store, ROLE_A)).values["cooldown_seconds"] == Effective("30", "server")
    assert await store.reset(GUILD, "cooldown_seconds", by_user=ADMIN) == "30"
    assert (await effective(store, ROLE_A)).values["cooldown_seconds"] == Effective("5", "default")
    # Resetting what is not set changes nothing and writes no audit row.
    before = len(await store.audit(GUILD))
    assert await store.reset(GUILD, "cooldown_seconds", by_user=ADMIN) is None
    assert await store.reset(GUILD, "cooldown_seconds", by_user=ADMIN, role_id=ROLE_B) is None
    assert len(await store.audit(GUILD)) == before
    # A role reset leaves the server value, and the server reset leaves role values.
    await store.set(GUILD, "max_n", "2", by_user=ADMIN)
    await store.set(GUILD, "max_n", "4", by_user=ADMIN, role_id=ROLE_A)
    await store.reset(GUILD, "max_n", by_user=ADMIN)
    assert (await effective(store, ROLE_A)).values["max_n"] == Effective("4", f"role:{ROLE_A}")
    assert (await effective(store)).values["max_n"] == Effective("4", "default")


async def test_every_change_is_audited_with_old_and_new_values(
    store: PolicyStore, clock: FakeClock
) -> None:
    start = clock.now
    assert await store.set(GUILD, "images_per_user_day", "10", by_user=ADMIN) == (None, "10")
    clock.advance(60)
    assert await store.set(GUILD, "images_per_user_day", " 20", by_user=ADMIN + 1) == (
        "10",
        "20",
    )
    clock.advance(60)
    assert await store.set(GUILD, "exempt", "yes", by_user=ADMIN, role_id=ROLE_A) == (None, "1")
    clock.advance(60)
    # Setting the same value again is still a change someone made: it is recorded.
    assert await store.set(GUILD, "exempt", "on", by_user=ADMIN, role_id=ROLE_A) == ("1", "1")
    clock.advance(60)
    await store.reset(GUILD, "images_per_user_day", by_user=ADMIN + 2)
    await store.set(OTHER_GUILD, "max_n", "2", by_user=ADMIN)

    rows = await store.audit(GUILD)
    assert [
        (r["user_id"], r["role_id"], r["setting"], r["old_value"], r["new_value"], r["created_at"])
        for r in rows
    ] == [  # newest first
        (ADMIN + 2, SERVER, "images_per_user_day", "20", None, start + 240),
        (ADMIN, ROLE_A, "exempt", "1", "1", start + 180),
        (ADMIN, ROLE_A, "exempt", None, "1", start + 120),
        (ADMIN + 1, SERVER, "images_per_user_day", "10", "20", start + 60),
        (ADMIN, SERVER, "images_per_user_day", None, "10", start),
    ]
    assert len(await store.audit(GUILD, limit=2)) == 2
    assert [r["setting"] for r in await store.audit(OTHER_GUILD)] == ["max_n"]


@settings(max_examples=40, deadline=None)
@given(
    setting=st.sampled_from(
        ["images_per_user_day", "concurrent_jobs_per_user", "cooldown_seconds", "max_n"]
    ),
    server=st.none() | st.integers(0, 60),
    roles=st.dictionaries(st.sampled_from([ROLE_A, ROLE_B, ROLE_C]), st.integers(0, 60)),
    held=st.sets(st.sampled_from([ROLE_A, ROLE_B, ROLE_C, 99])),
)
def test_role_precedence_property(
    setting: str, server: int | None, roles: dict[int, int], held: set[int]
) -> None:
    """Whatever the roles set, a member gets the most generous value among the roles they hold
    (0 = unlimited counts as the most for limits; the smallest cooldown), else the server's."""
    spec = SETTINGS[setting]
    if setting == "max_n":
        server = None if server is None else 1 + server % 4
        roles = {role: 1 + value % 4 for role, value in roles.items()}

    async def run() -> Effective:
        db = await Database.open(":memory:")
        try:
            store = PolicyStore(db, policy_defaults(DEFAULTS))
            if server is not None:
                await store.set(GUILD, setting, str(server), by_user=ADMIN)
            for role, value in roles.items():
                await store.set(GUILD, setting, str(value), by_user=ADMIN, role_id=role)
            return (await store.for_member(GUILD, held)).values[setting]
        finally:
            await db.close()

    got = asyncio.run(run())
    mine = {role: value for role, value in roles.items() if role in held}
    if not mine:
        fallback = server if server is not None else policy_defaults(DEFAULTS)[setting]
        assert got == Effective(str(fallback), "server" if server is not None else "default")
        return

    def generosity(value: int) -> float:
        if spec.order == "less":
            return -value
        if spec.order == "zero-max" and value == 0:
            return float("inf")
        return value

    best = max(generosity(v) for v in mine.values())
    assert generosity(int(got.value)) == best
    role = int(got.source.removeprefix("role:"))
    assert role in mine and generosity(mine[role]) == best


# --- apply_policy --------------------------------------------------------------------------


def policy(**values: str) -> Policy:
    """The defaults with these server values."""
    policy = Policy(
        {name: Effective(value, "default") for name, value in policy_defaults(DEFAULTS).items()}
    )
    for name, value in values.items():
        policy.values[name] = Effective(validate_value(SETTINGS[name], value), "server")
    return policy


def request(model: str = "wan2.6-t2i", **fields: Any) -> ImageRequest:
    return ImageRequest(model=model, prompt="a heron at dawn", **fields)


GENERAL = Place(100)


def test_no_settings_change_nothing() -> None:
    original = request(n=4, prompt_extend=False)
    assert apply_policy(policy(), original, GENERAL, model_chosen=False, size_chosen=False) is (
        original
    )
    assert apply_policy(policy(), original, Place(None)) is original  # a DM


def test_channel_allow_list_with_threads_following_their_channel() -> None:
    rules = policy(allowed_channels="<#100>, <#300>")
    assert apply_policy(rules, request(), Place(100)) == request()
    assert apply_policy(rules, request(), Place(300)) == request()
    assert apply_policy(rules, request(), Place(555, parent_id=100)) == request()  # a thread
    for place in (Place(200), Place(556, parent_id=200), Place(None)):
        with pytest.raises(InputRejected) as caught:
            apply_policy(rules, request(), place)
        assert refusal(caught) == (
            "Images can't be made in this channel here. Use one of: <#100>, <#300>.",
            "本服务器不允许在此频道生成图片。请使用：<#100>, <#300>。",
        )


def test_place_of_a_thread_is_its_parent_and_the_parents_nsfw_flag() -> None:
    parent = SimpleNamespace(id=100, nsfw=True)
    thread = SimpleNamespace(id=555, parent_id=100, parent=parent)
    assert place_of(thread) == Place(555, 100, True)
    assert place_of(SimpleNamespace(id=100, nsfw=False)) == Place(100, None, False)
    assert place_of(SimpleNamespace(id=7)) == Place(7, None, False)  # a DM channel


@pytest.mark.parametrize(
    ("rule", "nsfw", "refused"),
    [
        ("any", False, None),
        ("any", True, None),
        ("only", True, None),
        (
            "only",
            False,
            (
                "This server allows image generation only in age-restricted (NSFW) channels.",
                "本服务器只允许在年龄限制（NSFW）频道中生成图片。",
            ),
        ),
        ("never", False, None),
        (
            "never",
            True,
            (
                "This server does not allow image generation in age-restricted (NSFW) channels.",
                "本服务器不允许在年龄限制（NSFW）频道中生成图片。",
            ),
        ),
    ],
)
def test_nsfw_channel_rule(rule: str, nsfw: bool, refused: tuple[str, str] | None) -> None:
    rules = policy(nsfw_channels=rule)
    for place in (Place(100, nsfw=nsfw), Place(555, parent_id=100, nsfw=nsfw)):
        if refused is None:
            assert apply_policy(rules, request(), place) == request()
            continue
        with pytest.raises(InputRejected) as caught:
            apply_policy(rules, request(), place)
        assert refusal(caught) == refused


@pytest.mark.parametrize(
    ("values", "place", "made", "shown"),
    [
        ({}, Place(200, nsfw=True), None, None),
        (
            {"allowed_channels": "<#100>"},
            Place(200),
            "Images can't be made in this channel here. Use one of: <#100>.",
            "Images can't be shown in this channel here. Show them in one of: <#100>.",
        ),
        (
            {"nsfw_channels": "only"},
            Place(555, parent_id=100),
            "This server allows image generation only in age-restricted (NSFW) channels.",
            "This server shows images only in age-restricted (NSFW) channels."
            " Use /show in one of those.",
        ),
        (
            {"nsfw_channels": "never"},
            Place(100, nsfw=True),
            "This server does not allow image generation in age-restricted (NSFW) channels.",
            "This server does not show images in age-restricted (NSFW) channels."
            " Use /show in another channel.",
        ),
    ],
)
def test_one_place_rule_for_making_and_for_showing(
    values: dict[str, str], place: Place, made: str | None, shown: str | None
) -> None:
    """`check_place` is the rule `apply_policy` applies; showing again refuses the same places
    in words about showing."""
    rules = policy(**values)
    for showing, expected in ((False, made), (True, shown)):
        if expected is None:
            check_place(rules, place, showing=showing)
            continue
        with pytest.raises(InputRejected) as caught:
            check_place(rules, place, showing=showing)
        assert refusal(caught)[0] == expected
    if made is not None:
        with pytest.raises(InputRejected) as caught:
            apply_policy(rules, request(), place)
        assert refusal(caught)[0] == made


def test_allowed_models() -> None:
    rules = policy(allowed_models="wan2.2-t2i-flash,wan2.5-i2i-preview")
    assert apply_policy(rules, request("wan2.2-t2i-flash"), GENERAL).model == "wan2.2-t2i-flash"
    with pytest.raises(InputRejected) as caught:
        apply_policy(rules, request("wan2.6-t2i"), GENERAL)
    assert refusal(caught) == (
        "This server does not allow `wan2.6-t2i`. Allowed: wan2.2-t2i-flash, wan2.5-i2i-preview.",
        "本服务器不允许使用 `wan2.6-t2i`。允许的模型：wan2.2-t2i-flash, wan2.5-i2i-preview。",
    )
    # The server's default model stands in for the built-in one when the member picked none.
    rules = policy(allowed_models="wan2.2-t2i-flash", default_model="wan2.2-t2i-flash")
    got = apply_policy(rules, request("wan2.6-t2i"), GENERAL, model_chosen=False)
    assert got.model == "wan2.2-t2i-flash"


def test_default_model_only_when_none_was_chosen_and_of_the_right_kind() -> None:
    rules = policy(default_model="wan2.2-t2i-flash")
    assert apply_policy(rules, request(), GENERAL, model_chosen=False).model == "wan2.2-t2i-flash"
    assert apply_policy(rules, request(), GENERAL, model_chosen=True).model == "wan2.6-t2i"
    # An edit model as the default never replaces a text-to-image one, nor the reverse.
    edit_default = policy(default_model="wan2.5-i2i-preview")
    assert apply_policy(edit_default, request(), GENERAL, model_chosen=False).model == (
        "wan2.6-t2i"
    )
    edit = request("wan2.5-i2i-preview", images=("data:image/png;base64,AAAA",))
    assert apply_policy(rules, edit, GENERAL, model_chosen=False).model == "wan2.5-i2i-preview"


def test_default_size_only_when_none_was_chosen_and_the_model_takes_it() -> None:
    legacy_size = policy(default_size="1024x1024")  # 512-1440 per side: legacy models only
    flash = request("wan2.2-t2i-flash")
    assert apply_policy(legacy_size, flash, GENERAL, size_chosen=False).size == "1024*1024"
    assert apply_policy(legacy_size, flash, GENERAL, size_chosen=True).size is None
    chosen = replace(flash, size="720*1280")
    assert apply_policy(legacy_size, chosen, GENERAL, size_chosen=True).size == "720*1280"
    # wan2.6 needs at least 1280*1280 pixels: its own default stays.
    assert apply_policy(legacy_size, request(), GENERAL, size_chosen=False).size is None
    # With the server's default model too, the size is checked against that model.
    both = policy(default_size="1024*1024", default_model="wan2.2-t2i-flash")
    got = apply_policy(both, request(), GENERAL, model_chosen=False, size_chosen=False)
    assert (got.model, got.size) == ("wan2.2-t2i-flash", "1024*1024")


def test_max_n() -> None:
    rules = policy(max_n="2")
    assert apply_policy(rules, request(n=2), GENERAL).n == 2
    with pytest.raises(InputRejected) as caught:
        apply_policy(rules, request(n=3), GENERAL)
    assert refusal(caught) == (
        "You can make at most 2 image(s) at a time here.",
        "在本服务器每次最多生成 2 张图片。",
    )
    # Past the model's own range, validation's own message is the better one.
    assert apply_policy(rules, request(n=9), GENERAL).n == 9


@pytest.mark.parametrize("option", ["prompt_extend", "watermark"])
def test_forced_options(option: str) -> None:
    for member_choice in (None, True, False):
        original = request(**{option: member_choice})
        on = apply_policy(policy(**{option: "on"}), original, GENERAL)
        off = apply_policy(policy(**{option: "off"}), original, GENERAL)
        free = apply_policy(policy(**{option: "member"}), original, GENERAL)
        assert (getattr(on, option), getattr(off, option)) == (True, False)
        assert getattr(free, option) is member_choice


def test_an_allow_list_without_a_default_picks_the_first_allowed_model_of_the_kind():
    from bot.accounting.policy import Effective, Place, Policy, apply_policy
    from bot.accounting.quota import DEFAULT_LIMITS, policy_defaults
    from bot.dashscope.requests import ImageRequest

    values = {k: Effective(v, "default") for k, v in policy_defaults(DEFAULT_LIMITS).items()}
    values["allowed_models"] = Effective("wan2.5-i2i-preview,wan2.2-t2i-flash", "server")
    policy = Policy(values)
    request = ImageRequest(model="wan2.6-t2i", prompt="a cat")
    chosen = apply_policy(policy, request, Place(1), model_chosen=False)
    assert chosen.model == "wan2.2-t2i-flash"
    edit = ImageRequest(model="wan2.5-i2i-preview", prompt="bluer", images=("data:x",))
    assert apply_policy(policy, edit, Place(1), model_chosen=False).model == "wan2.5-i2i-preview"
    # A member who picked a model that is not allowed is told so.
    with pytest.raises(InputRejected):
        apply_policy(policy, request, Place(1), model_chosen=True)


# --- the resolved-policy cache -----------------------------------------------------------------


async def test_a_cached_policy_follows_changes_made_outside_the_admin_commands(
    store: PolicyStore, db: Database
) -> None:
    """Policies are reused while the server's settings version holds; triggers bump it on any
    change to limit_settings, so rows written, changed or deleted by hand (a script, the sqlite3
    shell) are seen at the next request, not after a restart."""
    await store.set(GUILD, "cooldown_seconds", "30", by_user=ADMIN)
    assert (await effective(store, ROLE_A)).values["cooldown_seconds"] == Effective("30", "server")
    assert await effective(store, ROLE_A) is await effective(store, ROLE_A)  # reused

    async def by_hand(sql: str, *params: object) -> None:
        await execute(db, sql, params)

    await by_hand(
        "INSERT INTO limit_settings (guild_id, role_id, setting, value, updated_at)"
        " VALUES (?, ?, 'cooldown_seconds', '3', 0)",
        GUILD,
        ROLE_A,
    )
    assert (await effective(store, ROLE_A)).values["cooldown_seconds"] == Effective(
        "3", f"role:{ROLE_A}"
    )
    await by_hand("UPDATE limit_settings SET value = '4' WHERE role_id = ?", ROLE_A)
    assert (await effective(store, ROLE_A)).values["cooldown_seconds"].value == "4"
    await by_hand("UPDATE limit_settings SET guild_id = ? WHERE role_id = ?", GUILD + 1, ROLE_A)
    assert (await effective(store, ROLE_A)).values["cooldown_seconds"].value == "30"
    other = await effective(store, ROLE_A, guild=GUILD + 1)
    assert other.values["cooldown_seconds"].value == "4"
    await by_hand("DELETE FROM limit_settings")
    assert (await effective(store, ROLE_A)).values["cooldown_seconds"] == Effective("5", "default")
    other = await effective(store, ROLE_A, guild=GUILD + 1)
    assert other.values["cooldown_seconds"].value == "5"


async def test_members_share_a_policy_only_when_their_relevant_roles_match(
    store: PolicyStore,
) -> None:
    """Roles without rows in the server do not split the cache, and do not change the answer;
    roles with rows do."""
    await store.set(GUILD, "max_n", "2", by_user=ADMIN)
    await store.set(GUILD, "max_n", "4", by_user=ADMIN, role_id=ROLE_A)
    plain = await effective(store)
    assert await effective(store, 999, 998) is plain
    with_a = await effective(store, ROLE_A, 999)
    assert with_a is await effective(store, ROLE_A)
    assert (plain.values["max_n"].value, with_a.values["max_n"].value) == ("2", "4")
    assert (await effective(store, ROLE_B)).values["max_n"].value == "2"


def change_then_fail(conn: Conn, store: PolicyStore) -> None:
    conn.execute("UPDATE limit_settings SET value = '4' WHERE setting = 'max_n'")
    assert store.effective(conn, GUILD).values["max_n"].value == "4"
    raise RuntimeError("undo")


async def test_a_policy_read_inside_a_rolled_back_change_is_never_reused(
    store: PolicyStore, db: Database
) -> None:
    """The version a rolled-back change gave the server is not given again by the next change,
    so what was read inside that transaction cannot pass for current afterwards."""
    await store.set(GUILD, "max_n", "3", by_user=ADMIN)
    with pytest.raises(RuntimeError):
        await db.write(change_then_fail, store)
    await store.set(GUILD, "max_n", "1", by_user=ADMIN)
    assert (await effective(store)).values["max_n"].value == "1"
