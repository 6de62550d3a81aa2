"""What the limit backends share: the limits of one request (a Plan), and the verdict on it.

Both backends (process memory, Redis) implement the same semantics, documented once here:

- requests_per_minute / tokens_per_minute: a sliding log. An entry admitted at `t` counts while
  `now - t < 60 s`, so at most the limit is ever inside any rolling 60-second window (exact at the
  edges: no fixed-window doubling). Tokens are the prompt estimate at admission, corrected by the
  upstream's reported usage when the response ends (`settle`).
- concurrent_requests: a lease per request in flight, released when it ends; a lease whose process
  died expires after `state.concurrency_lease_s`.
- usd_per_day / usd_per_month: spend per UTC calendar day / month. A request is admitted while the
  period's spend is below the budget; its actual cost is added when it ends, so requests already in
  flight can take the spend past the budget by their own cost.

A request is admitted only if every limit in its plan admits it, and then it counts against all of
them; a refused request counts against none.
"""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass
from typing import NamedTuple

MINUTE_MS = 60_000
DAY_MS = 86_400_000


class Kind(enum.IntEnum):
    REQUESTS = 1
    TOKENS = 2
    CONCURRENT = 3
    USD_DAY = 4
    USD_MONTH = 5

    @property
    def config_name(self) -> str:
        return _CONFIG_NAMES[self]

    @property
    def keys(self) -> int:
        """How many storage keys a limit of this kind uses (tokens: the log and the weights)."""
        return 2 if self is Kind.TOKENS else 1


_CONFIG_NAMES = {
    Kind.REQUESTS: "requests_per_minute",
    Kind.TOKENS: "tokens_per_minute",
    Kind.CONCURRENT: "concurrent_requests",
    Kind.USD_DAY: "usd_per_day",
    Kind.USD_MONTH: "usd_per_month",
}


@dataclass(frozen=True, slots=True)
class LimitSpec:
    kind: Kind
    amount: float
    span_ms: int  # the window for per-minute limits, the lease for concurrency, 0 for budgets
    keys: tuple[str, ...]
    scope: str  # who the limit belongs to, as told to that caller: "tenant 'acme'", "this API key"…


class Plan:
    """Every limit one kind of request is checked against, built once and reused.

    `wire` is for the backend's own use (the Redis backend keeps the pre-encoded command there).
    """

    __slots__ = ("limits", "keys", "uses_tokens", "settles", "has_budget", "leases", "wire")

    def __init__(self, limits: tuple[LimitSpec, ...]) -> None:
        self.limits = limits
        self.keys = tuple(key for limit in limits for key in limit.keys)
        kinds = {limit.kind for limit in limits}
        self.uses_tokens = Kind.TOKENS in kinds
        self.has_budget = bool(kinds & {Kind.USD_DAY, Kind.USD_MONTH})
        self.leases = Kind.CONCURRENT in kinds
        self.settles = bool(kinds - {Kind.REQUESTS})  # what a request must tell back when it ends
        self.wire: object = None


class Verdict(NamedTuple):
    """A backend's answer: admitted or not, and what the rate-limit headers show.

    `failed` is the index in the plan of the limit that refused (-1 when admitted); `retry_ms` is when
    it may admit the request again (-1: never, the request alone is larger than the limit).
    `*_limit` is -1 when the plan has no limit of that kind; the most restrictive one is reported.
    """

    admitted: bool
    failed: int
    retry_ms: int
    requests_limit: int
    requests_remaining: int
    requests_reset_ms: int
    tokens_limit: int
    tokens_remaining: int
    tokens_reset_ms: int
    now_ms: int


class LimitsUnavailable(Exception):
    """The shared limit state (Redis) cannot be reached right now."""


def period_of(kind: Kind, now_ms: int) -> int:
    """The budget period a moment falls in: days since the epoch, or months since year 0 (UTC)."""
    if kind is Kind.USD_DAY:
        return now_ms // DAY_MS
    day = dt.date(1970, 1, 1) + dt.timedelta(days=now_ms // DAY_MS)
    return day.year * 12 + day.month - 1


def period_end_ms(kind: Kind, period: int) -> int:
    if kind is Kind.USD_DAY:
        return (period + 1) * DAY_MS
    year, month = divmod(period + 1, 12)
    return (dt.date(year, month + 1, 1) - dt.date(1970, 1, 1)).days * DAY_MS
