"""Send: try the decided targets in order, with retries, timeouts and circuit breakers.

A stream counts as answered only once its first event has arrived, so a target that fails before
the first byte reaches the client can still be retried or replaced by the next one.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Mapping
from time import perf_counter

from adapters.base import Adapter, UpstreamError, UpstreamReply, UpstreamRequest
from gateway.errors import GatewayError
from gateway.exchange import Exchange
from policies.breaker import BreakerBoard
from policies.engine import RouteDecision


def error_classes(error: UpstreamError) -> frozenset[str]:
    """The policy error classes an upstream failure belongs to (see `retry.on`, `fallback_on`)."""
    if error.kind in ("timeout", "connect"):
        return frozenset({error.kind})
    if error.kind == "protocol":
        return frozenset({"5xx", "502"})
    status = error.upstream_status or error.status
    classes = {str(status)}
    if status >= 500:
        classes.add("5xx")
    code = (error.code or "").lower()
    if "context_length" in code or "context_window" in code:
        classes.add("context_length")
    if "content_policy" in code or "content_filter" in code:
        classes.add("content_policy")
    return frozenset(classes)


def _breaker_counts(error: UpstreamError) -> bool:
    """Whether a failure says something about the target's health (not the request's)."""
    status = error.upstream_status or error.status
    return error.kind != "status" or status == 429 or status >= 500


class Sender:
    def __init__(self, adapters: Mapping[str, Adapter], breakers: BreakerBoard, rng: random.Random | None = None) -> None:
        self._adapters = adapters
        self._breakers = breakers
        self._random = (rng or random.Random()).random

    async def send(self, request: UpstreamRequest, decision: RouteDecision, exchange: Exchange) -> UpstreamReply:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + decision.timeout_s if decision.timeout_s else None
        retry = decision.retry
        last_error: UpstreamError | None = None
        for position, target in enumerate(decision.targets):
            breaker = self._breakers[target]
            if position > 0 and last_error is not None:
                exchange.fallbacks += 1
            for attempt in range(1, retry.attempts + 1):
                if not breaker.allow():
                    last_error = last_error or _circuit_open(target, breaker.retry_in())
                    break
                timeout = decision.attempt_timeout_s
                if deadline is not None:
                    remaining = deadline - loop.time()
                    if remaining <= 0:
                        raise _total_timeout(decision)
                    timeout = remaining if timeout is None else min(timeout, remaining)
                try:
                    reply = await self._attempt(target, request, exchange, timeout)
                except UpstreamError as error:
                    last_error = error
                    if _breaker_counts(error):
                        breaker.record(False)
                    classes = error_classes(error)
                    if attempt < retry.attempts and not classes.isdisjoint(retry.on):
                        delay = self._backoff(attempt, error.retry_after, retry.backoff_s, retry.max_backoff_s)
                        if delay is not None and (deadline is None or loop.time() + delay < deadline):
                            exchange.retries += 1
                            await asyncio.sleep(delay)
                            continue
                    if classes.isdisjoint(decision.fallback_on):
                        raise to_client_error(error) from None
                    break
                breaker.record(True)
                return reply
        if last_error is None:
            raise GatewayError(503, f"Route {decision.route!r} has no target to send to.", code="no_target")
        raise to_client_error(last_error)

    async def _attempt(self, target: str, request: UpstreamRequest, exchange: Exchange, timeout: float | None) -> UpstreamReply:
        exchange.target = target
        exchange.attempts += 1
        trace = exchange.trace
        if trace is not None:
            trace.attempt_started(target, request)
        began = perf_counter()
        try:
            if timeout is None:
                return await _answered(self._adapters[target], request)
            try:
                async with asyncio.timeout(timeout):
                    return await _answered(self._adapters[target], request)
            except TimeoutError:
                raise UpstreamError("timeout", 504, f"upstream target {target!r} timed out") from None
        except UpstreamError as error:
            if trace is not None:
                trace.attempt_failed(error)
            raise
        finally:
            exchange.upstream_seconds += perf_counter() - began

    def _backoff(self, attempt: int, retry_after: str | None, base: float, cap: float) -> float | None:
        """Exponential backoff with full jitter, at least the upstream's Retry-After; None: too long."""
        delay = self._random() * min(cap, base * 2 ** (attempt - 1))
        if retry_after:
            try:
                asked = float(retry_after)
            except ValueError:
                return delay
            if asked > cap:
                return None
            delay = max(delay, asked)
        return delay


async def _answered(adapter: Adapter, request: UpstreamRequest) -> UpstreamReply:
    reply = await adapter.send(request)
    if reply.events is not None:
        reply.events = await _with_first_event(reply)
    return reply


async def _with_first_event(reply: UpstreamReply) -> AsyncIterator[bytes]:
    """Waits for the stream's first event, then hands back a stream that starts with it."""
    events = reply.events
    assert events is not None
    try:
        first = await anext(events)
    except StopAsyncIteration:
        reply.release()
        raise UpstreamError("protocol", 502, "upstream ended the stream before sending anything") from None
    except BaseException:
        reply.release()
        raise

    async def replay() -> AsyncIterator[bytes]:
        yield first
        async for item in events:
            yield item

    return replay()


def _circuit_open(target: str, retry_in: float) -> UpstreamError:
    return UpstreamError(
        "circuit_open", 503, f"upstream target {target!r} is failing; its circuit is open",
        retry_after=str(max(1, round(retry_in))), code="circuit_open",
    )


def _total_timeout(decision: RouteDecision) -> GatewayError:
    return GatewayError(504, f"Route {decision.route!r} ran out of its {decision.timeout_s:g} s timeout.", code="upstream_timeout")


def to_client_error(error: UpstreamError) -> GatewayError:
    headers = []
    if error.retry_after:
        seconds = error.retry_after.strip()
        if seconds.replace(".", "", 1).isdigit():
            headers.append((b"retry-after", str(max(1, round(float(seconds)))).encode()))
    code = error.code or {"timeout": "upstream_timeout", "connect": "upstream_unavailable"}.get(error.kind, "upstream_error")
    return GatewayError(error.status, error.message, code=code, headers=headers)
