"""The DashScope routes under /api/v1: the five submit endpoints and the task API
(docs/dashscope.md §Endpoints)."""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from bot.simulator.clock import parse_list_time
from bot.simulator.errors import (
    ASYNC_NOT_SUPPORTED,
    CANCEL_UNSUPPORTED,
    INPUT_INAPPROPRIATE,
    INTERLEAVE_NOT_STREAMED,
    INTERLEAVE_STREAMED,
    IP_INFRINGEMENT,
    SYNC_NOT_SUPPORTED,
    ApiError,
    failure_status,
    invalid_parameter,
    parameter_invalid,
)
from bot.simulator.imageedit import check_mask
from bot.simulator.inputs import load_images
from bot.simulator.markers import find_markers
from bot.simulator.models import VIDEO_INPUT_SIDES, Route
from bot.simulator.results import result_url
from bot.simulator.rules import edit_default_size, parse_body, resolve_model, validate
from bot.simulator.state import Simulator
from bot.simulator.tasks import FAILED, PENDING, TERMINAL, UNKNOWN, Task
from bot.simulator.video import i2v_size, load_audio
from bot.simulator.wire import UrlFor, list_item, sync_body, task_body, unknown_body

SIM = web.AppKey("simulator", Simulator)
API_PREFIX = "/api/v1"
SUBMIT_CONTENT_TYPE = "application/json"
TASKS_CONTENT_TYPE = "application/json;charset=UTF-8"
DAY = 86400.0
MAX_PAGE_SIZE = 1000
SYNC_POLL_SECONDS = 0.25

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Dropped(Exception):
    """Close the connection without an answer (a lost response)."""


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str
    handler: Handler
    label: str  # the name the state's request counts use
    kind: str  # "submit" or "query": which faults apply
    content_type: str


REQUEST_ID = web.RequestKey("request_id", str)
API_KEY_ID = web.RequestKey("api_key_id", str)
ENDPOINT = web.RequestKey[Endpoint | None]("endpoint")


def reply(request: web.Request, body: dict[str, Any], status: int = 200) -> web.Response:
    """A JSON answer whose `request_id` is the one in the X-Request-ID header."""
    endpoint = request.get(ENDPOINT)
    content_type = endpoint.content_type if endpoint else SUBMIT_CONTENT_TYPE
    payload = {**body, "request_id": request[REQUEST_ID]}
    return web.Response(
        status=status,
        body=json.dumps(payload, ensure_ascii=False).encode(),
        headers={"Content-Type": content_type},
    )


def url_maker(request: web.Request, task: Task) -> UrlFor:
    sim = request.app[SIM]
    root = f"{request.scheme}://{request.host}"
    expires = int((task.ended_at or task.submitted_at) + sim.faults.result_ttl)
    ext = "mp4" if task.video is not None else "png"
    return lambda index: result_url(root, sim.url_secret, task.task_id, index, expires, ext)


