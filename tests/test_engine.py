"""The job engine against the in-loop simulator: list and direct polling, query faults, partial
and failed tasks, expiry, the query budget, delivery retries, recovery after a stop, cancelling.

Every scenario runs in `rig`, which on the way out checks the ledger: for each ended job
reserve = charge + refund, and the charge equals the images actually delivered."""

from __future__ import annotations

import asyncio
import gc
import tracemalloc
from dataclasses import replace
from pathlib import Path

import pytest

from bot.dashscope.errors import DownloadError
from bot.dashscope.retry import NO_RETRIES
from bot.dispatch.delivery import DeliveryError, FileDelivery
from bot.dispatch.engine import EngineStopping
from bot.i18n import text
from bot.jobs.model import Job, JobState
from bot.media.downloads import Download, ResultFetcher
from tests.backends import execute
from tests.engine_helpers import (
    DIRECT,
    FAST,
    LEGACY_MODEL,
    MODEL,
    RecordingPort,
    Rig,
    new_job,
    record_submissions,
    rig,
    shrink_backoff,
    sim_settings,
    wait_until,
)


@pytest.fixture(autouse=True)
def _fast_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    shrink_backoff(monkeypatch)


PNG = b"\x89PNG\r\n\x1a\n"


def sim_task(r: Rig, task_id: str | None) -> str:
    """A task's status as the simulator sees it now."""
    assert task_id is not None
    return r.sim.sim.status(r.sim.sim.store.tasks[task_id])


def requests(r: Rig, label: str) -> int:
    return r.sim.sim.requests.get(label, 0)


async def assert_done_and_delivered(r: Rig, jobs: list[Job]) -> None:
    manifests = r.manifests()
    for job in jobs:
        done = await r.job(job.id)
        assert done.state is JobState.DONE, (done.id, done.state, done.error_message)
        assert done.image_count == job.n
        assert (done.task_id is None) if job.sync else done.task_id
        record = manifests[job.id]
        assert len(record["files"]) == job.n
        for name in record["files"]:
            assert (r.out / name).read_bytes().startswith(PNG)
        results = await r.store.results(job.id)
        assert [x.delivered_message_id for x in results] == [job.id * 10 + i for i in range(job.n)]
        assert await r.ledger(job.id) == {"reserve": job.n, "charge": job.n, "refund": 0}


# --- polling: list and direct ------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["list", "direct"])
async def test_list_mode_and_direct_mode_both_reach_done(tmp_path: Path, mode: str) -> None:
    config = FAST if mode == "list" else DIRECT
    async with rig(tmp_path, config=config) as r:
        jobs = [
            await r.engine.submit_job(new_job(f"{mode} {i}", user=i % 2, n=1 + i % 2))
            for i in range(4)
        ]
        await r.wait_idle()
        await assert_done_and_delivered(r, jobs)
        assert sorted(r.port.delivered) == [job.id for job in jobs]
        if mode == "list":
            assert requests(r, "tasks.list") >= 1
            # The list says which finished; each task is then fetched once for its result.
            assert requests(r, "tasks.get") == len(jobs)
        else:
            assert requests(r, "tasks.list") == 0
            assert requests(r, "tasks.get") >= len(jobs)
        assert r.engine.in_flight(MODEL) == 0 and not r.engine.poller.tracked
        metrics = r.engine.metrics
        assert metrics.total("wanbot_images_charged_total") == sum(job.n for job in jobs)
        assert metrics.value("wanbot_submissions_total", model=MODEL) == len(jobs)


async def test_cold_start_polls_only_after_the_prior(tmp_path: Path) -> None:
    """Before any duration is learned the engine does not poll for the first few seconds (the
    prior says a task takes at least 5 s), then learns from what it saw."""
    async with rig(tmp_path, trained=False) as r:
        job = await r.engine.submit_job(new_job("cold"))
        await asyncio.sleep(0.6)
        assert requests(r, "tasks.get") + requests(r, "tasks.list") == 0
        assert (await r.job(job.id)).state is JobState.SUBMITTED
        assert r.engine.poller.tracked[job.id].next_direct - job.created_at > 30
        r.engine.durations.observe(MODEL, 1, 0.1)  # one sample is not enough to trust
        assert r.engine.durations.earliest(MODEL, 1) == 5.0
        for _ in range(2):
            r.engine.durations.observe(MODEL, 1, 0.1)
        assert r.engine.durations.earliest(MODEL, 1) == pytest.approx(0.08)
        await r.engine.stop(grace=0.1)  # the job stays submitted, its images reserved


