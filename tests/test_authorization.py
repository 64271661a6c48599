"""Authorisation end to end: every path that acts on someone else's job, or on the bot's settings,
is refused to members without the right, in words, ephemerally, with nothing changed.

The rules, as the code has them (bot/discord_ui/checks.py, bot/discord_ui/buttons.py):

* `/wanadmin …` needs Manage Server (or Administrator) in that server, checked at run time as
  well, because a server can override who sees the command. `/wansync` is for the bot's owner.
* Cancel (`/cancel`, the button) and Delete/`/show` on a job are for its owner, or for a moderator
  (Manage Messages, Manage Server or Administrator) *of the job's server*: a moderator of another
  server has no say over it.
* Info is read-only and open to anyone who sees the result; Reroll and Edit on another member's
  result are allowed and start a new job that belongs to, and is charged to, the clicker.
* `/jobs` and `/quota` show the caller's own numbers only; they take no member option.

One bot serves the module; a second server ("Elsewhere") where bob is a moderator and alice a
plain member gives the cross-server cases.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import pytest_asyncio

from bot.jobs.model import Job, JobState
from tests.discord_env import (
    HELD_MODEL,
    HOLDER_USER_ID,
    BotEnv,
    bot_env,
    custom_ids,
    embed_fields,
    imagine,
    launch,
    png,
    replies,
    submit_modal,
)
from tests.fakediscord.constants import Perm
from tests.figures import record

pytestmark = pytest.mark.asyncio(loop_scope="module")

NOT_ADMIN = "Only members with the Manage Server permission can change the bot's settings."
OWNER_ONLY = "Only the bot's owner can do that."
NOT_YOURS = "Job #{id} belongs to someone else. Only its owner or a member with Manage Messages in its server can do that."
NOT_YOURS_TO_CANCEL = "Job #{id} is not yours: only its owner or a member with Manage Messages in this server can cancel it."
CANCELLED = "Job #{id} was cancelled; its images were refunded."
NO_DMS = "I only work in servers here. Use me in a server channel."
FORM_GONE = (
    "The message with the images to edit is gone, or I can no longer read it, so nothing was "
    "made. Nothing was charged."
)
ADMIN_COMMANDS: list[tuple[str, dict[str, Any]]] = [
    ("wanadmin limits show", {}),
    ("wanadmin limits set", {"setting": "images_per_user_day", "value": "1"}),
    ("wanadmin limits set", {"setting": "max_n", "value": "1", "role": "everyone"}),
    ("wanadmin limits reset", {"setting": "images_per_user_day"}),
    ("wanadmin audit", {}),
    ("wanadmin usage", {}),
    ("wanadmin usage", {"period": "7d"}),
    ("wanadmin usage", {"user": "alice"}),
    ("wanadmin styles add", {"name": "noir", "suffix": "in film noir style"}),
    ("wanadmin styles remove", {"name": "noir"}),
    ("wanadmin styles list", {}),
]
TALLY: Counter[str] = Counter()


@dataclass
class World:
    env: BotEnv
    other: Any  # the second server
    lobby: Any  # its channel
    other_mod_role: Any

    @property
    def w(self) -> Any:
        return self.env.world


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def world(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[World]:
    async with bot_env(tmp_path_factory.mktemp("authorisation"), max_in_flight=1) as env:
        await env.hold_model()
        fake, w = env.fake, env.world
        other = fake.create_guild("Elsewhere", channels=("lobby",))
        mod_role = fake.create_role(other, "Moderator", Perm.MANAGE_MESSAGES | Perm.MANAGE_GUILD)
        fake.add_member(other, w.alice)
        fake.add_member(other, w.bob, [mod_role])
        await env.join_guild(other)
        yield World(env, other, fake.channel(other, "lobby"), mod_role)
    record(
        "authorisation",
        paths=TALLY["paths"],
        refused_correctly=TALLY["refused"],
        allowed_correctly=TALLY["allowed"],
    )


@pytest.fixture(autouse=True)
def clean(world: World) -> Iterator[None]:
    yield
    world.env.check_clean()


def tally(refused: bool) -> None:
    TALLY["paths"] += 1
    TALLY["refused" if refused else "allowed"] += 1


async def answered(env: BotEnv, inter: Any, timeout: float = 10.0) -> Any:
    """The interaction's final answer (not a "thinking…" placeholder)."""
    await env.fake.wait_for_ack(inter)
    deadline = time.monotonic() + timeout
    while not [m for m in replies(inter) if not m.loading]:
        assert time.monotonic() < deadline, "no answer"
        await asyncio.sleep(0.01)
    await env.fake.settle()
    return [m for m in replies(inter) if not m.loading][-1]


