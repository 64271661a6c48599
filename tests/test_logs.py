"""RedactingFormatter: secrets never reach a log line, whether they come in the message, its
arguments, an exception's text or its traceback."""

from __future__ import annotations

import io
import logging
import sys

import pytest

from bot.logs import REDACTED, RedactingFormatter, redact, setup_logging
from bot.storage.db import target_secrets

KEY = "sk-live-0123456789abcdef"
TOKEN = "MTIzNDU2Nzg5.GhIjKl.discord-secret-token"


@pytest.fixture
def capture():
    """A logger writing through a RedactingFormatter into a string buffer."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(RedactingFormatter([KEY, TOKEN], fmt="%(levelname)s %(message)s"))
    logger = logging.getLogger("test_logs.capture")
    logger.handlers[:] = [handler]
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    yield logger, stream
    logger.handlers[:] = []


def test_secret_in_the_message(capture):
    logger, stream = capture
    logger.info(f"calling with Authorization: Bearer {KEY}")
    assert stream.getvalue() == f"INFO calling with Authorization: Bearer {REDACTED}\n"


def test_secret_in_the_arguments(capture):
    logger, stream = capture
    logger.warning("key=%s token=%r again=%s", KEY, TOKEN, KEY)
    assert stream.getvalue() == (f"WARNING key={REDACTED} token='{REDACTED}' again={REDACTED}\n")


def test_secret_in_a_mapping_argument(capture):
    logger, stream = capture
    logger.error("headers: %(auth)s", {"auth": f"Bearer {KEY}"})
    assert KEY not in stream.getvalue()
    assert f"Bearer {REDACTED}" in stream.getvalue()


def _fail_with_key() -> None:
    api_key = KEY
    raise ValueError(f"server said the key {api_key} is invalid")


def test_secret_in_an_exception_and_its_traceback(capture):
    logger, stream = capture
    try:
        _fail_with_key()
    except ValueError:
        logger.exception("request failed for %s", TOKEN)
    output = stream.getvalue()
    assert "Traceback (most recent call last)" in output
    assert "_fail_with_key" in output
    assert f"ValueError: server said the key {REDACTED} is invalid" in output
    assert f"request failed for {REDACTED}" in output
    assert KEY not in output and TOKEN not in output


def test_secret_in_a_chained_exception(capture):
    logger, stream = capture
    try:
        try:
            _fail_with_key()
        except ValueError as inner:
            raise RuntimeError(f"wrapped {TOKEN}") from inner
    except RuntimeError:
        logger.exception("boom")
    output = stream.getvalue()
    assert "The above exception was the direct cause" in output
    assert KEY not in output and TOKEN not in output
    assert output.count(REDACTED) == 2


def _fail_with_literal() -> None:
    raise RuntimeError("sk-live-0123456789abcdef")  # the key is in this source line too


def test_secret_in_a_traceback_source_line(capture):
    logger, stream = capture
    try:
        _fail_with_literal()
    except RuntimeError:
        logger.exception("failed")
    output = stream.getvalue()
    assert f'raise RuntimeError("{REDACTED}")' in output  # the quoted source line
    assert f"RuntimeError: {REDACTED}" in output
    assert KEY not in output


def test_secret_with_stack_info(capture):
    logger, stream = capture
    logger.info("using %s", KEY, stack_info=True)
    output = stream.getvalue()
    assert "Stack (most recent call last)" in output
    assert f"using {REDACTED}" in output and KEY not in output


def test_longest_secret_is_replaced_whole():
    formatter = RedactingFormatter(["sk-abcd", "sk-abcdef123"], fmt="%(message)s")
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "sk-abcdef123 and sk-abcd", (), None)
    assert formatter.format(record) == f"{REDACTED} and {REDACTED}"


def test_short_and_empty_secrets_are_ignored():
    """Redacting "" or a 3-character string would mangle every line."""
    formatter = RedactingFormatter(["", "abc"], fmt="%(message)s")
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "abc abcabc", (), None)
    assert formatter.format(record) == "abc abcabc"


def test_record_is_left_intact_for_other_handlers():
    """Formatting redacts the output, not the record (another handler may not want redaction)."""
    formatter = RedactingFormatter([KEY], fmt="%(message)s")
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "k=%s", (KEY,), None)
    assert formatter.format(record) == f"k={REDACTED}"
    assert record.args == (KEY,)


def test_redact_helper():
    assert redact(f"a {KEY} b {KEY}", [KEY]) == f"a {REDACTED} b {REDACTED}"
    assert redact("nothing here", [KEY]) == "nothing here"


@pytest.fixture
def restore_root_logging():
    root = logging.getLogger()
    saved = (list(root.handlers), root.level, logging.getLogger("httpx").level)
    yield
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])
    logging.getLogger("httpx").setLevel(saved[2])


@pytest.mark.parametrize(
    ("level", "httpx_level"), [(logging.INFO, logging.WARNING), ("DEBUG", logging.DEBUG)]
)
def test_setup_logging(restore_root_logging, monkeypatch, level, httpx_level):
    stream = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)
    handler = setup_logging(level, secrets=[KEY, TOKEN])
    root = logging.getLogger()
    assert root.handlers == [handler]
    assert isinstance(handler.formatter, RedactingFormatter)
    assert logging.getLogger("httpx").level == httpx_level
    logging.getLogger("bot.anything").warning("token %s key %s", TOKEN, KEY)
    output = stream.getvalue()
    assert f"bot.anything: token {REDACTED} key {REDACTED}" in output
    assert KEY not in output and TOKEN not in output


def test_interaction_tokens_in_urls_and_payloads_are_redacted() -> None:
    token = "aW50ZXJhY3Rpb246MTIzNDU2Nzg5OmFiY2RlZmdoaWprbG1ub3A"
    lines = [
        f"POST https://discord.com/api/v10/interactions/1234567890/{token}/callback has returned",
        f"PATCH https://discord.com/api/v10/webhooks/987654321/{token}/messages/@original",
        f"WebSocket Event: {{'t': 'INTERACTION_CREATE', 'd': {{'token': '{token}', 'id': '1'}}}}",
        f'{{"token": "{token}"}}',
    ]
    for line in lines:
        scrubbed = redact(line, [])
        assert token not in scrubbed and "[redacted]" in scrubbed, scrubbed
    # The ids and the rest of the line stay readable.
    assert "/interactions/1234567890/[redacted]/callback" in redact(lines[0], [])


@pytest.mark.parametrize(
    ("target", "hidden"),
    [
        ("postgresql://wanbot:pa%40ss-word@db:5432/wanbot", {"pa%40ss-word", "pa@ss-word"}),
        ("postgres://wanbot@db/wanbot?password=query-secret", {"query-secret"}),
        ("postgresql://wanbot@db/wanbot", set()),
        ("./data/wanbot.db", set()),
    ],
)
def test_a_database_urls_password_is_scrubbed_as_written_and_decoded(
    target: str, hidden: set[str]
) -> None:
    assert set(target_secrets(target)) == hidden
    line = f"connecting to {target} as {target.replace('%40', '@')}"
    scrubbed = redact(line, target_secrets(target))
    assert not any(secret in scrubbed for secret in hidden)
    assert ("[redacted]" in scrubbed) == bool(hidden)
