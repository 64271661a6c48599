"""Tasks, their life cycle and the per-model queue.

A task's state is derived from the clock when someone looks, not pushed by timers: each model
has `max_in_flight` slots; a task that finds them full waits PENDING (FIFO) and starts the
moment an earlier one ends, which `ModelPool.advance(now)` replays in end-time order. So a
thousand tasks cost a thousand small records and a heap, nothing more.
"""

from __future__ import annotations

import heapq
from collections import Counter, deque
from dataclasses import dataclass, field

from bot.simulator.imageedit import ToolCall
from bot.simulator.models import ModelSpec, Route
from bot.simulator.video import VideoCall

PENDING = "PENDING"
RUNNING = "RUNNING"
SUCCEEDED = "SUCCEEDED"
FAILED = "FAILED"
CANCELED = "CANCELED"
UNKNOWN = "UNKNOWN"
TERMINAL = frozenset({SUCCEEDED, FAILED, CANCELED, UNKNOWN})


@dataclass(frozen=True)
class Outcome:
    """How a task ends: a whole-task failure, or per-image failures (index -> code, message)."""

    failure: tuple[str, str] | None = None
    failed_images: dict[int, tuple[str, str]] = field(default_factory=dict)


@dataclass(eq=False)
class Task:
    task_id: str
    request_id: str
    model: ModelSpec
    route: Route
    prompt: str
    negative_prompt: str
    n: int
    size: tuple[int, int]
    seed: int
    prompt_extend: bool
    watermark: bool
    inputs: tuple[bytes, ...]  # an edit's input images, downscaled PNGs (image tools: whole)
    duration: float  # running time in real seconds
    outcome: Outcome
    submitted_at: float
    api_key_id: str
    listed: bool = True  # synchronous calls run as tasks but are not visible as such
    tool: ToolCall | None = None  # wanx2.1-imageedit's function and parameters
    video: VideoCall | None = None  # a video's seconds, resolution and sound
    video_mb: float = 0.0  # make the MP4 at least this many MB (sim:video-mb, video_mb fault)
    soundtrack: bytes = b""  # audio_url's sound, decoded (clip.decode_soundtrack)
    started_at: float | None = None
    ended_at: float | None = None
    canceled_at: float | None = None

    def status(self, now: float, ttl: float) -> str:
        if now >= self.submitted_at + ttl:
            return UNKNOWN
        if self.canceled_at is not None:
            return CANCELED
        if self.started_at is None:
            return PENDING
        assert self.ended_at is not None
        if now < self.ended_at:
            return RUNNING
        return FAILED if self.outcome.failure else SUCCEEDED

    def succeeded_images(self) -> list[int]:
        if self.outcome.failure:
            return []
        return [i for i in range(self.n) if i not in self.outcome.failed_images]

    def finished_at(self) -> float | None:
        """When the task stopped taking a slot or a place in the queue, if it has."""
        return self.canceled_at if self.canceled_at is not None else self.ended_at


class ModelPool:
    """One model's in-flight slots and its FIFO queue."""

    def __init__(self, slots: int) -> None:
        self.slots = slots
        self.pending: deque[Task] = deque()
        self._running: list[tuple[float, int, Task]] = []  # heap by end time
        self._seq = 0

    def _start(self, task: Task, at: float) -> None:
        task.started_at = at
        task.ended_at = at + task.duration
        self._seq += 1
        heapq.heappush(self._running, (task.ended_at, self._seq, task))

    def advance(self, now: float) -> None:
        """Replay every end (and the start it lets through) up to `now`."""
        while self._running and self._running[0][0] <= now:
            ended_at, _, _ = heapq.heappop(self._running)
            if self.pending:
                self._start(self.pending.popleft(), ended_at)

    def submit(self, task: Task, now: float) -> None:
        self.advance(now)
        if len(self._running) < self.slots:
            self._start(task, now)
        else:
            self.pending.append(task)

    def cancel(self, task: Task, now: float) -> bool:
        self.advance(now)
        if task.started_at is not None or task.canceled_at is not None:
            return False
        self.pending.remove(task)
        task.canceled_at = now
        return True

    def in_flight(self, now: float) -> int:
        self.advance(now)
        return len(self._running)


class TaskStore:
    def __init__(self, slots: dict[str, int]) -> None:
        self._slots = slots
        self.tasks: dict[str, Task] = {}
        self.pools: dict[str, ModelPool] = {}

    def pool(self, model: str) -> ModelPool:
        pool = self.pools.get(model)
        if pool is None:
            pool = self.pools[model] = ModelPool(self._slots[model])
        return pool

    def add(self, task: Task, now: float) -> None:
        self.tasks[task.task_id] = task
        self.pool(task.model.name).submit(task, now)

    def get(self, task_id: str, now: float) -> Task | None:
        """Any task, synchronous calls included (their results are served like the others)."""
        task = self.tasks.get(task_id)
        if task is not None:
            self.refresh(task, now)
        return task

    def visible(self, task_id: str, now: float) -> Task | None:
        """A task the task API shows: synchronous calls are not tasks to their callers."""
        task = self.get(task_id, now)
        return task if task is not None and task.listed else None

    def listed(self) -> list[Task]:
        return [task for task in self.tasks.values() if task.listed]

    def refresh(self, task: Task, now: float) -> None:
        """Bring the task's model queue up to `now`, so `task.status(now, ...)` is current."""
        self.pool(task.model.name).advance(now)

    def advance(self, now: float) -> None:
        for pool in self.pools.values():
            pool.advance(now)

    def cancel(self, task: Task, now: float) -> bool:
        return self.pool(task.model.name).cancel(task, now)

    def counts(self, now: float, ttl: float) -> dict[str, int]:
        self.advance(now)
        counts = Counter(task.status(now, ttl) for task in self.listed())
        return {status: counts.get(status, 0) for status in (PENDING, RUNNING, *sorted(TERMINAL))}

    def prune(self, now: float, task_ttl: float, result_ttl: float) -> None:
        """Forget tasks nobody can ask about any more: expired and with expired result URLs."""
        self.advance(now)
        gone = [
            task_id
            for task_id, task in self.tasks.items()
            if (finished := task.finished_at()) is not None
            and finished <= now
            and now >= task.submitted_at + task_ttl
            and now >= finished + result_ttl
        ]
        for task_id in gone:
            del self.tasks[task_id]
