"""Restarts, expired interaction tokens, missing permissions, small upload caps, repeated posts.

Each scenario gets its own bot (they restart it, change permissions or create guilds).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import discord

from bot.dashscope.requests import ImageRequest
from bot.discord_ui.delivery import post_status
from bot.dispatch.delivery import DeliveredImage
from bot.i18n import lang_for, text
from bot.jobs.model import Job, JobState, NewJob
from tests.backends import execute
from tests.data_uri import data_uri_bytes
from tests.discord_env import (
    BotEnv,
    bot_env,
    custom_ids,
    embed_fields,
    imagine,
    launch,
    modal_inputs,
    png,
    replies,
    reply_text,
    submit_modal,
)
from tests.fakediscord.server import DROP

CANNOT_POST = (
    "I can't post in this channel. Give me View Channel, Send Messages, Attach Files and Embed "
    "Links here, or use another channel. Nothing was charged."
)


def nonce_posts(env: BotEnv, job_id: int) -> list[Any]:
    return [
        r
        for r in env.fake.requests_to("POST", "/channels/*/messages")
        if isinstance(r.json, dict) and str(r.json.get("nonce", "")).startswith(f"wb{job_id}-")
    ]


async def accepted_not_shown(env: BotEnv, prompt: str) -> Job:
    """A job accepted in #general as /imagine does, before its status message is recorded."""
    assert env.bot is not None
    new = NewJob(
        ImageRequest(model="wan2.6-t2i", prompt=prompt),
        user_id=env.world.alice.id,
        guild_id=env.world.guild.id,
        channel_id=env.world.general.id,
    )
    return await env.bot.engine.submit_job(new, start=False)


# --- restarts --------------------------------------------------------------------------------


async def test_restart_with_jobs_in_flight_delivers_once_and_old_buttons_work(
    tmp_path: Path,
) -> None:
    async with bot_env(tmp_path, max_in_flight=1) as env:
        fake, w = env.fake, env.world
        _, done = await imagine(env, "before the restart", user=w.alice, seed=21)
        [old_result] = env.result_messages(done)
        _, drawing = await imagine(
            env, "a slow mural sim:slow=3", user=w.alice, states=(JobState.RUNNING,)
        )
        _, waiting = await imagine(env, "waits its turn", user=w.bob, wait=False)
        _, doomed = await imagine(env, "cancel me later", user=w.bob, wait=False)
        assert (await env.job(waiting.id)).state is JobState.QUEUED
        assert (await env.job(doomed.id)).state is JobState.QUEUED
        doomed_status = env.status_message(doomed)

        await env.restart_bot()

        # The old status message's Cancel button works on the new process.
        inter = await fake.click(
            doomed_status, f"wan:job:{doomed.id}:cancel", user=w.bob, force=True
        )
        await fake.wait_for_ack(inter)
        await fake.settle()
        assert reply_text(inter) == f"Job #{doomed.id} was cancelled; its images were refunded."
        assert (await env.wait_job(doomed.id)).state is JobState.CANCELLED

        # The running task is watched again and its images arrive exactly once; the queued job
        # goes next.
        drawing = await env.wait_job(drawing.id)
        waiting = await env.wait_job(waiting.id)
        assert drawing.state is JobState.DONE and waiting.state is JobState.DONE
        for job in (drawing, waiting):
            assert len(env.result_messages(job)) == 1
            assert len(nonce_posts(env, job.id)) == 1
            assert "✅ Done: 1 image(s)" in env.status_message(job).content
            assert await env.ledger(job.id) == {"reserve": 1, "charge": 1, "refund": 0}
        assert await env.ledger(doomed.id) == {"reserve": 1, "charge": 0, "refund": 1}

        # Buttons of a result posted before the restart: Info and Reroll.
        inter = await fake.click(old_result, f"wan:job:{done.id}:info", user=w.alice, force=True)
        await fake.wait_for_ack(inter)
        await fake.settle()
        assert embed_fields(replies(inter)[-1])["Seed"] == "21"

        async def reroll() -> Any:
            click = await fake.click(
                old_result, f"wan:job:{done.id}:reroll", user=w.alice, force=True
            )
            await fake.wait_for_ack(click)
            return click

        _, again = await launch(env, reroll())
        assert again.parent_job_id == done.id and again.state is JobState.DONE
        assert again.params.prompt == "before the restart"


