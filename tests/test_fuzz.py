"""Property-based fuzzing (hypothesis) of every parser and validator.

Each property feeds arbitrary input to one parser and asserts it either succeeds with a value
inside its contract or raises the project's own error for that input (with words a user or an
operator can read), never anything else. tests/test_images.py and tests/test_validation.py hold
the first properties for `prepare_image` and `validate`; these go further: images Pillow can
make in every mode and format, header-only bombs, fields of the wrong type, the DashScope
answers, the configuration, the server settings, the simulator, the Discord-side helpers.
"""

from __future__ import annotations

import asyncio
import io
import json
import math
import re
import struct
import time
import warnings
import zlib
from collections.abc import Iterator
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from PIL import Image
from pydantic import SecretStr

from bot.accounting.policy import SETTINGS, validate_value
from bot.config import ConfigError, load_settings, parse_prices
from bot.dashscope.client import DashScopeClient, _decode, _error_from, _parse, _task_path
from bot.dashscope.errors import DashScopeError, ResponseFormatError, error_from_response
from bot.dashscope.models import MODELS, SEED_MAX, format_size
from bot.dashscope.requests import ImageRequest, build_body, parse_size, validate
from bot.dashscope.results import (
    TaskPage,
    TaskResult,
    TaskState,
    parse_submitted,
    parse_task,
    parse_task_page,
    parse_time,
)
from bot.dashscope.retry import NO_RETRIES, retry_after_seconds
from bot.discord_ui.attachments import MAX_INPUTS, choose, default_choice
from bot.discord_ui.render import JOB_BUTTON_TEMPLATE, thread_name
from bot.errors import InputRejected
from bot.i18n import lang_for
from bot.media import inputs
from bot.media.inputs import prepare_image
from bot.presenter import describe, utc_time
from bot.simulator import rules as sim_rules
from bot.simulator.errors import ApiError
from bot.simulator.inputs import decode_image
from bot.simulator.models import BEIJING
from bot.simulator.models import MODELS as SIM_MODELS
from tests.data_uri import data_uri_bytes
from tests.figures import record

FAST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SLOW = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Examples run per property (hypothesis calls the test body once per example).
RUNS: dict[str, int] = {}


def ran(name: str) -> None:
    RUNS[name] = RUNS.get(name, 0) + 1


# JSON values as json.loads gives them (Python's parser also takes NaN and Infinity).
JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=20,
)
ANY_VALUE = JSON | st.binary(max_size=8) | st.builds(object)


def rejected_cleanly(error: InputRejected) -> None:
    """A refusal has words in both languages and no Python internals."""
    assert error.problems
    for lang in ("en", "zh"):
        words = describe(error, lang, moment=utc_time)
        assert words and "Traceback" not in words and "object at 0x" not in words


# --- images ----------------------------------------------------------------------------------

MODES = ("1", "L", "P", "RGB", "RGBA", "CMYK", "I;16", "I", "F", "LA", "PA", "YCbCr")
FORMATS = ("PNG", "JPEG", "GIF", "BMP", "WEBP", "TIFF")


def check_prepared(data: bytes) -> None:
    try:
        prepared = prepare_image(data)
    except InputRejected as error:
        rejected_cleanly(error)
        return
    raw = data_uri_bytes(prepared.data_uri)
    assert len(raw) == prepared.byte_size <= inputs.INPUT_MAX_BYTES
    out = Image.open(io.BytesIO(raw))
    out.load()
    assert out.format in {"JPEG", "PNG", "WEBP", "BMP"}
    assert prepared.mime == Image.MIME[out.format]
    assert out.mode in {"RGB", "L"}
    assert out.size == (prepared.width, prepared.height)
    assert all(inputs.INPUT_MIN_SIDE <= side <= inputs.INPUT_MAX_SIDE for side in out.size)


