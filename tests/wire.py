"""A scripted HTTP server on loopback: answers with the documented DashScope bodies.

It knows nothing of our simulator or client. A test queues replies per route (method + path)
and reads back what the client sent. It is the network boundary, so the client's whole stack
(headers, JSON, retries, parsing) runs for real.
"""

from __future__ import annotations

import asyncio
import io
import json
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from PIL import Image

DROP = "drop"  # a reply that closes the connection without answering


@dataclass
class Reply:
    status: int = 200
    body: Any = None  # dict → JSON; str → text; bytes → raw
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


@dataclass
class Seen:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any


def png_bytes(
    width: int = 64, height: int = 48, colour: tuple[int, int, int] = (200, 30, 30)
) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(buffer, "PNG")
    return buffer.getvalue()


class ScriptedServer:
    def __init__(self) -> None:
        self.replies: dict[tuple[str, str], list[Reply | str]] = defaultdict(list)
        self.seen: list[Seen] = []
        self.files: dict[str, bytes] = {"/files/result.png": png_bytes()}
        self._runner: web.AppRunner | None = None
        self.root = ""

    @property
    def base_url(self) -> str:
        return self.root + "/api/v1"

    def on(self, method: str, path: str, *replies: Reply | str) -> None:
        """Queue replies for `method path` (path under /api/v1); the last one repeats."""
        self.replies[(method.upper(), "/api/v1" + path)].extend(replies)

    def requests_to(self, path: str) -> list[Seen]:
        return [s for s in self.seen if s.path == "/api/v1" + path]

    async def start(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.root = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = raw
        self.seen.append(
            Seen(request.method, request.path, dict(request.query), dict(request.headers), body)
        )
        if request.method == "GET" and request.path in self.files:
            return web.Response(body=self.files[request.path], content_type="image/png")
        queue = self.replies.get((request.method, request.path))
        if not queue:
            return web.json_response(
                {"code": "NotFound", "message": "no scripted reply"}, status=404
            )
        reply = queue.pop(0) if len(queue) > 1 else queue[0]
        if reply == DROP:
            assert request.transport is not None
            request.transport.close()
            raise asyncio.CancelledError  # aiohttp drops the handler; the client sees a disconnect
        assert isinstance(reply, Reply)
        if reply.delay:
            await asyncio.sleep(reply.delay)
        if isinstance(reply.body, dict | list):
            text = json.dumps(reply.body).replace("{root}", self.root)
            return web.Response(
                text=text,
                status=reply.status,
                headers=reply.headers,
                content_type="application/json",
            )
        if isinstance(reply.body, bytes):
            return web.Response(body=reply.body, status=reply.status, headers=reply.headers)
        return web.Response(text=reply.body or "", status=reply.status, headers=reply.headers)
