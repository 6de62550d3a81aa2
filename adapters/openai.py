"""Any OpenAI-compatible server (OpenAI, vLLM, Ollama, llama.cpp, TGI): zero translation.

The client's body goes upstream with only the model name rewritten; stream bytes pass through as
they arrive. One pooled aiohttp session per target, opened at start-up.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import orjson

from adapters.base import Adapter, Endpoint, UpstreamError, UpstreamReply, UpstreamRequest, Usage, status_error
from adapters.sse import UsageTap, all_json, ends_done, framed_events, read_usage
from gateway.config import TargetConfig


class OpenAIAdapter(Adapter):
    def __init__(self, name: str, target: TargetConfig) -> None:
        super().__init__(name, target)
        base = (target.base_url or "").rstrip("/")
        self._urls = {endpoint: base + endpoint.path for endpoint in Endpoint}
        self._headers = {"Content-Type": "application/json", **target.headers}
        if target.api_key:
            self._headers["Authorization"] = f"Bearer {target.api_key}"
        self._timeout = aiohttp.ClientTimeout(total=target.timeout_s, sock_connect=target.connect_timeout_s)
        # A stream may run long; what must not happen is silence, so its timeout is per read.
        self._stream_timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=target.connect_timeout_s, sock_read=target.timeout_s
        )
        self._session: aiohttp.ClientSession | None = None

    @property
    def provider(self) -> str:
        return "openai"

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(
            limit=self.target.max_connections, ttl_dns_cache=300, keepalive_timeout=30
        )
        self._session = aiohttp.ClientSession(connector=connector, skip_auto_headers=("User-Agent",))

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def send(self, request: UpstreamRequest) -> UpstreamReply:
        assert self._session is not None, "adapter used before start()"
        body = dict(request.body)
        body["model"] = self.target.model
        if request.stream and request.endpoint is not Endpoint.EMBEDDING:
            # Ask for the final usage event even when the client did not: cost and limits need it.
            options = body.get("stream_options")
            body["stream_options"] = {**options, "include_usage": True} if isinstance(options, dict) else {"include_usage": True}
        headers = {**self._headers, **request.headers} if request.headers else self._headers
        timeout = self._stream_timeout if request.stream else self._timeout
        try:
            response = await self._session.post(
                self._urls[request.endpoint], data=orjson.dumps(body), headers=headers, timeout=timeout
            )
        except Exception as exc:
            raise self._transport_error(exc) from None
        if response.status >= 400:
            raise await self._status_error(response)
        if request.stream:
            usage = Usage()
            tap = UsageTap(usage, request.client_wants_usage)
            return UpstreamReply(
                response.status,
                events=self._events(response, tap),
                usage=usage,
                content_type=b"text/event-stream",
                release=response.close,
            )
        try:
            payload = await response.read()
        except Exception as exc:
            response.close()
            raise self._transport_error(exc) from None
        response.release()
        usage = Usage()
        try:
            parsed = orjson.loads(payload)
        except orjson.JSONDecodeError:
            raise UpstreamError("protocol", 502, f"upstream target {self.name!r} returned invalid JSON") from None
        if isinstance(parsed, dict) and isinstance(parsed.get("usage"), dict):
            read_usage(parsed["usage"], usage)
        return UpstreamReply(response.status, body=payload, usage=usage)

    async def _events(self, response: aiohttp.ClientResponse, tap: UsageTap) -> AsyncIterator[bytes]:
        first, done = True, False
        try:
            async for events in framed_events(response.content.iter_any()):
                if first and not all_json(events):
                    raise UpstreamError("protocol", 502, f"upstream target {self.name!r} sent a stream that is not JSON")
                first, done = False, ends_done(events)
                events = tap(events)
                if events:
                    yield events
                if done:  # nothing follows [DONE]: the client's reply is whole now, whenever the upstream hangs up
                    return
            if not done:  # a clean end before [DONE] is still a cut: the client must not take it for a whole reply
                raise UpstreamError("protocol", 502, f"upstream target {self.name!r} broke off the stream")
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            raise self._transport_error(exc, mid_stream=True) from None
        finally:
            response.close()

    def _transport_error(self, exc: BaseException, mid_stream: bool = False) -> UpstreamError:
        where = f"upstream target {self.name!r}"
        if isinstance(exc, UpstreamError):
            return exc
        if isinstance(exc, (asyncio.TimeoutError, aiohttp.ServerTimeoutError)):
            return UpstreamError("timeout", 504, f"{where} timed out")
        if isinstance(exc, aiohttp.ClientConnectorError):
            return UpstreamError("connect", 502, f"could not connect to {where}")
        if mid_stream:
            return UpstreamError("protocol", 502, f"{where} broke off the stream")
        return UpstreamError("connect", 502, f"{where} closed the connection")

    async def _status_error(self, response: aiohttp.ClientResponse) -> UpstreamError:
        status = response.status
        try:
            detail, code = _error_detail(await asyncio.wait_for(response.read(), self.target.connect_timeout_s))
        except Exception:
            detail, code = None, None
        finally:
            response.release()
        return status_error(self.name, status, detail, retry_after=response.headers.get("Retry-After"), code=code)


def _error_detail(payload: bytes) -> tuple[str | None, str | None]:
    """The upstream's error message and code, from OpenAI's error shape or a bare string."""
    try:
        parsed = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return None, None
    error = parsed.get("error") if isinstance(parsed, dict) else None
    if isinstance(error, str):
        return error[:2000], None
    if not isinstance(error, dict):
        return None, None
    message = error.get("message")
    code = error.get("code")
    return (message[:2000] if isinstance(message, str) else None), (code[:100] if isinstance(code, str) else None)
