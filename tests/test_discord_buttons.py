"""The persistent buttons: Reroll, Edit, Info and Delete on results, Cancel on a status message."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import pytest_asyncio

from bot.dashscope.models import Kind
from bot.discord_ui.buttons import ACTIONS
from bot.i18n import text
from bot.jobs.model import Job, JobState
from tests.data_uri import data_uri_bytes
from tests.discord_env import (
    HELD_MODEL,
    BotEnv,
    bot_env,
    custom_ids,
    embed_fields,
    imagine,
    invoke,
    launch,
    modal_inputs,
    png,
    replies,
    reply_text,
    submit_modal,
)
from tests.fakediscord.constants import Perm
from tests.fakediscord.state import Overwrite

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def env(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[BotEnv]:
    async with bot_env(tmp_path_factory.mktemp("buttons"), max_in_flight=1) as env:
        await env.hold_model()
        yield env


@pytest.fixture(autouse=True)
def clean(env: BotEnv) -> Iterator[None]:
    yield
    env.check_clean()


async def click(env: BotEnv, message: Any, job: Job, action: str, user: Any, **kw: Any) -> Any:
    inter = await env.fake.click(message, f"wan:job:{job.id}:{action}", user=user, **kw)
    await env.fake.wait_for_ack(inter)
    await env.fake.settle()
    return inter


async def pressing(env: BotEnv, message: Any, job: Job, action: str, user: Any) -> Any:
    """A click that starts a job, acknowledged (for `launch`, which waits for the job)."""
    inter = await env.fake.click(message, f"wan:job:{job.id}:{action}", user=user)
    await env.fake.wait_for_ack(inter)
    return inter


async def test_reroll_makes_a_new_job_with_a_new_seed_and_the_same_params(env: BotEnv) -> None:
    fake, w = env.fake, env.world
    _, job = await imagine(
        env, "a glass teapot", user=w.alice, seed=11, n=2, size="1104*1472", negative_prompt="text"
    )
    [result] = env.result_messages(job)
    inter, again = await launch(env, pressing(env, result, job, "reroll", w.alice))
    assert again.state is JobState.DONE
    assert again.parent_job_id == job.id
    assert (again.model, again.n, again.params.size, again.params.negative_prompt) == (
        job.model,
        2,
        "1104*1472",
        "text",
    )
    assert again.params.prompt == job.params.prompt
    assert again.params.seed is not None and again.params.seed != 11
    assert env.sim.sim.store.tasks[again.task_id or ""].seed == again.params.seed
    answer = replies(inter)[-1]
    assert answer.ephemeral and answer.content.startswith(f"Job #{again.id} is queued:")
    # Clicked in the job's thread: the new job lives there too.
    assert again.thread_id == job.thread_id
    assert env.status_message(again).channel_id == job.thread_id
    [new_result] = env.result_messages(again)
    assert embed_fields(new_result)["Seed"] == str(again.params.seed)
    assert len(fake.webhook_requests_for(inter)) == 1  # only the "queued" follow-up


async def test_reroll_of_an_edit_reuses_its_input_images(env: BotEnv) -> None:
    fake, w = env.fake, env.world
    picture = png(512, 512, (1, 2, 3))

    async def edit() -> Any:
        inter = await fake.slash(
            "edit",
            {"prompt": "sepia"},
            user=w.alice,
            channel=w.general,
            attachments=[("x.png", picture)],
        )
        await fake.wait_for_ack(inter)
        return inter

    _, job = await launch(env, edit())
    [result] = env.result_messages(job)
    _, again = await launch(env, pressing(env, result, job, "reroll", w.alice))
    assert again.kind is Kind.EDIT and again.state is JobState.DONE
    assert [data_uri_bytes(u) for u in await env.bot.engine.store.inputs(again.id)] == [picture]


async def test_edit_button_opens_the_modal_and_edits_the_result(env: BotEnv) -> None:
    w = env.world
    _, job = await imagine(env, "a plain mug", user=w.alice)
    [result] = env.result_messages(job)
    opened = await click(env, result, job, "edit", w.alice)
    assert opened.modal is not None
    assert list(modal_inputs(opened.modal)) == ["What should change?", "What to avoid (optional)"]

    submitted, edit = await launch(
        env,
        submit_modal(
            env,
            opened,
            {"What should change?": "paint stripes on it", "What to avoid (optional)": "logos"},
        ),
    )
    assert edit.state is JobState.DONE
    assert (edit.kind, edit.parent_job_id, edit.params.negative_prompt) == (
        Kind.EDIT,
        job.id,
        "logos",
    )
    [uri] = await env.bot.engine.store.inputs(edit.id)
    assert data_uri_bytes(uri) == env.fake.attachment_bytes(result.attachments[0].id)
    assert reply_text(submitted).startswith(f"Job #{edit.id} is queued:")
    assert edit.thread_id == job.thread_id


async def test_edit_button_on_several_images_asks_which(env: BotEnv) -> None:
    w = env.world
    _, job = await imagine(env, "two cups", user=w.alice, n=2)
    [result] = env.result_messages(job)
    opened = await click(env, result, job, "edit", w.bob)
    inputs = modal_inputs(opened.modal or {})
    assert inputs["Which images (numbers)"]["value"] == "1"
    _, edit = await launch(
        env,
        submit_modal(env, opened, {"What should change?": "blue", "Which images (numbers)": "2"}),
    )
    assert edit.user_id == w.bob.id and edit.parent_job_id == job.id
    [uri] = await env.bot.engine.store.inputs(edit.id)
    assert data_uri_bytes(uri) == env.fake.attachment_bytes(result.attachments[1].id)


async def test_info_shows_an_ephemeral_embed_with_request_ids(env: BotEnv) -> None:
    w = env.world
    _, job = await imagine(env, "an info lamp", user=w.alice, seed=5)
    [result] = env.result_messages(job)
    inter = await click(env, result, job, "info", w.bob)
    [answer] = replies(inter)
    assert answer.ephemeral
    fields = embed_fields(answer)
    assert job.submit_request_id and job.result_request_id and job.task_id
    assert fields["Request ids"] == f"`{job.submit_request_id}`\n`{job.result_request_id}`"
    assert fields["Task id"] == f"`{job.task_id}`"
    assert fields["Images"] == "1/1"
    assert fields["Seed"] == "5" and fields["Prompt"] == "an info lamp"


async def test_info_tells_a_failure_in_the_readers_language(env: BotEnv) -> None:
    w = env.world
    li = env.fake.create_user("li", locale="zh-CN")
    env.fake.add_member(w.guild, li)
    _, job = await imagine(env, "一盏灯 sim:moderate-output", user=li)
    assert job.state is JobState.FAILED and job.error_code
    status = env.status_message(job)
    assert status.content.endswith("❌ 生成的图片未通过内容审核，请换个提示词再试。")
    # An Info button on the failed job (a button is routed by its custom_id alone).
    button = {"type": 2, "style": 2, "label": "Info", "custom_id": f"wan:job:{job.id}:info"}
    status.components = [{"type": 1, "components": [button]}]
    for user, locale, label, words in (
        (w.bob, "en-US", "Error", text("error.content.output", "en")),
        (li, "zh-CN", "错误", "生成的图片未通过内容审核，请换个提示词再试。"),
    ):
        inter = await click(env, status, job, "info", user, locale=locale)
        [answer] = replies(inter)
        assert embed_fields(answer)[label] == f"`{job.error_code}` {words}"


async def test_a_failure_is_posted_to_the_member_with_an_info_button(env: BotEnv) -> None:
    fake, w = env.fake, env.world
    _, job = await imagine(env, "a told lamp sim:moderate-output", user=w.alice)
    assert job.state is JobState.FAILED and job.thread_id is not None
    words = text("error.content.output", "en")
    [notice] = [
        m
        for m in fake.messages_in(job.thread_id)
        if m.author.id == fake.bot_user.id and not m.ephemeral
    ]
    # A new message (an edit never notifies) mentioning the member, and only them.
    assert notice.content == f"<@{w.alice.id}> ❌ {words}"
    [post] = fake.requests_to("POST", f"/channels/{job.thread_id}/messages")
    assert post.json["allowed_mentions"]["users"] == [w.alice.id]
    assert post.json["allowed_mentions"]["parse"] == []
    assert post.json["nonce"] == f"wbf{job.id}"
    assert custom_ids(notice) == [f"wan:job:{job.id}:info"]
    inter = await click(env, notice, job, "info", w.alice)
    [answer] = replies(inter)
    assert answer.ephemeral
    assert job.submit_request_id
    assert f"`{job.submit_request_id}`" in embed_fields(answer)["Request ids"]


async def test_every_button_drawn_has_an_action(env: BotEnv) -> None:
    w = env.world
    _, job = await imagine(env, "buttons and their actions", user=w.alice)
    [result] = env.result_messages(job)
    drawn = {c.rsplit(":", 1)[1] for c in custom_ids(result) if c.startswith("wan:job:")}
    assert drawn == {"reroll", "edit", "info", "delete"}  # the image tools: test_discord_tools.py
    assert drawn | {"cancel"} == set(ACTIONS)


async def test_a_button_this_version_does_not_know_is_answered_in_words(env: BotEnv) -> None:
    """A click on a job button with an action the bot has no handler for (an older or newer
    version's button) gets an answer, not silence, and does nothing."""
    w = env.world
    _, job = await imagine(env, "a button from another version", user=w.alice)
    [result] = env.result_messages(job)
    # The message as another version posted it: its Info button is an Upscale button.
    [info] = [c for c in result.iter_components() if c.get("custom_id", "").endswith(":info")]
    info["custom_id"] = f"wan:job:{job.id}:upscale"
    jobs = await env.job_count()
    for locale, expected in (
        ("en-US", "This button does nothing in this version of the bot."),
        ("zh-CN", "此按钮在当前版本的机器人中无效。"),
    ):
        inter = await click(env, result, job, "upscale", w.alice, locale=locale)
        [answer] = replies(inter)
        assert (answer.content, answer.ephemeral) == (expected, True)
    assert await env.job_count() == jobs
    assert not env.fake.get_message(result.id).deleted


async def test_delete_by_owner_or_moderator_and_refused_to_others(env: BotEnv) -> None:
    fake, w = env.fake, env.world
    _, job = await imagine(env, "to be deleted", user=w.alice)
    [result] = env.result_messages(job)

    inter = await click(env, result, job, "delete", w.bob)
    assert reply_text(inter) == (
        f"Job #{job.id} belongs to someone else. Only its owner or a member with Manage Messages in its server can do that."
    )
    assert replies(inter)[-1].ephemeral
    assert not fake.get_message(result.id).deleted

    inter = await click(env, result, job, "delete", w.moderator)
    assert reply_text(inter) == "Deleted."
    assert fake.get_message(result.id).deleted

    _, own = await imagine(env, "mine to delete", user=w.alice)
    [result] = env.result_messages(own)
    inter = await click(env, result, own, "delete", w.alice)
    assert reply_text(inter) == "Deleted." and replies(inter)[-1].ephemeral
    assert fake.get_message(result.id).deleted
    assert env.result_messages(own) == []


async def test_cancel_button_on_a_queued_status_message(env: BotEnv) -> None:
    w = env.world
    _, job = await imagine(
        env, "queued for a while", user=w.alice, model=HELD_MODEL, n=2, wait=False
    )
    status = env.status_message(job)
    assert custom_ids(status) == [f"wan:job:{job.id}:cancel"]

    inter = await click(env, status, job, "cancel", w.bob)
    assert (
        reply_text(inter)
        == f"Job #{job.id} is not yours: only its owner or a member with Manage Messages in this server can cancel it."
    )
    assert (await env.job(job.id)).state is JobState.QUEUED

    inter = await click(env, status, job, "cancel", w.alice)
    assert reply_text(inter) == f"Job #{job.id} was cancelled; its images were refunded."
    assert replies(inter)[-1].ephemeral
    job = await env.wait_job(job.id)
    assert job.state is JobState.CANCELLED
    assert await env.ledger(job.id) == {"reserve": 2, "charge": 0, "refund": 2}
    status = env.fake.get_message(status.id)
    assert "🚫 Cancelled. Nothing was charged." in status.content
    assert custom_ids(status) == []


async def test_delete_on_a_show_repost_removes_the_repost_and_the_results(env: BotEnv) -> None:
    fake, w = env.fake, env.world
    _, job = await imagine(env, "shown elsewhere", user=w.alice)
    [result] = env.result_messages(job)
    inter = await invoke(env, "show", {"job": job.id}, user=w.alice, channel=w.art)
    [repost] = replies(inter)
    assert repost.channel_id == w.art.id and repost.attachments

    click_inter = await click(env, repost, job, "delete", w.alice)
    assert reply_text(click_inter) == "Deleted."
    assert fake.get_message(repost.id).deleted
    assert fake.get_message(result.id).deleted


async def test_a_moderators_delete_is_for_good(env: BotEnv) -> None:
    """Deleted by a moderator: every post of the images goes (the delivery and /show reposts),
    the status message and the thread no longer show the prompt, the stored URLs are
    forgotten, and the owner's /show refuses in words instead of posting the images again."""
    fake, w = env.fake, env.world
    assert env.bot is not None
    store = env.bot.engine.store
    prompt = "a secret the moderators remove"
    _, job = await imagine(env, prompt, user=w.alice)
    [result] = env.result_messages(job)
    shown = await invoke(env, "show", {"job": job.id}, user=w.alice, channel=w.art)
    [repost] = replies(shown)

    inter = await click(env, result, job, "delete", w.moderator)
    assert reply_text(inter) == "Deleted." and replies(inter)[-1].ephemeral
    assert fake.get_message(result.id).deleted and fake.get_message(repost.id).deleted
    status = env.status_message(job)
    assert status.content == (
        f"**Job #{job.id}** by <@{w.alice.id}> · {job.model}\n🗑️ Deleted by a moderator."
    )
    assert custom_ids(status) == []
    assert job.thread_id is not None
    thread = fake.thread(job.thread_id)
    assert (thread.name, thread.archived, thread.locked) == (f"Job #{job.id} (deleted)", True, True)
    deleted = await env.job(job.id)
    assert deleted.deleted_by == w.moderator.id and deleted.deleted_at is not None
    assert [r.url for r in await store.results(job.id)] == [None]
    assert await store.deletions_pending() == []

    for locale, words in (
        (
            "en-US",
            f"Job #{job.id} was deleted by its owner or a moderator; it can't be shown or remade.",
        ),
        ("zh-CN", f"任务 #{job.id} 已被发起者或管理员删除，无法再展示或重新生成。"),
    ):
        inter = await invoke(
            env, "show", {"job": job.id}, user=w.alice, channel=w.art, locale=locale
        )
        [refusal] = replies(inter)
        assert (refusal.content, refusal.ephemeral, refusal.attachments) == (words, True, [])
    # Buttons on a message left behind (say a restart kept it) neither show nor edit it.
    for action in ("info", "edit"):
        inter = await click(env, result, job, action, w.alice)
        assert reply_text(inter) == (
            f"Job #{job.id} was deleted by its owner or a moderator; it can't be shown or remade."
        )
    # No message of the bot's shows the prompt any more.
    assert not [m for m in fake.state.messages.values() if prompt in m.content and not m.deleted]


async def test_the_owners_delete_does_the_same_and_leaves_a_thread_not_its_own(
    env: BotEnv,
) -> None:
    fake, w = env.fake, env.world
    _, job = await imagine(env, "a first sketch", user=w.alice)
    [result] = env.result_messages(job)
    _, again = await launch(env, pressing(env, result, job, "reroll", w.alice))
    assert again.thread_id == job.thread_id == again.channel_id  # made in the first one's thread
    [again_result] = env.result_messages(again)
    inter = await click(env, again_result, again, "delete", w.alice)
    assert reply_text(inter) == "Deleted."
    assert env.status_message(again).content == (
        f"**Job #{again.id}** by <@{w.alice.id}> · {again.model}\n🗑️ Deleted by its owner."
    )
    assert job.thread_id is not None
    thread = fake.thread(job.thread_id)
    assert (thread.name, thread.archived, thread.locked) == ("a first sketch", False, False)
    assert not fake.get_message(result.id).deleted

    # In an archived thread (Discord archives idle ones) nothing changes until it is opened
    # again: the result is deleted and the thread renamed all the same.
    thread.archived = True
    inter = await click(env, result, job, "delete", w.alice)
    assert reply_text(inter) == "Deleted."
    assert fake.get_message(result.id).deleted
    deletes = fake.requests_to("DELETE", f"/channels/{thread.id}/messages/{result.id}")
    assert [r.status for r in deletes] == [400, 204]  # "Thread is archived", then opened
    assert (thread.name, thread.archived, thread.locked) == (f"Job #{job.id} (deleted)", True, True)
    assert env.status_message(job).content.endswith("\n🗑️ Deleted by its owner.")


async def test_a_delete_without_manage_threads_still_renames_and_archives_the_thread(
    env: BotEnv,
) -> None:
    """The bot is not asked for Manage Threads, which locking needs: the thread is renamed and
    archived all the same (one change per request), only not locked."""
    fake, w = env.fake, env.world
    assert fake.state.bot is not None
    w.general.overwrites.append(Overwrite(fake.state.bot.id, 1, 0, Perm.MANAGE_THREADS))
    _, job = await imagine(env, "a prompt that must leave the thread name", user=w.alice)
    [result] = env.result_messages(job)
    inter = await click(env, result, job, "delete", w.alice)
    assert reply_text(inter) == "Deleted."
    assert job.thread_id is not None
    thread = fake.thread(job.thread_id)
    assert (thread.name, thread.archived, thread.locked) == (
        f"Job #{job.id} (deleted)",
        True,
        False,
    )
    assert fake.get_message(result.id).deleted
    assert "must leave" not in env.status_message(job).content


# --- one click, one job ----------------------------------------------------------------------

ALREADY = "This already started job #{id}, so no second job was made: {link}"


def member(env: BotEnv, name: str) -> Any:
    """A new member of the test server, whose daily images are all still free."""
    user = env.fake.create_user(name)
    env.fake.add_member(env.world.guild, user)
    return user


def queued_link(inter: Any, job: Job) -> str:
    """The status link of a "queued" answer, asserting that is what the answer says."""
    prefix = f"Job #{job.id} is queued: "
    content = reply_text(inter)
    assert content.startswith(prefix), content
    return content.removeprefix(prefix)


async def twice(env: BotEnv, gap: float | None, act: Any) -> tuple[Any, Any, Job]:
    """Do `act()` (a click or a submit) twice, `gap` seconds apart (None: the second after the
    first was answered); both must be acknowledged. Returns both and the one new job."""
    before, jobs = await env.latest_job_id(), await env.job_count()
    first = await act()
    if gap is None:
        await env.fake.wait_for_ack(first)
        await env.fake.settle()
    else:
        await asyncio.sleep(gap)
    second = await act()
    for inter in (first, second):
        await env.fake.wait_for_ack(inter)
    job = await env.wait_job(await env.new_job(after=before))
    await env.fake.settle()
    assert await env.job_count() == jobs + 1, "a repeat started a second job"
    return first, second, job


def one_queued_one_pointed(first: Any, second: Any, job: Job) -> None:
    """One answer says the job is queued; the other (either: both raced) points to it."""
    answers = sorted((first, second), key=lambda i: not reply_text(i).startswith("Job #"))
    link = queued_link(answers[0], job)
    assert reply_text(answers[1]) == ALREADY.format(id=job.id, link=link)
    assert all(replies(i)[-1].ephemeral for i in (first, second))


@pytest.mark.parametrize("gap", [0.0, 0.02, None], ids=["together", "20ms", "after-answer"])
async def test_a_double_click_on_reroll_starts_one_job(env: BotEnv, gap: float | None) -> None:
    fake, w = env.fake, env.world
    clicker = member(env, f"clicker-{gap}")
    _, job = await imagine(env, "a double-clicked kite", user=clicker)
    [result] = env.result_messages(job)

    async def reroll() -> Any:
        return await fake.click(result, f"wan:job:{job.id}:reroll", user=clicker)

    first, second, again = await twice(env, gap, reroll)
    assert again.parent_job_id == job.id and again.state is JobState.DONE
    assert await env.ledger(again.id) == {"reserve": 1, "charge": 1, "refund": 0}
    one_queued_one_pointed(first, second, again)

    # Another member's click on the same button is their own job.
    inter, theirs = await launch(env, click(env, result, job, "reroll", w.bob))
    assert theirs.user_id == w.bob.id and theirs.id != again.id
    assert queued_link(inter, theirs)


async def test_reroll_again_after_a_few_seconds_is_a_new_job(
    env: BotEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    clicker = member(env, "reroller")
    _, job = await imagine(env, "rerolled on purpose", user=clicker)
    [result] = env.result_messages(job)
    _, first = await launch(env, click(env, result, job, "reroll", clicker))
    assert env.bot is not None
    later = time.monotonic() + 60
    monkeypatch.setattr(env.bot.recent_starts, "clock", lambda: later)
    inter, second = await launch(env, click(env, result, job, "reroll", clicker))
    assert second.id != first.id and second.parent_job_id == job.id
    assert queued_link(inter, second)


@pytest.mark.parametrize("gap", [0.0, 0.03], ids=["together", "30ms"])
async def test_two_submits_of_the_edit_buttons_form_make_one_job(env: BotEnv, gap: float) -> None:
    fake = env.fake
    editor = member(env, f"editor-{gap}")
    _, job = await imagine(env, "a mug to edit once", user=editor)
    [result] = env.result_messages(job)
    opened = await click(env, result, job, "edit", editor)
    inputs = modal_inputs(opened.modal or {})
    fields = {inputs["What should change?"]["custom_id"]: "one stripe"}

    async def submit() -> Any:
        return await fake.submit_modal(fields=dict(fields), interaction=opened)

    await fake.settle()
    first, second, edit = await twice(env, gap, submit)
    assert (edit.kind, edit.parent_job_id, edit.params.prompt) == (Kind.EDIT, job.id, "one stripe")
    assert await env.ledger(edit.id) == {"reserve": 1, "charge": 1, "refund": 0}
    one_queued_one_pointed(first, second, edit)


async def test_a_double_click_that_starts_nothing_is_answered_twice(env: BotEnv) -> None:
    """When the first click makes no job (here: no such job), the repeat it held back tries for
    itself and gets the same answer in words."""
    fake, w = env.fake, env.world
    _, job = await imagine(env, "a result to click on", user=w.moderator)
    [result] = env.result_messages(job)
    # The message as if its job were gone: its Reroll button names a job that does not exist.
    [button] = [c for c in result.iter_components() if c.get("custom_id", "").endswith(":reroll")]
    button["custom_id"] = "wan:job:999999:reroll"
    jobs = await env.job_count()
    clicks = [await fake.click(result, "wan:job:999999:reroll", user=w.moderator) for _ in range(2)]
    for inter in clicks:
        await fake.wait_for_ack(inter)
    await fake.settle()
    assert [reply_text(i) for i in clicks] == ["There is no job #999999."] * 2
    assert await env.job_count() == jobs
