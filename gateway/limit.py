"""Limit: admit a request against every limit of its tenant, key and route, or refuse it with 429.

Runs after decide (a route's `limits_per_tenant` need the route) and before send. All limits of a
request are checked and consumed in one atomic call: one Lua call in Redis when `state.redis_url` is
set, shared by every replica, else process memory. What a request used is told back when it ends
(`settle`): its concurrency slot, its actual tokens, its cost.

With Redis, the call starts earlier (`reserve`): on the route presumed before the safety scan, so the
round trip runs while the request is scanned. `admit` then takes that verdict when the final route has
the same limits; otherwise, and for a request refused before it reaches `admit`, the early admission is
cancelled once its reply is in (it stops counting against every limit) and, if need be, made again.

Every key of one request carries the tenant's hash tag (`sy:{tenant}:…`): tenant, key and route
limits are all the tenant's own, so one call touches one Redis Cluster slot. Semantics:
gateway/limits_base.py.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import os
import time
from collections.abc import Callable, Mapping
from typing import Any

from gateway.auth import Tenant, key_id
from gateway.config import Limits, StateConfig, TenantConfig
from gateway.errors import GatewayError
from gateway.exchange import Exchange
from gateway.limits_base import MINUTE_MS, Kind, LimitSpec, LimitsUnavailable, Plan, Verdict
from gateway.limits_memory import MemoryLimits
from gateway.limits_redis import RedisLimits
from gateway.limits_redis import verdict as verdict_of
from policies.conditions import RequestFacts
from policies.engine import RouteDecision

MAX_ROUTE_PLANS = 10_000  # (key, route) pairs remembered; a policy reload makes new ones
_SUFFIXES = {
    Kind.REQUESTS: ("rpm",),
    Kind.TOKENS: ("tpm", "tpm:w"),
    Kind.CONCURRENT: ("conc",),
    Kind.USD_DAY: ("usd:day",),
    Kind.USD_MONTH: ("usd:month",),
}
_WORDS = {
    Kind.REQUESTS: "requests per minute",
    Kind.TOKENS: "tokens per minute",
    Kind.CONCURRENT: "concurrent requests",
    Kind.USD_DAY: "USD per day",
    Kind.USD_MONTH: "USD per month",
}
Header = tuple[bytes, bytes]


class Admission:
    """A request let in: what it must tell its limits when it ends. While `reply` is set, it is an early
    admission (see `Limiter.reserve`) whose verdict no one has taken yet."""

    __slots__ = ("plan", "backend", "entry", "tokens", "reply")

    def __init__(
        self, plan: Plan, backend: MemoryLimits | RedisLimits, entry: str, tokens: int, reply: asyncio.Future[Any] | None = None
    ) -> None:
        self.plan = plan
        self.backend = backend
        self.entry = entry
        self.tokens = tokens
        self.reply = reply


def limit_specs(limits: Limits, tenant: str, scope_key: str, scope: str, lease_ms: int) -> tuple[LimitSpec, ...]:
    base = f"sy:{{{tenant}}}:{scope_key}:"
    amounts = {kind: getattr(limits, kind.config_name) for kind in Kind}
    spans = {Kind.REQUESTS: MINUTE_MS, Kind.TOKENS: MINUTE_MS, Kind.CONCURRENT: lease_ms}
    return tuple(
        LimitSpec(kind, amount, spans.get(kind, 0), tuple(base + s for s in _SUFFIXES[kind]), scope)
        for kind, amount in amounts.items()
        if amount is not None
    )


class Limiter:
    def __init__(self, state: StateConfig, tenants: Mapping[str, TenantConfig], clock: Callable[[], float] | None = None) -> None:
        """`clock` is for tests; by default memory uses time.time and Redis its own TIME."""
        self._lease_ms = int(state.concurrency_lease_s * 1000)
        self._local = MemoryLimits(clock or time.time)
        self._shared = RedisLimits(state, clock) if state.redis_url else None
        self._fail_open = state.on_redis_error == "fail_open"
        self._retry_after = str(math.ceil(state.redis_retry_s)).encode()
        self._callers: dict[str, tuple[LimitSpec, ...]] = {}  # key id -> the tenant's and the key's limits
        for name, spec in tenants.items():
            own = limit_specs(spec.limits, name, "t", f"tenant '{name}'", self._lease_ms)
            for key in spec.key_configs():
                kid = key_id(key.hash)
                scope = f"API key '{key.name}'" if key.name else "this API key"
                self._callers[kid] = own + limit_specs(key.limits, name, f"k:{kid}", scope, self._lease_ms)
        self._plans = {kid: Plan(specs) for kid, specs in self._callers.items() if specs}
        self._route_plans: dict[tuple[str, str, Limits], Plan] = {}
        self._entries = itertools.count()
        self._entry_prefix = os.urandom(6).hex() + ":"  # entries of all replicas meet in Redis
        self._on_refused: Callable[[str, str], None] = lambda tenant, limit: None
        self._on_degraded: Callable[[str], None] = lambda mode: None

    def report_to(
        self, on_refused: Callable[[str, str], None], on_redis: Callable[[bool], None], on_degraded: Callable[[str], None]
    ) -> None:
        """Who hears of refusals (tenant, limit field name), of Redis coming and going, and of each
        request whose limits could not be shared (mode: fail_open or fail_closed), e.g. metrics."""
        self._on_refused = on_refused
        self._on_degraded = on_degraded
        if self._shared is not None:
            self._shared.on_change = on_redis
            on_redis(self._shared.up)

    async def start(self) -> None:
        if self._shared is not None:
            await self._shared.start()

    async def close(self) -> None:
        if self._shared is not None:
            await self._shared.close()

    def ready(self) -> bool:
        return self._fail_open or self._shared is None or self._shared.up

    def health(self) -> dict[str, str]:
        """For /readyz: whether limits are shared, per process, or refusing."""
        if self._shared is None:
            return {}
        if self._shared.up:
            return {"redis": "up"}
        if self._fail_open:
            return {"redis": "down", "limits": "per process until Redis returns (fail_open)"}
        return {"redis": "down", "limits": "requests refused until Redis returns (fail_closed)"}

    def _plan(self, tenant: Tenant, decision: RouteDecision) -> Plan | None:
        route_limits = decision.limits
        if route_limits is None:
            return self._plans.get(tenant.key_id)
        cache_key = (tenant.key_id, decision.route, route_limits)
        plan = self._route_plans.get(cache_key)
        if plan is None:
            if len(self._route_plans) >= MAX_ROUTE_PLANS:
                self._route_plans.clear()
            scope = f"tenant '{tenant.name}' on route '{decision.route}'"
            route = limit_specs(route_limits, tenant.name, f"r:{decision.route}", scope, self._lease_ms)
            plan = self._route_plans[cache_key] = Plan(self._callers.get(tenant.key_id, ()) + route)
        return plan

    def reserve(self, tenant: Tenant, decision: RouteDecision | None, facts: RequestFacts, exchange: Exchange) -> None:
        """Starts the Redis admission for the route the request presumably takes (decided before the safety
        scan), kept on the exchange for `admit`. Nothing to gain in memory, where admission takes no wait."""
        shared = self._shared
        if shared is None or decision is None or decision.deny is not None:
            return
        plan = self._plan(tenant, decision)
        if plan is None:
            return
        entry, tokens = self._ticket(plan, facts)
        try:
            reply = shared.start_admission(plan, entry, tokens)
        except LimitsUnavailable:
            return  # `admit` tries again and applies on_redis_error
        exchange.admission = Admission(plan, shared, entry, tokens, reply)

    async def admit(self, tenant: Tenant, decision: RouteDecision, facts: RequestFacts, exchange: Exchange) -> None:
        """Lets the request in (recording what it holds on the exchange) or raises GatewayError 429/503."""
        plan = self._plan(tenant, decision)
        early, exchange.admission = exchange.admission, None
        if early is not None and early.plan is not plan:
            self._withdraw(early)  # the final route has other limits
            early = None
        if plan is None:
            return
        if early is not None:
            entry, tokens, pending = early.entry, early.tokens, early.reply
        else:
            entry, tokens = self._ticket(plan, facts)
            pending = None
        backend: MemoryLimits | RedisLimits = self._shared or self._local
        try:
            verdict = verdict_of(await pending) if pending is not None else await backend.admit(plan, entry, tokens)
        except LimitsUnavailable:
            self._on_degraded("fail_open" if self._fail_open else "fail_closed")
            if not self._fail_open:
                raise self._unavailable() from None
            backend = self._local
            verdict = self._local.admit_now(plan, entry, tokens)
        exchange.ratelimit_headers = rate_limit_headers(verdict)
        if not verdict.admitted:
            limit = plan.limits[verdict.failed]
            exchange.limited_by = limit.kind.config_name
            self._on_refused(tenant.name, exchange.limited_by)
            raise refusal(limit, verdict, tokens)
        if plan.settles:
            exchange.admission = Admission(plan, backend, entry, tokens)

    def settle(self, exchange: Exchange) -> None:
        """Tells the limits what the request used, once it has ended (answered, failed or abandoned)."""
        admission = exchange.admission
        if admission is None:
            return
        exchange.admission = None
        if admission.reply is not None:  # refused before `admit` took the early verdict: never sent
            self._withdraw(admission)
            return
        plan = admission.plan
        usage = exchange.usage
        used = usage.input_tokens + usage.output_tokens
        # Without any usage (the upstream failed before answering) the estimate stands.
        delta = used - admission.tokens if plan.uses_tokens and used else 0
        usd = (exchange.cost_usd or 0.0) if plan.has_budget else 0.0
        if delta or usd > 0 or plan.leases:
            admission.backend.settle(plan, admission.entry, delta, usd)

    def _ticket(self, plan: Plan, facts: RequestFacts) -> tuple[str, int]:
        """A new admission's entry id, and the tokens it asks for (the prompt estimate, when the plan counts tokens)."""
        return self._entry_prefix + str(next(self._entries)), max(1, facts.prompt_tokens) if plan.uses_tokens else 0

    @staticmethod
    def _withdraw(early: Admission) -> None:
        """Undoes an early admission the request will not use."""
        assert early.reply is not None and isinstance(early.backend, RedisLimits)
        early.backend.withdraw(early.plan, early.entry, early.reply)

    def _unavailable(self) -> GatewayError:
        return GatewayError(
            503,
            "Rate limits cannot be checked right now (their shared store is unreachable) and this gateway is "
            "configured to fail closed; try again shortly.",
            code="limits_unavailable",
            headers=[(b"retry-after", self._retry_after)],
        )


