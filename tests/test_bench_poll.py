"""`python -m bench poll` runs end to end at a small size with fewer slots than tasks: list calls
count as task queries, neither client has more tasks in flight than the slots, and the JSON
has the figures and goals bench/README.md quotes."""

from __future__ import annotations

from tests.bench_run import run_bench


def test_the_poll_benchmark_counts_lists_and_keeps_to_the_slots() -> None:
    args = ["--scenario", "account", "--tasks", "4", "--in-flight", "2", "--durations", "0.3-0.6"]
    report = run_bench("poll", args, timeout=180)
    assert (report["tasks"], report["in_flight"]) == (4, 2)
    assert 0.3 <= report["durations_s"]["min"] <= report["durations_s"]["max"] <= 0.6
    for phase in ("engine", "sdk"):
        figures = report[phase]
        assert figures["finished_tasks"] == figures["submissions"] == 4
        queries = figures["task_gets"] + figures["task_lists"]
        assert figures["queries_per_task"] == round(queries / 4, 3)
        assert figures["peak_in_flight"] == 2
        assert figures["notice_delay_p50"] <= figures["notice_delay_p95"]
    assert report["engine"]["task_lists"] > 0  # the engine watches through the list
    assert report["sdk"]["task_lists"] == 0
    assert set(report["ratios"]) >= {"queries_per_task", "notice_delay_p95"}
    assert set(report["goals"]) == {
        "queries_per_task<=4.7",
        "notice_delay_p95<=1s",
        "peak_qps<=20",
        "all_delivered",
    }
    assert report["goals"]["all_delivered"]
