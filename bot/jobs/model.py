"""A job and its life cycle: queued → submitted → running → delivering → done | failed | cancelled.

Every transition is one committed row update (see `JobStore.transition`); a transition not in
`TRANSITIONS` raises `IllegalTransition`, so a bug cannot move a finished job again.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from enum import StrEnum
from functools import cached_property
from typing import Any

from bot.dashscope.models import MODELS, Kind
from bot.dashscope.requests import ImageRequest
from bot.errors import Problem, problems_from_json


class JobState(StrEnum):
    QUEUED = "queued"
    SUBMITTED = "submitted"  # async: DashScope has the task; sync: the call is in flight
    RUNNING = "running"
    DELIVERING = "delivering"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL

    @property
    def active(self) -> bool:
        return not self.terminal

    @property
    def message_key(self) -> str:
        """The catalogue key of the state's name as a member reads it."""
        return f"state.{self.value}"


TERMINAL = frozenset({JobState.DONE, JobState.FAILED, JobState.CANCELLED})

TRANSITIONS: dict[JobState, frozenset[JobState]] = {
    JobState.QUEUED: frozenset({JobState.SUBMITTED, JobState.FAILED, JobState.CANCELLED}),
    JobState.SUBMITTED: frozenset(
        {JobState.RUNNING, JobState.DELIVERING, JobState.FAILED, JobState.CANCELLED}
    ),
    JobState.RUNNING: frozenset({JobState.DELIVERING, JobState.FAILED}),
    JobState.DELIVERING: frozenset({JobState.DONE, JobState.FAILED}),
    JobState.DONE: frozenset(),
    JobState.FAILED: frozenset(),
    JobState.CANCELLED: frozenset(),
}

# The column that records when a job entered each state.
STATE_TIME_COLUMN: dict[JobState, str] = {
    JobState.SUBMITTED: "submitted_at",
    JobState.RUNNING: "running_at",
    JobState.DELIVERING: "delivering_at",
    JobState.DONE: "finished_at",
    JobState.FAILED: "finished_at",
    JobState.CANCELLED: "finished_at",
}


def timing_kind(kind: str, duration: int | None, resolution: str | None) -> str:
    """What task durations are learned by: the kind, and for a video its seconds and
    resolution as well ("animate:10:1080P"): a 10 s 1080P clip takes longer than a 5 s 480P one."""
    return f"{kind}:{duration}:{resolution}" if duration else kind


def stored_kind(kind: Kind) -> tuple[str, str | None]:
    """A kind as the jobs row holds it: `kind` is text-to-image or edit, all the first schema
    allows (every kind with input images is stored as an edit, the others as text-to-image),
    and `tool` the kind itself
    when it is neither. `Job.from_row` reads `tool` first."""
    if kind in (Kind.TEXT_TO_IMAGE, Kind.EDIT):
        return kind.value, None
    return (Kind.EDIT if kind.takes_images else Kind.TEXT_TO_IMAGE).value, kind.value


class IllegalTransition(Exception):
    def __init__(self, job_id: int, current: JobState | None, target: JobState) -> None:
        super().__init__(f"job {job_id}: cannot go from {current} to {target}")
        self.job_id = job_id
        self.current = current
        self.target = target


