"""Settings: defaults, one-line start-up errors naming the variable, and secrets that never show.

Every test runs in an empty temporary directory (so no stray `.env` is read) with every wanbot
variable removed from the environment.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.accounting.quota import DEFAULT_LIMITS, Limits
from bot.config import (
    BEIJING_BASE_URL,
    MAX_SHARDS,
    ConfigError,
    Settings,
    ValueRefused,
    load_settings,
    parse_shard_ids,
)
from bot.dispatch.engine import EngineConfig
from bot.runtime.services import engine_config_from, limits_from

TOKEN = "MTIzNDU2Nzg5MDEyMzQ1Njc4.GhIjKl.discord-token-value-xyz"
KEY = "sk-0123456789abcdef0123456789abcdef"
SINGAPORE_BASE_URL = "https://dashscope-intl.aliyuncs.com/api/v1"
FIELDS = {name.upper() for name in Settings.model_fields}


@pytest.fixture(autouse=True)
def clean_env(monkeypatch, tmp_path):
    for name in list(os.environ):
        if name.upper() in FIELDS:
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def config_error(monkeypatch, **env: str) -> str:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("invalid configuration: ")
    return message


def test_defaults():
    settings = load_settings()
    assert settings.dashscope_base_url == "https://dashscope.aliyuncs.com/api/v1"
    assert settings.dashscope_base_url == BEIJING_BASE_URL
    assert settings.database_path == Path("./data/wanbot.db")
    assert settings.log_level == "INFO"
    assert settings.log_level_number == logging.INFO
    assert settings.discord_token is None
    assert settings.dashscope_api_key is None
    assert settings.dashscope_workspace is None
    assert settings.simulated is True
    assert settings.simulator_speed == 10.0
    assert settings.download_max_bytes == 30 * 1024 * 1024
    # One process, every shard Discord recommends.
    assert settings.shard_count is None
    assert settings.shard_ids is None


def test_default_limits_are_read_from_the_layers_that_use_them():
    settings = load_settings()
    # The figures of the README's table, declared once with the server settings and the engine.
    assert limits_from(settings) == DEFAULT_LIMITS == Limits(25, 2, 5, 200, 30, 300)
    assert engine_config_from(settings) == EngineConfig()
    assert (settings.max_in_flight, settings.submit_rate, settings.task_query_rate) == (5, 5, 10)


def test_values_from_the_environment(monkeypatch):
    monkeypatch.setenv("DISCORD_TOKEN", TOKEN)
    monkeypatch.setenv("DASHSCOPE_API_KEY", KEY)
    monkeypatch.setenv("DASHSCOPE_BASE_URL", SINGAPORE_BASE_URL + "/")
    monkeypatch.setenv("DASHSCOPE_WORKSPACE", "ws-123")
    monkeypatch.setenv("DATABASE_PATH", "db/bot.sqlite")
    monkeypatch.setenv("log_level", "debug")  # names and levels are case-insensitive
    monkeypatch.setenv("SIMULATOR_SPEED", "2.5")
    monkeypatch.setenv("DOWNLOAD_MAX_BYTES", str(1024 * 1024))
    settings = load_settings()
    assert settings.discord_token is not None
    assert settings.discord_token.get_secret_value() == TOKEN
    assert settings.dashscope_api_key is not None
    assert settings.dashscope_api_key.get_secret_value() == KEY
    assert settings.simulated is False
    assert settings.dashscope_base_url == SINGAPORE_BASE_URL  # trailing slash dropped
    assert settings.dashscope_workspace == "ws-123"
    assert settings.database_path == Path("db/bot.sqlite")
    assert settings.log_level == "DEBUG"
    assert settings.log_level_number == logging.DEBUG
    assert settings.simulator_speed == 2.5
    assert settings.download_max_bytes == 1024 * 1024


@pytest.mark.parametrize("blank", ["", "   ", "\t\n"])
def test_blank_secrets_are_unset(monkeypatch, blank):
    monkeypatch.setenv("DASHSCOPE_API_KEY", blank)
    monkeypatch.setenv("DISCORD_TOKEN", blank)
    monkeypatch.setenv("DASHSCOPE_WORKSPACE", blank)
    settings = load_settings()
    assert settings.dashscope_api_key is None
    assert settings.discord_token is None
    assert settings.dashscope_workspace is None
    assert settings.simulated is True


def test_surrounding_whitespace_is_trimmed_from_the_key(monkeypatch):
    monkeypatch.setenv("DASHSCOPE_API_KEY", f"  {KEY}\n")
    settings = load_settings()
    assert settings.dashscope_api_key is not None
    assert settings.dashscope_api_key.get_secret_value() == KEY


def test_dotenv_file_is_read(clean_env, monkeypatch):
    (clean_env / ".env").write_text(
        f"DASHSCOPE_API_KEY={KEY}\nLOG_LEVEL=warning\nSOMETHING_ELSE=ignored\n", encoding="utf-8"
    )
    settings = load_settings()
    assert settings.dashscope_api_key is not None
    assert settings.dashscope_api_key.get_secret_value() == KEY
    assert settings.log_level == "WARNING"
    assert settings.simulated is False
    # The environment wins over the file.
    monkeypatch.setenv("LOG_LEVEL", "ERROR")
    assert load_settings().log_level == "ERROR"


LEVELS = "one of DEBUG, INFO, WARNING, ERROR, CRITICAL"
URL_EXPECTS = "an http(s) URL ending in /api/v1, e.g. https://dashscope.aliyuncs.com/api/v1"
SPEED_EXPECTS = "a number > 0 by which the built-in simulator shortens task durations"
BYTES_EXPECTS = "a whole number of bytes between 1 MiB and 200 MiB"
REGION_EXPECTS = (
    "one of cn-beijing, ap-southeast-1, us-east-1 (unset: the region of DASHSCOPE_BASE_URL)"
)


@pytest.mark.parametrize(
    ("name", "value", "expects"),
    [
        ("LOG_LEVEL", "verbose", LEVELS),
        ("LOG_LEVEL", "", LEVELS),
        ("LOG_LEVEL", "20", LEVELS),
        ("DASHSCOPE_BASE_URL", "dashscope.aliyuncs.com/api/v1", URL_EXPECTS),
        ("DASHSCOPE_BASE_URL", "ftp://dashscope.aliyuncs.com/api/v1", URL_EXPECTS),
        ("DASHSCOPE_BASE_URL", "https:///api/v1", URL_EXPECTS),
        ("DASHSCOPE_BASE_URL", "", URL_EXPECTS),
        ("SIMULATOR_SPEED", "fast", SPEED_EXPECTS),
        ("SIMULATOR_SPEED", "0", SPEED_EXPECTS),
        ("SIMULATOR_SPEED", "-3", SPEED_EXPECTS),
        ("SIMULATOR_SPEED", "nan", SPEED_EXPECTS),
        ("SIMULATOR_SPEED", "inf", SPEED_EXPECTS),
        ("DOWNLOAD_MAX_BYTES", "100", BYTES_EXPECTS),
        ("DOWNLOAD_MAX_BYTES", "1.5", BYTES_EXPECTS),
        ("DOWNLOAD_MAX_BYTES", str(200 * 1024 * 1024 + 1), BYTES_EXPECTS),
        ("DASHSCOPE_REGION", "beijing", REGION_EXPECTS),
        ("DASHSCOPE_REGION", "eu-central-1", REGION_EXPECTS),
    ],
)
def test_bad_value_is_one_line_naming_the_variable(monkeypatch, name, value, expects):
    message = config_error(monkeypatch, **{name: value})
    assert message == f"invalid configuration: {name}: expected {expects}"


def test_database_path_that_is_a_directory(monkeypatch, clean_env):
    message = config_error(monkeypatch, DATABASE_PATH=str(clean_env))
    assert message.startswith("invalid configuration: DATABASE_PATH: expected a file path")


def test_several_bad_values_are_all_named(monkeypatch):
    message = config_error(monkeypatch, LOG_LEVEL="loud", SIMULATOR_SPEED="0")
    assert message == (
        f"invalid configuration: LOG_LEVEL: expected {LEVELS}; "
        f"SIMULATOR_SPEED: expected {SPEED_EXPECTS}"
    )


@pytest.mark.parametrize(
    "bad_key", ["sk-abc def0123456789", "sk-abc\tdef0123456789", "sk-abc\u3000def0123456789"]
)
def test_key_with_inner_whitespace_is_refused_without_echoing_it(monkeypatch, bad_key):
    monkeypatch.setenv("DISCORD_TOKEN", TOKEN)
    message = config_error(monkeypatch, DASHSCOPE_API_KEY=bad_key)
    assert message.startswith("invalid configuration: DASHSCOPE_API_KEY: expected ")
    assert "sk-' (leave unset to use the built-in simulator)" in message
    for fragment in ["sk-abc", "def0123456789", TOKEN, "discord-token"]:
        assert fragment not in message


def test_bad_key_in_dotenv_is_not_echoed(clean_env):
    (clean_env / ".env").write_text("DASHSCOPE_API_KEY=sk-abc def0123456789\n", encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert "DASHSCOPE_API_KEY" in str(caught.value)
    assert "def0123456789" not in str(caught.value)


def test_error_never_echoes_values(monkeypatch):
    monkeypatch.setenv("DISCORD_TOKEN", TOKEN)
    monkeypatch.setenv("DASHSCOPE_API_KEY", KEY)
    message = config_error(
        monkeypatch, LOG_LEVEL="loud-value-77", SIMULATOR_SPEED="speedy-value-88"
    )
    for fragment in [TOKEN, KEY, "loud-value-77", "speedy-value-88"]:
        assert fragment not in message


def test_config_error_has_no_pydantic_cause(monkeypatch):
    """`from None`: a traceback printed for a ConfigError does not carry the input values."""
    monkeypatch.setenv("DASHSCOPE_API_KEY", "sk-abc def0123456789")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert caught.value.__cause__ is None
    assert caught.value.__suppress_context__ is True


def test_secrets_never_show_in_repr_str_or_dumps(monkeypatch):
    monkeypatch.setenv("DISCORD_TOKEN", TOKEN)
    monkeypatch.setenv("DASHSCOPE_API_KEY", KEY)
    settings = load_settings()
    shown = [
        repr(settings),
        str(settings),
        f"{settings}",
        settings.model_dump_json(),
        json.dumps(settings.model_dump(mode="json")),
        repr(settings.model_dump()),
        repr(settings.dashscope_api_key),
        str(settings.discord_token),
    ]
    for text in shown:
        assert KEY not in text
        assert TOKEN not in text
        assert "0123456789abcdef" not in text
    assert "**********" in settings.model_dump_json()


# --- shards -----------------------------------------------------------------------------------

SHARD_IDS_EXPECTS = (
    "SHARD_IDS: expected the ids of the shards this process runs, below SHARD_COUNT, as a list "
    "like 0,1 or a range like 0-3"
)


@pytest.mark.parametrize(
    ("count", "ids", "expected"),
    [
        ("2", "0,1", [0, 1]),
        ("4", "0-3", [0, 1, 2, 3]),
        ("8", " 6 , 0-2 ,", [0, 1, 2, 6]),  # spaces, order and a trailing comma do not matter
        ("4", "2 - 3", [2, 3]),
        ("1", "0", [0]),
        ("16", "", None),  # a count alone: this process runs all 16
        ("", "  ", None),
    ],
)
def test_shards_from_the_environment(monkeypatch, count, ids, expected):
    monkeypatch.setenv("SHARD_COUNT", count)
    monkeypatch.setenv("SHARD_IDS", ids)
    settings = load_settings()
    assert settings.shard_count == (int(count) if count else None)
    assert settings.shard_ids == expected


@pytest.mark.parametrize(
    ("env", "reason"),
    [
        ({"SHARD_IDS": "0,1"}, "SHARD_IDS needs SHARD_COUNT, the number of shards in all"),
        (
            {"SHARD_IDS": "0", "SHARD_COUNT": ""},
            "SHARD_IDS needs SHARD_COUNT, the number of shards in all",
        ),
        ({"SHARD_IDS": "2", "SHARD_COUNT": "2"}, "shard 2 is not below SHARD_COUNT=2"),
        ({"SHARD_IDS": "0-4", "SHARD_COUNT": "4"}, "shard 4 is not below SHARD_COUNT=4"),
        ({"SHARD_IDS": "3-1", "SHARD_COUNT": "4"}, "the range 3-1 runs backwards"),
        ({"SHARD_IDS": "0,1,1", "SHARD_COUNT": "4"}, "shard 1 is listed twice"),
        ({"SHARD_IDS": "0-2,2-3", "SHARD_COUNT": "4"}, "shard 2 is listed twice"),
        (
            {"SHARD_IDS": "-1", "SHARD_COUNT": "4"},
            "'-1' is neither a shard id nor a range like 0-3",
        ),
        (
            {"SHARD_IDS": "a,b", "SHARD_COUNT": "4"},
            "'a' is neither a shard id nor a range like 0-3",
        ),
        (
            {"SHARD_IDS": "[0, 1]", "SHARD_COUNT": "4"},
            "'[0' is neither a shard id nor a range like 0-3",
        ),
        (
            {"SHARD_IDS": "0-1-2", "SHARD_COUNT": "4"},
            "'0-1-2' is neither a shard id nor a range like 0-3",
        ),
        ({"SHARD_IDS": "١", "SHARD_COUNT": "4"}, "'١' is neither a shard id nor a range like 0-3"),
        (
            {"SHARD_IDS": "0-99999999999", "SHARD_COUNT": "4"},
            f"shard 99999999999 is beyond the {MAX_SHARDS} shards allowed",
        ),
    ],
)
def test_bad_shard_ids_say_why(monkeypatch, env, reason):
    message = config_error(monkeypatch, **env)
    assert message == f"invalid configuration: {SHARD_IDS_EXPECTS} ({reason})"


COUNT_EXPECTS = (
    f"SHARD_COUNT: expected the number of shards in all, a whole number from 1 to {MAX_SHARDS} "
    "(unset: the number Discord recommends)"
)


@pytest.mark.parametrize("count", ["0", "-2", "two", "1.5", str(MAX_SHARDS + 1)])
def test_bad_shard_count_is_named_alone(monkeypatch, count):
    """A refused count is the one problem named: its ids are not also called out of range."""
    message = config_error(monkeypatch, SHARD_COUNT=count, SHARD_IDS="0-3")
    assert message == f"invalid configuration: {COUNT_EXPECTS}"


def test_shard_ids_given_as_a_list():
    settings = load_settings(shard_count=4, shard_ids=[3, 1], _env_file=None)
    assert settings.shard_ids == [1, 3]


def test_shards_in_dotenv(clean_env):
    (clean_env / ".env").write_text("SHARD_COUNT=4\nSHARD_IDS=2-3\n", encoding="utf-8")
    settings = load_settings()
    assert (settings.shard_count, settings.shard_ids) == (4, [2, 3])


def spelled(ids: list[int], ranges: list[bool]) -> str:
    """Sorted ids written with runs as ranges where `ranges` says so, out of order."""
    runs: list[list[int]] = []
    for shard in ids:
        if runs and runs[-1][-1] == shard - 1:
            runs[-1].append(shard)
        else:
            runs.append([shard])
    parts = []
    for run, as_range in zip(runs, ranges + [False] * len(runs), strict=False):
        if as_range and len(run) > 1:
            parts.append(f"{run[0]}-{run[-1]}")
        else:
            parts.extend(str(shard) for shard in run)
    return ",".join(reversed(parts))


@settings(max_examples=300, deadline=None)
@given(
    st.sets(st.integers(0, 200), min_size=1, max_size=40),
    st.lists(st.booleans(), max_size=40),
)
def test_shard_ids_round_trip(ids, ranges):
    assert parse_shard_ids(spelled(sorted(ids), ranges)) == sorted(ids)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=30))
def test_any_shard_ids_text_is_parsed_or_refused_with_a_reason(text):
    try:
        ids = parse_shard_ids(text)
    except ValueRefused as exc:
        assert str(exc)
    else:
        assert ids is None or (ids == sorted(set(ids)) and all(0 <= i < MAX_SHARDS for i in ids))


@pytest.mark.parametrize(
    ("base_url", "region", "expected"),
    [
        (BEIJING_BASE_URL, None, "cn-beijing"),
        (SINGAPORE_BASE_URL, None, "ap-southeast-1"),
        (SINGAPORE_BASE_URL, " US-East-1 ", "us-east-1"),  # a proxy in front of another region
        ("http://127.0.0.1:8400/api/v1", None, None),  # unknown (a simulator): every model
        ("http://127.0.0.1:8400/api/v1", "", None),
        ("http://127.0.0.1:8400/api/v1", "ap-southeast-1", "ap-southeast-1"),
    ],
)
def test_the_keys_region_is_dashscope_region_else_the_gateways(
    monkeypatch, base_url, region, expected
):
    monkeypatch.setenv("DASHSCOPE_BASE_URL", base_url)
    if region is not None:
        monkeypatch.setenv("DASHSCOPE_REGION", region)
    assert load_settings().region == expected


def test_prices_per_model_and_per_function(monkeypatch):
    monkeypatch.setenv("PRICES", "wan2.6-t2i=0.3, wanx2.1-imageedit:super_resolution=0.05")
    table = load_settings().price_table
    assert table["wan2.6-t2i"] == 0.3
    assert table["wanx2.1-imageedit:super_resolution"] == 0.05
    # The built-in list (documented estimates) prices the rest, the new models included.
    assert (table["wanx2.1-imageedit"], table["wan2.6-image"]) == (0.14, 0.20)
    assert "wanx2.1-imageedit:expand" not in table  # an expand costs the model's price
    expects = (
        "model=price (or model:function=price, or model:720P=price of a video second) "
        "pairs separated by commas, e.g. wan2.6-t2i=0.2,wanx2.1-imageedit:super_resolution=0.1"
    )
    for bad in ("wanx2.1-imageedit:colorize=0.1", "wan2.6-t2i:expand=0.1", "dall-e=0.1"):
        message = config_error(monkeypatch, PRICES=bad)
        assert message == f"invalid configuration: PRICES: expected {expects}"
