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