async def slash(
    env: BotEnv, name: str, options: dict[str, Any] | None = None, **kw: Any
) -> tuple[Any, Any]:
    kw.setdefault("channel", env.world.general)
    inter = await env.fake.slash(name, options, **kw)
    return inter, await answered(env, inter)


async def click(env: BotEnv, message: Any, job: Job, action: str, user: Any) -> tuple[Any, Any]:
    inter = await env.fake.click(message, f"wan:job:{job.id}:{action}", user=user)
    await env.fake.wait_for_ack(inter)
    await env.fake.settle()
    return inter, (replies(inter) or [None])[-1]


def assert_refusal(answer: Any, expected: str) -> None:
    assert answer is not None, "no answer"
    assert (answer.content, answer.ephemeral, answer.embeds, answer.attachments) == (
        expected,
        True,
        [],
        [],
    )


async def snapshot(env: BotEnv) -> tuple[Any, ...]:
    """Everything a refused action must leave alone: jobs, ledger, settings, audit log, styles."""
    assert env.bot is not None
    db = env.bot.engine.db
    # The job holding the model's slot (no member's) is left out: the poller updates its row.
    queries = (
        f"SELECT * FROM jobs WHERE user_id != {HOLDER_USER_ID} ORDER BY id",  # noqa: S608
        f"SELECT * FROM ledger WHERE user_id != {HOLDER_USER_ID} ORDER BY id",  # noqa: S608
        "SELECT * FROM results ORDER BY rowid",
        "SELECT * FROM limit_settings ORDER BY rowid",
        "SELECT * FROM audit_log ORDER BY rowid",
        "SELECT * FROM server_styles ORDER BY guild_id, name",
    )
    out = []
    for query in queries:
        out.append([tuple(row) for row in await db.fetchall(query)])
    return tuple(out)


async def ledger_by_user(env: BotEnv, job_id: int) -> dict[tuple[int, str], int]:
    assert env.bot is not None
    rows = await env.bot.engine.db.fetchall(
        "SELECT user_id, entry, images FROM ledger WHERE job_id = ?", (job_id,)
    )
    return {(row["user_id"], row["entry"]): row["images"] for row in rows}


async def queued_job(world: World, prompt: str) -> Job:
    _, job = await imagine(world.env, prompt, user=world.w.alice, model=HELD_MODEL, wait=False)
    assert job.state is JobState.QUEUED
    return job


async def finished_job(world: World, prompt: str, **options: Any) -> tuple[Job, Any]:
    _, job = await imagine(world.env, prompt, user=world.w.alice, **options)
    assert job.state is JobState.DONE
    [result] = world.env.result_messages(job)
    return job, result


# --- /wanadmin and /wansync -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "options"), ADMIN_COMMANDS, ids=[f"{n} {o}" for n, o in ADMIN_COMMANDS]
)
@pytest.mark.parametrize("who", ["alice", "moderator"])
async def test_wanadmin_is_refused_without_manage_server(
    world: World, name: str, options: dict[str, Any], who: str
) -> None:
    env, w = world.env, world.w
    user = getattr(w, who)
    values = dict(options)
    if values.get("role") == "everyone":
        values["role"] = w.guild.everyone
    if values.get("user") == "alice":
        values["user"] = w.alice
    # Discord hides the command from them; a server's override could still let them run it.
    with pytest.raises(PermissionError):
        await env.fake.slash(name, values, user=user, channel=w.general)
    before = await snapshot(env)
    _, answer = await slash(env, name, values, user=user, force=True)
    assert_refusal(answer, NOT_ADMIN)
    assert await snapshot(env) == before
    tally(refused=True)