# --- query faults ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "actions"),
    [
        ("direct", ["429", "429", "429", "429"]),
        ("direct", ["500", "503", "500"]),
        ("direct", ["drop", "drop", "500"]),
        ("list", ["429"]),
        ("list", ["503", "drop"]),
    ],
    ids=["direct-429-burst", "direct-5xx", "direct-drops", "list-429", "list-fails"],
)
async def test_query_faults_are_retried_until_done(
    tmp_path: Path, mode: str, actions: list[str]
) -> None:
    async with rig(tmp_path, config=FAST if mode == "list" else DIRECT) as r:
        r.sim.sim.set_faults(script=[{"route": "query", "action": a} for a in actions])
        jobs = [await r.engine.submit_job(new_job(f"fault {i}", user=i)) for i in range(3)]
        await r.wait_idle(timeout=20)
        await assert_done_and_delivered(r, jobs)
        injected = r.sim.sim.faults_injected
        assert sum(injected.values()) == len(actions)
        assert r.sim.sim.faults.script == []
        errors = r.engine.metrics.total("wanbot_api_errors_total")
        assert errors == len(actions)
        if mode == "list" and "429" not in actions:
            # A failing list is switched off for a while (a first failure: 10 s, not the 5 min
            # of a list that keeps failing): the rest is polled task by task.
            assert r.engine.clock() < r.engine.poller._list_off_until <= r.engine.clock() + 10
        if actions == ["429"]:
            assert r.engine.poller._list_off_until == 0.0  # a 429 only pauses the list


async def test_random_query_faults_still_finish_every_job(tmp_path: Path) -> None:
    async with rig(tmp_path, config=DIRECT) as r:
        r.sim.sim.set_faults(
            rate_429=0.1, rate_500=0.1, rate_503=0.05, rate_drop=0.05, routes="query"
        )
        jobs = [await r.engine.submit_job(new_job(f"random {i}", user=i)) for i in range(4)]
        await r.wait_idle(timeout=25)
        await assert_done_and_delivered(r, jobs)


@pytest.mark.parametrize("mode", ["list", "direct"])
async def test_the_global_query_budget_is_respected(tmp_path: Path, mode: str) -> None:
    rate = 8.0
    base = FAST if mode == "list" else DIRECT
    config = replace(base, task_query_rate=rate, max_in_flight=20, submit_rate=50.0)
    sim_config = sim_settings(submit_rps={MODEL: 100}, max_in_flight={MODEL: 20})
    async with rig(tmp_path, config=config, sim_config=sim_config) as r:
        count = 12
        jobs = [await r.engine.submit_job(new_job(f"budget {i}", user=i)) for i in range(count)]
        await r.wait_idle(timeout=25)
        await assert_done_and_delivered(r, jobs)
        state = r.sim.sim.state()
        assert state["task_queries"] >= count
        assert state["throttled"] == 0
        # Nobody else queries this simulator: its busiest second is the engine's.
        assert state["peak_query_rate"] <= rate + 2, state["peak_query_rate"]


# --- task outcomes -----------------------------------------------------------------------------


@pytest.mark.parametrize("model", [MODEL, LEGACY_MODEL])
async def test_a_partial_result_charges_only_the_delivered_image(
    tmp_path: Path, model: str
) -> None:
    async with rig(tmp_path) as r:
        job = await r.engine.submit_job(new_job("two foxes sim:partial=1", n=2, model=model))
        await r.wait_idle()
        done = await r.job(job.id)
        assert done.state is JobState.DONE and done.image_count == 1
        assert await r.ledger(job.id) == {"reserve": 2, "charge": 1, "refund": 1}
        results = await r.store.results(job.id)
        assert results[0].url is not None and results[0].delivered_message_id is not None
        if model == LEGACY_MODEL:  # this answer shape names the failed image too
            assert [(x.url, x.failure_code) for x in results[1:]] == [
                (None, "DataInspectionFailed")
            ]
            assert results[1].delivered_message_id is None
        else:  # wan2.6 lists only the images it made
            assert len(results) == 1
        assert len(r.manifests()[job.id]["files"]) == 1
        assert r.port.failures == []


