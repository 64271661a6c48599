"""Starting and stopping a simulator: on the caller's event loop, or on its own thread."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self, TypeVar

from aiohttp import web

from bot.simulator.app import create_app
from bot.simulator.config import SimulatorConfig
from bot.simulator.state import Simulator

SHUTDOWN_SECONDS = 1.0  # how long stop() lets in-flight requests (a sync call) finish
T = TypeVar("T")


@dataclass
class RunningSimulator:
    sim: Simulator
    host: str
    port: int
    _runner: web.AppRunner

    @property
    def root_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        return f"{self.root_url}/api/v1"

    async def stop(self) -> None:
        await self._runner.cleanup()


async def start_simulator(
    config: SimulatorConfig | None = None, host: str = "127.0.0.1", port: int = 0
) -> RunningSimulator:
    """Serve a new simulator on host:port (0: any free port) until `stop()`."""
    sim = Simulator(config)
    runner = web.AppRunner(create_app(sim), access_log=None, shutdown_timeout=SHUTDOWN_SECONDS)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    bound_port = runner.addresses[0][1]
    return RunningSimulator(sim=sim, host=host, port=bound_port, _runner=runner)


class SimulatorThread:
    """A simulator on its own event loop in a daemon thread, for blocking clients (the SDK) and
    subprocesses. Use as a context manager; the helpers are safe to call from any thread."""

    def __init__(
        self,
        config: SimulatorConfig | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        timeout: float = 10.0,
    ) -> None:
        self.config = config or SimulatorConfig()
        self.host = host
        self.port = port
        self.timeout = timeout
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._running: RunningSimulator | None = None
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None

    @property
    def running(self) -> RunningSimulator:
        if self._running is None:
            raise RuntimeError("the simulator thread is not running")
        return self._running

    @property
    def base_url(self) -> str:
        return self.running.base_url

    @property
    def root_url(self) -> str:
        return self.running.root_url

    @property
    def sim(self) -> Simulator:
        return self.running.sim

    def start(self) -> Self:
        self._thread = threading.Thread(target=self._run, name="dashscope-simulator", daemon=True)
        self._thread.start()
        if not self._ready.wait(self.timeout):
            raise TimeoutError(f"the simulator did not start within {self.timeout} s")
        if self._error is not None:
            raise RuntimeError("the simulator failed to start") from self._error
        return self

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._serve())
            loop.run_until_complete(loop.shutdown_default_executor())  # renderer threads
        finally:
            loop.close()

    async def _serve(self) -> None:
        try:
            self._stop = asyncio.Event()
            self._running = await start_simulator(self.config, self.host, self.port)
        except BaseException as error:  # reported to start()
            self._error = error
            return
        finally:
            self._ready.set()
        try:
            await self._stop.wait()
        finally:
            await self._running.stop()

    def stop(self) -> None:
        loop, thread, stop = self._loop, self._thread, self._stop
        if loop is None or thread is None or stop is None or not thread.is_alive():
            return
        loop.call_soon_threadsafe(stop.set)
        thread.join(self.timeout)
        if thread.is_alive():
            raise TimeoutError(f"the simulator did not stop within {self.timeout} s")

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def call(self, fn: Callable[[], T]) -> T:
        """Run `fn` on the simulator's loop and return its result (or raise its error)."""
        if self._loop is None:
            raise RuntimeError("the simulator thread is not running")

        async def on_loop() -> T:
            return fn()

        return asyncio.run_coroutine_threadsafe(on_loop(), self._loop).result(self.timeout)

    def set_faults(self, **updates: Any) -> dict[str, Any]:
        return self.call(lambda: self.sim.set_faults(**updates))

    def reset(self) -> None:
        self.call(self.sim.reset)

    def advance_clock(self, seconds: float) -> None:
        self.call(lambda: self.sim.advance_clock(seconds))

    def state(self) -> dict[str, Any]:
        return self.call(self.sim.state)
