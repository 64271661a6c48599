"""The simulator's state: keys, clock, tasks, rate windows, faults and counters.

Everything here runs on the server's event loop; other threads go through `SimulatorThread`.
"""

from __future__ import annotations

import hashlib
import random
import secrets
import uuid
from collections import Counter, defaultdict
from typing import Any

import aiohttp

from bot.simulator.clock import Clock
from bot.simulator.config import SimulatorConfig
from bot.simulator.errors import (
    IMAGE_MODERATION_MESSAGE,
    INVALID_API_KEY,
    NO_API_KEY,
    OUTPUT_MODERATION_MESSAGE,
    TASK_FAILURES,
    THROTTLED,
    ApiError,
    failure_message,
)
from bot.simulator.faults import FaultSettings
from bot.simulator.markers import find_markers
from bot.simulator.models import MAX_SEED, MODELS
from bot.simulator.render import RenderCache
from bot.simulator.rules import GenerationRequest
from bot.simulator.tasks import Outcome, Task, TaskStore
from bot.simulator.throttle import SlidingWindow

# Partly failed tasks alternate between the two per-image failures the docs show.
IMAGE_FAILURES = (
    ("DataInspectionFailed", OUTPUT_MODERATION_MESSAGE),
    ("InternalError.Timeout", TASK_FAILURES["InternalError.Timeout"][1]),
)


