"""The fault matrix: every DashScope fault × every Discord fault, on one running bot.

Rows and columns are data (`tests/faults.py`). Each cell starts one `/imagine` (n=2) in a
channel of its own, arms both faults, and asserts the outcome that `expected()` defines:

* one job, ending in exactly one terminal state that stays put;
* the user is told in words: the status message, or a DM when the channel is gone; never a
  traceback or an exception's name;
* the ledger: reserve n = charge + refund, and charge = the images actually posted;
* the process stays up: the bot keeps running, the engine's loops too, and a plain `/imagine`
  at the end of every column is drawn and delivered;
* no ERROR log, nothing the fake Discord does not know (`BotEnv.check_clean`).

All cells share one bot (about 1 s a cell); after each, the simulator's fault settings go back
to its configuration and the fake Discord's `fail_next` faults are cleared.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass

import pytest
import pytest_asyncio

from bot.backoff import Backoff
from bot.dashscope.retry import RetryPolicy
from bot.jobs.model import Job, JobState
from tests.discord_env import BotEnv, bot_env, replies
from tests.fakediscord import Channel, Message
from tests.faults import (
    DASHSCOPE_FAULTS,
    DISCORD_FAULTS,
    DashScopeFault,
    DiscordFault,
    Kind,
    N,
    sim_control,
)
from tests.figures import record

pytestmark = pytest.mark.asyncio(loop_scope="module")

CELL_TIMEOUT = 20.0  # seconds for one job to end, whatever its faults
# Speed: the client's backoff is shortened (the number of retries is production's) and the
# poller aims to have a finished task in hand within 0.15 s instead of 1 s, so it lists tasks
# every 0.1 s (the shortest gap it keeps at 20 queries/s) instead of about every 0.9 s.
QUICK_BACKOFF = RetryPolicy(backoff=Backoff(initial=0.05, cap=0.4))
NOTICE_TARGET = 0.15
# What the user must never read: a traceback, a Python exception's name, a repr.
RAW = re.compile(r"Traceback|File \"|\b\w+(?:Error|Exception)\b|<class |object at 0x")

OUTCOMES: Counter[str] = Counter()
TOLD: Counter[str] = Counter()
TABLE: dict[str, dict[str, str]] = {}


# --- the rule ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Expected:
    outcome: str  # "done" (all n images), "partial" (fewer) or "failed"
    charged: int  # images charged, which is the images posted
    words: str  # what the user reads (part of it)

    @property
    def state(self) -> JobState:
        return JobState.FAILED if self.outcome == "failed" else JobState.DONE


def expected(ds: DashScopeFault, dc: DiscordFault) -> Expected:
    """DashScope decides how many images there are; Discord whether they can be posted.

    1. DashScope gives no image (refused at submit, failed or expired task, answer lost,
       expired result URLs, a key of another region): the job fails before any result post,
       so whatever Discord does, nothing is charged and the user reads DashScope's reason.
    2. There are images but Discord will not take them (no permission, the thread or the
       channel deleted): the job fails, everything is refunded, the user reads why.
    3. Otherwise the Discord fault is one the bot gets past (429: wait and post again; 503:
       deliver again later, the nonce prevents a double post; 413: smaller files; an expired
       interaction token: never used for results): all images arrive ("done"), or the ones
       DashScope made ("partial"), and exactly the posted ones are charged.

    Where the user is told: in the status message; when the whole channel is gone, by DM.
    """
    if ds.images == 0:
        assert ds.told is not None
        return Expected("failed", 0, ds.told)
    if dc.blocks is not None:
        return Expected("failed", 0, dc.blocks)
    outcome = "done" if ds.images == N else "partial"
    return Expected(outcome, ds.images, f"✅ Done: {ds.images} image(s)")


# --- the shared bot ----------------------------------------------------------------------------


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def env(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[BotEnv]:
    started = time.monotonic()
    async with bot_env(
        tmp_path_factory.mktemp("fault-matrix"),
        limit_images_per_user_day=0,
        limit_images_per_guild_day=0,
        task_query_rate=20,  # the account's limit (the default keeps half of it spare)
    ) as env:
        assert env.bot is not None
        env.bot.engine.client.retry = QUICK_BACKOFF
        env.bot.engine.poller.notice_target = NOTICE_TARGET
        yield env
    cells = len(DASHSCOPE_FAULTS) * len(DISCORD_FAULTS)
    record(
        "fault_matrix",
        cells=cells,
        passed=sum(OUTCOMES.values()),
        outcomes=dict(OUTCOMES),
        told=dict(TOLD),
        table=TABLE,
        seconds=round(time.monotonic() - started, 1),
    )


@pytest.fixture(autouse=True)
def clean(env: BotEnv) -> Iterator[None]:
    yield
    env.check_clean()


async def until(
    predicate: Callable[[], bool], what: str | Callable[[], str], timeout: float = 5.0
) -> None:
    """Wait (bounded) until `predicate()` holds; fail saying `what` was awaited."""
    try:
        async with asyncio.timeout(timeout):
            while not predicate():
                await asyncio.sleep(0.01)
    except TimeoutError:
        raise AssertionError(
            f"timed out waiting for {what() if callable(what) else what}"
        ) from None


_channels = iter(range(1, 10_000))


async def fresh_channel(env: BotEnv) -> Channel:
    """A new text channel the bot knows of (Discord tells it with CHANNEL_CREATE)."""
    channel = env.fake.create_text_channel(env.world.guild, f"cell-{next(_channels)}")
    await env.fake.dispatch("CHANNEL_CREATE", env.fake.payloads.channel(channel))
    bot = env.bot
    assert bot is not None
    await until(lambda: bot.get_channel(channel.id) is not None, "the bot sees the channel")
    return channel


def posted_images(env: BotEnv, job: Job) -> int:
    return sum(
        1
        for message in env.result_messages(job)
        for attachment in message.attachments
        if attachment.filename.startswith(f"wan-{job.id}-")
    )


def direct_messages(env: BotEnv, user_id: int, job_id: int) -> list[Message]:
    dm = env.fake.state.dm_channels.get(user_id)
    if dm is None:
        return []
    return [m for m in env.fake.messages_in(dm) if f"#{job_id}**" in m.content]


def what_the_user_reads(env: BotEnv, job: Job) -> dict[str, str]:
    """The words about this job where its user reads them: the status message (as last edited
    while its channel existed) and DMs."""
    seen: dict[str, str] = {}
    if job.status_message_id is not None:
        seen["status"] = env.status_message(job).content
    dms = direct_messages(env, job.user_id, job.id)
    if dms:
        seen["dm"] = dms[-1].content
    return seen


def result_posts(env: BotEnv, target: int, first_request: int) -> list[int | None]:
    """Statuses Discord answered to the result posts of this cell."""
    path = f"/channels/{target}/messages"
    return [
        r.status for r in env.fake.requests[first_request:] if r.method == "POST" and r.path == path
    ]


async def plain_job(env: BotEnv) -> None:
    """The bot still takes a job and delivers it (after a column of faults)."""
    channel = await fresh_channel(env)
    latest = await env.latest_job_id()
    inter = await env.fake.slash(
        "imagine", {"prompt": "still alive sim:slow=0.1"}, user=env.world.bob, channel=channel
    )
    await env.fake.wait_for_ack(inter)
    job = await env.wait_job(await env.new_job(after=latest), timeout=CELL_TIMEOUT)
    assert job.state is JobState.DONE, job
    assert posted_images(env, job) == 1
    assert await env.ledger(job.id) == {"reserve": 1, "charge": 1, "refund": 0}


# --- the matrix --------------------------------------------------------------------------------


@pytest.mark.parametrize("ds", DASHSCOPE_FAULTS, ids=lambda f: f.key)
@pytest.mark.parametrize("dc", DISCORD_FAULTS, ids=lambda f: f.key)
async def test_cell(env: BotEnv, ds: DashScopeFault, dc: DiscordFault) -> None:
    want = expected(ds, dc)
    fake, user = env.fake, env.world.alice
    assert env.bot is not None and env.task is not None
    channel = await fresh_channel(env)
    jobs_before, latest = await env.job_count(), await env.latest_job_id()
    first_request = len(fake.requests)

    await ds.arm(env)
    try:
        inter = await fake.slash(
            "imagine", {"prompt": ds.prompt(ds.key), "n": N}, user=user, channel=channel
        )
        await fake.wait_for_ack(inter)
        job_id = await env.new_job(after=latest)
        # The user got the ephemeral "queued" answer (the job is placed); now the Discord fault.
        await until(lambda: bool(inter.followups), "the ephemeral answer")
        placed = await env.job(job_id)
        target = placed.thread_id or placed.channel_id
        assert target is not None
        await dc.arm(env, channel, target)
        job = await env.wait_job(job_id, timeout=CELL_TIMEOUT)
        if ds.settings.get("script"):  # the burst really happened
            assert env.sim.sim.faults.script == [], env.sim.sim.faults.script
    finally:
        dc.disarm(env)
        await ds.disarm(env)
        # A failed task list switches the poller to one-by-one polling for 5 minutes; the
        # next cell starts as a fresh process would.
        env.bot.engine.poller._list_off_until = 0.0

    # The user is told in words, where they can read them.
    def told() -> bool:
        return any(want.words in text for text in what_the_user_reads(env, job).values())

    await until(told, lambda: f"the user to read {want.words!r}: {what_the_user_reads(env, job)}")
    await fake.wait_idle()
    seen = what_the_user_reads(env, job)
    where = next(place for place, text in seen.items() if want.words in text)
    assert not RAW.search(seen[where]), seen[where]
    if dc.channel_gone and ds.images > 0:  # the failure came after the channel had gone
        assert where == "dm", seen
    assert [m for m in replies(inter) if m.ephemeral and f"Job #{job.id} is queued" in m.content]

    # Exactly one job, in one terminal state that stays put.
    assert await env.job_count() == jobs_before + 1
    job = await env.job(job_id)
    assert job.state is want.state, (job.state, job.error_code, job.error_message)

    # The ledger: reserved n, charged what was posted, refunded the rest, each once.
    posted = posted_images(env, job)
    outcome = "failed" if job.state is JobState.FAILED else "done" if posted == N else "partial"
    assert (outcome, posted) == (want.outcome, want.charged)
    assert await env.ledger(job.id) == {"reserve": N, "charge": posted, "refund": N - posted}
    rows = await env.bot.engine.db.fetchall("SELECT entry FROM ledger WHERE job_id = ?", (job.id,))
    assert sorted(row["entry"] for row in rows) == ["charge", "refund", "reserve"]
    if outcome != "failed":  # the results mention the user; the last one has the embed
        results = env.result_messages(job)
        assert f"<@{user.id}>" in results[0].content
        footer = (results[-1].embeds[0].get("footer") or {}).get("text", "")
        if outcome == "partial":
            assert f"{N - posted} image(s) could not be made and were not charged" in footer

    # The Discord fault hit the result post when there was one to hit.
    statuses = result_posts(env, target, first_request)
    if ds.images > 0 and dc.kind is Kind.FAIL_NEXT:
        assert statuses[0] == dc.status and statuses[-1] == 200, statuses
    if ds.images > 0 and dc.kind in (Kind.NO_SEND, Kind.DELETE_THREAD, Kind.DELETE_CHANNEL):
        assert statuses and all(s in (403, 404) for s in statuses), statuses
    if dc.kind is Kind.EXPIRE_TOKEN:  # results and failures never go through the dead token
        assert [r for r in fake.requests[first_request:] if r.status == 401] == []

    # Still the same state now that the bot has gone quiet.
    await fake.wait_idle()
    again = await env.job(job_id)
    assert (again.state, again.finished_at) == (job.state, job.finished_at)

    # The process is up, and takes new work after a column of faults.
    assert not env.task.done() and env.bot.engine.healthy
    if ds is DASHSCOPE_FAULTS[-1]:
        await plain_job(env)

    OUTCOMES[outcome] += 1
    TOLD[where] += 1
    TABLE.setdefault(ds.key, {})[dc.key] = outcome


async def test_the_simulator_is_back_to_normal(env: BotEnv) -> None:
    """The last cell cleaned up after itself: no fault is left armed anywhere."""
    faults = await sim_control(env, "/_sim/faults", {})
    assert faults["script"] == [] and faults["latency_ms"] == 0 and faults["task_ttl"] == 86400
