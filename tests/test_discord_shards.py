"""Shards: one process with every shard, two processes with one each, and the identify gate.

The fake Discord sends each guild's events to the session of its shard (`(id >> 22) % count`)
and DMs to shard 0, and records when each shard identified; a shorter identify interval than
Discord's 5 s (the fake's, and the gate's a little longer) keeps the tests fast.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import pytest

from bot.jobs.model import JobState
from bot.runtime.identify import LocalIdentifyGate
from tests.discord_env import BotEnv, bot_envs, embed_fields, imagine, invoke, replies
from tests.fakediscord import FakeDiscord

# (id >> 22) % 2 picks the shard of 2: these land on 0 and 1.
GUILD_ON_SHARD_0 = (2000 << 22) | 5
GUILD_ON_SHARD_1 = (2001 << 22) | 5
# The fake refuses nothing but records identifies of one bucket closer than its interval.
FAKE = {"shard_count": 2, "identify_interval": 0.3}
GATE_INTERVAL = 0.4


def shard_guilds(fake: FakeDiscord, world: Any) -> None:
    """A guild on each shard of 2, alice a member of both (before the bots start)."""
    for name, guild_id in (("even", GUILD_ON_SHARD_0), ("odd", GUILD_ON_SHARD_1)):
        guild = fake.create_guild(f"{name} guild", id=guild_id)
        fake.add_member(guild, world.alice)
        setattr(world, name, fake.channel(guild, "general"))
    assert [fake.shard_of(g, 2) for g in (GUILD_ON_SHARD_0, GUILD_ON_SHARD_1)] == [0, 1]


async def quota_where(env: BotEnv, channel: Any) -> tuple[str, list[tuple[int, int]]]:
    """/quota in a channel: the first line of the answer, and the shards it was sent to."""
    inter = await invoke(env, "quota", user=env.world.alice, channel=channel)
    [answer] = replies(inter)
    first_line = answer.embeds[0]["description"].splitlines()[0]
    return first_line, env.fake.shards_sent("INTERACTION_CREATE", inter.id)


# --- the gate -----------------------------------------------------------------------------------


async def test_the_local_gate_spaces_identifies_of_a_bucket_and_not_across_buckets() -> None:
    gate = LocalIdentifyGate(interval=0.3)
    start = time.monotonic()
    turns: dict[int, float] = {}

    async def identify(shard: int) -> None:
        await gate.wait_turn(shard, 2)  # buckets: even shards 0, odd shards 1
        turns[shard] = time.monotonic() - start

    await asyncio.gather(*(identify(shard) for shard in (0, 2, 4, 1, 3)))
    even = sorted(turns[s] for s in (0, 2, 4))
    odd = sorted(turns[s] for s in (1, 3))
    assert even[1] - even[0] >= 0.3 and even[2] - even[1] >= 0.3
    assert odd[1] - odd[0] >= 0.3
    assert turns[1] < turns[2]  # the odd bucket did not wait for the even one
    # One bucket when Discord allows one identify at a time.
    single = LocalIdentifyGate(interval=0.2)
    await single.wait_turn(0, 1)
    before = time.monotonic()
    await single.wait_turn(1, 1)
    assert time.monotonic() - before >= 0.2


# --- one process, every shard -------------------------------------------------------------------


@pytest.mark.parametrize(
    "shards",
    [{}, {"shard_count": 2, "shard_ids": "0,1"}],
    ids=["count-from-discord", "shard-ids-0-1"],
)
async def test_one_process_runs_both_shards_and_answers_on_each(
    tmp_path: Any, shards: dict[str, Any]
) -> None:
    gate = LocalIdentifyGate(interval=GATE_INTERVAL)
    async with bot_envs(
        tmp_path, fake_options=FAKE, prepare=shard_guilds, identify_gate=gate, **shards
    ) as (env,):
        bot, fake, w = env.bot, env.fake, env.world
        assert bot is not None
        assert bot.shard_count == 2 and sorted(bot.shards) == [0, 1]
        # /gateway/bot was read either way: for the count, and for how many start at once.
        assert fake.requests_to("GET", "/gateway/bot") and bot.max_concurrency == 1
        assert [i.shard for i in fake.identified] == [(0, 2), (1, 2)]
        assert fake.identifies_too_soon() == []  # the second waited its turn at the gate
        assert {g.id for g in bot.guilds} >= {GUILD_ON_SHARD_0, GUILD_ON_SHARD_1}
        assert await quota_where(env, w.even) == ("Images in the last 24 h: 0 of 25", [(0, 2)])
        assert await quota_where(env, w.odd) == ("Images in the last 24 h: 0 of 25", [(1, 2)])
        assert bot.is_ready() and all(not shard.is_closed() for shard in bot.shards.values())


async def test_a_failed_gateway_read_with_a_set_count_starts_one_session_at_a_time(
    tmp_path: Any, caplog: pytest.LogCaptureFixture
) -> None:
    def refuse_gateway_bot(fake: FakeDiscord, world: Any) -> None:
        fake.max_concurrency = 2  # not learnt: the bot keeps to one at a time
        fake.fail_next("GET", "/gateway/bot", 403)

    gate = LocalIdentifyGate(interval=GATE_INTERVAL)
    with caplog.at_level(logging.WARNING, logger="bot"):
        async with bot_envs(
            tmp_path,
            fake_options=FAKE,
            prepare=refuse_gateway_bot,
            identify_gate=gate,
            shard_count=2,
        ) as (env,):
            assert env.bot is not None and env.bot.max_concurrency == 1
            (t0,), (t1,) = env.fake.identify_times(0), env.fake.identify_times(1)
            assert t1 - t0 >= FAKE["identify_interval"]
    assert "GET /gateway/bot failed: starting one session per 5 s" in caplog.text


# --- two processes, one shard each --------------------------------------------------------------


async def test_two_processes_each_answer_their_own_shard_and_dms_come_to_shard_0(
    tmp_path: Any,
) -> None:
    """Bot A runs shard 0 of 2 and bot B shard 1, each with its own database (a daily limit of
    7 for A, 9 for B, so the answer tells who gave it), started together and spaced by one
    shared identify gate, as two processes on one database would be."""
    gate = LocalIdentifyGate(interval=GATE_INTERVAL)
    async with bot_envs(
        tmp_path,
        {"shard_ids": "0", "limit_images_per_user_day": 7},
        {"shard_ids": "1", "limit_images_per_user_day": 9},
        shard_count=2,
        allow_dms=True,
        fake_options=FAKE,
        prepare=shard_guilds,
        identify_gate=gate,
    ) as (a, b):
        fake, w = a.fake, a.world
        assert a.bot is not None and b.bot is not None
        assert sorted(a.bot.shards) == [0] and sorted(b.bot.shards) == [1]
        assert sorted(i.shard for i in fake.identified) == [(0, 2), (1, 2)]
        assert fake.identifies_too_soon() == []
        (t0,), (t1,) = fake.identify_times(0), fake.identify_times(1)
        assert abs(t1 - t0) >= FAKE["identify_interval"]
        assert a.bot.get_guild(GUILD_ON_SHARD_0) is not None
        assert a.bot.get_guild(GUILD_ON_SHARD_1) is None
        assert b.bot.get_guild(GUILD_ON_SHARD_1) is not None
        assert b.bot.get_guild(GUILD_ON_SHARD_0) is None

        dm = fake.open_dm(w.alice)
        assert await quota_where(a, w.even) == ("Images in the last 24 h: 0 of 7", [(0, 2)])
        assert await quota_where(b, w.odd) == ("Images in the last 24 h: 0 of 9", [(1, 2)])
        assert await quota_where(a, dm) == ("Images in the last 24 h: 0 of 7", [(0, 2)])

        # A job asked for on shard 1 is written by B; its buttons are answered there too.
        _, job = await imagine(b, "a lighthouse on shard one", user=w.alice, channel=w.odd)
        assert job.state is JobState.DONE
        assert await b.job_count() == 1 and await a.job_count() == 0
        [result] = b.result_messages(job)
        info = await fake.click(result, f"wan:job:{job.id}:info", user=w.alice)
        await fake.wait_for_ack(info)
        await fake.settle()
        assert fake.shards_sent("INTERACTION_CREATE", info.id) == [(1, 2)]
        [answer] = replies(info)
        assert embed_fields(answer)["Prompt"] == "a lighthouse on shard one"
