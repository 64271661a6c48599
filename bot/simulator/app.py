"""The aiohttp application: API middleware (request ids, latency, auth, faults, error envelopes),
the signed result route and the control routes."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import uuid
from collections.abc import AsyncIterator
from functools import partial
from typing import NoReturn

import aiohttp
from aiohttp import web

from bot.simulator.api import (
    API_KEY_ID,
    API_PREFIX,
    ENDPOINT,
    ENDPOINTS,
    REQUEST_ID,
    SIM,
    Dropped,
    Endpoint,
    Handler,
    reply,
)
from bot.simulator.clip import ClipSpec, encode_clip
from bot.simulator.control import add_control_routes
from bot.simulator.errors import BODY_TOO_LARGE, NOT_FOUND, URL_ERROR, ApiError
from bot.simulator.faults import ACTIONS
from bot.simulator.models import Protocol
from bot.simulator.render import render_edit, render_generation, render_imageedit
from bot.simulator.results import oss_error, signature_matches
from bot.simulator.state import Simulator
from bot.simulator.tasks import Task

MAX_BODY_BYTES = 64 * 1024 * 1024  # base64 images are big
_BY_PATH: dict[str, Endpoint] = {API_PREFIX + endpoint.path: endpoint for endpoint in ENDPOINTS}


def _endpoint(request: web.Request) -> Endpoint | None:
    resource = request.match_info.route.resource
    return _BY_PATH.get(resource.canonical) if resource is not None else None


def _unrouted(request: web.Request, error: web.HTTPException) -> ApiError:
    if isinstance(error, web.HTTPMethodNotAllowed):
        return ApiError(
            400, "InvalidParameter", f"Request method '{request.method}' is not supported."
        )
    if request.path.startswith(API_PREFIX + "/services/"):
        return ApiError.of(URL_ERROR)
    return ApiError.of(NOT_FOUND)


async def _drop(request: web.Request) -> NoReturn:
    """End the exchange with no response at all, as a lost connection would."""
    with contextlib.suppress(Exception):
        await request.read()  # let the client finish sending first
    if request.transport is not None:
        request.transport.abort()
    raise web.HTTPException()


async def _api_call(request: web.Request, handler: Handler) -> web.StreamResponse:
    sim = request.app[SIM]
    endpoint = _endpoint(request)
    request[ENDPOINT] = endpoint
    sim.requests[endpoint.label if endpoint else "unrouted"] += 1
    if sim.faults.latency_ms:
        await asyncio.sleep(sim.faults.latency_ms / 1000)
    routing_error = request.match_info.http_exception
    if endpoint is None or routing_error is not None:
        raise _unrouted(request, routing_error or web.HTTPNotFound())
    request[API_KEY_ID] = sim.authenticate(request.headers.get("Authorization"))
    action = sim.pick_fault(endpoint.kind)
    if action == "drop":
        raise Dropped
    if action:
        spec = ACTIONS[action]
        assert spec is not None
        raise ApiError.of(spec)
    return await handler(request)


@web.middleware
async def api_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if not request.path.startswith(API_PREFIX + "/"):
        return await handler(request)
    request[REQUEST_ID] = str(uuid.uuid4())
    try:
        response = await _api_call(request, handler)
    except ApiError as error:
        response = reply(request, {"code": error.code, "message": error.message}, error.status)
    except web.HTTPRequestEntityTooLarge:
        response = reply(
            request,
            {"code": BODY_TOO_LARGE.code, "message": BODY_TOO_LARGE.message},
            BODY_TOO_LARGE.status,
        )
    except Dropped:
        await _drop(request)
    response.headers["X-Request-ID"] = request[REQUEST_ID]
    return response


def _oss_refusal(status: int, code: str, message: str) -> web.Response:
    request_id = secrets.token_hex(12).upper()
    return web.Response(
        status=status,
        text=oss_error(code, message, request_id),
        content_type="application/xml",
        headers={"x-oss-request-id": request_id},
    )


async def _signed_task(request: web.Request, ext: str) -> Task | web.Response:
    """The ended task a signed result URL names, or the OSS-like refusal."""
    sim = request.app[SIM]
    sim.requests["results"] += 1
    task_id = request.match_info["task_id"]
    index = int(request.match_info["index"])
    expires_text = request.query.get("Expires", "")
    given = request.query.get("Signature", "")
    if not expires_text.isdigit() or not given:
        return _oss_refusal(
            403, "AccessDenied", "You have no right to access this object because of bucket acl."
        )
    now = sim.now()
    if now > int(expires_text):
        return _oss_refusal(403, "AccessDenied", "Request has expired.")
    if not signature_matches(sim.url_secret, task_id, index, int(expires_text), given, ext):
        return _oss_refusal(
            403,
            "SignatureDoesNotMatch",
            "The request signature we calculated does not match the signature you provided. "
            "Check your key and signing method.",
        )
    task = sim.store.get(task_id, now)
    if (
        task is None
        or task.ended_at is None
        or task.ended_at > now
        or index not in task.succeeded_images()
        or (task.video is not None) != (ext == "mp4")
    ):
        return _oss_refusal(404, "NoSuchKey", "The specified key does not exist.")
    return task


async def result_image(request: web.Request) -> web.Response:
    """GET /results/{task_id}/{index}.png?Expires=..&OSSAccessKeyId=sim&Signature=.."""
    sim = request.app[SIM]
    task = await _signed_task(request, "png")
    if isinstance(task, web.Response):
        return task
    index = int(request.match_info["index"])
    width, height = task.size
    seed = task.seed + index  # the service documents seeds seed, seed+1, ... for n images
    if task.tool is not None:
        render = partial(
            render_imageedit, task.tool, task.prompt, seed, task.inputs, watermark=task.watermark
        )
    elif task.inputs:  # an edit's, or wan2.6-image's
        render = partial(
            render_edit,
            task.prompt,
            seed,
            width,
            height,
            task.inputs,
            index,
            watermark=task.watermark,
            blend=task.model.protocol is not Protocol.EDIT,
        )
    else:
        render = partial(
            render_generation, task.prompt, seed, width, height, watermark=task.watermark
        )
    png = await sim.renders.get((task.task_id, index, task.submitted_at), render)
    return web.Response(body=png, content_type="image/png")


async def result_video(request: web.Request) -> web.Response:
    """GET /results/{task_id}/0.mp4?Expires=..&OSSAccessKeyId=sim&Signature=.."""
    sim = request.app[SIM]
    task = await _signed_task(request, "mp4")
    if isinstance(task, web.Response):
        return task
    assert task.video is not None
    width, height = task.size
    spec = ClipSpec(
        width=width,
        height=height,
        seconds=task.video.seconds,
        audio=task.video.audio,
        prompt=task.prompt,
        seed=task.seed,
        watermark=task.watermark,
        image=task.inputs[0] if task.inputs else b"",
        target_mb=task.video_mb,
        soundtrack=task.soundtrack,
    )
    data = await sim.clips.get(spec, partial(encode_clip, spec))
    return web.Response(body=data, content_type="video/mp4")


async def _http_client(app: web.Application) -> AsyncIterator[None]:
    """The session edits use to fetch input image URLs."""
    sim = app[SIM]
    sim.stopping = False
    async with aiohttp.ClientSession() as session:
        sim.http = session
        yield
        sim.http = None


async def _stop_waiting(app: web.Application) -> None:
    """Let synchronous calls end now rather than hold the shutdown for their whole duration."""
    app[SIM].stopping = True


def create_app(sim: Simulator) -> web.Application:
    app = web.Application(client_max_size=MAX_BODY_BYTES, middlewares=[api_middleware])
    app[SIM] = sim
    for endpoint in ENDPOINTS:
        app.router.add_route(endpoint.method, API_PREFIX + endpoint.path, endpoint.handler)
    app.router.add_get(r"/results/{task_id}/{index:\d+}.png", result_image)
    app.router.add_get(r"/results/{task_id}/{index:\d+}.mp4", result_video)
    add_control_routes(app)
    app.cleanup_ctx.append(_http_client)
    app.on_shutdown.append(_stop_waiting)
    return app