@pytest.mark.filterwarnings("ignore::UserWarning")
@SLOW
@given(
    mode=st.sampled_from(MODES),
    fmt=st.sampled_from(FORMATS),
    width=st.integers(1, 1300),
    height=st.integers(1, 1300),
    frames=st.integers(1, 3),
    orientation=st.none() | st.integers(0, 10),
)
def test_prepare_image_any_mode_format_and_shape(
    mode: str, fmt: str, width: int, height: int, frames: int, orientation: int | None
) -> None:
    """Every image Pillow can write (any mode, format, size, frames, EXIF orientation)."""
    ran("prepare_image_generated")
    assume(width * height <= 1_000_000)
    image = Image.new(mode, (width, height))
    extra: dict[str, Any] = {}
    if frames > 1:
        extra = {"save_all": True, "append_images": [image.copy()] * (frames - 1)}
    if orientation is not None:
        exif = Image.Exif()
        exif[0x0112] = orientation
        extra["exif"] = exif.tobytes()
    buffer = io.BytesIO()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            image.save(buffer, fmt, **extra)
    except (OSError, ValueError, KeyError, TypeError):
        assume(False)  # Pillow cannot write this mode in this format
    check_prepared(buffer.getvalue())


def _chunk(kind: bytes, payload: bytes) -> bytes:
    crc = zlib.crc32(kind + payload) & 0xFFFFFFFF
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)


@SLOW
@given(
    width=st.integers(0, 2**31 - 1),
    height=st.integers(0, 2**31 - 1),
    depth=st.sampled_from((1, 2, 4, 8, 16, 3, 0)),
    colour=st.sampled_from((0, 2, 3, 4, 6, 1, 7)),
    body=st.binary(max_size=64),
)
def test_prepare_image_on_crafted_png_headers(
    width: int, height: int, depth: int, colour: int, body: bytes
) -> None:
    """Headers claiming any size (bombs up to 2³¹ per side) over a few bytes of pixel data."""
    ran("prepare_image_headers")
    header = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0)
    data = (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(body))
        + _chunk(b"IEND", b"")
    )
    check_prepared(data)


# --- requests ----------------------------------------------------------------------------------

NUMBERS = (
    st.integers(-(2**64), 2**64)
    | st.booleans()
    | st.none()
    | st.floats(allow_nan=True)
    | st.text(max_size=6)
)


@FAST
@given(
    model=st.sampled_from(sorted(MODELS)) | st.text(max_size=12) | st.integers(),
    prompt=st.text(max_size=40) | st.integers() | st.none(),
    negative=st.none() | st.text(max_size=20) | st.integers(),
    size=st.none() | st.text(max_size=12) | st.integers() | st.sampled_from(["1280*1280"]),
    n=NUMBERS,
    seed=NUMBERS,
    images=st.lists(st.text(max_size=6), max_size=4),  # made by the bot, never by users
)
def test_validate_fields_of_any_type(
    model: Any, prompt: Any, negative: Any, size: Any, n: Any, seed: Any, images: list[Any]
) -> None:
    """Fields of the wrong type (as a malformed payload could carry) are refused in words."""
    ran("validate_any_type")
    request = ImageRequest(
        model=model,
        prompt=prompt,
        negative_prompt=negative,
        size=size,
        n=n,
        seed=seed,
        images=tuple(images),
    )
    try:
        valid = validate(request)
    except InputRejected as error:
        rejected_cleanly(error)
        return
    assert isinstance(valid.prompt, str) and valid.prompt.strip()
    assert type(valid.n) is int and 1 <= valid.n <= 4
    assert valid.seed is None or (type(valid.seed) is int and 0 <= valid.seed <= SEED_MAX)
    assert valid.size is None or parse_size(valid.size) is not None
    json.dumps(build_body(valid))


@FAST
@given(st.text(max_size=24) | st.from_regex(r"\A\s*\d{1,6}\s*[*xX×]\s*\d{1,6}\s*\Z"))
def test_parse_size(text: str) -> None:
    ran("parse_size")
    parsed = parse_size(text)
    if parsed is None:
        return
    width, height = parsed
    assert 0 <= width <= 99_999 and 0 <= height <= 99_999
    assert parse_size(format_size(width, height)) == parsed  # canonical text round-trips


