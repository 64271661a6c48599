"""Settings from the environment and `.env`, typed and validated.

A bad value stops the program at start with one line naming the variable and what it expects;
secrets are `SecretStr`, so they never show in a repr, a log line or an error message.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from bot.accounting.quota import DEFAULT_LIMITS
from bot.dashscope.models import (
    BEIJING,
    DEFAULT_PRICES,
    MODELS,
    SINGAPORE,
    VIRGINIA,
    region_of_base_url,
)
from bot.dispatch.engine import EngineConfig

BEIJING_BASE_URL = "https://dashscope.aliyuncs.com/api/v1"

_ENGINE = EngineConfig()  # its defaults are the account limits' defaults

REGIONS = (BEIJING, SINGAPORE, VIRGINIA)
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
# A bound on SHARD_COUNT, so a typing slip cannot make a process open a million sessions.
MAX_SHARDS = 65_536

# What each variable expects, in the words of the one-line start-up error.
EXPECTS: dict[str, str] = {
    "discord_token": "the bot token from the Discord developer portal (Bot → Reset Token)",
    "dashscope_api_key": "a DashScope API key starting with 'sk-' (leave unset to use the "
    "built-in simulator)",
    "dashscope_base_url": "an http(s) URL ending in /api/v1, e.g. " + BEIJING_BASE_URL,
    "dashscope_workspace": "a Model Studio workspace id, or unset",
    "dashscope_region": f"one of {BEIJING}, {SINGAPORE}, {VIRGINIA} (unset: the region of "
    "DASHSCOPE_BASE_URL)",
    "database_path": "a file path for the SQLite database, e.g. ./data/wanbot.db",
    "database_url": "a PostgreSQL URL, postgresql://user:password@host:5432/database (unset: "
    "SQLite at DATABASE_PATH)",
    "log_level": "one of " + ", ".join(LOG_LEVELS),
    "simulator_speed": "a number > 0 by which the built-in simulator shortens task durations",
    "download_max_bytes": "a whole number of bytes between 1 MiB and 200 MiB",
    "limit_images_per_user_day": "a whole number of images (0 = no limit)",
    "limit_concurrent_jobs_per_user": "a whole number of jobs (0 = no limit)",
    "limit_cooldown_seconds": "a whole number of seconds (0 = none)",
    "limit_images_per_guild_day": "a whole number of images (0 = no limit)",
    "limit_video_seconds_per_user_day": "a whole number of seconds of video (0 = no limit)",
    "limit_video_seconds_per_guild_day": "a whole number of seconds of video (0 = no limit)",
    "video_download_max_bytes": "a whole number of bytes between 1 MiB and 2 GiB",
    "max_in_flight": "a whole number of tasks between 1 and 100",
    "submit_rate": "submissions per second, a number between 0.1 and 100",
    "task_query_rate": "task queries per second, a number between 0.5 and 20",
    "health_port": "a TCP port number (0 = no health endpoint)",
    "discord_api_base_url": "an http(s) URL of Discord's REST API, e.g. https://discord.com/api/v10",
    "discord_gateway_url": "a ws(s) URL of Discord's gateway, e.g. wss://gateway.discord.gg/",
    "discord_application_id": "the application id from the Discord developer portal",
    "dev_guild_id": "a Discord server id (commands are synced there on start)",
    "owner_ids": "Discord user ids separated by commas",
    "allow_dms": "true or false",
    "shard_count": f"the number of shards in all, a whole number from 1 to {MAX_SHARDS} (unset: "
    "the number Discord recommends)",
    "shard_ids": "the ids of the shards this process runs, below SHARD_COUNT, as a list like 0,1 "
    "or a range like 0-3",
    "prices": "model=price (or model:function=price, or model:720P=price of a video second) "
    "pairs separated by commas, e.g. wan2.6-t2i=0.2,wanx2.1-imageedit:super_resolution=0.1",
    "currency": "a currency code of up to 5 letters, e.g. CNY or USD",
}


class ConfigError(Exception):
    """A setting is missing or invalid; the message is one line fit to print."""


class ValueRefused(ValueError):
    """A validator's refusal whose reason is shown after what the variable expects (a reason
    that names no secret: which shard is out of range, say)."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        case_sensitive=False,
        hide_input_in_errors=True,
    )

    discord_token: SecretStr | None = Field(default=None, description=EXPECTS["discord_token"])
    dashscope_api_key: SecretStr | None = Field(
        default=None, description=EXPECTS["dashscope_api_key"]
    )
    dashscope_base_url: str = Field(default=BEIJING_BASE_URL)
    dashscope_workspace: str | None = None
    # The key's region, for gateways whose host does not tell it (a proxy, tests): which
    # models, and so which image tools, are offered.
    dashscope_region: str | None = Field(default=None, description=EXPECTS["dashscope_region"])
    database_path: Path = Path("./data/wanbot.db")
    # PostgreSQL for several processes; it may hold a password, so it is a secret.
    database_url: SecretStr | None = Field(default=None, description=EXPECTS["database_url"])
    log_level: str = "INFO"
    simulator_speed: float = Field(default=10.0, gt=0, le=10_000)
    download_max_bytes: int = Field(default=30 * 1024 * 1024, ge=1024 * 1024, le=200 * 1024 * 1024)

    # Default limits; a server can override them in the database.
    limit_images_per_user_day: int = Field(default=DEFAULT_LIMITS.images_per_user_day, ge=0)
    limit_concurrent_jobs_per_user: int = Field(
        default=DEFAULT_LIMITS.concurrent_jobs_per_user, ge=0
    )
    limit_cooldown_seconds: int = Field(default=DEFAULT_LIMITS.cooldown_seconds, ge=0)
    limit_images_per_guild_day: int = Field(default=DEFAULT_LIMITS.images_per_guild_day, ge=0)
    limit_video_seconds_per_user_day: int = Field(
        default=DEFAULT_LIMITS.video_seconds_per_user_day, ge=0
    )
    limit_video_seconds_per_guild_day: int = Field(
        default=DEFAULT_LIMITS.video_seconds_per_guild_day, ge=0
    )
    # A video result (MP4) may be far larger than an image.
    video_download_max_bytes: int = Field(
        default=200 * 1024 * 1024, ge=1024 * 1024, le=2 * 1024 * 1024 * 1024
    )

    # The DashScope account's limits, per model: tasks in flight and submissions per second.
    max_in_flight: int = Field(default=_ENGINE.max_in_flight, ge=1, le=100)
    submit_rate: float = Field(default=_ENGINE.submit_rate, ge=0.1, le=100)
    # Task queries per second for the whole process (the account allows 20; keep half spare).
    task_query_rate: float = Field(default=_ENGINE.task_query_rate, ge=0.5, le=20)

    # Discord. The URLs let the bot run behind a REST proxy or against a local stand-in.
    discord_api_base_url: str = "https://discord.com/api/v10"
    discord_gateway_url: str = "wss://gateway.discord.gg/"
    discord_application_id: int | None = None
    dev_guild_id: int | None = None
    owner_ids: str = ""
    allow_dms: bool = False
    # Shards: gateway sessions in all, and those this process runs (unset: every one of them).
    shard_count: int | None = Field(default=None, ge=1, le=MAX_SHARDS)
    shard_ids: Annotated[list[int] | None, NoDecode] = None

    # Money: the price of one image per model (over the built-in list) and the currency.
    prices: str = ""
    currency: str = Field(default="CNY", pattern=r"^[A-Za-z]{1,5}$")

    health_host: str = "127.0.0.1"
    health_port: int = Field(default=0, ge=0, le=65535)

    @field_validator("discord_token", "dashscope_api_key", mode="before")
    @classmethod
    def _blank_secret_is_unset(cls, value: Any) -> Any:
        if isinstance(value, str) and not value.strip():
            return None
        return value.strip() if isinstance(value, str) else value

    @field_validator("dashscope_api_key")
    @classmethod
    def _key_shape(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and any(c.isspace() for c in value.get_secret_value()):
            raise ValueError("contains whitespace")
        return value

    @field_validator("dashscope_base_url", "discord_api_base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        return _checked_url(value.strip().rstrip("/"), ("http", "https"))

    @field_validator("discord_gateway_url")
    @classmethod
    def _gateway_url(cls, value: str) -> str:
        return _checked_url(value.strip(), ("ws", "wss"))

    @field_validator("owner_ids")
    @classmethod
    def _owner_ids(cls, value: str) -> str:
        for part in value.split(","):
            if part.strip() and not (part.strip().isascii() and part.strip().isdigit()):
                raise ValueError("not a list of ids")
        return value

    @field_validator("discord_application_id", "dev_guild_id", "shard_count", mode="before")
    @classmethod
    def _blank_id_is_none(cls, value: Any) -> Any:
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @field_validator("shard_ids", mode="before")
    @classmethod
    def _shard_list(cls, value: Any) -> Any:
        if isinstance(value, list | tuple):
            value = ",".join(str(item) for item in value)
        return parse_shard_ids(value) if isinstance(value, str) else value

    @field_validator("shard_ids")
    @classmethod
    def _shards_of_the_count(
        cls, value: list[int] | None, info: ValidationInfo
    ) -> list[int] | None:
        if value is None or "shard_count" not in info.data:  # unset, or the count was refused
            return value
        count = info.data["shard_count"]
        if count is None:
            raise ValueRefused("SHARD_IDS needs SHARD_COUNT, the number of shards in all")
        beyond = [shard for shard in value if shard >= count]
        if beyond:
            raise ValueRefused(f"shard {beyond[0]} is not below SHARD_COUNT={count}")
        return value

    @field_validator("prices")
    @classmethod
    def _prices(cls, value: str) -> str:
        parse_prices(value)
        return value

    @property
    def price_table(self) -> dict[str, float]:
        return {**DEFAULT_PRICES, **parse_prices(self.prices)}

    @property
    def owner_id_set(self) -> set[int]:
        return {int(part) for part in self.owner_ids.split(",") if part.strip()}

    @field_validator("dashscope_workspace", mode="before")
    @classmethod
    def _blank_is_none(cls, value: Any) -> Any:
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @field_validator("dashscope_region", mode="before")
    @classmethod
    def _region(cls, value: Any) -> Any:
        if value is None or (isinstance(value, str) and not value.strip()):
            return None
        region = str(value).strip().lower()
        if region not in REGIONS:
            raise ValueError("unknown region")
        return region

    @property
    def region(self) -> str | None:
        """The region whose models the key can use: DASHSCOPE_REGION, else the one
        DASHSCOPE_BASE_URL names; None (every model offered) for a gateway we do not know."""
        return self.dashscope_region or region_of_base_url(self.dashscope_base_url)

    @field_validator("log_level", mode="before")
    @classmethod
    def _level(cls, value: Any) -> str:
        text = str(value).strip().upper()
        if text not in LOG_LEVELS:
            raise ValueError("unknown level")
        return text

    @field_validator("database_path")
    @classmethod
    def _path(cls, value: Path) -> Path:
        if not str(value).strip() or value.is_dir():
            raise ValueError("not a file path")
        return value

    @field_validator("database_url", mode="before")
    @classmethod
    def _postgres_url(cls, value: Any) -> Any:
        raw = value.get_secret_value() if isinstance(value, SecretStr) else value
        if raw is None or not str(raw).strip():
            return None
        parts = urlsplit(str(raw).strip())
        if parts.scheme not in ("postgresql", "postgres") or not parts.hostname:
            raise ValueError("not a postgresql:// URL with a host")
        return str(raw).strip()

    @property
    def database_target(self) -> str:
        """Where the rows are: the PostgreSQL URL when set, else the SQLite file."""
        if self.database_url is not None:
            return self.database_url.get_secret_value()
        return str(self.database_path)

    @property
    def simulated(self) -> bool:
        """No API key: everything runs against the built-in simulator."""
        return self.dashscope_api_key is None

    @property
    def log_level_number(self) -> int:
        return logging.getLevelNamesMapping()[self.log_level]


def _checked_url(value: str, schemes: tuple[str, ...]) -> str:
    parts = urlsplit(value)
    if parts.scheme not in schemes or not parts.hostname:
        raise ValueError(f"not a {'/'.join(schemes)} URL")
    return value


def parse_prices(text: str) -> dict[str, float]:
    """ "model=price,model=price" → {model: price}; unknown models and bad numbers refused."""
    table: dict[str, float] = {}
    for part in text.split(","):
        if not part.strip():
            continue
        key, _, price = part.partition("=")
        key = key.strip()
        model, colon, function = key.partition(":")
        if model not in MODELS:
            raise ValueError(f"unknown model {model!r}")
        spec = MODELS[model]
        if colon and function not in spec.functions + spec.resolutions:
            kind = "resolution" if spec.resolutions else "function"
            raise ValueError(f"{model} has no {kind} {function!r}")
        number = float(price)
        if not 0 <= number < 1000:
            raise ValueError("price out of range")
        table[key] = number
    return table


def parse_shard_ids(text: str) -> list[int] | None:
    """ "0,1" or "0-3" or "0-3,8" → the sorted shard ids; blank → None (every shard)."""
    ids: set[int] = set()
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        first, dash, last = part.partition("-")
        bounds = (first.strip(), last.strip()) if dash else (part, part)
        if not all(b.isascii() and b.isdigit() for b in bounds):
            raise ValueRefused(f"{part!r} is neither a shard id nor a range like 0-3")
        low, high = int(bounds[0]), int(bounds[1])
        if low > high:
            raise ValueRefused(f"the range {low}-{high} runs backwards")
        if high >= MAX_SHARDS:
            raise ValueRefused(f"shard {high} is beyond the {MAX_SHARDS} shards allowed")
        listed = ids.intersection(range(low, high + 1))
        if listed:
            raise ValueRefused(f"shard {min(listed)} is listed twice")
        ids.update(range(low, high + 1))
    return sorted(ids) if ids else None


def load_settings(**overrides: Any) -> Settings:
    """Read the settings, turning any validation failure into one clear `ConfigError` line."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc)) from None


def describe_validation_error(exc: ValidationError) -> str:
    lines = []
    for error in exc.errors():
        field = str(error["loc"][0]) if error["loc"] else "?"
        expects = EXPECTS.get(field, error["msg"])
        reason = (error.get("ctx") or {}).get("error")
        why = f" ({reason})" if isinstance(reason, ValueRefused) else ""
        lines.append(f"{field.upper()}: expected {expects}{why}")
    return "invalid configuration: " + "; ".join(lines)