async def test_a_stop_lets_the_interactions_being_answered_finish(tmp_path: Path) -> None:
    """SIGTERM right after a burst of /imagine is acknowledged: each member is still told their
    job was queued, and nothing is cut off by the database or the connection closing."""
    async with bot_env(tmp_path) as env:
        fake, w = env.fake, env.world
        fake.latency = 0.2  # each answer to the bot takes 0.2 s: its handlers are mid-way
        interactions = [
            await fake.slash(
                "imagine", {"prompt": f"a harbour at dawn {k}"}, user=user, channel=w.general
            )
            for k, user in enumerate([w.alice, w.bob] * 3)
        ]
        for interaction in interactions:
            await fake.wait_for_ack(interaction, timeout=10)
        assert await env.stop_bot() == 0
        for interaction in interactions:
            assert len(interaction.followups) == 1, replies(interaction)
            assert "queued" in interaction.followups[0].content.lower()
        statuses = [
            m
            for m in fake.messages_in(w.general, include_ephemeral=False)
            if m.author.id == fake.bot_user.id
        ]
        assert len(statuses) == len(interactions)  # every job was placed


async def test_repeated_delivery_never_posts_a_second_message(tmp_path: Path) -> None:
    async with bot_env(tmp_path) as env:
        fake, w = env.fake, env.world
        _, job = await imagine(env, "posted once", user=w.alice, n=2)
        [result] = env.result_messages(job)
        posts = len(fake.requests_to("POST", "/channels/*/messages"))

        # The port asked again (as after a crash between posting and recording it).
        images = [
            DeliveredImage(k, fake.attachment_bytes(a.id), "image/png")
            for k, a in enumerate(result.attachments)
        ]
        assert env.bot is not None
        assert await env.bot.delivery.deliver(job, images) == [result.id, result.id]
        assert len(fake.requests_to("POST", "/channels/*/messages")) == posts + 1
        assert env.result_messages(job) == [result]

        # A process that died after posting but before committing: the row says delivering.
        await execute(
            env.bot.engine.db,
            "UPDATE jobs SET state = 'delivering', finished_at = NULL WHERE id = ?",
            (job.id,),
        )
        await env.restart_bot()
        job = await env.wait_job(job.id)
        assert job.state is JobState.DONE
        assert env.result_messages(job) == [result]
        assert len(nonce_posts(env, job.id)) == 3  # every attempt reused the nonce
        assert await env.ledger(job.id) == {"reserve": 2, "charge": 2, "refund": 0}


async def open_form(env: BotEnv, opening: Any) -> Any:
    """Open a form (the menu or the Edit button) and wait until the bot has sent it."""
    inter = await opening
    await env.fake.wait_for_ack(inter)
    await env.fake.settle()
    assert inter.modal is not None, replies(inter)
    return inter


def expire_forms(env: BotEnv) -> None:
    """What discord.py does when a Modal's 10-minute timeout passes: it forgets the form."""
    assert env.bot is not None
    store = env.bot._connection._view_store
    for modal in list(store._modals.values()):
        modal._dispatch_timeout()
    assert not store._modals


