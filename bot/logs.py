"""Logging set-up: one stderr handler whose formatter scrubs secrets from every line.

Secrets are kept out of log calls in the first place; the scrubber is the second line of
defence, and it also covers tracebacks and third-party libraries' messages.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterable

REDACTED = "[redacted]"
# Interaction tokens: 15-minute credentials that discord.py's DEBUG logs show in webhook and
# callback URLs and in gateway payloads. Not the bot token, but a log reader could answer or
# edit the interaction with one, so they go too.
_TOKEN_PATTERNS = (
    re.compile(r"(/(?:interactions|webhooks)/\d+/)[A-Za-z0-9_.\-]{20,}"),
    re.compile(r"""(['"]token['"]\s*:\s*['"])[^'"]{20,}"""),
)


class RedactingFormatter(logging.Formatter):
    def __init__(self, secrets: Iterable[str], fmt: str | None = None) -> None:
        super().__init__(fmt or "%(asctime)s %(levelname)-7s %(name)s: %(message)s")
        # Longest first, so a secret containing another is replaced whole.
        self._secrets = sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True)

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record), self._secrets)


def redact(text: str, secrets: Iterable[str]) -> str:
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, REDACTED)
    if "token" in text or "/interactions/" in text or "/webhooks/" in text:
        for pattern in _TOKEN_PATTERNS:
            text = pattern.sub(lambda m: m.group(1) + REDACTED, text)
    return text


def setup_logging(level: int | str, secrets: Iterable[str] = ()) -> logging.Handler:
    """Send all logging to stderr through a redacting formatter; returns the handler."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(RedactingFormatter(list(secrets)))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    # httpx logs every request at INFO; keep that for DEBUG runs only.
    logging.getLogger("httpx").setLevel(
        logging.DEBUG if root.level <= logging.DEBUG else logging.WARNING
    )
    return handler