@FAST
@given(st.text(max_size=30))
def test_validate_prompt_text(prompt: str) -> None:
    """Any prompt: refused in words, or kept as written (trimmed), with something visible."""
    ran("validate_prompt")
    try:
        valid = validate(ImageRequest(model="wan2.6-t2i", prompt=prompt))
    except InputRejected as error:
        rejected_cleanly(error)
        return
    assert valid.prompt == prompt.strip()
    assert not all(c.isspace() or c in "\u200b\u200c\u200d\u2060\ufeff" for c in valid.prompt)


# --- DashScope answers -----------------------------------------------------------------------

STATES = st.sampled_from([s.value for s in TaskState] + ["CANCELLED", "running", "?"])
OUTPUT_KEYS = (
    "task_id",
    "task_status",
    "results",
    "choices",
    "task_metrics",
    "code",
    "message",
    "submit_time",
    "scheduled_time",
    "end_time",
)
SHAPED = st.fixed_dictionaries(
    {"output": st.dictionaries(st.sampled_from(OUTPUT_KEYS), JSON | STATES, max_size=6)},
    optional={"usage": JSON, "request_id": JSON},
)
BODIES = st.dictionaries(st.text(max_size=10), JSON, max_size=5) | SHAPED


@FAST
@given(body=BODIES, sync=st.booleans())
def test_task_answers_parse_or_raise_response_format_error(
    body: dict[str, Any], sync: bool
) -> None:
    ran("parse_task")
    parser = (lambda b: parse_task(b, default_state=TaskState.SUCCEEDED)) if sync else parse_task
    try:
        result = _parse(parser, body)
    except ResponseFormatError as error:
        assert describe(error, "en", moment=utc_time) and describe(error, "zh", moment=utc_time)
        return
    assert isinstance(result, TaskResult) and isinstance(result.state, TaskState)
    for moment in (result.submit_time, result.scheduled_time, result.end_time):
        assert moment is None or moment.tzinfo is not None
    assert result.image_count is None or type(result.image_count) is int
    for value in (result.task_id, result.request_id, result.code, result.message, result.size):
        assert value is None or isinstance(value, str)  # storable and showable
    assert all(isinstance(image.url, str) and image.url for image in result.images)
    assert result.billed_images >= 0 or result.image_count is not None


@FAST
@given(body=BODIES)
def test_submission_and_list_answers(body: dict[str, Any]) -> None:
    ran("parse_submitted_and_pages")
    try:
        submitted = _parse(parse_submitted, body)
        assert isinstance(submitted.task_id, str) and submitted.task_id
    except ResponseFormatError:
        pass
    list_body = {"data": body.get("output"), **body} if "output" in body else body
    try:
        page = _parse(parse_task_page, list_body)
    except ResponseFormatError:
        return
    assert isinstance(page, TaskPage)
    assert all(isinstance(item.task_id, str) for item in page.items)


@FAST
@given(
    JSON
    | st.floats()
    | st.integers(-(2**80), 2**80)
    | st.datetimes().map(str)
    | st.from_regex(r"\A\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}\Z")
)
def test_parse_time(value: Any) -> None:
    ran("parse_time")
    moment = parse_time(value)
    assert moment is None or (isinstance(moment, datetime) and moment.utcoffset() is not None)


@FAST
@given(ANY_VALUE)
def test_task_state_parse(value: Any) -> None:
    ran("task_state")
    assert isinstance(TaskState.parse(value), TaskState)


