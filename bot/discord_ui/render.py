"""What the bot shows on Discord: status lines, result embeds, info embeds, button rows and
server settings' values.

Buttons carry their job in the custom_id (`wan:job:<id>:<action>`); the cogs register a
`DynamicItem` with `JOB_BUTTON_TEMPLATE`, so a click works after any restart by looking the job
up in the database. The views built here are stopped before sending: nothing is kept in memory
per message, every click is routed by the template alone.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence

import discord

from bot.accounting.policy import SETTINGS
from bot.dashscope.models import Kind
from bot.dashscope.tools import VARY_STRENGTH, ZOOM_CHOICES, Pan, pan_scales, zoom_scales
from bot.discord_ui.image_tools import (
    BUTTON_ROWS,
    MAX_IMAGES,
    MENUS,
    TOOLS,
    image_custom_id,
    label_key,
    menu_custom_id,
    option_value,
    shown,
)
from bot.discord_ui.replies import relative_timestamp
from bot.errors import Problem
from bot.i18n import Lang, lang_for, text
from bot.jobs.model import Job, JobState, ResultImage
from bot.presenter import render_all

# At most 18 digits: any longer id (only a forged custom_id has one) would overflow SQLite's
# 64-bit integers; it matches nothing, so discord.py drops the click. Any action word matches,
# so a button no version handles (say from an older or newer bot) is answered, not dropped.
JOB_BUTTON_TEMPLATE = r"wan:job:(?P<job_id>[0-9]{1,18}):(?P<action>[a-z]{1,20})"
EMBED_COLOUR = discord.Colour(0x5B6CFF)
FIELD_LIMIT = 1024
THREAD_NAME_LIMIT = 100
STATUS_PROMPT_MAX = 300  # characters of the prompt line in a status message
FAILURE_MAX = 900  # characters of a failure's reason in public

# A link as Discord would find it, without the punctuation that usually follows one.
_LINK = re.compile(r"https?://[^\s<>]*[^\s<>.,:;\"')\]]")
# Read by Discord as markup anywhere: emphasis, spoilers, code, masked links ([…](…)), mentions,
# channels, emoji and timestamps (<…>), quotes, headings, @everyone; and the escape itself.
_MARKUP = re.compile(r"[\\*_~|`\[\]<>#@]")
# Read as markup only at the start of a line: lists ("- ", "+ ", "1. ") and small text ("-#").
_LINE_START = re.compile(r"^(\s*)(?:([-+])|(\d+)\.)", re.MULTILINE)


def job_custom_id(job_id: int, action: str) -> str:
    return f"wan:job:{job_id}:{action}"


def clip(value: str, limit: int) -> str:
    return value if len(value) <= limit else value[: limit - 1] + "…"


def member_words(value: str, limit: int, *, one_line: bool = False) -> str:
    """A member's words (a prompt, DashScope's echo of it, an error that may quote them) as
    Discord shows them literally, in at most `limit` characters: every markup character
    escaped, so no heading, quote, mention, spoiler or masked link can be forged; links shown
    as they are and not previewed (`<url>`). `one_line` joins the lines with spaces; else blank
    lines are dropped. The one place where the bot's messages quote a member."""
    lines = [" ".join(value.split())] if one_line else value.splitlines()
    plain = "\n".join(line.rstrip() for line in lines if line.strip())
    return _fit(plain, limit, _inert)


def quoted(value: str, limit: int) -> str:
    """A member's words as one quoted line (`> …`), the words in at most `limit` characters."""
    return "> " + member_words(value, limit, one_line=True)


def failure_line(lang: Lang, message: str) -> str:
    """The public line saying a job failed; the reason may quote the member or DashScope."""
    return text("status.failed", lang, message=member_words(message, FAILURE_MAX, one_line=True))


