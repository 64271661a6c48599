"""How a simulator starts: keys, region, speed, lifetimes, limits, randomness and faults."""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from bot.simulator.faults import FaultSettings
from bot.simulator.models import MODELS

DEFAULT_API_KEY = "sk-simulator"


@dataclass
class SimulatorConfig:
    """Start-up settings. The fault fields (from `latency_ms` on) and the two TTLs are the
    defaults that `Simulator.reset()` returns to; they can be changed while running."""

    # A key written "sk-xxx:ap-southeast-1" belongs to another region and is refused here.
    api_keys: set[str] = field(default_factory=lambda: {DEFAULT_API_KEY})
    region: str = "cn-beijing"
    speed: float = 1.0
    task_ttl: float = 86400.0
    result_ttl: float = 86400.0
    submit_rps: dict[str, int] | None = None
    max_in_flight: dict[str, int] | None = None
    task_query_qps: int = 20
    seed: int | None = None
    latency_ms: float = 0.0
    rate_429: float = 0.0
    rate_500: float = 0.0
    rate_503: float = 0.0
    rate_drop: float = 0.0
    drop_after_submit: float = 0.0
    routes: str = "all"
    script: list[dict[str, str]] = field(default_factory=list)
    partial_failures: int = 0
    video_mb: float = 0.0

    def __post_init__(self) -> None:
        if not self.speed > 0:
            raise ValueError(f"speed must be > 0, not {self.speed!r}")
        if not self.region:
            raise ValueError("region must not be empty")
        if self.task_query_qps < 1:
            raise ValueError("task_query_qps must be at least 1")
        for name in ("submit_rps", "max_in_flight"):
            limits = getattr(self, name) or {}
            for model, value in limits.items():
                if model not in MODELS:
                    raise ValueError(f"{name} names an unknown model: {model!r}")
                if value < 1:
                    raise ValueError(f"{name}[{model!r}] must be at least 1")
        # A lone string would otherwise become a set of its characters.
        self.api_keys = {self.api_keys} if isinstance(self.api_keys, str) else set(self.api_keys)
        if not self.api_keys:
            raise ValueError("api_keys must hold at least one key")
        self.fault_settings()  # validates the fault fields

    def fault_settings(self) -> FaultSettings:
        """Fresh run-time fault settings from these defaults."""
        names = {f.name for f in fields(FaultSettings)}
        values = {f.name: getattr(self, f.name) for f in fields(self) if f.name in names}
        values["script"] = list(self.script)
        return FaultSettings(**values)

    def key_regions(self) -> dict[str, str]:
        """Each configured key and the region it belongs to."""
        regions: dict[str, str] = {}
        for entry in self.api_keys:
            key, _, region = entry.partition(":")
            regions[key] = region or self.region
        return regions