@pytest.mark.parametrize(("locale", "lang"), [("en-US", "en"), ("zh-CN", "zh")])
async def test_a_moderated_output_fails_refunds_and_says_why(
    tmp_path: Path, locale: str, lang: str
) -> None:
    async with rig(tmp_path) as r:
        job = await r.engine.submit_job(new_job("sim:moderate-output", n=2, locale=locale))
        await r.wait_idle()
        failed = await r.job(job.id)
        assert failed.state is JobState.FAILED
        assert failed.error_code == "DataInspectionFailed"
        assert failed.error_message == text("error.content.output", lang)
        assert await r.ledger(job.id) == {"reserve": 2, "charge": 0, "refund": 2}
        assert r.failure_log() == [{"job_id": job.id, "message": failed.error_message}]
        assert r.port.deliver_calls == []


async def test_a_prompt_refused_at_submission_fails_at_once(tmp_path: Path) -> None:
    async with rig(tmp_path) as r:
        job = await r.engine.submit_job(new_job("sim:moderate-input", n=3))
        await r.wait_idle()
        failed = await r.job(job.id)
        assert failed.state is JobState.FAILED and failed.task_id is None
        assert failed.error_code == "DataInspectionFailed"
        assert "content moderation" in (failed.error_message or "")
        assert r.failure_log() == [{"job_id": job.id, "message": failed.error_message}]
        assert await r.ledger(job.id) == {"reserve": 3, "charge": 0, "refund": 3}
        assert r.engine.in_flight(MODEL) == 0


async def test_a_transient_submission_error_is_requeued_in_front(tmp_path: Path) -> None:
    async with rig(tmp_path) as r:
        # Without the client's own retries, the engine's re-queueing is what retries.
        r.engine.client = r.client.with_retry(NO_RETRIES)
        r.sim.sim.set_faults(script=[{"route": "submit", "action": "503"}])
        job = await r.engine.submit_job(new_job("retry me"))
        await r.wait_idle()
        done = await r.job(job.id)
        assert done.state is JobState.DONE and done.submit_attempts == 2
        assert requests(r, "image-generation") == 2
        await assert_done_and_delivered(r, [done])


async def test_submission_gives_up_after_max_attempts(tmp_path: Path) -> None:
    async with rig(tmp_path, config=replace(FAST, max_submit_attempts=3)) as r:
        r.engine.client = r.client.with_retry(NO_RETRIES)
        r.sim.sim.set_faults(script=[{"route": "submit", "action": "503"}] * 5)
        job = await r.engine.submit_job(new_job("never accepted", n=2))
        await r.wait_idle()
        failed = await r.job(job.id)
        assert failed.state is JobState.FAILED and failed.error_code == "ModelUnavailable"
        assert failed.submit_attempts == 3 and requests(r, "image-generation") == 3
        assert await r.ledger(job.id) == {"reserve": 2, "charge": 0, "refund": 2}
        assert r.engine.in_flight(MODEL) == 0


async def test_an_expired_task_fails_and_is_refunded(tmp_path: Path) -> None:
    async with rig(tmp_path, config=DIRECT, sim_config=sim_settings(task_ttl=60.0)) as r:
        job = await r.engine.submit_job(new_job("sim:slow=30 takes forever", n=2))
        running = await r.wait_state(job.id, JobState.RUNNING)
        assert sim_task(r, running.task_id) == "RUNNING"
        r.sim.sim.advance_clock(61)
        assert sim_task(r, running.task_id) == "UNKNOWN"
        failed = await r.wait_state(job.id, JobState.FAILED, timeout=10)
        assert failed.error_code == "UNKNOWN"
        assert failed.error_message == text("error.task_expired", "en")
        assert await r.ledger(job.id) == {"reserve": 2, "charge": 0, "refund": 2}
        assert r.failure_log()[0]["job_id"] == job.id
        assert r.engine.in_flight(MODEL) == 0


# --- delivery ----------------------------------------------------------------------------------


async def test_results_are_downloaded_and_written_once(tmp_path: Path) -> None:
    async with rig(tmp_path) as r:
        job = await r.engine.submit_job(new_job("three lighthouses", n=3))
        await r.wait_idle()
        await assert_done_and_delivered(r, [job])
        assert r.attempts() == [f"wanbot-job-{job.id}"]
        assert requests(r, "results") == 3
        record = r.manifests()[job.id]
        assert record["files"] == [f"job-{job.id}-{i}.png" for i in (1, 2, 3)]
        # The port is idempotent: delivering again (after a crash) writes nothing new.
        stamps = {name: (r.out / name).stat().st_mtime_ns for name in record["files"]}
        files = FileDelivery(r.out)
        again = await files.deliver(await r.job(job.id), [])
        assert again == record["message_ids"]
        assert {name: (r.out / name).stat().st_mtime_ns for name in record["files"]} == stamps
        assert r.attempts() == [f"wanbot-job-{job.id}"] * 2
        assert len(r.manifests()) == 1


