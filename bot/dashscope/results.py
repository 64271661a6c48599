"""Reading DashScope's answers: task states, both result shapes, partial failures, usage, times.

Parsing is by name and tolerant: unknown keys are ignored, missing optional ones are None.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from enum import StrEnum
from typing import Any

# Task times are "YYYY-MM-DD HH:mm:ss.SSS" in UTC+8: confirmed for Beijing, assumed elsewhere
# (docs/dashscope.md §Wire).
DASHSCOPE_TZ = timezone(timedelta(hours=8))


class TaskState(StrEnum):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    SUSPENDED = "SUSPENDED"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELED = "CANCELED"
    UNKNOWN = "UNKNOWN"

    @property
    def finished(self) -> bool:
        return self in _FINISHED

    @classmethod
    def parse(cls, value: Any) -> TaskState:
        text = str(value or "").upper()
        if text == "CANCELLED":  # one OpenAPI schema spells it so
            return cls.CANCELED
        try:
            return cls(text)
        except ValueError:
            # An unfamiliar state is treated as still in progress; the poller keeps asking.
            return cls.RUNNING


_FINISHED = {TaskState.SUCCEEDED, TaskState.FAILED, TaskState.CANCELED, TaskState.UNKNOWN}


@dataclass(frozen=True)
class GeneratedImage:
    url: str
    actual_prompt: str | None = None
    orig_prompt: str | None = None


@dataclass(frozen=True)
class ImageFailure:
    code: str | None
    message: str | None


@dataclass(frozen=True)
class TaskMetrics:
    total: int
    succeeded: int
    failed: int


@dataclass(frozen=True)
class TaskResult:
    """One reading of a task (or the answer of a synchronous call, with no task id)."""

    state: TaskState
    task_id: str | None = None
    request_id: str | None = None
    images: tuple[GeneratedImage, ...] = ()
    failures: tuple[ImageFailure, ...] = ()
    image_count: int | None = None  # usage.image_count: what DashScope bills
    metrics: TaskMetrics | None = None
    code: str | None = None  # for FAILED tasks
    message: str | None = None
    submit_time: datetime | None = None
    scheduled_time: datetime | None = None
    end_time: datetime | None = None
    size: str | None = None  # usage.size when given
    video_seconds: float | None = None  # usage.duration: the seconds of video billed
    extra: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def actual_prompt(self) -> str | None:
        return next((image.actual_prompt for image in self.images if image.actual_prompt), None)

    @property
    def billed_images(self) -> int:
        """Images DashScope charges for: usage.image_count, else the successful images."""
        return self.image_count if self.image_count is not None else len(self.images)


@dataclass(frozen=True)
class SubmittedTask:
    task_id: str
    state: TaskState
    request_id: str | None


@dataclass(frozen=True)
class TaskListItem:
    task_id: str
    state: TaskState
    model: str | None
    request_id: str | None
    created: datetime | None
    started: datetime | None
    ended: datetime | None


@dataclass(frozen=True)
class TaskPage:
    items: tuple[TaskListItem, ...]
    total: int
    page_no: int
    page_size: int
    total_pages: int
    request_id: str | None


def parse_time(value: Any) -> datetime | None:
    """A task time as an aware UTC datetime: "YYYY-MM-DD HH:mm:ss[.SSS]" (UTC+8) or epoch ms."""
    if value is None or value == "":
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            return datetime.fromtimestamp(value / 1000, UTC)
        except (ValueError, OverflowError, OSError):  # NaN, ±inf, out of datetime's range
            return None
    text = str(value).strip()
    for fmt in ("%Y-%m-%d %H:%M:%S.%f", "%Y-%m-%d %H:%M:%S"):
        try:
            return datetime.strptime(text, fmt).replace(tzinfo=DASHSCOPE_TZ).astimezone(UTC)
        except ValueError:
            continue
    return None


def _text(value: Any) -> str | None:
    """A field documented as a string: kept if it is one, else None (never a stray object that
    could not be stored or shown)."""
    return value if isinstance(value, str) else None


def _as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        return int(value)
    return None


def _as_seconds(value: Any) -> float | None:
    """A number of seconds DashScope reported (a number or a numeric string), else None."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


