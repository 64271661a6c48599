"""Jobs in the database: the state machine (every pair of states), timestamps, bookkeeping
columns, results and inputs."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from bot.dashscope import tools
from bot.dashscope.requests import ImageRequest, validate
from bot.dashscope.results import GeneratedImage, ImageFailure, TaskResult, TaskState
from bot.jobs.model import (
    STATE_TIME_COLUMN,
    TERMINAL,
    TRANSITIONS,
    IllegalTransition,
    JobParams,
    JobState,
    NewJob,
)
from bot.jobs.store import JobStore
from bot.storage.db import Database
from tests.backends import INTEGRITY_ERRORS, execute, fresh_database
from tests.engine_helpers import FakeClock, image_request, new_job

Q, S, R, D = JobState.QUEUED, JobState.SUBMITTED, JobState.RUNNING, JobState.DELIVERING
DONE, FAILED, CANCELLED = JobState.DONE, JobState.FAILED, JobState.CANCELLED

# The life of a job as the design describes it, written out independently of TRANSITIONS.
ALLOWED = {
    (Q, S),
    (Q, FAILED),
    (Q, CANCELLED),
    (S, R),
    (S, D),
    (S, FAILED),
    (S, CANCELLED),
    (R, D),
    (R, FAILED),
    (D, DONE),
    (D, FAILED),
}
ALL_PAIRS = list(itertools.product(JobState, JobState))
TIME_COLUMN = {
    S: "submitted_at",
    R: "running_at",
    D: "delivering_at",
    DONE: "finished_at",
    FAILED: "finished_at",
    CANCELLED: "finished_at",
}
TIME_COLUMNS = ("submitted_at", "running_at", "delivering_at", "finished_at")


@pytest.fixture
async def db(backend: str, tmp_path: Path) -> AsyncIterator[Database]:
    async with fresh_database(backend, tmp_path) as database:
        yield database


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(1_700_000_000.0)


@pytest.fixture
def store(db: Database, clock: FakeClock) -> JobStore:
    return JobStore(db, clock=clock)


async def insert(store: JobStore, new: NewJob | None = None) -> int:
    job = await store.db.write(store.insert, new or new_job())
    return job.id


async def force_state(store: JobStore, job_id: int, state: JobState) -> None:
    await execute(store.db, "UPDATE jobs SET state = ? WHERE id = ?", (state.value, job_id))


async def row(store: JobStore, job_id: int) -> dict[str, Any]:
    found = await store.db.fetchone("SELECT * FROM jobs WHERE id = ?", (job_id,))
    assert found is not None
    return dict(found)


def test_the_transition_table_is_the_designed_one() -> None:
    table = {(a, b) for a, targets in TRANSITIONS.items() for b in targets}
    assert table == ALLOWED
    assert set(TRANSITIONS) == set(JobState)
    assert {DONE, FAILED, CANCELLED} == TERMINAL
    assert {s for s in JobState if s.terminal} == TERMINAL
    assert all(not TRANSITIONS[s] for s in TERMINAL)
    assert STATE_TIME_COLUMN == TIME_COLUMN


@pytest.mark.parametrize(("source", "target"), sorted(ALLOWED))
async def test_every_allowed_transition_works_and_records_its_time(
    store: JobStore, clock: FakeClock, source: JobState, target: JobState
) -> None:
    job_id = await insert(store)
    await force_state(store, job_id, source)
    before = await row(store, job_id)
    clock.advance(42.5)
    job = await store.db.write(store.transition, job_id, target, error_code="X")
    assert job.state is target
    after = await row(store, job_id)
    assert after["state"] == target.value
    assert after[TIME_COLUMN[target]] == clock.now
    assert after["updated_at"] == clock.now
    assert after["error_code"] == "X"
    # Nothing else moved: the other timestamps and the creation time are as they were.
    for column in TIME_COLUMNS:
        if column != TIME_COLUMN[target]:
            assert after[column] == before[column]
    assert after["created_at"] == before["created_at"]


@pytest.mark.parametrize(("source", "target"), [p for p in ALL_PAIRS if p not in ALLOWED])
async def test_every_other_transition_is_refused_and_changes_nothing(
    store: JobStore, clock: FakeClock, source: JobState, target: JobState
) -> None:
    job_id = await insert(store)
    await force_state(store, job_id, source)
    before = await row(store, job_id)
    clock.advance(10)
    with pytest.raises(IllegalTransition) as caught:
        await store.db.write(store.transition, job_id, target, error_code="should not be written")
    assert caught.value.job_id == job_id
    assert caught.value.current is source
    assert caught.value.target is target
    assert await row(store, job_id) == before


async def test_terminal_states_are_final(store: JobStore) -> None:
    for terminal in TERMINAL:
        job_id = await insert(store)
        await force_state(store, job_id, terminal)
        for target in JobState:
            with pytest.raises(IllegalTransition):
                await store.db.write(store.transition, job_id, target)
        assert (await store.get(job_id)).state is terminal  # type: ignore[union-attr]


async def test_a_whole_life_records_each_moment(store: JobStore, clock: FakeClock) -> None:
    job_id = await insert(store)
    created = clock.now
    moments = {}
    for target in (S, R, D, DONE):
        clock.advance(3)
        await store.db.write(store.transition, job_id, target)
        moments[TIME_COLUMN[target]] = clock.now
    job = await store.get(job_id)
    assert job is not None
    assert job.created_at == created
    assert (job.submitted_at, job.running_at, job.delivering_at, job.finished_at) == (
        moments["submitted_at"],
        moments["running_at"],
        moments["delivering_at"],
        moments["finished_at"],
    )
    assert job.submitted_at < job.running_at < job.delivering_at < job.finished_at


async def test_a_transition_with_an_unknown_column_raises_and_changes_nothing(
    store: JobStore,
) -> None:
    job_id = await insert(store)
    before = await row(store, job_id)
    for bad in ({"state": "done"}, {"user_id": 5}, {"no_such_column": 1}, {"created_at": 0}):
        with pytest.raises(ValueError, match="cannot set"):
            await store.db.write(store.transition, job_id, S, **bad)
    assert await row(store, job_id) == before


async def test_a_missing_job_cannot_move(store: JobStore) -> None:
    with pytest.raises(IllegalTransition) as caught:
        await store.db.write(store.transition, 12345, S)
    assert caught.value.current is None


async def test_update_changes_bookkeeping_only(store: JobStore, clock: FakeClock) -> None:
    job_id = await insert(store)
    clock.advance(5)
    await store.db.write(store.update, job_id, submit_attempts=2, next_delivery_at=99.0)
    job = await store.get(job_id)
    assert job is not None
    assert (job.state, job.submit_attempts, job.next_delivery_at) == (Q, 2, 99.0)
    assert job.updated_at == clock.now
    for bad in ({}, {"state": "done"}, {"n": 4}):
        with pytest.raises(ValueError, match="cannot set"):
            await store.db.write(store.update, job_id, **bad)
    assert (await store.get(job_id)).state is Q  # type: ignore[union-attr]


async def test_updated_returns_the_job_as_written(store: JobStore, clock: FakeClock) -> None:
    job_id = await insert(store)
    clock.advance(3)
    job = await store.db.write(store.updated, job_id, status_message_id=77, thread_id=78)
    assert job is not None and (job.status_message_id, job.thread_id) == (77, 78)
    assert job == await store.get(job_id)
    assert await store.db.write(store.updated, job_id + 100, status_message_id=1) is None


async def test_get_many_keeps_the_order_asked_and_skips_missing_jobs(store: JobStore) -> None:
    first, second, third = [await insert(store) for _ in range(3)]
    found = await store.get_many([third, first + 100, first, second])
    assert [job.id for job in found] == [third, first, second]
    assert found[0] == await store.get(third)
    assert await store.get_many([]) == []


async def test_insert_keeps_everything_needed_to_finish_after_a_restart(store: JobStore) -> None:
    request = image_request("a lighthouse at dusk", n=3)
    request = replace(
        request,
        negative_prompt="fog",
        size="1280*1280",
        seed=7,
        prompt_extend=False,
        watermark=True,
        images=("data:image/png;base64,AAAA", "data:image/png;base64,BBBB"),
    )
    new = NewJob(request, user_id=11, guild_id=22, channel_id=33, thread_id=44, locale="zh-CN")
    job_id = await insert(store, new)
    job = await store.get(job_id)
    assert job is not None
    assert job.state is Q and job.n == 3 and job.model == request.model and not job.sync
    assert (job.user_id, job.guild_id, job.channel_id, job.thread_id) == (11, 22, 33, 44)
    assert job.locale == "zh-CN"
    assert job.params == JobParams("a lighthouse at dusk", "fog", "1280*1280", 7, False, True)
    assert await store.inputs(job_id) == request.images
    assert job.request(await store.inputs(job_id)) == request
    assert job.idempotency_key == f"wanbot-job-{job_id}"
    assert len(job.idempotency_key) <= 25
    sync_id = await insert(store, new_job(sync=True))
    assert (await store.get(sync_id)).sync  # type: ignore[union-attr]


async def test_inputs_are_pruned_only_after_the_job_ended_long_enough_ago(
    store: JobStore, clock: FakeClock
) -> None:
    images = ("data:image/png;base64,AAAA",)
    ended = await insert(store, NewJob(replace(image_request(), images=images), user_id=1))
    active = await insert(store, NewJob(replace(image_request(), images=images), user_id=1))
    await store.db.write(store.transition, ended, CANCELLED)
    finished_at = clock.now
    await store.db.write(store.prune_inputs, finished_at)  # not before the cut-off: kept
    assert await store.inputs(ended) == images
    await store.db.write(store.prune_inputs, finished_at + 1)
    assert await store.inputs(ended) == ()
    assert await store.inputs(active) == images  # an active job keeps its inputs


async def test_results_are_saved_once_and_marked_delivered(store: JobStore) -> None:
    job_id = await insert(store, new_job(n=3))
    result = TaskResult(
        task_id="t",
        state=TaskState.SUCCEEDED,
        request_id="r",
        images=(GeneratedImage("https://a/0.png"), GeneratedImage("https://a/1.png")),
        failures=(ImageFailure("DataInspectionFailed", "blocked"),),
        submit_time=datetime.now(UTC),
        end_time=datetime.now(UTC),
    )
    for _ in range(2):  # saving again (a re-poll after a crash) adds nothing
        await store.db.write(store.save_results, job_id, result, expires_at=500.0)
    results = await store.results(job_id)
    assert [(r.position, r.url, r.failure_code) for r in results] == [
        (0, "https://a/0.png", None),
        (1, "https://a/1.png", None),
        (2, None, "DataInspectionFailed"),
    ]
    assert results[0].expires_at == 500.0 and results[2].expires_at is None
    await store.db.write(store.mark_delivered, job_id, 0, 777)
    await store.db.write(store.mark_delivered, job_id, 1, None)  # no message ids
    delivered = [r.delivered_message_id for r in await store.results(job_id)]
    assert delivered == [777, 0, None]


async def test_jobs_by_state_and_counts(store: JobStore) -> None:
    ids = [await insert(store) for _ in range(5)]
    await force_state(store, ids[1], S)
    await force_state(store, ids[3], DONE)
    await force_state(store, ids[4], S)
    assert [j.id for j in await store.in_states([S])] == [ids[1], ids[4]]
    assert [j.id for j in await store.in_states([Q, DONE])] == [ids[0], ids[2], ids[3]]
    counts = await store.count_by_state()
    assert counts == {**dict.fromkeys(JobState, 0), Q: 2, S: 2, DONE: 1}


async def test_the_state_column_refuses_unknown_states(store: JobStore) -> None:
    job_id = await insert(store)
    with pytest.raises(INTEGRITY_ERRORS):
        await execute(store.db, "UPDATE jobs SET state = 'lost' WHERE id = ?", (job_id,))


async def test_the_job_returned_by_insert_is_the_row_written(db: Database) -> None:
    """`insert` builds the queued Job without reading it back: it must equal the row."""
    store = JobStore(db)
    new = NewJob(
        validate(ImageRequest(model="wan2.6-t2i", prompt="a kite", n=3, seed=5)),
        user_id=8,
        guild_id=9,
        channel_id=10,
        thread_id=11,
        locale="zh",
        parent_job_id=None,
    )
    built = await db.write(store.insert, new)
    assert built == await store.get(built.id)


async def test_recent_durations_name_each_jobs_kind(store: JobStore, clock: FakeClock) -> None:
    upscale = tools.upscale(tools.Chosen(image="data:image/png;base64,AAAA"), 2)
    ids = [await insert(store), await insert(store, NewJob(validate(upscale), user_id=1))]
    for job_id, seconds in zip(ids, (20.0, 6.0), strict=True):
        await store.db.write(store.transition, job_id, S)
        clock.advance(seconds)
        await store.db.write(store.transition, job_id, D)
    assert await store.recent_durations() == [
        ("wan2.6-t2i", 1, "text-to-image", 20.0),
        ("wanx2.1-imageedit", 1, "upscale", 6.0),
    ]
