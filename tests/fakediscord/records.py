"""What the fake records: REST requests, injected interactions, faults, rate-limit violations."""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field
from typing import Any

from .state import Channel, Message, User


@dataclass
class UploadedFile:
    """One ``files[n]`` part of a multipart request."""

    field: str
    filename: str
    data: bytes
    content_type: str | None

    @property
    def size(self) -> int:
        return len(self.data)


@dataclass
class RecordedRequest:
    """One REST request as the fake received it (the Authorization header is left out)."""

    method: str
    path: str  # relative to the API base ("/channels/1/messages"), or the raw path outside it
    query: dict[str, str]
    headers: dict[str, str]
    json: Any = None  # JSON body, or the parsed payload_json of a multipart body
    files: list[UploadedFile] = field(default_factory=list)
    multipart: bool = False
    time: float = 0.0
    status: int | None = None
    response: Any = None
    fault: bool = False
    authorized: bool = True
    unmatched: bool = False  # answered by the catch-all 404

    @property
    def body(self) -> Any:
        return self.json

    def __repr__(self) -> str:
        return f"<{self.method} {self.path} -> {self.status}>"


@dataclass
class Interaction:
    """An interaction the fake injected, and what the bot did with it."""

    id: int
    token: str
    type: int
    payload: dict[str, Any]
    user: User
    channel: Channel
    injected_at: float
    message: Message | None = None  # the component's message (type 3), or modal origin
    acked_at: float | None = None
    response_type: int | None = None
    response_data: dict[str, Any] | None = None
    original: Message | None = None
    followups: list[Message] = field(default_factory=list)
    modal: dict[str, Any] | None = None
    choices: list[dict[str, Any]] | None = None
    acked: asyncio.Event = field(default_factory=asyncio.Event, repr=False)

    @property
    def acknowledged(self) -> bool:
        return self.response_type is not None

    @property
    def ack_latency(self) -> float | None:
        """Seconds from injection to the accepted callback (fake clock), or None."""
        return None if self.acked_at is None else self.acked_at - self.injected_at

    @property
    def data(self) -> dict[str, Any]:
        return self.payload.get("data", {})


@dataclass
class Fault:
    """A scripted failure for the next request(s) matching method and path pattern."""

    method: str
    pattern: re.Pattern[str]
    status: int
    body: Any
    headers: dict[str, str]
    delay: float
    times: int
    hits: int = 0


@dataclass
class RateViolation:
    """A message create/edit beyond the per-channel window."""

    channel_id: int
    method: str
    path: str
    time: float
    in_window: int


def path_pattern(pattern: str) -> re.Pattern[str]:
    """``/channels/*/messages`` style pattern: ``*`` matches one path segment, ``**`` any."""
    out = []
    i = 0
    while i < len(pattern):
        if pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]+")
            i += 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out))
