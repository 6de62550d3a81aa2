"""Limits in process memory: the default without Redis, and the fallback while Redis is down.

Same semantics as the Redis script (see gateway/limits_base.py), for one process: every call runs
to completion without awaiting, so on one event loop it is as atomic as the script is in Redis.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

from gateway.limits_base import Kind, Plan, Verdict, period_end_ms, period_of

Clock = Callable[[], float]
CONCURRENCY_RETRY_MS = 1000  # when a slot frees is unknowable; a second is a fair hint


class _Log:
    """A sliding log of weighted entries, oldest first, with their running total.

    Times and ids sit in parallel deques of plain ints and strings: a minute of heavy traffic is
    many entries, and objects the garbage collector does not track cost nothing to keep.
    """

    __slots__ = ("times", "ids", "weights", "total")

    def __init__(self) -> None:
        self.times: deque[int] = deque()
        self.ids: deque[str] = deque()
        self.weights: dict[str, int] = {}
        self.total = 0

    def evict(self, cutoff: int) -> None:
        times = self.times
        while times and times[0] <= cutoff:
            times.popleft()
            self.total -= self.weights.pop(self.ids.popleft(), 0)

    def add(self, at: int, entry: str, weight: int) -> None:
        self.times.append(at)
        self.ids.append(entry)
        self.weights[entry] = weight
        self.total += weight

    def oldest(self, default: int) -> int:
        return self.times[0] if self.times else default

    def time_freeing(self, needed: int, span: int, now: int) -> int:
        """Milliseconds until `needed` weight has left the window."""
        freed = 0
        for at, entry in zip(self.times, self.ids):
            freed += self.weights.get(entry, 0)
            if freed >= needed:
                return at + span - now
        return span


class MemoryLimits:
    def __init__(self, clock: Clock = time.time) -> None:
        self._clock = clock
        self._logs: dict[str, _Log] = {}
        self._leases: dict[str, dict[str, int]] = {}  # key -> entry -> lease expiry
        self._budgets: dict[str, tuple[int, float]] = {}  # key -> (period, spent)

    def _now(self) -> int:
        return int(self._clock() * 1000)

    def _log(self, key: str, now: int, span: int) -> _Log:
        log = self._logs.get(key)
        if log is None:
            log = self._logs[key] = _Log()
        log.evict(now - span)
        return log

    def _spent(self, key: str, kind: Kind, now: int) -> tuple[int, float]:
        period = period_of(kind, now)
        stored = self._budgets.get(key)
        return period, stored[1] if stored is not None and stored[0] == period else 0.0

    async def admit(self, plan: Plan, entry: str, tokens: int) -> Verdict:
        return self.admit_now(plan, entry, tokens)

    def admit_now(self, plan: Plan, entry: str, tokens: int) -> Verdict:
        now = self._now()
        failed, retry = -1, 0
        shown: dict[Kind, tuple[int, int, int, int]] = {}  # kind -> (limit, left, reset, cost) of the tightest
        for index, limit in enumerate(plan.limits):
            kind, amount, span = limit.kind, limit.amount, limit.span_ms
            refused_for = None
            if kind is Kind.REQUESTS or kind is Kind.TOKENS:
                log = self._log(limit.keys[0], now, span)
                cost = 1 if kind is Kind.REQUESTS else tokens
                if cost > amount:
                    refused_for = -1
                elif log.total + cost > amount:
                    refused_for = log.time_freeing(log.total + cost - int(amount), span, now)
                left = int(amount) - log.total
                best = shown.get(kind)
                if best is None or left < best[1]:
                    shown[kind] = (int(amount), left, log.oldest(now) + span - now, cost)
            elif kind is Kind.CONCURRENT:
                leases = self._live_leases(limit.keys[0], now)
                if len(leases) + 1 > amount:
                    refused_for = CONCURRENCY_RETRY_MS
            else:
                period, spent = self._spent(limit.keys[0], kind, now)
                if spent >= amount:
                    refused_for = period_end_ms(kind, period) - now
            if refused_for is not None and (failed < 0 or (retry >= 0 and (refused_for < 0 or refused_for > retry))):
                failed, retry = index, refused_for
        if failed < 0:
            self._consume(plan, entry, tokens, now)
        return _verdict(failed, retry, shown, now)

    def _live_leases(self, key: str, now: int) -> dict[str, int]:
        leases = self._leases.setdefault(key, {})
        # Leases of one key share their length, so the oldest expire first.
        expired = []
        for held, expiry in leases.items():
            if expiry > now:
                break
            expired.append(held)
        for held in expired:
            del leases[held]
        return leases

    def _consume(self, plan: Plan, entry: str, tokens: int, now: int) -> None:
        for limit in plan.limits:
            if limit.kind is Kind.REQUESTS:
                self._logs[limit.keys[0]].add(now, entry, 1)
            elif limit.kind is Kind.TOKENS:
                self._logs[limit.keys[0]].add(now, entry, tokens)
            elif limit.kind is Kind.CONCURRENT:
                self._leases[limit.keys[0]][entry] = now + limit.span_ms

    def settle(self, plan: Plan, entry: str, token_delta: int, usd: float) -> None:
        now = self._now()
        for limit in plan.limits:
            key = limit.keys[0]
            if limit.kind is Kind.TOKENS and token_delta:
                self._reconcile(key, entry, token_delta, now, limit.span_ms)
            elif limit.kind is Kind.CONCURRENT:
                self._leases.get(key, {}).pop(entry, None)
            elif limit.kind in (Kind.USD_DAY, Kind.USD_MONTH) and usd > 0:
                period, spent = self._spent(key, limit.kind, now)
                self._budgets[key] = (period, spent + usd)

    def _reconcile(self, key: str, entry: str, delta: int, now: int, span: int) -> None:
        log = self._log(key, now, span)
        if entry in log.weights:
            log.weights[entry] += delta
            log.total += delta
        elif delta > 0:  # the estimate already left the window: the rest counts from now
            log.add(now, entry + "+", delta)


def _verdict(failed: int, retry: int, shown: dict[Kind, tuple[int, int, int, int]], now: int) -> Verdict:
    """Remaining: after this request if it was admitted, as it stands if not."""
    headlines: list[int] = []
    for kind in (Kind.REQUESTS, Kind.TOKENS):
        limit, left, reset, cost = shown.get(kind, (-1, 0, 0, 0))
        headlines += [limit, max(0, left - (cost if failed < 0 else 0)), reset]
    return Verdict(failed < 0, failed, retry, *headlines, now)
