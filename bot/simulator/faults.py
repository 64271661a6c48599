"""Fault injection: the settings (start-up defaults, changeable at run time) and the choice of fault.

Random faults (`rate_429`, `rate_500`, `rate_503`, `rate_drop`) hit the API routes named by
`routes` ("submit", "query" = task get/list/cancel, or "all"). `script` is a queue of scripted
outcomes, each `{"route": "submit"|"query"|"any", "action": "429"|"500"|"503"|"drop"}`: the first
step is used up by the next request on a matching route, ahead of any random fault.
`video_mb` (0: off) makes the MP4 of every video submitted from then on at least that many MB.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from bot.simulator.errors import INTERNAL_ERROR, MODEL_UNAVAILABLE, THROTTLED, ErrorSpec

FAULT_ROUTES = ("submit", "query", "all")
SCRIPT_ROUTES = ("submit", "query", "any")
ACTIONS: dict[str, ErrorSpec | None] = {
    "429": THROTTLED,
    "500": INTERNAL_ERROR,
    "503": MODEL_UNAVAILABLE,
    "drop": None,
}
PROBABILITIES = ("rate_429", "rate_500", "rate_503", "rate_drop", "drop_after_submit")


@dataclass
class FaultSettings:
    latency_ms: float = 0.0
    rate_429: float = 0.0
    rate_500: float = 0.0
    rate_503: float = 0.0
    rate_drop: float = 0.0
    drop_after_submit: float = 0.0
    routes: str = "all"
    script: list[dict[str, str]] = field(default_factory=list)
    partial_failures: int = 0
    video_mb: float = 0.0  # every video's MP4 at least this many MB (0: as small as usual)
    task_ttl: float = 86400.0
    result_ttl: float = 86400.0

    def __post_init__(self) -> None:
        for name in PROBABILITIES:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
                raise ValueError(f"{name} must be a probability between 0 and 1, not {value!r}")
        for name in ("latency_ms", "task_ttl", "result_ttl", "video_mb"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise ValueError(f"{name} must be a number >= 0, not {value!r}")
        if isinstance(self.partial_failures, bool) or not isinstance(self.partial_failures, int):
            raise ValueError(
                f"partial_failures must be a whole number, not {self.partial_failures!r}"
            )
        if not 0 <= self.partial_failures <= 4:
            raise ValueError("partial_failures must be between 0 and 4")
        if self.routes not in FAULT_ROUTES:
            raise ValueError(
                f"routes must be one of {', '.join(FAULT_ROUTES)}, not {self.routes!r}"
            )
        self.script = [_script_step(step) for step in self.script]

    def merged(self, updates: dict[str, Any]) -> FaultSettings:
        """A copy with `updates` applied; ValueError names an unknown key or a bad value."""
        known = {f.name for f in fields(self)}
        unknown = sorted(set(updates) - known)
        if unknown:
            raise ValueError(f"unknown fault setting(s): {', '.join(unknown)}")
        return FaultSettings(**{**asdict(self), **updates})

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def pick(self, route: str, rng: random.Random) -> str | None:
        """The fault for one request on `route` ("submit" or "query"), or None."""
        if self.script and self.script[0]["route"] in (route, "any"):
            return self.script.pop(0)["action"]
        if self.routes not in (route, "all"):
            return None
        roll = rng.random()
        for action, probability in (
            ("drop", self.rate_drop),
            ("429", self.rate_429),
            ("500", self.rate_500),
            ("503", self.rate_503),
        ):
            if roll < probability:
                return action
            roll -= probability
        return None


def _script_step(step: Any) -> dict[str, str]:
    if not isinstance(step, dict):
        raise ValueError(f"a script step must be an object, not {step!r}")
    route = step.get("route", "any")
    action = str(step.get("action", ""))
    if route not in SCRIPT_ROUTES:
        raise ValueError(f"script route must be one of {', '.join(SCRIPT_ROUTES)}, not {route!r}")
    if action not in ACTIONS:
        raise ValueError(f"script action must be one of {', '.join(ACTIONS)}, not {action!r}")
    return {"route": route, "action": action}
