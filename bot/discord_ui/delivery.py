"""The engine's delivery port on Discord: live status edits and result posts, with the bot token.

Nothing here uses an interaction token: jobs outlive the 15 minutes such a token lives, and a
restarted bot has none. Status edits are coalesced per job and spaced per channel, under
Discord's five edits per five seconds. Result posts carry a nonce per job and part, so a
delivery repeated after a crash returns Discord's earlier message instead of a second one.
"""

from __future__ import annotations

import asyncio
import io
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import discord
from PIL import Image

from bot.backoff import Backoff
from bot.discord_ui.render import (
    failure_line,
    failure_view,
    result_embed,
    result_view,
    status_content,
    status_view,
    thread_name,
)
from bot.discord_ui.replies import relative_timestamp
from bot.dispatch.delivery import DeliveredImage, DeliveryError
from bot.i18n import Lang, lang_for, text
from bot.jobs.model import Job, JobState
from bot.media.video import fit_video

log = logging.getLogger(__name__)

THREAD_ALREADY_CREATED = 160004  # Discord's code: "A thread has already been created here"

EDIT_SPACING = 1.2  # seconds between two status edits in one channel
FINAL_WAIT = 5.0  # the longest a final status waits for its turn; past it Discord's 429s pace it
TICK = 15.0  # seconds between refreshes of a running job's elapsed time
FORGET_AT = 64  # channels remembered before those whose turn has passed are forgotten
MAX_FILES = 10
DEFAULT_UPLOAD_LIMIT = 10 * 1024 * 1024
MIN_UPLOAD_LIMIT = 16 * 1024  # below this a 413 is not worth shrinking for any more
FINAL = (JobState.DONE, JobState.FAILED, JobState.CANCELLED)
NOTICE_ATTEMPTS = 3  # a failure notice refused by a 5xx is tried again with the same nonce
NOTICE_BACKOFF = Backoff(initial=1.0, cap=4.0)


@dataclass
class _Pending:
    job: Job
    position: int | None
    message: str | None = None