async def test_forms_opened_before_a_restart_are_answered_after_it(tmp_path: Path) -> None:
    async with bot_env(tmp_path) as env:
        fake, w = env.fake, env.world
        first, second = png(640, 480, (200, 0, 0)), png(480, 640, (0, 200, 0))
        post = await fake.post_message(
            w.art, w.alice, "two", attachments=[("a.png", first), ("b.png", second)]
        )
        menu = await open_form(env, fake.message_command("Edit with Wan", post, user=w.bob))
        _, done = await imagine(env, "a mug before the restart", user=w.alice)
        [result] = env.result_messages(done)
        button = await open_form(env, fake.click(result, f"wan:job:{done.id}:edit", user=w.alice))
        doomed = await fake.post_message(w.art, w.alice, "gone", attachments=[("c.png", png())])
        lost = await open_form(env, fake.message_command("Edit with Wan", doomed, user=w.alice))

        await env.restart_bot()

        # The menu's form: the typed words and the chosen image, read again from the message.
        typed = {"What should change?": "typed before the restart", "Which images (numbers)": "2"}
        submitted, job = await launch(env, submit_modal(env, menu, typed))
        assert (job.user_id, job.params.prompt, job.state) == (
            w.bob.id,
            "typed before the restart",
            JobState.DONE,
        )
        [uri] = await env.bot.engine.store.inputs(job.id) if env.bot else []
        assert data_uri_bytes(uri) == second
        assert reply_text(submitted).startswith(f"Job #{job.id} is queued:")
        assert env.status_message(job).channel_id == w.art.id

        # The Edit button's form: the result's image, chained to its job.
        _, edit = await launch(
            env, submit_modal(env, button, {"What should change?": "stripes after all"})
        )
        assert (edit.parent_job_id, edit.params.prompt) == (done.id, "stripes after all")
        [uri] = await env.bot.engine.store.inputs(edit.id) if env.bot else []
        assert data_uri_bytes(uri) == fake.attachment_bytes(result.attachments[0].id)

        # The message was deleted meanwhile: told in words, nothing made or charged.
        await fake.delete_user_message(doomed)
        jobs, ledger = await env.job_count(), await env.ledger_rows()
        gone = await submit_modal(env, lost, {"What should change?": "too late"})
        await fake.settle()
        assert reply_text(gone) == (
            "The message with the images to edit is gone, or I can no longer read it, so "
            "nothing was made. Nothing was charged."
        )
        assert replies(gone)[-1].ephemeral
        assert (await env.job_count(), await env.ledger_rows()) == (jobs, ledger)


async def test_a_form_submitted_after_ten_minutes_is_answered(tmp_path: Path) -> None:
    async with bot_env(tmp_path) as env:
        fake, w = env.fake, env.world
        picture = png(500, 500, (9, 9, 200))
        post = await fake.post_message(w.general, w.alice, "", attachments=[("p.png", picture)])
        opened = await open_form(env, fake.message_command("Edit with Wan", post, user=w.alice))
        inputs = modal_inputs(opened.modal or {})
        assert list(inputs) == ["What should change?", "What to avoid (optional)"]
        expire_forms(env)
        typed = {"What should change?": "slow typist", "What to avoid (optional)": "rain"}
        _, job = await launch(env, submit_modal(env, opened, typed))
        assert (job.params.prompt, job.params.negative_prompt) == ("slow typist", "rain")
        [uri] = await env.bot.engine.store.inputs(job.id) if env.bot else []
        assert data_uri_bytes(uri) == picture


# --- the 15-minute interaction token ---------------------------------------------------------


async def test_a_job_outliving_the_interaction_token_still_delivers(tmp_path: Path) -> None:
    async with bot_env(tmp_path) as env:
        fake, w = env.fake, env.world
        inter, job = await imagine(
            env, "a very slow cathedral sim:slow=1.5", user=w.alice, wait=False
        )
        webhook_calls = len(fake.webhook_requests_for(inter))
        fake.clock.advance(16 * 60)  # the token is dead from here on

        job = await env.wait_job(job.id)
        assert job.state is JobState.DONE
        [result] = env.result_messages(job)
        assert result.source == "channel"
        assert "✅ Done" in env.status_message(job).content
        assert len(fake.webhook_requests_for(inter)) == webhook_calls == 1
        assert [r for r in fake.requests if r.status == 401] == []

        # Its buttons still work: every click brings a fresh token.
        click = await fake.click(result, f"wan:job:{job.id}:info", user=w.alice)
        await fake.wait_for_ack(click)
        await fake.settle()
        assert replies(click)[-1].ephemeral and replies(click)[-1].embeds


