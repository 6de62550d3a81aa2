"""Record: the last step of every request — metrics, trace and access log — and the cost the response reports.

The pipeline calls `begin` when a request arrives, `answered` once an upstream reply is in hand (before the
response headers, which carry the cost of a JSON reply), and `record` exactly once when the request is over,
whatever the outcome: answered, rejected, failed mid-stream or abandoned by its client.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Mapping
from time import perf_counter

from adapters.base import UpstreamReply
from gateway.exchange import Exchange
from gateway.runtime import Runtime
from observability.access_log import AccessLog
from observability.cost import CostModel
from observability.metrics import CONTENT_TYPE, Metrics
from observability.settings import ObservabilitySettings
from observability.usage import OutputMeter

SAMPLE_EVERY_S = 1.0  # how often a worker process publishes its state gauges for the others' scrapes


class Recorder:
    def __init__(self, settings: ObservabilitySettings, runtime: Runtime) -> None:
        config = runtime.settings.config
        providers = {name: adapter.provider for name, adapter in runtime.adapters.items()}
        self._breakers = runtime.breakers
        self.costs = CostModel(config.targets, runtime.price_map)
        self._priced = frozenset(name for name in config.targets if self.costs.rate(name).source != "unknown")
        self.metrics: Metrics | None = None
        classes = {name: (p.kind, p.openness or "unknown") for name, p in runtime.catalog.profiles.items()}
        if settings.metrics:
            self.metrics = Metrics(providers, settings.multiprocess_dir, redis=bool(config.state.redis_url), classes=classes)
        self._multiprocess = settings.metrics and settings.multiprocess_dir is not None
        self.tracing = None
        if settings.tracing is not None:
            from observability.tracing import Tracing

            self.tracing = Tracing(settings.tracing, config.targets, providers, classes=classes)
        self.access_log = AccessLog(providers) if settings.access_log else None
        self.in_flight = 0
        self._sampler: asyncio.Task[None] | None = None

    # ----- the request path ----------------------------------------------------------------------------------

    def begin(self, exchange: Exchange, headers: Mapping[bytes, bytes]) -> None:
        self.in_flight += 1
        if self.tracing is not None:
            exchange.trace = self.tracing.start(exchange.endpoint, headers)

    def answered(self, exchange: Exchange, reply: UpstreamReply, body: dict) -> None:
        """Takes the reply's usage; a JSON reply's cost is known now, a stream's when it has ended."""
        usage = exchange.usage = reply.usage
        trace = exchange.trace
        # Reported usage comes in a stream's last event, so until then a stream may still need counting.
        if usage.reported and (trace is None or not trace.recording):
            output = None
        else:
            output = exchange.output = OutputMeter(body)
        if reply.events is not None:
            if output is not None:
                reply.events = output.tap(reply.events)
            return
        if output is not None:
            output.read_reply(reply.body or b"")
            output.settle(usage)
        self._price(exchange)

    def record(self, exchange: Exchange) -> None:
        duration = perf_counter() - exchange.started
        self.in_flight -= 1
        if not exchange.status:
            exchange.status = 500  # it ended without an answer: an error escaped the pipeline
        output = exchange.output
        if output is not None:
            output.settle(exchange.usage)
        if exchange.cost_usd is None:
            self._price(exchange)
        if self.metrics is not None:
            self.metrics.record(exchange, duration)
        if exchange.trace is not None:
            exchange.trace.finish(exchange, output)
        if self.access_log is not None:
            self.access_log.write(exchange, duration)

    def _price(self, exchange: Exchange) -> None:
        if exchange.target in self._priced:
            exchange.cost_usd = self.costs.cost_usd(exchange.target, exchange.usage)

    # ----- for the other steps -------------------------------------------------------------------------------

    def ratelimit_rejected(self, tenant: str, limit: str) -> None:
        """A request refused by a tenant limit; `limit` is the config field's name, e.g. requests_per_minute."""
        if self.metrics is not None:
            self.metrics.ratelimit_rejected(tenant, limit)

    def redis_up(self, up: bool) -> None:
        if self.metrics is not None:
            self.metrics.set_redis_up(up)

    def limits_degraded(self, mode: str) -> None:
        """A request whose limits Redis could not check: served on per-process limits, or refused."""
        if self.metrics is not None:
            self.metrics.limits_degraded.labels(mode).inc()

    def connection_cut(self, reason: str) -> None:
        """A client connection cut off by the server's deadlines (gateway/server.py), before or outside a request."""
        if self.metrics is not None:
            self.metrics.connections_cut.labels(reason).inc()

    # ----- serving /metrics, start and stop ------------------------------------------------------------------

    def exposition(self) -> tuple[bytes, str]:
        assert self.metrics is not None, "metrics are off"
        self.metrics.sample(self.in_flight, self._breakers.items())
        return self.metrics.exposition(), CONTENT_TYPE

    async def start(self) -> None:
        if self._multiprocess:
            self._sampler = asyncio.get_running_loop().create_task(self._sample_forever())

    async def close(self) -> None:
        if self._sampler is not None:
            self._sampler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sampler
        if self.metrics is not None:
            self.metrics.close(os.getpid())
        if self.tracing is not None:
            await asyncio.get_running_loop().run_in_executor(None, self.tracing.shutdown)

    async def _sample_forever(self) -> None:
        # Another worker's scrape reads this one's gauges from their files, so they are published periodically.
        assert self.metrics is not None
        while True:
            self.metrics.sample(self.in_flight, self._breakers.items())
            await asyncio.sleep(SAMPLE_EVERY_S)
