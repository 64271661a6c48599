"""The live status message: a running job's elapsed time is refreshed while it draws."""

from __future__ import annotations

import itertools

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
