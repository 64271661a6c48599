"""Figures the reliability suite reports, and how big a run it is.

`python -m bench reliability` runs the reliability test files with two environment variables:

* ``WANBOT_RELIABILITY``: ``quick`` (CI's size), ``full`` (the bench's default) or unset (a plain
  pytest run, which uses the quick sizes). `scale(quick=…, full=…)` picks the number.
* ``WANBOT_FIGURES``: a file; `record()` appends one JSON line per call to it, and the bench
  merges them into its report. Unset, `record()` only keeps them in `RECORDED` (tests may
  print them), so a plain pytest run writes nothing.
"""

from __future__ import annotations

import json
import os
from typing import Any, TypeVar

T = TypeVar("T")

RECORDED: list[dict[str, Any]] = []


def mode() -> str:
    return os.environ.get("WANBOT_RELIABILITY", "quick")


def scale(quick: T, full: T) -> T:
    """The size of a reliability run: `full` when the bench asks for its full run."""
    return full if mode() == "full" else quick


def record(section: str, **figures: Any) -> None:
    """Report `figures` under `section` (e.g. "soak", "fault_matrix"); keys merge per section."""
    line = {"section": section, "figures": figures}
    RECORDED.append(line)
    target = os.environ.get("WANBOT_FIGURES")
    if target:
        with open(target, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(line, sort_keys=True, default=str) + "\n")