# --- permissions -----------------------------------------------------------------------------


async def test_without_create_threads_results_come_in_the_channel(tmp_path: Path) -> None:
    async with bot_env(tmp_path) as env:
        fake, w = env.fake, env.world
        await fake.set_channel_permissions(w.art, can_create_threads=False)
        await fake.settle()
        _, job = await imagine(env, "no thread here", user=w.alice, channel=w.art)
        assert job.state is JobState.DONE
        assert job.thread_id is None
        [result] = env.result_messages(job)
        assert result.channel_id == w.art.id
        assert f"wan:job:{job.id}:reroll" in custom_ids(result)
        assert env.status_message(job).thread_id is None


async def test_without_send_messages_the_user_is_told_and_nothing_is_charged(
    tmp_path: Path,
) -> None:
    async with bot_env(tmp_path) as env:
        fake, w = env.fake, env.world
        await fake.set_channel_permissions(w.art, can_send=False)
        await fake.settle()
        for attempt in range(3):
            inter = await fake.slash(
                "imagine", {"prompt": f"muted {attempt}"}, user=w.alice, channel=w.art
            )
            await fake.wait_for_ack(inter)
            await fake.settle()
            [answer] = replies(inter)
            assert answer.ephemeral and answer.content == CANNOT_POST
        # Refused before anything was reserved or sent.
        assert await env.job_count() == 0 and await env.ledger_rows() == 0
        assert fake.messages_in(w.art, include_ephemeral=False) == []

        # When Discord refuses the status message although the cached permissions allowed it,
        # the job that was already accepted is cancelled and refunded, never submitted.
        await fake.set_channel_permissions(w.art, can_send=True)
        await fake.settle()
        fake.fail_next("POST", f"/channels/{w.art.id}/messages", 403, code=50013)
        inter = await fake.slash("imagine", {"prompt": "refused late"}, user=w.alice, channel=w.art)
        await fake.wait_for_ack(inter)
        await fake.settle()
        assert reply_text(inter) == CANNOT_POST
        job_id = await env.latest_job_id()
        assert job_id is not None
        assert (await env.wait_job(job_id)).state is JobState.CANCELLED
        assert await env.ledger(job_id) == {"reserve": 1, "charge": 0, "refund": 1}
        assert env.sim.sim.submissions == 0
        await fake.set_channel_permissions(w.art, can_send=False)
        await fake.settle()

        # /edit too, in Chinese.
        inter = await fake.slash(
            "edit",
            {"prompt": "改"},
            user=w.alice,
            channel=w.art,
            locale="zh-CN",
            attachments=[("a.png", png())],
        )
        await fake.wait_for_ack(inter)
        await fake.settle()
        assert reply_text(inter) == (
            "我无法在此频道发言。请授予我 查看频道、发送消息、附加文件 和 嵌入链接 权限，或换个频道。未计费。"
        )


async def test_a_thread_deleted_before_the_results_fails_the_job_in_words(
    tmp_path: Path,
) -> None:
    async with bot_env(tmp_path) as env:
        fake, w = env.fake, env.world
        _, job = await imagine(env, "nowhere to go sim:slow=1", user=w.alice, wait=False)
        await fake.delete_channel(fake.thread(job.thread_id or 0))
        job = await env.wait_job(job.id)
        assert job.state is JobState.FAILED
        assert env.status_message(job).content.endswith(
            "❌ The images were made but could not be delivered. Please try again. "
            "Nothing was charged."
        )
        assert await env.ledger(job.id) == {"reserve": 1, "charge": 0, "refund": 1}


# --- upload caps -----------------------------------------------------------------------------


async def small_guild(env: BotEnv, limit: int) -> tuple[Any, Any]:
    fake, w = env.fake, env.world
    guild = fake.create_guild("Small Uploads", channels=("pics",), attachment_size_limit=limit)
    fake.add_member(guild, w.alice)
    await env.join_guild(guild)
    return guild, fake.channel(guild, "pics")


