"""The one retry-wait rule (`bot.backoff`), with the parameters of each place that retries."""

from __future__ import annotations

import types

import pytest

from bot import backoff as backoff_module
from bot.backoff import Backoff
from bot.dashscope.retry import RetryPolicy
from bot.dispatch import engine, poller

CLIENT = RetryPolicy().backoff

# (who, backoff, attempt, retry_after) -> (shortest, longest) wait in seconds. The longest is
# each old formula's wait before jitter: the client's min(8, 0.5·2^a), the engine's
# min(60, 2^(submit_attempts+1)) and min(300, 2^(delivery_attempts+1)), the poller's
# min(60, 2^failures) and min(300, 10·2^(list_failures-1)).
TABLE = [
    ("client, first retry", CLIENT, 0, None, (0.25, 0.5)),
    ("client, third retry", CLIENT, 2, None, (1.0, 2.0)),
    ("client, capped", CLIENT, 9, None, (4.0, 8.0)),
    ("client, Retry-After", CLIENT, 0, 3.0, (3.0, 3.0)),
    ("submission, first failure", engine.SUBMIT_BACKOFF, 0, None, (1.0, 2.0)),
    ("submission, fourth failure", engine.SUBMIT_BACKOFF, 3, None, (8.0, 16.0)),
    ("submission, capped", engine.SUBMIT_BACKOFF, 5, None, (30.0, 60.0)),
    ("submission, Retry-After", engine.SUBMIT_BACKOFF, 3, 7.5, (7.5, 7.5)),
    ("submission, Retry-After past the cap", engine.SUBMIT_BACKOFF, 0, 90.0, (90.0, 90.0)),
    ("delivery, first failure", engine.DELIVERY_BACKOFF, 0, None, (1.0, 2.0)),
    ("delivery, seventh failure", engine.DELIVERY_BACKOFF, 6, None, (64.0, 128.0)),
    ("delivery, capped", engine.DELIVERY_BACKOFF, 8, None, (150.0, 300.0)),
    ("task query, first failure", poller.QUERY_BACKOFF, 0, None, (1.0, 2.0)),
    ("task query, capped", poller.QUERY_BACKOFF, 7, None, (30.0, 60.0)),
    ("task query, Retry-After now", poller.QUERY_BACKOFF, 2, 0.0, (0.0, 0.0)),
    ("task query, Retry-After in the past", poller.QUERY_BACKOFF, 2, -4.0, (0.0, 0.0)),
    ("task list off, first failure", poller.LIST_OFF, 0, None, (5.0, 10.0)),
    ("task list off, capped", poller.LIST_OFF, 5, None, (150.0, 300.0)),
    ("a failure streak too long for a float", Backoff(1.0, 60.0), 5000, None, (30.0, 60.0)),
]


@pytest.mark.parametrize(
    ("rule", "attempt", "retry_after", "bounds"),
    [
        pytest.param(rule, attempt, after, bounds, id=who)
        for who, rule, attempt, after, bounds in TABLE
    ],
)
def test_the_wait_spans_half_to_all_of_the_ceiling_unless_the_server_says(
    monkeypatch: pytest.MonkeyPatch,
    rule: Backoff,
    attempt: int,
    retry_after: float | None,
    bounds: tuple[float, float],
) -> None:
    for end, pick in enumerate((lambda low, high: low, lambda low, high: high)):
        monkeypatch.setattr(backoff_module, "random", types.SimpleNamespace(uniform=pick))
        assert rule.delay(attempt, retry_after) == pytest.approx(bounds[end])


def test_the_random_half_is_spread_over_its_range() -> None:
    waits = [Backoff(2.0, 60.0).delay(2) for _ in range(500)]
    assert all(4.0 <= wait <= 8.0 for wait in waits)
    # Jitter: clients failing together spread out instead of retrying in step.
    assert min(waits) < 4.5 and max(waits) > 7.5
