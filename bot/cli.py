"""The command line: `python -m bot imagine|edit|blend|upscale|zoom|pan|vary|animate|video|
migrate-db|simulator`.

`imagine`, `edit` and `blend` run the whole generation path without Discord: validate, submit, wait,
download, save. Progress goes to stderr; stdout gets one line per saved file, so the output can
be piped. Exit codes: 0 at least one image saved, 1 an API or task error, 2 a usage, input or
configuration error. `upscale`, `zoom`, `pan` and `vary` do the same with one image and the
tool of that name (`bot.dashscope.tools`), as the buttons under a result on Discord do.
`animate` (an image and an optional motion prompt) and `video` (a prompt) make one MP4 with a Wan
video model: minutes, so the time waited so far is shown every little while.

`migrate-db` copies the SQLite database into an empty PostgreSQL one (`bot.storage.copy`):
progress on stderr, the summary on stdout. Exit codes: 0 copied and checked, 1 a database
error (unreachable, a failed copy, a check that did not match: nothing written), 2 a usage
error (no target, no source file, a target that already holds rows: nothing written).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from pathlib import Path

import httpx

from bot.config import ConfigError, Settings, load_settings
from bot.dashscope import (
    DashScopeClient,
    DashScopeError,
    ImageRequest,
    Kind,
    TaskResult,
    TaskState,
    tools,
    validate,
)
from bot.dashscope.models import (
    DEFAULT_ANIMATE_MODEL,
    DEFAULT_BLEND_MODEL,
    DEFAULT_EDIT_MODEL,
    DEFAULT_TEXT_TO_IMAGE_MODEL,
    DEFAULT_VIDEO_MODEL,
    MODELS,
    SideRange,
)
from bot.dashscope.requests import require_kind, seeded
from bot.dashscope.tools import check_blend_count
from bot.errors import InputRejected
from bot.i18n import text
from bot.logs import setup_logging
from bot.media.downloads import ResultFetcher
from bot.media.inputs import INPUT_SIDES, prepare_image
from bot.presenter import describe, utc_time
from bot.runtime.target import dashscope_target
from bot.storage.db import DatabaseError, is_postgres_url, target_secrets

EXIT_OK, EXIT_API, EXIT_USAGE = 0, 1, 2
log = logging.getLogger("bot.cli")


class UsageError(Exception):
    """A command-line mistake; the message says what to change."""


def _add_common(parser: argparse.ArgumentParser, default_model: str) -> None:
    parser.add_argument(
        "prompt", help="what to make (for edit and blend: what to do with the images)"
    )
    parser.add_argument("--size", help="WIDTH*HEIGHT, e.g. 1280*1280 (default: the model's)")
    parser.add_argument("--n", type=int, default=1, help="number of images, 1-4 (default 1)")
    _add_shared(parser, default_model, "image")


def _add_shared(parser: argparse.ArgumentParser, default_model: str, what: str) -> None:
    """The options every generating command takes; `what` it makes (image, video)."""
    parser.add_argument("--negative-prompt", help=f"what to keep out of the {what}")
    parser.add_argument("--seed", type=int, help="0-2147483647, for repeatable results")
    parser.add_argument(
        "--no-prompt-extend",
        action="store_true",
        help="send the prompt as written (by default DashScope rewrites short prompts)",
    )
    parser.add_argument("--watermark", action="store_true", help=f"stamp 'AI-generated' on {what}s")
    parser.add_argument("--model", default=default_model, help=f"model (default {default_model})")
    parser.add_argument("--out", required=True, type=Path, help=f"folder to save the {what}s in")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wanbot",
        description="wanbot: Alibaba Wan image models from the command line and on Discord.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.add_parser("run", help="run the Discord bot (the default with no command)")
    commands.add_parser("doctor", help="check the token, the API key, the database and the region")
    imagine = commands.add_parser("imagine", help="make images from a text prompt")
    _add_common(imagine, DEFAULT_TEXT_TO_IMAGE_MODEL)
    imagine.add_argument(
        "--sync",
        action="store_true",
        help="use the synchronous endpoint (wan2.6-t2i, wan2.2-t2i-*): one long request",
    )
    for name, default_model, what, count in (
        ("edit", DEFAULT_EDIT_MODEL, "change one to three images as the prompt says", "up to 3"),
        ("blend", DEFAULT_BLEND_MODEL, "combine two to four images as the prompt says", "2 to 4"),
    ):
        images = commands.add_parser(name, help=what)
        _add_common(images, default_model)
        images.add_argument(
            "--image",
            action="append",
            required=True,
            metavar="PATH_OR_URL",
            help=f"an input image (repeat: {count}); order matters: image 1, image 2, …",
        )
    worker = commands.add_parser(
        "worker", help="run queued jobs without Discord, saving each job's images to a folder"
    )
    worker.add_argument("--out", required=True, type=Path, help="folder for the images")
    worker.add_argument(
        "--exit-when-idle", action="store_true", help="stop once no job is left in progress"
    )
    migrate = commands.add_parser(
        "migrate-db",
        help="copy the SQLite database (DATABASE_PATH) into an empty PostgreSQL database",
    )
    migrate.add_argument(
        "--to",
        metavar="POSTGRESQL_URL",
        help="the PostgreSQL database (default: DATABASE_URL, which keeps a password out of "
        "your shell history)",
    )
    migrate.add_argument(
        "--from",
        dest="source",
        metavar="PATH",
        help="the SQLite database file (default: DATABASE_PATH)",
    )
    _add_tool_commands(commands)
    _add_video_commands(commands)
    commands.add_parser(
        "simulator", help="run the DashScope simulator (see: simulator --help)", add_help=False
    )
    return parser


TOOL_COMMANDS = ("upscale", "zoom", "pan", "vary")


def _add_tool_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """One command per image tool, named and shaped as its button on Discord."""
    helps = {
        "upscale": "make one image larger (2 or 4 times each side)",
        "zoom": "zoom out: a larger canvas around one image, the image in the middle",
        "pan": "extend one image on one side",
        "vary": "new images close to one image, with its prompt",
    }
    for name in TOOL_COMMANDS:
        tool = commands.add_parser(name, help=helps[name])
        tool.add_argument("image", metavar="IMAGE", help="a file or an http(s) URL")
        if name == "upscale":
            tool.add_argument(
                "--factor", type=int, choices=tools.UPSCALE_CHOICES, default=2, help="default 2"
            )
        elif name == "zoom":
            tool.add_argument(
                "--factor", type=float, choices=tools.ZOOM_CHOICES, default=2.0, help="default 2"
            )
        elif name == "pan":
            tool.add_argument("--direction", required=True, choices=[p.value for p in tools.Pan])
        if name == "vary":
            tool.add_argument("prompt", help="what the image shows (its prompt)")
            tool.add_argument("--strong", action="store_true", help="depart further from it")
            tool.add_argument("--n", type=int, default=1, help="number of images, 1-4")
        elif name != "upscale":
            # An option, not a positional: argparse cannot take an optional positional after
            # options (`pan IMAGE --direction up "more sky"`).
            tool.add_argument(
                "--prompt",
                default=tools.EXPAND_PROMPT,
                help="what to fill the new area with (default: more of the same scene)",
            )
        tool.add_argument("--seed", type=int, help="0-2147483647, for repeatable results")
        tool.add_argument("--watermark", action="store_true", help="stamp 'AI-generated'")
        tool.add_argument("--out", required=True, type=Path, help="folder to save the images in")


VIDEO_COMMANDS = {"animate": Kind.ANIMATE, "video": Kind.VIDEO}
PROGRESS_EVERY = 15.0  # seconds between "still waiting" lines while a task runs


def _add_video_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`animate IMAGE [PROMPT]` and `video PROMPT`: one MP4 each, with the options of /animate
    and /video."""
    animate = commands.add_parser("animate", help="make a short video of one image")
    animate.add_argument("image", metavar="IMAGE", help="a file or an http(s) URL")
    animate.add_argument("prompt", nargs="?", default="", help="how it moves (optional)")
    video = commands.add_parser("video", help="make a short video from a text prompt")
    video.add_argument("prompt", help="what the video shows")
    video.add_argument("--size", help="WIDTH*HEIGHT, e.g. 1280*720 (default: the resolution's)")
    video.add_argument("--aspect", help="an aspect ratio such as 16:9 or 9:16, instead of --size")
    for parser, default_model in ((animate, DEFAULT_ANIMATE_MODEL), (video, DEFAULT_VIDEO_MODEL)):
        parser.add_argument("--duration", type=int, help="seconds (default: the model's first)")
        parser.add_argument("--resolution", help="480P, 720P or 1080P, as the model offers")
        parser.add_argument(
            "--audio",
            action=argparse.BooleanOptionalAction,
            default=None,
            help="sound, on models that make it (default: on)",
        )
        _add_shared(parser, default_model, "video")


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "simulator":
        from bot.simulator.cli import main as simulator_main

        return simulator_main(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"wanbot: {exc}", file=sys.stderr)
        return EXIT_USAGE
    secret_values = [
        s.get_secret_value() for s in (settings.dashscope_api_key, settings.discord_token) if s
    ]
    secret_values += target_secrets(settings.database_target)
    secret_values += target_secrets(getattr(args, "to", None) or "")
    setup_logging(settings.log_level_number, secret_values)
    try:
        if args.command in (None, "run"):
            from bot.discord_ui.app import run_bot

            return asyncio.run(run_bot(settings))
        if args.command == "doctor":
            from bot.discord_ui.login import check_token
            from bot.runtime.doctor import doctor

            return asyncio.run(doctor(settings, check_token))
        if args.command == "migrate-db":
            return asyncio.run(migrate_db_command(args, settings))
        if args.command == "worker":
            from bot.runtime.worker import run_worker

            return asyncio.run(run_worker(settings, args.out, exit_when_idle=args.exit_when_idle))
        if args.command in TOOL_COMMANDS:
            return asyncio.run(tool_command(args, settings))
        if args.command in VIDEO_COMMANDS:
            return asyncio.run(video_command(args, settings))
        return asyncio.run(generate_command(args, settings))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


