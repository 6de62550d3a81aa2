"""Serving: uvicorn with uvloop and httptools, one process or several workers."""

from __future__ import annotations

import asyncio
import fcntl
import functools
import logging
import os
import signal
import struct
import termios
from types import FrameType
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from gateway.app import CONNECTION_CUT, Dispatch, create_app
from gateway.config import ServerConfig
from gateway.errors import GatewayError
from gateway.settings import Settings, demo_settings, load_settings

CONFIG_ENV = "SWITCHYARD_CONFIG"

_TOO_SLOW = GatewayError(
    408, "The request did not arrive in time.", code="request_timeout", error_type="invalid_request_error"
).body()
_REQUEST_TIMEOUT = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\nconnection: close\r\ncontent-length: "
    + str(len(_TOO_SLOW)).encode()
    + b"\r\n\r\n"
    + _TOO_SLOW
)


class CorkedTransport:
    """A transport whose writes of one event-loop turn go out as one: uvicorn writes a response's status line and
    headers, then its body, each a system call of its own; corked, a JSON response is one `send`. Everything
    written is flushed at the end of the turn, and before the transport closes or stops writing."""

    __slots__ = ("_transport", "_loop", "_pending")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] = []

    def write(self, data: bytes) -> None:
        if not self._pending:
            self._loop.call_soon(self._flush)
        self._pending.append(data)

    def writelines(self, lines: Any) -> None:
        for data in lines:
            self.write(data)

    def _flush(self) -> None:
        if self._pending:
            data = b"".join(self._pending) if len(self._pending) > 1 else self._pending[0]
            self._pending.clear()
            if not self._transport.is_closing():
                self._transport.write(data)

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def write_eof(self) -> None:
        self._flush()
        self._transport.write_eof()

    def abort(self) -> None:
        self._pending.clear()
        self._transport.abort()

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + sum(map(len, self._pending))

    def __getattr__(self, name: str) -> Any:  # is_closing, get_extra_info, pause_reading, resume_reading…
        return getattr(self._transport, name)


class SlowClientProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with deadlines for a request's headers, then for its body, and for a client
    that stops reading its response.

    uvicorn has none: a client that trickles its request a byte at a time holds the connection, a file
    descriptor and (for the body) a task, for as long as it likes; past a deadline the client gets a 408 and the
    connection is closed. A client that stops reading holds, besides, the upstream stream it asked for and that
    stream's pooled upstream connection (the relay waits for the client's socket to drain): once the socket has
    accepted nothing for the same time, the connection is aborted, which ends the relay and frees the upstream.
    A request that arrives whole and is read as it comes, the usual case, never arms a timer.
    """

    def __init__(self, *args: Any, client_timeout_s: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._timeout_s = client_timeout_s
        self._deadline: asyncio.TimerHandle | None = None
        self._write_deadline: asyncio.TimerHandle | None = None  # armed while writing is paused
        self._unread = 0  # bytes waiting for the client when that deadline was armed
        self._in_headers = False  # a request's first byte has arrived, the end of its headers not yet

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(CorkedTransport(transport, self.loop))  # type: ignore[arg-type]
        self._arm()  # a client that connects and says nothing is cut off too

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._deadline is None and (self._in_headers or self._body_pending()):
            self._arm()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_headers = True

    def on_headers_complete(self) -> None:
        self._in_headers = False
        self._disarm()  # the body, if it is still coming, gets a deadline of its own
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._disarm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        self._disarm_write()
        super().connection_lost(exc)

    def pause_writing(self) -> None:
        super().pause_writing()
        if self._write_deadline is None:
            self._arm_write()

    def resume_writing(self) -> None:
        self._disarm_write()
        super().resume_writing()

    def _disarm_write(self) -> None:
        if self._write_deadline is not None:
            self._write_deadline.cancel()
            self._write_deadline = None

    def _arm_write(self) -> None:
        self._unread = self._unread_bytes()
        self._write_deadline = self.loop.call_later(self._timeout_s, self._check_reading)

    def _check_reading(self) -> None:
        """While writing is paused nothing new is written (uvicorn waits for the drain), so fewer bytes unread
        means the client read some: a slow reader is given another period, one that read nothing is cut off."""
        if self._unread_bytes() < self._unread:
            self._arm_write()
            return
        self._write_deadline = None
        self.transport.abort()  # the answer has begun: no status can be sent any more, only the end of it
        self._count_cut("not_reading")

    def _unread_bytes(self) -> int:
        """What was written for the client and not taken by it yet: in the transport's buffer and in the kernel's
        send queue (which a client reading slowly empties a little at a time, while the buffer stays full)."""
        unread = self.transport.get_write_buffer_size()
        sock = self.transport.get_extra_info("socket")
        if sock is not None:
            try:
                unread += struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, bytes(4)))[0]
            except (OSError, ValueError):  # not a TCP socket on Linux: the buffer alone tells
                pass
        return unread

    def _body_pending(self) -> bool:
        # Also after an early answer (a 413 on the declared length): the rest still has to arrive in time.
        return self.cycle is not None and self.cycle.more_body

    def _arm(self) -> None:
        self._deadline = self.loop.call_later(self._timeout_s, self._expired)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expired(self) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete and (cycle.response_started or not cycle.more_body):
            # A request in flight (already answering, or late only with a pipelined request behind it) is
            # answered first; the connection closes after it.
            cycle.keep_alive = False
            return
        late_body = cycle is not None and cycle.more_body and not cycle.response_started
        if self._in_headers or late_body:
            self.transport.write(_REQUEST_TIMEOUT)
            self._count_cut("request_too_slow")
        else:
            self._count_cut("no_request")
        # Closing also tells an app still waiting for the body that the client is gone.
        self.transport.close()

    def _count_cut(self, reason: str) -> None:
        count = self.app_state.get(CONNECTION_CUT)  # (absent until the app has started)
        if count is not None:
            count(reason)


def _uvicorn_options(host: str, port: int, server: ServerConfig) -> dict:
    return {
        "host": host,
        "port": port,
        "loop": "uvloop",
        # a partial of a module-level class: it pickles, for worker processes
        "http": functools.partial(SlowClientProtocol, client_timeout_s=server.client_timeout_s),
        "timeout_keep_alive": server.keep_alive_s,
        "lifespan": "on",
        "access_log": False,
        "log_level": "warning",
        "server_header": False,
        "proxy_headers": False,  # nothing reads the client address: no X-Forwarded-For rewriting per request
        # How long requests in flight get once a drain (gateway/drain.py) stops accepting connections.
        "timeout_graceful_shutdown": server.drain_timeout_s,
    }


def _configure_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def serve(settings: Settings, host: str, port: int, workers: int) -> None:
    _configure_logging()
    options = _uvicorn_options(host, port, settings.config.server)
    if workers == 1:
        signal.signal(signal.SIGTERM, _nothing_to_drain)
        uvicorn.Server(uvicorn.Config(create_app(settings), **options)).run()
        return
    # Worker processes import the app themselves, so they re-read the same file. uvicorn's supervisor sends each
    # worker SIGTERM, and each drains on its own; the supervisor exits 0 once they have all finished.
    if settings.source is not None:
        os.environ[CONFIG_ENV] = settings.source
    uvicorn.run("gateway.server:app_from_environment", factory=True, workers=workers, **options)


def _nothing_to_drain(signum: int, frame: FrameType | None) -> None:
    """SIGTERM lands here only when there is nothing (left) to drain: before uvicorn has taken the signal over, or
    when uvicorn raises it again, under the handler that was there before it, after shutting down."""
    raise SystemExit(0)


def app_from_environment() -> Dispatch:
    _configure_logging()  # a worker is a fresh interpreter: the supervisor's logging setup does not carry over
    path = os.environ.get(CONFIG_ENV)
    return create_app(load_settings(path, os.environ) if path else demo_settings())