async def test_a_retryable_delivery_failure_is_retried_then_delivered_once(
    tmp_path: Path,
) -> None:
    async with rig(tmp_path) as r:
        failures = 3

        async def flaky(job: Job) -> None:
            if r.port.deliver_calls.count(job.id) <= failures:
                raise DeliveryError("Discord answered 503")

        r.port.before_deliver = flaky
        job = await r.engine.submit_job(new_job("flaky", n=2))
        await r.wait_idle()
        await assert_done_and_delivered(r, [job])
        assert r.port.deliver_calls == [job.id] * (failures + 1)
        assert r.port.delivered == [job.id]
        assert r.attempts() == [f"wanbot-job-{job.id}"]
        assert (await r.job(job.id)).delivery_attempts == failures
        assert r.engine.metrics.total("wanbot_delivery_failures_total") == failures
        assert r.failure_log() == []


async def test_delivery_gives_up_after_max_attempts(tmp_path: Path) -> None:
    config = replace(FAST, max_delivery_attempts=3)
    async with rig(tmp_path, config=config) as r:

        async def always(job: Job) -> None:
            raise DeliveryError("the channel is gone for now")

        r.port.before_deliver = always
        job = await r.engine.submit_job(new_job("never arrives", n=2))
        await r.wait_idle()
        failed = await r.job(job.id)
        assert failed.state is JobState.FAILED and failed.error_code == "DeliveryFailed"
        assert r.port.deliver_calls == [job.id] * 3
        assert await r.ledger(job.id) == {"reserve": 2, "charge": 0, "refund": 2}
        expected = text("job.delivery_failed", "en", detail="the channel is gone for now")
        assert r.failure_log() == [{"job_id": job.id, "message": expected}]


async def test_a_non_retryable_delivery_failure_fails_at_once(tmp_path: Path) -> None:
    async with rig(tmp_path) as r:

        async def refuse(job: Job) -> None:
            raise DeliveryError("missing permission to post", retryable=False)

        r.port.before_deliver = refuse
        job = await r.engine.submit_job(new_job("forbidden", n=1, locale="zh-CN"))
        await r.wait_idle()
        failed = await r.job(job.id)
        assert failed.state is JobState.FAILED and not failed.retryable
        assert r.port.deliver_calls == [job.id]
        assert await r.ledger(job.id) == {"reserve": 1, "charge": 0, "refund": 1}
        expected = text("job.delivery_failed", "zh", detail="missing permission to post")
        assert r.failure_log() == [{"job_id": job.id, "message": expected}]
        assert r.manifests() == {}


async def test_an_expired_result_url_fails_the_job_with_a_refund(tmp_path: Path) -> None:
    async with rig(tmp_path, sim_config=sim_settings(result_ttl=120.0)) as r:

        async def late(job: Job) -> None:
            if len(r.port.deliver_calls) == 1:
                r.sim.sim.advance_clock(121)  # the URLs expire while the first try fails
                raise DeliveryError("Discord answered 502")

        r.port.before_deliver = late
        job = await r.engine.submit_job(new_job("expiring", n=2))
        await r.wait_idle()
        failed = await r.job(job.id)
        assert failed.state is JobState.FAILED and failed.error_code == "DeliveryFailed"
        assert await r.ledger(job.id) == {"reserve": 2, "charge": 0, "refund": 2}
        expected = text("job.delivery_failed", "en", detail="no result image could be downloaded")
        assert r.failure_log() == [{"job_id": job.id, "message": expected}]
        assert r.port.deliver_calls == [job.id]  # nothing left to hand to the port
        assert requests(r, "results") == 4  # two good downloads, two refused as expired


class FlakyFetcher(ResultFetcher):
    def __init__(self, inner: ResultFetcher, failures: int) -> None:
        self.inner = inner
        self.failures = failures
        self.calls = 0

    async def fetch(self, url: str, *, video: bool = False) -> Download:
        self.calls += 1
        if self.calls <= self.failures:
            raise DownloadError("HTTP 503 for the bucket", status=503)
        return await self.inner.fetch(url)


