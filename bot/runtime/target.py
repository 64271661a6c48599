"""Which DashScope to talk to: the configured one, or the built-in simulator when there is no key."""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from bot.config import Settings


@dataclass(frozen=True)
class Target:
    """Where to send requests: the real service, or the embedded simulator."""

    base_url: str
    api_key: str = field(repr=False)  # never shown in a repr or a log line
    simulated: bool


@contextlib.asynccontextmanager
async def dashscope_target(settings: Settings) -> AsyncIterator[Target]:
    """The configured DashScope, or, with no API key, a simulator in this process."""
    if settings.dashscope_api_key is not None:
        yield Target(
            settings.dashscope_base_url, settings.dashscope_api_key.get_secret_value(), False
        )
        return
    from bot.simulator import SimulatorConfig, start_simulator

    key = "sk-local-" + secrets.token_hex(8)
    running = await start_simulator(
        SimulatorConfig(api_keys={key}, speed=settings.simulator_speed), "127.0.0.1", 0
    )
    try:
        yield Target(running.base_url, key, True)
    finally:
        await running.stop()
