"""Several processes on one PostgreSQL database: exact quotas whichever process reserves, one
dispatcher at a time under a lease, jobs and cancels handed over by notification, fail-over, and
the fence that stops a dispatcher which lost its lease.

Each "process" here is a full set of its own (connection pool, store, quota, engine, lease) in
this test's event loop, against a real PostgreSQL and the simulator; the end-to-end cluster with
real processes killed by SIGKILL is in `tests/test_cluster_soak.py`."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from bot.accounting.quota import LimitReached, Limits, Quota
from bot.dashscope.client import DashScopeClient
from bot.dispatch.engine import PLACE_GRACE, CancelOutcome, Engine
from bot.jobs.model import Job, JobState
from bot.jobs.store import JobStore
from bot.media.downloads import ResultFetcher
from bot.runtime.dispatcher import Dispatch, NotifyHandover
from bot.runtime.identify import DatabaseIdentifyGate
from bot.simulator import RunningSimulator, start_simulator
from bot.storage.cluster import LEASE_LOCK, FencedDatabase, Lease, LeaseLost, listen, notify
from bot.storage.db import Database
from bot.storage.postgres import LOCK_KEY, PgConn, PostgresDatabase
from tests.backends import postgres_schema
from tests.discord_env import bot_env, imagine, replies
from tests.engine_helpers import (
    FAST,
    KEY,
    MODEL,
    NO_LIMITS,
    RecordingPort,
    assert_ledger_balanced,
    new_job,
    sim_settings,
    train,
    wait_until,
)


@dataclass
class Process:
    """One bot process's parts, as `bot.runtime.services` wires them on PostgreSQL."""

    name: str
    db: Database
    quota: Quota
    engine: Engine
    lease: Lease
    dispatch: Dispatch
    port: RecordingPort

    async def die(self) -> None:
        """As SIGKILL would: the loops stop where they are and the connections close (so
        PostgreSQL releases the lease); nothing is tidied up or handed over."""
        for task in [*self.dispatch._tasks, *self.engine._loops, *self.engine._work]:
            task.cancel()
        await asyncio.gather(
            *self.dispatch._tasks,
            *self.engine._loops,
            *self.engine._work,
            return_exceptions=True,
        )
        self.dispatch._tasks.clear()
        self.engine._loops.clear()
        await self.lease._drop()


@asynccontextmanager
async def cluster_of(
    tmp_path: Path, count: int = 2, limits: Limits = NO_LIMITS, **sim: Any
) -> AsyncIterator[tuple[list[Process], RunningSimulator, str]]:
    running = await start_simulator(sim_settings(**sim))
    async with AsyncExitStack() as stack, postgres_schema() as url:
        http = await stack.enter_async_context(httpx.AsyncClient())
        client = DashScopeClient(KEY, running.base_url, http=http)
        processes = []
        for index in range(count):
            db = await Database.open(url)
            stack.push_async_callback(db.close)
            store = JobStore(db)
            quota = Quota(db, store, limits)
            lease = Lease(url, f"p{index}")
            port = RecordingPort(tmp_path / f"out{index}")
            engine = Engine(
                FencedDatabase(db, lease),
                client,
                ResultFetcher(http, running.base_url),
                port,
                quota,
                FAST,
                handover=NotifyHandover(db),
                unfenced=db,
            )
            train(engine)
            dispatch = Dispatch(engine, db, lease)
            stack.push_async_callback(dispatch.stop)
            processes.append(Process(f"p{index}", db, quota, engine, lease, dispatch, port))
        try:
            yield processes, running, url
        finally:
            await running.stop()


async def dispatcher_of(processes: list[Process], timeout: float = 10.0) -> Process:
    def one() -> Process | None:
        holding = [p for p in processes if p.dispatch.role == "dispatcher"]
        assert len(holding) <= 1, "two dispatchers at once"
        return holding[0] if holding else None

    return await wait_until(one, timeout=timeout, what="a dispatcher")


async def test_reservations_racing_from_two_processes_accept_exactly_the_limit(
    tmp_path: Path,
) -> None:
    limits = Limits(
        images_per_user_day=5,
        concurrent_jobs_per_user=0,
        cooldown_seconds=0,
        images_per_guild_day=0,
    )
    async with cluster_of(tmp_path, limits=limits) as (processes, _, _):
        a, b = processes

        async def one(process: Process) -> bool:
            try:
                await process.quota.reserve(new_job(user=42, guild=7))
            except LimitReached:
                return False
            return True

        outcomes = await asyncio.gather(*(one(a if i % 2 else b) for i in range(200)))
        assert sum(outcomes) == 5
        row = await a.db.fetchone(
            "SELECT COUNT(*), SUM(images) FROM ledger WHERE user_id = 42 AND entry = 'reserve'"
        )
        assert tuple(row) == (5, 5)