@FAST
@given(
    status=st.integers(100, 599),
    body=JSON | st.dictionaries(st.sampled_from(["code", "message", "request_id", "msg"]), JSON),
    raw=st.none() | st.binary(max_size=40),
    retry_after=st.none() | st.text(max_size=30),
)
def test_error_envelopes(
    status: int, body: Any, raw: bytes | None, retry_after: str | None
) -> None:
    """Any status and body (JSON or not) becomes a DashScopeError that can be shown."""
    ran("error_envelopes")
    headers = {}
    if retry_after is not None and retry_after.isprintable() and retry_after.isascii():
        headers["retry-after"] = retry_after
    if raw is not None:
        response = httpx.Response(status, content=raw, headers=headers)
    else:
        response = httpx.Response(status, content=json.dumps(body).encode(), headers=headers)
    decoded, _ = _decode(response)
    error = _error_from(response, decoded)
    assert isinstance(error, DashScopeError)
    str(error)
    for lang in ("en", "zh"):
        assert describe(error, lang, moment=utc_time)


@FAST
@given(code=st.none() | st.text(max_size=30), message=st.none() | st.text(max_size=40))
def test_error_from_response_codes(code: str | None, message: str | None) -> None:
    ran("error_codes")
    error = error_from_response(None, code, message, None)
    assert isinstance(error, DashScopeError) and describe(error, "en", moment=utc_time)


@FAST
@given(
    st.dictionaries(
        st.sampled_from(["retry-after", "retry-after-ms"]),
        st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=40)
        | st.sampled_from(["1e400", "nan", "-inf", "Wed, 21 Oct 2015 07:28:00 GMT", "-5"]),
    )
)
def test_retry_after(headers: dict[str, str]) -> None:
    ran("retry_after")
    seconds = retry_after_seconds(httpx.Headers(headers), now=datetime(2025, 1, 1, tzinfo=UTC))
    assert seconds is None or (seconds >= 0 and not math.isnan(seconds))


_TASK_BODY = st.one_of(
    st.binary(max_size=60),
    JSON.map(lambda v: json.dumps(v).encode()),
    SHAPED.map(lambda v: json.dumps(v).encode()),
)


@FAST
@given(status=st.sampled_from([200, 200, 200, 201, 400, 404, 429, 500, 502]), content=_TASK_BODY)
def test_client_on_garbage_answers(status: int, content: bytes) -> None:
    """The whole client path: any answer is a result or a DashScopeError, never a crash."""
    ran("client_answers")

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, content=content, headers={"retry-after": "0"})

    async def run() -> None:
        http = httpx.AsyncClient(transport=httpx.MockTransport(answer))
        client = DashScopeClient(
            SecretStr("sk-fuzz"), "https://dashscope.invalid/api/v1", http=http
        )
        client = client.with_retry(NO_RETRIES)
        try:
            for call in (client.get_task("abc"), client.submit(ImageRequest("wan2.6-t2i", "x"))):
                try:
                    await call
                except DashScopeError as error:
                    assert describe(error, "en", moment=utc_time)
        finally:
            await http.aclose()

    asyncio.run(run())


@FAST
@given(st.text(max_size=20))
def test_task_path(task_id: str) -> None:
    ran("task_path")
    try:
        path = _task_path(task_id)
    except ValueError:
        return
    assert path == task_id and "/" not in path and path not in (".", "..")


# --- configuration -----------------------------------------------------------------------------

SECRET_KEY = "sk-fuzz-SECRET-0123456789"
SECRET_TOKEN = "TOKEN.fuzz.SECRET.value"
FIELDS = (
    "simulator_speed",
    "download_max_bytes",
    "limit_images_per_user_day",
    "limit_concurrent_jobs_per_user",
    "limit_cooldown_seconds",
    "limit_images_per_guild_day",
    "max_in_flight",
    "submit_rate",
    "task_query_rate",
    "health_port",
    "dashscope_base_url",
    "discord_api_base_url",
    "discord_gateway_url",
    "discord_application_id",
    "dev_guild_id",
    "owner_ids",
    "allow_dms",
    "prices",
    "currency",
    "log_level",
    "dashscope_workspace",
    "dashscope_region",
)
SETTING_TEXT = st.text(max_size=30) | st.sampled_from(
    ["1e400", "nan", "-1", "0", "²", "١٢", "http://", "ftp://x", "wan2.6-t2i=inf", "1_000"]
)


