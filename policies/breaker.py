"""Circuit breakers, one per target: stop sending to a target that keeps failing, probe it later.

Closed → open after `consecutive_failures` in a row, or when the share of failures over the last
`window_s` reaches `error_rate` (once `min_requests` were seen). Open → half-open after
`cooldown_s`: exactly one probe request goes through; its success closes the breaker, its failure
opens it again. State is per process: each replica judges its own path to the upstream.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable

from policies.schema import CircuitBreaker

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"


class Breaker:
    __slots__ = ("spec", "_clock", "state", "_consecutive", "_buckets", "_total", "_failures", "_opened_at", "_probe_at")

    def __init__(self, spec: CircuitBreaker, clock: Callable[[], float] = time.monotonic) -> None:
        self.spec = spec
        self._clock = clock
        self.state = CLOSED
        self._consecutive = 0
        self._buckets: deque[list[int]] = deque()  # [second, requests, failures]
        self._total = 0
        self._failures = 0
        self._opened_at = 0.0
        self._probe_at: float | None = None

    def allow(self) -> bool:
        if self.state == CLOSED:
            return True
        now = self._clock()
        if self.state == OPEN:
            if now < self._opened_at + self.spec.cooldown_s:
                return False
            self.state = HALF_OPEN
            self._probe_at = None
        # Half-open: one probe at a time; a probe that never reported back (its client left)
        # is presumed lost after a cool-down, so the breaker cannot stay stuck.
        if self._probe_at is None or now - self._probe_at > self.spec.cooldown_s:
            self._probe_at = now
            return True
        return False

    def retry_in(self) -> float:
        """Seconds until the next probe may go, for Retry-After."""
        if self.state != OPEN:
            return 0.0
        return max(0.0, self._opened_at + self.spec.cooldown_s - self._clock())

    def record(self, success: bool) -> None:
        now = self._clock()
        self._count(now, success)
        if success:
            self._consecutive = 0
            if self.state != CLOSED:
                self._close()
            return
        self._consecutive += 1
        if self.state == HALF_OPEN or self._tripped():
            self.state = OPEN
            self._opened_at = now
            self._probe_at = None

    def _tripped(self) -> bool:
        spec = self.spec
        if self._consecutive >= spec.consecutive_failures:
            return True
        return self._total >= spec.min_requests and self._failures >= spec.error_rate * self._total

    def _close(self) -> None:
        self.state = CLOSED
        self._consecutive = 0
        self._buckets.clear()
        self._total = self._failures = 0
        self._probe_at = None

    def _count(self, now: float, success: bool) -> None:
        second = int(now)
        buckets = self._buckets
        horizon = second - self.spec.window_s
        while buckets and buckets[0][0] <= horizon:
            _, requests, failures = buckets.popleft()
            self._total -= requests
            self._failures -= failures
        if not buckets or buckets[-1][0] != second:
            buckets.append([second, 0, 0])
        bucket = buckets[-1]
        bucket[1] += 1
        self._total += 1
        if not success:
            bucket[2] += 1
            self._failures += 1


class BreakerBoard:
    """The breakers of all targets. Kept across policy reloads, so a reload does not reset health."""

    def __init__(self, targets: Iterable[str], spec: CircuitBreaker, clock: Callable[[], float] = time.monotonic) -> None:
        self._breakers = {name: Breaker(spec, clock) for name in targets}

    def __getitem__(self, target: str) -> Breaker:
        return self._breakers[target]

    def items(self) -> Iterable[tuple[str, Breaker]]:
        return self._breakers.items()

    def apply(self, spec: CircuitBreaker) -> None:
        for breaker in self._breakers.values():
            breaker.spec = spec