def _inert(value: str) -> str:
    parts: list[str] = []
    start = 0
    for link in _LINK.finditer(value):
        parts += [_escape(value[start : link.start()]), f"<{link.group()}>"]
        start = link.end()
    parts.append(_escape(value[start:]))
    return "".join(parts)


def _escape(value: str) -> str:
    value = _MARKUP.sub(lambda found: "\\" + found.group(), value)
    return _LINE_START.sub(
        lambda found: found[1] + ("\\" + found[2] if found[2] else found[3] + "\\."), value
    )


def _fit(value: str, limit: int, render: Callable[[str], str]) -> str:
    """`render(value)`, or of as much of `value` as fits in `limit` characters with "…"."""
    shown = render(value)
    cut = len(value)
    links = [(link.start(), link.end()) for link in _LINK.finditer(value)]
    while len(shown) > limit and cut > 0:
        # Escapes make the shown text longer than the words: cut in proportion, then by one.
        cut = min(cut - 1, cut * (limit - 1) // len(shown))
        # Never inside a link: a cut one would lead somewhere else ("https://evil.exa…").
        cut = next((start for start, end in links if start < cut < end), cut)
        shown = render(value[:cut].rstrip()) + "…"
    return shown if len(shown) <= limit else "…"[:limit]


def setting_value(name: str, value: str | None, limit: int | None = None) -> str:
    """A setting's stored value as admins read it: "—" for none, channel ids as mentions
    (Discord shows `<#id>` as the channel's name), cut to `limit` characters if given."""
    if not value:
        return "—"
    spec = SETTINGS.get(name)
    if spec is None:  # a style's change (or a setting of old): an admin's free words
        return member_words(value, limit or FIELD_LIMIT, one_line=True)
    if spec.kind not in ("channel", "channels"):
        return value if limit is None else clip(value, limit)
    mentions = [f"<#{part}>" for part in value.split(",") if part]
    shown = ", ".join(mentions)
    if limit is None or len(shown) <= limit:
        return shown
    # Whole mentions only: a cut one would show as raw text.
    kept: list[str] = []
    for mention in mentions:
        if len(", ".join([*kept, mention, "…"])) > limit:
            break
        kept.append(mention)
    return ", ".join([*kept, "…"])


def thread_name(prompt: str) -> str:
    """A thread title from the prompt: one line, no mentions, at most 100 characters."""
    line = " ".join(prompt.replace("@", "@\u200b").split()) or "wanbot"
    return clip(line, THREAD_NAME_LIMIT)


def deleted_thread_name(job: Job) -> str:
    """The name a deleted job's thread takes instead of its prompt."""
    return text("status.deleted_thread", lang_for(job.locale), job_id=job.id)


def status_content(
    job: Job,
    lang: Lang,
    *,
    position: int | None = None,
    expected_seconds: float | None = None,
    simulated: bool = False,
    now: float | None = None,
    message: str | None = None,
) -> str:
    now = time.time() if now is None else now
    header = text("status.header", lang, job_id=job.id, user=f"<@{job.user_id}>", model=job.model)
    if job.deleted_at is not None:  # gone for good: neither its prompt nor its state
        by = "owner" if job.deleted_by == job.user_id else "moderator"
        return f"{header}\n{text(f'status.deleted_by_{by}', lang)}"
    state = job.state
    if state is JobState.QUEUED:
        line = (
            text("status.queued", lang, position=position)
            if position
            else text("status.queued_unknown", lang)
        )
    elif state is JobState.SUBMITTED:
        line = text("status.submitted", lang)
    elif state is JobState.RUNNING:
        started = job.submitted_at or job.created_at
        elapsed = max(0, int(now - started))
        left = int((expected_seconds or 0) - elapsed)
        if job.kind.makes_video:  # minutes, not seconds
            line = (
                text(
                    "status.running_video", lang, elapsed=span(elapsed, lang), eta=span(left, lang)
                )
                if left > 0
                else text("status.running_video_late", lang, elapsed=span(elapsed, lang))
            )
        else:
            line = (
                text("status.running", lang, elapsed=elapsed, eta=left)
                if left > 0
                else text("status.running_late", lang, elapsed=elapsed)
            )
    elif state is JobState.DELIVERING:
        line = text("status.delivering", lang)
    elif state is JobState.DONE:
        seconds = int((job.finished_at or now) - job.created_at)
        line = (
            text("status.done_video", lang, seconds=span(seconds, lang))
            if job.kind.makes_video
            else text("status.done", lang, count=job.image_count or 0, seconds=seconds)
        )
    elif state is JobState.CANCELLED:
        line = text("status.cancelled", lang)
    else:
        line = failure_line(lang, message or job.error_message or "?")
    parts = [header, quoted(job.params.prompt, STATUS_PROMPT_MAX), line]
    if simulated:
        parts.append(f"-# {text('status.simulated', lang)}")
    return "\n".join(parts)


def span(seconds: int, lang: Lang) -> str:
    """A time as members read it: "45 s", "3 min 05 s"."""
    minutes, rest = divmod(max(0, seconds), 60)
    if not minutes:
        return text("status.seconds", lang, seconds=rest)
    return text("status.minutes", lang, minutes=minutes, seconds=f"{rest:02d}")


def _stopped(view: discord.ui.View) -> discord.ui.View:
    view.stop()  # see the module docstring: routed by custom_id, not stored per message
    return view


def status_view(job: Job, lang: Lang) -> discord.ui.View | None:
    """A Cancel button while the job can still be cancelled."""
    if job.state not in (JobState.QUEUED, JobState.SUBMITTED):
        return None
    view = discord.ui.View(timeout=None)
    view.add_item(
        discord.ui.Button(
            label=text("button.cancel", lang),
            style=discord.ButtonStyle.secondary,
            custom_id=job_custom_id(job.id, "cancel"),
        )
    )
    return _stopped(view)


def result_view(
    job_id: int,
    lang: Lang,
    *,
    images: Sequence[int] = (1,),
    region: str | None = None,
    video: bool = False,
) -> discord.ui.View:
    """The actions on each image shown (`images`: their 1-based positions in the job; those
    tools the key's `region` offers: image_tools.py), then Reroll, Edit, Info and Delete: at
    most five rows. A `video` is no image: Reroll, Info and Delete only."""
    if video:
        return _job_buttons(
            job_id,
            lang,
            ("reroll", discord.ButtonStyle.primary),
            ("info", discord.ButtonStyle.secondary),
            ("delete", discord.ButtonStyle.danger),
        )
    view = _job_buttons(
        job_id,
        lang,
        ("reroll", discord.ButtonStyle.primary),
        ("edit", discord.ButtonStyle.secondary),
        ("info", discord.ButtonStyle.secondary),
        ("delete", discord.ButtonStyle.danger),
    )
    shown_images = sorted(set(images))[:MAX_IMAGES]
    rows = [*_tool_rows(job_id, lang, shown_images, region), list(view.children)]
    view.clear_items()
    for row, items in enumerate(rows):
        for item in items:
            item.row = row
            view.add_item(item)
    return _stopped(view)


def _tool_rows(
    job_id: int, lang: Lang, images: list[int], region: str | None
) -> list[list[discord.ui.Item[discord.ui.View]]]:
    rows: list[list[discord.ui.Item[discord.ui.View]]] = []
    several = len(images) > 1  # "U2" and "Zoom out ×2 · image 2"; one image: "Upscale"
    for name in BUTTON_ROWS:
        tool = TOOLS[name]
        if not images or not shown(tool, region):
            continue
        rows.append(
            [
                discord.ui.Button(
                    label=text(f"tool.short_{name}", lang, image=position)
                    if several
                    else text(label_key(tool, region), lang),
                    style=discord.ButtonStyle.secondary,
                    custom_id=image_custom_id(job_id, position, name),
                )
                for position in images
            ]
        )
    for menu, names in MENUS.items():
        tools = [TOOLS[name] for name in names if shown(TOOLS[name], region)]
        if not images or not tools:
            continue
        options = [
            discord.SelectOption(
                label=text(
                    "tool.on_image", lang, tool=text(label_key(tool, region), lang), image=position
                )
                if several
                else text(label_key(tool, region), lang),
                value=option_value(tool.name, position),
            )
            for position in images
            for tool in tools
        ]
        rows.append(
            [
                discord.ui.Select(
                    custom_id=menu_custom_id(job_id, menu),
                    placeholder=text(f"tool.menu_{menu}", lang),
                    options=options,
                )
            ]
        )
    return rows


def failure_view(job_id: int, lang: Lang) -> discord.ui.View:
    """Info on a failure notice: the request ids support asks for."""
    return _job_buttons(job_id, lang, ("info", discord.ButtonStyle.secondary))


def _job_buttons(
    job_id: int, lang: Lang, *buttons: tuple[str, discord.ButtonStyle]
) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    for action, style in buttons:
        view.add_item(
            discord.ui.Button(
                label=text(f"button.{action}", lang),
                style=style,
                custom_id=job_custom_id(job_id, action),
            )
        )
    return _stopped(view)


def result_embed(
    job: Job,
    lang: Lang,
    *,
    failed_images: int = 0,
    reencoded: bool = False,
    simulated: bool = False,
    linked: bool = False,
) -> discord.Embed:
    """A result's details; a video's (`Kind.makes_video`) also its length, resolution and
    sound, and whether it was re-encoded to fit (`reencoded`) or is only linked (`linked`)."""
    p = job.params
    embed = discord.Embed(title=text("result.title", lang, job_id=job.id), colour=EMBED_COLOUR)
    embed.add_field(
        name=text("result.prompt", lang), value=member_words(p.prompt, FIELD_LIMIT), inline=False
    )
    if job.actual_prompt and job.actual_prompt.strip() != p.prompt.strip():
        embed.add_field(
            name=text("result.actual_prompt", lang),
            value=member_words(job.actual_prompt, FIELD_LIMIT),
            inline=False,
        )
    if p.negative_prompt:
        embed.add_field(
            name=text("result.negative_prompt", lang),
            value=member_words(p.negative_prompt, FIELD_LIMIT),
            inline=False,
        )
    made_by = tool_words(job, lang)
    if made_by:
        embed.add_field(name=text("tool.field", lang), value=made_by, inline=False)
    embed.add_field(name=text("result.model", lang), value=job.model)
    if p.style:
        embed.add_field(name=text("result.style", lang), value=member_words(p.style, FIELD_LIMIT))
    size = job.result_size or p.size  # an edit without a size: known only if DashScope said
    if size:
        embed.add_field(name=text("result.size", lang), value=size)
    video = job.kind.makes_video
    if video:
        embed.add_field(name=text("result.video_length", lang), value=f"{p.duration or '?'} s")
        embed.add_field(name=text("result.resolution", lang), value=p.resolution or "—")
        if p.audio is not None:
            embed.add_field(
                name=text("result.audio", lang),
                value=text("result.audio_on" if p.audio else "result.audio_off", lang),
            )
    embed.add_field(
        name=text("result.seed", lang), value=str(p.seed) if p.seed is not None else "—"
    )
    if job.finished_at or job.delivering_at:
        seconds = int((job.delivering_at or job.finished_at or job.created_at) - job.created_at)
        embed.add_field(name=text("result.duration", lang), value=f"{seconds} s")
    notes = []
    if failed_images:
        notes.append(text("result.failed_images", lang, count=failed_images))
    if reencoded:
        notes.append(text("result.video_reencoded" if video else "result.reencoded", lang))
    if linked:
        notes.append(text("result.video_linked", lang))
    if simulated:
        notes.append(text("status.simulated", lang))
    if notes:
        embed.set_footer(text=" ".join(notes))
    return embed


def tool_words(job: Job, lang: Lang) -> str | None:
    """What a job did to which image, for its embed ("Upscale ×2 of image 2 of job #12");
    None for text-to-image, edits and blends, which their prompt tells."""
    p = job.params
    if job.kind is Kind.UPSCALE:
        words = text("tool.did_upscale", lang, factor=p.upscale_factor or "?")
    elif job.kind is Kind.EXPAND:
        words = _expand_words(p.expand, lang)
    elif job.kind is Kind.ANIMATE:
        words = text("tool.animate", lang)
    elif job.kind is Kind.VARY:
        strength = next((k for k, v in VARY_STRENGTH.items() if v == p.strength), None)
        if strength is not None:
            words = text(f"tool.vary_{strength}", lang)
        elif p.strength is not None:
            words = text("tool.did_vary_strength", lang, strength=p.strength)
        else:
            words = text("tool.did_vary", lang)
    else:
        return None
    if p.source_image is not None and job.parent_job_id is not None:
        return text(
            "tool.of_image", lang, tool=words, image=p.source_image, job_id=job.parent_job_id
        )
    return words


def _expand_words(scales: tuple[float, float, float, float] | None, lang: Lang) -> str:
    for factor in ZOOM_CHOICES:
        if scales == zoom_scales(factor):
            return text("tool.did_zoom", lang, factor=f"{factor:g}")
    for direction in Pan:
        if scales == pan_scales(direction):
            return text(f"tool.pan_{direction.value}", lang)
    top, bottom, left, right = scales or ("?", "?", "?", "?")
    return text("tool.did_expand", lang, top=top, bottom=bottom, left=left, right=right)


def info_embed(
    job: Job, results: list[ResultImage], locale: str | None, *, private: bool = False
) -> discord.Embed:
    """All a job's details; `private` (its owner or a moderator, in an ephemeral answer) adds
    what went wrong in detail: URLs, hosts and DashScope's own messages stay out of public."""
    lang = lang_for(locale)
    embed = result_embed(job, lang)
    delivered = sum(1 for r in results if r.delivered_message_id is not None)
    failed = [r for r in results if r.failure_code]
    embed.add_field(
        name=text("result.images", lang),
        value=f"{delivered}/{job.n}"
        + (f" ({', '.join(r.failure_code or '' for r in failed)})" if failed else ""),
    )
    if job.task_id:
        embed.add_field(name=text("result.task_id", lang), value=f"`{job.task_id}`", inline=False)
    ids = [i for i in (job.submit_request_id, job.result_request_id) if i]
    if ids:
        embed.add_field(
            name=text("result.request_ids", lang),
            value="\n".join(f"`{i}`" for i in ids),
            inline=False,
        )
    if job.error_code:
        embed.add_field(
            name=text("result.error", lang),
            value=f"`{job.error_code}` {member_words(failure_words(job, lang) or '', FAILURE_MAX)}",
        )
    detail = failure_detail(job) if private else None
    if detail:
        embed.add_field(
            name=text("result.detail", lang),
            value=member_words(detail, FAILURE_MAX),
            inline=False,
        )
    return embed


def failure_detail(job: Job) -> str | None:
    """The technical side of a failure (exception texts, URLs, DashScope's message), kept with
    its problems as their `detail` values and never part of the public words."""
    details: list[str] = []

    def collect(problem: Problem) -> None:
        for name, value in problem.values.items():
            if isinstance(value, Problem):
                collect(value)
            elif name == "detail" and value:
                details.append(str(value))

    for problem in job.failure:
        collect(problem)
    return "\n".join(dict.fromkeys(details)) or None


def failure_words(job: Job, lang: Lang) -> str | None:
    """Why the job failed, in `lang`; jobs that failed before failures were kept as data have
    only the words they were told in the job's language."""
    if job.failure:
        return render_all(job.failure, lang, moment=relative_timestamp)
    return job.error_message
