"""Build the long-lived parts from the settings: database, HTTP pool, client, quota, engine.

Front ends (the Discord bot, the worker) enter `services(settings, port)` once in `main()` and
get everything wired, and closed again in the right order on the way out.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx

from bot.accounting.quota import Limits, Quota
from bot.config import Settings
from bot.dashscope import DashScopeClient
from bot.dispatch.delivery import DeliveryPort
from bot.dispatch.engine import Engine, EngineConfig
from bot.jobs.store import JobStore
from bot.media.downloads import ResultFetcher
from bot.runtime.dispatcher import Dispatch, NotifyHandover, holder_name
from bot.runtime.target import dashscope_target
from bot.storage.cluster import FencedDatabase, Lease
from bot.storage.db import Database
from bot.storage.postgres import PostgresDatabase

log = logging.getLogger(__name__)


@dataclass
class Services:
    settings: Settings
    db: Database
    http: httpx.AsyncClient
    client: DashScopeClient
    quota: Quota
    engine: Engine
    simulated: bool
    dispatch: Dispatch


def limits_from(settings: Settings) -> Limits:
    return Limits(
        images_per_user_day=settings.limit_images_per_user_day,
        concurrent_jobs_per_user=settings.limit_concurrent_jobs_per_user,
        cooldown_seconds=settings.limit_cooldown_seconds,
        images_per_guild_day=settings.limit_images_per_guild_day,
        video_seconds_per_user_day=settings.limit_video_seconds_per_user_day,
        video_seconds_per_guild_day=settings.limit_video_seconds_per_guild_day,
    )


def engine_config_from(settings: Settings) -> EngineConfig:
    return EngineConfig(
        max_in_flight=settings.max_in_flight,
        submit_rate=settings.submit_rate,
        task_query_rate=settings.task_query_rate,
    )


@contextlib.asynccontextmanager
async def services(settings: Settings, port: DeliveryPort) -> AsyncIterator[Services]:
    db = await Database.open(settings.database_target)
    try:
        async with (
            httpx.AsyncClient(follow_redirects=False) as http,
            dashscope_target(settings) as target,
        ):
            if target.simulated:
                log.warning(
                    "no DASHSCOPE_API_KEY: using the built-in simulator (%s)", target.base_url
                )
            client = DashScopeClient(
                target.api_key, target.base_url, http=http, workspace=settings.dashscope_workspace
            )
            quota = Quota(db, JobStore(db), limits_from(settings), prices=settings.price_table)
            fetcher = ResultFetcher(
                http,
                target.base_url,
                max_bytes=settings.download_max_bytes,
                video_max_bytes=settings.video_download_max_bytes,
            )
            config = engine_config_from(settings)
            if isinstance(db, PostgresDatabase):  # a cluster: dispatch by lease, fenced
                lease: Lease | None = Lease(db.url, holder_name())
                assert lease is not None
                engine = Engine(
                    FencedDatabase(db, lease),
                    client,
                    fetcher,
                    port,
                    quota,
                    config,
                    handover=NotifyHandover(db),
                    unfenced=db,
                )
            else:
                lease = None
                engine = Engine(db, client, fetcher, port, quota, config)
            dispatch = Dispatch(engine, db, lease)
            yield Services(settings, db, http, client, quota, engine, target.simulated, dispatch)
            log.info("closing the DashScope connections")
    finally:
        log.info("closing the database")
        await db.close()