async def _submit(request: web.Request, route: Route) -> web.Response:
    sim = request.app[SIM]
    body = parse_body(await request.read())
    spec = resolve_model(body, route, sim.config.region)
    is_async = request.headers.get("X-DashScope-Async", "").strip().lower() == "enable"
    mode = spec.routes[route]
    if is_async and mode == "sync":
        raise ApiError.of(ASYNC_NOT_SUPPORTED)
    if not is_async and mode == "async":
        raise ApiError.of(SYNC_NOT_SUPPORTED)
    sim.admit_submission(spec.name)
    generation = validate(spec, route, body)
    markers = find_markers(generation.prompt)
    if markers.moderate_input:
        raise ApiError.of(INPUT_INAPPROPRIATE)
    if markers.ip:
        raise ApiError.of(IP_INFRINGEMENT)
    if generation.interleave:
        streaming = request.headers.get("X-DashScope-SSE", "").strip().lower() == "enable"
        raise invalid_parameter(INTERLEAVE_STREAMED if streaming else INTERLEAVE_NOT_STREAMED)
    size = generation.size
    inputs: tuple[bytes, ...] = ()
    if generation.tool is not None:
        assert sim.http is not None
        sides = (spec.size.min_side, spec.size.max_side)
        names = ("base_image_url", "mask_image_url")[: len(generation.images)]
        images = await load_images(generation.images, sim.http, sides, names=names, keep_full=True)
        base = (images[0].width, images[0].height)
        if len(images) > 1:
            check_mask(base, (images[1].width, images[1].height))
        size = generation.tool.result_size(*base)
        inputs = tuple(image.full for image in images)
    elif generation.video is not None and generation.images:  # image-to-video
        assert sim.http is not None
        [image] = await load_images(
            generation.images, sim.http, VIDEO_INPUT_SIDES, names=("img_url",), keep_full=True
        )
        inputs = (image.full,)
        size = i2v_size(image.width, image.height, generation.video.resolution)
    elif generation.images:  # an edit's, or wan2.6-image's
        assert sim.http is not None
        images = await load_images(generation.images, sim.http)
        inputs = tuple(image.kept for image in images)
        if size is None:
            first = images[spec.size_from_input]
            size = edit_default_size(first.width, first.height)
    assert size is not None
    soundtrack = b""
    if generation.video is not None and generation.video.audio_url:
        assert sim.http is not None
        soundtrack = await load_audio(generation.video.audio_url, sim.http)
    task = sim.create_task(
        generation,
        size,
        inputs,
        request[REQUEST_ID],
        request[API_KEY_ID],
        listed=is_async,
        soundtrack=soundtrack,
    )
    if is_async:
        if sim.drop_after_submit():
            raise Dropped
        return reply(request, {"output": {"task_status": PENDING, "task_id": task.task_id}})
    status = await _run_to_end(sim, task)
    if sim.drop_after_submit():
        raise Dropped
    if status == FAILED:
        assert task.outcome.failure is not None
        code, message = task.outcome.failure
        raise ApiError(failure_status(code), code, message)
    return reply(request, sync_body(task, url_maker(request, task)))


async def _run_to_end(sim: Simulator, task: Task) -> str:
    """Wait (in real time, as scaled) until a synchronous call's task has ended."""
    while True:
        if sim.stopping:
            raise Dropped  # the server is going away mid-call
        now = sim.now()
        sim.store.refresh(task, now)
        status = task.status(now, math.inf)
        if status in TERMINAL:
            return status
        left = task.ended_at - now if task.ended_at is not None else SYNC_POLL_SECONDS
        await asyncio.sleep(min(max(left, 0.001), SYNC_POLL_SECONDS))


async def multimodal_generation(request: web.Request) -> web.Response:
    return await _submit(request, Route.MULTIMODAL)


async def image_generation(request: web.Request) -> web.Response:
    return await _submit(request, Route.IMAGE_GENERATION)


async def text2image(request: web.Request) -> web.Response:
    return await _submit(request, Route.TEXT2IMAGE)


async def image2image(request: web.Request) -> web.Response:
    return await _submit(request, Route.IMAGE2IMAGE)


async def video_synthesis(request: web.Request) -> web.Response:
    return await _submit(request, Route.VIDEO)


async def get_task(request: web.Request) -> web.Response:
    sim = request.app[SIM]
    sim.admit_query("get")
    task_id = request.match_info["task_id"]
    now = sim.now()
    task = sim.store.visible(task_id, now)
    status = task.status(now, sim.faults.task_ttl) if task else UNKNOWN
    if task is None or status == UNKNOWN:
        return reply(request, unknown_body(task_id))
    return reply(request, task_body(task, status, url_maker(request, task)))


async def cancel_task(request: web.Request) -> web.Response:
    sim = request.app[SIM]
    sim.admit_query("cancel")
    now = sim.now()
    task = sim.store.visible(request.match_info["task_id"], now)
    if (
        task is None
        or task.status(now, sim.faults.task_ttl) != PENDING
        or not sim.store.cancel(task, now)
    ):
        raise ApiError.of(CANCEL_UNSUPPORTED)
    return reply(request, {})


def _page_number(query: Any, name: str, default: int) -> int:
    text = query.get(name)
    if text is None or text == "":
        return default
    try:
        value = int(text)
    except ValueError:
        raise parameter_invalid(name) from None
    if value < 1:
        raise parameter_invalid(name)
    return value