async def test_images_are_split_across_messages_under_a_small_cap(tmp_path: Path) -> None:
    async with bot_env(tmp_path) as env:
        fake, w = env.fake, env.world
        guild, pics = await small_guild(env, 150_000)
        _, job = await imagine(env, "four small tiles", user=w.alice, channel=pics, n=4)
        assert job.state is JobState.DONE
        messages = env.result_messages(job)
        assert len(messages) >= 2
        assert all(sum(a.size for a in m.attachments) <= 150_000 for m in messages)
        names = [a.filename for m in messages for a in m.attachments]
        assert names == [f"wan-{job.id}-{k}.png" for k in range(1, 5)]
        # The mention on the first, the embed and the buttons on the last.
        assert messages[0].content == f"<@{w.alice.id}>"
        assert [bool(m.embeds) for m in messages] == [False] * (len(messages) - 1) + [True]
        assert f"wan:job:{job.id}:reroll" in custom_ids(messages[-1])
        assert "re-encoded" not in (messages[-1].embeds[0].get("footer") or {}).get("text", "")
        assert [r.status for r in fake.requests_to("POST", "/channels/*/messages")].count(413) == 0
        assert len({r.json["nonce"] for r in nonce_posts(env, job.id)}) == len(messages)
        assert guild.id == job.guild_id
        results = await env.bot.engine.store.results(job.id)  # type: ignore[union-attr]
        assert [r.delivered_message_id for r in results] == [
            m.id for m in messages for _ in m.attachments
        ]

        # /show posts them again, split the same way (one message would be over the cap).
        show = await fake.slash("show", {"job": job.id}, user=w.alice, channel=pics)
        await fake.wait_for_ack(show)
        await fake.settle()
        shown = replies(show)
        assert len(shown) >= 2 and not any(m.ephemeral for m in shown)
        assert all(sum(a.size for a in m.attachments) <= 150_000 for m in shown)
        assert [a.filename for m in shown for a in m.attachments] == names
        assert [bool(m.embeds) for m in shown] == [False] * (len(shown) - 1) + [True]
        assert f"wan:job:{job.id}:reroll" in custom_ids(shown[-1])

        # Delete removes every part.
        click = await fake.click(messages[-1], f"wan:job:{job.id}:delete", user=w.alice)
        await fake.wait_for_ack(click)
        await fake.settle()
        assert reply_text(click) == "Deleted."
        assert env.result_messages(job) == []


async def test_images_over_the_cap_are_reencoded_with_a_note(tmp_path: Path) -> None:
    async with bot_env(tmp_path) as env:
        fake, w = env.fake, env.world
        _, pics = await small_guild(env, 40_000)
        _, job = await imagine(env, "one big picture", user=w.alice, channel=pics)
        assert job.state is JobState.DONE
        [result] = env.result_messages(job)
        [attachment] = result.attachments
        assert attachment.filename == f"wan-{job.id}-1.jpg"
        assert attachment.size <= 40_000
        assert fake.attachment_bytes(attachment.id)[:3] == b"\xff\xd8\xff"
        assert result.embeds[0]["footer"]["text"].startswith(
            "Images were re-encoded as JPEG to fit this server's upload limit."
        )


async def test_a_cap_learned_from_a_413_after_a_restart(tmp_path: Path) -> None:
    """A job in flight across a restart: the new process has seen no interaction from the guild,
    so it does not know its cap; Discord's 413 teaches it, and the image still arrives."""
    async with bot_env(tmp_path) as env:
        w = env.world
        _, pics = await small_guild(env, 60_000)
        # Long enough to be in flight across the restart on a loaded machine too (the stop
        # first lets the /imagine being answered finish).
        # A fixed seed: the simulator draws the image from it, and this one's PNG is over the cap.
        _, job = await imagine(
            env, "slow and large sim:slow=4", user=w.alice, channel=pics, wait=False, seed=1
        )
        await env.restart_bot()
        job = await env.wait_job(job.id)
        assert job.state is JobState.DONE
        [result] = env.result_messages(job)
        [attachment] = result.attachments
        assert attachment.size <= 60_000 and attachment.filename == f"wan-{job.id}-1.jpg"
        statuses = [r.status for r in nonce_posts(env, job.id)]
        assert statuses[0] == 413 and statuses[-1] == 200
        assert statuses.count(200) == 1


