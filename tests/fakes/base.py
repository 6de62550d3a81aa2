"""A real HTTP server in a background thread, with request recording, fault injection and in-flight tracking.

The fake upstreams subclass `FakeUpstream` and only add their API's routes and error shape. Each runs its own
event loop in its own thread, so it is independent of both the gateway process under test and the test's own
(pytest-asyncio session) loop: a deliberately hung upstream can never block the test that drives it.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import threading
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Self

from aiohttp import web

from .faults import Fault, FaultSwitch
from .polling import wait_until
from .wire import RecordedRequest, UpstreamRejection, parse_json, peer_of

# Per-request state the middleware and handlers share, stored on the aiohttp request.
_RECORD = web.RequestKey("fake_record", RecordedRequest)
_SEQUENCE = web.RequestKey("fake_sequence", int)
_FAULT = web.RequestKey("fake_fault", Fault | None)  # type: ignore[arg-type]
_STREAMING = web.RequestKey("fake_streaming", bool)
_SELF_ABORTED = web.RequestKey("fake_self_aborted", bool)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class FakeUpstream:
    """Base of the fake upstreams: lifecycle, recording, faults, streaming and disconnect accounting."""

    def __init__(self, name: str, *, chunk_delay: float = 0.0) -> None:
        self.name = name
        # Seconds to wait before each SSE event of a healthy stream; tests may change it at any time.
        self.chunk_delay = chunk_delay
        self._faults = FaultSwitch()
        self._lock = threading.Lock()
        self._records: list[RecordedRequest] = []
        self._sequence = 0
        self._in_flight = 0
        self._cancelled_streams = 0
        self._cancelled_requests = 0
        self._port: int | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._released: asyncio.Event | None = None  # set on stop(): ends hangs, delays and slow streams
        self._stopping = False

    # ----- what subclasses provide -------------------------------------------------------------------------

    def routes(self) -> list[web.RouteDef]:
        raise NotImplementedError

    def error_response(self, rejection: UpstreamRejection) -> web.Response:
        raise NotImplementedError

    @property
    def base_url(self) -> str:
        raise NotImplementedError

    # ----- lifecycle -----------------------------------------------------------------------------------------

    def start(self) -> Self:
        """Starts serving. After a stop() it binds the same port again, so tests can take an upstream down and
        bring it back under the gateway's feet."""
        if self._thread is not None:
            raise RuntimeError(f"upstream {self.name!r} is already running")
        ready = threading.Event()
        failures: list[BaseException] = []
        self._thread = threading.Thread(
            target=self._serve, args=(ready, failures), name=f"fake-upstream-{self.name}", daemon=True
        )
        self._thread.start()
        if not ready.wait(timeout=10):
            raise RuntimeError(f"upstream {self.name!r} did not start within 10 s")
        if failures:
            self._thread.join(timeout=5)
            self._thread = None
            raise RuntimeError(f"upstream {self.name!r} failed to start") from failures[0]
        return self

    def stop(self) -> None:
        """Stops serving; releases hung requests first so shutdown is prompt. Safe to call twice."""
        thread, loop = self._thread, self._loop
        if thread is None or loop is None:
            return
        asyncio.run_coroutine_threadsafe(self._close(), loop).result(timeout=15)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._thread is not None

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError(f"upstream {self.name!r} has not been started")
        return self._port

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _serve(self, ready: threading.Event, failures: list[BaseException]) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._open())
        except BaseException as exc:  # reported to start() in the test thread
            failures.append(exc)
            ready.set()
            loop.close()
            return
        ready.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def _open(self) -> None:
        self._stopping = False
        self._released = asyncio.Event()
        app = web.Application(middlewares=[self._make_middleware()], client_max_size=64 * 1024 * 1024)
        app.add_routes(self.routes())
        # handler_cancellation: a client that disconnects cancels its handler, exactly the signal tests need to
        # prove the gateway drops upstream work when its own client goes away.
        runner = web.AppRunner(app, access_log=None, handler_cancellation=True, shutdown_timeout=2.0)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", self._port or 0)
        await site.start()
        self._runner = runner
        self._port = runner.addresses[0][1]

    async def _close(self) -> None:
        self._stopping = True
        if self._released is not None:
            self._released.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # ----- what tests observe --------------------------------------------------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request received so far (a copy), oldest first, including those a fault answered."""
        with self._lock:
            return list(self._records)

    def requests_to(self, path: str) -> list[RecordedRequest]:
        return [record for record in self.requests if record.path == path]

    @property
    def last_request(self) -> RecordedRequest:
        records = self.requests
        if not records:
            raise AssertionError(f"upstream {self.name!r} has received no request")
        return records[-1]

    def wait_for_requests(self, count: int, timeout: float = 5.0) -> list[RecordedRequest]:
        """Waits until at least `count` requests have arrived and returns them all."""
        wait_until(lambda: len(self.requests) >= count, timeout=timeout, message=f"{count} requests to {self.name}")
        return self.requests

    def clear(self) -> None:
        """Forgets recorded requests and resets the disconnect counters (in_flight is live state, kept)."""
        with self._lock:
            self._records.clear()
            self._cancelled_streams = 0
            self._cancelled_requests = 0

    @property
    def in_flight(self) -> int:
        """Requests whose handler is running right now (received, not yet fully answered or abandoned)."""
        with self._lock:
            return self._in_flight

    @property
    def cancelled_streams(self) -> int:
        """Streaming replies cut short because the peer disconnected (not counting faults or stop())."""
        with self._lock:
            return self._cancelled_streams

    @property
    def cancelled_requests(self) -> int:
        """Any requests, streaming or not, whose peer disconnected before the reply was complete."""
        with self._lock:
            return self._cancelled_requests

    @property
    def open_connections(self) -> int:
        """TCP connections currently open to this upstream, idle keep-alive ones included."""
        loop, runner = self._loop, self._runner
        if loop is None or runner is None or runner.server is None:
            return 0
        server = runner.server

        async def count() -> int:  # read on the server's own loop: its connection table is not thread-safe
            return len(server.connections)

        return asyncio.run_coroutine_threadsafe(count(), loop).result(timeout=5)

    # ----- fault injection -----------------------------------------------------------------------------------

    def set_fault(self, kind: str, *, times: int | None = None, path: str | None = None, **params: Any) -> None:
        """Makes the upstream misbehave (see faults.FAULT_PARAMETERS) for the next `times` requests (default:
        until clear_fault()), optionally only for requests to `path`."""
        self._faults.set(Fault(kind, dict(params), path), times)

    def clear_fault(self) -> None:
        self._faults.clear()

    @property
    def fault(self) -> Fault | None:
        return self._faults.current()

    # ----- request pipeline ----------------------------------------------------------------------------------

    def _make_middleware(self) -> Any:
        @web.middleware
        async def track(request: web.Request, handler: Handler) -> web.StreamResponse:
            self._adjust(in_flight=+1)
            try:
                return await self._dispatch(request, handler)
            except asyncio.CancelledError:
                self._note_disconnect(request)
                raise
            except ConnectionResetError:
                # Writing failed because the peer is gone; nothing can be sent any more.
                self._note_disconnect(request)
                return web.Response(status=499)
            finally:
                self._adjust(in_flight=-1)

        return track

    async def _dispatch(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        raw = await request.read()
        record = RecordedRequest(
            method=request.method,
            path=request.path,
            query=dict(request.query),
            headers={name.lower(): value for name, value in request.headers.items()},
            body=parse_json(raw),
            raw=raw,
            peer=peer_of(request),
        )
        with self._lock:
            self._records.append(record)
            self._sequence += 1
            request[_SEQUENCE] = self._sequence
        request[_RECORD] = record
        streaming = isinstance(record.body, dict) and record.body.get("stream") is True
        fault = self._faults.take(request.path, streaming)
        request[_FAULT] = fault
        try:
            if fault is not None:
                early_reply = await self._apply_fault(request, fault, streaming)
                if early_reply is not None:
                    return early_reply
            return await handler(request)
        except UpstreamRejection as rejection:
            return self.error_response(rejection)

    async def _apply_fault(self, request: web.Request, fault: Fault, streaming: bool) -> web.StreamResponse | None:
        """Answers the request as the fault dictates, or returns None to let the handler answer (perhaps later,
        or with a faulty stream)."""
        params = fault.params
        if fault.kind == "status":
            status = int(params["status"])
            raise UpstreamRejection(
                status,
                params.get("message", f"injected fault: HTTP {status} from {self.name}"),
                error_type=params.get("type"),
                code=params.get("code"),
                headers=params.get("headers"),
            )
        if fault.kind == "hang":
            await self._pause(params.get("seconds"))
            return self._abort(request, reset=False)
        if fault.kind == "delay":
            await self._pause(float(params["seconds"]))
            return None
        if fault.kind == "reset":
            return self._abort(request, reset=True)
        if fault.kind == "bad_json":
            if streaming:
                return web.Response(body=b'data: {"id": "broken\n\n', content_type="text/event-stream")
            return web.Response(body=b'{"id": "broken', content_type="application/json")
        return None  # stream faults act inside send_stream()

    async def _pause(self, seconds: float | None) -> None:
        """Waits `seconds` (None: forever), or less if the upstream is stopping."""
        assert self._released is not None
        try:
            await asyncio.wait_for(self._released.wait(), timeout=seconds)
        except TimeoutError:
            pass

    def _abort(self, request: web.Request, *, reset: bool) -> web.Response:
        """Drops the connection. With reset=True a zero linger makes the kernel send RST instead of FIN."""
        request[_SELF_ABORTED] = True
        transport = request.transport
        if transport is not None:
            sock = transport.get_extra_info("socket")
            if reset and sock is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            transport.abort()
        # aiohttp fails to write this to the closed transport and drops it quietly.
        return web.Response(status=599)

    def _adjust(self, *, in_flight: int) -> None:
        with self._lock:
            self._in_flight += in_flight

    def _note_disconnect(self, request: web.Request) -> None:
        if request.get(_SELF_ABORTED) or self._stopping:
            return  # our own doing, not the peer's
        with self._lock:
            self._cancelled_requests += 1
            if request.get(_STREAMING):
                self._cancelled_streams += 1

    # ----- helpers for subclasses' handlers ------------------------------------------------------------------

    @staticmethod
    def record_of(request: web.Request) -> RecordedRequest:
        return request[_RECORD]

    @staticmethod
    def sequence_of(request: web.Request) -> int:
        """1-based number of this request at this upstream, for ids that tell requests apart."""
        return request[_SEQUENCE]

    def json_body(self, request: web.Request) -> dict[str, Any]:
        body = self.record_of(request).body
        if not isinstance(body, dict):
            raise UpstreamRejection(400, "request body must be a JSON object", error_type="invalid_request_error")
        return body

    async def send_stream(
        self, request: web.Request, events: Iterable[bytes], headers: dict[str, str] | None = None
    ) -> web.StreamResponse:
        """Streams SSE events, applying chunk_delay and the stream faults (slow_stream, stream_reset,
        stream_truncated, stream_linger, stream_stall)."""
        fault = request.get(_FAULT)
        delay = self.chunk_delay
        reset_after: int | None = None
        end_after: int | None = None
        if fault is not None and fault.kind == "slow_stream":
            delay = float(fault.params.get("chunk_delay", 0.5))
        if fault is not None and fault.kind == "stream_reset":
            reset_after = int(fault.params.get("after_chunks", 2))
        if fault is not None and fault.kind == "stream_truncated":
            end_after = int(fault.params.get("after_chunks", 2))
        stall_after = int(fault.params.get("after_chunks", 2)) if fault is not None and fault.kind == "stream_stall" else None
        request[_STREAMING] = True
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache", **(headers or {})}
        )
        await response.prepare(request)
        for index, event in enumerate(events):
            if index == reset_after:
                self._abort(request, reset=False)
                return response
            if index == end_after:
                break
            if index == stall_after:
                await self._pause(fault.params.get("seconds"))  # (fault is set when stall_after is)
            if delay > 0:
                await self._pause(delay)
            if self._stopping:
                self._abort(request, reset=False)
                return response
            await response.write(event)
        if fault is not None and fault.kind == "stream_linger":
            await self._pause(fault.params.get("seconds"))
        await response.write_eof()
        return response
