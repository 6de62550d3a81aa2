"""Circuit breaker state machine, driven by a fake clock."""

from __future__ import annotations

from policies.breaker import CLOSED, HALF_OPEN, OPEN, Breaker
from policies.schema import CircuitBreaker


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_opens_after_consecutive_failures_then_half_open_probe_closes_it():
    clock = Clock()
    breaker = Breaker(CircuitBreaker(consecutive_failures=3, cooldown_s=10, min_requests=100), clock)
    for _ in range(2):
        assert breaker.allow()
        breaker.record(False)
    assert breaker.state == CLOSED
    breaker.record(False)
    assert breaker.state == OPEN and not breaker.allow()
    assert 9.9 < breaker.retry_in() <= 10
    clock.now += 10
    assert breaker.allow() and breaker.state == HALF_OPEN
    assert not breaker.allow(), "only one probe at a time"
    breaker.record(True)
    assert breaker.state == CLOSED and breaker.allow()


def test_failed_probe_reopens():
    clock = Clock()
    breaker = Breaker(CircuitBreaker(consecutive_failures=1, cooldown_s=5), clock)
    breaker.record(False)
    clock.now += 5
    assert breaker.allow()
    breaker.record(False)
    assert breaker.state == OPEN and not breaker.allow()


def test_lost_probe_does_not_wedge_the_breaker():
    clock = Clock()
    breaker = Breaker(CircuitBreaker(consecutive_failures=1, cooldown_s=5), clock)
    breaker.record(False)
    clock.now += 5
    assert breaker.allow()  # the probe's client goes away; nothing is recorded
    clock.now += 6
    assert breaker.allow()


def test_error_rate_over_window_opens_and_old_buckets_expire():
    clock = Clock()
    spec = CircuitBreaker(consecutive_failures=100, error_rate=0.5, window_s=10, min_requests=10)
    breaker = Breaker(spec, clock)
    for i in range(10):
        breaker.record(i % 2 == 0)  # alternate: never 2 failures in a row, 50% rate
        clock.now += 0.5
    assert breaker.state == OPEN

    fresh = Breaker(spec, clock)
    for _ in range(8):
        fresh.record(False)
        fresh.record(True)  # keeps consecutive at 0..1
    clock.now += 11  # all of that leaves the window
    for _ in range(9):
        fresh.record(True)
    fresh.record(False)
    assert fresh.state == CLOSED