async def test_money_budgets_hold_across_processes(tmp_path: Path) -> None:
    async with cluster_of(tmp_path) as (processes, _, _):
        a, b = processes
        for process in processes:
            process.quota.prices["wan2.6-t2i"] = 0.2
        await a.quota.policy.set(7, "monthly_budget", "1.0", by_user=1)

        async def one(process: Process, user: int) -> bool:
            try:
                await process.quota.reserve(new_job(user=user, guild=7))
            except Exception:
                return False
            return True

        outcomes = await asyncio.gather(*(one(a if i % 2 else b, 100 + i) for i in range(60)))
        assert sum(outcomes) == 5  # 5 x 0.2 = the whole budget, from 60 members at once


async def test_one_dispatcher_and_jobs_from_a_standby_reach_it_at_once(tmp_path: Path) -> None:
    async with cluster_of(tmp_path) as (processes, _, _):
        for process in processes:
            await process.dispatch.start()
        leader = await dispatcher_of(processes)
        standby = next(p for p in processes if p is not leader)
        await asyncio.sleep(1.0)  # the standby keeps trying, and keeps failing
        assert standby.dispatch.role == "standby" and leader.dispatch.role == "dispatcher"
        started = time.monotonic()
        jobs = [await standby.engine.submit_job(new_job(user=5 + i)) for i in range(3)]
        for job in jobs:
            await wait_until(
                lambda job=job: job.id in leader.port.delivered, timeout=10, what="delivered"
            )
        # Notified at once: far sooner than the dispatcher's safety sweep (15 s) would find them.
        assert time.monotonic() - started < 10
        assert standby.port.delivered == []  # only the dispatcher posts results
        await wait_until(leader.engine.idle, timeout=10, what="idle")
        await assert_ledger_balanced(leader.db)


async def test_when_the_dispatcher_dies_a_standby_takes_over_and_finishes_its_jobs(
    tmp_path: Path,
) -> None:
    async with cluster_of(tmp_path, speed=20.0) as (processes, _, _):
        for process in processes:
            await process.dispatch.start()
        leader = await dispatcher_of(processes)
        standby = next(p for p in processes if p is not leader)
        first_epoch = leader.lease.epoch
        jobs = [await leader.engine.submit_job(new_job(user=20 + i)) for i in range(4)]
        await wait_until(
            lambda: any(job_id in leader.engine.poller.tracked for job_id in (j.id for j in jobs)),
            timeout=10,
            what="a task in flight",
        )
        died = time.monotonic()
        await leader.die()
        await wait_until(lambda: standby.dispatch.role == "dispatcher", timeout=5, what="takeover")
        took_over = time.monotonic() - died
        assert took_over <= 5.0
        assert standby.lease.epoch is not None and first_epoch is not None
        assert standby.lease.epoch > first_epoch
        for job in jobs:
            done = await wait_until(
                lambda job=job: _ended(standby, job.id), timeout=30, what=f"job {job.id} ended"
            )
            assert done is JobState.DONE
        await wait_until(standby.engine.idle, timeout=10, what="idle")
        await assert_ledger_balanced(standby.db)


async def test_a_new_dispatcher_dispatches_before_the_endings_it_shows_again(
    tmp_path: Path,
) -> None:
    """Endings the killed dispatcher never showed are shown by its successor in the background:
    it takes new work at once, however long Discord takes with those edits (each waits for its
    channel's turn), so a fail-over is not as long as the backlog of edits."""
    async with cluster_of(tmp_path) as (processes, _, _):
        for process in processes:
            await process.dispatch.start()
        leader = await dispatcher_of(processes)
        standby = next(p for p in processes if p is not leader)
        leader.port.unshown = {JobState.DONE}  # its final edits fail: to be shown again
        old = await leader.engine.submit_job(new_job(user=30))
        await wait_until(lambda: _ended(leader, old.id), timeout=10, what="the job ended")
        standby.port.final_gate = asyncio.Event()  # Discord is slow with final edits
        await leader.die()
        await wait_until(lambda: standby.dispatch.role == "dispatcher", timeout=5, what="takeover")
        fresh = await standby.engine.submit_job(new_job(user=31))
        await wait_until(lambda: fresh.id in standby.port.delivered, timeout=10, what="delivered")
        assert not await _shown(standby, old.id)  # still waiting for its edit
        standby.port.final_gate.set()
        await wait_until(lambda: _shown(standby, old.id), timeout=10, what="old ending shown")
        await wait_until(standby.engine.idle, timeout=10, what="idle")
        await assert_ledger_balanced(standby.db)


