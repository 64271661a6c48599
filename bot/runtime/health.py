"""An optional HTTP endpoint for operators: /healthz and /metrics (Prometheus text)."""

from __future__ import annotations

from aiohttp import web

from bot.dispatch.engine import Engine


def health_app(engine: Engine) -> web.Application:
    async def healthz(request: web.Request) -> web.Response:
        if engine.healthy:
            return web.Response(text="ok\n")
        return web.Response(text="engine loops are not running\n", status=503)

    async def metrics(request: web.Request) -> web.Response:
        body = engine.metrics.render(await engine.gauges())
        return web.Response(text=body, content_type="text/plain", charset="utf-8")

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    return app


async def start_health(engine: Engine, host: str, port: int) -> web.AppRunner:
    runner = web.AppRunner(health_app(engine), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
