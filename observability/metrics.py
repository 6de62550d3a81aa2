"""Prometheus metrics, all prefixed `switchyard_`, labelled only with config names and status codes.

Label children are bound once per (route, target, tenant, status) and reused, so recording a request costs a
handful of increments and observations. Gauges that describe state (requests in flight, open circuits, the event
loop's tasks) are sampled when they are read, not touched per request. The task count returns to its idle level
once load stops unless something leaks tasks; bench/soak.py checks that.

With several worker processes (PROMETHEUS_MULTIPROC_DIR set before they start), every worker writes its values
to files in that directory and any worker's /metrics adds them all up.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

from gateway.exchange import Exchange
from policies.breaker import CLOSED, Breaker

NONE = "none"  # the label value for what a request never got to (no tenant, route or target yet)
CONTENT_TYPE = CONTENT_TYPE_LATEST

# LLM requests take from milliseconds (embeddings, cache hits) to minutes (long generations).
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0)
FIRST_TOKEN_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0)
OVERHEAD_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25)


class _Child:
    """A label child bound on first use, so a route that never streams exports no time-to-first-token series."""

    __slots__ = ("_metric", "_labels", "_child")

    def __init__(self, metric: Counter | Histogram, *labels: str) -> None:
        self._metric = metric
        self._labels = labels
        self._child: Any = None

    def inc(self, amount: float) -> None:
        child = self._child or self._bind()
        child.inc(amount)

    def observe(self, value: float) -> None:
        child = self._child or self._bind()
        child.observe(value)

    def _bind(self) -> Any:
        self._child = self._metric.labels(*self._labels)
        return self._child


class _Series:
    """The children one kind of request (route, target, tenant, status) updates."""

    __slots__ = (
        "requests", "duration", "overhead", "upstream", "first_token",
        "input_tokens", "output_tokens", "cost", "retries", "fallbacks",
    )

    def __init__(self, metrics: Metrics, route: str, target: str, tenant: str, status: str) -> None:
        provider = metrics.providers.get(target, NONE)
        kind, openness = metrics.classes.get(target, (NONE, NONE))
        self.requests = metrics.requests.labels(route, target, provider, kind, openness, tenant, status)
        self.duration = metrics.request_duration.labels(route, target, tenant)
        self.overhead = metrics.overhead.labels(route)
        self.upstream = _Child(metrics.upstream_duration, target, provider)
        self.first_token = _Child(metrics.first_token, route, target, tenant)
        self.input_tokens = _Child(metrics.tokens, "input", route, target, kind, openness, tenant)
        self.output_tokens = _Child(metrics.tokens, "output", route, target, kind, openness, tenant)
        self.cost = _Child(metrics.cost, route, target, kind, openness, tenant)
        self.retries = _Child(metrics.retries, route)
        self.fallbacks = _Child(metrics.fallbacks, route)


class Metrics:
    def __init__(
        self,
        providers: Mapping[str, str],
        multiprocess_dir: str | None = None,
        redis: bool = False,
        classes: Mapping[str, tuple[str, str]] | None = None,
    ) -> None:
        self.providers = dict(providers)
        self.classes = dict(classes or {})  # target → (kind, openness), from the catalog
        self._multiprocess_dir = multiprocess_dir
        # Our own registry, never prometheus_client's global one. In multiprocess mode the metrics live in files
        # and only the collector that reads them is registered.
        self.registry = CollectorRegistry(auto_describe=True)
        owner: CollectorRegistry | None = self.registry
        if multiprocess_dir:
            MultiProcessCollector(self.registry, path=multiprocess_dir)
            owner = None

        def counter(name: str, doc: str, labels: tuple[str, ...]) -> Counter:
            return Counter("switchyard_" + name, doc, labels, registry=owner)

        def histogram(name: str, doc: str, labels: tuple[str, ...], buckets: tuple[float, ...]) -> Histogram:
            return Histogram("switchyard_" + name, doc, labels, registry=owner, buckets=buckets)

        def gauge(name: str, doc: str, labels: tuple[str, ...], mode: Any) -> Gauge:
            return Gauge("switchyard_" + name, doc, labels, registry=owner, multiprocess_mode=mode)

        self.requests = counter(
            "requests", "Requests answered, by outcome.",
            ("route", "target", "provider", "kind", "openness", "tenant", "status"),
        )
        self.request_duration = histogram(
            "request_duration_seconds", "Whole request, first byte in to last byte out (streams included).",
            ("route", "target", "tenant"), DURATION_BUCKETS,
        )
        self.upstream_duration = histogram(
            "upstream_duration_seconds", "Time spent waiting on upstreams: every attempt, and the relay of a stream.",
            ("target", "provider"), DURATION_BUCKETS,
        )
        self.overhead = histogram(
            "overhead_seconds", "Time spent in the gateway itself until the response headers, upstream time excluded.",
            ("route",), OVERHEAD_BUCKETS,
        )
        self.first_token = histogram(
            "time_to_first_token_seconds", "Streams: from the request's arrival to its first event sent to the client.",
            ("route", "target", "tenant"), FIRST_TOKEN_BUCKETS,
        )
        self.tokens = counter(
            "tokens", "Tokens as the upstream reported them (or as the gateway counted them when it did not).",
            ("type", "route", "target", "kind", "openness", "tenant"),
        )
        self.cost = counter(
            "cost_usd", "Cost in US dollars, for targets with a known price.",
            ("route", "target", "kind", "openness", "tenant"),
        )
        self.retries = counter("retries", "Retries of a failed attempt on the same target.", ("route",))
        self.fallbacks = counter("fallbacks", "Moves to the next target of a route after a failure.", ("route",))
        self.ratelimit_rejections = counter(
            "ratelimit_rejections", "Requests refused by a tenant limit (limit: the config field).", ("tenant", "limit")
        )
        self.limits_degraded = counter(
            "limits_degraded", "Requests whose limits Redis could not check (mode: fail_open or fail_closed).", ("mode",)
        )
        self.connections_cut = counter(
            "connections_cut", "Client connections the gateway cut off (reason: request_too_slow, answered 408; "
            "no_request, connected and sent nothing; not_reading, stopped reading its response).", ("reason",)
        )
        self.safety_events = counter(
            "safety_events", "Safety filter findings and what was done about them.", ("kind", "action")
        )
        self.circuit_open = gauge(
            "circuit_open", "1 while a target's circuit breaker is open or probing (in any worker).", ("target",), "livemax"
        )
        self.in_flight = gauge("in_flight_requests", "Requests being served right now.", (), "livesum")
        self.event_loop_tasks = gauge(
            "event_loop_tasks", "asyncio tasks alive in the event loop (the scrape's own included).", (), "livesum"
        )
        self.redis_up = gauge("redis_up", "1 while the shared state store answers.", (), "livemin") if redis else None
        self._series: dict[tuple[str, str, str, int], _Series] = {}
        self._safety: dict[tuple[str, str], Any] = {}
        self._circuits = {name: self.circuit_open.labels(name) for name in self.providers}

    def record(self, exchange: Exchange, duration: float) -> None:
        key = (exchange.route, exchange.target, exchange.tenant, exchange.status)
        series = self._series.get(key)
        if series is None:
            series = self._series[key] = _Series(
                self, exchange.route or NONE, exchange.target or NONE, exchange.tenant or NONE, str(exchange.status)
            )
        series.requests.inc()
        series.duration.observe(duration)
        series.overhead.observe(exchange.overhead_seconds)
        if exchange.attempts:
            series.upstream.observe(exchange.upstream_seconds)
        if exchange.first_token_seconds is not None:
            series.first_token.observe(exchange.first_token_seconds)
        usage = exchange.usage
        if usage.input_tokens:
            series.input_tokens.inc(usage.input_tokens)
        if usage.output_tokens:
            series.output_tokens.inc(usage.output_tokens)
        if exchange.cost_usd:
            series.cost.inc(exchange.cost_usd)
        if exchange.retries:
            series.retries.inc(exchange.retries)
        if exchange.fallbacks:
            series.fallbacks.inc(exchange.fallbacks)
        for kind, action in exchange.safety_events:
            self.safety_event(kind, action)

    def ratelimit_rejected(self, tenant: str, limit: str) -> None:
        self.ratelimit_rejections.labels(tenant or NONE, limit).inc()

    def safety_event(self, kind: str, action: str) -> None:
        child = self._safety.get((kind, action))
        if child is None:
            child = self._safety[(kind, action)] = self.safety_events.labels(kind, action)
        child.inc()

    def set_redis_up(self, up: bool) -> None:
        if self.redis_up is not None:
            self.redis_up.set(1 if up else 0)

    def sample(self, in_flight: int, breakers: Iterable[tuple[str, Breaker]]) -> None:
        """Brings the state gauges up to date: before each scrape, and now and then in worker processes."""
        self.in_flight.set(in_flight)
        self.event_loop_tasks.set(len(asyncio.all_tasks()))  # O(tasks), so only here, never per request
        for name, breaker in breakers:
            child = self._circuits.get(name)
            if child is not None:
                child.set(0 if breaker.state == CLOSED else 1)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)

    def close(self, pid: int) -> None:
        """A worker leaving: its live gauges (in flight, circuits) must stop counting."""
        if self._multiprocess_dir:
            mark_process_dead(pid, self._multiprocess_dir)
