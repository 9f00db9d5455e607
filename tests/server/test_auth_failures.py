"""The failed-authentication count (server/auth_failures.py) on its own, with a clock the test
moves: the limit, the window, and the bound on what it remembers."""

from __future__ import annotations

import logging

import pytest

from server.auth_failures import AuthFailures


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_an_address_is_blocked_at_the_limit_for_the_rest_of_the_window() -> None:
    """Up to the limit an address may try; at it, it waits until a minute after its first
    failure, however it tries meanwhile; then it starts afresh."""
    clock = Clock()
    failures = AuthFailures(per_minute=3, clock=clock)
    for _ in range(2):
        failures.failed("10.0.0.1", "http")
        assert failures.retry_after("10.0.0.1") == 0
    clock.now += 20
    failures.failed("10.0.0.1", "http")
    assert failures.retry_after("10.0.0.1") == pytest.approx(40)
    clock.now += 39
    assert failures.retry_after("10.0.0.1") == pytest.approx(1)
    assert failures.retry_after("10.0.0.2") == 0  # others are not touched
    clock.now += 1
    assert failures.retry_after("10.0.0.1") == 0
    failures.failed("10.0.0.1", "http")
    assert failures.retry_after("10.0.0.1") == 0  # a new window, one failure in it


def test_failures_spread_over_windows_never_block() -> None:
    """Two failures a minute at a limit of three: never blocked."""
    clock = Clock()
    failures = AuthFailures(per_minute=3, clock=clock)
    for _ in range(10):
        failures.failed("10.0.0.1", "websocket")
        failures.failed("10.0.0.1", "websocket")
        assert failures.retry_after("10.0.0.1") == 0
        clock.now += 60


def test_it_remembers_a_bounded_number_of_addresses() -> None:
    """Past `max_keys` addresses the oldest is forgotten: memory is bounded whoever floods."""
    failures = AuthFailures(per_minute=1, clock=Clock(), max_keys=100)
    for n in range(1000):
        failures.failed(f"10.0.{n // 256}.{n % 256}", "http")
    assert len(failures) == 100
    assert failures.retry_after("10.0.3.231") > 0  # the newest is still blocked


def test_a_failure_is_logged_with_its_address_and_count(caplog: pytest.LogCaptureFixture) -> None:
    """One warning a failure: the address, the channel and the count, and the block."""
    caplog.set_level(logging.WARNING, logger="slurm_graphql.auth")
    failures = AuthFailures(per_minute=2, clock=Clock())
    failures.failed("192.0.2.1", "http")
    failures.failed("192.0.2.1", "websocket")
    lines = [record.getMessage() for record in caplog.records]
    assert lines == [
        "authentication failed from 192.0.2.1 over http (1 in this minute)",
        "authentication failed from 192.0.2.1 over websocket (2 in this minute, now blocked)",
    ]
