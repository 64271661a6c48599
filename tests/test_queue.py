"""The fair queue (round-robin per model across users, positions, front re-queue), and the
scheduler through the engine against the simulator: tasks in flight, submission rate, fairness."""

from __future__ import annotations

import copy
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from bot.dispatch.engine import EngineConfig
from bot.dispatch.queue import FairQueue
from bot.jobs.model import JobState
from tests.engine_helpers import (
    FAST,
    MODEL,
    new_job,
    record_submissions,
    rig,
    sim_settings,
    train,
    wait_until,
)


def drain(queue: FairQueue, model: str) -> list[int]:
    order = []
    while (job_id := queue.pop(model)) is not None:
        order.append(job_id)
    return order


def test_a_single_job_is_served_second_behind_a_batch() -> None:
    queue = FairQueue()
    for job_id in range(1, 11):
        queue.push("m", user_id=1, job_id=job_id)
    queue.push("m", user_id=2, job_id=100)
    assert queue.position(100) == 2
    assert [queue.position(j) for j in range(1, 11)] == [1, 3, 4, 5, 6, 7, 8, 9, 10, 11]
    assert drain(queue, "m") == [1, 100, *range(2, 11)]
    assert len(queue) == 0 and queue.pop("m") is None and queue.models() == []


def test_round_robin_across_three_users_and_models_are_separate() -> None:
    queue = FairQueue()
    for job_id, user in [(1, 1), (2, 1), (3, 1), (4, 2), (5, 2), (6, 3)]:
        queue.push("a", user, job_id)
    queue.push("b", 1, 50)
    assert queue.models() == ["a", "b"]
    assert queue.position(50) == 1
    assert [queue.position(j) for j in range(1, 7)] == [1, 4, 6, 2, 5, 3]
    assert drain(queue, "a") == [1, 4, 6, 2, 5, 3]
    assert queue.models() == ["b"] and 50 in queue


def test_duplicates_are_ignored_and_remove_updates_positions() -> None:
    queue = FairQueue()
    for job_id, user in [(1, 1), (2, 1), (3, 2), (4, 2)]:
        queue.push("m", user, job_id)
    queue.push("m", 1, 1)
    queue.push("m", 2, 1)  # the same job under another user is still the same job
    assert len(queue) == 4 and queue.queued() == [1, 2, 3, 4]
    assert queue.remove(3)
    assert not queue.remove(3) and not queue.remove(99)
    assert queue.position(3) is None and 3 not in queue
    assert [queue.position(j) for j in (1, 4, 2)] == [1, 2, 3]
    assert drain(queue, "m") == [1, 4, 2]


def test_front_requeue_is_served_next() -> None:
    """A job whose submission failed goes back where it was: first in line."""
    queue = FairQueue()
    for job_id, user in [(1, 1), (2, 1), (3, 1), (10, 2), (20, 3)]:
        queue.push("m", user, job_id)
    assert queue.pop("m") == 1
    queue.push("m", 1, 1, front=True)
    assert queue.position(1) == 1
    assert drain(queue, "m") == [1, 10, 20, 2, 3]
    # A user with no other job queued comes back first as well.
    for job_id, user in [(5, 5), (6, 6)]:
        queue.push("m", user, job_id)
    assert queue.pop("m") == 5
    queue.push("m", 5, 5, front=True)
    assert queue.position(5) == 1
    assert drain(queue, "m") == [5, 6]


operation = st.one_of(
    st.tuples(
        st.just("push"),
        st.sampled_from(["a", "b"]),
        st.integers(0, 3),
        st.booleans(),
    ),
    st.tuples(st.just("pop"), st.sampled_from(["a", "b"])),
    st.tuples(st.just("remove"), st.integers(0, 40)),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(operation, max_size=40))
def test_positions_are_exactly_the_pop_order(operations: list[tuple]) -> None:
    queue = FairQueue()
    next_id = 0
    for op in operations:
        if op[0] == "push":
            _, model, user, front = op
            queue.push(model, user, next_id, front=front)
            next_id += 1
        elif op[0] == "pop":
            queue.pop(op[1])
        else:
            queue.remove(op[1])
        assert sorted(queue.queued()) == sorted(set(queue.queued()))
        for model in ("a", "b"):
            order = drain(copy.deepcopy(queue), model)
            for place, job_id in enumerate(order, start=1):
                assert queue.position(job_id) == place, (model, order, job_id)
        assert len(queue) == len(queue.queued())


# --- through the engine ----------------------------------------------------------------------


async def test_never_more_than_max_in_flight_tasks_at_the_simulator(tmp_path: Path) -> None:
    config = EngineConfig(**{**FAST.__dict__, "max_in_flight": 2})
    async with rig(tmp_path, config=config, trained=False) as r:
        train(r.engine, 0.4)  # each task runs 0.3 s: the first poll finds it finished
        seen = record_submissions(r.sim)
        peak_engine = 0

        async def done() -> bool:
            nonlocal peak_engine
            peak_engine = max(peak_engine, r.engine.in_flight(MODEL))
            return await r.engine.idle()

        # Submitted at 20/s, six 0.3 s tasks would all overlap if the engine let them.
        jobs = [
            await r.engine.submit_job(new_job(f"sim:slow=0.3 {i}", user=i % 3)) for i in range(6)
        ]
        await wait_until(done, timeout=20, interval=0.01, what="all jobs done")
        assert len(seen) == 6
        assert max(s.sim_in_flight for s in seen) == 2  # reached, never passed
        assert 1 <= peak_engine <= 2
        assert r.engine.in_flight(MODEL) == 0
        for job in jobs:
            assert (await r.job(job.id)).state is JobState.DONE


async def test_submissions_are_rate_limited(tmp_path: Path) -> None:
    rate = 4.0
    config = EngineConfig(**{**FAST.__dict__, "max_in_flight": 20, "submit_rate": rate})
    sim_config = sim_settings(submit_rps={MODEL: 100}, max_in_flight={MODEL: 20})
    async with rig(tmp_path, config=config, sim_config=sim_config) as r:
        seen = record_submissions(r.sim)
        count = 7
        for i in range(count):
            await r.engine.submit_job(new_job(f"rate {i}", user=i))
        await r.wait_idle(timeout=20)
        times = [s.at for s in seen]
        assert len(times) == count
        # A token bucket of `rate` per second: N submissions take at least (N - rate) / rate.
        assert times[-1] - times[0] >= (count - rate) / rate - 0.05
        # And no second holds more than the rate (+1 for timing at the window's edges).
        busiest = max(sum(1 for t in times if start <= t < start + 1.0) for start in times)
        assert busiest <= rate + 1, busiest
        assert r.sim.sim.throttled == 0


async def test_one_users_batch_does_not_starve_another(tmp_path: Path) -> None:
    config = EngineConfig(**{**FAST.__dict__, "max_in_flight": 1})
    async with rig(tmp_path, config=config) as r:
        seen = record_submissions(r.sim)
        batch = [await r.engine.submit_job(new_job(f"batch {i}", user=1)) for i in range(8)]
        single = await r.engine.submit_job(new_job("single", user=2))
        assert r.engine.position(single.id) in (1, 2)
        await r.wait_state(single.id, JobState.DONE, timeout=15)
        order = [s.prompt for s in seen]
        assert order.index("single") <= 2, order
        assert order[: order.index("single")] == [
            f"batch {i}" for i in range(order.index("single"))
        ]
        # Cancel what is left of the batch so the scenario ends settled.
        for job in batch:
            await r.engine.cancel(job.id, 1)
        await r.wait_idle()