async def test_a_transient_download_failure_is_retried(tmp_path: Path) -> None:
    async with rig(tmp_path) as r:
        r.engine.fetcher = FlakyFetcher(r.engine.fetcher, failures=2)
        job = await r.engine.submit_job(new_job("bucket hiccup", n=2))
        await r.wait_idle()
        await assert_done_and_delivered(r, [job])
        assert (await r.job(job.id)).delivery_attempts == 2
        assert r.port.deliver_calls == [job.id]  # the port saw only the complete set


# --- recovery ----------------------------------------------------------------------------------


async def test_a_new_engine_resumes_every_job_after_a_stop(tmp_path: Path) -> None:
    config = replace(FAST, max_in_flight=2)
    async with rig(tmp_path, config=config) as r:
        seen = record_submissions(r.sim)
        crashed = asyncio.Event()

        async def crash_after_writing(job: Job) -> None:
            if job.id == x.id:
                crashed.set()
                await asyncio.Event().wait()  # killed here: files written, row not updated

        r.port.after_write = crash_after_writing
        x = await r.engine.submit_job(new_job("delivered before the crash", user=1, n=2))
        await wait_until(crashed.is_set, what="x's files written")
        y = await r.engine.submit_job(new_job("sim:slow=1.2 y", user=2))
        z = await r.engine.submit_job(new_job("sim:slow=1.2 z", user=3, n=2))
        y_row = await r.wait_state(y.id, JobState.SUBMITTED, JobState.RUNNING)
        z_row = await r.wait_state(z.id, JobState.SUBMITTED, JobState.RUNNING)
        queued = [await r.engine.submit_job(new_job(f"queued {i}", user=4)) for i in range(3)]
        await asyncio.sleep(0.05)
        await r.engine.stop(grace=0.2)

        states = {job.id: (await r.job(job.id)).state for job in [x, y, z, *queued]}
        assert states[x.id] is JobState.DELIVERING
        assert states[y.id] in (JobState.SUBMITTED, JobState.RUNNING)
        assert states[z.id] in (JobState.SUBMITTED, JobState.RUNNING)
        assert [states[job.id] for job in queued] == [JobState.QUEUED] * 3
        assert len(seen) == 3

        port = RecordingPort(r.out)
        engine = r.make_engine(config, port)
        await engine.start()
        await r.wait_idle(engine, timeout=15)

        everyone = [x, y, z, *queued]
        await assert_done_and_delivered(r, everyone)
        # Nothing was submitted twice: y and z were polled by their task ids.
        assert [s.prompt for s in seen] == [
            "delivered before the crash",
            "sim:slow=1.2 y",
            "sim:slow=1.2 z",
            "queued 0",
            "queued 1",
            "queued 2",
        ]
        assert (await r.job(y.id)).task_id == y_row.task_id
        assert (await r.job(z.id)).task_id == z_row.task_id
        # x was delivered again, but its manifest (what the user saw) exists once.
        attempts = r.attempts()
        assert attempts.count(f"wanbot-job-{x.id}") == 2
        assert all(attempts.count(f"wanbot-job-{job.id}") == 1 for job in everyone[1:])
        assert sorted(r.manifests()) == sorted(job.id for job in everyone)
        assert sorted(port.delivered) == sorted(job.id for job in everyone)
        assert port.failures == [] and r.port.failures == []


class InstantImages(ResultFetcher):
    """Every result URL answered with the same few bytes, so the simulator draws nothing."""

    def __init__(self) -> None:
        pass

    async def fetch(self, url: str, *, video: bool = False) -> Download:
        return Download(url, PNG, "image/png")


async def test_the_engine_keeps_nothing_for_the_jobs_it_has_run(tmp_path: Path) -> None:
    """A bot runs for months: once jobs have ended, what the engine made for them (memory
    allocated in bot/dispatch and still alive) is let go, whatever their number."""
    batch, batches = 20, 8

    async def run(name: str) -> None:  # a batch at a time: the same peak as the warm-up's
        for k in range(batch):
            await r.engine.submit_job(new_job(f"{name} {k}", user=1 + k % 5))
        await r.wait_idle()
        await asyncio.sleep(0.1)  # the last endings' bookkeeping

    def kept() -> int:
        gc.collect()
        snapshot = tracemalloc.take_snapshot()
        ours = snapshot.filter_traces([tracemalloc.Filter(True, "*/bot/dispatch/*")])
        return sum(stat.size for stat in ours.statistics("filename"))

    wide = replace(FAST, max_in_flight=batch, submit_rate=200.0, task_query_rate=200.0)
    quick = sim_settings(submit_rps={MODEL: 200}, task_query_qps=1000)  # no 429s to log
    tracemalloc.start()  # from the start: a table that is merely rebuilt is no growth
    try:
        async with rig(tmp_path, config=wide, sim_config=quick) as r:
            r.engine.fetcher = InstantImages()
            for w in range(3):  # warm-up: tables at their peak size, durations, counters
                await run(f"warm-up {w}")
            before = kept()
            for b in range(batches):
                await run(f"batch {b}")
            after = kept()
    finally:
        tracemalloc.stop()
    assert after - before < batch * batches * 16, (before, after)


