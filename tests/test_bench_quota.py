"""`python -m bench quota` runs end to end at a small size: its pacing process hands over every
job, every accepted job is settled once, and the JSON says what bench/README.md quotes."""

from __future__ import annotations

from tests.bench_run import run_bench


def test_the_quota_benchmark_runs_and_accounts_for_every_job() -> None:
    args = ["--members", "6", "--seconds", "0.4", "--rate", "300", "--trials", "2"]
    report = run_bench("quota", args, timeout=120)
    assert len(report["at_rate_trials"]) == 2
    paced = report["at_rate"]
    assert paced["reservations"] == int(0.4 * 300 / 2)  # every due job was handed over
    refused = sum(paced["refused"].values())
    assert paced["accepted"] + refused == paced["reservations"]
    assert paced["settlements"] == paced["accepted"] > 0
    assert paced["reserve_ms"]["p50"] <= paced["reserve_ms"]["p99"] <= paced["reserve_ms"]["max"]
    assert report["throughput"]["settlements"] > 0
    assert set(report["goals"]) == {"over_2000_ops_per_s", "p99_under_5ms_at_2000_ops_per_s"}
    assert not report["goals"]["p99_under_5ms_at_2000_ops_per_s"]  # judged only at 2,000/s
