"""The job engine: accepts jobs, submits them fairly, watches their tasks, delivers their images.

Everything the engine knows about a job is in its database row, and each step is one committed
transition, so a process killed at any moment resumes from the rows (`recover`): queued jobs
re-enter the queue in order, submitted and running tasks are polled again by task id,
deliveries are retried (the delivery port is idempotent per job), and a synchronous call cut
by the restart is refunded and marked retryable.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Protocol

from bot.accounting.quota import Quota
from bot.backoff import Backoff
from bot.dashscope.client import DashScopeClient, raise_for_task
from bot.dashscope.errors import (
    BadRequestError,
    ConnectionFailedError,
    DashScopeError,
    DownloadError,
    DownloadRefused,
    RateLimitedError,
    ServerError,
)
from bot.dashscope.models import MODELS
from bot.dashscope.requests import ImageRequest
from bot.dashscope.results import TaskResult, TaskState
from bot.dashscope.retry import NO_RETRIES
from bot.dispatch.delivery import DeliveredImage, DeliveryError, DeliveryPort
from bot.dispatch.durations import Durations
from bot.dispatch.metrics import Metrics
from bot.dispatch.poller import Poller, Tracked
from bot.dispatch.queue import FairQueue
from bot.dispatch.ratelimit import RateLimiter
from bot.dispatch.waiting import wait_for_event
from bot.errors import Problem, UserError, problems_to_json
from bot.i18n import lang_for, text
from bot.jobs.model import IllegalTransition, Job, JobState, NewJob
from bot.media.downloads import ResultFetcher
from bot.presenter import render, render_all, utc_time
from bot.storage.cluster import LeaseLost
from bot.storage.db import Conn, Database

log = logging.getLogger(__name__)

RESULT_LIFETIME = 24 * 3600.0  # result URLs and task data live 24 h
INPUT_RETENTION = 7 * 24 * 3600.0  # an ended edit's input images are kept this long
# Waits before retrying a failed submission (the model pauses) and a failed delivery.
SUBMIT_BACKOFF = Backoff(initial=2.0, cap=60.0)
DELIVERY_BACKOFF = Backoff(initial=2.0, cap=300.0)


@dataclass(frozen=True)
class EngineConfig:
    max_in_flight: int = 5  # tasks per model at DashScope at once
    submit_rate: float = 5.0  # submissions per second per model
    task_query_rate: float = 10.0  # task queries per second, all tasks together
    use_task_list: bool = True
    notice_target: float = 1.0  # seconds from a task's end to its reading in hand (task lists)
    max_submit_attempts: int = 5
    max_delivery_attempts: int = 8
    delivery_concurrency: int = 4
    stop_grace: float = 10.0  # seconds in-flight calls get to finish on stop


@dataclass(frozen=True)
class CancelOutcome:
    cancelled: bool
    key: str
    values: dict[str, Any]

    def message(self, lang: str = "en") -> str:
        return render(Problem(self.key, self.values), lang_for(lang), moment=utc_time)


class Handover(Protocol):
    """How a process that does not dispatch (a standby of a cluster) hands work to the one that
    does: at once, by a message the dispatcher listens for."""

    async def job_queued(self, job_id: int) -> None: ...

    def queued_in(self, conn: Conn, job_id: int) -> None:
        """`job_queued` as part of the caller's transaction, told when it commits."""

    async def cancel(self, job_id: int, user_id: int, moderator: bool) -> None: ...


# A job accepted by a front end is placed (its status message recorded) within moments; one
# still unplaced after this long lost its front end, and the dispatcher shows it again.
PLACE_GRACE = 30.0
CANCEL_WAIT = 5.0  # seconds a standby waits for the dispatcher to carry out a forwarded cancel
CANCEL_LOOK = 0.25  # seconds between its looks at the job meanwhile


class EngineStopping(UserError):
    """The engine is shutting down and takes no new jobs."""

    message_key = "reply.stopping"


