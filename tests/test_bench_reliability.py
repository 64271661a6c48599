"""`python -m bench reliability --from-run` reports on a test run already made (CI's), so the
reliability files run once per CI."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from bench import reliability

JUNIT = """<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite name="pytest">
<testcase classname="tests.test_soak" name="test_soak" time="70.5"/>
<testcase classname="tests.test_ssrf" name="test_a" time="1.0"/>
<testcase classname="tests.test_ssrf" name="test_b" time="0.5"><failure message="x"/></testcase>
<testcase classname="tests.test_downloads" name="test_c" time="0.25"><skipped/></testcase>
<testcase classname="tests.test_engine" name="test_other" time="9.0"/>
</testsuite></testsuites>"""


def args(folder: Path, only: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    reliability.add_arguments(parser)
    return parser.parse_args(
        ["--from-run", str(folder), *[a for part in only or [] for a in ("--only", part)]]
    )


def test_the_report_comes_from_the_run_already_made(tmp_path: Path) -> None:
    (tmp_path / "junit.xml").write_text(JUNIT)
    lines = [
        {"section": "soak", "figures": {"jobs": 202, "lost": 0}},
        {"section": "soak", "figures": {"kills": 21}},
    ]
    (tmp_path / "figures.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    report, status = reliability.main(args(tmp_path, ["soak", "ssrf"]))
    assert status == 1 and report["all_passed"] is False  # one SSRF case failed
    assert report["parts"]["soak"]["checks"] == 1
    assert report["parts"]["soak"]["figures"] == {"jobs": 202, "lost": 0, "kills": 21}
    ssrf = report["parts"]["ssrf"]
    assert (ssrf["checks"], ssrf["passed"], ssrf["failed"], ssrf["skipped"]) == (3, 1, 1, 1)
    assert report["seconds"] == 72.2  # the parts' cases only, not test_engine's


def test_a_clean_run_passes_and_a_missing_report_is_refused(tmp_path: Path) -> None:
    (tmp_path / "junit.xml").write_text(JUNIT.replace('<failure message="x"/>', ""))
    report, status = reliability.main(args(tmp_path, ["soak", "ssrf"]))
    assert status == 0 and report["all_passed"] and report["failed"] == 0
    with pytest.raises(SystemExit, match=r"no junit\.xml"):
        reliability.main(args(tmp_path / "nowhere"))


def test_the_cluster_soak_has_a_summary_and_goals(tmp_path: Path) -> None:
    junit = JUNIT.replace(
        '<testcase classname="tests.test_ssrf"',
        '<testcase classname="tests.test_cluster_soak" name="test_c" time="150.0"/>'
        '<testcase classname="tests.test_ssrf"',
        1,
    )
    (tmp_path / "junit.xml").write_text(junit.replace('<failure message="x"/>', ""))
    cluster = {
        "kills": 14,
        "dispatcher_kills": 10,
        "standby_kills": 3,
        "lease_cuts": 2,
        "jobs_submitted": 230,
        # The bench's own percentiles (nearest rank), not the test's.
        "failover_seconds": [0.4, 0.5, 0.3, 0.6, 0.2, 0.7, 0.45, 0.35, 0.55, 6.5],
        "failover_p95_seconds": 0.1,
        "lost": 0,
        "duplicated": 0,
        "ledger_imbalance": 0,
        "failed_without_message": 0,
        "double_submissions": 0,
        "submissions_refused_by_the_fence": 1,
        "orphan_tasks_of_killed_dispatchers": 2,
    }
    line = {"section": "cluster_soak", "figures": cluster}
    (tmp_path / "figures.jsonl").write_text(json.dumps(line) + "\n")
    report, status = reliability.main(args(tmp_path, ["cluster_soak"]))
    assert status == 0 and report["parts"]["cluster_soak"]["checks"] == 1
    summary = report["cluster_soak"]
    assert summary["dispatcher_kills"] == 10 and summary["jobs"] == 230
    assert summary["failover_p50_seconds"] == 0.45
    assert summary["failover_p95_seconds"] == summary["failover_max_seconds"] == 6.5
    goals = report["goals"]
    assert goals["all_checks_passed"] and goals["cluster_lost==0"]
    assert goals["cluster_double_submissions==0"]
    assert goals["failover_p95<=5s"] is False  # one slow fail-over in ten is past the p95

    cluster["failover_seconds"] = cluster["failover_seconds"][:-1]
    cluster["duplicated"] = 1
    (tmp_path / "figures.jsonl").write_text(json.dumps(line) + "\n")
    report, _ = reliability.main(args(tmp_path, ["cluster_soak"]))
    assert report["cluster_soak"]["failover_p95_seconds"] == 0.7
    assert report["goals"]["failover_p95<=5s"] and not report["goals"]["cluster_duplicated==0"]


def test_without_the_cluster_soak_there_are_no_cluster_goals(tmp_path: Path) -> None:
    (tmp_path / "junit.xml").write_text(JUNIT)
    report, _ = reliability.main(args(tmp_path, ["ssrf"]))
    assert report["goals"] == {"all_checks_passed": False} and "cluster_soak" not in report