def _images_and_failures(output: dict[str, Any]) -> tuple[list[GeneratedImage], list[ImageFailure]]:
    images: list[GeneratedImage] = []
    failures: list[ImageFailure] = []
    for entry in output.get("results") or []:
        if not isinstance(entry, dict):
            continue
        if entry.get("url"):
            images.append(
                GeneratedImage(
                    url=str(entry["url"]),
                    actual_prompt=_text(entry.get("actual_prompt")),
                    orig_prompt=_text(entry.get("orig_prompt")),
                )
            )
        else:
            failures.append(ImageFailure(_text(entry.get("code")), _text(entry.get("message"))))
    if output.get("video_url"):  # a video task's one result (docs/dashscope.md §Video)
        images.append(
            GeneratedImage(
                url=str(output["video_url"]),
                actual_prompt=_text(output.get("actual_prompt")),
                orig_prompt=_text(output.get("orig_prompt")),
            )
        )
    for choice in output.get("choices") or []:
        if not isinstance(choice, dict):
            continue
        message = choice.get("message")
        content = message.get("content") if isinstance(message, dict) else None
        if not isinstance(content, list):
            if choice.get("code"):  # a failed image in the choices shape
                failures.append(ImageFailure(_text(choice.get("code")), str(message or "")))
            continue
        for item in content:
            if not isinstance(item, dict):
                continue
            if item.get("image"):
                images.append(GeneratedImage(url=str(item["image"])))
            elif item.get("code"):
                failures.append(ImageFailure(_text(item.get("code")), _text(item.get("message"))))
    return images, failures


def _metrics(output: dict[str, Any]) -> TaskMetrics | None:
    raw = output.get("task_metrics") or output.get("task_metric")
    if not isinstance(raw, dict):
        return None
    total = _as_int(raw.get("TOTAL"))
    if total is None:
        return None
    return TaskMetrics(total, _as_int(raw.get("SUCCEEDED")) or 0, _as_int(raw.get("FAILED")) or 0)


def parse_task(body: dict[str, Any], *, default_state: TaskState | None = None) -> TaskResult:
    """Parse a task reading (GET /tasks/{id}) or a synchronous generation answer."""
    output = body.get("output")
    if not isinstance(output, dict):
        raise ValueError("the answer has no 'output' object")
    raw_state = output.get("task_status")
    if raw_state is None and default_state is None:
        raise ValueError("the answer has no 'task_status'")
    state = TaskState.parse(raw_state) if raw_state is not None else default_state
    assert state is not None
    images, failures = _images_and_failures(output)
    raw_usage = body.get("usage")
    usage: dict[str, Any] = raw_usage if isinstance(raw_usage, dict) else {}
    known = {
        "task_id",
        "task_status",
        "results",
        "choices",
        "task_metrics",
        "code",
        "message",
        "video_url",
    }
    return TaskResult(
        state=state,
        task_id=_text(output.get("task_id")),
        request_id=_text(body.get("request_id")),
        images=tuple(images),
        failures=tuple(failures),
        image_count=_as_int(usage.get("image_count", usage.get("video_count"))),
        metrics=_metrics(output),
        code=_text(output.get("code")),
        message=_text(output.get("message")),
        submit_time=parse_time(output.get("submit_time")),
        scheduled_time=parse_time(output.get("scheduled_time")),
        end_time=parse_time(output.get("end_time")),
        size=_text(usage.get("size")),
        video_seconds=_as_seconds(usage.get("duration")),
        extra={k: v for k, v in output.items() if k not in known},
    )


def parse_submitted(body: dict[str, Any]) -> SubmittedTask:
    output = body.get("output")
    if not isinstance(output, dict) or not output.get("task_id"):
        raise ValueError("the submission answer has no output.task_id")
    return SubmittedTask(
        task_id=str(output["task_id"]),
        state=TaskState.parse(output.get("task_status") or "PENDING"),
        request_id=_text(body.get("request_id")),
    )


def parse_task_page(body: dict[str, Any]) -> TaskPage:
    """The list answer is flat, its items under `data`; `tasks` is tolerated too
    (docs/dashscope.md §Task list)."""
    raw_items = body.get("data")
    if raw_items is None:
        raw_items = body.get("tasks")
    if raw_items is None and isinstance(body.get("output"), dict):
        raw_items = body["output"].get("data")
    if not isinstance(raw_items, list):
        raise ValueError("the list answer has no 'data' array")
    items = tuple(
        TaskListItem(
            task_id=str(item.get("task_id")),
            state=TaskState.parse(item.get("status") or item.get("task_status")),
            model=item.get("model_name"),
            request_id=item.get("request_id"),
            created=parse_time(item.get("gmt_create")),
            started=parse_time(item.get("start_time")),
            ended=parse_time(item.get("end_time")),
        )
        for item in raw_items
        if isinstance(item, dict) and item.get("task_id")
    )
    return TaskPage(
        items=items,
        total=_as_int(body.get("total")) or len(items),
        page_no=_as_int(body.get("page_no")) or 1,
        page_size=_as_int(body.get("page_size")) or len(items),
        total_pages=_as_int(body.get("total_page")) or 1,
        request_id=body.get("request_id"),
    )
