"""Timeouts and retry numbers for talking to DashScope, in one place."""

from __future__ import annotations

import httpx

from bot.backoff import Backoff

CONNECT_TIMEOUT = 10.0
# A task submission or query answers in well under a second normally; these bound a stuck one.
SUBMIT_TIMEOUT = httpx.Timeout(60.0, connect=CONNECT_TIMEOUT)
QUERY_TIMEOUT = httpx.Timeout(30.0, connect=CONNECT_TIMEOUT)
# The synchronous wan2.6-t2i call renders before it answers: the gateway allows 298 s
# (x-dashscope-timeout), the official SDK waits 300 s.
SYNC_TIMEOUT = httpx.Timeout(310.0, connect=CONNECT_TIMEOUT)
DOWNLOAD_TIMEOUT = httpx.Timeout(60.0, connect=CONNECT_TIMEOUT)

MAX_RETRIES = 3  # after the first attempt
BACKOFF = Backoff(initial=0.5, cap=8.0)  # seconds, doubled each retry
# A Retry-After longer than this is not slept on: the error goes up with its retry_after.
RETRY_AFTER_MAX = 30.0

USER_AGENT = "wanbot/0.1 (+https://github.com/wanbot)"
