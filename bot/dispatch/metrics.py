"""Counters and gauges, rendered in Prometheus' text format for /metrics."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping

Labels = tuple[tuple[str, str], ...]

HELP = {
    "wanbot_jobs": "Jobs by state.",
    "wanbot_queue_depth": "Jobs waiting to be submitted.",
    "wanbot_tasks_in_flight": "DashScope tasks submitted and not yet finished.",
    "wanbot_task_queries_total": "Task queries sent to DashScope (get and list).",
    "wanbot_submissions_total": "Tasks submitted to DashScope.",
    "wanbot_api_errors_total": "DashScope errors by code.",
    "wanbot_delivery_failures_total": "Failed delivery attempts.",
    "wanbot_images_charged_total": "Images charged to users' quotas.",
    "wanbot_images_refunded_total": "Images refunded to users' quotas.",
}


class Metrics:
    def __init__(self) -> None:
        self._counters: dict[str, dict[Labels, float]] = defaultdict(lambda: defaultdict(float))

    def inc(self, name: str, amount: float = 1.0, **labels: str) -> None:
        self._counters[name][tuple(sorted(labels.items()))] += amount

    def value(self, name: str, **labels: str) -> float:
        return self._counters[name].get(tuple(sorted(labels.items())), 0.0)

    def total(self, name: str) -> float:
        return sum(self._counters[name].values())

    def render(self, gauges: Mapping[str, Mapping[Labels, float]] | None = None) -> str:
        lines: list[str] = []
        series = {**{k: dict(v) for k, v in self._counters.items()}, **(gauges or {})}
        for name in sorted(series):
            kind = "counter" if name.endswith("_total") else "gauge"
            lines.append(f"# HELP {name} {HELP.get(name, name)}")
            lines.append(f"# TYPE {name} {kind}")
            for labels, value in sorted(series[name].items()):
                label_text = ",".join(f'{k}="{_escape(v)}"' for k, v in labels)
                lines.append(
                    f"{name}{{{label_text}}} {value:g}" if label_text else f"{name} {value:g}"
                )
        return "\n".join(lines) + "\n"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
