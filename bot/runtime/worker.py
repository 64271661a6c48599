"""`python -m bot worker --out DIR`: the job engine without Discord, delivering images as files.

It takes the jobs queued in the database (by any process), runs them to the end and writes each
job's images and a manifest to DIR. SIGTERM or SIGINT stops it gracefully: no new submissions,
in-flight calls get a bounded grace period, and it exits 0; whatever was cut off resumes at the
next start. With `--exit-when-idle` it also stops once no job is left in progress.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from pathlib import Path

from bot.config import Settings
from bot.dispatch.delivery import FileDelivery
from bot.dispatch.waiting import wait_for_event
from bot.runtime.health import start_health
from bot.runtime.services import services

log = logging.getLogger(__name__)

ADOPT_INTERVAL = 0.5  # seconds between looks for jobs queued by other processes


async def run_worker(settings: Settings, out_dir: Path, *, exit_when_idle: bool = False) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with services(settings, FileDelivery(out_dir)) as svc:
        engine = svc.engine
        await svc.dispatch.start()
        health = None
        if settings.health_port:
            health = await start_health(svc.dispatch, settings.health_host, settings.health_port)
        log.info("worker running; delivering to %s", out_dir)
        try:
            while not stop.is_set():
                if engine.dispatching:  # on SQLite, jobs other processes queued
                    await engine.adopt_queued()
                if exit_when_idle and await engine.idle():
                    break
                await wait_for_event(stop, ADOPT_INTERVAL)
        finally:
            log.info("stopping: finishing in-flight calls")
            await svc.dispatch.stop()
            if health is not None:
                await health.cleanup()
    log.info("worker stopped")
    return 0
