"""The DashScope client against a scripted server answering with the documented bodies."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from datetime import UTC, datetime

import httpx
import pytest

from bot import dashscope as ds
from bot.backoff import Backoff
from bot.dashscope import constants
from bot.dashscope import errors as ds_errors
from bot.dashscope.requests import ImageRequest, validate
from bot.dashscope.results import TaskMetrics
from bot.dashscope.retry import RetryPolicy
from bot.presenter import describe, utc_time
from tests import documented as doc
from tests.wire import DROP, Reply, ScriptedServer

KEY = "sk-test-0123456789abcdef"
FAST = RetryPolicy(max_retries=3, backoff=Backoff(initial=0.01, cap=0.05))
T2I_ASYNC = "/services/aigc/image-generation/generation"
T2I_SYNC = "/services/aigc/multimodal-generation/generation"
I2I = "/services/aigc/image2image/image-synthesis"
LEGACY = "/services/aigc/text2image/image-synthesis"
TASK = "/tasks/0385dc79-5ff8-4d82-bcb6-xxxxxx"
DATA_URI = "data:image/png;base64,iVBORw0KGgo="


@pytest.fixture
async def server():
    srv = ScriptedServer()
    await srv.start()
    yield srv
    await srv.stop()


@pytest.fixture
async def client(server):
    async with ds.DashScopeClient(KEY, server.base_url, retry=FAST) as c:
        yield c


def t2i(**kw) -> ImageRequest:
    return validate(ImageRequest(model="wan2.6-t2i", prompt="a flower shop", **kw))


def edit(**kw) -> ImageRequest:
    return validate(
        ImageRequest(model="wan2.5-i2i-preview", prompt="make it blue", images=(DATA_URI,), **kw)
    )


# --- requests on the wire ----------------------------------------------------------------------


async def test_submit_t2i_async_wire(server, client):
    server.on("POST", T2I_ASYNC, Reply(200, doc.SUBMITTED))
    task = await client.submit(t2i(negative_prompt="blurry", seed=7, prompt_extend=False))
    assert task.task_id == "0385dc79-5ff8-4d82-bcb6-xxxxxx"
    assert task.state is ds.TaskState.PENDING
    assert task.request_id == "4909100c-7b5a-9f92-bfe5-xxxxxx"
    [seen] = server.requests_to(T2I_ASYNC)
    assert seen.headers["X-DashScope-Async"] == "enable"
    assert seen.headers["Authorization"] == f"Bearer {KEY}"
    assert seen.body == {
        "model": "wan2.6-t2i",
        "input": {"messages": [{"role": "user", "content": [{"text": "a flower shop"}]}]},
        "parameters": {
            "n": 1,
            "size": "1280*1280",
            "seed": 7,
            "prompt_extend": False,
            "negative_prompt": "blurry",
        },
    }


async def test_submit_edit_wire(server, client):
    server.on("POST", I2I, Reply(200, doc.SUBMITTED))
    await client.submit(edit(negative_prompt="low res", n=2, watermark=True))
    [seen] = server.requests_to(I2I)
    assert seen.headers["X-DashScope-Async"] == "enable"
    assert seen.body == {
        "model": "wan2.5-i2i-preview",
        "input": {"prompt": "make it blue", "negative_prompt": "low res", "images": [DATA_URI]},
        "parameters": {"n": 2, "watermark": True},
    }


async def test_submit_legacy_t2i_wire(server, client):
    server.on("POST", LEGACY, Reply(200, doc.SUBMITTED))
    request = validate(ImageRequest(model="wan2.2-t2i-flash", prompt="cat", negative_prompt="dog"))
    await client.submit(request)
    [seen] = server.requests_to(LEGACY)
    assert seen.body["input"] == {"prompt": "cat", "negative_prompt": "dog"}
    assert seen.body["parameters"]["size"] == "1024*1024"


async def test_sync_generation_parses_the_seed_answer(server, client):
    server.on("POST", T2I_SYNC, Reply(200, doc.SYNC_SUCCESS))
    result = await client.generate(t2i())
    [seen] = server.requests_to(T2I_SYNC)
    assert "X-DashScope-Async" not in seen.headers
    assert result.state is ds.TaskState.SUCCEEDED
    assert result.task_id is None
    assert result.image_count == 1 and result.size == "1280*1280"
    assert result.images[0].url.startswith(server.root + "/files/result.png?Expires=")


async def test_sync_refused_for_async_only_models(client):
    with pytest.raises(ValueError, match="no synchronous endpoint"):
        await client.generate(edit())


# --- reading tasks ------------------------------------------------------------------------------


async def test_task_states_from_documented_bodies(server, client):
    server.on(
        "GET",
        TASK,
        Reply(200, doc.PENDING),
        Reply(200, doc.RUNNING),
        Reply(200, doc.SUCCEEDED_RESULTS),
    )
    pending = await client.get_task("0385dc79-5ff8-4d82-bcb6-xxxxxx")
    assert pending.state is ds.TaskState.PENDING and pending.metrics is None
    running = await client.get_task("0385dc79-5ff8-4d82-bcb6-xxxxxx")
    assert running.state is ds.TaskState.RUNNING
    assert running.metrics == TaskMetrics(4, 0, 0)
    # 17:38:24.817 in UTC+8 is 09:38:24.817 UTC (the capture's Date header agrees).
    assert running.submit_time == datetime(2024, 3, 1, 9, 38, 24, 817000, tzinfo=UTC)
    done = await client.get_task("0385dc79-5ff8-4d82-bcb6-xxxxxx")
    assert done.state is ds.TaskState.SUCCEEDED
    assert done.actual_prompt == "将粉色褶皱连衣裙替换为一件复古风格的蕾丝长裙，…"
    assert done.images[0].orig_prompt.startswith("将花卉连衣裙")
    assert done.billed_images == 1
    assert done.end_time == datetime(2025, 9, 23, 14, 15, 23, 456000, tzinfo=UTC)


async def test_choices_shape_task(server, client):
    server.on("GET", TASK, Reply(200, doc.SUCCEEDED_CHOICES))
    result = await client.get_task("0385dc79-5ff8-4d82-bcb6-xxxxxx")
    assert result.state is ds.TaskState.SUCCEEDED
    assert len(result.images) == 1 and result.image_count == 1
    assert result.actual_prompt is None


async def test_partial_failure(server, client):
    server.on("GET", TASK, Reply(200, doc.PARTIAL))
    result = await client.get_task("0385dc79-5ff8-4d82-bcb6-xxxxxx")
    assert result.state is ds.TaskState.SUCCEEDED
    assert len(result.images) == 1
    assert [f.code for f in result.failures] == ["InternalError.Timeout"]
    assert result.billed_images == 1
    assert result.metrics.failed == 1


async def test_failed_task_raises_task_failed(server, client):
    server.on("GET", TASK, Reply(200, doc.FAILED))
    result = await client.get_task("0385dc79-5ff8-4d82-bcb6-xxxxxx")
    assert result.state is ds.TaskState.FAILED and result.image_count is None
    with pytest.raises(ds.TaskFailedError) as info:
        ds.raise_for_task(result)
    assert info.value.code == "InvalidParameter"
    assert info.value.task_id == "86ecf553-d340-4e21-af6e-xxxxxx"
    assert "InvalidParameter" in describe(info.value, "en", moment=utc_time)
    assert "InvalidParameter" in describe(info.value, "zh", moment=utc_time)


async def test_failed_moderation_is_content_rejected_output(server, client):
    server.on("GET", TASK, Reply(200, doc.FAILED_MODERATION))
    with pytest.raises(ds.ContentRejectedError) as info:
        await client.wait("0385dc79-5ff8-4d82-bcb6-xxxxxx")
    assert info.value.subject == "output"
    assert "generated image" in describe(info.value, "en", moment=utc_time)


async def test_unknown_task_is_expired(server, client):
    server.on("GET", TASK, Reply(200, doc.UNKNOWN))
    with pytest.raises(ds.TaskExpiredError):
        await client.wait("0385dc79-5ff8-4d82-bcb6-xxxxxx")


async def test_wait_reports_each_reading(server, client):
    server.on(
        "GET",
        TASK,
        Reply(200, doc.PENDING),
        Reply(200, doc.RUNNING),
        Reply(200, doc.SUCCEEDED_RESULTS),
    )
    states = []
    result = await client.wait(
        "0385dc79-5ff8-4d82-bcb6-xxxxxx",
        on_update=lambda r: states.append(r.state),
        intervals=(0.01,),
    )
    assert states == ["PENDING", "RUNNING", "SUCCEEDED"]
    assert result.images


async def test_unfamiliar_keys_and_states_are_tolerated(server, client):
    body = {
        "request_id": "r",
        "new_top_level": {"x": 1},
        "output": {"task_id": "t", "task_status": "SUSPENDED", "brand_new": [1, 2]},
    }
    server.on("GET", "/tasks/t", Reply(200, body))
    result = await client.get_task("t")
    assert result.state is ds.TaskState.SUSPENDED and not result.state.finished
    assert result.extra == {"brand_new": [1, 2]}


async def test_malformed_success_is_a_format_error(server, client):
    server.on("GET", "/tasks/t", Reply(200, {"request_id": "r", "output": {"task_id": "t"}}))
    with pytest.raises(ds.ResponseFormatError):
        await client.get_task("t")
    server.on("GET", "/tasks/u", Reply(200, "<html>not json</html>"))
    with pytest.raises(ds.ResponseFormatError):
        await client.get_task("u")


async def test_task_ids_cannot_change_the_path(client):
    for bad in ("", "../secrets", "a/b", "x?y=1", ".."):
        with pytest.raises(ValueError):
            await client.get_task(bad)


async def test_list_tasks(server, client):
    server.on("GET", "/tasks", Reply(200, doc.LIST))
    start = datetime(2025, 4, 25, 0, 0, tzinfo=UTC)
    page = await client.list_tasks(
        status=ds.TaskState.RUNNING, model="wan2.5-i2i-preview", start=start, page_size=100
    )
    [seen] = server.requests_to("/tasks")
    assert seen.query == {
        "page_no": "1",
        "page_size": "100",
        "start_time": "20250425080000",  # UTC+8
        "model_name": "wan2.5-i2i-preview",
        "status": "RUNNING",
    }
    assert page.total == 2 and len(page.items) == 2
    assert page.items[0].state is ds.TaskState.RUNNING and page.items[0].ended is None
    assert page.items[1].ended == datetime.fromtimestamp(1745568302.481, UTC)


async def test_cancel(server, client):
    server.on("POST", TASK + "/cancel", Reply(200, doc.CANCELLED_OK))
    assert (
        await client.cancel_task("0385dc79-5ff8-4d82-bcb6-xxxxxx") == doc.CANCELLED_OK["request_id"]
    )
    server.on(
        "POST",
        "/tasks/done/cancel",
        Reply(
            400,
            {
                "request_id": "4d496c94-1389-9ca9-a92a-3e732f675686",
                "code": "UnsupportedOperation",
                "message": "Failed to cancel the task, please confirm if the task is in PENDING status.",
            },
        ),
    )
    with pytest.raises(ds.BadRequestError) as info:
        await client.cancel_task("done")
    assert info.value.code == "UnsupportedOperation"
    assert len(server.requests_to("/tasks/done/cancel")) == 1  # a 400 is not retried


# --- errors ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("status", "code", "message", "cls"), doc.ERRORS)
async def test_documented_errors_map_to_typed_errors(server, client, status, code, message, cls):
    server.on(
        "POST",
        I2I,
        Reply(
            status,
            {
                "request_id": "a1c0561c-1dfe-98a6-a62f-983577b8bc5e",
                "code": code,
                "message": message,
            },
        ),
    )
    with pytest.raises(ds.DashScopeError) as info:
        await client.submit(edit())
    error = info.value
    assert type(error).__name__ == cls
    assert (error.status, error.code, error.message) == (status, code, message)
    assert error.request_id == "a1c0561c-1dfe-98a6-a62f-983577b8bc5e"
    text = str(error)
    assert code in text and "a1c0561c-1dfe-98a6-a62f-983577b8bc5e" in text
    for lang in ("en", "zh"):
        assert describe(error, lang, moment=utc_time).strip()
    assert describe(error, "en", moment=utc_time) != describe(error, "zh", moment=utc_time)


@pytest.mark.parametrize(
    ("message", "subject"),
    [
        ("Green net check failed for input text", "input_text"),
        ("Green net check failed for input image", "input_image"),
        (
            "Green net check failed for image (input): Input data may contain inappropriate content.",
            "input_image",
        ),
        ("Output data may contain inappropriate content.", "output"),
        ("Input data may contain inappropriate content.", "unknown"),
        ("Input or output data may contain inappropriate content.", "unknown"),
        ("Input text data may contain inappropriate content.", "input_text"),
    ],
)
def test_content_subject_from_wording(message, subject):
    error = ds_errors.error_from_response(400, "DataInspectionFailed", message, "r")
    assert isinstance(error, ds.ContentRejectedError)
    assert error.subject == subject


def test_ip_infringement_message():
    error = ds_errors.error_from_response(
        400, "IPInfringementSuspect", "Input data is suspected…", "r"
    )
    assert "copyright" in describe(error, "en", moment=utc_time)
    assert "知识产权" in describe(error, "zh", moment=utc_time)


def test_unknown_codes_fall_back_on_status():
    assert type(ds_errors.error_from_response(502, None, "Bad gateway", None)) is ds.ServerError
    assert type(ds_errors.error_from_response(418, "Teapot", "?", None)) is ds.DashScopeError
    assert type(ds_errors.error_from_response(429, None, "slow down", None)) is ds.RateLimitedError


# --- retries -------------------------------------------------------------------------------------


async def test_throttled_submission_is_retried_honouring_retry_after(server, client):
    throttled = {
        "request_id": "r1",
        "code": "Throttling.RateQuota",
        "message": "Requests rate limit exceeded, please try again later.",
    }
    server.on("POST", I2I, Reply(429, throttled, {"Retry-After": "0.3"}), Reply(200, doc.SUBMITTED))
    started = time.monotonic()
    task = await client.submit(edit())
    assert time.monotonic() - started >= 0.3
    assert task.task_id == doc.SUBMITTED["output"]["task_id"]
    assert len(server.requests_to(I2I)) == 2


async def test_server_error_envelope_on_submit_is_retried(server, client):
    error = {"request_id": "r", "code": "InternalError", "message": "An internal error has occured"}
    server.on(
        "POST",
        I2I,
        Reply(500, error),
        Reply(503, {**error, "code": "ModelUnavailable"}),
        Reply(200, doc.SUBMITTED),
    )
    await client.submit(edit())
    assert len(server.requests_to(I2I)) == 3


async def test_retries_give_up_after_the_policy(server, client):
    error = {"request_id": "r", "code": "InternalError", "message": "boom"}
    server.on("GET", "/tasks/t", Reply(500, error))
    with pytest.raises(ds.ServerError):
        await client.get_task("t")
    assert len(server.requests_to("/tasks/t")) == 1 + FAST.max_retries


async def test_long_retry_after_is_not_slept_on(server, client):
    throttled = {
        "request_id": "r",
        "code": "Throttling",
        "message": "Requests throttling triggered.",
    }
    server.on("GET", "/tasks/t", Reply(429, throttled, {"Retry-After": "120"}))
    started = time.monotonic()
    with pytest.raises(ds.RateLimitedError) as info:
        await client.get_task("t")
    assert time.monotonic() - started < 5
    assert info.value.retry_after == pytest.approx(120)
    assert len(server.requests_to("/tasks/t")) == 1


async def test_gateway_error_without_envelope_on_submit_is_not_resent(server, client):
    server.on("POST", I2I, Reply(504, "upstream request timeout"), Reply(200, doc.SUBMITTED))
    with pytest.raises(ds.SubmissionOutcomeUnknownError):
        await client.submit(edit())
    assert len(server.requests_to(I2I)) == 1


async def test_lost_answer_on_submit_is_not_resent(server, client):
    server.on("POST", I2I, DROP, Reply(200, doc.SUBMITTED))
    with pytest.raises(ds.SubmissionOutcomeUnknownError) as info:
        await client.submit(edit())
    assert len(server.requests_to(I2I)) == 1
    assert "twice" in describe(info.value, "en", moment=utc_time)


async def test_lost_answer_on_sync_generation_is_not_resent(server, client):
    server.on("POST", T2I_SYNC, DROP, Reply(200, doc.SYNC_SUCCESS))
    with pytest.raises(ds.SubmissionOutcomeUnknownError):
        await client.generate(t2i())
    assert len(server.requests_to(T2I_SYNC)) == 1


async def test_lost_answer_on_a_query_is_retried(server, client):
    server.on("GET", TASK, DROP, Reply(200, doc.RUNNING))
    result = await client.get_task("0385dc79-5ff8-4d82-bcb6-xxxxxx")
    assert result.state is ds.TaskState.RUNNING
    assert len(server.requests_to(TASK)) == 2


async def test_read_timeout_on_query_is_retried(server, client, monkeypatch):
    server.on("GET", "/tasks/t", Reply(200, doc.RUNNING, delay=1.0), Reply(200, doc.RUNNING))
    monkeypatch.setattr(constants, "QUERY_TIMEOUT", httpx.Timeout(0.3))
    result = await client.get_task("t")
    assert result.state is ds.TaskState.RUNNING
    assert len(server.requests_to("/tasks/t")) == 2


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def test_connection_refused_is_retried_then_raised():
    url = f"http://127.0.0.1:{_closed_port()}/api/v1"
    async with ds.DashScopeClient(KEY, url, retry=FAST) as client:
        with pytest.raises(ds.ConnectionFailedError) as info:
            await client.submit(edit())  # never sent, so retrying a submission is safe
    assert KEY not in str(info.value)


# --- secrets --------------------------------------------------------------------------------------


async def test_api_key_never_leaks(server, client, caplog):
    caplog.set_level(logging.DEBUG)
    assert KEY not in repr(client)
    server.on(
        "POST",
        I2I,
        Reply(
            401,
            {"request_id": "r", "code": "InvalidApiKey", "message": "Invalid API-key provided."},
        ),
    )
    with pytest.raises(ds.AuthenticationError) as info:
        await client.submit(edit())
    assert KEY not in str(info.value) and KEY not in repr(info.value)
    assert KEY not in describe(info.value, "en", moment=utc_time)
    server.on(
        "GET", "/tasks/t", Reply(500, {"request_id": "r", "code": "InternalError", "message": "x"})
    )
    with pytest.raises(ds.ServerError):
        await client.get_task("t")
    assert caplog.records, "expected debug logs of the requests"
    assert all(KEY not in record.getMessage() for record in caplog.records)


async def test_workspace_header(server):
    server.on("GET", "/tasks/t", Reply(200, doc.RUNNING))
    async with ds.DashScopeClient(KEY, server.base_url, workspace="ws-123") as client:
        await client.get_task("t")
    assert server.seen[-1].headers["X-DashScope-WorkSpace"] == "ws-123"


async def test_concurrent_calls_share_one_client(server, client):
    server.on("GET", TASK, Reply(200, doc.RUNNING))
    results = await asyncio.gather(
        *(client.get_task("0385dc79-5ff8-4d82-bcb6-xxxxxx") for _ in range(20))
    )
    assert {r.state for r in results} == {ds.TaskState.RUNNING}