class DiscordDelivery:
    def __init__(self, *, simulated: bool = False, region: str | None = None) -> None:
        self.simulated = simulated
        self.region = region  # the key's region: which image tools a result offers
        self.bot: discord.Client | None = None
        self.expected: Callable[[Job], float] = lambda job: 0.0
        # The job as its row says now (in a cluster another process may have ended it).
        self.current: Callable[[int], Awaitable[Job | None]] | None = None
        self._pending: dict[int, _Pending] = {}
        # Per channel: the next edit's turn (forgotten now and then once passed) and the task
        # editing (gone once nothing is due). A bot that runs for months sees more channels,
        # threads above all, than it should remember.
        self._channel_next: dict[int, float] = {}
        self._forget_at = FORGET_AT
        self._flushers: dict[int, asyncio.Task[None]] = {}
        # Each guild's upload cap per message, as Discord states it in interactions (the gateway's
        # guild object does not carry it) or as learned from a 413.
        self._upload_limits: dict[int, int] = {}
        # Jobs being drawn: their status is refreshed now and then (elapsed time, ETA).
        self._running: dict[int, Job] = {}
        self._ticker: asyncio.Task[None] | None = None

    def attach(
        self,
        bot: discord.Client,
        expected: Callable[[Job], float],
        current: Callable[[int], Awaitable[Job | None]] | None = None,
    ) -> None:
        self.bot = bot
        self.expected = expected
        self.current = current

    async def close(self) -> None:
        """Drop pending status edits (final ones are never pending) and stop their flushers, so
        none runs on against a closed client."""
        self._pending.clear()
        self._running.clear()
        if self._ticker is not None:
            self._ticker.cancel()
            await asyncio.gather(self._ticker, return_exceptions=True)
        flushers = [task for task in self._flushers.values() if not task.done()]
        for task in flushers:
            task.cancel()
        await asyncio.gather(*flushers, return_exceptions=True)
        self._flushers.clear()

    # --- status ------------------------------------------------------------------------------

    async def place_again(self, job: Job) -> tuple[int | None, int | None] | None:
        """Post the status message of a job a crash left unplaced. The nonce is the one the
        first post used, so within Discord's few minutes of de-duplication the original message
        (and the thread started from it) comes back instead of a second one."""
        if self.bot is None or job.channel_id is None:
            return None
        try:
            channel = self.bot.get_channel(job.channel_id) or await self.bot.fetch_channel(
                job.channel_id
            )
            if not isinstance(channel, discord.abc.Messageable):
                return None
            status, thread_id = await post_status(
                channel, job, lang_for(job.locale), position=None, simulated=self.simulated
            )
        except (discord.NotFound, discord.Forbidden) as exc:  # gone or closed: for good
            log.warning("job %s: could not show it again after a restart: %s", job.id, exc)
            return None
        return status.id, thread_id

    async def status_changed(self, job: Job, position: int | None = None) -> bool | None:
        """False when a final status could not be shown for a passing reason (the engine
        then shows it again at the next start)."""
        if self.bot is None or job.status_message_id is None or job.channel_id is None:
            return None
        if job.state is JobState.RUNNING:
            self._running[job.id] = job
            if self._ticker is None or self._ticker.done():
                self._ticker = asyncio.create_task(self._tick(), name="status-ticker")
        else:
            self._running.pop(job.id, None)
        if job.state in FINAL:  # the last word: at its turn, replacing anything still pending
            self._pending.pop(job.id, None)
            return await self._edit_final(_Pending(job, position)) != "failed"
        self._pending[job.id] = _Pending(job, position)
        self._kick(job.channel_id)
        return None

    async def failed(self, job: Job, message: str) -> bool | None:
        """The failed job's final status, with the reason (the engine sends no status change
        for it), then a notice mentioning its member. False when either could not be shown for
        a passing reason (the engine then tells both again at the next start)."""
        self._running.pop(job.id, None)
        if self.bot is None or job.channel_id is None:
            return None
        if job.status_message_id is not None:
            self._pending.pop(job.id, None)
            if await self._edit_final(_Pending(job, None, message)) == "failed":
                return False
        return await self._post_failure(job, message)

    async def _post_failure(self, job: Job, message: str) -> bool:
        """The failure as a new message where the job answers (the thread, else the channel),
        mentioning only its member: an edit never notifies. Its nonce is the job's, so a notice
        told again after a restart comes back as the first one instead of a second."""
        assert self.bot is not None
        lang = lang_for(job.locale)
        places = dict.fromkeys(p for p in (job.thread_id, job.channel_id) if p is not None)
        for place in places:
            for attempt in range(NOTICE_ATTEMPTS):
                try:
                    await self.bot.get_partial_messageable(place).send(
                        f"<@{job.user_id}> {failure_line(lang, message)}",
                        view=failure_view(job.id, lang),
                        nonce=f"wbf{job.id}",
                        allowed_mentions=discord.AllowedMentions(
                            users=[discord.Object(job.user_id)]
                        ),
                    )
                    return True
                except discord.HTTPException as exc:
                    if exc.status < 500:  # gone, closed to the bot or refused: try elsewhere
                        log.warning("job %s: failure notice refused in %s: %s", job.id, place, exc)
                        break
                    failure: Exception = exc
                except Exception as exc:  # timeouts, dropped connections
                    failure = exc
                if attempt + 1 == NOTICE_ATTEMPTS:  # the same nonce at the next start
                    log.warning("job %s: could not post its failure notice: %s", job.id, failure)
                    return False
                await asyncio.sleep(NOTICE_BACKOFF.delay(attempt))
        await self._tell_by_dm(job, message)
        return True

    def forget(self, job_id: int) -> None:
        """Drop the status edits still to come for a job (they would show its prompt again)."""
        self._pending.pop(job_id, None)
        self._running.pop(job_id, None)

    async def _tell_by_dm(self, job: Job, message: str) -> None:
        """Neither the thread nor the channel takes the notice (gone, or closed to the bot):
        say it in a DM."""
        assert self.bot is not None
        content = status_content(
            job, lang_for(job.locale), simulated=self.simulated, message=message
        )
        try:
            dm = await self.bot.create_dm(discord.Object(job.user_id))
            await dm.send(content)
        except discord.HTTPException as exc:  # the user takes no DMs: nowhere left to tell
            log.warning(
                "job %s: could not tell the user it failed, not even by DM: %s", job.id, exc
            )

    async def _tick(self) -> None:
        """Refresh the running jobs' status lines every TICK seconds while there are any."""
        while self._running:
            await asyncio.sleep(TICK)
            for job in list(self._running.values()):
                if job.id not in self._pending and job.channel_id is not None:
                    self._pending[job.id] = _Pending(job, None)
                    self._kick(job.channel_id)

    def _kick(self, channel_id: int) -> None:
        task = self._flushers.get(channel_id)
        if task is None or task.done():
            self._flushers[channel_id] = asyncio.create_task(
                self._flush(channel_id), name=f"status-{channel_id}"
            )

    async def _flush(self, channel_id: int) -> None:
        try:
            while True:
                wait = self._channel_next.get(channel_id, 0.0) - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                    continue  # a final edit may have taken the turn meanwhile
                due = [p for p in self._pending.values() if p.job.channel_id == channel_id]
                if not due:
                    return
                item = due[0]
                self._pending.pop(item.job.id, None)
                if await self._ended(item.job):
                    continue
                self._take_turn(channel_id)
                await self._edit_status(item)
        finally:
            if self._flushers.get(channel_id) is asyncio.current_task():
                del self._flushers[channel_id]

    async def _ended(self, job: Job) -> bool:
        """Whether the row says the job has ended. Another process may have ended it (a cancel
        on a standby, a failure at a new dispatcher) and shown its end while this edit waited
        for the channel's turn: made now, it would hide that end for good."""
        if self.current is None:
            return False
        try:
            row = await self.current(job.id)
        except Exception as exc:  # the database is away: the edit is made as it was due
            log.warning("job %s: status not read again before its edit: %s", job.id, exc)
            return False
        if row is not None and not row.state.terminal:
            return False
        self._running.pop(job.id, None)
        return True

    def _take_turn(self, channel_id: int, at_most: float = 0.0) -> float:
        """Book the channel's next edit, at most `at_most` seconds from now; return the wait.
        Now and then, channels whose turn has passed are forgotten (nothing to wait for there)."""
        now = time.monotonic()
        if len(self._channel_next) >= self._forget_at:
            self._channel_next = {c: t for c, t in self._channel_next.items() if t > now}
            self._forget_at = max(FORGET_AT, 2 * len(self._channel_next))
        booked = self._channel_next.get(channel_id, now)
        turn = min(max(now, booked), now + at_most)
        self._channel_next[channel_id] = max(booked, turn + EDIT_SPACING)
        return turn - now

    async def _edit_final(self, item: _Pending) -> str:
        """A final status keeps the channel's spacing too, but waits FINAL_WAIT at most."""
        wait = self._take_turn(item.job.channel_id or 0, FINAL_WAIT)
        if wait > 0:
            await asyncio.sleep(wait)
        return await self._edit_status(item)

    async def _edit_status(self, item: _Pending) -> str:
        """Edit the job's status message: "shown", "gone" (deleted or closed to the bot) or
        "failed" (a passing error: Discord 5xx, a timeout)."""
        assert self.bot is not None
        job = item.job
        lang = lang_for(job.locale)
        content = status_content(
            job,
            lang,
            position=item.position,
            expected_seconds=self.expected(job),
            simulated=self.simulated,
            message=item.message,
        )
        channel = self.bot.get_partial_messageable(job.channel_id or 0)
        message = channel.get_partial_message(job.status_message_id or 0)
        try:
            await message.edit(content=content, view=status_view(job, lang))
        except (discord.NotFound, discord.Forbidden) as exc:
            log.warning("job %s: status message gone: %s", job.id, exc)
            return "gone"
        except Exception as exc:  # 5xx, rate limits given up, timeouts, connection errors
            log.warning("job %s: status edit failed: %s", job.id, exc)
            return "failed"
        return "shown"

    # --- results -----------------------------------------------------------------------------

    def learn_upload_limit(self, guild_id: int | None, limit: int | None) -> None:
        """Remember a guild's upload cap (`attachment_size_limit` of an interaction)."""
        if guild_id is not None and limit:
            self._upload_limits[guild_id] = limit

    def upload_limit(self, job: Job) -> int:
        if job.guild_id is not None and job.guild_id in self._upload_limits:
            return self._upload_limits[job.guild_id]
        guild = self.bot.get_guild(job.guild_id) if self.bot and job.guild_id else None
        return guild.filesize_limit if guild is not None else DEFAULT_UPLOAD_LIMIT

    async def deliver(self, job: Job, images: list[DeliveredImage]) -> list[int | None]:
        if self.bot is None:
            raise DeliveryError("the Discord client is not ready yet")
        target = job.thread_id or job.channel_id
        if target is None:
            raise DeliveryError("the job has no channel", retryable=False)
        if job.kind.makes_video:
            return [await self._deliver_video(job, video, target) for video in images[:1]]
        lang = lang_for(job.locale)
        limit = self.upload_limit(job)
        pending = [(image.position, image.content, "png") for image in images]
        reencoded = False
        failed_images = job.n - len(images)
        channel = self.bot.get_partial_messageable(target)
        shown = [image.position + 1 for image in images]  # as members number them
        ids: dict[int, int] = {}
        index = 0
        while pending:
            if any(len(content) > limit for _, content, _ in pending):
                pending = [(pos, as_jpeg(content, limit), "jpg") for pos, content, _ in pending]
                reencoded = True
            batch = upload_batches(pending, limit)[0]
            last = len(batch) == len(pending)
            files = [
                discord.File(io.BytesIO(content), filename=f"wan-{job.id}-{pos + 1}.{ext}")
                for pos, content, ext in batch
            ]
            try:
                message = await channel.send(
                    content=f"<@{job.user_id}>" if index == 0 else None,
                    files=files,
                    embed=result_embed(
                        job,
                        lang,
                        failed_images=failed_images,
                        reencoded=reencoded,
                        simulated=self.simulated,
                    )
                    if last
                    else discord.utils.MISSING,
                    view=result_view(job.id, lang, images=shown, region=self.region)
                    if last
                    else discord.utils.MISSING,
                    nonce=f"wb{job.id}-{index}",
                    allowed_mentions=discord.AllowedMentions(users=[discord.Object(job.user_id)]),
                )
            except discord.HTTPException as exc:
                sent = sum(len(content) for _, content, _ in batch)
                if exc.status == 413 and min(limit, sent) > MIN_UPLOAD_LIMIT:
                    # The guild's cap is lower than we thought: smaller messages, smaller files.
                    limit = min(limit, sent) * 3 // 4
                    self.learn_upload_limit(job.guild_id, limit)
                    log.info("job %s: upload too large; trying under %d bytes", job.id, limit)
                    continue
                raise _send_failure(exc) from None
            for pos, _, _ in batch:
                ids[pos] = message.id
            pending = pending[len(batch) :]
            index += 1
        return [ids.get(image.position) for image in images]

    async def _deliver_video(self, job: Job, video: DeliveredImage, target: int) -> int:
        """The job's video in its thread: as it is when it fits the upload cap, else re-encoded
        to fit (bot/media/video.py), else as DashScope's link with the time it expires."""
        assert self.bot is not None
        lang = lang_for(job.locale)
        channel = self.bot.get_partial_messageable(target)
        limit = self.upload_limit(job)
        content: bytes | None = video.content
        reencoded = False
        while True:
            if content is not None and len(content) > limit:
                content = await video_under(video.content, limit)
                reencoded = True
            if content is None and video.url is None:
                raise DeliveryError("the video fits no upload and has no link", retryable=False)
            mention = f"<@{job.user_id}>"
            words = mention
            if content is None:
                assert video.url is not None
                link = (
                    text(
                        "result.video_link",
                        lang,
                        url=video.url,
                        expires=relative_timestamp(video.expires_at),
                    )
                    if video.expires_at
                    else text("result.video_link_unknown", lang, url=video.url)
                )
                words = f"{mention} {link}"
            files = (
                [discord.File(io.BytesIO(content), filename=f"video-{job.id}.mp4")]
                if content is not None
                else discord.utils.MISSING
            )
            try:
                message = await channel.send(
                    content=words,
                    files=files,
                    embed=result_embed(
                        job,
                        lang,
                        reencoded=reencoded and content is not None,
                        linked=content is None,
                        simulated=self.simulated,
                    ),
                    view=result_view(job.id, lang, video=True),
                    nonce=f"wb{job.id}-0",
                    allowed_mentions=discord.AllowedMentions(users=[discord.Object(job.user_id)]),
                )
            except discord.HTTPException as exc:
                if exc.status == 413 and content is not None:
                    # The guild's cap is lower than we thought: re-encode under a lower one,
                    # or link the video when nothing watchable fits.
                    limit = min(limit, len(content)) * 3 // 4
                    self.learn_upload_limit(job.guild_id, limit)
                    log.info("job %s: video too large; trying under %d bytes", job.id, limit)
                    if limit < MIN_UPLOAD_LIMIT:
                        content = None
                    continue
                raise _send_failure(exc) from None
            return message.id