async def test_a_crash_between_the_status_post_and_its_record_keeps_the_job_in_its_thread(
    tmp_path: Path,
) -> None:
    """The process died after posting a job's status message (and thread) but before recording
    them. The next start posts the status again with the same nonce: Discord hands back the
    original message, the thread started from it is found, and the job runs and answers there:
    no second status message, no second thread."""
    async with bot_env(tmp_path) as env:
        fake, w = env.fake, env.world
        assert env.bot is not None
        job = await accepted_not_shown(env, "a lighthouse at dusk")
        channel = await env.bot.fetch_channel(w.general.id)
        assert isinstance(channel, discord.TextChannel)
        first, thread_id = await post_status(channel, job, "en", position=1, simulated=True)
        assert thread_id == first.id
        # Killed here: neither the status message nor the thread was recorded.
        await env.restart_bot()

        done = await env.wait_job(job.id)
        assert done.state is JobState.DONE
        assert (done.status_message_id, done.thread_id) == (first.id, first.id)
        assert len(env.result_messages(done)) == 1
        bot_posts = [m for m in fake.messages_in(w.general.id) if m.author.id == fake.bot_user.id]
        assert [m.id for m in bot_posts] == [first.id]
        assert "✅ Done" in env.status_message(done).content
        assert await env.ledger(job.id) == {"reserve": 1, "charge": 1, "refund": 0}


async def test_a_deletion_a_restart_interrupted_is_finished_at_the_next_start(
    tmp_path: Path,
) -> None:
    """Delete records first, then acts on Discord. Killed in between, the job is already gone
    for /show and Reroll, and the next start deletes its posts and hides its prompt. A step
    Discord refuses for a passing reason (a 503) is said so, and done at the next start too."""
    async with bot_env(tmp_path) as env:
        fake, w = env.fake, env.world
        assert env.bot is not None
        _, job = await imagine(env, "a private garden", user=w.alice)
        [result] = env.result_messages(job)
        await env.bot.engine.store.delete_for_good(job.id, w.moderator.id)
        # Killed here: recorded, nothing done on Discord yet. Its buttons and /show refuse.
        gone = (
            f"Job #{job.id} was deleted by its owner or a moderator; it can't be shown or remade."
        )
        inter = await fake.click(result, f"wan:job:{job.id}:reroll", user=w.alice)
        await fake.wait_for_ack(inter)
        await fake.settle()
        assert reply_text(inter) == gone
        inter = await fake.slash("show", {"job": job.id}, user=w.alice, channel=w.general)
        await fake.wait_for_ack(inter)
        await fake.settle()
        assert (reply_text(inter), replies(inter)[-1].attachments) == (gone, [])
        assert await env.job_count() == 1  # no reroll was made

        await env.restart_bot()
        assert fake.get_message(result.id).deleted
        assert env.status_message(job).content.endswith("\n🗑️ Deleted by a moderator.")
        assert job.thread_id is not None
        assert fake.thread(job.thread_id).name == f"Job #{job.id} (deleted)"
        assert env.bot is not None
        assert await env.bot.engine.store.deletions_pending() == []

        # Discord fails the status edit: the member hears it is not all done yet.
        _, other = await imagine(env, "another private garden", user=w.alice)
        [result] = env.result_messages(other)
        fake.fail_next(
            "PATCH", f"/channels/{other.channel_id}/messages/{other.status_message_id}", 503
        )
        inter = await fake.click(result, f"wan:job:{other.id}:delete", user=w.alice)
        await fake.wait_for_ack(inter)
        await fake.settle()
        assert reply_text(inter) == (
            "Deleted: it can't be shown again. Discord did not let me remove everything just now;"
            " the rest goes at my next start, or click Delete again."
        )
        assert fake.get_message(result.id).deleted
        assert "another private garden" in env.status_message(other).content
        await env.restart_bot()
        assert env.status_message(other).content.endswith("\n🗑️ Deleted by its owner.")
        assert env.bot is not None
        assert await env.bot.engine.store.deletions_pending() == []


