"""Shared fixtures: a DashScope simulator on loopback, started and stopped per test."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.simulator import SimulatorConfig, SimulatorThread
from tests.backends import BACKENDS

ROOT = Path(__file__).resolve().parent.parent
SIM_KEY = "sk-simulator-test-key-0123456789"


@pytest.fixture
def simulator() -> Iterator[SimulatorThread]:
    """A fast simulator in a background thread (tasks take a fraction of a second)."""
    with SimulatorThread(SimulatorConfig(api_keys={SIM_KEY}, speed=200.0, seed=1)) as sim:
        yield sim


def run_cli(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run `python -m bot ARGS` as a subprocess with a clean environment."""
    base = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DASHSCOPE_", "DISCORD_", "WANBOT_"))
    }
    base["PYTHONPATH"] = str(ROOT)
    base.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "bot", *args],
        env=base,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """Each storage backend in turn: the store's contract tests take this."""
    return str(request.param)
