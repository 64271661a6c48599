"""The live status message: a running job's elapsed time is refreshed while it draws, its end
is one edit, every edit of a channel keeps its spacing, what is kept per channel goes, and a
member's words in it (and everywhere the bot repeats them) cannot forge lines or links."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import time
from typing import Any

import pytest

from bot.discord_ui import delivery as discord_delivery
from bot.jobs.model import Job, JobState
from tests.discord_env import BotEnv, bot_env, embed_fields, imagine, invoke, replies


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


FORGERY = "line one\n# HUGE HEADING\n✅ Done: 4 image(s) in 1 s.\n[link](https://evil.example)"
FORGERY_SHOWN = (
    "line one \\# HUGE HEADING ✅ Done: 4 image(s) in 1 s. \\[link\\](<https://evil.example>)"
)


def status_contents(env: BotEnv, job: Job) -> list[str]:
    """Every content of the job's status message as Discord received it: the post, the edits."""
    posted = [
        r.json["content"]
        for r in env.fake.requests_to("POST", f"/channels/{job.channel_id}/messages")
        if isinstance(r.json, dict) and r.json.get("nonce") == f"wbs{job.id}"
    ]
    route = f"/channels/{job.channel_id}/messages/{job.status_message_id}"
    edited = [r.json["content"] for r in env.fake.requests_to("PATCH", route) if r.json]
    assert posted and edited
    return posted + edited


async def test_a_prompt_cannot_forge_lines_headings_mentions_or_links(tmp_path):
    """Wherever the bot repeats a member's words (status, thread name, result embed, the actual
    prompt DashScope echoes, /jobs, a failure), they stay one quoted line of literal text."""
    async with bot_env(tmp_path) as env:
        fake, w = env.fake, env.world
        _, job = await imagine(
            env,
            FORGERY,
            user=w.alice,
            model="wan2.2-t2i-flash",  # its answers carry the rewritten ("actual") prompt
            negative_prompt="||spoiler|| <@&1>",
        )
        assert job.state is JobState.DONE
        for content in status_contents(env, job):
            header, prompt, state = content.split("\n")
            assert header.startswith(f"**Job #{job.id}** by <@{w.alice.id}>")
            assert prompt == "> " + FORGERY_SHOWN
        assert state == f"✅ Done: 1 image(s) in {state.split(' in ')[1]}"
        # A thread name shows no markup: one line, as typed.
        assert fake.thread(job.thread_id).name == " ".join(FORGERY.split())
        [result] = env.result_messages(job)
        fields = embed_fields(result)
        escaped_lines = FORGERY_SHOWN.replace(" \\#", "\n\\#").replace(" ✅", "\n✅")
        assert fields["Prompt"] == escaped_lines.replace(". \\[", ".\n\\[")
        # The simulator's prompt rewriter echoes the prompt: escaped the same way.
        assert fields["Actual prompt"].startswith("line one\n\\# HUGE HEADING\n✅ Done")
        assert "\\[link\\](<https://evil.example>), rendered with" in fields["Actual prompt"]
        assert fields["Negative prompt"] == "\\|\\|spoiler\\|\\| \\<\\@&1\\>"

        long_line = "x" * 1500
        others = (
            f"-# small\n>>> quote @everyone <@{w.bob.id}> <#{w.general.id}> ||spoiler||"
            f" `code` {long_line}"
        )
        _, other = await imagine(env, others, user=w.alice)
        for content in status_contents(env, other):
            prompt = content.split("\n")[1]
            assert prompt.startswith(
                f"> \\-\\# small \\>\\>\\> quote \\@everyone \\<\\@{w.bob.id}\\>"
                f" \\<\\#{w.general.id}\\> \\|\\|spoiler\\|\\| \\`code\\` xxx"
            )
            assert prompt.endswith("x…") and len(prompt) <= 2 + 300
            assert len(content.split("\n")) == 3

        inter = await invoke(env, "jobs", user=w.alice)
        description = replies(inter)[-1].embeds[0]["description"].split("\n")
        assert description[1].startswith("> \\-\\# small \\>\\>\\> quote \\@everyone")
        # Cut to 80 characters of words, never inside a link.
        assert description[3] == "> " + FORGERY_SHOWN.split(" \\[link")[0] + " \\[link\\](…"

        trap = "a [trap](https://evil.example)\n# big sim:fail=Forged_Code"
        _, failed = await imagine(env, trap, user=w.alice)
        assert failed.state is JobState.FAILED
        header, prompt, state = status_contents(env, failed)[-1].split("\n")
        assert prompt == "> a \\[trap\\](<https://evil.example>) \\# big sim:fail=Forged\\_Code"
        assert state.startswith("❌ ") and "Forged\\_Code" in state


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


async def test_a_status_edit_is_not_made_once_the_job_has_ended_elsewhere(tmp_path):
    """In a cluster another process may end a job (a cancel on a standby, a failure at a new
    dispatcher) and show its end while this one's edit of the status waits for the channel's
    turn: that late edit, made, would hide the end for good. The row is read again first."""
    async with bot_env(tmp_path) as env:
        assert env.bot is not None
        delivery, world = env.bot.delivery, env.world
        _, job = await imagine(env, "a lighthouse", user=world.alice)
        assert job.state is JobState.DONE  # ended, its end shown
        route = f"/channels/{job.channel_id}/messages/{job.status_message_id}"
        edits = len(env.fake.requests_to("PATCH", route))
        # What this process last knew of it: queued, its edit waiting for the channel's turn.
        assert job.channel_id is not None
        delivery._take_turn(job.channel_id)
        await delivery.status_changed(dataclasses.replace(job, state=JobState.QUEUED), 2)
        flusher = delivery._flushers[job.channel_id]
        await asyncio.wait_for(flusher, timeout=discord_delivery.EDIT_SPACING + 5)
        late = [r.json.get("content", "") for r in env.fake.requests_to("PATCH", route)[edits:]]
        assert late == []
        assert "Done" in env.status_message(job).content
