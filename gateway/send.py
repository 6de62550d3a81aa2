"""Send: try the decided targets in order until one answers.

A stream counts as answered only once its first event has arrived, so a target that fails before
the first byte reaches the client can still be replaced by the next one.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from time import perf_counter

from adapters.base import Adapter, UpstreamError, UpstreamReply, UpstreamRequest
from gateway.errors import GatewayError
from gateway.exchange import Exchange
from policies.engine import RouteDecision


def _worth_another_target(error: UpstreamError) -> bool:
    if error.kind in ("connect", "timeout", "protocol"):
        return True
    status = error.upstream_status or error.status
    return status == 429 or status >= 500


class Sender:
    def __init__(self, adapters: Mapping[str, Adapter]) -> None:
        self._adapters = adapters

    async def send(self, request: UpstreamRequest, decision: RouteDecision, exchange: Exchange) -> UpstreamReply:
        last_error: UpstreamError | None = None
        for target in decision.targets:
            adapter = self._adapters[target]
            exchange.target = target
            exchange.attempts += 1
            began = perf_counter()
            try:
                reply = await adapter.send(request)
                if reply.events is not None:
                    reply.events = await _with_first_event(reply)
            except UpstreamError as error:
                last_error = error
                if _worth_another_target(error):
                    continue
                break
            finally:
                exchange.upstream_seconds += perf_counter() - began
            return reply
        assert last_error is not None
        raise to_client_error(last_error)


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


def to_client_error(error: UpstreamError) -> GatewayError:
    headers = []
    if error.retry_after and error.retry_after.strip().isdigit():
        headers.append((b"retry-after", error.retry_after.strip().encode()))
    code = error.code or {"timeout": "upstream_timeout", "connect": "upstream_unavailable"}.get(error.kind, "upstream_error")
    return GatewayError(error.status, error.message, code=code, headers=headers)