def _list_window(query: Any, now: float) -> tuple[float, float]:
    """[start, end) in epoch seconds from start_time/end_time, at most 24 hours wide."""
    bounds: dict[str, float] = {}
    for name in ("start_time", "end_time"):
        text = query.get(name)
        if text:
            try:
                bounds[name] = parse_list_time(text)
            except ValueError:
                raise parameter_invalid(name) from None
    start, end = bounds.get("start_time"), bounds.get("end_time")
    if start is None and end is None:
        return now - DAY, now + 1
    if end is None:
        assert start is not None
        return start, start + DAY
    if start is None:
        start = end - DAY
    if end < start:
        raise invalid_parameter("end_time must not be earlier than start_time.")
    if end - start > DAY:
        raise invalid_parameter("The time range between start_time and end_time exceeds 24 hours.")
    return start, end + 1  # the end second itself is included


async def list_tasks(request: web.Request) -> web.Response:
    sim = request.app[SIM]
    sim.admit_query("list")
    query = request.query
    page_no = _page_number(query, "page_no", 1)
    page_size = min(_page_number(query, "page_size", 10), MAX_PAGE_SIZE)
    now = sim.now()
    start, end = _list_window(query, now)
    sim.store.advance(now)
    ttl = sim.faults.task_ttl
    if query.get("task_id"):
        found = sim.store.visible(query["task_id"], now)
        candidates = [found] if found else []
    else:
        candidates = [t for t in sim.store.listed() if start <= t.submitted_at < end]
    wanted = {
        "model_name": query.get("model_name"),
        "status": query.get("status"),
        "region": query.get("region"),
        "api_key_id": query.get("api_key_id"),
    }
    items = []
    for task in sorted(candidates, key=lambda t: t.submitted_at, reverse=True):
        status = task.status(now, ttl)
        if status == UNKNOWN:
            continue
        item = list_item(task, status, sim.config.region)
        if all(value is None or item.get(key) == value for key, value in wanted.items()):
            items.append(item)
    total = len(items)
    first = (page_no - 1) * page_size
    return reply(
        request,
        {
            "total": total,
            "data": items[first : first + page_size],
            "total_page": math.ceil(total / page_size),
            "page_no": page_no,
            "page_size": page_size,
        },
    )


ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint(
        "POST",
        "/services/aigc/multimodal-generation/generation",
        multimodal_generation,
        "multimodal-generation",
        "submit",
        SUBMIT_CONTENT_TYPE,
    ),
    Endpoint(
        "POST",
        "/services/aigc/image-generation/generation",
        image_generation,
        "image-generation",
        "submit",
        SUBMIT_CONTENT_TYPE,
    ),
    Endpoint(
        "POST",
        "/services/aigc/text2image/image-synthesis",
        text2image,
        "text2image",
        "submit",
        SUBMIT_CONTENT_TYPE,
    ),
    Endpoint(
        "POST",
        "/services/aigc/image2image/image-synthesis",
        image2image,
        "image2image",
        "submit",
        SUBMIT_CONTENT_TYPE,
    ),
    Endpoint(
        "POST",
        "/services/aigc/video-generation/video-synthesis",
        video_synthesis,
        "video-synthesis",
        "submit",
        SUBMIT_CONTENT_TYPE,
    ),
    Endpoint("GET", "/tasks", list_tasks, "tasks.list", "query", TASKS_CONTENT_TYPE),
    Endpoint("GET", "/tasks/", list_tasks, "tasks.list", "query", TASKS_CONTENT_TYPE),
    Endpoint("GET", "/tasks/{task_id}", get_task, "tasks.get", "query", TASKS_CONTENT_TYPE),
    Endpoint("GET", "/tasks/{task_id}/", get_task, "tasks.get", "query", TASKS_CONTENT_TYPE),
    Endpoint(
        "POST", "/tasks/{task_id}/cancel", cancel_task, "tasks.cancel", "query", TASKS_CONTENT_TYPE
    ),
)
