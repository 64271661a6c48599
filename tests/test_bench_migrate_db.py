"""`python -m bench migrate-db` runs end to end at a small size: the history it builds is copied
whole (every job, three ledger rows per job, two inputs per edit) and the JSON says what
bench/README.md quotes."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.backends import postgres_url


def test_the_migrate_db_benchmark_copies_the_history_it_built() -> None:
    args = ["--jobs", "300", "--edit-share", "0.1", "--input-kb", "8", "--to", postgres_url()]
    done = subprocess.run(
        [sys.executable, "-m", "bench", "migrate-db", *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    report = json.loads(done.stdout)
    rows = report["rows"]
    assert rows["jobs"] == 300 and rows["ledger"] == 3 * 300  # reserve, charge, refund
    assert rows["job_inputs"] > 0 and rows["job_inputs"] % 2 == 0
    assert rows["results"] > 0
    assert report["total_rows"] == sum(rows.values())
    assert report["input_images_mb"] > 0 and report["peak_rss_mb"] >= report["rss_before_mb"]
    assert set(report["goals"]) == {
        "over_10000_rows_per_s_without_inputs",
        "inputs_over_20_mb_per_s",
        "memory_growth_under_100_mb",
    }