def rate_limit_headers(verdict: Verdict) -> tuple[Header, ...]:
    requests = verdict.requests_limit >= 0
    tokens = verdict.tokens_limit >= 0
    if requests and tokens:
        return (
            (b"x-ratelimit-limit-requests", b"%d" % verdict.requests_limit),
            (b"x-ratelimit-remaining-requests", b"%d" % verdict.requests_remaining),
            (b"x-ratelimit-reset-requests", openai_duration(verdict.requests_reset_ms).encode()),
            (b"x-ratelimit-limit-tokens", b"%d" % verdict.tokens_limit),
            (b"x-ratelimit-remaining-tokens", b"%d" % verdict.tokens_remaining),
            (b"x-ratelimit-reset-tokens", openai_duration(verdict.tokens_reset_ms).encode()),
        )
    if requests:
        return (
            (b"x-ratelimit-limit-requests", b"%d" % verdict.requests_limit),
            (b"x-ratelimit-remaining-requests", b"%d" % verdict.requests_remaining),
            (b"x-ratelimit-reset-requests", openai_duration(verdict.requests_reset_ms).encode()),
        )
    if tokens:
        return (
            (b"x-ratelimit-limit-tokens", b"%d" % verdict.tokens_limit),
            (b"x-ratelimit-remaining-tokens", b"%d" % verdict.tokens_remaining),
            (b"x-ratelimit-reset-tokens", openai_duration(verdict.tokens_reset_ms).encode()),
        )
    return ()