@dataclass(frozen=True)
class JobParams:
    """What the user asked for, apart from the model, n and the input images."""

    prompt: str
    negative_prompt: str | None = None
    size: str | None = None
    seed: int | None = None
    prompt_extend: bool | None = None
    watermark: bool | None = None
    function: str | None = None
    strength: float | None = None
    upscale_factor: int | None = None
    expand: tuple[float, float, float, float] | None = None
    style: str | None = None
    source_image: int | None = None
    duration: int | None = None  # video: seconds
    resolution: str | None = None  # video: "480P" | "720P" | "1080P"
    audio: bool | None = None  # video: sound

    def to_json(self) -> str:
        # Unset tool fields are left out, so the rows of plain jobs stay as they were.
        data = {k: v for k, v in self.__dict__.items() if v is not None or k in _BASE_PARAMS}
        return json.dumps(data, ensure_ascii=False, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> JobParams:
        data = json.loads(text)
        params = cls(**{k: data.get(k) for k in cls.__dataclass_fields__})
        expand = params.expand
        return replace(params, expand=tuple(expand)) if expand is not None else params  # type: ignore[arg-type]


_BASE_PARAMS = frozenset(
    ("prompt", "negative_prompt", "size", "seed", "prompt_extend", "watermark")
)


@dataclass(frozen=True)
class NewJob:
    """A validated request about to be accepted."""

    request: ImageRequest
    user_id: int
    guild_id: int | None = None
    channel_id: int | None = None
    thread_id: int | None = None
    locale: str = "en"
    sync: bool = False
    parent_job_id: int | None = None
    role_ids: tuple[int, ...] = ()  # the member's roles, for role overrides of the limits

    @property
    def kind(self) -> Kind:
        return self.request.kind

    @cached_property
    def params(self) -> JobParams:
        r = self.request
        return JobParams(
            r.prompt,
            r.negative_prompt,
            r.size,
            r.seed,
            r.prompt_extend,
            r.watermark,
            r.function,
            r.strength,
            r.upscale_factor,
            r.expand,
            r.style,
            r.source_image,
            r.duration,
            r.resolution,
            r.audio,
        )


@dataclass(frozen=True)
class Job:
    id: int
    state: JobState
    kind: Kind
    model: str
    sync: bool
    params: JobParams
    n: int
    user_id: int
    guild_id: int | None
    channel_id: int | None
    thread_id: int | None
    status_message_id: int | None
    locale: str
    parent_job_id: int | None
    task_id: str | None
    submit_request_id: str | None
    result_request_id: str | None
    actual_prompt: str | None
    image_count: int | None
    error_code: str | None
    error_message: str | None
    retryable: bool
    submit_attempts: int
    delivery_attempts: int
    next_delivery_at: float | None
    created_at: float
    submitted_at: float | None
    running_at: float | None
    delivering_at: float | None
    finished_at: float | None
    updated_at: float
    # Why it failed, as data (error_message holds the same in the job's language).
    failure: tuple[Problem, ...] = ()
    result_size: str | None = None  # "W*H" as DashScope reported it (usage.size), if it did
    deleted_at: float | None = None  # deleted by its owner or a moderator: gone for good
    deleted_by: int | None = None
    video_seconds: float | None = None  # a video's seconds as DashScope reported them (billed)
    extra: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def timing_kind(self) -> str:
        """The kind its task duration is learned by (see `timing_kind`)."""
        video = self.kind.makes_video
        return timing_kind(
            self.kind.value,
            self.params.duration if video else None,
            self.params.resolution if video else None,
        )

    @property
    def idempotency_key(self) -> str:
        """Stable per job: the Discord layer passes it as the message nonce (≤ 25 chars)."""
        return f"wanbot-job-{self.id}"

    def request(self, images: tuple[str, ...] = ()) -> ImageRequest:
        p = self.params
        return ImageRequest(
            model=self.model,
            prompt=p.prompt,
            negative_prompt=p.negative_prompt,
            size=p.size,
            n=self.n,
            seed=p.seed,
            prompt_extend=p.prompt_extend,
            watermark=p.watermark,
            images=images,
            function=p.function,
            strength=p.strength,
            upscale_factor=p.upscale_factor,
            expand=p.expand,
            purpose=self.kind if self.kind is not self._models_kind else None,
            style=p.style,
            source_image=p.source_image,
            duration=p.duration,
            resolution=p.resolution,
            audio=p.audio,
        )

    @property
    def _models_kind(self) -> Kind:
        """The kind its model and function make (a model no longer known: the job's own)."""
        spec = MODELS.get(self.model)
        return spec.kind_of(self.params.function) if spec else self.kind

    @classmethod
    def queued(cls, job_id: int, new: NewJob, now: float) -> Job:
        """The row `JobStore.insert` has just written, without reading it back."""
        return cls(
            id=job_id,
            state=JobState.QUEUED,
            kind=new.kind,
            model=new.request.model,
            sync=new.sync,
            params=new.params,
            n=new.request.n,
            user_id=new.user_id,
            guild_id=new.guild_id,
            channel_id=new.channel_id,
            thread_id=new.thread_id,
            status_message_id=None,
            locale=new.locale,
            parent_job_id=new.parent_job_id,
            task_id=None,
            submit_request_id=None,
            result_request_id=None,
            actual_prompt=None,
            image_count=None,
            error_code=None,
            error_message=None,
            retryable=False,
            submit_attempts=0,
            delivery_attempts=0,
            next_delivery_at=None,
            created_at=now,
            submitted_at=None,
            running_at=None,
            delivering_at=None,
            finished_at=None,
            updated_at=now,
        )

    @classmethod
    def from_row(cls, row: Any) -> Job:
        return cls(
            id=row["id"],
            state=JobState(row["state"]),
            kind=Kind(row["tool"] or row["kind"]),
            model=row["model"],
            sync=row["mode"] == "sync",
            params=JobParams.from_json(row["params"]),
            n=row["n"],
            user_id=row["user_id"],
            guild_id=row["guild_id"],
            channel_id=row["channel_id"],
            thread_id=row["thread_id"],
            status_message_id=row["status_message_id"],
            locale=row["locale"],
            parent_job_id=row["parent_job_id"],
            task_id=row["task_id"],
            submit_request_id=row["submit_request_id"],
            result_request_id=row["result_request_id"],
            actual_prompt=row["actual_prompt"],
            image_count=row["image_count"],
            error_code=row["error_code"],
            error_message=row["error_message"],
            retryable=bool(row["retryable"]),
            submit_attempts=row["submit_attempts"],
            delivery_attempts=row["delivery_attempts"],
            next_delivery_at=row["next_delivery_at"],
            created_at=row["created_at"],
            submitted_at=row["submitted_at"],
            running_at=row["running_at"],
            delivering_at=row["delivering_at"],
            finished_at=row["finished_at"],
            updated_at=row["updated_at"],
            failure=problems_from_json(row["error_problems"]) if row["error_problems"] else (),
            result_size=row["result_size"],
            deleted_at=row["deleted_at"],
            deleted_by=row["deleted_by"],
            video_seconds=row["video_seconds"],
        )


@dataclass(frozen=True)
class ResultImage:
    position: int
    url: str | None
    expires_at: float | None
    failure_code: str | None
    failure_message: str | None
    delivered_message_id: int | None
