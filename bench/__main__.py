"""`python -m bench poll|footprint|ack|quota|cluster|migrate-db|reliability`: run one benchmark, print one JSON document on stdout.

`_simulator` and `_worker` are the child processes `footprint` starts, `_migrate_copy` the one
`migrate-db` starts; not for direct use.
"""

from __future__ import annotations

import argparse
import sys

from bench import ack, cluster, footprint, migrate_db, poll, quota, reliability
from bench.common import dump


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True, metavar="BENCHMARK")
    poll.add_arguments(
        commands.add_parser("poll", help="engine vs the official SDK watching N edit tasks")
    )
    footprint.add_arguments(
        commands.add_parser(
            "footprint", help="memory and CPU of a worker with 1,000 jobs; memory over 10,000"
        )
    )
    ack.add_arguments(commands.add_parser("ack", help="acknowledgement delay under a burst"))
    quota.add_arguments(
        commands.add_parser("quota", help="reservations and settlements per second, p99")
    )
    migrate_db.add_arguments(
        commands.add_parser("migrate-db", help="SQLite to PostgreSQL: rows per second, memory")
    )
    cluster.add_arguments(
        commands.add_parser(
            "cluster", help="quota, acknowledgements and fail-over on PostgreSQL, beside SQLite"
        )
    )
    reliability.add_arguments(
        commands.add_parser("reliability", help="crash soak, faults, hostile input, secrets, …")
    )
    footprint.add_simulator_arguments(commands.add_parser("_simulator"))
    footprint.add_worker_arguments(commands.add_parser("_worker"))
    migrate_db.add_copy_arguments(commands.add_parser("_migrate_copy"))
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "_simulator":
        return footprint.serve_simulator(args)
    if args.command == "_worker":
        return footprint.run_worker_process(args)
    if args.command == "_migrate_copy":
        return migrate_db.copy_child(args)
    if args.command == "migrate-db":
        dump(migrate_db.main(args))
        return 0
    if args.command == "ack":
        dump(ack.main(args))
        return 0
    if args.command == "reliability":
        report, status = reliability.main(args)
        dump(report)
        return status
    if args.command == "quota":
        dump(quota.main(args))
        return 0
    if args.command == "cluster":
        dump(cluster.main(args))
        return 0
    if args.command == "poll":
        dump(poll.main(args))
        return 0
    dump(footprint.main(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