async def test_a_final_status_cut_off_by_a_crash_is_shown_at_the_next_start(
    tmp_path: Path,
) -> None:
    """The job ended (done, cancelled) but the process died before its status message said
    so: the next start shows the final status, once; jobs whose end was shown are left alone."""
    async with rig(tmp_path) as r:
        done = await r.engine.submit_job(new_job("shown", n=2))
        await r.wait_idle()
        assert (await r.job(done.id)).state is JobState.DONE
        assert (done.id, JobState.DONE, None) in r.port.statuses
        cut = await r.engine.submit_job(new_job("its end was never shown"))
        await r.wait_idle()
        await r.engine.stop(grace=0.1)
        await execute(r.db, "UPDATE jobs SET notified_at = NULL WHERE id = ?", (cut.id,))

        port = RecordingPort(r.out)
        engine = r.make_engine(port=port)
        await engine.start()
        await wait_until(lambda: port.statuses, what="the final status shown again")
        assert port.statuses == [(cut.id, JobState.DONE, None)]
        row = await r.db.fetchone("SELECT notified_at FROM jobs WHERE id = ?", (cut.id,))
        assert row is not None and row["notified_at"] is not None
        await engine.stop(grace=0.1)

        again = RecordingPort(r.out)
        third = r.make_engine(port=again)
        await third.start()
        await asyncio.sleep(0.2)
        assert again.statuses == []


async def test_a_final_status_that_failed_to_show_is_shown_at_the_next_start(
    tmp_path: Path,
) -> None:
    async with rig(tmp_path) as r:
        r.port.unshown = {JobState.DONE}  # Discord answered 5xx to the final edit
        job = await r.engine.submit_job(new_job("its end was not shown"))
        await r.wait_idle()
        await r.engine.stop(grace=0.1)
        row = await r.db.fetchone("SELECT notified_at FROM jobs WHERE id = ?", (job.id,))
        assert row is not None and row["notified_at"] is None

        port = RecordingPort(r.out)
        engine = r.make_engine(port=port)
        await engine.start()
        await wait_until(lambda: port.statuses, what="the final status shown again")
        assert port.statuses == [(job.id, JobState.DONE, None)]


async def test_a_failure_notice_that_failed_to_show_is_told_at_the_next_start(
    tmp_path: Path,
) -> None:
    async with rig(tmp_path) as r:
        r.port.untold = True  # Discord answered 5xx to the failure notice's edit
        job = await r.engine.submit_job(new_job("sim:moderate-input"))
        await wait_until(lambda: r.port.failures, what="the failure notice tried")
        await r.engine.stop(grace=5)  # the submission (and its failure's telling) ends first
        row = await r.db.fetchone("SELECT notified_at FROM jobs WHERE id = ?", (job.id,))
        assert row is not None and row["notified_at"] is None
        assert r.failure_log() == []

        port = RecordingPort(r.out)
        engine = r.make_engine(port=port)
        await engine.start()
        failed = await r.wait_state(job.id, JobState.FAILED)
        assert port.failures == [(job.id, failed.error_message)]
        assert r.failure_log() == [{"job_id": job.id, "message": failed.error_message}]


