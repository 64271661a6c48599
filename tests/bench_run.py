"""Running a benchmark the way a user does (`python -m bench NAME …`), for the tests that run
one end to end at a small size."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any


def run_bench(name: str, args: list[str], *, timeout: float) -> dict[str, Any]:
    """The JSON document the benchmark prints; fails the test if it exits non-zero."""
    done = subprocess.run(
        [sys.executable, "-m", "bench", name, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=True,
    )
    report: dict[str, Any] = json.loads(done.stdout)
    return report