async def test_a_jobs_notification_adopts_that_job_and_leaves_the_rest_to_the_sweep(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A notification "queued:<id>" brings the dispatcher that one job, read alone: a queued
    job whose notification was lost waits for the sweep (or the next connection), however
    ready it is. Reading every queued row for each notification cost a burst of N
    notifications N scans."""
    monkeypatch.setattr("bot.runtime.dispatcher.SWEEP_INTERVAL", 3600.0)  # no sweep meanwhile
    async with cluster_of(tmp_path) as (processes, _, _):
        leader, standby = processes
        listening = asyncio.Event()
        on_connect = leader.dispatch._adopt

        async def adopt_then_tell() -> None:
            await on_connect()
            listening.set()

        monkeypatch.setattr(leader.dispatch, "_adopt", adopt_then_tell)
        await leader.dispatch.start()  # the only one trying: it takes the lease
        await asyncio.wait_for(listening.wait(), timeout=10)
        assert leader.dispatch.role == "dispatcher"
        # B: accepted and shown on the standby, but its notification never came.
        unannounced = replace(new_job("the one nobody announced", user=51), channel_id=700)
        lost = await standby.engine.submit_job(unannounced, start=False)
        await standby.db.write(standby.engine.store.update, lost.id, status_message_id=7001)
        # A: handed over as usual, by "queued:<id>".
        job = await standby.engine.submit_job(new_job("the announced one", user=50))
        await wait_until(lambda: job.id in leader.port.delivered, timeout=10, what="delivered")
        assert lost.id not in leader.engine.queue and lost.id not in leader.engine._claimed
        row = await leader.engine.store.get(lost.id)
        assert row is not None and row.state is JobState.QUEUED and row.submit_attempts == 0
        assert await leader.engine.adopt_one(job.id) == 0  # done: nothing to take again
        # The safety net (the sweep's and the on-connect look at every row) takes B.
        assert await leader.engine.adopt_queued() == 1
        await wait_until(lambda: lost.id in leader.port.delivered, timeout=10, what="B delivered")
        await wait_until(leader.engine.idle, timeout=10, what="idle")
        await assert_ledger_balanced(leader.db)


async def test_adopt_one_takes_a_queued_job_once_and_nothing_else(tmp_path: Path) -> None:
    """A notification for a job cancelled or finished meanwhile, for an id with no row, or for
    a job the dispatcher already has queues nothing (0), and a job its front end may still be
    showing (`PLACE_GRACE`) is left to it; each job is queued, or shown again, once."""
    async with cluster_of(tmp_path, count=1) as (processes, _, _):
        (process,) = processes
        engine, store = process.engine, process.engine.store
        cancelled = await engine.submit_job(new_job(user=60), start=False)
        assert (await engine.cancel(cancelled.id, 60)).cancelled
        done = await engine.submit_job(new_job(user=61), start=False)
        for state, fields in (
            (JobState.SUBMITTED, {"task_id": "t-done"}),
            (JobState.DELIVERING, {}),
            (JobState.DONE, {}),
        ):
            await process.db.write(store.transition, done.id, state, **fields)
        for gone in (cancelled.id, done.id, 999_999):
            assert await engine.adopt_one(gone) == 0
        assert len(engine.queue) == 0

        queued = await engine.submit_job(new_job(user=62), start=False)
        await process.db.write(store.update, queued.id, status_message_id=6200)
        assert await engine.adopt_one(queued.id) == 1
        assert await engine.adopt_one(queued.id) == 0  # already here
        assert engine.queue.queued() == [queued.id]

        unshown = await engine.submit_job(replace(new_job(user=63), channel_id=700), start=False)
        assert await engine.adopt_one(unshown.id) == 0  # its front end's to place, for now
        assert unshown.id not in engine.queue and process.port.placed_again == []
        engine.clock = lambda: time.time() + PLACE_GRACE + 1  # and now it is late
        assert await engine.adopt_one(unshown.id) == 1
        assert await engine.adopt_one(unshown.id) == 0
        assert process.port.placed_again == [unshown.id]  # shown again once
        assert engine.queue.queued() == [queued.id, unshown.id]


async def _shown(process: Process, job_id: int) -> bool:
    row = await process.db.fetchone("SELECT notified_at FROM jobs WHERE id = ?", (job_id,))
    return row is not None and row["notified_at"] is not None


async def _ended(process: Process, job_id: int) -> JobState | None:
    job = await process.engine.store.get(job_id)
    return job.state if job is not None and job.state.terminal else None


async def test_a_dispatcher_that_lost_its_lease_cannot_write(tmp_path: Path) -> None:
    async with cluster_of(tmp_path) as (processes, _, _url):
        a, b = processes
        assert await a.lease.acquire()
        job = await a.engine.submit_job(new_job(user=3), start=False)
        # A pause or a cut network: PostgreSQL ends a's session (and its lock); a does not know.
        assert a.lease._conn is not None
        await a.lease._conn.close()
        assert a.lease.held
        assert await b.lease.acquire()
        with pytest.raises(LeaseLost):
            await a.engine.db.write(a.engine.store.update, job.id, submit_attempts=1)
        assert not a.lease.held  # and it knows now: no further step is tried
        with pytest.raises(LeaseLost):
            await a.engine._still_dispatching()
        assert (await b.engine.store.get(job.id)).submit_attempts == 0  # type: ignore[union-attr]
        # The new holder's writes pass.
        await b.engine.db.write(b.engine.store.update, job.id, submit_attempts=1)


async def test_a_dispatcher_that_lost_its_lease_still_answers_its_members(tmp_path: Path) -> None:
    """Its front end's writes are any process's to make: it places a job its member asked for
    (and hands it to the new dispatcher) and cancels a queued one, in the moment before it finds
    out and exits. Only its dispatching is fenced."""
    async with cluster_of(tmp_path) as (processes, _, _url):
        a, b = processes
        assert await a.lease.acquire()
        shown = await a.engine.submit_job(new_job(user=3), start=False)
        dropped = await a.engine.submit_job(new_job(user=4), start=False)
        assert a.lease._conn is not None
        await a.lease._conn.close()
        assert await b.lease.acquire()
        placed = await a.engine.place(shown.id, status_message_id=77, thread_id=None)
        assert placed.status_message_id == 77 and placed.state is JobState.QUEUED
        outcome = await a.engine.cancel(dropped.id, 4)
        assert outcome.cancelled, outcome.key
        assert await _ledger(b.db, dropped.id) == {"reserve": 1, "charge": 0, "refund": 1}
        with pytest.raises(LeaseLost):  # and its dispatching stays fenced
            await a.engine._still_dispatching()


async def test_a_task_whose_record_the_fence_refused_is_cancelled(tmp_path: Path) -> None:
    """The lease moves on while a submission is on its way: the old dispatcher's record of the
    task is refused, so it cancels the task (the new dispatcher submits the job again) and
    leaves the job queued, refunded of nothing."""
    # One task of the model at a time at DashScope: the second waits, pending, cancellable.
    async with cluster_of(tmp_path, max_in_flight={MODEL: 1}) as (processes, running, _):
        a, b = processes
        assert await a.lease.acquire()
        await a.engine.start()  # dispatching, without the lease's own checks (a long pause)
        holding = await a.engine.submit_job(new_job("sim:slow=8 hold the slot", user=5))
        await wait_until(lambda: _state(a, holding.id, JobState.SUBMITTED), timeout=10)
        running.sim.faults = running.sim.faults.merged({"latency_ms": 1500})  # slow answers
        job = await a.engine.submit_job(new_job("the one on its way", user=6))

        async def on_its_way() -> bool:
            row = await a.engine.store.get(job.id)
            return row is not None and row.submit_attempts == 1

        await wait_until(on_its_way, timeout=10, what="the submission under way")
        assert a.lease._conn is not None
        await a.lease._conn.close()
        assert await b.lease.acquire()
        tasks = running.sim.store.listed

        def cancelled() -> bool:
            return any(t.prompt == "the one on its way" and t.canceled_at for t in tasks())

        await wait_until(cancelled, timeout=10, what="the refused task cancelled")
        row = await b.engine.store.get(job.id)
        assert row is not None and row.state is JobState.QUEUED and row.task_id is None


async def test_a_cancel_on_a_standby_is_carried_out_by_the_dispatcher(tmp_path: Path) -> None:
    # DashScope runs one task of the model at a time: the second waits, pending, cancellable.
    async with cluster_of(tmp_path, max_in_flight={MODEL: 1}) as (processes, _, _):
        for process in processes:
            await process.dispatch.start()
        leader = await dispatcher_of(processes)
        standby = next(p for p in processes if p is not leader)
        await standby.engine.submit_job(new_job("sim:slow=0.6 first", user=8))
        job = await standby.engine.submit_job(new_job("sim:slow=0.6 pending", user=9))
        await wait_until(lambda: _state(standby, job.id, JobState.SUBMITTED), timeout=10)
        outcome = await standby.engine.cancel(job.id, 9)
        assert outcome.cancelled, outcome.key
        assert await _ledger(standby.db, job.id) == {"reserve": 1, "charge": 0, "refund": 1}


async def test_a_cancel_clicked_on_a_standby_is_answered_while_it_waits_for_the_dispatcher(
    tmp_path: Path,
) -> None:
    """The Cancel button on a standby: the dispatcher does not carry it out (here it answers
    nothing at all), so the standby waits `CANCEL_WAIT` (5 s) for the row to move, longer than
    Discord's 3 s to acknowledge a click. The click is acknowledged at once and answered then."""
    async with postgres_schema() as url:
        with psycopg.connect(url, autocommit=True) as unresponsive:  # holds the lease, silent
            unresponsive.execute(f"SELECT pg_advisory_lock({LEASE_LOCK})")
            async with bot_env(tmp_path, database_url=url) as env:
                assert env.bot is not None and env.bot.svc.dispatch.role == "standby"
                alice = env.world.alice
                _, job = await imagine(env, "a slow lantern", user=alice, wait=False)
                # Submitted by the dispatcher, as far as the row says.
                await env.bot.engine.db.write(
                    env.bot.engine.store.transition, job.id, JobState.SUBMITTED, task_id="t-1"
                )
                status = env.status_message(job)
                click = await env.fake.click(status, f"wan:job:{job.id}:cancel", user=alice)
                await env.fake.wait_for_ack(click, timeout=2.0)
                assert click.acknowledged
                answered = await wait_until(
                    lambda: [m for m in replies(click) if m.content], timeout=10, what="answer"
                )
                running = CancelOutcome(False, "job.cancel.running", {"job_id": job.id})
                assert answered[-1].content == running.message("en")
                assert answered[-1].ephemeral
                assert (await env.job(job.id)).state is JobState.SUBMITTED


async def test_a_job_placed_on_a_standby_ends_showing_the_dispatchers_last_word(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A standby posts a job's status message, records it and hands the job over; the
    dispatcher may end it at once (moderation refuses it at submission) and show its failure.
    The standby edits that status no more: its edit waits for the channel's turn, so it could
    come after the dispatcher's and hide the failure under "queued" for good."""
    async with cluster_of(tmp_path) as (processes, _, _):
        for process in processes:
            await process.dispatch.start()
        leader = await dispatcher_of(processes)
        standby = next(p for p in processes if p is not leader)
        shown: list[JobState] = []  # what the status message said, in order
        told = asyncio.Event()

        async def leader_status(job: Job, position: int | None = None) -> bool | None:
            shown.append(job.state)
            return None

        async def leader_failed(job: Job, message: str) -> bool | None:
            shown.append(job.state)
            told.set()
            return None

        async def standby_status(job: Job, position: int | None = None) -> bool | None:
            if job.status_message_id is None:  # nothing to edit yet (as on Discord)
                return None
            await told.wait()  # the channel's turn comes after the dispatcher's edit
            shown.append(job.state)
            return None

        monkeypatch.setattr(leader.port, "status_changed", leader_status)
        monkeypatch.setattr(leader.port, "failed", leader_failed)
        monkeypatch.setattr(standby.port, "status_changed", standby_status)
        job = await standby.engine.submit_job(new_job("sim:moderate-input", user=40), start=False)
        placed = asyncio.create_task(
            standby.engine.place(job.id, status_message_id=4000, thread_id=None)
        )
        await asyncio.wait_for(told.wait(), timeout=10)
        await asyncio.wait_for(placed, timeout=10)
        assert shown and shown[-1] is JobState.FAILED, shown
        await wait_until(lambda: _shown(leader, job.id), timeout=10, what="failure recorded told")
        assert await _ledger(standby.db, job.id) == {"reserve": 1, "charge": 0, "refund": 1}


async def _ledger(db: Database, job_id: int) -> dict[str, int]:
    rows = await db.fetchall("SELECT entry, images FROM ledger WHERE job_id = ?", (job_id,))
    return {row["entry"]: row["images"] for row in rows}


async def _state(process: Process, job_id: int, state: JobState) -> bool:
    job = await process.engine.store.get(job_id)
    return job is not None and job.state is state


async def test_bots_in_two_schemas_of_one_database_keep_to_their_own(tmp_path: Path) -> None:
    """Advisory locks and notification channels belong to the database, the rows to a schema:
    each schema's bots have a dispatcher of their own and hear only their own notifications."""
    async with postgres_schema() as one, postgres_schema() as two:
        dbs = [await Database.open(url) for url in (one, two)]
        leases = [Lease(one, "one"), Lease(two, "two")]
        heard: list[list[str]] = [[], []]
        listeners = []
        try:
            for lease in leases:
                assert await asyncio.wait_for(lease.acquire(), 5)

            for db, notes in zip(dbs, heard, strict=True):
                assert isinstance(db, PostgresDatabase)
                listeners.append(await _listening(db, notes))
            await notify(dbs[0], "cancel:1:2:1")
            await notify(dbs[1], "queued:7")
            await wait_until(lambda: heard[0] and heard[1], timeout=5, what="notifications")
            await asyncio.sleep(0.2)  # anything crossing over would have come by now
            assert heard == [["cancel:1:2:1"], ["queued:7"]]
        finally:
            for task in listeners:
                task.cancel()
            await asyncio.gather(*listeners, return_exceptions=True)
            for lease in leases:
                await lease.release()
            for db in dbs:
                await db.close()


async def _listening(db: PostgresDatabase, notes: list[str]) -> asyncio.Task[None]:
    """A listener adding what it hears to `notes`, once it listens."""
    ready = asyncio.Event()

    async def heard(payload: str) -> None:
        notes.append(payload)

    async def connected() -> None:
        ready.set()

    task = asyncio.create_task(listen(db, heard, connected))
    await asyncio.wait_for(ready.wait(), 5)
    return task


async def test_the_identify_gate_spaces_one_bucket_across_processes(tmp_path: Path) -> None:
    async with postgres_schema() as url:
        first, second = await Database.open(url), await Database.open(url)
        try:
            gates = [DatabaseIdentifyGate(db, interval=0.4) for db in (first, second)]
            started = time.monotonic()
            await gates[0].wait_turn(0, 2)  # bucket 0
            await gates[1].wait_turn(1, 2)  # bucket 1: at once
            assert time.monotonic() - started < 0.3
            await gates[1].wait_turn(2, 2)  # bucket 0 again, from the other process: waits
            assert time.monotonic() - started >= 0.4
        finally:
            await first.close()
            await second.close()


async def test_clusters_in_two_schemas_of_one_database_each_have_a_dispatcher() -> None:
    """Advisory locks belong to the database, not the schema: the lease and every lock of ours
    is keyed by the schema too, so deployments side by side in one database (or tests in
    schemas of their own) do not wait on each other's."""
    async with postgres_schema() as first_url, postgres_schema() as second_url:
        dbs = [await Database.open(url) for url in (first_url, second_url)]
        leases = [Lease(first_url, "a"), Lease(second_url, "b"), Lease(first_url, "c")]
        try:
            assert await leases[0]._try()
            assert await leases[1]._try()  # not held by the other schema's dispatcher
            assert not await leases[2]._try()  # held by this schema's
            # A transaction's lock (a member's reservation) is the schema's alone too.
            with psycopg.connect(first_url) as holder:
                PgConn(holder).lock("user", 42)  # held until this transaction ends
                for url, free in ((second_url, True), (first_url, False)):
                    with psycopg.connect(url) as other:
                        taken = other.execute(
                            f"SELECT pg_try_advisory_xact_lock({LOCK_KEY})", ("user:42",)
                        ).fetchone()
                        assert taken == (free,)
        finally:
            for lease in leases:
                await lease.release()
            for db in dbs:
                await db.close()
