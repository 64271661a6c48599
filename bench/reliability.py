"""`python -m bench reliability [--quick]`: the reliability and security suite, with figures.

Runs the suite's test files (one pytest process, so the claims are checked by the same
assertions CI runs) and prints one JSON document: per part, how many checks ran and passed,
how long they took, and the figures the tests recorded (`tests/figures.py`):

1. soak: the bot process SIGKILLed at random under load, end to end (fake Discord + simulator):
   jobs, delivered once, failed with a message and a refund, lost, duplicated, ledger imbalance.
2. cluster_soak: two bot processes (a shard each) on PostgreSQL, the dispatcher SIGKILLed at
   random (the standby too, now and then) or its lease connection cut: fail-over times, lost,
   duplicated, ledger imbalance, tasks submitted twice. Its summary is the report's
   `cluster_soak`; its goals (fail-over p95 at most 5 s, nothing lost or doubled) are in `goals`.
3. fault_matrix: DashScope faults x Discord faults, each cell's outcome asserted.
4. hostile_input + fuzzing: hostile attachments, prompts, options and payloads through the fake
   Discord; hypothesis properties of every parser and validator.
5. secrets: a DEBUG run searched for the token and the key (logs, messages, tracebacks, files).
6. authorisation: every path that must refuse members without the right.
7. ssrf: result URLs off the allow-list, redirects, size caps, forged attachment URLs.

`--quick` is the size CI runs (and a plain pytest run uses); the default is the full size
(twice the soak, for one). `--from-run FOLDER` runs nothing: it reports on a pytest run made
with `--junitxml=FOLDER/junit.xml` and `WANBOT_FIGURES=FOLDER/figures.jsonl` (CI's own test run,
so the suite's files run once per CI). Exit status 1 if any check failed.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from bench.common import progress

ROOT = Path(__file__).resolve().parent.parent

# Part of the report -> the test files that check it, in the order.
PARTS: dict[str, tuple[str, ...]] = {
    "soak": ("tests/test_soak.py",),
    "cluster_soak": ("tests/test_cluster_soak.py",),
    "fault_matrix": ("tests/test_fault_matrix.py",),
    "hostile_input": ("tests/test_hostile.py",),
    "fuzzing": ("tests/test_fuzz.py",),
    "secrets": ("tests/test_secrets.py",),
    "authorisation": ("tests/test_authorization.py",),
    "ssrf": ("tests/test_ssrf.py", "tests/test_downloads.py"),
}
TIMEOUT = 60 * 60.0
FAILOVER_GOAL = 5.0  # seconds: the p95 of the cluster soak's fail-overs
# The cluster soak's findings: those that must be none (its goals), and those only counted.
MUST_BE_NONE = (
    "lost",
    "duplicated",
    "ledger_imbalance",
    "failed_without_message",
    "double_submissions",
)
COUNTED = ("submissions_refused_by_the_fence", "orphan_tasks_of_killed_dispatchers")
JUNIT = "junit.xml"
FIGURES = "figures.jsonl"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true", help="CI's size (as plain pytest runs)")
    parser.add_argument(
        "--only", choices=sorted(PARTS), action="append", help="run just these parts"
    )
    parser.add_argument(
        "--from-run",
        type=Path,
        metavar="FOLDER",
        help="report on a test run already made (FOLDER/junit.xml, FOLDER/figures.jsonl)",
    )


def main(args: argparse.Namespace) -> tuple[dict[str, Any], int]:
    parts = {name: files for name, files in PARTS.items() if not args.only or name in args.only}
    if args.from_run is not None:
        return _from_run(args.from_run, parts)
    mode = "quick" if args.quick else "full"
    with tempfile.TemporaryDirectory(prefix="wanbot-reliability-") as folder:
        files = [file for group in parts.values() for file in group]
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("DASHSCOPE_", "DISCORD_", "WANBOT_"))
        }
        env.update(
            WANBOT_RELIABILITY=mode,
            WANBOT_FIGURES=str(Path(folder) / FIGURES),
            PYTHONPATH=str(ROOT),
        )
        progress(f"reliability ({mode}): pytest {' '.join(files)}")
        started = time.monotonic()
        command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
        completed = subprocess.run(  # noqa: S603 (our own interpreter and test files)
            [*command, f"--junitxml={Path(folder) / JUNIT}", *files],
            cwd=ROOT,
            env=env,
            stdout=sys.stderr,  # the test output is progress; stdout is for the JSON alone
            timeout=TIMEOUT,
            check=False,
        )
        return _report(Path(folder), parts, mode, time.monotonic() - started, completed.returncode)


def _from_run(folder: Path, parts: dict[str, tuple[str, ...]]) -> tuple[dict[str, Any], int]:
    """The report of a pytest run someone else made (CI's): its exit status is theirs to judge,
    so a missing JUnit file or a failed case is what fails here."""
    if not (folder / JUNIT).exists():
        raise SystemExit(f"no {JUNIT} in {folder}: run pytest with --junitxml={folder / JUNIT}")
    files = {file for group in parts.values() for file in group}
    seconds = sum(case["seconds"] for case in _cases(folder / JUNIT) if case["file"] in files)
    return _report(folder, parts, os.environ.get("WANBOT_RELIABILITY", "quick"), seconds, 0)


def _report(
    folder: Path, parts: dict[str, tuple[str, ...]], mode: str, seconds: float, exit_code: int
) -> tuple[dict[str, Any], int]:
    junit = folder / JUNIT
    cases = _cases(junit) if junit.exists() else []
    figures = _figures(folder / FIGURES)
    report: dict[str, Any] = {
        "mode": mode,
        "python": platform.python_version(),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "seconds": round(seconds, 1),
        "pytest_exit": exit_code,
        "parts": {
            name: _part(files_of, cases, figures.get(name, {})) for name, files_of in parts.items()
        },
    }
    checks = sum(part["checks"] for part in report["parts"].values())
    failed = sum(part["failed"] for part in report["parts"].values())
    report["checks"] = checks
    report["failed"] = failed
    report["all_passed"] = exit_code == 0 and failed == 0 and checks > 0
    goals = {"all_checks_passed": report["all_passed"]}
    if "cluster_soak" in report["parts"]:
        summary = cluster_summary(report["parts"]["cluster_soak"]["figures"])
        report["cluster_soak"] = summary
        goals.update(cluster_goals(summary))
    report["goals"] = goals
    return report, 0 if report["all_passed"] else 1


def cluster_summary(figures: dict[str, Any]) -> dict[str, Any]:
    """The cluster soak in a few figures: its kills, the fail-over times (from each one's
    seconds), and what the audit found."""
    seconds = sorted(float(s) for s in figures.get("failover_seconds") or [])

    def percentile(share: float) -> float | None:  # nearest rank
        return seconds[max(0, math.ceil(share * len(seconds)) - 1)] if seconds else None

    summary: dict[str, Any] = {
        "kills": figures.get("kills"),
        "dispatcher_kills": figures.get("dispatcher_kills"),
        "standby_kills": figures.get("standby_kills"),
        "lease_cuts": figures.get("lease_cuts"),
        "jobs": figures.get("jobs_submitted"),
        "failover_p50_seconds": percentile(0.5),
        "failover_p95_seconds": percentile(0.95),
        "failover_max_seconds": seconds[-1] if seconds else None,
    }
    for key in (*MUST_BE_NONE, *COUNTED):
        summary[key] = figures.get(key)
    return summary


def cluster_goals(summary: dict[str, Any]) -> dict[str, bool]:
    p95 = summary["failover_p95_seconds"]
    return {
        f"failover_p95<={FAILOVER_GOAL:g}s": p95 is not None and p95 <= FAILOVER_GOAL,
        **{f"cluster_{key}==0": summary[key] == 0 for key in MUST_BE_NONE},
    }


def _cases(junit: Path) -> list[dict[str, Any]]:
    """(file, outcome, seconds) of every test case in pytest's JUnit XML."""
    found = []
    tree = ET.parse(junit)  # noqa: S314 (written by the pytest run just made)
    for case in tree.getroot().iter("testcase"):
        outcome = "passed"
        for child in case:
            if child.tag in ("failure", "error"):
                outcome = "failed"
            elif child.tag == "skipped":
                outcome = "skipped"
        module = case.get("classname", "").split(".")
        found.append(
            {
                "file": "/".join(module[:2]) + ".py" if len(module) >= 2 else "",
                "outcome": outcome,
                "seconds": float(case.get("time", 0) or 0),
            }
        )
    return found


def _figures(path: Path) -> dict[str, dict[str, Any]]:
    merged: dict[str, dict[str, Any]] = {}
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            entry = json.loads(line)
            merged.setdefault(entry["section"], {}).update(entry["figures"])
    return merged


def _part(
    files: tuple[str, ...], cases: list[dict[str, Any]], figures: dict[str, Any]
) -> dict[str, Any]:
    mine = [case for case in cases if case["file"] in files]
    return {
        "files": list(files),
        "checks": len(mine),
        "passed": sum(case["outcome"] == "passed" for case in mine),
        "failed": sum(case["outcome"] == "failed" for case in mine),
        "skipped": sum(case["outcome"] == "skipped" for case in mine),
        "seconds": round(sum(case["seconds"] for case in mine), 1),
        "figures": figures,
    }
