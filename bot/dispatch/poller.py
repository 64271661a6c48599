"""One loop that watches every in-flight DashScope task under a global query budget.

Two ways of noticing that a task finished:

* **The list** (`GET /tasks?model_name=…&start_time=…`): one request reports the state of every
  task of a model submitted in the window. While any tracked task could be finishing (it has run
  longer than the shortest duration seen for its model and n), the poller lists again and
  fetches just the tasks the list shows finished, once each. So a task costs about one query of
  its own, plus its share of the list requests. The lists are as far apart as `notice_target`
  allows (1 s: how soon a finished task's reading should be in hand, round trips aside). A task
  that finishes just after a list waits the gap for the next one, then a query token for its
  fetch (1 / rate), and the fetches of the other finishes that list finds (those expected in
  the gap, 1 / rate each). So `gap = (notice_target - 1 / rate) / (1 + finishes per second /
  rate)`, each task the next list asks about finishing about once per its learned mean
  duration. At 10 queries/s: 5 tasks of 15 s, a list every 0.87 s; 100 tasks of 35 s, every
  0.7 s. Lists never take more than half the query budget.
* **Direct queries** (`GET /tasks/{id}`), the fallback: for a task the list has not reported by
  the time it is overdue (longer than the learned mean plus three spreads), and for every task
  when the list fails (then it is switched off for a while). Direct polls start when the task is
  likely done and repeat at a fraction of the learned spread, between 1 and 5 seconds.

Minutes-long tasks (videos) do not need noticing within a second: a task is listed again only
once `expected / PATIENCE` seconds have passed since the last list that asked about it (a
three-minute video every 4.5 s; a task under 80 s, an image, at every list), and
not at all before the soonest it could finish (half its expected time until some are seen). So
videos in flight for minutes leave the query budget to the images.

Errors back off per task (429 honours Retry-After); the budget is a token bucket shared by both.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from bot.backoff import Backoff
from bot.dashscope.client import DashScopeClient
from bot.dashscope.errors import DashScopeError, RateLimitedError
from bot.dashscope.results import TaskResult, TaskState
from bot.dispatch.durations import Durations
from bot.dispatch.metrics import Metrics
from bot.dispatch.ratelimit import RateLimiter
from bot.dispatch.waiting import wait_for_event

log = logging.getLogger(__name__)

LIST_PAGE_SIZE = 100
LIST_MAX_PAGES = 5
# After a failed list, tasks are polled one by one for a while: up to 10 s after a first failure
# (a passing 5xx), doubling while the list keeps failing, up to 5 minutes.
LIST_OFF = Backoff(initial=10.0, cap=300.0)
OVERDUE_REPEAT = 15.0  # seconds between direct checks of an overdue task
QUERY_BACKOFF = Backoff(initial=2.0, cap=60.0)  # a task's next query after a failed one
PATIENCE = 40.0  # a task is listed at most every (its expected duration / this) seconds,
PATIENT_FROM = 2.0  # when that comes to this many seconds or more (shorter: at every list)

ReadingHandler = Callable[["Tracked", TaskResult], Awaitable[None]]
StateHandler = Callable[["Tracked", TaskState], Awaitable[None]]


@dataclass
class Tracked:
    job_id: int
    task_id: str
    model: str
    n: int
    kind: str
    submitted_at: float  # epoch seconds
    state: TaskState = TaskState.PENDING
    next_direct: float = 0.0
    failures: int = 0
    noticed_finished: bool = False
    noticed_at: float | None = None  # when we first learned it had finished
    listed_at: float = 0.0  # when a list last asked about it


class Poller:
    def __init__(
        self,
        client: DashScopeClient,
        limiter: RateLimiter,
        durations: Durations,
        metrics: Metrics,
        on_reading: ReadingHandler,
        on_state: StateHandler,
        *,
        use_list: bool = True,
        notice_target: float = 1.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.client = client
        self.limiter = limiter
        self.durations = durations
        self.metrics = metrics
        self.on_reading = on_reading
        self.on_state = on_state
        self.use_list = use_list
        self.notice_target = notice_target
        self.clock = clock
        self.tracked: dict[int, Tracked] = {}
        self._wake = asyncio.Event()
        self._list_off_until = 0.0
        self._list_failures = 0  # in a row
        self._last_list = 0.0
        self._pause_until = 0.0  # after a 429 on any query

    # --- tracking ------------------------------------------------------------------------

    def track(self, tracked: Tracked) -> None:
        tracked.next_direct = self._first_direct(tracked)
        self.tracked[tracked.job_id] = tracked
        self._wake.set()

    def untrack(self, job_id: int) -> None:
        self.tracked.pop(job_id, None)

    def _listing(self, now: float) -> bool:
        return self.use_list and now >= self._list_off_until

    def _first_direct(self, t: Tracked) -> float:
        if self._listing(self.clock()):
            return t.submitted_at + self.durations.latest(t.model, t.n, t.kind)
        expected = self.durations.expected(t.model, t.n, t.kind)
        spread = self.durations.spread(t.model, t.n, t.kind)
        earliest = self.durations.earliest(t.model, t.n, t.kind)
        return t.submitted_at + max(earliest, expected - spread)

    def _repeat_interval(self, t: Tracked) -> float:
        if self._listing(self.clock()):
            return OVERDUE_REPEAT
        return min(5.0, max(1.0, self.durations.spread(t.model, t.n, t.kind) / 3))

    def _could_be_done(self, t: Tracked, now: float) -> bool:
        return now >= self._could_finish_at(t)

    def _could_finish_at(self, t: Tracked) -> float:
        return t.submitted_at + self.durations.earliest(t.model, t.n, t.kind)

    def _list_again_at(self, t: Tracked) -> float:
        """When a list may ask about this task again: a long task (a video) is asked about
        less often than an image (see the module's docstring)."""
        wait = self.durations.expected(t.model, t.n, t.kind) / PATIENCE
        return t.listed_at + wait if wait >= PATIENT_FROM else 0.0

    def _listed(self, now: float) -> list[Tracked]:
        """The tasks the next list asks about: could be finishing, not yet seen finished, and
        not asked about too recently for how long they take."""
        return [
            t
            for t in self.tracked.values()
            if self._could_be_done(t, now)
            and not t.noticed_finished
            and now >= self._list_again_at(t)
        ]

    def list_gap(self, now: float) -> float:
        """Seconds from one list to the next: what `notice_target` leaves once a finish found by
        the next list has waited for its query token and for the other finishes' fetches (see
        the module's docstring); at least two queries' worth per model listed."""
        listed = self._listed(now)
        finishes = sum(1 / self.durations.expected(t.model, t.n, t.kind) for t in listed)
        lists = max(1, len({t.model for t in listed}))  # one list call per model
        rate = self.limiter.rate
        gap = (self.notice_target - 1 / rate) / (1 + finishes / rate)
        return max(2 * lists / rate, gap)

    # --- the loop ------------------------------------------------------------------------

    async def run(self) -> None:
        while True:
            self._wake.clear()
            now = self.clock()
            if now < self._pause_until:
                await self._sleep(self._pause_until - now)
                continue
            # The same sums as _next_wake's, so a wake for a list always finds one due.
            if (
                self._listing(now)
                and self._listed(now)
                and now >= self._last_list + self.list_gap(now)
            ):
                self._last_list = now
                await self._list_round()
                continue
            await self._direct_round(self.clock())
            await self._sleep(self._next_wake(self.clock()))

    async def _sleep(self, seconds: float) -> None:
        await wait_for_event(self._wake, seconds)

    def _next_wake(self, now: float) -> float:
        if not self.tracked:
            return 3600.0
        moments = [t.next_direct for t in self.tracked.values()]
        if self._listing(now):
            gap = self.list_gap(now)
            for t in self.tracked.values():
                if t.noticed_finished:
                    continue
                moments.append(
                    max(self._could_finish_at(t), self._last_list + gap, self._list_again_at(t))
                )
        return max(0.0, min(moments) - now)

    async def _direct_round(self, now: float) -> None:
        due = sorted(
            (t for t in self.tracked.values() if t.next_direct <= now), key=lambda t: t.next_direct
        )
        for t in due:
            if t.job_id not in self.tracked:
                continue
            await self.limiter.acquire()
            await self._query(t)

    async def _query(self, t: Tracked) -> None:
        self.metrics.inc("wanbot_task_queries_total", kind="get")
        try:
            result = await self.client.get_task(t.task_id)
        except DashScopeError as exc:
            self._backoff(t, exc)
            return
        t.failures = 0
        if result.state.finished:
            if not t.noticed_finished:
                self._record_notice(t)
            self.untrack(t.job_id)
            await self.on_reading(t, result)
            return
        if result.state is not t.state:
            t.state = result.state
            await self.on_state(t, result.state)
        t.next_direct = self.clock() + self._repeat_interval(t)

    def _backoff(self, t: Tracked, exc: DashScopeError) -> None:
        self.metrics.inc("wanbot_api_errors_total", code=exc.code or type(exc).__name__)
        t.failures += 1
        delay = QUERY_BACKOFF.delay(t.failures - 1)
        if isinstance(exc, RateLimitedError):
            pause = exc.retry_after if exc.retry_after is not None else delay
            self._pause_until = max(self._pause_until, self.clock() + pause)
        log.warning("task %s: query failed (%s); again in %.1f s", t.task_id, exc, delay)
        t.next_direct = self.clock() + delay

    async def _list_round(self) -> None:
        by_model: dict[str, list[Tracked]] = {}
        now = self.clock()
        for t in self._listed(now):
            t.listed_at = now
            by_model.setdefault(t.model, []).append(t)
        for model, tasks in by_model.items():
            start = min(t.submitted_at for t in tasks) - 60
            start = max(start, now - 23 * 3600)  # the list spans at most 24 h
            states: dict[str, TaskState] = {}
            try:
                for page_no in range(1, LIST_MAX_PAGES + 1):
                    await self.limiter.acquire()
                    self.metrics.inc("wanbot_task_queries_total", kind="list")
                    page = await self.client.list_tasks(
                        model=model,
                        start=datetime.fromtimestamp(start, UTC),
                        end=datetime.fromtimestamp(now + 60, UTC),
                        page_no=page_no,
                        page_size=LIST_PAGE_SIZE,
                    )
                    states.update({item.task_id: item.state for item in page.items})
                    if page_no >= page.total_pages or len(page.items) < LIST_PAGE_SIZE:
                        break
            except DashScopeError as exc:
                self.metrics.inc("wanbot_api_errors_total", code=exc.code or type(exc).__name__)
                if isinstance(exc, RateLimitedError):
                    self._pause_until = self.clock() + QUERY_BACKOFF.delay(0, exc.retry_after)
                    return
                log.warning("task list failed (%s); polling tasks one by one for a while", exc)
                self._list_failures += 1
                off = LIST_OFF.delay(self._list_failures - 1)
                self._list_off_until = self.clock() + off
                for t in self.tracked.values():
                    t.next_direct = min(t.next_direct, self._first_direct(t))
                return
            self._list_failures = 0
            for t in tasks:
                state = states.get(t.task_id)
                if state is None:
                    continue
                if state.finished:
                    t.noticed_finished = True
                    t.next_direct = 0.0  # fetch its result now
                    self._record_notice(t)
                    continue
                # The list vouches for it: asking directly is only for tasks it stops showing.
                t.next_direct = max(t.next_direct, self.clock() + OVERDUE_REPEAT)
                if state is not t.state:
                    t.state = state
                    await self.on_state(t, state)
        await self._direct_round(self.clock())

    def _record_notice(self, t: Tracked) -> None:
        t.noticed_finished = True
        t.noticed_at = self.clock()