class Engine:
    def __init__(
        self,
        db: Database,
        client: DashScopeClient,
        fetcher: ResultFetcher,
        port: DeliveryPort,
        quota: Quota,
        config: EngineConfig | None = None,
        *,
        metrics: Metrics | None = None,
        clock: Callable[[], float] = time.time,
        handover: Handover | None = None,
        unfenced: Database | None = None,
    ) -> None:
        self.db = db
        # In a cluster: how this process reaches the dispatcher while it is not the one.
        self.handover = handover
        # In a cluster `db` is fenced by the dispatcher's lease: once this process has held
        # it, every write is refused after another process took it over. What a front end
        # writes (placing a job, cancelling a queued one) any process may write, a dispatcher
        # that just lost the lease too: that goes to `unfenced`.
        self.front_db = unfenced or db
        self.store = quota.store
        self.client = client
        self.fetcher = fetcher
        self.port = port
        self.quota = quota
        self.config = config or EngineConfig()
        self.metrics = metrics or Metrics()
        self.clock = clock
        self.queue = FairQueue()
        self.durations = Durations()
        # Jobs holding one of the account's task slots, per model. A set, so that releasing
        # twice (a cancel racing a poll reading) cannot free a slot that another job holds.
        self.slots: dict[str, set[int]] = {}
        self._submit_limiters: dict[str, RateLimiter] = {}
        self._model_pause: dict[str, float] = {}
        self.poller = Poller(
            client.with_retry(NO_RETRIES),
            # No burst: a full bucket of `rate` plus `rate` more within the same second would
            # be twice the account's per-second limit.
            RateLimiter(self.config.task_query_rate, burst=1.0),
            self.durations,
            self.metrics,
            self._on_reading,
            self._on_task_state,
            use_list=self.config.use_task_list,
            notice_target=self.config.notice_target,
            clock=clock,
        )
        self._wake_scheduler = asyncio.Event()
        self._wake_delivery = asyncio.Event()
        self._delivery_due: dict[int, float] = {}
        self._delivering: set[int] = set()
        self._loops: list[asyncio.Task[None]] = []
        self._work: set[asyncio.Task[Any]] = set()
        self._stopping = False
        self._claimed: set[int] = set()  # popped from the queue, submission under way
        self._readings = 0  # finished tasks' readings being handled in the poller's loop

    # --- life ----------------------------------------------------------------------------

    async def start(self) -> None:
        await self.recover()
        for name, loop in (
            ("scheduler", self._scheduler_loop()),
            ("poller", self.poller.run()),
            ("delivery", self._delivery_loop()),
        ):
            self._loops.append(asyncio.create_task(loop, name=f"engine-{name}"))

    @property
    def dispatching(self) -> bool:
        """This process submits, polls and delivers (it was started and is not stopping)."""
        return bool(self._loops) and not self._stopping

    @property
    def standing_by(self) -> bool:
        """A standby of a cluster: its dispatching is the dispatcher's, reached by `handover`."""
        return self.handover is not None and not self.dispatching

    @property
    def healthy(self) -> bool:
        return bool(self._loops) and not any(task.done() for task in self._loops)

    async def stop(self, grace: float | None = None) -> None:
        """Take no new jobs; give in-flight calls `grace` seconds, then cancel what remains.

        Whatever is cut off stays in its committed state and resumes at the next start.
        """
        self._stopping = True
        grace = self.config.stop_grace if grace is None else grace
        # First the loops that start new work (submissions, deliveries), then the work itself.
        starters = [t for t in self._loops if t.get_name() != "engine-poller"]
        for task in starters:
            task.cancel()
        await asyncio.gather(*starters, return_exceptions=True)
        if self._work:
            log.info("engine: waiting up to %.0f s for %d calls in flight", grace, len(self._work))
            _, pending = await asyncio.wait(set(self._work), timeout=grace)
            for task in pending:
                task.cancel()
            log.info("engine: cancelling %s", sorted(t.get_name() for t in pending))
            await asyncio.gather(*pending, return_exceptions=True)
        log.info("engine: stopping the poller")
        for task in self._loops:
            task.cancel()
        await asyncio.gather(*self._loops, return_exceptions=True)
        self._loops.clear()

    def _spawn(self, coroutine: Coroutine[Any, Any, Any], name: str) -> None:
        task = asyncio.create_task(coroutine, name=name)
        self._work.add(task)
        task.add_done_callback(self._work_done)

    def _work_done(self, task: asyncio.Task[Any]) -> None:
        self._work.discard(task)
        if task.cancelled() or task.exception() is None:
            return
        if isinstance(task.exception(), LeaseLost):  # the fence at work: the new one takes over
            log.warning("%s: left to the new dispatcher (%s)", task.get_name(), task.exception())
            return
        log.error("%s failed", task.get_name(), exc_info=task.exception())

    async def recover(self) -> None:
        """Rebuild the in-memory state from the database after a start or a crash."""
        # Inputs are kept a while after a job ends, so Reroll can redo an edit.
        await self.db.write(self.store.prune_inputs, self.clock() - INPUT_RETENTION)
        # A failure the user was not told about, or a job that ended while its status message
        # still shows it running (a crash came in between): tell them now, in the background.
        # Each waits its channel's turn for an edit, and the jobs still to run (a fail-over's
        # above all) must not wait for them.
        for job in await self.store.unnotified_failures(self.clock() - RESULT_LIFETIME):
            lang = lang_for(job.locale)
            told = render_all(job.failure, lang, moment=utc_time) if job.failure else None
            words = told or job.error_message or text("reply.error", lang)
            self._spawn(self._tell_failure(job, words), f"tell-{job.id}")
        for job in await self.store.unnotified_endings(self.clock() - RESULT_LIFETIME):
            self._spawn(self._notify_end(job), f"show-end-{job.id}")
        # Learned durations survive restarts: relearn them from the jobs that finished.
        for model, n, kind, seconds in await self.store.recent_durations():
            self.durations.observe(model, n, seconds, kind)
        for job in await self.store.in_states(
            [JobState.QUEUED, JobState.SUBMITTED, JobState.RUNNING, JobState.DELIVERING]
        ):
            if job.state is JobState.QUEUED:
                await self._adopt(job)
            elif job.state is JobState.DELIVERING:
                self._schedule_delivery(job.id, self.clock())
            elif job.sync:
                await self._fail(job, "Interrupted", Problem("job.interrupted"), retryable=True)
            elif job.task_id:
                self._take_slot(job.model, job.id)
                self._track(job)
            else:  # cannot happen: an async job becomes submitted together with its task id
                await self._fail(job, "NoTask", Problem("reply.error"))
        self._wake_scheduler.set()

    async def _place_again(self, job: Job) -> None:
        """Accepted for a front end, but a crash came before its status message was recorded:
        the front end shows it again and it runs; if it cannot, it fails, refunded, in words."""
        try:
            where = await self.port.place_again(job)
        except Exception as exc:  # a passing failure: run it, the results come regardless
            log.warning("job %s: not shown again (%s); it runs without its status", job.id, exc)
            self.queue.push(job.model, job.user_id, job.id)
            return
        if where is None:
            await self._fail(job, "NotShown", Problem("job.not_shown"))
            return
        status_message_id, thread_id = where
        if status_message_id is not None:
            await self.db.write(
                self.store.update, job.id, status_message_id=status_message_id, thread_id=thread_id
            )
        self.queue.push(job.model, job.user_id, job.id)

    async def adopt_queued(self) -> int:
        """Queue jobs another process inserted (queued rows this engine does not know yet)."""
        adopted = 0
        for job in await self.store.in_states([JobState.QUEUED]):
            if job.id not in self.queue and job.id not in self._claimed:
                adopted += await self._adopt(job)
        if adopted:
            self._wake_scheduler.set()
        return adopted

    async def adopt_one(self, job_id: int) -> int:
        """Queue one job another process inserted and notified (1), or leave it (0): it is
        gone, no longer queued, or already here. One row, where `adopt_queued` reads them all:
        a burst of notifications must not cost the event loop a scan of the queue each."""
        if job_id in self.queue or job_id in self._claimed:
            return 0
        job = await self.store.get(job_id)
        if job is None or job.state is not JobState.QUEUED:
            return 0
        if job_id in self.queue or job_id in self._claimed:  # taken while it was read
            return 0
        adopted = await self._adopt(job)
        if adopted:
            self._wake_scheduler.set()
        return adopted

    async def _adopt(self, job: Job) -> int:
        """Queue a queued job found in the rows (1), or leave it (0): a job accepted for a
        front end but not shown yet is its front end's to place, for `PLACE_GRACE` seconds in
        a cluster (none alone: a restart means its front end is gone); then it is shown again."""
        if job.status_message_id is None and job.channel_id:
            grace = PLACE_GRACE if self.handover is not None else 0.0
            if self.clock() - job.created_at < grace:
                return 0
            await self._place_again(job)
            return 1
        self.queue.push(job.model, job.user_id, job.id)
        return 1

    # --- accepting and cancelling ------------------------------------------------------------

    async def submit_job(self, new: NewJob, *, start: bool = True) -> Job:
        """Reserve quota and queue the job. Raises QuotaExceeded or EngineStopping.

        With `start=False` the job waits (queued, reserved) until `place()`: a front end that
        must first show it somewhere can still cancel it before anything is sent to DashScope.
        """
        if self._stopping:
            raise EngineStopping("the bot is restarting; try again in a minute")
        job = await self.quota.reserve(new)
        if start:
            await self._enqueue(job)
        await self._notify(job)
        return job

    async def _enqueue(self, job: Job) -> None:
        if self.handover is not None and self.standing_by:
            await self.handover.job_queued(job.id)
        elif job.id not in self.queue and job.id not in self._claimed:
            self.queue.push(job.model, job.user_id, job.id)
            self._wake_scheduler.set()

    def position(self, job_id: int) -> int | None:
        return self.queue.position(job_id)

    async def place(
        self, job_id: int, *, status_message_id: int | None, thread_id: int | None
    ) -> Job:
        """Record where a front end shows the job (its status message and thread), and let a
        job submitted with `start=False` go. A job handed over to the cluster's dispatcher is
        the dispatcher's to show from then on: an edit of this process's, coming late, could
        hide the words it ended with (a failure at submission comes at once)."""
        job, handed_over = await self.front_db.write(
            self._place, job_id, status_message_id, thread_id
        )
        if not handed_over:
            if job.state is JobState.QUEUED:  # handed over now if this process stood down
                await self._enqueue(job)
            await self._notify(job)
        return job

    def _place(
        self, conn: Conn, job_id: int, status_message_id: int | None, thread_id: int | None
    ) -> tuple[Job, bool]:
        """The job's place recorded, and whether it was handed over: a standby hands a
        queued job to the dispatcher in the same transaction (told when it commits)."""
        job = self.store.updated(
            conn, job_id, status_message_id=status_message_id, thread_id=thread_id
        )
        assert job is not None
        if job.state is JobState.QUEUED and self.handover is not None and self.standing_by:
            self.handover.queued_in(conn, job.id)
            return job, True
        return job, False

    def expected_seconds(self, job: Job) -> float:
        return self.durations.expected(job.model, job.n, job.timing_kind)

    async def cancel(self, job_id: int, user_id: int, *, moderator: bool = False) -> CancelOutcome:
        job = await self.store.get(job_id)
        values: dict[str, Any] = {"job_id": job_id}
        if job is None:
            return CancelOutcome(False, "job.cancel.not_found", values)
        if job.user_id != user_id and not moderator:
            return CancelOutcome(False, "job.cancel.not_yours", values)
        if job.state.terminal:
            state = Problem(job.state.message_key)  # named in the reader's language
            return CancelOutcome(False, "job.cancel.finished", {**values, "state": state})
        if job.state is JobState.QUEUED:
            self.queue.remove(job_id)
            try:
                await self._end(job, JobState.CANCELLED, charged=0, db=self.front_db)
            except IllegalTransition:  # it was being submitted this very moment
                return await self.cancel(job_id, user_id, moderator=moderator)
            return CancelOutcome(True, "job.cancel.done", values)
        if job.state is JobState.SUBMITTED and self.standing_by:
            return await self._forward_cancel(job, user_id, moderator, values)
        if job.state is JobState.SUBMITTED and not job.sync and job.task_id:
            try:
                await self._still_dispatching()
            except LeaseLost:  # another process dispatches now: it cancels the task
                return await self._forward_cancel(job, user_id, moderator, values)
            try:
                await self.client.cancel_task(job.task_id)
            except BadRequestError:  # UnsupportedOperation: DashScope already started it
                return CancelOutcome(False, "job.cancel.running", values)
            except DashScopeError as exc:
                return CancelOutcome(False, "job.cancel.failed", {**values, "detail": exc.message})
            self.poller.untrack(job.id)
            self._release_slot(job.model, job.id)
            await self._end(job, JobState.CANCELLED, charged=0)
            return CancelOutcome(True, "job.cancel.done", values)
        return CancelOutcome(False, "job.cancel.running", values)

    async def _forward_cancel(
        self, job: Job, user_id: int, moderator: bool, values: dict[str, Any]
    ) -> CancelOutcome:
        """A standby cannot talk to DashScope: the dispatcher cancels the task, and the
        outcome is read from the row (still submitted after `CANCEL_WAIT`: it started)."""
        assert self.handover is not None
        await self.handover.cancel(job.id, user_id, moderator)
        for _ in range(int(CANCEL_WAIT / CANCEL_LOOK)):
            await asyncio.sleep(CANCEL_LOOK)
            now = await self.store.get(job.id)
            if now is not None and now.state is JobState.CANCELLED:
                return CancelOutcome(True, "job.cancel.done", values)
            if now is None or now.state is not JobState.SUBMITTED:
                break
        return CancelOutcome(False, "job.cancel.running", values)

    # --- scheduling --------------------------------------------------------------------------

    def _limiter(self, model: str) -> RateLimiter:
        if model not in self._submit_limiters:
            rate = self.config.submit_rate
            spec = MODELS.get(model)
            if spec is not None and spec.kind.makes_video:
                rate = min(rate, spec.submit_rps)
            self._submit_limiters[model] = RateLimiter(rate, burst=1.0)
        return self._submit_limiters[model]

    def max_in_flight(self, model: str) -> int:
        """Tasks of this model at DashScope at once: the account's figure, and for a video
        model no more than its own (lower) limit."""
        spec = MODELS.get(model)
        if spec is not None and spec.kind.makes_video:
            return min(self.config.max_in_flight, spec.max_in_flight)
        return self.config.max_in_flight

    def in_flight(self, model: str) -> int:
        return len(self.slots.get(model, ()))

    def _take_slot(self, model: str, job_id: int) -> None:
        self.slots.setdefault(model, set()).add(job_id)

    def _release_slot(self, model: str, job_id: int) -> None:
        self.slots.get(model, set()).discard(job_id)
        self._wake_scheduler.set()

    async def _scheduler_loop(self) -> None:
        while not self._stopping:
            self._wake_scheduler.clear()
            next_wake = 3600.0
            popped: list[int] = []
            for model in self.queue.models():
                now = self.clock()
                if self._model_pause.get(model, 0) > now:
                    next_wake = min(next_wake, self._model_pause[model] - now)
                    continue
                while self.in_flight(model) < self.max_in_flight(model):
                    wait = self._limiter(model).try_acquire()
                    if wait > 0:
                        next_wake = min(next_wake, wait)
                        break
                    job_id = self.queue.pop(model)
                    if job_id is None:
                        break
                    self._claimed.add(job_id)
                    self._take_slot(model, job_id)
                    popped.append(job_id)
                    self._spawn(self._submit(job_id, model), f"submit-{job_id}")
            if popped:
                await self._notify_positions()
            await wait_for_event(self._wake_scheduler, next_wake)

    async def _notify_positions(self, limit: int = 25) -> None:
        for job in await self.store.get_many(self.queue.queued()[:limit]):
            await self._notify(job)

    async def _submit(self, job_id: int, model: str) -> None:
        try:
            await self._submit_claimed(job_id, model)
        except LeaseLost:  # another process dispatches now: the job is its to submit
            self._release_slot(model, job_id)
            log.warning("job %s: left to the new dispatcher (the lease moved on)", job_id)
            if self.handover is not None:
                await self.handover.job_queued(job_id)
        except Exception:  # a bug must not strand the job: end it and refund
            log.exception("job %s: submission crashed", job_id)
            self._release_slot(model, job_id)
            job = await self.store.get(job_id)
            if job is not None and job.state.active and not job.task_id:
                await self._fail(job, "InternalError", Problem("reply.error"))
        finally:
            self._claimed.discard(job_id)

    async def _submit_claimed(self, job_id: int, model: str) -> None:
        job = await self.store.get(job_id)
        if job is None or job.state is not JobState.QUEUED:  # cancelled meanwhile
            self._release_slot(model, job_id)
            return
        await self.db.write(self.store.update, job.id, submit_attempts=job.submit_attempts + 1)
        images = await self.store.inputs(job.id) if job.kind.takes_images else ()
        request = job.request(images)
        if job.sync:
            await self._run_sync(job, request)
            return
        try:
            submitted = await self.client.submit(request)
        except DashScopeError as exc:
            self.metrics.inc("wanbot_api_errors_total", code=exc.code or type(exc).__name__)
            self._release_slot(model, job_id)
            await self._submission_failed(job, exc)
            return
        self.metrics.inc("wanbot_submissions_total", model=model)
        try:
            job = await self.db.write(
                self.store.transition,
                job.id,
                JobState.SUBMITTED,
                task_id=submitted.task_id,
                submit_request_id=submitted.request_id,
            )
        except IllegalTransition:  # cancelled while the request was on its way
            log.info("job %s was cancelled during submission; cancelling its task", job_id)
            self._release_slot(model, job_id)
            await self._cancel_orphan(submitted.task_id)
            return
        except LeaseLost:
            # The fence refused to record the task: the new dispatcher submits the job again,
            # so this one must not run (it is cancelled if it has not started yet).
            log.warning(
                "job %s: the lease moved on before task %s was recorded; cancelling the task",
                job_id,
                submitted.task_id,
            )
            await self._cancel_orphan(submitted.task_id)
            raise
        self._track(job)
        await self._notify(job)

    async def _cancel_orphan(self, task_id: str) -> None:
        """Cancel a task no job will follow (it runs on, billed, if it has started)."""
        try:
            await self.client.cancel_task(task_id)
        except DashScopeError as exc:
            log.warning("could not cancel orphan task %s: %s", task_id, exc)

    async def _submission_failed(self, job: Job, exc: DashScopeError) -> None:
        transient = isinstance(exc, RateLimitedError | ServerError | ConnectionFailedError)
        if transient and job.submit_attempts + 1 < self.config.max_submit_attempts:
            pause = exc.retry_after if isinstance(exc, RateLimitedError) else None
            delay = SUBMIT_BACKOFF.delay(job.submit_attempts, pause)
            self._model_pause[job.model] = self.clock() + delay
            self.queue.push(job.model, job.user_id, job.id, front=True)
            log.warning("job %s: submission failed (%s); retrying in %.0f s", job.id, exc, delay)
            self._wake_scheduler.set()
            return
        await self._fail(job, exc.code or type(exc).__name__, *exc.problems)

    async def _run_sync(self, job: Job, request: ImageRequest) -> None:
        job = await self.db.write(self.store.transition, job.id, JobState.SUBMITTED)
        await self._notify(job)
        started = self.clock()
        try:
            result = await self.client.generate(request)
        except DashScopeError as exc:
            self.metrics.inc("wanbot_api_errors_total", code=exc.code or type(exc).__name__)
            self._release_slot(job.model, job.id)
            await self._fail(job, exc.code or "Error", *exc.problems)
            return
        self._release_slot(job.model, job.id)
        self.durations.observe(job.model, job.n, self.clock() - started, job.timing_kind)
        await self._finished(job, result)

    # --- watching tasks ----------------------------------------------------------------------

    def _track(self, job: Job) -> None:
        self.poller.track(
            Tracked(
                job_id=job.id,
                task_id=job.task_id or "",
                model=job.model,
                n=job.n,
                kind=job.timing_kind,
                submitted_at=job.submitted_at or job.created_at,
                state=TaskState.RUNNING if job.state is JobState.RUNNING else TaskState.PENDING,
            )
        )

    async def _on_task_state(self, tracked: Tracked, state: TaskState) -> None:
        if state is not TaskState.RUNNING:
            return
        try:
            job = await self.db.write(self.store.transition, tracked.job_id, JobState.RUNNING)
        except IllegalTransition:
            return
        await self._notify(job)

    async def _on_reading(self, tracked: Tracked, result: TaskResult) -> None:
        """A finished task's reading, handled in the poller's loop: counted while under way,
        so `idle` does not answer between a failure's commit and its notice."""
        self._readings += 1
        try:
            await self._take_reading(tracked, result)
        finally:
            self._readings -= 1

    async def _take_reading(self, tracked: Tracked, result: TaskResult) -> None:
        self._release_slot(tracked.model, tracked.job_id)
        if result.submit_time and result.end_time:
            seconds = (result.end_time - result.submit_time).total_seconds()
            self.durations.observe(tracked.model, tracked.n, seconds, tracked.kind)
        job = await self.store.get(tracked.job_id)
        if job is None or job.state.terminal:
            return
        try:
            raise_for_task(result)
        except DashScopeError as exc:
            self.metrics.inc("wanbot_api_errors_total", code=exc.code or type(exc).__name__)
            await self._fail(job, exc.code or "TaskFailed", *exc.problems)
            return
        await self._finished(job, result)

    async def _finished(self, job: Job, result: TaskResult) -> None:
        """A task succeeded: keep its result URLs and hand the job to delivery."""
        job = await self.db.write(self._save_result, job.id, result)
        await self._notify(job)
        self._schedule_delivery(job.id, self.clock())

    # --- delivering --------------------------------------------------------------------------

    def _schedule_delivery(self, job_id: int, when: float) -> None:
        self._delivery_due[job_id] = when
        self._wake_delivery.set()

    async def _delivery_loop(self) -> None:
        slots = asyncio.Semaphore(self.config.delivery_concurrency)
        while True:
            self._wake_delivery.clear()
            now = self.clock()
            for job_id, due in sorted(self._delivery_due.items(), key=lambda item: item[1]):
                if due > now or job_id in self._delivering:
                    continue
                del self._delivery_due[job_id]
                self._delivering.add(job_id)
                self._spawn(self._deliver_with(slots, job_id), f"deliver-{job_id}")
            pending = list(self._delivery_due.values())
            wait = max(0.0, min(pending) - self.clock()) if pending else 3600.0
            await wait_for_event(self._wake_delivery, wait)

    async def _deliver_with(self, slots: asyncio.Semaphore, job_id: int) -> None:
        try:
            async with slots:
                await self._deliver(job_id)
        finally:
            self._delivering.discard(job_id)

    async def _deliver(self, job_id: int) -> None:
        job = await self.store.get(job_id)
        if job is None or job.state is not JobState.DELIVERING:
            return
        results = [r for r in await self.store.results(job_id) if r.url]
        images: list[DeliveredImage] = []
        transient: DownloadError | None = None
        refused: DownloadRefused | None = None
        now = self.clock()
        video = job.kind.makes_video
        for result in results:
            if result.expires_at is not None and result.expires_at < now:
                continue  # its URL has expired: it cannot be delivered any more
            try:
                download = await self.fetcher.fetch(result.url or "", video=video)
            except DownloadRefused as exc:  # off the allow-list or over the cap: permanent
                refused = exc
                continue
            except DownloadError as exc:
                if exc.status in (403, 404):  # expired or gone: permanent
                    continue
                transient = exc
                break
            images.append(
                DeliveredImage(
                    result.position,
                    download.content,
                    download.content_type,
                    # A video's link, for when it is too large to upload even re-encoded.
                    url=result.url if video else None,
                    expires_at=result.expires_at if video else None,
                )
            )
        await self._still_dispatching()
        try:
            if transient is not None:
                raise DeliveryError(f"download failed: {transient.message}")
            if not images:
                detail = "no result image could be downloaded"
                if refused is not None:
                    detail += f" ({refused.message})"
                raise DeliveryError(detail, retryable=False)
            message_ids = await self.port.deliver(job, images)
        except Exception as exc:  # any failure of the port is a failed attempt, retried later
            if not isinstance(exc, DeliveryError):
                log.exception("job %s: delivery port failed", job.id)
                exc = DeliveryError(f"{type(exc).__name__}: {exc}")
            self.metrics.inc("wanbot_delivery_failures_total")
            await self._delivery_failed(job, exc)
            return
        delivered = [
            (image.position, message_id)
            for image, message_id in zip(images, message_ids, strict=False)
        ]
        job = await self.db.write(self._record_delivery, job, delivered)
        self._count_charge(job, len(images))
        await self._notify_end(job)

    async def _delivery_failed(self, job: Job, exc: DeliveryError) -> None:
        attempts = job.delivery_attempts + 1
        if exc.retryable and attempts < self.config.max_delivery_attempts:
            delay = DELIVERY_BACKOFF.delay(job.delivery_attempts)
            await self.db.write(
                self.store.update,
                job.id,
                delivery_attempts=attempts,
                next_delivery_at=self.clock() + delay,
            )
            log.warning("job %s: delivery failed (%s); retry in %.0f s", job.id, exc, delay)
            self._schedule_delivery(job.id, self.clock() + delay)
            return
        # The detail (URLs, hosts, Discord's answer) goes to the log and Info, not the words.
        log.warning("job %s: delivery failed for good: %s", job.id, exc)
        await self._fail(
            job, "DeliveryFailed", Problem("job.delivery_failed", {"detail": str(exc)})
        )

    # --- endings -------------------------------------------------------------------------------

    def _save_result(self, conn: Conn, job_id: int, result: TaskResult) -> Job:
        self.store.save_results(conn, job_id, result, self.clock() + RESULT_LIFETIME)
        return self.store.transition(
            conn,
            job_id,
            JobState.DELIVERING,
            result_request_id=result.request_id,
            image_count=result.billed_images,
            actual_prompt=result.actual_prompt,
            result_size=result.size,
            video_seconds=result.video_seconds,  # what a delivered video is charged
        )

    def _record_delivery(
        self, conn: Conn, job: Job, delivered: list[tuple[int, int | None]]
    ) -> Job:
        for position, message_id in delivered:
            self.store.mark_delivered(conn, job.id, position, message_id)
        return self.quota.end(conn, job.id, JobState.DONE, len(delivered))

    async def _still_dispatching(self) -> None:
        """In a cluster, before posting: a write, so the lease's fence refuses (LeaseLost) if
        another process has taken over. A submission is preceded by a write of its own."""
        if self.handover is not None:
            await self.db.write(_nothing)

    def _count_charge(self, job: Job, charged: int) -> None:
        self.metrics.inc("wanbot_images_charged_total", charged)
        self.metrics.inc("wanbot_images_refunded_total", job.n - charged)

    async def _end(
        self, job: Job, state: JobState, *, charged: int, db: Database | None = None, **fields: Any
    ) -> Job:
        ended = await (db or self.db).write(self.quota.end, job.id, state, charged, **fields)
        self._count_charge(job, charged)
        await self._notify_end(ended, db)
        return ended

    async def _fail(self, job: Job, code: str, *problems: Problem, retryable: bool = False) -> None:
        """End the job failed and refunded. Its problems are kept as data, so each reader is
        told them in their own language; its notice and status say them in the job's."""
        message = render_all(problems, lang_for(job.locale), moment=utc_time)
        try:
            ended = await self._end(
                job,
                JobState.FAILED,
                charged=0,
                error_code=code,
                error_message=message,
                error_problems=problems_to_json(problems),
                retryable=int(retryable),
            )
        except IllegalTransition:
            return
        await self._tell_failure(ended, message)

    async def _tell_failure(self, job: Job, message: str) -> None:
        """Tell the member why the job failed, recorded once told, so a notice cut off by a
        crash or refused for a passing reason is told again at the next start."""
        try:
            told = await self.port.failed(job, message)
        except Exception:
            log.exception("telling the user about failed job %s", job.id)
            return
        if told is False:
            return
        await self.db.write(self.store.update, job.id, notified_at=self.clock())

    async def _notify_end(self, job: Job, db: Database | None = None) -> None:
        """The final status of a done or cancelled job, recorded once shown, so a crash in
        between is made good at the next start. A failed job's final status is its failure
        notice (`_tell_failure`): one edit, not the same words twice."""
        if job.state is JobState.FAILED:
            return
        shown = await self._notify(job)
        if shown is not False:
            await (db or self.db).write(self.store.update, job.id, notified_at=self.clock())

    async def _notify(self, job: Job) -> bool | None:
        """The port's answer (False: a final status was not shown), False if it raised."""
        try:
            return await self.port.status_changed(job, self.queue.position(job.id))
        except Exception:
            log.exception("status update for job %s", job.id)
            return False

    # --- introspection -------------------------------------------------------------------------

    async def gauges(self) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
        counts = await self.store.count_by_state()
        return {
            "wanbot_jobs": {(("state", s.value),): float(n) for s, n in counts.items()},
            "wanbot_queue_depth": {(): float(len(self.queue))},
            "wanbot_tasks_in_flight": {(): float(len(self.poller.tracked))},
        }

    async def idle(self) -> bool:
        """No job in progress, and no submission or delivery still finishing its last step (a
        job's row may read failed while its failure notice is being told)."""
        if self._work or self._readings:
            return False
        counts = await self.store.count_by_state()
        return all(counts[state] == 0 for state in JobState if state.active)


def _nothing(conn: Conn) -> None:
    """A write with nothing in it: what it checks is the fence around every write."""
