"""Deleting a job's result for good: the Delete button, by the job's owner or a moderator.

The deletion is recorded first (`JobStore.delete_for_good`: who and when; the result URLs and
input images forgotten, so nothing can post the images again), then carried out on Discord:
every message with the images deleted (the delivery and /show reposts), the status message
edited to a neutral line, and the job's own thread renamed, archived and locked (locked where
the bot has Manage Threads, which it does not ask for). The thread is
not deleted: other members' messages and other jobs (a Reroll clicked in it) live there too.
Each step is harmless to repeat, and the job stays pending until all are done, so what a
restart interrupts is done at the next start (`finish_pending`).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable
from functools import partial

import discord

from bot.discord_ui.delivery import DiscordDelivery
from bot.discord_ui.render import deleted_thread_name, status_content
from bot.i18n import lang_for
from bot.jobs.model import Job
from bot.jobs.store import JobStore

THREAD_ARCHIVED = 50083  # Discord's code: an archived thread's messages cannot be changed

log = logging.getLogger(__name__)


async def delete_for_good(
    client: discord.Client,
    delivery: DiscordDelivery,
    store: JobStore,
    job_id: int,
    by: int,
    clicked: discord.Message | None = None,
) -> bool:
    """Delete the job's result for good; False when a step failed for a passing reason (it is
    done again at the next start, or at the next click on Delete)."""
    if clicked is not None:  # maybe a /show repost from before reposts were recorded
        await store.add_repost(job_id, clicked.channel.id, clicked.id)
    job = await store.delete_for_good(job_id, by)
    return job is not None and await _carry_out(client, delivery, store, job)


async def finish_pending(
    client: discord.Client, delivery: DiscordDelivery, store: JobStore
) -> None:
    """Carry out the deletions a restart interrupted."""
    for job in await store.deletions_pending():
        if not await _carry_out(client, delivery, store, job):
            log.warning("job %s: its deletion is still not done on Discord", job.id)


async def record_repost(store: JobStore, job_id: int, message: discord.Message) -> None:
    """Remember a /show post of the job's images, so deleting the job deletes it too."""
    await store.add_repost(job_id, message.channel.id, message.id)
    job = await store.get(job_id)
    if job is not None and job.deleted_at is not None:  # deleted while /show was posting
        with contextlib.suppress(discord.HTTPException):
            await message.delete()


async def _carry_out(
    client: discord.Client, delivery: DiscordDelivery, store: JobStore, job: Job
) -> bool:
    where = job.thread_id or job.channel_id
    posts = {
        (where, result.delivered_message_id)
        for result in await store.results(job.id)
        if result.delivered_message_id and where is not None
    }
    steps: list[tuple[str, Callable[[], Awaitable[None]]]] = [
        (
            "delete a post of its images",
            partial(_opened, client, channel_id, _message(client, channel_id, message_id).delete),
        )
        for channel_id, message_id in sorted(posts | set(await store.reposts(job.id)))
    ]
    delivery.forget(job.id)
    if job.channel_id is not None and job.status_message_id is not None:
        status = _message(client, job.channel_id, job.status_message_id)
        neutral = partial(status.edit, content=status_content(job, lang_for(job.locale)), view=None)
        steps.append(("hide its prompt", partial(_opened, client, job.channel_id, neutral)))
    steps.append(("close its thread", partial(_close_thread, client, job)))
    done = True
    for what, step in steps:
        done = await _step(job, what, step) and done
    if done:
        await store.deletion_done(job.id)
    return done


def _message(client: discord.Client, channel_id: int, message_id: int) -> discord.PartialMessage:
    return client.get_partial_messageable(channel_id).get_partial_message(message_id)


async def _opened(
    client: discord.Client, channel_id: int, act: Callable[[], Awaitable[object]]
) -> None:
    """`act()`; in an archived thread, where Discord changes nothing, with the thread opened
    for it and archived again."""
    try:
        await act()
        return
    except discord.HTTPException as exc:
        if exc.code != THREAD_ARCHIVED:
            raise
    thread = await client.fetch_channel(channel_id)
    assert isinstance(thread, discord.Thread)
    await thread.edit(archived=False)
    try:
        await act()
    finally:
        await thread.edit(archived=True)


async def _step(job: Job, what: str, step: Callable[[], Awaitable[None]]) -> bool:
    """Run one step: True when done or impossible for good (already gone, closed to the bot),
    False when it failed for a passing reason."""
    try:
        await step()
    except (discord.NotFound, discord.Forbidden) as exc:
        log.info("job %s: could not %s (%s); nothing left to do there", job.id, what, exc)
    except Exception as exc:  # 5xx, timeouts, dropped connections: again later
        log.warning("job %s: could not %s (%s); trying again later", job.id, what, exc)
        return False
    return True


async def _close_thread(client: discord.Client, job: Job) -> None:
    """Rename the job's own thread (named from its prompt), archive and lock it."""
    if job.thread_id is None or job.thread_id == job.channel_id:
        return  # made inside a thread that is not the job's own, or no thread at all
    # Fetched, not cached: whether it is archived may have changed while the bot was away.
    thread = await client.fetch_channel(job.thread_id)
    name = deleted_thread_name(job)
    if not isinstance(thread, discord.Thread):
        return
    if thread.name == name and thread.archived:
        return
    if thread.archived:  # Discord changes an archived thread only while unarchiving it
        thread = await thread.edit(archived=False)
    # One change per request: a refused lock must not take the rename and the archive with it.
    await thread.edit(name=name)
    try:
        await thread.edit(locked=True)
    except discord.Forbidden:  # locking may need Manage Threads, which the bot is not asked for
        log.info("job %s: thread %s renamed and archived, not locked", job.id, thread.id)
    await thread.edit(archived=True)
