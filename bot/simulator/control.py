"""Control routes for tests and demos, outside the DashScope API and without auth.

GET  /_sim/state    counts: tasks by status, submissions, task queries, peak query rate,
                    throttled, injected faults, requests per route, current faults
GET  /_sim/faults   the current fault settings
POST /_sim/faults   merge a JSON object into the fault settings (answers with all of them)
POST /_sim/reset    faults, TTLs and counters back to the config; tasks cleared; true time
POST /_sim/clock    {"advance": seconds}: move the simulator's clock forward
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from bot.simulator.api import SIM


def _bad(message: str) -> web.Response:
    return web.json_response({"error": message}, status=400)


async def _json_object(request: web.Request) -> dict[str, Any] | None:
    raw = await request.read()
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    return body if isinstance(body, dict) else None


async def state(request: web.Request) -> web.Response:
    return web.json_response(request.app[SIM].state())


async def get_faults(request: web.Request) -> web.Response:
    return web.json_response(request.app[SIM].faults.as_dict())


async def set_faults(request: web.Request) -> web.Response:
    body = await _json_object(request)
    if body is None:
        return _bad("the body must be a JSON object of fault settings")
    try:
        return web.json_response(request.app[SIM].set_faults(**body))
    except (TypeError, ValueError) as error:
        return _bad(str(error))


async def reset(request: web.Request) -> web.Response:
    sim = request.app[SIM]
    sim.reset()
    return web.json_response(sim.state())


async def clock(request: web.Request) -> web.Response:
    body = await _json_object(request)
    seconds = (body or {}).get("advance")
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds < 0:
        return _bad('send {"advance": seconds} with seconds >= 0')
    sim = request.app[SIM]
    sim.advance_clock(float(seconds))
    return web.json_response({"offset": sim.clock.offset, "now": sim.now()})


def add_control_routes(app: web.Application) -> None:
    app.router.add_get("/_sim/state", state)
    app.router.add_get("/_sim/faults", get_faults)
    app.router.add_post("/_sim/faults", set_faults)
    app.router.add_post("/_sim/reset", reset)
    app.router.add_post("/_sim/clock", clock)
