"""The live status message: a running job's elapsed time is refreshed while it draws, its end
is one edit, every edit of a channel keeps its spacing, and what is kept per channel goes."""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import Any

import pytest

from bot.discord_ui import delivery as discord_delivery
from bot.jobs.model import JobState
from tests.discord_env import bot_env, imagine


async def test_running_status_is_refreshed_then_replaced_by_the_final_state(tmp_path, monkeypatch):
    monkeypatch.setattr(discord_delivery, "TICK", 0.3)
    async with bot_env(tmp_path) as env:
        fake, world = env.fake, env.world
        _, job = await imagine(env, "a slow lighthouse sim:slow=2.5", user=world.alice)
        assert job.state is JobState.DONE
        route = f"/channels/{job.channel_id}/messages/{job.status_message_id}"
        requests = [r for r in fake.requests_to("PATCH", route) if r.json]
        edits = [r.json.get("content", "") for r in requests]
        drawing = [r for r in requests if "Drawing" in r.json.get("content", "")]
        assert len(drawing) >= 2, edits  # refreshed while running
        assert "Done" in edits[-1]  # and the final state replaces it
        # Non-final edits of one channel keep their distance (Discord allows ~5 per 5 s).
        gaps = [b.time - a.time for a, b in itertools.pairwise(drawing)]
        assert min(gaps) >= discord_delivery.EDIT_SPACING - 0.05, gaps


def test_refresh_period_is_gentle_on_discord():
    # Status edits of one channel are spaced at least 1.2 s apart; running jobs refresh every 15 s.
    assert discord_delivery.EDIT_SPACING >= 1.0
    assert discord_delivery.TICK >= 10


def spaced(requests: list[Any]) -> list[float]:
    """The gaps between consecutive edits (recorded by the fake Discord as they arrived)."""
    return [round(b.time - a.time, 3) for a, b in itertools.pairwise(requests)]


async def test_a_failed_job_is_told_in_one_edit_that_keeps_the_spacing(tmp_path):
    async with bot_env(tmp_path) as env:
        fake, world = env.fake, env.world
        _, job = await imagine(env, "refused in the task sim:moderate-output", user=world.alice)
        assert job.state is JobState.FAILED
        await fake.wait_idle()
        route = f"/channels/{job.channel_id}/messages/{job.status_message_id}"
        edits = fake.requests_to("PATCH", route)
        told = [r for r in edits if "❌" in r.json["content"]]
        assert len(told) == 1, [r.json["content"] for r in edits]
        assert edits[-1] is told[0]  # the failure notice is the last word
        assert min(spaced(edits)) >= discord_delivery.EDIT_SPACING - 0.05, spaced(edits)


async def test_final_edits_of_one_channel_keep_their_distance(tmp_path):
    """Three jobs in one channel end together: every edit of the channel's status messages,
    the final ones included, keeps the spacing."""
    async with bot_env(tmp_path) as env:
        fake, world = env.fake, env.world
        jobs = []
        for k, user in enumerate((world.alice, world.bob, world.alice)):
            _, job = await imagine(env, f"together {k} sim:slow=1", user=user, wait=False)
            jobs.append(job)
        ended = [await env.wait_job(job.id) for job in jobs]
        assert {job.state for job in ended} == {JobState.DONE}
        assert all("✅ Done" in env.status_message(job).content for job in ended)
        edits = fake.requests_to("PATCH", f"/channels/{world.general.id}/messages/*")
        finals = [r for r in edits if "✅ Done" in r.json.get("content", "")]
        assert len(finals) == len(jobs)
        assert min(spaced(edits)) >= discord_delivery.EDIT_SPACING - 0.05, spaced(edits)


async def test_a_final_edit_waits_its_turn_but_not_for_ever(tmp_path):
    async with bot_env(tmp_path) as env:
        assert env.bot is not None
        delivery = env.bot.delivery
        _, job = await imagine(env, "a lighthouse sim:slow=0.5", user=env.world.alice, wait=False)
        job = await env.wait_job(job.id, JobState.RUNNING)
        # The channel's next turn is far away (as after a long burst of edits there).
        assert job.channel_id is not None
        delivery._channel_next[job.channel_id] = time.monotonic() + 600
        done = await env.wait_job(job.id)
        assert "✅ Done" in env.status_message(done).content
        posts = env.fake.requests_to("POST", "/channels/*/messages")
        [posted] = [r for r in posts if r.json.get("nonce") == f"wb{done.id}-0"]
        final = env.fake.requests_to("PATCH", f"/channels/*/messages/{done.status_message_id}")[-1]
        waited = final.time - posted.time
        assert discord_delivery.FINAL_WAIT - 0.3 <= waited <= discord_delivery.FINAL_WAIT + 1.0


def test_channels_whose_turn_has_passed_are_forgotten(monkeypatch):
    """A bot that runs for months edits in more channels (threads) than it should remember."""

    class Clock:
        now = 1000.0

        def monotonic(self) -> float:
            return self.now

    clock = Clock()
    monkeypatch.setattr(discord_delivery, "time", clock)
    delivery = discord_delivery.DiscordDelivery()
    for channel_id in range(1, 10_001):
        assert delivery._take_turn(channel_id) == 0.0
        clock.now += 0.5  # a channel edited every half second
    assert len(delivery._channel_next) < 100  # not one per channel ever edited
    # Channels still within their spacing keep it, however many there are.
    for channel_id in range(20_001, 20_201):
        delivery._take_turn(channel_id)
    wait = delivery._take_turn(20_001, discord_delivery.FINAL_WAIT)
    assert wait == pytest.approx(discord_delivery.EDIT_SPACING)
    assert len(delivery._channel_next) <= 2 * 200


async def test_flushers_end_and_are_let_go_once_nothing_is_due(tmp_path):
    async with bot_env(tmp_path) as env:
        assert env.bot is not None
        delivery, world = env.bot.delivery, env.world
        _, here = await imagine(env, "here", user=world.alice)
        _, there = await imagine(env, "there", user=world.alice, channel=world.art)
        assert here.channel_id != there.channel_id
        await asyncio.sleep(discord_delivery.EDIT_SPACING + 0.3)  # their channels' turns pass
        assert delivery._flushers == {}
