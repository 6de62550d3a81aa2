"""Writing responses to the client over raw ASGI: JSON, SSE streams and errors."""

from __future__ import annotations

import asyncio
from time import perf_counter
from typing import Any

from adapters.base import UpstreamError, UpstreamReply
from gateway.errors import GatewayError
from gateway.exchange import Exchange
from gateway.send import to_client_error

JSON = b"application/json"


def gateway_headers(exchange: Exchange, content_type: bytes) -> list[tuple[bytes, bytes]]:
    headers = [
        (b"content-type", content_type),
        (b"x-request-id", exchange.request_id),
        (b"x-switchyard-route", exchange.route.encode() or b"none"),
        (b"x-switchyard-target", exchange.target.encode() or b"none"),
        (b"x-switchyard-attempts", str(exchange.attempts).encode()),
        (b"x-switchyard-overhead-ms", f"{exchange.fix_overhead() * 1000:.3f}".encode()),
    ]
    if exchange.cost_usd is not None:  # known for JSON replies; a stream's cost is known only after its end
        headers.append((b"x-switchyard-cost-usd", f"{exchange.cost_usd:.10f}".encode()))
    headers.extend(exchange.ratelimit_headers)
    if exchange.safety_events:
        headers.append((b"x-switchyard-safety", ", ".join(f"{kind};{action}" for kind, action in exchange.safety_events).encode()))
    return headers


async def send_json(send: Any, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def send_error(send: Any, exchange: Exchange, error: GatewayError) -> None:
    exchange.status = error.status
    headers = gateway_headers(exchange, JSON)
    headers.extend(error.headers)
    await send_json(send, error.status, error.body(), headers)


async def send_reply(send: Any, exchange: Exchange, reply: UpstreamReply) -> None:
    exchange.status = reply.status
    await send_json(send, reply.status, reply.body or b"", gateway_headers(exchange, reply.content_type))


async def send_stream(send: Any, receive: Any, exchange: Exchange, reply: UpstreamReply) -> None:
    """Relays a stream until it ends or the client leaves; leaving closes the upstream request too."""
    exchange.status = reply.status
    headers = gateway_headers(exchange, b"text/event-stream; charset=utf-8")
    headers.append((b"cache-control", b"no-cache"))
    headers.append((b"x-accel-buffering", b"no"))
    await send({"type": "http.response.start", "status": reply.status, "headers": headers})
    relaying = perf_counter()
    relay = asyncio.ensure_future(_relay(send, reply, exchange))
    watch = asyncio.ensure_future(_client_gone(receive))
    try:
        done, _ = await asyncio.wait((relay, watch), return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (relay, watch):
            if not task.done():
                task.cancel()
        await asyncio.gather(relay, watch, return_exceptions=True)
        reply.release()
        exchange.upstream_seconds += perf_counter() - relaying  # a stream's pace is the upstream's
    if relay in done and relay.exception() is None:
        await send({"type": "http.response.body", "body": b"", "more_body": False})
    else:
        exchange.status = 499  # client closed request


async def _relay(send: Any, reply: UpstreamReply, exchange: Exchange) -> None:
    assert reply.events is not None
    try:
        async for events in reply.events:
            if exchange.first_token_seconds is None:
                exchange.first_token_seconds = perf_counter() - exchange.started
            await send({"type": "http.response.body", "body": events, "more_body": True})
    except UpstreamError as error:
        # Headers are gone already: the failure can only be told in-band, as OpenAI does.
        client_error = to_client_error(error)
        exchange.status = client_error.status
        await send({"type": "http.response.body", "body": client_error.sse_event(), "more_body": True})


async def _client_gone(receive: Any) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