@pytest.mark.parametrize(("locale", "lang"), [("en-GB", "en"), ("zh-TW", "zh")])
async def test_a_sync_call_cut_by_a_restart_is_refunded_and_retryable(
    tmp_path: Path, locale: str, lang: str
) -> None:
    async with rig(tmp_path) as r:
        job = await r.engine.submit_job(new_job("sim:slow=5 sync", n=2, sync=True, locale=locale))
        await r.wait_state(job.id, JobState.SUBMITTED)
        await wait_until(lambda: requests(r, "multimodal-generation") == 1, what="the sync call")
        await r.engine.stop(grace=0.1)
        cut = await r.job(job.id)
        assert cut.state is JobState.SUBMITTED and cut.task_id is None
        assert await r.ledger(job.id) == {"reserve": 2}

        engine = r.make_engine()
        await engine.start()
        failed = await r.wait_state(job.id, JobState.FAILED)
        assert failed.retryable and failed.error_code == "Interrupted"
        assert failed.error_message == text("job.interrupted", lang)
        assert await r.ledger(job.id) == {"reserve": 2, "charge": 0, "refund": 2}
        assert r.failure_log() == [{"job_id": job.id, "message": failed.error_message}]
        assert requests(r, "multimodal-generation") == 1  # not sent again


async def test_a_sync_job_runs_to_done(tmp_path: Path) -> None:
    async with rig(tmp_path) as r:
        job = await r.engine.submit_job(new_job("sync fox", n=2, sync=True))
        await r.wait_idle()
        await assert_done_and_delivered(r, [job])
        assert requests(r, "multimodal-generation") == 1 and requests(r, "tasks.get") == 0


# --- cancelling --------------------------------------------------------------------------------


async def test_cancel_a_queued_job(tmp_path: Path) -> None:
    config = replace(FAST, max_in_flight=1)
    async with rig(tmp_path, config=config) as r:
        seen = record_submissions(r.sim)
        first = await r.engine.submit_job(new_job("sim:slow=0.5 first", user=1))
        second = await r.engine.submit_job(new_job("second", user=2, n=3))
        await r.wait_state(first.id, JobState.SUBMITTED, JobState.RUNNING)
        assert r.engine.position(second.id) == 1
        outcome = await r.engine.cancel(second.id, 2)
        assert (outcome.cancelled, outcome.key) == (True, "job.cancel.done")
        assert outcome.message("en") == text("job.cancel.done", "en", job_id=second.id)
        assert f"#{second.id}" in outcome.message("zh-CN")
        cancelled = await r.job(second.id)
        assert cancelled.state is JobState.CANCELLED and cancelled.finished_at is not None
        assert await r.ledger(second.id) == {"reserve": 3, "charge": 0, "refund": 3}
        assert r.engine.position(second.id) is None
        again = await r.engine.cancel(second.id, 2)
        assert (again.cancelled, again.key) == (False, "job.cancel.finished")
        await r.wait_idle()
        assert [s.prompt for s in seen] == ["sim:slow=0.5 first"]


async def test_cancel_a_task_pending_at_dashscope(tmp_path: Path) -> None:
    async with rig(tmp_path, sim_config=sim_settings(max_in_flight={MODEL: 1})) as r:
        first = await r.engine.submit_job(new_job("sim:slow=0.6 first", user=1))
        second = await r.engine.submit_job(new_job("second", user=2, n=2))
        pending = await r.wait_state(second.id, JobState.SUBMITTED)
        assert sim_task(r, pending.task_id) == "PENDING"
        outcome = await r.engine.cancel(second.id, 2)
        assert (outcome.cancelled, outcome.key) == (True, "job.cancel.done")
        assert requests(r, "tasks.cancel") == 1
        assert sim_task(r, pending.task_id) == "CANCELED"
        assert (await r.job(second.id)).state is JobState.CANCELLED
        assert await r.ledger(second.id) == {"reserve": 2, "charge": 0, "refund": 2}
        # The first job is drawing: it cannot be stopped and says so.
        running = await r.wait_state(first.id, JobState.RUNNING)
        refused = await r.engine.cancel(first.id, 1)
        assert (refused.cancelled, refused.key) == (False, "job.cancel.running")
        assert refused.message("en") == text("job.cancel.running", "en", job_id=first.id)
        assert requests(r, "tasks.cancel") == 1  # a running job is not even asked about
        assert sim_task(r, running.task_id) == "RUNNING"
        await r.wait_idle()
        assert (await r.job(first.id)).state is JobState.DONE
        assert r.engine.in_flight(MODEL) == 0


async def test_cancel_of_a_submitted_task_that_already_started_is_refused(
    tmp_path: Path,
) -> None:
    async with rig(tmp_path, config=DIRECT) as r:
        job = await r.engine.submit_job(new_job("sim:slow=0.6 started"))
        submitted = await r.wait_state(job.id, JobState.SUBMITTED, JobState.RUNNING)
        outcome = await r.engine.cancel(job.id, job.user_id)
        assert (outcome.cancelled, outcome.key) == (False, "job.cancel.running")
        if submitted.state is JobState.SUBMITTED:  # the engine asked; DashScope said no
            assert requests(r, "tasks.cancel") <= 1
        assert sim_task(r, submitted.task_id) == "RUNNING"
        await r.wait_idle()
        assert (await r.job(job.id)).state is JobState.DONE