@pytest.fixture
def no_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> Iterator[None]:
    import os

    for name in list(os.environ):
        if name.lower() in FIELDS or name.upper().startswith(("DASHSCOPE_", "DISCORD_")):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    yield


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(values=st.dictionaries(st.sampled_from(FIELDS), SETTING_TEXT, min_size=1, max_size=3))
def test_config_loading(no_env: None, values: dict[str, str]) -> None:
    ran("config")
    try:
        loaded = load_settings(
            _env_file=None,
            dashscope_api_key=SECRET_KEY + (" x" if "log_level" in values else ""),
            discord_token=SECRET_TOKEN,
            **values,
        )
    except ConfigError as error:
        message = str(error)
        assert "\n" not in message and message.startswith("invalid configuration: ")
        assert "SECRET" not in message
        assert error.__cause__ is None
        return
    # Whatever loaded is usable: the derived values never raise.
    loaded.owner_id_set  # noqa: B018
    loaded.price_table  # noqa: B018
    loaded.log_level_number  # noqa: B018
    assert loaded.region in (None, "cn-beijing", "ap-southeast-1", "us-east-1")
    assert "SECRET" not in repr(loaded) and "SECRET" not in str(loaded.model_dump())


@FAST
@given(st.text(max_size=40))
def test_parse_prices(text: str) -> None:
    ran("prices")
    try:
        table = parse_prices(text)
    except ValueError:
        return
    assert all(name in MODELS and 0 <= price < 1000 for name, price in table.items())


# --- server settings (bot/accounting/policy.py) ---------------------------------------------------------


@FAST
@given(
    name=st.sampled_from(sorted(SETTINGS)),
    raw=st.text(max_size=30)
    | st.sampled_from(["nan", "inf", "-0", "1e3", "²", "<#²>", "١٢", "9" * 30, "yes", "on"]),
)
def test_policy_values(name: str, raw: str) -> None:
    """A setting's value is refused in words, or stored in a canonical form that reads back."""
    ran("policy_values")
    spec = SETTINGS[name]
    try:
        stored = validate_value(spec, raw)
    except InputRejected as error:
        rejected_cleanly(error)
        return
    assert validate_value(spec, stored) == stored  # canonical
    if spec.kind in ("int", "money"):
        number = float(stored)
        assert math.isfinite(number) and spec.low <= number <= spec.high  # type: ignore[operator]
        int(float(stored))
    elif spec.kind in ("channels", "channel"):
        assert all(int(part) >= 0 and part.isascii() for part in stored.split(","))
    elif spec.kind in ("models", "model"):
        assert all(part in MODELS for part in stored.split(","))
    elif spec.kind == "size":
        assert parse_size(stored) is not None
    elif spec.kind == "bool":
        assert stored in ("0", "1")


# --- the simulator's own validation -------------------------------------------------------------

SIM_BODY = st.fixed_dictionaries(
    {},
    optional={
        "model": st.sampled_from(sorted(SIM_MODELS)) | JSON,
        "input": st.fixed_dictionaries(
            {},
            optional={
                "prompt": JSON,
                "negative_prompt": JSON,
                "images": JSON,
                "messages": JSON | st.just([{"role": "user", "content": [{"text": "a cat"}]}]),
                "img_url": JSON,
                "audio_url": JSON,
            },
        )
        | JSON,
        "parameters": st.dictionaries(
            st.sampled_from(
                [
                    *("size", "n", "seed", "prompt_extend", "watermark", "negative_prompt"),
                    *("duration", "resolution", "audio", "shot_type"),  # video
                ]
            ),
            JSON | st.sampled_from(["1280*1280", "0*0", "99999*1", "1280*720", "720P", "multi"]),
        )
        | JSON,
    },
)


