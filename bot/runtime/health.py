"""An optional HTTP endpoint for operators: /healthz and /metrics (Prometheus text).

/healthz answers 200 with `ok` and this process's role (`single`: alone on SQLite;
`dispatcher` or `standby` in a cluster), and for the dispatcher its lease's epoch and age in
seconds; 503 when the process should be dispatching and its engine loops are not running.
"""

from __future__ import annotations

import logging

from aiohttp import web

from bot.runtime.dispatcher import Dispatch

log = logging.getLogger(__name__)


def health_app(dispatch: Dispatch) -> web.Application:
    engine = dispatch.engine

    async def healthz(request: web.Request) -> web.Response:
        role = dispatch.role
        lines = [f"role: {role}"]
        age = dispatch.lease_age()
        if age is not None and dispatch.lease is not None:
            lines += [f"lease_epoch: {dispatch.lease.epoch}", f"lease_age_seconds: {age:.1f}"]
        if role == "standby" or engine.healthy:
            return web.Response(text="\n".join(["ok", *lines]) + "\n")
        return web.Response(
            text="\n".join(["engine loops are not running", *lines]) + "\n", status=503
        )

    async def metrics(request: web.Request) -> web.Response:
        gauges = await engine.gauges()
        gauges["wanbot_dispatcher"] = {(): 1.0 if dispatch.role != "standby" else 0.0}
        age = dispatch.lease_age()
        if age is not None:
            gauges["wanbot_lease_age_seconds"] = {(): age}
        body = engine.metrics.render(gauges)
        return web.Response(text=body, content_type="text/plain", charset="utf-8")

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    return app


async def start_health(dispatch: Dispatch, host: str, port: int) -> web.AppRunner:
    runner = web.AppRunner(health_app(dispatch), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    log.info("health endpoint on http://%s:%d", host, port)
    return runner