async def test_an_unplaced_job_whose_channel_is_gone_fails_refunded(tmp_path: Path) -> None:
    async with bot_env(tmp_path) as env:
        w = env.world
        assert env.bot is not None
        job = await accepted_not_shown(env, "nowhere to show it")
        await env.stop_bot()
        await env.fake.delete_channel(w.general)
        await env.start_bot()

        ended = await env.wait_job(job.id)
        assert ended.state is JobState.FAILED and ended.error_code == "NotShown"
        assert await env.ledger(job.id) == {"reserve": 1, "charge": 0, "refund": 1}
        env.take_errors()


async def test_a_status_post_that_keeps_failing_cancels_the_job_refunded(tmp_path: Path) -> None:
    """Discord answers 500 to the status message until discord.py gives up: the accepted job
    must not run unseen nor stay reserved; the member is told nothing was charged."""
    async with bot_env(tmp_path) as env:
        fake, w = env.fake, env.world
        fake.fail_next("POST", f"/channels/{w.general.id}/messages", 500, times=10)
        inter = await fake.slash(
            "imagine", {"prompt": "never shown"}, user=w.alice, channel=w.general
        )
        await fake.wait_for_ack(inter)
        job_id = await env.new_job(timeout=60)
        assert (await env.wait_job(job_id, timeout=60)).state is JobState.CANCELLED
        await fake.settle()
        assert "nothing was charged" in reply_text(inter)
        assert await env.ledger(job_id) == {"reserve": 1, "charge": 0, "refund": 1}
        assert env.sim.sim.submissions == 0
        env.take_errors()


async def test_a_failure_notice_discord_refused_is_shown_at_the_next_start(
    tmp_path: Path,
) -> None:
    """Discord answers 503 to every status edit, the failure notice's included: the member is
    not recorded as told, so the next start shows the notice (as it does a done job's end)."""
    async with bot_env(tmp_path) as env:
        fake, w = env.fake, env.world
        fake.fail_next("PATCH", "/channels/*/messages/*", 503, times=1000)
        _, job = await imagine(
            env, "refused in the task sim:moderate-output", user=w.alice, wait=False
        )

        def notice_edits() -> list[Any]:
            route = f"/channels/{job.channel_id}/messages/{job.status_message_id}"
            return [r for r in fake.requests_to("PATCH", route) if "❌" in r.json["content"]]

        for _ in range(200):  # the failure notice's edit, answered 503
            job = await env.job(job.id)
            if job.status_message_id is not None and notice_edits():
                break
            await asyncio.sleep(0.05)
        await fake.wait_idle()
        refused = [r.status for r in notice_edits()]
        assert refused and set(refused) == {503}
        assert job.state is JobState.FAILED
        fake.clear_faults()
        assert "❌" not in env.status_message(job).content

        await env.restart_bot()
        for _ in range(200):
            if "❌" in env.status_message(job).content:
                break
            await asyncio.sleep(0.05)
        assert "❌ The generated image was blocked by content moderation" in (
            env.status_message(job).content
        )
        assert [r.status for r in notice_edits()] == [*refused, 200]
        row = await env.bot.engine.db.fetchone(  # type: ignore[union-attr]
            "SELECT notified_at FROM jobs WHERE id = ?", (job.id,)
        )
        assert row is not None and row["notified_at"] is not None
        env.take_errors()


