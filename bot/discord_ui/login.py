"""`doctor`'s Discord line: whether Discord accepts the bot token, by one REST call (no gateway)."""

from __future__ import annotations

import discord

from bot.config import Settings
from bot.runtime.doctor import OK, PROBLEM


async def check_token(settings: Settings) -> tuple[str, str]:
    if settings.discord_token is None:
        return (
            PROBLEM,
            "DISCORD_TOKEN is not set: create a bot at https://discord.com/developers/applications (Bot → Reset Token) and set DISCORD_TOKEN.",
        )
    discord.http.Route.BASE = settings.discord_api_base_url
    http = discord.http.HTTPClient(None)  # type: ignore[arg-type]
    try:
        me = await http.static_login(settings.discord_token.get_secret_value())
    except discord.LoginFailure:
        return (
            PROBLEM,
            "Discord refused DISCORD_TOKEN: reset the token in the developer portal and set it again.",
        )
    except (discord.HTTPException, OSError) as exc:
        return PROBLEM, f"could not reach Discord at {settings.discord_api_base_url}: {exc}"
    finally:
        await http.close()
    return OK, f"Discord token belongs to {me.get('username')} ({me.get('id')})"
