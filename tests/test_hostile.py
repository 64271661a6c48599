"""Hostile input, end to end: the real bot against the fake Discord and the simulator.

One table of named cases (attachments, prompts, options, modals, malformed payloads). Each case
declares what must happen:

* ``REFUSED``: the user gets an answer in words (ephemeral for interactions, a reply for
  reply-to-edit) containing a keyword that says what to change; never a traceback nor the generic
  "something went wrong"; no job row and no ledger row.
* ``ACCEPTED``: the input is legitimate (EXIF rotation, CMYK, 16-bit, animated, mixed scripts…):
  the job completes, is charged normally, and the stored input images are normalised.
* ``DROPPED``: a malformed payload that discord.py itself discards (an unknown component
  custom_id): no answer can be given; the bot stays up, no job, no charge, no ERROR log. (Form
  submits are all the bot's to answer: an unknown one is ``REFUSED``.)

After the table, a summary checks the bot is alive, that nothing the bot posted could ping
@everyone/@here or a role, and records the figures (`hostile_input`).
"""

from __future__ import annotations

import io
import os
import struct
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any

import pytest
import pytest_asyncio
from PIL import Image

from bot.dashscope.models import DEFAULT_EDIT_MODEL, INPUT_MAX_SIDE, INPUT_MIN_SIDE, SEED_MAX
from bot.i18n import text
from bot.jobs.model import Job, JobState
from tests.data_uri import data_uri_bytes
from tests.discord_env import BotEnv, bot_env, modal_inputs, png, replies
from tests.fakediscord import InteractionType, Message, Perm
from tests.fakediscord.records import Interaction
from tests.figures import record

pytestmark = pytest.mark.asyncio(loop_scope="module")