async def test_cancel_during_submission_cancels_the_orphan_task(tmp_path: Path) -> None:
    async with rig(tmp_path, sim_config=sim_settings(max_in_flight={MODEL: 1})) as r:
        # The blocker holds the simulator's only slot, so the victim's task waits PENDING.
        blocker = await r.engine.submit_job(new_job("sim:slow=1.2 blocker", user=1))
        await r.wait_state(blocker.id, JobState.SUBMITTED, JobState.RUNNING)
        r.sim.sim.set_faults(latency_ms=200)  # every request now takes 0.2 s to be answered
        victim = await r.engine.submit_job(new_job("victim", user=2))
        await wait_until(lambda: requests(r, "image-generation") == 2, what="the submission")
        outcome = await r.engine.cancel(victim.id, 2)
        assert (outcome.cancelled, outcome.key) == (True, "job.cancel.done")

        def orphans() -> list[str]:
            tasks = r.sim.sim.store.tasks.values()
            return [r.sim.sim.status(t) for t in tasks if t.prompt == "victim"]

        await wait_until(lambda: orphans() == ["CANCELED"], what="the orphan task cancelled")
        r.sim.sim.set_faults(latency_ms=0)
        await r.wait_idle()
        cancelled = await r.job(victim.id)
        assert cancelled.state is JobState.CANCELLED and cancelled.task_id is None
        assert requests(r, "tasks.cancel") == 1
        assert await r.ledger(victim.id) == {"reserve": 1, "charge": 0, "refund": 1}
        assert r.engine.in_flight(MODEL) == 0


async def test_cancel_someone_elses_job_or_an_unknown_one(tmp_path: Path) -> None:
    config = replace(FAST, max_in_flight=1)
    async with rig(tmp_path, config=config) as r:
        blocker = await r.engine.submit_job(new_job("sim:slow=0.5 blocker", user=1))
        mine = await r.engine.submit_job(new_job("mine", user=7))
        await r.wait_state(blocker.id, JobState.SUBMITTED, JobState.RUNNING)
        refused = await r.engine.cancel(mine.id, 8)
        assert (refused.cancelled, refused.key) == (False, "job.cancel.not_yours")
        assert refused.message("en") == text("job.cancel.not_yours", "en", job_id=mine.id)
        assert (await r.job(mine.id)).state is JobState.QUEUED
        missing = await r.engine.cancel(999_999, 7)
        assert (missing.cancelled, missing.key) == (False, "job.cancel.not_found")
        assert "999999" in missing.message("zh")
        by_moderator = await r.engine.cancel(mine.id, 8, moderator=True)
        assert (by_moderator.cancelled, by_moderator.key) == (True, "job.cancel.done")
        assert (await r.job(mine.id)).state is JobState.CANCELLED
        await r.wait_idle()


async def test_a_stopping_engine_takes_no_new_jobs(tmp_path: Path) -> None:
    async with rig(tmp_path) as r:
        await r.engine.stop(grace=0.1)
        with pytest.raises(EngineStopping):
            await r.engine.submit_job(new_job())
        assert not r.engine.healthy
        row = await r.db.fetchone("SELECT COUNT(*) AS k FROM jobs")
        assert row is not None and row["k"] == 0


async def test_positions_are_told_while_queued(tmp_path: Path) -> None:
    config = replace(FAST, max_in_flight=1)
    async with rig(tmp_path, config=config) as r:
        jobs = [
            await r.engine.submit_job(new_job(f"sim:slow=0.2 in line {i}", user=1))
            for i in range(3)
        ]
        await r.wait_idle()
        told = [(j, p) for j, state, p in r.port.statuses if state is JobState.QUEUED]
        last = jobs[-1].id
        positions = [p for j, p in told if j == last]
        assert positions[0] in (2, 3) and 1 in positions
        assert positions == sorted(positions, reverse=True)
        gauges = await r.engine.gauges()
        assert gauges["wanbot_jobs"][(("state", "done"),)] == 3
        assert 'wanbot_jobs{state="done"} 3' in r.engine.metrics.render(gauges)