async def generate_command(args: argparse.Namespace, settings: Settings) -> int:
    try:
        spec = MODELS.get(args.model)
        if spec is None:
            raise UsageError(text("invalid.model", model=args.model, choices=", ".join(MODELS)))
        wanted = {"edit": Kind.EDIT, "blend": Kind.BLEND}.get(args.command, Kind.TEXT_TO_IMAGE)
        try:
            require_kind(ImageRequest(model=spec.name, prompt=""), wanted)
            if wanted is Kind.BLEND:
                check_blend_count(len(args.image))
        except InputRejected as exc:
            raise UsageError(describe(exc, "en", moment=utc_time)) from None
        if getattr(args, "sync", False) and not spec.supports_sync:
            raise UsageError(text("invalid.sync_unsupported", model=spec.name))
        out_dir = await _out_folder(args)
    except UsageError as exc:
        print(f"wanbot: {exc}", file=sys.stderr)
        return EXIT_USAGE

    async def prepare(http: httpx.AsyncClient) -> ImageRequest:
        images = await _load_images(http, args.image, settings) if wanted.takes_images else []
        return ImageRequest(
            model=spec.name,
            prompt=args.prompt,
            negative_prompt=args.negative_prompt,
            size=args.size,
            n=args.n,
            seed=args.seed,
            prompt_extend=False if args.no_prompt_extend else None,
            watermark=True if args.watermark else None,
            images=tuple(images),
        )

    return await _run_request(settings, out_dir, prepare, sync=getattr(args, "sync", False))


