"""Validates the fake Discord against discord.py itself (a plain commands.Bot, not wanbot).

Each test runs the production start-up path (``client.start(token)``: REST login, gateway
websocket, IDENTIFY, READY, GUILD_CREATE) against ``tests.fakediscord.FakeDiscord`` on 127.0.0.1.
ERROR records of the ``discord`` logger fail the test: discord.py only logs exceptions raised in
command, view and modal callbacks.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import discord
import pytest
from discord import app_commands
from discord.ext import commands
from PIL import Image

from tests.fakediscord import (
    MIB,
    CallbackType,
    FakeDiscord,
    Intent,
    MessageFlag,
    Perm,
    capture_discord_errors,
    format_records,
    point_discordpy_at,
    run_client,
)

TOKEN = "MTA.fake-bot.token-for-tests"


# ----- fixtures ---------------------------------------------------------------------------------
@pytest.fixture(autouse=True)
def discord_errors() -> Iterator[list[logging.LogRecord]]:
    """ERROR logs of ``discord`` (swallowed callback exceptions) fail the test."""
    with capture_discord_errors() as records:
        yield records
    if records:
        pytest.fail("discord logged errors:\n" + format_records(records))


@pytest.fixture
async def fake() -> AsyncIterator[FakeDiscord]:
    async with FakeDiscord(token=TOKEN, bot_name="testbot") as server:
        yield server
    assert not server.internal_errors, server.internal_errors


@pytest.fixture
def world(fake: FakeDiscord) -> Any:
    return fake.standard_world()


def make_bot(intents: discord.Intents | None = None) -> commands.Bot:
    return commands.Bot(
        command_prefix="!",
        intents=intents or discord.Intents.default(),
        guild_ready_timeout=0.05,
    )


def png(width: int = 64, height: int = 48, color: str = "red") -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buf, "PNG")
    return buf.getvalue()


# ----- 1. start-up --------------------------------------------------------------------------------
async def test_startup_login_identify_ready_and_sync(fake: FakeDiscord, world: Any) -> None:
    bot = make_bot()
    ready = asyncio.Event()

    @bot.event
    async def on_ready() -> None:
        ready.set()

    @bot.tree.command(name="imagine", description="Make an image")
    @app_commands.describe(prompt="What to draw")
    async def imagine(interaction: discord.Interaction, prompt: str, n: int = 1) -> None:
        await interaction.response.send_message(prompt)

    @bot.tree.context_menu(name="Edit with Wan")
    async def edit(interaction: discord.Interaction, message: discord.Message) -> None:
        await interaction.response.send_message("ok")

    async with run_client(bot, fake):
        assert ready.is_set()
        assert [r.path for r in fake.requests[:2]] == ["/users/@me", "/oauth2/applications/@me"]
        assert "authorization" not in {k.lower() for k in fake.requests[0].headers}
        identify = fake.identifies[0]
        assert identify["token"] == TOKEN
        assert identify["intents"] == bot.intents.value
        assert not identify["intents"] & Intent.MESSAGE_CONTENT
        assert bot.user is not None and bot.user.id == fake.bot_user.id
        assert bot.application_id == fake.application_id

        guild = bot.get_guild(world.guild.id)
        assert guild is not None and guild.name == "Wan Test Guild"
        assert [c.name for c in guild.text_channels] == ["general", "art"]
        assert guild.me is not None and guild.me.guild_permissions.manage_messages
        assert guild.get_role(world.mod_role.id).permissions.manage_messages
        general = guild.get_channel(world.general.id)
        assert isinstance(general, discord.TextChannel)
        assert general.permissions_for(guild.me).send_messages

        bot.tree.copy_global_to(guild=discord.Object(world.guild.id))
        synced = await bot.tree.sync(guild=discord.Object(world.guild.id))
        (put,) = fake.requests_to("PUT", f"/applications/{fake.application_id}/guilds/*/commands")
        assert {c["name"] for c in put.json} == {"imagine", "Edit with Wan"}
        by_name = {c.name: c for c in synced}
        assert by_name["Edit with Wan"].description == ""
        assert by_name["Edit with Wan"].type is discord.AppCommandType.message
        assert [o.name for o in by_name["imagine"].options] == ["prompt", "n"]
        stored = {c["name"]: c["id"] for c in fake.guild_commands[world.guild.id]}
        assert str(by_name["imagine"].id) == stored["imagine"]

        await bot.tree.sync()
        (put_global,) = fake.requests_to("PUT", f"/applications/{fake.application_id}/commands")
        assert [c["name"] for c in put_global.json] == ["imagine", "Edit with Wan"]
        assert [c["name"] for c in fake.global_commands] == ["imagine", "Edit with Wan"]


async def test_wrong_token_is_refused(fake: FakeDiscord, world: Any) -> None:
    bot = make_bot()
    with point_discordpy_at(fake), pytest.raises(discord.LoginFailure):
        await bot.start("not-the-token")
    await bot.close()
    (req,) = fake.requests_to("GET", "/users/@me")
    assert req.status == 401 and req.response == {"message": "401: Unauthorized", "code": 0}


# ----- 2. defer, follow-up with a file, thread from a channel message ----------------------------
async def test_slash_defer_followup_file_thread(fake: FakeDiscord, world: Any) -> None:
    bot = make_bot()
    out: dict[str, Any] = {}

    @bot.tree.command(name="imagine", description="Make an image")
    async def imagine(interaction: discord.Interaction, prompt: str) -> None:
        await interaction.response.defer(thinking=True)
        file = discord.File(io.BytesIO(png()), filename="result.png")
        followup = await interaction.followup.send(f"Here: {prompt}", file=file, wait=True)
        out["followup"] = followup
        # discord.py #9008: a follow-up's message has no guild, so create_thread() refuses.
        try:
            await followup.create_thread(name="nope")
        except ValueError as exc:
            out["followup_thread_error"] = exc
        channel = interaction.channel
        assert isinstance(channel, discord.TextChannel)
        status = await channel.send(f"Job for {interaction.user.mention}")
        thread = await channel.create_thread(name=f"imagine: {prompt}", message=status)
        out["status"], out["thread"] = status, thread
        await thread.send("queued")
        await thread.send("done", file=discord.File(io.BytesIO(b"x" * 10), filename="log.txt"))

    async with run_client(bot, fake):
        bot.tree.copy_global_to(guild=discord.Object(world.guild.id))
        await bot.tree.sync(guild=discord.Object(world.guild.id))
        inter = await fake.slash(
            "imagine", {"prompt": "a red fox"}, user=world.alice, channel=world.general
        )
        await fake.wait_for_ack(inter)
        assert inter.ack_latency is not None and inter.ack_latency < 1.0
        await fake.settle()
        thread = out["thread"]

        (callback,) = fake.callbacks_for(inter)
        assert callback.json == {"type": CallbackType.DEFERRED_CHANNEL_MESSAGE_WITH_SOURCE}
        assert callback.query == {"with_response": "1"}
        assert inter.payload["data"]["guild_id"] == str(world.guild.id)

        (followup,) = fake.followups_for(inter)
        assert followup.multipart and followup.query["wait"] == "1"
        assert followup.json["content"] == "Here: a red fox"
        assert followup.json["attachments"] == [{"id": 0, "filename": "result.png"}]
        (part,) = followup.files
        assert (part.field, part.filename, part.data) == ("files[0]", "result.png", png())
        # The first follow-up after a deferred reply edits the "thinking" message.
        assert out["followup"].id == inter.original.id
        assert not inter.original.loading
        assert inter.original.attachments[0].width == 64
        assert isinstance(out["followup_thread_error"], ValueError)

        status = out["status"]
        (create,) = fake.requests_to(
            "POST", f"/channels/{world.general.id}/messages/{status.id}/threads"
        )
        assert create.json["name"] == "imagine: a red fox"
        assert thread.id == status.id == int(create.response["id"])
        assert fake.get_message(status.id).thread_id == thread.id
        assert ("THREAD_CREATE", str(thread.id)) in [
            (e, d.get("id")) for _, e, d in fake.gateway_log
        ]
        assert bot.get_channel(thread.id) is not None

        posts = fake.requests_to("POST", f"/channels/{thread.id}/messages")
        assert [p.json["content"] for p in posts] == ["queued", "done"]
        assert posts[1].files[0].data == b"x" * 10
        stored = fake.messages_in(fake.thread(thread.id))
        assert [m.content for m in stored] == ["queued", "done"]
        assert stored[1].attachments[0].filename == "log.txt"
        assert fake.thread(thread.id).message_count == 2


# ----- 3. buttons (dynamic and persistent) and a modal -------------------------------------------
class EditModal(discord.ui.Modal):
    instruction: discord.ui.TextInput = discord.ui.TextInput(
        label="Instruction", custom_id="instruction"
    )
    strength: discord.ui.TextInput = discord.ui.TextInput(
        label="Strength", custom_id="strength", required=False
    )

    def __init__(self, job_id: int, sink: dict[str, Any]) -> None:
        super().__init__(title="Edit image", custom_id=f"edit-modal:{job_id}")
        self.sink = sink
        self.job_id = job_id

    async def on_submit(self, interaction: discord.Interaction) -> None:
        self.sink["submitted"] = (self.job_id, self.instruction.value, self.strength.value)
        await interaction.response.send_message("Editing…", ephemeral=True)


def edit_button_class(sink: dict[str, Any]) -> type[discord.ui.DynamicItem[discord.ui.Button]]:
    class EditButton(discord.ui.DynamicItem[discord.ui.Button], template=r"job:(?P<id>\d+):edit"):
        def __init__(self, job_id: int) -> None:
            super().__init__(discord.ui.Button(label="Edit", custom_id=f"job:{job_id}:edit"))
            self.job_id = job_id

        @classmethod
        async def from_custom_id(
            cls,
            interaction: discord.Interaction,
            item: discord.ui.Item[Any],
            match: re.Match[str],
            /,
        ) -> EditButton:
            return cls(int(match["id"]))

        async def callback(self, interaction: discord.Interaction) -> None:
            sink["clicked"] = self.job_id
            await interaction.response.send_modal(EditModal(self.job_id, sink))

    return EditButton


class PersistentView(discord.ui.View):
    def __init__(self, sink: dict[str, Any]) -> None:
        super().__init__(timeout=None)
        self.sink = sink

    @discord.ui.button(
        label="Reroll", custom_id="persistent:reroll", style=discord.ButtonStyle.primary
    )
    async def reroll(
        self, interaction: discord.Interaction, button: discord.ui.Button[Any]
    ) -> None:
        self.sink["reroll"] = interaction.user.id
        await interaction.response.edit_message(content="Rerolling…", view=None)


async def test_buttons_and_modal(fake: FakeDiscord, world: Any) -> None:
    bot = make_bot()
    sink: dict[str, Any] = {}
    edit_button = edit_button_class(sink)
    bot.add_dynamic_items(edit_button)
    bot.add_view(PersistentView(sink))

    async with run_client(bot, fake):
        channel = bot.get_channel(world.general.id)
        assert isinstance(channel, discord.TextChannel)
        view = discord.ui.View(timeout=None)
        view.add_item(edit_button(42))
        sent = await channel.send("Result", view=view)
        stored = fake.get_message(sent.id)
        assert stored.components[0]["components"][0]["custom_id"] == "job:42:edit"

        click = await fake.click(stored, "job:42:edit", user=world.alice)
        await fake.wait_for_ack(click)
        assert sink["clicked"] == 42
        assert click.response_type == CallbackType.MODAL
        assert click.modal is not None and click.modal["custom_id"] == "edit-modal:42"

        submit = await fake.submit_modal(
            "edit-modal:42", {"instruction": "make it blue"}, user=world.alice
        )
        await fake.wait_for_ack(submit)
        assert sink["submitted"] == (42, "make it blue", "")
        assert submit.payload["message"]["id"] == str(sent.id)
        assert submit.original is not None and submit.original.ephemeral
        assert submit.original.content == "Editing…"

        with pytest.raises(ValueError, match="never sent a modal"):
            await fake.submit_modal("edit-modal:999", {"instruction": "x"}, user=world.alice)
        with pytest.raises(ValueError, match="no component"):
            await fake.click(stored, "job:43:edit", user=world.alice)

        persistent = await channel.send("Persistent", view=PersistentView(sink))
        reroll = await fake.click(
            fake.get_message(persistent.id), "persistent:reroll", user=world.bob
        )
        await fake.wait_for_ack(reroll)
        assert sink["reroll"] == world.bob.id
        assert reroll.response_type == CallbackType.UPDATE_MESSAGE
        updated = fake.get_message(persistent.id)
        assert updated.content == "Rerolling…" and updated.components == []
        assert updated.edited_timestamp is not None


# ----- 4. message context menu with an image attachment ------------------------------------------
async def test_message_context_menu_receives_attachments(fake: FakeDiscord, world: Any) -> None:
    bot = make_bot()
    out: dict[str, Any] = {}

    @bot.tree.context_menu(name="Edit with Wan")
    async def edit_with_wan(interaction: discord.Interaction, message: discord.Message) -> None:
        await interaction.response.defer(ephemeral=True)
        att = message.attachments[0]
        out["meta"] = (
            message.id,
            message.content,
            att.filename,
            att.content_type,
            att.width,
            att.height,
            att.size,
        )
        out["bytes"] = await att.read()
        await interaction.followup.send("got it", ephemeral=True)

    image = png(80, 60, "blue")
    async with run_client(bot, fake):
        await bot.tree.sync()
        target = await fake.post_message(
            world.art, world.bob, "my cat", attachments=[("cat photo.png", image, "image/png")]
        )
        inter = await fake.message_command("Edit with Wan", target, user=world.alice)
        await fake.wait_for_request("POST", f"/webhooks/{fake.application_id}/{inter.token}")
        assert out["meta"] == (
            target.id,
            "my cat",
            "cat_photo.png",
            "image/png",
            80,
            60,
            len(image),
        )
        assert out["bytes"] == image
        assert inter.payload["data"]["target_id"] == str(target.id)
        assert "guild_id" not in inter.payload["data"]  # synced globally
        assert inter.original is not None and inter.original.ephemeral
        assert inter.original.content == "got it"

        # The attachment URL is served by the fake and expires like Discord's CDN links.
        url = fake.payloads.attachment(target.attachments[0])["url"]
        fake.clock.advance(25 * 3600)
        async with aiohttp.ClientSession() as session, session.get(url) as resp:
            assert resp.status == 404


# ----- 5. MESSAGE_CREATE and the message-content intent ------------------------------------------
async def test_mention_reaches_on_message_without_content_intent(
    fake: FakeDiscord, world: Any
) -> None:
    bot = make_bot()
    seen: list[discord.Message] = []

    @bot.event
    async def on_message(message: discord.Message) -> None:
        if message.author != bot.user:
            seen.append(message)

    async with run_client(bot, fake):
        channel = bot.get_channel(world.general.id)
        assert isinstance(channel, discord.TextChannel)
        result = await channel.send("your image")

        plain = await fake.post_message(world.general, world.alice, "just chatting")
        mention = await fake.post_message(
            world.general,
            world.alice,
            f"<@{fake.bot_user.id}> make it blue",
            attachments=[("in.png", png(), "image/png")],
        )
        reply = await fake.post_message(
            world.general, world.bob, "now green", reference=fake.get_message(result.id)
        )
        await fake.settle()
        assert len(seen) == 3

        by_id = {m.id: m for m in seen}
        assert by_id[plain.id].content == ""  # no message-content intent, no mention
        m = by_id[mention.id]
        assert m.content == f"<@{fake.bot_user.id}> make it blue"
        assert bot.user in m.mentions and m.guild is not None
        assert isinstance(m.author, discord.Member) and m.author.id == world.alice.id
        assert m.attachments[0].filename == "in.png"
        r = by_id[reply.id]
        assert r.content == "now green"  # a reply pings the replied-to author (the bot)
        assert r.reference is not None and r.reference.message_id == result.id
        assert r.type is discord.MessageType.reply


async def _wait_until(predicate: Any, timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.005)


# ----- 6. Discord's timing rules: 3 s to acknowledge, 15 min token --------------------------------
async def test_token_expiry_and_ack_window(fake: FakeDiscord, world: Any) -> None:
    bot = make_bot()
    gate = asyncio.Event()
    errors: dict[str, discord.HTTPException] = {}

    @bot.tree.command(name="slow", description="slow")
    async def slow(interaction: discord.Interaction) -> None:
        await interaction.response.defer()
        await gate.wait()
        try:
            await interaction.followup.send("too late")
        except discord.HTTPException as exc:
            errors["followup"] = exc

    @bot.tree.command(name="late", description="late")
    async def late(interaction: discord.Interaction) -> None:
        await gate.wait()
        try:
            await interaction.response.send_message("hello?")
        except discord.HTTPException as exc:
            errors["callback"] = exc

    async with run_client(bot, fake):
        await bot.tree.sync()
        slow_inter = await fake.slash("slow", user=world.alice, channel=world.general)
        await fake.wait_for_ack(slow_inter)
        late_inter = await fake.slash("late", user=world.alice, channel=world.general)
        fake.clock.advance(15 * 60 + 1)
        gate.set()
        await _wait_until(lambda: len(errors) == 2)

        followup = errors["followup"]
        assert followup.status == 401 and followup.code == 50027
        callback = errors["callback"]
        assert isinstance(callback, discord.NotFound) and callback.code == 10062
        assert not late_inter.acknowledged

        # Answering twice is refused by Discord too (discord.py stops it locally first).
        url = f"{fake.api_base}/interactions/{slow_inter.id}/{slow_inter.token}/callback"
        async with (
            aiohttp.ClientSession() as session,
            session.post(url, json={"type": 4, "data": {"content": "x"}}) as resp,
        ):
            assert resp.status == 400
            assert resp.headers["Content-Type"] == "application/json"
            assert await resp.json() == {
                "code": 40060,
                "message": "Interaction has already been acknowledged.",
            }


# ----- 7. nonce + enforce_nonce -------------------------------------------------------------------
async def test_nonce_deduplicates(fake: FakeDiscord, world: Any) -> None:
    bot = make_bot()
    async with run_client(bot, fake):
        channel = bot.get_channel(world.general.id)
        assert isinstance(channel, discord.TextChannel)
        first = await channel.send("result of job 7", nonce="job-7")
        second = await channel.send("result of job 7", nonce="job-7")
        third = await channel.send("result of job 8", nonce="job-8")
        assert first.id == second.id != third.id
        posts = fake.requests_to("POST", f"/channels/{world.general.id}/messages")
        assert [p.json["nonce"] for p in posts] == ["job-7", "job-7", "job-8"]
        assert all(p.json["enforce_nonce"] is True for p in posts)
        assert [m.content for m in fake.messages_in(world.general)] == [
            "result of job 7",
            "result of job 8",
        ]


# ----- 8. upload cap, permissions, rate limits, catch-all -----------------------------------------
async def test_discord_errors_modelled(fake: FakeDiscord, world: Any) -> None:
    bot = make_bot()
    world.guild.attachment_size_limit = 1 * MIB
    async with run_client(bot, fake):
        general = bot.get_channel(world.general.id)
        art = bot.get_channel(world.art.id)
        assert isinstance(general, discord.TextChannel) and isinstance(art, discord.TextChannel)

        big = discord.File(io.BytesIO(b"\0" * (MIB + 1)), filename="big.png")
        with pytest.raises(discord.HTTPException) as too_large:
            await general.send(file=big)
        assert too_large.value.status == 413 and too_large.value.code == 40005

        await fake.set_channel_permissions(world.art, can_send=False)
        await _wait_until(lambda: not art.permissions_for(art.guild.me).send_messages)
        with pytest.raises(discord.Forbidden) as forbidden:
            await art.send("hello")
        assert forbidden.value.code == 50013
        await fake.set_channel_permissions(world.art, can_send=True, can_attach=False)
        with pytest.raises(discord.Forbidden):
            await art.send(file=discord.File(io.BytesIO(b"abc"), filename="a.txt"))
        await art.send("text still works")

        fake.fail_next("POST", "/channels/*/messages", 429, retry_after=0.05)
        msg = await general.send("after a 429")
        attempts = fake.requests_to("POST", f"/channels/{world.general.id}/messages")[-2:]
        assert [a.status for a in attempts] == [429, 200]
        assert attempts[0].fault and fake.get_message(msg.id).content == "after a 429"

        fake.fail_next("GET", "/channels/*", 503)
        with pytest.raises(discord.DiscordServerError):
            await bot.fetch_channel(world.general.id)

        with pytest.raises(discord.NotFound):
            await bot.http.request(discord.http.Route("GET", "/voice/regions"))
        (unmatched,) = fake.unmatched_requests()
        assert unmatched.path == "/voice/regions" and unmatched.status == 404

        await fake.delete_channel(world.art)
        with pytest.raises(discord.NotFound) as gone:
            await art.send("anyone?")
        assert gone.value.code == 10003


async def test_raw_wire_rules(fake: FakeDiscord, world: Any) -> None:
    """Rules discord.py checks client-side first, exercised with a raw HTTP client."""
    auth = {"Authorization": f"Bot {TOKEN}"}
    url = f"{fake.api_base}/channels/{world.general.id}/messages"
    async with aiohttp.ClientSession() as session:
        form = aiohttp.FormData(quote_fields=False)
        form.add_field(
            "payload_json", json.dumps({"content": "many"}), content_type="application/json"
        )
        for i in range(11):
            form.add_field(f"files[{i}]", b"x", filename=f"{i}.txt")
        async with session.post(url, data=form, headers=auth) as resp:
            assert resp.status == 400
            assert (await resp.json())["code"] == 50035
        async with session.post(url, json={"content": ""}, headers=auth) as resp:
            assert resp.status == 400 and (await resp.json())["code"] == 50006
        async with session.post(url, json={"content": "hi"}) as resp:
            assert resp.status == 401
        async with session.get(f"{fake.api_base}/users/@me", headers=auth) as resp:
            assert resp.headers["Content-Type"] == "application/json"
    assert fake.messages_in(world.general) == []


async def test_channel_rate_limit(fake: FakeDiscord, world: Any) -> None:
    fake.channel_rate_limit, fake.channel_rate_window = 2, 5.0
    bot = make_bot()
    async with run_client(bot, fake):
        channel = bot.get_channel(world.general.id)
        assert isinstance(channel, discord.TextChannel)
        for i in range(3):  # recorded, not enforced
            await channel.send(f"fast {i}")
        assert len(fake.rate_violations) == 1
        assert fake.rate_violations[0].channel_id == world.general.id

        fake.rate_violations.clear()
        fake.enforce_channel_rate_limit = True
        fake.channel_rate_window = 0.3
        fake.clock.advance(10)
        for i in range(4):  # discord.py follows the X-RateLimit headers and waits
            await channel.send(f"paced {i}")
        assert fake.rate_violations == []
        assert len(fake.messages_in(world.general)) == 7


# ----- more of the protocol ---------------------------------------------------------------------
async def test_autocomplete_dm_and_resume(fake: FakeDiscord, world: Any) -> None:
    bot = make_bot()
    dms: list[discord.Message] = []

    async def model_autocomplete(
        interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        models = ["wan2.6-t2i", "wan2.5-t2i-preview", "wan2.2-t2i-flash"]
        return [app_commands.Choice(name=m, value=m) for m in models if current in m]

    @bot.tree.command(name="imagine", description="Make an image")
    @app_commands.autocomplete(model=model_autocomplete)
    async def imagine(
        interaction: discord.Interaction, prompt: str, model: str | None = None
    ) -> None:
        await interaction.response.send_message(f"{prompt} with {model}")

    @bot.event
    async def on_message(message: discord.Message) -> None:
        if message.guild is None and message.author != bot.user:
            dms.append(message)

    intents = discord.Intents.default()
    async with run_client(bot, fake):
        await bot.tree.sync()
        ac = await fake.autocomplete(
            "imagine",
            {"prompt": "cat", "model": "2.5"},
            "model",
            user=world.alice,
            channel=world.general,
        )
        await fake.wait_for_ack(ac)
        assert ac.choices == [{"name": "wan2.5-t2i-preview", "value": "wan2.5-t2i-preview"}]

        dm = fake.open_dm(world.alice)
        await fake.post_message(dm, world.alice, "hello bot")
        used = await fake.slash("imagine", {"prompt": "dog"}, user=world.alice, channel=dm)
        await fake.wait_for_ack(used)
        assert "member" not in used.payload and used.payload["context"] == 1
        await _wait_until(lambda: len(dms) == 1)
        assert dms[0].content == "hello bot"  # DMs carry content without the intent
        await dms[0].channel.send("hi alice")
        assert [m.content for m in fake.messages_in(dm)] == [
            "hello bot",
            "dog with None",
            "hi alice",
        ]

        resumed = asyncio.Event()

        async def on_resumed() -> None:
            resumed.set()

        bot.add_listener(on_resumed)
        await fake.request_reconnect()
        async with asyncio.timeout(5):
            await resumed.wait()
        assert len(fake.identifies) == 1 and len(fake.resumes) == 1
        assert fake.latest_session.resumes == 1
        inter = await fake.slash(
            "imagine", {"prompt": "owl"}, user=world.bob, channel=world.general
        )
        await fake.wait_for_ack(inter)
        assert inter.original is not None and inter.original.content == "owl with None"
        assert bot.intents.value == intents.value


async def test_privileged_intents_and_permission_gated_commands(
    fake: FakeDiscord, world: Any
) -> None:
    fake.allowed_privileged_intents = Intent.GUILD_MEMBERS
    intents = discord.Intents.default()
    intents.message_content = True
    refused = make_bot(intents)
    try:
        with point_discordpy_at(fake), pytest.raises(discord.PrivilegedIntentsRequired):
            await refused.start(TOKEN)
    finally:
        await refused.close()  # its HTTP session, or garbage collection logs it much later

    fake.allowed_privileged_intents = Intent.PRIVILEGED
    intents.members = True
    bot = make_bot(intents)

    @bot.tree.command(name="limits", description="Server limits")
    @app_commands.default_permissions(manage_guild=True)
    async def limits(interaction: discord.Interaction) -> None:
        assert interaction.permissions.manage_guild
        assert interaction.app_permissions.send_messages
        await interaction.response.send_message("limits", ephemeral=True)

    async with run_client(bot, fake):
        guild = bot.get_guild(world.guild.id)
        assert guild is not None and guild.chunked and guild.get_member(world.alice.id) is not None
        bot.tree.copy_global_to(guild=guild)
        await bot.tree.sync(guild=guild)
        with pytest.raises(PermissionError):
            await fake.slash("limits", user=world.alice, channel=world.general)
        inter = await fake.slash("limits", user=world.admin, channel=world.general)
        await fake.wait_for_ack(inter)
        assert inter.response_data is not None
        assert inter.response_data["flags"] & MessageFlag.EPHEMERAL
        assert int(inter.payload["member"]["permissions"]) & Perm.MANAGE_GUILD


async def test_groups_attachment_options_user_command_select(fake: FakeDiscord, world: Any) -> None:
    bot = make_bot()
    out: dict[str, Any] = {}
    admin = app_commands.Group(name="admin", description="Admin")
    limits = app_commands.Group(name="limits", description="Limits", parent=admin)

    @limits.command(name="set", description="Set a limit")
    async def limits_set(
        interaction: discord.Interaction, member: discord.Member, daily: int
    ) -> None:
        out["limits"] = (member.id, member.display_name, daily, interaction.locale)
        await interaction.response.send_message("ok", ephemeral=True)

    bot.tree.add_command(admin)

    @bot.tree.command(name="edit", description="Edit images")
    async def edit(
        interaction: discord.Interaction,
        prompt: str,
        image1: discord.Attachment,
        image2: discord.Attachment | None = None,
    ) -> None:
        out["edit"] = [
            (a.filename, a.width, a.height, await a.read()) for a in (image1, image2) if a
        ]
        await interaction.response.send_message(prompt)

    @bot.tree.context_menu(name="Usage")
    async def usage(interaction: discord.Interaction, member: discord.Member) -> None:
        out["usage"] = member.id
        view = discord.ui.View()
        select: discord.ui.Select[Any] = discord.ui.Select(
            custom_id="period", options=[discord.SelectOption(label=p) for p in ("day", "month")]
        )

        async def chosen(inner: discord.Interaction) -> None:
            out["period"] = select.values
            await inner.response.defer()

        select.callback = chosen  # type: ignore[method-assign]
        view.add_item(select)
        await interaction.response.send_message("Which period?", view=view)

    async with run_client(bot, fake):
        await bot.tree.sync()
        inter = await fake.slash(
            "admin limits set",
            {"member": world.bob, "daily": 5},
            user=world.admin,
            channel=world.general,
        )
        await fake.wait_for_ack(inter)
        assert out["limits"] == (world.bob.id, "bob", 5, discord.Locale.american_english)
        group = inter.payload["data"]["options"][0]
        assert (group["type"], group["options"][0]["type"]) == (2, 1)

        a, b = png(32, 32), png(16, 8, "green")
        inter = await fake.slash(
            "edit",
            {"prompt": "swap"},
            user=world.bob,
            channel=world.art,
            attachments=[("one.png", a), ("two.png", b)],
        )
        await fake.wait_for_ack(inter)
        assert out["edit"] == [("one.png", 32, 32, a), ("two.png", 16, 8, b)]
        assert inter.payload["locale"] == "de"
        with pytest.raises(ValueError, match="required"):
            await fake.slash("edit", {"prompt": "x"}, user=world.bob, channel=world.art)

        inter = await fake.user_command(
            "Usage", world.alice, user=world.admin, channel=world.general
        )
        await fake.settle()  # the ack alone is too early: discord.py stores the view afterwards
        assert out["usage"] == world.alice.id
        assert inter.original is not None
        chosen_inter = await fake.select(inter.original, "period", ["month"], user=world.admin)
        await fake.wait_for_ack(chosen_inter)
        assert out["period"] == ["month"]
        assert chosen_inter.response_type == CallbackType.DEFERRED_UPDATE_MESSAGE

        # Bot-token edits, reactions, history and deletes on the fake's stored messages.
        general = bot.get_channel(world.general.id)
        assert isinstance(general, discord.TextChannel)
        msg = await general.send("v1")
        await msg.edit(content="v2", attachments=[discord.File(io.BytesIO(b"1"), filename="1.txt")])
        await msg.add_reaction("✅")
        history = [m.id async for m in general.history(limit=10)]
        assert history[0] == msg.id
        stored = fake.get_message(msg.id)
        assert (stored.content, [x.filename for x in stored.attachments]) == ("v2", ["1.txt"])
        assert stored.reactions == {"✅": {fake.bot_user.id}}
        user_msg = await fake.post_message(world.general, world.alice, "spam")
        await general.get_partial_message(user_msg.id).delete()  # bot has MANAGE_MESSAGES
        await msg.delete()
        assert fake.get_message(user_msg.id).deleted and fake.get_message(msg.id).deleted
        thread = await general.create_thread(
            name="private", type=discord.ChannelType.private_thread
        )
        assert thread.type is discord.ChannelType.private_thread
        assert fake.thread(thread.id).parent_id == world.general.id


# ----- shards -------------------------------------------------------------------------------------
# (id >> 22) % 2 picks the shard of 2: these land on 0 and 1.
GUILD_ON_SHARD_0 = (1000 << 22) | 7
GUILD_ON_SHARD_1 = (1001 << 22) | 7


class QuickShards(commands.AutoShardedBot):
    """discord.py sleeps 5 s before every IDENTIFY but a client's first; the fake's spacing is
    checked by `identifies_too_soon`, so these clients skip the wait."""

    async def before_identify_hook(self, shard_id: int | None, *, initial: bool = False) -> None:
        return None


def shard_guilds(fake: FakeDiscord, world: Any) -> tuple[Any, Any]:
    guilds = []
    for guild_id in (GUILD_ON_SHARD_0, GUILD_ON_SHARD_1):
        guild = fake.create_guild(f"guild {guild_id}", id=guild_id)
        fake.add_member(guild, world.alice)
        guilds.append(guild)
    assert [fake.shard_of(g.id, 2) for g in guilds] == [0, 1]
    return guilds[0], guilds[1]


async def test_one_client_runs_the_shards_gateway_bot_recommends(
    fake: FakeDiscord, world: Any
) -> None:
    fake.shard_count, fake.max_concurrency = 2, 2
    even, odd = shard_guilds(fake, world)
    bot = QuickShards(
        command_prefix="!", intents=discord.Intents.default(), guild_ready_timeout=0.05
    )
    async with run_client(bot, fake):
        (gateway_bot,) = fake.requests_to("GET", "/gateway/bot")
        limit = gateway_bot.response["session_start_limit"]
        assert gateway_bot.response["shards"] == 2 and limit["max_concurrency"] == 2
        assert bot.shard_count == 2 and sorted(bot.shards) == [0, 1]
        assert sorted(i["shard"] for i in fake.identifies) == [[0, 2], [1, 2]]
        assert [len(fake.identify_times(shard)) for shard in (0, 1)] == [1, 1]
        # Each session's READY lists only its shard's guilds, each GUILD_CREATE goes to one.
        ready = {
            fake.sessions[sid].shard: {int(g["id"]) for g in data["guilds"]}
            for sid, event, data in fake.gateway_log
            if event == "READY"
        }
        assert ready[(0, 2)] >= {even.id} and odd.id not in ready[(0, 2)]
        assert ready[(1, 2)] >= {odd.id} and even.id not in ready[(1, 2)]
        assert fake.shards_sent("GUILD_CREATE", world.guild.id) == [
            (fake.shard_of(world.guild.id), 2)
        ]
        on_even, on_odd = bot.get_guild(even.id), bot.get_guild(odd.id)
        assert on_even is not None and on_even.shard_id == 0
        assert on_odd is not None and on_odd.shard_id == 1
        assert fake.identifies_too_soon() == []  # two buckets: both may start at once


async def test_each_shard_gets_its_guilds_events_and_dms_go_to_shard_0(
    fake: FakeDiscord, world: Any
) -> None:
    """Two clients share the work (shards 0 and 1 of 2), as two processes would."""
    fake.shard_count = 2
    even, odd = shard_guilds(fake, world)
    bots: dict[str, commands.AutoShardedBot] = {}
    seen: dict[str, list[int]] = {"A": [], "B": []}
    for name, shard in (("A", 0), ("B", 1)):
        bot = QuickShards(
            command_prefix="!",
            intents=discord.Intents.default(),
            guild_ready_timeout=0.05,
            shard_count=2,
            shard_ids=[shard],
        )

        @bot.tree.command(name="where", description="Which client answers")
        async def where(interaction: discord.Interaction, name: str = name) -> None:
            await interaction.response.send_message(name)

        async def on_message(message: discord.Message, name: str = name) -> None:
            if message.author.id == world.alice.id:
                seen[name].append(message.id)

        bot.add_listener(on_message)
        bots[name] = bot

    async with run_client(bots["A"], fake), run_client(bots["B"], fake):
        assert [i["shard"] for i in fake.identifies] == [[0, 2], [1, 2]]
        assert bots["A"].get_guild(even.id) is not None and bots["A"].get_guild(odd.id) is None
        assert bots["B"].get_guild(odd.id) is not None and bots["B"].get_guild(even.id) is None
        answers = {}
        for where, channel in (
            ("even", fake.channel(even, "general")),
            ("odd", fake.channel(odd, "general")),
            ("dm", fake.open_dm(world.alice)),
        ):
            inter = await fake.slash("where", user=world.alice, channel=channel)
            await fake.wait_for_ack(inter)
            assert inter.original is not None
            answers[where] = (
                inter.original.content,
                fake.shards_sent("INTERACTION_CREATE", inter.id),
            )
        assert answers == {
            "even": ("A", [(0, 2)]),
            "odd": ("B", [(1, 2)]),
            "dm": ("A", [(0, 2)]),
        }
        in_odd = await fake.post_message(fake.channel(odd, "general"), world.alice, "hello")
        in_dm = await fake.post_message(fake.open_dm(world.alice), world.alice, "hi")
        await fake.settle()
        assert fake.shards_sent("MESSAGE_CREATE", in_odd.id) == [(1, 2)]
        assert fake.shards_sent("MESSAGE_CREATE", in_dm.id) == [(0, 2)]
        assert seen == {"A": [in_dm.id], "B": [in_odd.id]}
        # Each client started its first shard at once: one bucket (max_concurrency 1), two
        # identifies closer than 5 s, which real Discord refuses. Nothing in discord.py spaces
        # identifies of different clients; the bot's identify gate does.
        (too_soon,) = fake.identifies_too_soon()
        assert [i.shard for i in too_soon] == [(0, 2), (1, 2)]
        fake.max_concurrency = 2  # two buckets: shards 0 and 1 may start together
        assert fake.identifies_too_soon() == []