def _send_failure(exc: discord.HTTPException) -> DeliveryError:
    """A post Discord refused, as the engine's error: for good unless it may pass."""
    if isinstance(exc, discord.Forbidden):
        return DeliveryError(f"missing permission to post ({exc.text})", retryable=False)
    if isinstance(exc, discord.NotFound):
        return DeliveryError(f"the channel is gone ({exc.text})", retryable=False)
    return DeliveryError(f"Discord answered {exc.status} ({exc.text})", retryable=exc.status != 413)


_Item = TypeVar("_Item", bound=tuple[Any, bytes, str])  # (key, content, extension)


def upload_batches(payloads: list[_Item], limit: int) -> list[list[_Item]]:
    """Group images into messages under the upload cap and 10 files each."""
    batches: list[list[_Item]] = []
    current: list[_Item] = []
    size = 0
    for item in payloads:
        if current and (size + len(item[1]) > limit or len(current) >= MAX_FILES):
            batches.append(current)
            current, size = [], 0
        current.append(item)
        size += len(item[1])
    if current:
        batches.append(current)
    return batches


def as_jpeg(content: bytes, limit: int) -> bytes:
    """Re-encode as JPEG, scaling down until it fits under `limit` bytes."""
    with Image.open(io.BytesIO(content)) as opened:
        image = opened.convert("RGB")
    quality = 90
    while True:
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=quality, optimize=True)
        if buffer.tell() <= limit or min(image.size) < 64:
            return buffer.getvalue()
        if quality > 70:
            quality -= 10
        else:
            image = image.resize((image.width * 3 // 4, image.height * 3 // 4))


async def video_under(content: bytes, limit: int) -> bytes | None:
    """The MP4 as it is when it fits under `limit` bytes, else re-encoded to fit (in a
    thread), else None: nothing watchable fits."""
    return content if len(content) <= limit else await fit_video(content, limit)


async def post_status(
    channel: discord.abc.Messageable,
    job: Job,
    lang: Lang,
    *,
    position: int | None,
    simulated: bool,
    reply_to: discord.Message | None = None,
) -> tuple[discord.Message, int | None]:
    """Post a job's public status message, and a thread from it in a text channel (where the
    bot may; otherwise the job answers in the channel). Returns the message and thread id."""
    status = await channel.send(
        status_content(job, lang, position=position, simulated=simulated),
        view=status_view(job, lang) or discord.utils.MISSING,
        reference=reply_to,  # type: ignore[arg-type]
        mention_author=False,
        allowed_mentions=discord.AllowedMentions.none(),
        nonce=f"wbs{job.id}",
    )
    thread_id = job.thread_id
    if thread_id is None and isinstance(channel, discord.TextChannel):
        try:
            thread = await channel.create_thread(
                name=thread_name(job.params.prompt), message=status, auto_archive_duration=1440
            )
            thread_id = thread.id
        except discord.HTTPException as exc:
            if exc.code == THREAD_ALREADY_CREATED:  # the first post's thread: same id
                return status, status.id
            log.info("job %s: no thread (%s); answering in the channel", job.id, exc)
        except Exception as exc:  # a timeout or a dropped connection: the status stands
            log.warning("job %s: no thread (%s); answering in the channel", job.id, exc)
    return status, thread_id