def refusal(limit: LimitSpec, verdict: Verdict, tokens: int) -> GatewayError:
    """The 429 for the limit that refused: which limit, whose, and when to try again; nobody else's usage."""
    kind, retry_ms = limit.kind, verdict.retry_ms
    amount = f"{limit.amount:g}"
    extra: list[Header] = []
    code = "rate_limit_exceeded"
    if retry_ms < 0:
        message = (
            f"This request (~{tokens} prompt tokens) is larger than the {_WORDS[kind]} limit of {limit.scope} "
            f"({amount}); it cannot be admitted as it is."
        )
        extra.append((b"x-should-retry", b"false"))
    elif kind is Kind.USD_DAY or kind is Kind.USD_MONTH:
        period = "day" if kind is Kind.USD_DAY else "month"
        message = (
            f"Budget reached: {limit.scope} has spent its {amount} {_WORDS[kind]}. It resets at the start of the "
            f"next UTC {period}, in {openai_duration(retry_ms)}."
        )
        code = "budget_exceeded"
        extra.append((b"x-should-retry", b"false"))  # the OpenAI SDKs would otherwise retry at once
    elif kind is Kind.CONCURRENT:
        message = f"Too many concurrent requests for {limit.scope} (limit {amount}); try again when one has finished."
    else:
        message = f"Rate limit reached for {limit.scope}: {_WORDS[kind]} (limit {amount}). Try again in {openai_duration(retry_ms)}."
    if retry_ms >= 0:
        extra += [(b"retry-after", b"%d" % max(1, math.ceil(retry_ms / 1000))), (b"retry-after-ms", b"%d" % retry_ms)]
    return GatewayError(429, message, code=code, headers=extra)


def openai_duration(ms: int) -> str:
    """A duration as OpenAI writes it in x-ratelimit-reset-*: "120ms", "1.5s", "6m0s", "1h2m3s"."""
    if ms < 1000:
        return f"{max(ms, 0)}ms"
    hours, rest = divmod(ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    seconds, millis = divmod(rest, 1000)
    text = f"{seconds}.{millis:03d}".rstrip("0") + "s" if millis else f"{seconds}s"
    if hours:
        return f"{hours}h{minutes}m{text}"
    return f"{minutes}m{text}" if minutes else text