async def tool_command(args: argparse.Namespace, settings: Settings) -> int:
    """`upscale`, `zoom`, `pan` or `vary` on one image: the request `bot.dashscope.tools` builds,
    the image loaded and checked for the model it goes to, then as `edit`."""
    # The region of the key in use; None (every model) for the built-in simulator.
    region = settings.region if settings.dashscope_api_key else None
    chosen = tools.Chosen(
        image="",  # loaded below, for the model the request goes to
        prompt=getattr(args, "prompt", tools.UPSCALE_PROMPT),
        seed=args.seed,
        watermark=True if args.watermark else None,
    )
    if args.command == "upscale":
        request = tools.upscale(chosen, args.factor)
    elif args.command == "zoom":
        request = tools.expand(chosen, tools.zoom_scales(args.factor))
    elif args.command == "pan":
        request = tools.expand(chosen, tools.pan_scales(tools.Pan(args.direction)))
    else:
        request = tools.vary(chosen, "strong" if args.strong else "subtle", args.n, region)
    try:
        if not tools.offered(request.kind, region):
            raise UsageError(
                f"{args.command} needs {request.model}, which DashScope offers only in "
                f"{', '.join(request.spec.regions)}; this key's region is {region}"
                " (DASHSCOPE_REGION, else the region of DASHSCOPE_BASE_URL)"
            )
        out_dir = await _out_folder(args)
    except UsageError as exc:
        print(f"wanbot: {exc}", file=sys.stderr)
        return EXIT_USAGE

    async def prepare(http: httpx.AsyncClient) -> ImageRequest:
        sides = request.spec.input_sides
        [image] = await _load_images(http, [args.image], settings, sides)
        return replace(request, images=(image,))

    return await _run_request(settings, out_dir, prepare)


