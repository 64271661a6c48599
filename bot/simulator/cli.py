"""`python -m bot simulator`: serve a simulator until SIGINT/SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
from typing import Any

from bot.simulator.config import DEFAULT_API_KEY, SimulatorConfig
from bot.simulator.server import start_simulator

log = logging.getLogger("bot.simulator")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bot simulator",
        description="A wire-compatible DashScope (Wan image models) simulator.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8400, help="0 picks a free port")
    parser.add_argument("--speed", type=float, default=1.0, help="divides task durations")
    parser.add_argument(
        "--api-key",
        action="append",
        dest="api_keys",
        metavar="KEY",
        help=f"an accepted key (repeatable; default {DEFAULT_API_KEY}); "
        "KEY:REGION marks a key of another region, refused here",
    )
    parser.add_argument(
        "--region",
        default="cn-beijing",
        help="the region served: its keys, and only the models it offers (default cn-beijing)",
    )
    parser.add_argument("--task-ttl", type=float, default=86400.0, help="seconds a task is kept")
    parser.add_argument("--result-ttl", type=float, default=86400.0, help="result URL lifetime")
    parser.add_argument("--task-query-qps", type=int, default=20)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--rate-429", type=float, default=0.0, metavar="P")
    parser.add_argument("--rate-500", type=float, default=0.0, metavar="P")
    parser.add_argument("--rate-503", type=float, default=0.0, metavar="P")
    parser.add_argument("--rate-drop", type=float, default=0.0, metavar="P")
    parser.add_argument("--drop-after-submit", type=float, default=0.0, metavar="P")
    parser.add_argument("--fault-routes", choices=("submit", "query", "all"), default="all")
    parser.add_argument("--partial-failures", type=int, default=0, metavar="K")
    parser.add_argument(
        "--video-mb",
        type=float,
        default=0.0,
        metavar="MB",
        help="make every video's MP4 at least MB megabytes (tests of upload caps)",
    )
    parser.add_argument(
        "--script",
        default="[]",
        help='scripted faults as JSON, e.g. \'[{"route": "submit", "action": "429"}]\'',
    )
    parser.add_argument("--seed", type=int, default=None)
    return parser


def config_from_args(args: argparse.Namespace) -> SimulatorConfig:
    script: Any = json.loads(args.script)
    return SimulatorConfig(
        api_keys=set(args.api_keys or [DEFAULT_API_KEY]),
        region=args.region,
        speed=args.speed,
        task_ttl=args.task_ttl,
        result_ttl=args.result_ttl,
        task_query_qps=args.task_query_qps,
        seed=args.seed,
        latency_ms=args.latency_ms,
        rate_429=args.rate_429,
        rate_500=args.rate_500,
        rate_503=args.rate_503,
        rate_drop=args.rate_drop,
        drop_after_submit=args.drop_after_submit,
        routes=args.fault_routes,
        script=script if isinstance(script, list) else [script],
        partial_failures=args.partial_failures,
        video_mb=args.video_mb,
    )


async def serve(config: SimulatorConfig, host: str, port: int) -> None:
    running = await start_simulator(config, host, port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    log.info(
        "DashScope simulator listening on %s (region %s, speed %g)",
        running.base_url,
        config.region,
        config.speed,
    )
    try:
        await stop.wait()
    finally:
        await running.stop()


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        config = config_from_args(args)
    except (ValueError, json.JSONDecodeError) as error:
        parser.error(str(error))
    try:
        asyncio.run(serve(config, args.host, args.port))
    except OSError as error:
        log.error("cannot serve on %s:%s: %s", args.host, args.port, error)
        return 1
    return 0
