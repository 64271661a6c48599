"""`python -m bench cluster` runs end to end at a small size on PostgreSQL: both member
processes run every phase, the race accepts exactly the limit, both bots acknowledge, every
killed dispatcher is replaced with its jobs done, and the JSON says what bench/README.md
quotes (speed is not asserted: the goals are computed, not required)."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.backends import postgres_url

GOALS = {
    "cluster_over_1000_ops_per_s",
    "cluster_p99_under_10ms_at_1000_ops_per_s",
    "race_accepts_exactly_5",
    "cluster_ack_p99_under_50ms",
    "cluster_ack_none_over_3s",
    "every_kill_taken_over_with_its_jobs_done",
}


def test_the_cluster_benchmark_runs_every_part_and_computes_its_goals() -> None:
    args = ["--members", "6", "--seconds", "0.4", "--rate", "200", "--trials", "1"]
    args += ["--race", "24", "--interactions", "16", "--users", "4", "--kills", "1"]
    done = subprocess.run(
        [sys.executable, "-m", "bench", "cluster", "--postgres", postgres_url(), *args],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout)

    assert set(report["goals"]) == GOALS
    assert all(isinstance(value, bool) for value in report["goals"].values())
    assert report["goals"]["race_accepts_exactly_5"]
    assert report["goals"]["every_kill_taken_over_with_its_jobs_done"]

    quota = report["quota"]
    cluster, single = quota["cluster"], quota["sqlite"]
    assert cluster["processes"] == 2
    paced = cluster["at_rate"]
    assert paced["reservations"] == int(0.4 * 200 / 2)  # both processes' shares, every one due
    assert paced["accepted"] + sum(paced["refused"].values()) == paced["reservations"]
    assert paced["settlements"] == paced["accepted"] > 0
    assert paced["offered_ops_per_s"] == 200
    assert cluster["throughput"]["settlements"] > 0
    assert 0 <= cluster["throughput"]["machine"]["busy_percent"] <= 100
    light = cluster["at_light_rate"]["offered_ops_per_s"]
    assert single["at_light_rate"]["offered_ops_per_s"] == light  # compared at one rate
    race = cluster["race"]
    assert race["accepted"] == race["ledger_reservations"] == race["ledger_images"] == 5
    assert race["accepted"] + sum(race["refused"].values()) == race["reservations"] == 24
    assert single["throughput"]["settlements"] > 0
    assert set(quota["ratios_cluster_to_sqlite"]) >= {"throughput_ops_per_s", "at_rate_reserve_p99"}

    ack = report["ack"]
    for part in (ack["cluster"], ack["sqlite"]):
        assert part["acknowledged"] + part["not_acknowledged"] == 16
    assert len(ack["cluster"]["bot_exit_codes"]) == 2 and len(ack["sqlite"]["bot_exit_codes"]) == 1
    shards = ack["cluster"]["per_shard"]
    assert set(shards) == {"0", "1"}  # both bots answered their own guild's interactions
    assert sum(shard["acknowledged"] for shard in shards.values()) == 16

    failover = report["failover"]
    [kill] = failover["every_kill"]
    assert kill["job_after_kill"] == kill["job_in_flight_at_kill"] == "done"
    assert 0 < kill["takeover_s"] <= kill["job_done_s"]
    steps = kill["job_after_kill_steps_s"]
    assert steps["submitted"] <= steps["result"] <= steps["ended"]
    assert failover["takeover_s"]["p50"] == kill["takeover_s"]