async def video_command(args: argparse.Namespace, settings: Settings) -> int:
    """`animate` or `video`: the request checked as /animate and /video check it (a duration
    or resolution the model lacks, an image it cannot take: a usage error), then as `edit`."""
    kind = VIDEO_COMMANDS[args.command]
    try:
        spec = MODELS.get(args.model)
        if spec is None:
            raise UsageError(text("invalid.model", model=args.model, choices=", ".join(MODELS)))
        try:
            require_kind(ImageRequest(model=spec.name, prompt=""), kind)
        except InputRejected as exc:
            raise UsageError(describe(exc, "en", moment=utc_time)) from None
        out_dir = await _out_folder(args)
    except UsageError as exc:
        print(f"wanbot: {exc}", file=sys.stderr)
        return EXIT_USAGE

    async def prepare(http: httpx.AsyncClient) -> ImageRequest:
        images: list[str] = []
        if kind.takes_images:
            images = await _load_images(http, [args.image], settings, spec.input_sides)
        return ImageRequest(
            model=spec.name,
            prompt=args.prompt,
            negative_prompt=args.negative_prompt,
            size=getattr(args, "size", None),
            aspect=getattr(args, "aspect", None),
            seed=args.seed,
            prompt_extend=False if args.no_prompt_extend else None,
            watermark=True if args.watermark else None,
            images=tuple(images),
            duration=args.duration,
            resolution=args.resolution.upper() if args.resolution else None,
            audio=args.audio,
        )

    return await _run_request(settings, out_dir, prepare)


async def _out_folder(args: argparse.Namespace) -> Path:
    out_dir: Path = args.out
    if await asyncio.to_thread(out_dir.is_file):
        raise UsageError(f"--out {out_dir} is a file; give a folder")
    return out_dir


async def _run_request(
    settings: Settings,
    out_dir: Path,
    prepare: Callable[[httpx.AsyncClient], Awaitable[ImageRequest]],
    *,
    sync: bool = False,
) -> int:
    """Load the input images and build the request (`prepare`; what it rejects is a usage
    error), then submit it, wait and save the images."""
    async with httpx.AsyncClient(follow_redirects=False) as http:
        try:
            request = seeded(validate(await prepare(http)))
        except InputRejected as exc:
            print(f"wanbot: {describe(exc, 'en', moment=utc_time)}", file=sys.stderr)
            return EXIT_USAGE
        async with dashscope_target(settings) as target:
            if target.simulated:
                print(text("cli.simulated"), file=sys.stderr)
            client = DashScopeClient(
                target.api_key,
                target.base_url,
                http=http,
                workspace=settings.dashscope_workspace,
            )
            try:
                result = await _run(client, request, sync=sync)
            except DashScopeError as exc:
                print(f"wanbot: {describe(exc, 'en', moment=utc_time)}", file=sys.stderr)
                print(f"wanbot: DashScope said: {exc}", file=sys.stderr)
                return EXIT_API
            fetcher = ResultFetcher(
                http,
                target.base_url,
                max_bytes=settings.download_max_bytes,
                video_max_bytes=settings.video_download_max_bytes,
            )
            return await _save(fetcher, result, out_dir, request)


