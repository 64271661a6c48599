"""`python -m bot doctor`: check the token, the API key, the database and the region; say how to
fix what is wrong. Exit 0 when everything is fine, 1 otherwise.

The token check is Discord's (`bot.discord_ui.login.check_token`): the command line passes it in,
so this layer stays below the Discord layer."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import httpx

from bot.config import Settings
from bot.dashscope import AuthenticationError, DashScopeClient, DashScopeError
from bot.dashscope.models import region_of_base_url
from bot.dashscope.retry import NO_RETRIES
from bot.storage.db import Database, DatabaseError

OK, PROBLEM = "ok  ", "FIX "


Check = Callable[[Settings], Awaitable[tuple[str, str]]]


async def doctor(settings: Settings, check_discord: Check) -> int:
    lines: list[tuple[str, str]] = []
    lines.append(await check_discord(settings))
    lines.extend(await _check_dashscope(settings))
    lines.append(await _check_database(settings))
    for status, message in lines:
        print(f"{status} {message}")
    return 0 if all(status == OK for status, _ in lines) else 1


async def _check_dashscope(settings: Settings) -> list[tuple[str, str]]:
    lines = []
    region = region_of_base_url(settings.dashscope_base_url)
    if region is None:
        lines.append(
            (
                OK,
                f"DASHSCOPE_BASE_URL {settings.dashscope_base_url} is not a known DashScope region (a proxy or a simulator?)",
            )
        )
    else:
        lines.append(
            (OK, f"DASHSCOPE_BASE_URL is the {region} gateway; your key must belong to that region")
        )
    if settings.dashscope_api_key is None:
        lines.append(
            (
                OK,
                "DASHSCOPE_API_KEY is not set: the built-in simulator is used and results are simulated",
            )
        )
        return lines
    async with httpx.AsyncClient() as http:
        client = DashScopeClient(
            settings.dashscope_api_key, settings.dashscope_base_url, http=http, retry=NO_RETRIES
        )
        try:
            # Listing one task is the cheapest authenticated call: it costs nothing.
            await client.list_tasks(page_size=1)
        except AuthenticationError:
            lines.append(
                (
                    PROBLEM,
                    "DashScope refused DASHSCOPE_API_KEY: check the key, and that it belongs to the region of DASHSCOPE_BASE_URL (Beijing, Singapore and Virginia keys are separate).",
                )
            )
        except DashScopeError as exc:
            lines.append(
                (
                    PROBLEM,
                    f"DashScope answered {exc}: see the error code at https://help.aliyun.com/zh/model-studio/error-code",
                )
            )
        else:
            lines.append((OK, "DASHSCOPE_API_KEY works"))
    return lines


async def _check_database(settings: Settings) -> tuple[str, str]:
    """Open (and migrate) the database the bot would use: where it is, what runs it, and its
    schema version; or why it cannot be used, never with the URL's password."""
    setting = "DATABASE_URL" if settings.database_url is not None else "DATABASE_PATH"
    try:
        db = await Database.open(settings.database_target)
    except DatabaseError as exc:
        return PROBLEM, str(exc)
    try:
        software = await db.software()
        version = await db.schema_version()
    finally:
        await db.close()
    return OK, f"{setting}: the database {db.name} ({software}) is at schema version {version}"
