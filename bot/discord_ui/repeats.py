"""One click, one job: a repeat of the same paid click or form is pointed to the job it started.

Discord sends a double click on Reroll, or a double press on a form's Submit, as two
interactions a few milliseconds apart; servers may set no cooldown, so each would be a job, and
charged. `start_once` keys each start by (member, button custom_id or form custom_id) and takes
the key synchronously, before the first await that could let the repeat in, so two clicks racing
each other still make one job. The repeat is answered with a link to it.

Only clicks and form submits go through here. A slash command typed twice is two interactions
the member made on purpose (two invocations, often to get two pictures): two jobs, as the
server's cooldown allows.

This is per process. With several processes taking interactions (the scaling issue), the key has
to move into the database, taken in the transaction that reserves the job.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import discord

from bot.discord_ui.replies import respond, tell_queued
from bot.i18n import lang_for, text
from bot.jobs.model import Job

# How long after a job started a repeat of its click is taken for a double click. Long enough
# for a click sent again on a slow connection, short enough that a deliberate second Reroll
# (after reading the "queued" answer) makes its job.
REPEAT_WINDOW = 5.0

Key = tuple[int, str]


@dataclass(frozen=True)
class Started:
    """The job a click started, and the link to its status message."""

    job_id: int
    link: str


class RecentStarts:
    """The starts in progress and those of the last `window` seconds, by (member, key). Memory
    holds only those: a finished start is forgotten when its window ends, a failed one at once."""

    def __init__(
        self, window: float = REPEAT_WINDOW, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.window = window
        self.clock = clock
        self._starts: dict[Key, asyncio.Future[Started | None]] = {}
        self._ending: deque[tuple[float, Key, asyncio.Future[Started | None]]] = deque()

    def __len__(self) -> int:
        return len(self._starts)

    def claim(self, member_id: int, key: str) -> asyncio.Future[Started | None] | None:
        """None when this start is the first (the caller must `finish` it); else the earlier
        start's outcome to wait for. Never awaits: the check and the claim are one step."""
        self._forget_ended()
        earlier = self._starts.get((member_id, key))
        if earlier is not None:
            return earlier
        self._starts[(member_id, key)] = asyncio.get_running_loop().create_future()
        return None

    def finish(self, member_id: int, key: str, started: Started | None) -> None:
        """Record what the claimed start made (None: nothing, so the next click tries again)."""
        future = self._starts.get((member_id, key))
        if future is None or future.done():
            return
        future.set_result(started)
        if started is None:
            del self._starts[(member_id, key)]
        else:
            self._ending.append((self.clock() + self.window, (member_id, key), future))

    def _forget_ended(self) -> None:
        now = self.clock()
        while self._ending and self._ending[0][0] <= now:
            _, key, future = self._ending.popleft()
            if self._starts.get(key) is future:
                del self._starts[key]


StartJob = Callable[[], Awaitable[tuple[Job, discord.Message] | None]]


async def start_once(
    starts: RecentStarts, interaction: discord.Interaction, key: str, start: StartJob
) -> None:
    """Acknowledge the interaction and run `start` (which answers it itself when it makes no
    job), unless this member's same click or form already started a job: then say which, with
    its link. Call it before the handler awaits anything."""
    member_id = interaction.user.id
    earlier = starts.claim(member_id, key)  # before the first await: a racing repeat sees it
    made: Started | None = None
    try:
        await interaction.response.defer(ephemeral=True, thinking=True)
        while earlier is not None:
            # Shielded: this click giving up must not cancel the outcome others wait for.
            started = await asyncio.shield(earlier)
            if started is not None:
                lang = lang_for(str(interaction.locale))
                words = text(
                    "reply.already_started", lang, job_id=started.job_id, link=started.link
                )
                await respond(interaction, words)
                return
            # The earlier click made nothing (refused, failed): this one tries for itself.
            earlier = starts.claim(member_id, key)
        launched = await start()
        if launched is not None:
            job, status = launched
            made = Started(job.id, status.jump_url)
            await tell_queued(interaction, lang_for(str(interaction.locale)), job, status)
    finally:
        if earlier is None:  # this click holds the claim, whatever happened: release it
            starts.finish(member_id, key, made)