async def test_wanadmin_of_one_server_is_not_admin_of_another(world: World) -> None:
    """bob has Manage Server in Elsewhere, not in the first server."""
    env, w = world.env, world.w
    before = await snapshot(env)
    _, answer = await slash(
        env,
        "wanadmin limits set",
        {"setting": "images_per_user_day", "value": "1"},
        user=w.bob,
        force=True,
    )
    assert_refusal(answer, NOT_ADMIN)
    assert await snapshot(env) == before
    tally(refused=True)


@pytest.mark.parametrize("who", ["alice", "moderator", "admin"])
async def test_wansync_is_refused_to_anyone_but_the_owner(world: World, who: str) -> None:
    env, w = world.env, world.w
    puts = len(env.fake.requests_to("PUT", f"/applications/{env.fake.application_id}/commands"))
    _, answer = await slash(env, "wansync", user=getattr(w, who))
    assert_refusal(answer, OWNER_ONLY)
    assert (
        len(env.fake.requests_to("PUT", f"/applications/{env.fake.application_id}/commands"))
        == puts
    )
    assert env.fake.global_commands == []
    tally(refused=True)


# --- cancel -------------------------------------------------------------------------------------


async def test_cancel_command_on_another_members_job_is_refused(world: World) -> None:
    env, w = world.env, world.w
    job = await queued_job(world, "cancel me not (command)")
    before = await snapshot(env)
    _, answer = await slash(env, "cancel", {"job": job.id}, user=w.bob)
    assert_refusal(answer, NOT_YOURS_TO_CANCEL.format(id=job.id))
    assert await snapshot(env) == before
    assert (await env.job(job.id)).state is JobState.QUEUED
    assert await env.ledger(job.id) == {"reserve": 1}
    tally(refused=True)
    await slash(env, "cancel", {"job": job.id}, user=w.alice)  # tidy up


async def test_cancel_button_on_another_members_job_is_refused(world: World) -> None:
    env, w = world.env, world.w
    job = await queued_job(world, "cancel me not (button)")
    status = env.status_message(job)
    before = await snapshot(env)
    _, answer = await click(env, status, job, "cancel", w.bob)
    assert_refusal(answer, NOT_YOURS_TO_CANCEL.format(id=job.id))
    assert await snapshot(env) == before
    assert custom_ids(env.fake.get_message(status.id)) == [f"wan:job:{job.id}:cancel"]
    tally(refused=True)
    await slash(env, "cancel", {"job": job.id}, user=w.alice)


@pytest.mark.parametrize("how", ["command", "button"])
async def test_a_moderator_may_cancel_a_members_job(world: World, how: str) -> None:
    env, w = world.env, world.w
    job = await queued_job(world, f"a moderator cancels this ({how})")
    if how == "command":
        _, answer = await slash(env, "cancel", {"job": job.id}, user=w.moderator)
    else:
        _, answer = await click(env, env.status_message(job), job, "cancel", w.moderator)
    assert (answer.content, answer.ephemeral) == (CANCELLED.format(id=job.id), True)
    job = await env.wait_job(job.id)
    assert job.state is JobState.CANCELLED
    assert await ledger_by_user(env, job.id) == {
        (w.alice.id, "reserve"): 1,
        (w.alice.id, "charge"): 0,
        (w.alice.id, "refund"): 1,
    }
    tally(refused=False)


async def test_a_moderator_of_another_server_may_not_cancel(world: World) -> None:
    env, w = world.env, world.w
    job = await queued_job(world, "not your server to cancel")
    before = await snapshot(env)
    _, answer = await slash(env, "cancel", {"job": job.id}, user=w.bob, channel=world.lobby)
    assert_refusal(answer, NOT_YOURS_TO_CANCEL.format(id=job.id))
    assert await snapshot(env) == before
    tally(refused=True)
    await slash(env, "cancel", {"job": job.id}, user=w.alice)


# --- delete -------------------------------------------------------------------------------------


async def test_delete_of_another_members_results_is_refused(world: World) -> None:
    env, w = world.env, world.w
    job, result = await finished_job(world, "delete me not")
    deletes = len(env.fake.requests_to("DELETE", f"/channels/{result.channel_id}/messages/*"))
    before = await snapshot(env)
    _, answer = await click(env, result, job, "delete", w.bob)
    assert_refusal(answer, NOT_YOURS.format(id=job.id))
    assert not env.fake.get_message(result.id).deleted
    assert (
        len(env.fake.requests_to("DELETE", f"/channels/{result.channel_id}/messages/*")) == deletes
    )
    assert await snapshot(env) == before
    tally(refused=True)