async def migrate_db_command(args: argparse.Namespace, settings: Settings) -> int:
    from bot.storage.copy import NoSource, TargetNotEmpty, copy_database

    if args.source and "://" in args.source:  # not echoed: a URL may hold a password
        print(
            "wanbot: --from takes the path of the SQLite database file; the PostgreSQL "
            "database goes in --to",
            file=sys.stderr,
        )
        return EXIT_USAGE
    source = Path(args.source) if args.source else settings.database_path
    target = args.to or settings.database_target
    if not is_postgres_url(target):
        print(
            "wanbot: migrate-db needs a PostgreSQL database to copy into: give --to "
            "postgresql://user:password@host:5432/database, or set DATABASE_URL",
            file=sys.stderr,
        )
        return EXIT_USAGE

    def progress(line: str) -> None:
        print(line, file=sys.stderr)

    print(f"copying {source} …", file=sys.stderr)
    try:
        report = await copy_database(source, target, progress)
    except NoSource as exc:
        print(f"wanbot: {exc}: give --from PATH, or set DATABASE_PATH", file=sys.stderr)
        return EXIT_USAGE
    except TargetNotEmpty as exc:
        print(f"wanbot: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except DatabaseError as exc:
        print(f"wanbot: {exc}", file=sys.stderr)
        return EXIT_API
    tally = report.tally
    rate = report.total_rows / report.seconds if report.seconds else 0.0
    print(
        f"copied {report.source} (SQLite schema {report.source_version}) into {report.target} "
        f"(PostgreSQL schema {report.target_version}): {report.total_rows} rows in "
        f"{report.seconds:.1f} s "
        f"({rate:.0f} rows/s); both sides hold:"
    )
    width = max(len(name) for name in tally.rows)
    for name, count in tally.rows.items():
        print(f"  {name:<{width}}  {count}")
    print("and the same ledger sums:")
    for entry in sorted(tally.images):
        print(
            f"  {entry:<{width}}  {tally.images[entry]} images, "
            f"{tally.money[entry]:.4f} {settings.currency}"
        )
    return EXIT_OK


async def _load_images(
    http: httpx.AsyncClient, sources: list[str], settings: Settings, sides: SideRange = INPUT_SIDES
) -> list[str]:
    fetcher = ResultFetcher(
        http, settings.dashscope_base_url, max_bytes=settings.download_max_bytes, any_host=True
    )
    uris = []
    for index, source in enumerate(sources, start=1):
        if source.startswith(("http://", "https://")):
            try:
                data = (await fetcher.fetch(source)).content
            except DashScopeError as exc:
                raise InputRejected.one("image.fetch", index=index, detail=exc.message) from None
        else:
            path = Path(source)
            try:
                data = await asyncio.to_thread(path.read_bytes)
            except OSError as exc:
                raise InputRejected.one(
                    "image.fetch", index=index, detail=f"{path}: {exc.strerror}"
                ) from None
        prepared = prepare_image(data, index, sides)
        for change in prepared.changes:
            print(f"image {index}: {change}", file=sys.stderr)
        uris.append(prepared.data_uri)
    return uris


async def _run(client: DashScopeClient, request: ImageRequest, *, sync: bool) -> TaskResult:
    started = time.monotonic()
    if sync:
        print(
            f"generating with {request.model}, seed {request.seed} (synchronous call)…",
            file=sys.stderr,
        )
        return await client.generate(request)
    submitted = await client.submit(request)
    what = f"{request.model}, seed {request.seed}"
    if request.kind.makes_video:
        what += f", {request.duration} s at {request.resolution}; this takes minutes"
    print(f"task {submitted.task_id} submitted ({what})", file=sys.stderr)
    last: list[TaskState] = []
    shown = [started]

    def show(result: TaskResult) -> None:
        """A line when the state changes, and every `PROGRESS_EVERY` seconds meanwhile."""
        now = time.monotonic()
        changed = not last or last[-1] is not result.state or result.state.finished
        if changed or now - shown[0] >= PROGRESS_EVERY:
            elapsed = now - started
            print(f"task {submitted.task_id}: {result.state} ({elapsed:.0f} s)", file=sys.stderr)
            last.append(result.state)
            shown[0] = now

    return await client.wait(submitted.task_id, on_update=show)


async def _save(
    fetcher: ResultFetcher, result: TaskResult, out_dir: Path, request: ImageRequest
) -> int:
    actual = result.actual_prompt
    if actual and actual.strip() != request.prompt.strip():
        print(f"actual prompt: {actual}", file=sys.stderr)
    for failure in result.failures:
        print(f"image failed: {failure.code}: {failure.message}", file=sys.stderr)
    # The choices[] shape lists only the images that were made; the rest simply are not there.
    missing = request.n - len(result.images) - len(result.failures)
    if missing > 0:
        print(f"image failed: {missing} of {request.n} images were not returned", file=sys.stderr)
    await asyncio.to_thread(out_dir.mkdir, parents=True, exist_ok=True)
    stem = (result.task_id or f"sync-{int(time.time())}")[:13]
    video = request.kind.makes_video
    if video and result.video_seconds is not None:
        print(f"video: {result.video_seconds:g} s billed", file=sys.stderr)
    saved = 0
    for index, image in enumerate(result.images, start=1):
        try:
            download = await fetcher.fetch(image.url, video=video)
        except DashScopeError as exc:
            print(f"image {index} not saved: {exc.message}", file=sys.stderr)
            continue
        path = out_dir / f"wan-{stem}-{index}{'.mp4' if video else '.png'}"
        await asyncio.to_thread(path.write_bytes, download.content)
        print(path)
        saved += 1
    if saved == 0:
        print("wanbot: no image could be saved", file=sys.stderr)
        return EXIT_API
    return EXIT_OK