async def test_a_failure_notice_told_again_after_a_restart_is_posted_once(tmp_path: Path) -> None:
    """A crash between posting the failure notice and recording it: the next start tells it
    again, with the same nonce, so Discord hands back the first message instead of a second."""
    async with bot_env(tmp_path) as env:
        fake, w = env.fake, env.world
        _, job = await imagine(env, "told once sim:moderate-output", user=w.alice)
        assert job.state is JobState.FAILED and job.thread_id is not None

        def notices() -> list[Any]:
            return [
                m
                for m in fake.messages_in(job.thread_id or 0)
                if m.content.startswith(f"<@{w.alice.id}> ❌")
            ]

        assert len(notices()) == 1
        assert env.bot is not None
        await execute(
            env.bot.engine.db,  # as if the crash came before the notice was recorded
            "UPDATE jobs SET notified_at = NULL WHERE id = ?",
            (job.id,),
        )
        await env.restart_bot()
        for _ in range(200):
            if await env.shown(job.id):
                break
            await asyncio.sleep(0.05)
        assert await env.shown(job.id)
        await fake.wait_idle()
        posts = [
            r
            for r in fake.requests_to("POST", f"/channels/{job.thread_id}/messages")
            if r.json["content"].startswith(f"<@{w.alice.id}> ❌")
        ]
        assert [p.json["nonce"] for p in posts] == [f"wbf{job.id}"] * 2  # told again...
        assert len(notices()) == 1  # ...but shown once


async def test_a_failure_notice_discord_refused_is_posted_at_the_next_start(
    tmp_path: Path,
) -> None:
    async with bot_env(tmp_path) as env:
        fake, w = env.fake, env.world
        _, job = await imagine(
            env, "noticed later sim:moderate-output sim:slow=1", user=w.alice, wait=False
        )
        assert job.thread_id is not None
        fake.fail_next("POST", f"/channels/{job.thread_id}/messages", 503, times=1000)
        for _ in range(200):
            job = await env.job(job.id)
            if job.state is JobState.FAILED and job.thread_id is not None:
                break
            await asyncio.sleep(0.05)
        await fake.wait_idle()
        assert not await env.shown(job.id)
        fake.clear_faults()
        await env.restart_bot()
        job = await env.wait_job(job.id)
        notices = [
            m
            for m in fake.messages_in(job.thread_id or 0)
            if m.content.startswith(f"<@{w.alice.id}> ❌")
        ]
        assert len(notices) == 1
        env.take_errors()


async def test_a_queued_note_cut_off_by_a_dropped_connection_is_only_logged(
    tmp_path: Path,
) -> None:
    """The private "queued" note comes after the job was queued and shown: a connection dropped
    under it (Discord's side, or the bot's own while it shuts down) must not tell the member
    that something went wrong. The job runs."""
    async with bot_env(tmp_path) as env:
        env.fake.fail_next("POST", "/webhooks/*/*", DROP)
        interaction, job = await imagine(env, "a kite over the dunes", user=env.world.alice)
        assert job.state is JobState.DONE
        assert [r for r in env.fake.requests_to("POST", "/webhooks/*/*") if r.fault]
        assert not [m for m in replies(interaction) if m.content]  # nothing else was said


async def test_a_command_arriving_while_the_bot_stops_is_told_it_is_restarting(
    tmp_path: Path,
) -> None:
    """Stopping unloads the commands first, then gives calls in flight their grace: a command
    arriving meanwhile hears that the bot is restarting (nothing charged), not that the
    member's Discord app is outdated."""
    async with bot_env(tmp_path) as env:
        assert env.bot is not None
        bot, w = env.bot, env.world
        env.sim.sim.faults = env.sim.sim.faults.merged({"latency_ms": 2000})  # in flight a while
        await imagine(env, "a submission on its way", user=w.alice, wait=False)
        stopping = asyncio.create_task(env.stop_bot())
        for _ in range(200):
            if "cogs.imagine" not in bot.extensions:
                break
            await asyncio.sleep(0.01)
        assert "cogs.imagine" not in bot.extensions and not stopping.done()
        late = await env.fake.slash(
            "imagine", {"prompt": "too late"}, user=w.bob, channel=w.general
        )
        await env.fake.wait_for_ack(late)
        assert reply_text(late) == text("reply.stopping", lang_for("en-US"))
        assert await stopping == 0
