"""Editing from Discord: the "Edit with Wan" message menu and its modal, and reply-to-edit."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import pytest_asyncio

from bot.dashscope.models import Kind
from bot.jobs.model import JobState
from tests.data_uri import data_uri_bytes
from tests.discord_env import (
    BotEnv,
    bot_env,
    embed_fields,
    imagine,
    launch,
    modal_inputs,
    png,
    replies,
    reply_text,
    submit_modal,
)

pytestmark = pytest.mark.asyncio(loop_scope="module")

NO_IMAGES = (
    "That message has no images I can edit. Attach or reply to a JPEG, PNG, WEBP, BMP or GIF."
)


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def env(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[BotEnv]:
    async with bot_env(tmp_path_factory.mktemp("edit")) as env:
        yield env


@pytest.fixture(autouse=True)
def clean(env: BotEnv) -> Iterator[None]:
    yield
    env.check_clean()


async def open_menu(env: BotEnv, message: Any, user: Any, **kwargs: Any) -> Any:
    inter = await env.fake.message_command("Edit with Wan", message, user=user, **kwargs)
    await env.fake.wait_for_ack(inter)
    await env.fake.settle()
    return inter


# --- the message menu ----------------------------------------------------------------------


async def test_menu_on_a_members_images_opens_modal_and_edits_them_all(env: BotEnv) -> None:
    fake, w = env.fake, env.world
    first, second = png(800, 600, (200, 30, 30)), png(600, 800, (30, 200, 30))
    post = await fake.post_message(
        w.art, w.alice, "my two drawings", attachments=[("a.png", first), ("b.png", second)]
    )
    opened = await open_menu(env, post, w.bob)
    assert opened.modal is not None and opened.modal["title"] == "Edit with Wan"
    inputs = modal_inputs(opened.modal)
    assert list(inputs) == [
        "What should change?",
        "What to avoid (optional)",
        "Which images (numbers)",
    ]
    assert inputs["Which images (numbers)"]["value"] == "1-2"
    assert inputs["What should change?"]["max_length"] == 2000

    submitted, job = await launch(
        env, submit_modal(env, opened, {"What should change?": "put them in one frame"})
    )
    assert job.state is JobState.DONE
    assert (job.kind, job.user_id, job.parent_job_id) == (Kind.EDIT, w.bob.id, None)
    inputs_sent = await env.bot.engine.store.inputs(job.id)
    assert [data_uri_bytes(u) for u in inputs_sent] == [first, second]
    answer = replies(submitted)[-1]
    assert answer.ephemeral and answer.content.startswith(f"Job #{job.id} is queued:")
    assert env.status_message(job).channel_id == w.art.id
    assert job.thread_id is not None
    [result] = env.result_messages(job)
    assert embed_fields(result)["Prompt"] == "put them in one frame"
    # No size was asked and the edit model's answer reports none: no size is made up.
    assert "Size" not in embed_fields(result), embed_fields(result)
    assert job.params.size is None and job.result_size is None


async def test_menu_on_a_message_without_images_says_so(env: BotEnv) -> None:
    fake, w = env.fake, env.world
    jobs = await env.job_count()
    post = await fake.post_message(w.general, w.alice, "just words")
    inter = await open_menu(env, post, w.alice)
    assert inter.modal is None
    [answer] = replies(inter)
    assert answer.ephemeral and answer.content == NO_IMAGES

    text_file = await fake.post_message(
        w.general, w.alice, "notes", attachments=[("notes.txt", b"hello", "text/plain")]
    )
    inter = await open_menu(env, text_file, w.alice)
    assert reply_text(inter) == NO_IMAGES
    assert await env.job_count() == jobs


async def test_menu_on_a_bot_result_asks_which_image_and_chains(env: BotEnv) -> None:
    w = env.world
    _, original = await imagine(env, "three apples", user=w.alice, n=3)
    [result] = env.result_messages(original)
    assert len(result.attachments) == 3

    opened = await open_menu(env, result, w.alice)
    inputs = modal_inputs(opened.modal or {})
    assert inputs["Which images (numbers)"]["value"] == "1"  # alternatives: edit one

    _, job = await launch(
        env,
        submit_modal(
            env,
            opened,
            {"What should change?": "make the second one golden", "Which images (numbers)": "2"},
        ),
    )
    assert job.state is JobState.DONE
    assert job.parent_job_id == original.id
    [uri] = await env.bot.engine.store.inputs(job.id)
    assert data_uri_bytes(uri) == env.fake.attachment_bytes(result.attachments[1].id)
    # Asked inside the job's thread: it answers there, without a new thread.
    assert job.thread_id == original.thread_id
    assert env.status_message(job).channel_id == original.thread_id
    assert len(env.result_messages(job)) == 1


async def test_menu_with_a_bad_image_choice_is_refused_in_words(env: BotEnv) -> None:
    fake, w = env.fake, env.world
    post = await fake.post_message(
        w.art, w.alice, "", attachments=[("a.png", png()), ("b.png", png())]
    )
    opened = await open_menu(env, post, w.alice)
    jobs = await env.job_count()
    submitted = await submit_modal(
        env, opened, {"What should change?": "x", "Which images (numbers)": "5"}
    )
    await env.fake.settle()
    assert reply_text(submitted) == "Choose images by number between 1 and 2, for example 1 or 1,2."
    assert replies(submitted)[-1].ephemeral
    assert await env.job_count() == jobs


async def test_two_submits_of_one_form_make_one_job_two_forms_make_two(env: BotEnv) -> None:
    """A form sent twice 30 ms apart (a double click on Submit) is one job; the second submit
    is pointed to it. Two forms opened one after the other are two jobs."""
    fake, w = env.fake, env.world
    post = await fake.post_message(w.art, w.alice, "once", attachments=[("o.png", png())])
    opened = await open_menu(env, post, w.bob)
    fields = {modal_inputs(opened.modal or {})["What should change?"]["custom_id"]: "twice?"}
    jobs, before = await env.job_count(), await env.latest_job_id()
    first = await fake.submit_modal(fields=dict(fields), interaction=opened)
    await asyncio.sleep(0.03)
    second = await fake.submit_modal(fields=dict(fields), interaction=opened)
    for inter in (first, second):
        await fake.wait_for_ack(inter)
    job = await env.wait_job(await env.new_job(after=before))
    await fake.settle()
    assert await env.job_count() == jobs + 1
    assert (job.user_id, job.params.prompt) == (w.bob.id, "twice?")
    assert await env.ledger(job.id) == {"reserve": 1, "charge": 1, "refund": 0}
    queued, pointed = sorted((first, second), key=lambda i: "queued" not in reply_text(i))
    link = reply_text(queued).removeprefix(f"Job #{job.id} is queued: ")
    assert link.startswith("https://")
    assert reply_text(pointed) == (
        f"This already started job #{job.id}, so no second job was made: {link}"
    )
    assert replies(pointed)[-1].ephemeral

    # The same message, the same words, but a second form: the member asked twice.
    again = await open_menu(env, post, w.bob)
    _, second_job = await launch(env, submit_modal(env, again, {"What should change?": "twice?"}))
    assert second_job.id != job.id and second_job.state is JobState.DONE


# --- reply-to-edit -------------------------------------------------------------------------


async def test_reply_mentioning_the_bot_edits_the_replied_images(env: BotEnv) -> None:
    fake, w = env.fake, env.world
    picture = png(700, 500, (0, 0, 255))
    post = await fake.post_message(w.general, w.alice, "look", attachments=[("sky.png", picture)])
    reply, job = await launch(
        env,
        fake.post_message(w.general, w.bob, f"{w.bot.mention} make it a night sky", reference=post),
    )
    assert job.state is JobState.DONE
    assert (job.kind, job.user_id, job.params.prompt) == (
        Kind.EDIT,
        w.bob.id,
        "make it a night sky",
    )
    [uri] = await env.bot.engine.store.inputs(job.id)
    assert data_uri_bytes(uri) == picture

    # The status message answers the reply in the channel, and a thread hangs off it.
    status = env.status_message(job)
    assert status.channel_id == w.general.id
    assert status.referenced_id == reply.id
    assert status.thread_id == job.thread_id is not None
    [result] = env.result_messages(job)
    assert result.channel_id == job.thread_id
    assert embed_fields(result)["Prompt"] == "make it a night sky"


async def test_reply_in_a_jobs_thread_continues_the_chain(env: BotEnv) -> None:
    fake, w = env.fake, env.world
    _, first = await imagine(env, "a quiet harbour", user=w.alice)
    [result] = env.result_messages(first)
    thread = fake.thread(first.thread_id or 0)

    # A plain reply to the bot's result (Discord mentions the replied-to author by default).
    reply, second = await launch(
        env, fake.post_message(thread, w.alice, "add a red boat", reference=result)
    )
    assert second.state is JobState.DONE
    assert second.parent_job_id == first.id
    assert second.kind is Kind.EDIT
    assert second.thread_id == thread.id
    [uri] = await env.bot.engine.store.inputs(second.id)
    assert data_uri_bytes(uri) == fake.attachment_bytes(result.attachments[0].id)
    status = env.status_message(second)
    assert status.channel_id == thread.id and status.referenced_id == reply.id
    [second_result] = env.result_messages(second)

    # And again, on the newest result.
    _, third = await launch(
        env, fake.post_message(thread, w.alice, "now at sunset", reference=second_result)
    )
    assert third.parent_job_id == second.id and third.state is JobState.DONE


async def test_reply_without_a_mention_or_without_images_does_nothing_or_explains(
    env: BotEnv,
) -> None:
    fake, w = env.fake, env.world
    jobs = await env.job_count()
    post = await fake.post_message(w.general, w.alice, "pic", attachments=[("p.png", png())])
    # Not mentioning the bot, outside a job's thread: the bot does not react.
    await fake.post_message(w.general, w.bob, "nice picture", reference=post)
    await fake.settle()
    # Mentioning the bot on a message without images: told in words, in the channel.
    words = await fake.post_message(w.general, w.alice, "no pictures here")
    ask = await fake.post_message(
        w.general, w.bob, f"{w.bot.mention} make it blue", reference=words
    )
    await fake.settle()
    await fake.wait_idle()
    answers = [m for m in fake.messages_in(w.general) if m.referenced_id == ask.id]
    assert [m.content for m in answers] == [NO_IMAGES]
    assert await env.job_count() == jobs