class Simulator:
    """DashScope as far as a client can tell; `create_app(sim)` puts it on the wire."""

    def __init__(self, config: SimulatorConfig | None = None) -> None:
        self.config = config or SimulatorConfig()
        self.clock = Clock()
        self.keys = self.config.key_regions()
        self.submit_rps = {
            name: (self.config.submit_rps or {}).get(name, spec.submit_rps)
            for name, spec in MODELS.items()
        }
        self.max_in_flight = {
            name: (self.config.max_in_flight or {}).get(name, spec.max_in_flight)
            for name, spec in MODELS.items()
        }
        self.url_secret = secrets.token_bytes(16)
        self.renders = RenderCache()
        self.clips = RenderCache(size=4)  # MP4s by their ClipSpec (not cleared: pure functions)
        self.http: aiohttp.ClientSession | None = None  # opened and closed with the app
        self.stopping = False  # set when the server shuts down: synchronous calls give up
        self.reset()

    def reset(self) -> None:
        """Back to the start: config faults and TTLs, no tasks, zero counters, true time."""
        seed = self.config.seed
        # Task ids stay unique across resets (DashScope never reuses one), though a seeded
        # simulator repeats everything else.
        self._generation = getattr(self, "_generation", -1) + 1
        self.faults: FaultSettings = self.config.fault_settings()
        self.store = TaskStore(self.max_in_flight)
        self.clock.reset()
        self.renders.clear()
        self._rng = random.Random(seed)
        self._fault_rng = random.Random(None if seed is None else seed + 1)
        self._submit_windows: defaultdict[str, SlidingWindow] = defaultdict(SlidingWindow)
        self._query_windows: defaultdict[str, SlidingWindow] = defaultdict(SlidingWindow)
        self._all_queries = SlidingWindow()
        self.submissions = 0
        self.task_queries = 0
        self.peak_query_rate = 0
        self.throttled = 0
        self.faults_injected: Counter[str] = Counter()
        self.requests: Counter[str] = Counter()

    def now(self) -> float:
        return self.clock.now()

    def set_faults(self, **updates: Any) -> dict[str, Any]:
        """Merge `updates` into the fault settings (ValueError if any is bad); returns them all."""
        self.faults = self.faults.merged(updates)
        return self.faults.as_dict()

    def advance_clock(self, seconds: float) -> None:
        self.clock.advance(seconds)

    def pick_fault(self, route: str) -> str | None:
        action = self.faults.pick(route, self._fault_rng)
        if action:
            self.faults_injected[action] += 1
        return action

    def drop_after_submit(self) -> bool:
        return self._fault_rng.random() < self.faults.drop_after_submit

    def authenticate(self, header: str | None) -> str:
        """The key id for an `Authorization` header, or the 401 the service gives."""
        value = (header or "").strip()
        scheme, _, key = value.partition(" ")
        bearer = scheme.lower() == "bearer"
        key = key.strip()
        if not value or (bearer and not key):
            raise ApiError.of(NO_API_KEY)
        if not bearer or self.keys.get(key) != self.config.region:
            raise ApiError.of(INVALID_API_KEY)
        return str(
            int.from_bytes(hashlib.sha256(key.encode()).digest()[:4], "big") % 900000 + 100000
        )

    def admit_submission(self, model: str) -> None:
        if not self._submit_windows[model].try_acquire(self.now(), self.submit_rps[model]):
            self.throttled += 1
            raise ApiError.of(THROTTLED)

    def admit_query(self, kind: str) -> None:
        now = self.now()
        if kind == "get":
            self.task_queries += 1
        self.peak_query_rate = max(self.peak_query_rate, self._all_queries.hit(now))
        if not self._query_windows[kind].try_acquire(now, self.config.task_query_qps):
            self.throttled += 1
            raise ApiError.of(THROTTLED)

    def create_task(
        self,
        request: GenerationRequest,
        size: tuple[int, int],
        inputs: tuple[bytes, ...],
        request_id: str,
        api_key_id: str,
        *,
        listed: bool = True,
        soundtrack: bytes = b"",
    ) -> Task:
        """Plan a task's outcome and duration from its prompt and the faults, and queue it."""
        markers = find_markers(request.prompt)
        failure: tuple[str, str] | None = None
        failed_images: dict[int, tuple[str, str]] = {}
        if markers.fail:
            failure = (markers.fail, failure_message(markers.fail))
        elif markers.moderate_image:
            failure = ("DataInspectionFailed", IMAGE_MODERATION_MESSAGE)
        elif markers.moderate_output:
            failure = ("DataInspectionFailed", OUTPUT_MODERATION_MESSAGE)
        else:
            failing = min(
                markers.partial if markers.partial is not None else self.faults.partial_failures,
                request.n,
            )
            if failing == request.n:
                failure = ("DataInspectionFailed", OUTPUT_MODERATION_MESSAGE)
            else:
                first = request.n - failing
                failed_images = {
                    i: IMAGE_FAILURES[(i - first) % 2] for i in range(first, request.n)
                }
        bits = self._rng.getrandbits(128) ^ (self._generation << 64)
        task_id = str(uuid.UUID(int=bits, version=4))
        seed = request.seed if request.seed is not None else self._rng.randint(0, MAX_SEED)
        if markers.slow is not None:
            duration = markers.slow
        else:
            low, high = request.model.duration
            work = request.video.work_factor() if request.video else 1 + 0.15 * (request.n - 1)
            duration = self._rng.uniform(low, high) * work / self.config.speed
        task = Task(
            task_id=task_id,
            request_id=request_id,
            model=request.model,
            route=request.route,
            prompt=request.prompt,
            negative_prompt=request.negative_prompt,
            n=request.n,
            size=size,
            seed=seed,
            prompt_extend=request.prompt_extend,
            watermark=request.watermark,
            inputs=inputs,
            duration=duration,
            outcome=Outcome(failure, failed_images),
            submitted_at=self.now(),
            api_key_id=api_key_id,
            listed=listed,
            tool=request.tool,
            video=request.video,
            video_mb=markers.video_mb if markers.video_mb is not None else self.faults.video_mb,
            soundtrack=soundtrack,
        )
        self.store.add(task, task.submitted_at)
        self.submissions += 1
        if self.submissions % 256 == 0:
            self.store.prune(self.now(), self.faults.task_ttl, self.faults.result_ttl)
        return task

    def status(self, task: Task) -> str:
        now = self.now()
        self.store.refresh(task, now)
        return task.status(now, self.faults.task_ttl)

    def state(self) -> dict[str, Any]:
        now = self.now()
        return {
            "region": self.config.region,
            "speed": self.config.speed,
            "clock_offset": self.clock.offset,
            "tasks": self.store.counts(now, self.faults.task_ttl),
            "tasks_total": len(self.store.listed()),
            "sync_calls": len(self.store.tasks) - len(self.store.listed()),
            "in_flight": {
                model: count
                for model, pool in sorted(self.store.pools.items())
                if (count := pool.in_flight(now))
            },
            "queued": {
                model: len(pool.pending)
                for model, pool in sorted(self.store.pools.items())
                if pool.pending
            },
            "submissions": self.submissions,
            "task_queries": self.task_queries,
            "peak_query_rate": self.peak_query_rate,
            "throttled": self.throttled,
            "faults_injected": dict(self.faults_injected),
            "requests": dict(sorted(self.requests.items())),
            "faults": self.faults.as_dict(),
        }