async def test_a_moderator_may_delete_a_members_results(world: World) -> None:
    env, w = world.env, world.w
    job, result = await finished_job(world, "a moderator deletes this")
    _, answer = await click(env, result, job, "delete", w.moderator)
    assert (answer.content, answer.ephemeral) == ("Deleted.", True)
    assert env.fake.get_message(result.id).deleted
    assert (await env.job(job.id)).state is JobState.DONE
    assert await env.ledger(job.id) == {"reserve": 1, "charge": 1, "refund": 0}
    tally(refused=False)


# --- show ---------------------------------------------------------------------------------------


async def test_show_of_another_members_job_is_refused(world: World) -> None:
    env, w = world.env, world.w
    job, _ = await finished_job(world, "show me not")
    posted = len(env.fake.messages_in(w.art, include_ephemeral=False))
    before = await snapshot(env)
    _, answer = await slash(env, "show", {"job": job.id}, user=w.bob, channel=w.art)
    assert_refusal(answer, NOT_YOURS.format(id=job.id))
    assert len(env.fake.messages_in(w.art, include_ephemeral=False)) == posted
    assert await snapshot(env) == before
    tally(refused=True)


async def test_show_of_another_servers_job_is_refused_even_to_its_moderator(world: World) -> None:
    """bob moderates Elsewhere: that gives him no view of the first server's jobs."""
    env, w = world.env, world.w
    job, _ = await finished_job(world, "a picture from the first server")
    posted = len(env.fake.messages_in(world.lobby, include_ephemeral=False))
    _, answer = await slash(env, "show", {"job": job.id}, user=w.bob, channel=world.lobby)
    assert_refusal(answer, NOT_YOURS.format(id=job.id))
    assert len(env.fake.messages_in(world.lobby, include_ephemeral=False)) == posted
    assert not any(a for m in env.fake.messages_in(world.lobby) for a in m.attachments)
    tally(refused=True)


async def test_the_owner_may_show_their_job_elsewhere_but_that_servers_mod_may_not_delete_it(
    world: World,
) -> None:
    env, w = world.env, world.w
    job, result = await finished_job(world, "mine, shown in another server")
    _, repost = await slash(env, "show", {"job": job.id}, user=w.alice, channel=world.lobby)
    assert not repost.ephemeral and repost.attachments
    tally(refused=False)

    _, answer = await click(env, repost, job, "delete", w.bob)
    assert_refusal(answer, NOT_YOURS.format(id=job.id))
    assert not env.fake.get_message(repost.id).deleted
    assert not env.fake.get_message(result.id).deleted  # the first server's results stay
    tally(refused=True)


async def test_show_in_a_dm_is_refused(world: World) -> None:
    env, w = world.env, world.w
    job, _ = await finished_job(world, "not for a DM")
    dm = env.fake.open_dm(w.bob)
    _, answer = await slash(env, "show", {"job": job.id}, user=w.bob, channel=dm)
    assert_refusal(answer, NO_DMS)
    assert [m for m in env.fake.messages_in(dm) if m.attachments] == []
    tally(refused=True)


# --- info, reroll and edit on another member's result ----------------------------------------------


async def test_info_on_another_members_result_is_read_only(world: World) -> None:
    env, w = world.env, world.w
    job, result = await finished_job(world, "info for anyone", seed=9)
    before = await snapshot(env)
    _, answer = await click(env, result, job, "info", w.bob)
    assert answer.ephemeral
    assert embed_fields(answer)["Seed"] == "9"
    assert await snapshot(env) == before
    tally(refused=False)


