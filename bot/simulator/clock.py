"""The simulator's clock (wall time plus an adjustable offset) and DashScope's time formats."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

# Beijing time: the service reports task times and reads list filters in UTC+8.
SERVICE_TZ = timezone(timedelta(hours=8))
LIST_TIME_FORMAT = "%Y%m%d%H%M%S"


class Clock:
    """Epoch seconds as the simulator sees them; `advance` moves them forward, never back."""

    def __init__(self) -> None:
        self.offset = 0.0

    def now(self) -> float:
        return time.time() + self.offset

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("the clock only moves forward")
        self.offset += seconds

    def reset(self) -> None:
        self.offset = 0.0


def format_task_time(epoch: float) -> str:
    """`"YYYY-MM-DD HH:mm:ss.SSS"` in UTC+8, as in task output."""
    moment = datetime.fromtimestamp(epoch, SERVICE_TZ)
    return moment.strftime("%Y-%m-%d %H:%M:%S.") + f"{moment.microsecond // 1000:03d}"


def epoch_ms(epoch: float) -> int:
    return int(epoch * 1000)


def parse_list_time(text: str) -> float:
    """Epoch seconds from a list filter `YYYYMMDDhhmmss` (UTC+8); ValueError if malformed."""
    if len(text) != 14 or not text.isdigit():
        raise ValueError(text)
    return datetime.strptime(text, LIST_TIME_FORMAT).replace(tzinfo=SERVICE_TZ).timestamp()
