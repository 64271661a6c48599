"""`python -m bot doctor`'s database line: the database the bot would use, what runs it and its
schema version; or, for PostgreSQL that cannot be reached or a URL that cannot be read, a line
saying what to fix. The URL's password never shows, on stdout or in the log."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest

from bot.config import Settings, load_settings
from bot.runtime.doctor import OK, PROBLEM, doctor
from bot.storage import postgres
from bot.storage.db import migrations
from bot.storage.postgres import safe_name
from tests.backends import postgres_schema, with_password
from tests.conftest import run_cli

PASSWORD = "Doctor-Pw-93f1a7"  # trust auth ignores it


async def discord_fine(settings: Settings) -> tuple[str, str]:
    return OK, "Discord is not what this test checks"


async def doctor_says(
    capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture, **values: object
) -> tuple[int, str]:
    """doctor's exit code and its database line, with DASHSCOPE unset (the simulator: no
    network) and nothing read from the environment or a .env file."""
    settings = load_settings(_env_file=None, dashscope_api_key=None, **values)
    with caplog.at_level(logging.DEBUG):
        status = await doctor(settings, discord_fine)
    out = capsys.readouterr().out
    assert PASSWORD not in out + caplog.text
    [line] = [line for line in out.splitlines() if "DATABASE_" in line]
    return status, line


async def test_a_reachable_postgresql_names_itself_and_its_version(capsys, caplog) -> None:
    async with postgres_schema() as url:
        secret_url = with_password(url, PASSWORD)
        status, line = await doctor_says(capsys, caplog, database_url=secret_url)
    assert status == 0
    assert line.startswith(f"{OK} DATABASE_URL: the database {safe_name(secret_url)} (")
    assert re.search(r"\(PostgreSQL \d+\.\d+\) is at schema version ", line)
    assert line.endswith(f"schema version {len(migrations('postgresql'))}")


async def test_sqlite_names_itself_and_its_version(capsys, caplog, tmp_path: Path) -> None:
    path = tmp_path / "wanbot.db"
    status, line = await doctor_says(capsys, caplog, database_path=path)
    assert status == 0
    assert re.fullmatch(
        rf"{re.escape(OK)} DATABASE_PATH: the database {re.escape(str(path))} "
        rf"\(SQLite \d+\.\d+\.\d+\) is at schema version {len(migrations('sqlite'))}",
        line,
    )


async def test_an_unreachable_postgresql_says_what_to_fix(capsys, caplog, monkeypatch) -> None:
    monkeypatch.setattr(postgres, "CONNECT_TIMEOUT", 1.0)  # the pool's wait; 10 s in the bot
    url = f"postgresql://root:{PASSWORD}@127.0.0.1:1/wanbot"  # nothing listens on port 1
    status, line = await doctor_says(capsys, caplog, database_url=url)
    assert status == 1
    assert line.startswith(
        f"{PROBLEM} cannot connect to the database at postgresql://root@127.0.0.1:1/wanbot ("
    )
    assert "refused" in line.lower()  # libpq's reason, on the one line
    assert line.endswith("Check DATABASE_URL and that PostgreSQL is running and reachable.")


async def test_a_url_psycopg_cannot_read_says_how_to_write_it(capsys, caplog) -> None:
    url = f"postgresql://root:{PASSWORD}%zz@127.0.0.1:5432/test"  # a broken %-escape
    status, line = await doctor_says(capsys, caplog, database_url=url)
    assert status == 1
    assert line.startswith(f"{PROBLEM} DATABASE_URL is not a PostgreSQL URL psycopg can read")
    assert "postgresql://user:password@host:5432/database" in line


def test_a_url_that_is_not_postgresql_stops_doctor_at_the_settings(tmp_path: Path) -> None:
    result = run_cli(
        "doctor", cwd=tmp_path, env={"DATABASE_URL": f"mysql://root:{PASSWORD}@db/wanbot"}
    )
    assert result.returncode == 2
    assert "DATABASE_URL: expected a PostgreSQL URL" in result.stderr
    assert PASSWORD not in result.stdout + result.stderr
