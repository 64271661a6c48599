"""Waiting on an event with a time limit, the one way the loops sleep until woken."""

from __future__ import annotations

import asyncio


async def wait_for_event(event: asyncio.Event, timeout: float) -> bool:
    """Wait until `event` is set or `timeout` seconds pass; True if it was set.

    `asyncio.timeout`, not `asyncio.wait_for`: on Python 3.11 `wait_for` can swallow a
    cancellation that arrives just as the event is set, and a loop built on it never stops.
    """
    if timeout <= 0:
        return event.is_set()
    try:
        async with asyncio.timeout(timeout):
            await event.wait()
    except TimeoutError:
        return False
    return True
