"""What members see of a video job, without the bot: the Animate action per region, the
buttons and embed of a video result, minutes in its status line."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import discord
import pytest

from bot.dashscope.models import DEFAULT_ANIMATE_MODEL, Kind
from bot.dashscope.requests import ImageRequest, validate
from bot.dashscope.tools import Chosen, animate, video_model
from bot.discord_ui.render import result_embed, result_view, span, status_content, tool_words
from bot.jobs.model import Job, JobState, NewJob

PICTURE = "https://example.com/picture.png"


def components(view: discord.ui.View) -> list[list[dict[str, Any]]]:
    return [row["components"] for row in view.to_components()]


def more_options(region: str | None) -> list[str]:
    rows = components(result_view(7, "en", images=[1, 2], region=region))
    [more] = [row[0] for row in rows if row[0].get("custom_id", "").endswith(":more")]
    return [o["value"] for o in more["options"]]


@pytest.mark.parametrize(
    ("region", "offered"),
    [(None, True), ("cn-beijing", True), ("ap-southeast-1", True), ("us-east-1", False)],
)
def test_animate_is_in_more_where_the_region_offers_image_to_video(
    region: str | None, offered: bool
) -> None:
    options = more_options(region)
    assert ("animate:1" in options and "animate:2" in options) is offered
    assert (video_model(Kind.ANIMATE, region) is not None) is offered


def test_animate_on_an_image_uses_the_default_model_and_length_with_its_prompt() -> None:
    chosen = Chosen(PICTURE, prompt="a kite " * 400, position=2, watermark=True)
    request = validate(animate(chosen, "cn-beijing"))
    assert (request.model, request.kind, request.n) == (DEFAULT_ANIMATE_MODEL, Kind.ANIMATE, 1)
    assert (request.duration, request.resolution, request.source_image) == (5, "720P", 2)
    assert request.prompt.startswith("a kite") and len(request.prompt) <= 1500


def video_job(**changes: Any) -> Job:
    request = ImageRequest(
        model="wan2.5-t2v-preview", prompt="a red kite over the sea", seed=42, audio=True
    )
    job = Job.queued(21, NewJob(request=validate(request), user_id=1), 1000.0)
    return replace(job, **changes)


def test_a_video_result_has_reroll_info_and_delete_only() -> None:
    [row] = components(result_view(21, "en", images=[1], video=True))
    assert [c["custom_id"] for c in row] == [
        f"wan:job:21:{action}" for action in ("reroll", "info", "delete")
    ]


@pytest.mark.parametrize(
    ("lang", "expected"),
    [
        ("en", {"Length": "5 s", "Resolution": "720P", "Sound": "on", "Seed": "42"}),
        ("zh", {"时长": "5 s", "分辨率": "720P", "声音": "开", "种子": "42"}),
    ],
)
def test_a_video_embed_tells_length_resolution_sound_and_seed(
    lang: str, expected: dict[str, str]
) -> None:
    embed = result_embed(video_job(), lang)  # type: ignore[arg-type]
    fields = {field.name: field.value for field in embed.fields}
    assert expected.items() <= fields.items()
    assert "wan2.5-t2v-preview" in fields.values()
    linked = result_embed(video_job(), "en", linked=True)
    assert linked.footer.text is not None and "linked" in linked.footer.text
    fitted = result_embed(video_job(), "en", reencoded=True)
    assert fitted.footer.text == "The video was re-encoded to fit this server's upload limit."


def test_a_running_video_counts_in_minutes() -> None:
    job = video_job(state=JobState.RUNNING, submitted_at=1000.0)
    line = status_content(job, "en", expected_seconds=300, now=1125.0).splitlines()[-1]
    assert line == "🎬 Making the video… 2 min 05 s so far, about 2 min 55 s to go."
    late = status_content(job, "zh", expected_seconds=60, now=1125.0).splitlines()[-1]
    assert late == "🎬 正在生成视频… 已用 2 分 05 秒，比平时要久一些。"
    assert span(45, "en") == "45 s"


def test_an_animated_image_says_where_it_came_from() -> None:
    chosen = Chosen(PICTURE, prompt="a kite", position=3)
    job = Job.queued(22, NewJob(request=animate(chosen, None), user_id=1, parent_job_id=9), 0.0)
    assert tool_words(job, "en") == "Animate of image 3 of job #9"