async def test_reroll_of_another_members_result_is_a_new_job_charged_to_the_clicker(
    world: World,
) -> None:
    env, w = world.env, world.w
    job, result = await finished_job(world, "reroll by someone else", n=2)
    owners_ledger = await ledger_by_user(env, job.id)

    async def run() -> Any:
        inter = await env.fake.click(result, f"wan:job:{job.id}:reroll", user=w.bob)
        await env.fake.wait_for_ack(inter)
        return inter

    _, again = await launch(env, run())
    assert again.state is JobState.DONE
    assert (again.user_id, again.parent_job_id, again.n) == (w.bob.id, job.id, 2)
    assert await ledger_by_user(env, again.id) == {
        (w.bob.id, "reserve"): 2,
        (w.bob.id, "charge"): 2,
        (w.bob.id, "refund"): 0,
    }
    assert await ledger_by_user(env, job.id) == owners_ledger  # alice pays nothing more
    tally(refused=False)


async def test_edit_of_another_members_result_is_a_new_job_charged_to_the_clicker(
    world: World,
) -> None:
    env, w = world.env, world.w
    job, result = await finished_job(world, "edit by someone else")
    owners_ledger = await ledger_by_user(env, job.id)
    inter = await env.fake.click(result, f"wan:job:{job.id}:edit", user=w.bob)
    await env.fake.wait_for_ack(inter)
    await env.fake.settle()
    _, edit = await launch(env, submit_modal(env, inter, {"What should change?": "add a hat"}))
    assert edit.state is JobState.DONE
    assert (edit.user_id, edit.parent_job_id) == (w.bob.id, job.id)
    assert await ledger_by_user(env, edit.id) == {
        (w.bob.id, "reserve"): 1,
        (w.bob.id, "charge"): 1,
        (w.bob.id, "refund"): 0,
    }
    assert await ledger_by_user(env, job.id) == owners_ledger
    tally(refused=False)


async def test_a_forged_edit_form_reads_no_other_channels_images(world: World) -> None:
    """A form's custom_id comes from the client. One naming a message of another channel (bob's
    picture in the other server) is looked up only where the form was submitted: refused in
    words, nothing read from the other channel, nothing made."""
    env, w = world.env, world.w
    secret = await env.fake.post_message(
        world.lobby, w.bob, "private", attachments=[("secret.png", png())]
    )
    before = await snapshot(env)
    inter = await env.fake.submit_modal(
        f"wan:edit:{secret.id}:0:1",
        {"instruction": "show me"},
        user=w.alice,
        channel=w.general,
        force=True,
    )
    assert_refusal(await answered(env, inter), FORM_GONE)
    assert await snapshot(env) == before
    [lookup] = env.fake.requests_to("GET", f"/channels/*/messages/{secret.id}")
    assert (lookup.path, lookup.status) == (f"/channels/{w.general.id}/messages/{secret.id}", 404)
    tally(refused=True)


# --- /jobs and /quota: one's own only ---------------------------------------------------------------


async def test_jobs_and_quota_take_no_member_option(world: World) -> None:
    commands = {c["name"]: c for c in world.env.fake.guild_commands[world.w.guild.id]}
    for name in ("jobs", "quota"):
        assert not commands[name].get("options"), commands[name]
    tally(refused=True)


async def test_jobs_lists_only_the_callers_jobs(world: World) -> None:
    env, w = world.env, world.w
    job, _ = await finished_job(world, "alice's secret garden")
    carol = env.fake.create_user("carol")
    env.fake.add_member(w.guild, carol)
    _, answer = await slash(env, "jobs", user=carol)
    assert answer.ephemeral
    assert answer.content == "You have no jobs yet. Try /imagine." and not answer.embeds
    _, answer = await slash(env, "jobs", user=w.bob)
    listing = answer.embeds[0]["description"] if answer.embeds else answer.content
    assert f"#{job.id}" not in listing and "secret garden" not in listing
    tally(refused=True)


async def test_quota_shows_the_callers_own_numbers(world: World) -> None:
    env, w = world.env, world.w
    await finished_job(world, "alice uses some quota", n=2)
    dave = env.fake.create_user("dave")
    env.fake.add_member(w.guild, dave)
    _, answer = await slash(env, "quota", user=dave)
    assert answer.ephemeral
    lines = answer.embeds[0]["description"].split("\n")
    assert lines[0].startswith("Images in the last 24 h: 0 of ")
    assert lines[1].startswith("Jobs in progress: 0 of ")
    tally(refused=True)