REFUSED, ACCEPTED, DROPPED = "refused", "accepted-normalised", "dropped"
GENERIC_ERROR = text("reply.error", "en")
OUTCOMES: dict[str, str] = {}  # case name -> what happened (for the figures)


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def env(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[BotEnv]:
    async with bot_env(
        tmp_path_factory.mktemp("hostile"), limit_images_per_user_day=0, speed=1000.0
    ) as env:
        # Let the bot mention @everyone, so a prompt echoed without allowed_mentions would ping.
        for role in env.world.guild.roles.values():
            if role.bot_id == env.fake.bot_user.id:
                role.permissions |= Perm.MENTION_EVERYONE
        # `settle()` asks for a heartbeat per round (its barrier) and discord.py answers within
        # its 110 frames a minute; ~70 cases ask for more than real Discord ever would.
        assert env.bot is not None
        for shard in env.bot.shards:
            limiter = env.bot._get_websocket(shard_id=shard)._rate_limiter
            limiter.max = limiter.remaining = 100_000
        yield env


@pytest.fixture(autouse=True)
def clean(env: BotEnv) -> Iterator[None]:
    yield
    env.check_clean()


# --- hostile files ---------------------------------------------------------------------------


def encode(image: Image.Image, fmt: str, **options: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def noise_png(width: int, height: int) -> bytes:
    return encode(Image.frombytes("RGB", (width, height), os.urandom(width * height * 3)), "PNG")


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    crc = zlib.crc32(kind + payload) & 0xFFFFFFFF
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)


def bomb_png(width: int = 20_000, height: int = 20_000) -> bytes:
    """A real 1-bit PNG of WIDTH×HEIGHT: 400 megapixels in a few hundred kilobytes."""
    row = b"\x00" + b"\x00" * ((width + 7) // 8)
    compressor = zlib.compressobj(9)
    data = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", data)
        + png_chunk(b"IEND", b"")
    )


def truncated(fmt: str) -> bytes:
    image = Image.frombytes("RGB", (600, 600), os.urandom(600 * 600 * 3))
    data = encode(image, fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    return data[: len(data) // 2]


def cmyk_jpeg() -> bytes:
    return encode(Image.new("CMYK", (640, 480), (0, 200, 200, 0)), "JPEG")


def png_16bit() -> bytes:
    image = Image.new("I;16", (640, 480))
    image.putdata([(x * 97) % 65536 for x in range(640 * 480)])
    return encode(image, "PNG")


def animated(fmt: str) -> bytes:
    frames = [Image.new("RGB", (500, 500), colour) for colour in ((220, 20, 20), (20, 20, 220))]
    return encode(frames[0], fmt, save_all=True, append_images=frames[1:], duration=100, loop=0)


def exif_rotated_jpeg() -> bytes:
    image = Image.new("RGB", (640, 480), (30, 160, 60))
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90° clockwise to display
    return encode(image, "JPEG", exif=exif.tobytes())


def rgba_png() -> bytes:
    return encode(Image.new("RGBA", (500, 500), (200, 0, 0, 0)), "PNG")


# --- what the bot answered -------------------------------------------------------------------


@dataclass
class Seen:
    """What a case did: the interaction, or the user's message for reply-to-edit."""

    interaction: Interaction | None = None
    message: Message | None = None


def answers(env: BotEnv, seen: Seen) -> list[Message]:
    if seen.interaction is not None:
        return replies(seen.interaction)
    assert seen.message is not None
    return [
        m
        for m in env.fake.messages_in(seen.message.channel_id)
        if m.author.id == env.fake.bot_user.id and m.referenced_id == seen.message.id
    ]


# --- actions ---------------------------------------------------------------------------------

Action = Callable[[BotEnv], Awaitable[Seen]]
Check = Callable[[BotEnv, Job], Awaitable[None]]


def imagine(prompt: str = "a lighthouse at dusk", **options: Any) -> Action:
    async def act(env: BotEnv) -> Seen:
        w = env.world
        inter = await env.fake.slash(
            "imagine", {"prompt": prompt, **options}, user=w.alice, channel=w.general
        )
        return Seen(interaction=inter)

    return act


@dataclass(frozen=True)
class Attach:
    """An Action: /edit with these uploads, or /blend with them and an ordinary image after
    them (a blend takes two at least), so each upload keeps its number in the answer."""

    uploads: tuple[Any, ...]
    options: dict[str, Any]
    command: str = "edit"

    async def __call__(self, env: BotEnv) -> Seen:
        w = env.world
        attachments = list(self.uploads)
        if self.command == "blend":
            attachments.append(("other.png", png()))
        inter = await env.fake.slash(
            self.command, self.options, user=w.alice, channel=w.general, attachments=attachments
        )
        return Seen(interaction=inter)


def edit(*uploads: Any, prompt: str = "make it brighter", **options: Any) -> Action:
    return Attach(uploads, {"prompt": prompt, **options})


def command_data(env: BotEnv, name: str, **extra: Any) -> dict[str, Any]:
    cmd, guild_id = env.fake.find_command(name, 1, env.world.general)
    data: dict[str, Any] = {
        "id": cmd["id"] if cmd else str(env.fake.state.ids.next()),
        "name": name,
        "type": 1,
        **extra,
    }
    if guild_id is not None:
        data["guild_id"] = str(guild_id)
    return data


def raw_command(name: str, **extra: Any) -> Action:
    """An APPLICATION_COMMAND payload built by hand (what no Discord client would send)."""

    async def act(env: BotEnv) -> Seen:
        w = env.world
        inter = await env.fake.inject_interaction(
            InteractionType.APPLICATION_COMMAND,
            command_data(env, name, **extra),
            user=w.alice,
            channel=w.general,
        )
        return Seen(interaction=inter)

    return act


def opt(name: str, type: int, value: Any) -> dict[str, Any]:
    return {"name": name, "type": type, "value": value}


def declared_size(size: int) -> Action:
    """/edit with an attachment whose payload claims SIZE bytes (Discord reports the size)."""

    async def act(env: BotEnv) -> Seen:
        w = env.world
        att = env.fake.upload(("huge.png", png()), w.general)
        payload = env.fake.payloads.attachment(att)
        payload["size"] = size
        data = command_data(
            env,
            "edit",
            options=[opt("prompt", 3, "brighter"), opt("image", 11, str(att.id))],
            resolved={"attachments": {str(att.id): payload}},
        )
        inter = await env.fake.inject_interaction(
            InteractionType.APPLICATION_COMMAND, data, user=w.alice, channel=w.general
        )
        return Seen(interaction=inter)

    return act


def reply_edit(upload: Any, instruction: str = "make it brighter") -> Action:
    """Reply to a member's message with this attachment, mentioning the bot."""

    async def act(env: BotEnv) -> Seen:
        w, fake = env.world, env.fake
        post = await fake.post_message(w.art, w.bob, "look", attachments=[upload])
        reply = await fake.post_message(
            w.art, w.alice, f"<@{fake.bot_user.id}> {instruction}", reference=post
        )
        return Seen(message=reply)

    return act


async def open_menu(env: BotEnv, uploads: list[Any]) -> Interaction:
    w, fake = env.world, env.fake
    post = await fake.post_message(w.art, w.bob, "pictures", attachments=uploads)
    opened = await fake.message_command("Edit with Wan", post, user=w.alice)
    await fake.wait_for_ack(opened)
    await fake.settle()  # discord.py registers the modal after answering
    assert opened.modal is not None, replies(opened)
    return opened


def menu_modal(
    values: dict[str, Any],
    *,
    uploads: int = 2,
    extra: list[dict[str, Any]] | None = None,
    custom_id: str | None = None,
    drop_fields: bool = False,
) -> Action:
    """Open "Edit with Wan" on a message with images, then submit a hand-built modal: values by
    label (any length, any type), extra components, another custom_id, or no fields at all."""

    async def act(env: BotEnv) -> Seen:
        opened = await open_menu(env, [(f"{k}.png", png()) for k in range(uploads)])
        assert opened.modal is not None
        inputs = modal_inputs(opened.modal)
        components: list[dict[str, Any]] = []
        if not drop_fields:
            for label, value in values.items():
                cid = inputs[label]["custom_id"]
                components.append(
                    {"type": 1, "components": [{"type": 4, "custom_id": cid, "value": value}]}
                )
        components += extra or []
        data = {"custom_id": custom_id or opened.modal["custom_id"], "components": components}
        inter = await env.fake.inject_interaction(
            InteractionType.MODAL_SUBMIT, data, user=env.world.alice, channel=opened.channel
        )
        return Seen(interaction=inter)

    return act


def click(custom_id: str, *, on_message: bool = True) -> Action:
    """Click a button with this custom_id: on a message of the bot's that carries it (as if
    the bot had made it), or (`on_message=False`) on a message without it (forged)."""

    async def act(env: BotEnv) -> Seen:
        w, fake = env.world, env.fake
        if on_message:
            button = {"type": 2, "style": 2, "label": "?", "custom_id": custom_id}
            body = {"content": "a button", "components": [{"type": 1, "components": [button]}]}
            target = fake._new_message(w.general, fake.bot_user, body, [], source="channel")
        else:
            target = await fake.post_message(w.general, w.bob, "anything")
        inter = await fake.click(target, custom_id, user=w.alice, force=not on_message)
        return Seen(interaction=inter)

    return act


def autocomplete(name: str, options: list[dict[str, Any]]) -> Action:
    async def act(env: BotEnv) -> Seen:
        w = env.world
        inter = await env.fake.inject_interaction(
            InteractionType.APPLICATION_COMMAND_AUTOCOMPLETE,
            command_data(env, name, options=options),
            user=w.alice,
            channel=w.general,
        )
        return Seen(interaction=inter)

    return act


# --- checks for accepted cases ---------------------------------------------------------------


async def stored_inputs(env: BotEnv, job: Job) -> list[Image.Image]:
    assert env.bot is not None
    out = []
    for uri in await env.bot.engine.store.inputs(job.id):
        image = Image.open(io.BytesIO(data_uri_bytes(uri)))
        image.load()
        assert image.format in {"JPEG", "PNG", "WEBP", "BMP"}, image.format
        assert image.mode == "RGB", image.mode
        assert all(INPUT_MIN_SIDE <= side <= INPUT_MAX_SIDE for side in image.size)
        assert not getattr(image, "is_animated", False)
        out.append(image)
    assert out, "an edit job without inputs"
    return out


def normalised(size: tuple[int, int] | None = None, pixel: Any = None) -> Check:
    async def check(env: BotEnv, job: Job) -> None:
        (image,) = await stored_inputs(env, job)
        if size is not None:
            assert image.size == size
        if pixel is not None:
            r, g, b = image.getpixel((image.width // 2, image.height // 2))  # type: ignore[misc]
            assert pixel(r, g, b), (r, g, b)

    return check


def prompt_kept(expected: str) -> Check:
    async def check(env: BotEnv, job: Job) -> None:
        assert job.params.prompt == expected.strip()

    return check


def edit_defaults(env_n: int = 1) -> Check:
    """Fields injected into a modal change nothing: default model, n, and a seed the bot picked
    (the injected seed is -5, outside the range)."""

    async def check(env: BotEnv, job: Job) -> None:
        assert job.model == DEFAULT_EDIT_MODEL
        assert job.n == env_n
        assert job.params.seed is not None and 0 <= job.params.seed <= SEED_MAX
        await stored_inputs(env, job)

    return check


async def no_pings(env: BotEnv, job: Job) -> None:
    """The prompt was echoed (status, thread name, embed) without pinging anyone."""
    bot_id = env.fake.bot_user.id
    for message in env.fake.state.messages.values():
        if message.author.id == bot_id:
            assert not message.mention_everyone, message
            assert not message.mention_roles, message
    for thread in env.fake.state.channels.values():
        if thread.is_thread and "everyone" in (thread.name or ""):
            assert "@everyone" not in thread.name  # "@\u200beveryone"


# --- the table -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    name: str
    act: Action
    expect: str
    keyword: str = ""  # REFUSED: a word of the answer saying what to change
    check: Check | None = None  # ACCEPTED: more to verify on the finished job
    n: int = 1


MIXED = "🐱 一只猫在屋顶上 قطة على السطح кошка 👩‍👩‍👧 ✨"
INJECTION = "@everyone @here <@&1> <@1> **bold** [click](https://evil.example) a cat"
TEXT = ("notes.txt", b"not an image at all\n" * 20, "text/plain")

CASES: list[Case] = [
    # Attachments (/edit).
    Case(
        "random-bytes-named-png",
        edit(("r.png", os.urandom(3000), "image/png")),
        REFUSED,
        "not a readable image",
    ),
    Case(
        "png-signature-then-garbage",
        edit(("g.png", b"\x89PNG\r\n\x1a\n" + os.urandom(900))),
        REFUSED,
        "not a readable image",
    ),
    Case("truncated-png", edit(("t.png", truncated("PNG"))), REFUSED, "not a readable image"),
    Case("truncated-jpeg", edit(("t.jpg", truncated("JPEG"))), REFUSED, "not a readable image"),
    Case(
        "decompression-bomb-20000x20000",
        edit(("bomb.png", bomb_png())),
        REFUSED,
        "too many to open safely",
    ),
    Case("one-by-one", edit(("dot.png", png(1, 1))), REFUSED, "at least 384 px"),
    Case("100000x10", edit(("strip.png", png(100_000, 10))), REFUSED, "too long and thin"),
    Case("zero-byte-file", edit(("empty.png", b"", "image/png")), REFUSED, "empty file"),
    Case("text-file", edit(TEXT), REFUSED, "is not an image"),
    Case(
        "text-with-image-mime",
        edit(("notes.txt", b"hello\n" * 50, "image/png")),
        REFUSED,
        "not a readable image",
    ),
    Case(
        "svg-named-png",
        edit(("v.png", b'<svg xmlns="http://www.w3.org/2000/svg"/>')),
        REFUSED,
        "not a readable image",
    ),
    Case("huge-declared-size", declared_size(60_000_000), REFUSED, "not accepted"),
    Case(
        "second-image-garbage",
        edit(("ok.png", png()), ("bad.png", os.urandom(500))),
        REFUSED,
        "Image 2",
    ),
    Case(
        "cmyk-jpeg",
        edit(("cmyk.jpg", cmyk_jpeg())),
        ACCEPTED,
        check=normalised((640, 480), lambda r, g, b: r > 200 and g < 120),
    ),
    Case("16-bit-png", edit(("deep.png", png_16bit())), ACCEPTED, check=normalised((640, 480))),
    Case(
        "animated-gif",
        edit(("anim.gif", animated("GIF"))),
        ACCEPTED,
        check=normalised((500, 500), lambda r, g, b: r > 150 and b < 100),
    ),
    Case(
        "animated-webp",
        edit(("anim.webp", animated("WEBP"))),
        ACCEPTED,
        check=normalised((500, 500), lambda r, g, b: r > 150 and b < 100),
    ),
    Case(
        "exif-rotated-jpeg",
        edit(("rot.jpg", exif_rotated_jpeg())),
        ACCEPTED,
        check=normalised((480, 640)),
    ),
    Case(
        "rgba-png",
        edit(("alpha.png", rgba_png())),
        ACCEPTED,
        check=normalised((500, 500), lambda r, g, b: min(r, g, b) > 240),
    ),
    Case(
        "png-with-wrong-mime",
        edit(("photo.png", png(), "text/plain")),
        ACCEPTED,
        check=normalised((640, 480)),
    ),
    Case(
        "png-named-jpg",
        edit(("photo.jpg", png(), "image/jpeg")),
        ACCEPTED,
        check=normalised((640, 480)),
    ),
    Case(
        "reply-to-random-bytes",
        reply_edit(("x.png", os.urandom(2000))),
        REFUSED,
        "not a readable image",
    ),
    Case("reply-to-bomb", reply_edit(("bomb.png", bomb_png())), REFUSED, "megapixels"),
    # Prompts (/imagine).
    Case("prompt-empty", imagine(""), REFUSED, "prompt is empty"),
    Case("prompt-whitespace", imagine("   \n\t  "), REFUSED, "prompt is empty"),
    Case("prompt-invisible-only", imagine("\u200b\u200d\ufeff\u2060"), REFUSED, "prompt is empty"),
    Case("prompt-10000-chars", imagine("a" * 10_000), REFUSED, "Shorten"),
    Case("prompt-control-chars", imagine("a cat\x07\x1b[31m red"), REFUSED, "control characters"),
    Case("prompt-nul", imagine("a cat\x00 and a dog"), REFUSED, "control characters"),
    Case(
        "prompt-rtl-override",
        imagine("a cat \u202egod a dna\u202c"),
        ACCEPTED,
        check=prompt_kept("a cat \u202egod a dna\u202c"),
    ),
    Case(
        "prompt-zero-width",
        imagine("a\u200bcat\u200d on a mat"),
        ACCEPTED,
        check=prompt_kept("a\u200bcat\u200d on a mat"),
    ),
    Case("prompt-mixed-scripts", imagine(MIXED), ACCEPTED, check=prompt_kept(MIXED)),
    Case("prompt-mention-injection", imagine(INJECTION), ACCEPTED, check=no_pings),
    Case(
        "negative-control-chars",
        imagine("a cat", negative_prompt="dogs\x07 cats"),
        REFUSED,
        "negative prompt contains control",
    ),
    Case(
        "negative-10000-chars",
        imagine("a cat", negative_prompt="x" * 10_000),
        REFUSED,
        "negative prompt is 10000",
    ),
    Case(
        "model-mention-injection",
        imagine("a cat", model="@everyone <@&1>"),
        REFUSED,
        "Unknown model",
    ),
    Case(
        "style-mention-injection",
        imagine("a cat", style="@everyone <@&1> `x`"),
        REFUSED,
        "There is no style",
    ),
    Case("style-10000-chars", imagine("a cat", style="s" * 10_000), REFUSED, "There is no style"),
    # Sizes, seeds, n, models.
    Case("size-zero", imagine(size="0*0"), REFUSED, "aspect ratio"),
    Case("size-huge", imagine(size="99999*99999"), REFUSED, "pixels"),
    Case("size-negative", imagine(size="-1280*1280"), REFUSED, "WIDTH*HEIGHT"),
    Case("size-sql", imagine(size="1280*1280; DROP TABLE jobs"), REFUSED, "WIDTH*HEIGHT"),
    Case(
        "size-fullwidth-digits",
        imagine(size="１２８０×１２８０"),
        ACCEPTED,
        check=lambda env, job: _size_is(job, "1280*1280"),
    ),
    Case("seed-negative", imagine(seed=-1), REFUSED, "Seed must be"),
    Case("seed-2-31", imagine(seed=2**31), REFUSED, "Seed must be"),
    Case("seed-beyond-int64", imagine(seed=10**20), REFUSED, "Seed must be"),
    Case("n-zero", imagine(n=0), REFUSED, "between 1 and 4"),
    Case("n-five", imagine(n=5), REFUSED, "between 1 and 4"),
    Case("n-minus-one", imagine(n=-1), REFUSED, "between 1 and 4"),
    Case("edit-n-five", edit(("a.png", png()), n=5), REFUSED, "between 1 and 4"),
    Case("edit-size-garbage", edit(("a.png", png()), size="big"), REFUSED, "WIDTH*HEIGHT"),
    Case("unknown-model", imagine(model="dall-e-3"), REFUSED, "Unknown model"),
    Case(
        "edit-model-for-imagine",
        imagine(model=DEFAULT_EDIT_MODEL),
        REFUSED,
        "cannot make images from text",
    ),
    # Modals.
    Case(
        "modal-injected-fields",
        menu_modal(
            {"What should change?": "make it warmer"},
            extra=[
                {"type": 1, "components": [{"type": 4, "custom_id": cid, "value": value}]}
                for cid, value in (("n", "4"), ("model", "wan2.6-t2i"), ("seed", "-5"))
            ],
        ),
        ACCEPTED,
        check=edit_defaults(),
    ),
    Case(
        "modal-over-long-instruction",
        menu_modal({"What should change?": "z" * 10_000}),
        REFUSED,
        "Shorten",
    ),
    Case("modal-no-fields", menu_modal({}, drop_fields=True), REFUSED, "prompt is empty"),
    Case(
        "modal-instruction-not-a-string",
        menu_modal({"What should change?": 12345}),
        REFUSED,
        "prompt",
    ),
    Case(
        "modal-choice-huge-range",
        menu_modal(
            {"What should change?": "warmer", "Which images (numbers)": "1-999999999999999999"},
        ),
        REFUSED,
        "Choose images by number",
    ),
    Case(
        "modal-choice-garbage",
        menu_modal(
            {"What should change?": "warmer", "Which images (numbers)": "0;DROP"},
        ),
        REFUSED,
        "Choose images by number",
    ),
    Case(
        "modal-wrong-custom-id",
        menu_modal({"What should change?": "x"}, custom_id="evil"),
        REFUSED,
        "don't know this form",
    ),
    Case(
        "modal-forged-edit-form",
        menu_modal({"What should change?": "x"}, custom_id="wan:edit:1:0:1"),
        REFUSED,
        "gone",
    ),
    # Malformed interaction payloads.
    Case("missing-options", raw_command("imagine"), REFUSED, "Reload Discord"),
    Case(
        "wrong-option-type-n-string",
        raw_command("imagine", options=[opt("prompt", 3, "a cat"), opt("n", 3, "three")]),
        REFUSED,
        "between 1 and 4",
    ),
    Case(
        "wrong-option-type-seed-float",
        raw_command("imagine", options=[opt("prompt", 3, "a cat"), opt("seed", 10, 1.5)]),
        REFUSED,
        "Seed must be",
    ),
    Case(
        "wrong-option-type-prompt-int",
        raw_command("imagine", options=[opt("prompt", 4, 42)]),
        REFUSED,
        "prompt",
    ),
    Case(
        "unknown-command",
        raw_command("dalle", options=[opt("prompt", 3, "x")]),
        REFUSED,
        "Reload Discord",
    ),
    Case(
        "unknown-subcommand",
        raw_command("imagine", options=[{"name": "turbo", "type": 1, "options": []}]),
        REFUSED,
        "Reload Discord",
    ),
    Case("unknown-component", click("evil:custom:id"), DROPPED),
    Case("component-not-on-the-message", click("wan:job:1:delete", on_message=False), DROPPED),
    Case("job-button-overflowing-id", click("wan:job:99999999999999999999999:info"), DROPPED),
    Case("job-button-negative-id", click("wan:job:-1:delete"), DROPPED),
    Case("job-button-missing-job", click("wan:job:0:reroll"), REFUSED, "no job #0"),
    Case(
        "autocomplete-garbage",
        autocomplete(
            "imagine", [{"name": "model", "type": 3, "value": "\x00" * 50, "focused": True}]
        ),
        DROPPED,
    ),
]

# /blend reads its attachments with /edit's checks: every refused /edit case again, as a blend.
CASES += [
    replace(case, name=f"blend-{case.name}", act=replace(case.act, command="blend"))
    for case in list(CASES)
    if isinstance(case.act, Attach) and case.expect == REFUSED
]


async def _size_is(job: Job, size: str) -> None:
    assert job.params.size == size


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
async def test_hostile_input(env: BotEnv, case: Case) -> None:
    jobs, ledger, latest = await env.job_count(), await env.ledger_rows(), await env.latest_job_id()
    seen = await case.act(env)
    if seen.interaction is not None and case.expect != DROPPED:
        await env.fake.wait_for_ack(seen.interaction)
    await env.fake.settle()
    assert env.task is not None and not env.task.done(), "the bot stopped"
    got = answers(env, seen)
    words = "\n".join(m.content for m in got)
    assert "Traceback" not in words and GENERIC_ERROR not in words, words

    if case.expect == ACCEPTED:
        job = await env.wait_job(await env.new_job(after=latest))
        assert job.state is JobState.DONE, (job.state, job.error_message)
        assert await env.ledger(job.id) in (
            {"reserve": case.n, "charge": case.n},
            {"reserve": case.n, "charge": case.n, "refund": 0},
        )
        if case.check is not None:
            await case.check(env, job)
    else:
        assert await env.job_count() == jobs, "a job was created"
        assert await env.ledger_rows() == ledger, "the ledger changed"
        if case.expect == REFUSED:
            assert got, "no answer"
            if seen.interaction is not None:
                assert all(m.ephemeral for m in got), got
            assert case.keyword.lower() in words.lower(), words
    OUTCOMES[case.name] = case.expect


async def test_summary(env: BotEnv) -> None:
    """The bot survived the table, nothing pinged, and the figures are recorded."""
    assert env.task is not None and not env.task.done()
    assert env.bot is not None and not env.bot.is_closed()
    # Still working: a plain request goes through.
    latest = await env.latest_job_id()
    inter = await env.fake.slash(
        "imagine", {"prompt": "still alive"}, user=env.world.bob, channel=env.world.general
    )
    await env.fake.wait_for_ack(inter)
    job = await env.wait_job(await env.new_job(after=latest))
    assert job.state is JobState.DONE
    # Nothing the bot sent may ping @everyone/@here or a role: every body with content says so.
    for request in env.fake.requests:
        body = request.json
        if isinstance(body, dict) and body.get("content"):
            mentions = body.get("allowed_mentions")
            assert mentions is not None, request
            assert "everyone" not in (mentions.get("parse") or []), request
            assert "roles" not in (mentions.get("parse") or []), request
    assert len(CASES) >= 45
    assert len(OUTCOMES) == len(CASES), sorted({c.name for c in CASES} - set(OUTCOMES))
    counts = {
        kind: sum(1 for v in OUTCOMES.values() if v == kind)
        for kind in (REFUSED, ACCEPTED, DROPPED)
    }
    record(
        "hostile_input",
        cases=len(CASES),
        refused=counts[REFUSED],
        accepted_normalised=counts[ACCEPTED],
        dropped_by_discord_py=counts[DROPPED],
        charged_wrongly=0,
        crashes=0,
    )