@FAST
@given(body=SIM_BODY | JSON, encode=st.booleans())
def test_simulator_request_validation(body: Any, encode: bool) -> None:
    ran("simulator_validation")
    raw = json.dumps(body).encode() if encode else repr(body).encode()
    for route in sim_rules.Route:
        try:
            parsed = sim_rules.parse_body(raw)
            spec = sim_rules.resolve_model(parsed, route, BEIJING)
            sim_rules.validate(spec, route, parsed)
        except ApiError as error:
            assert 400 <= error.status < 500 and error.code and error.message


@SLOW
@given(st.binary(max_size=2048))
def test_simulator_decode_image(data: bytes) -> None:
    ran("simulator_images")
    try:
        decoded = decode_image(data, 1)
    except ApiError as error:
        assert error.status == 400 and error.message
        return
    assert decoded.width > 0 and decoded.height > 0


# --- Discord-side helpers -----------------------------------------------------------------------


def attachments(count: int) -> list[Any]:
    return [
        SimpleNamespace(filename=f"{k}.png", content_type="image/png", size=10)
        for k in range(count)
    ]


@FAST
@given(
    count=st.integers(0, 6),
    choice=st.none()
    | st.text(max_size=20)
    | st.from_regex(r"\A\s*\d{1,20}(\s*-\s*\d{1,20})?(\s*[,，]\s*\d{1,3})*\s*\Z")
    | st.sampled_from(["1-99999999", "1-999999999999999999", "3-1", "0", "1,1,1", "²", "全部"]),
)
def test_image_choice(count: int, choice: str | None) -> None:
    """The modal's "which images" field: a few images picked, or refused in words, quickly
    ("1-99999999" once built a list of a hundred million numbers: 17 s with the loop blocked)."""
    ran("image_choice")
    given_images = attachments(count)
    started = time.monotonic()
    try:
        picked = choose(given_images, choice)  # type: ignore[arg-type]
    except InputRejected as error:
        rejected_cleanly(error)
        return
    finally:
        assert time.monotonic() - started < 0.5
    assert 1 <= len(picked) <= MAX_INPUTS
    assert all(any(p is a for a in given_images) for p in picked)
    assert len({id(p) for p in picked}) == len(picked)


@FAST
@given(count=st.integers(1, 6), from_bot=st.booleans())
def test_default_choice_is_accepted(count: int, from_bot: bool) -> None:
    ran("default_choice")
    given_images = attachments(count)
    picked = choose(given_images, default_choice(given_images, from_bot))  # type: ignore[arg-type]
    assert 1 <= len(picked) <= MAX_INPUTS


@FAST
@given(
    st.text(max_size=40) | st.from_regex(r"\Awan:job:\d{1,30}:(reroll|edit|info|delete|cancel)\Z")
)
def test_job_button_custom_id(custom_id: str) -> None:
    ran("custom_id")
    match = re.fullmatch(JOB_BUTTON_TEMPLATE, custom_id)
    if match is None:
        return
    job_id = int(match["job_id"])  # what JobAction.from_custom_id does
    assert job_id >= 0 and custom_id.startswith("wan:job:")


@FAST
@given(st.text(max_size=300))
def test_thread_name(prompt: str) -> None:
    ran("thread_name")
    name = thread_name(prompt)
    assert 1 <= len(name) <= 100
    assert "\n" not in name
    assert "@everyone" not in name and "@here" not in name


@FAST
@given(st.none() | st.text(max_size=12) | st.sampled_from(["zh-CN", "zh-TW", "ZH", "en-US", "de"]))
def test_lang_for(locale: str | None) -> None:
    ran("lang_for")
    lang = lang_for(locale)
    assert lang in ("en", "zh")
    assert (lang == "zh") == bool(locale and locale.lower().startswith("zh"))


def test_figures() -> None:
    properties = [
        name
        for name, value in globals().items()
        if name.startswith("test_") and hasattr(value, "hypothesis")
    ]
    assert len(properties) >= 20
    record("fuzzing", properties=len(properties), examples=sum(RUNS.values()))
