"""Graceful drain on SIGTERM, the way Kubernetes stops a pod.

    SIGTERM → /readyz fails at once → new requests are still served for `drain_grace_s` (load balancers and
    kube-proxy take a moment to stop sending traffic here) → the listener closes → requests in flight, streams
    included, get `drain_timeout_s` to finish → the process exits 0.

uvicorn stops accepting as soon as it sees SIGTERM, so the signal is intercepted first: `Drain` takes it over
from uvicorn's handler while the app runs, and hands it back to uvicorn when the grace period ends. uvicorn then
waits for the connections still open, up to its `timeout_graceful_shutdown` (set to `drain_timeout_s` by
gateway/server.py). Because this lives in the app's lifespan, every serving process drains the same way,
including each worker of `--workers N` (uvicorn's supervisor sends them SIGTERM).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable, MutableMapping
from types import FrameType
from typing import Any

from gateway.errors import GatewayError
from gateway.respond import JSON, send_json
from gateway.runtime import Runtime

log = logging.getLogger("switchyard")

Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
SignalHandler = Callable[[int, FrameType | None], Any] | int | None


class Drain:
    """Owns SIGTERM while the app serves; counts the requests in flight for the operator's log."""

    def __init__(self, runtime: Runtime, grace_s: float, timeout_s: float) -> None:
        self.runtime = runtime
        self.grace_s = grace_s
        self.timeout_s = timeout_s
        self.in_flight = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._previous: SignalHandler = None
        self._installed = False

    def install(self) -> None:
        """Takes SIGTERM over; a no-op off the main thread, where signals cannot be handled."""
        with contextlib.suppress(ValueError):
            self._previous = signal.signal(signal.SIGTERM, self._on_sigterm)
            self._loop = asyncio.get_running_loop()
            self._installed = True

    def uninstall(self) -> None:
        if self._installed:
            self._give_back()
        if self.runtime.draining:
            log.info("drained: exiting")

    def _on_sigterm(self, signum: int, frame: FrameType | None) -> None:
        # A signal handler interrupts whatever the loop was doing: flip readiness, schedule the rest on the loop.
        if self.runtime.draining or self._loop is None:
            return
        self.runtime.draining = True
        self._loop.call_soon_threadsafe(self._start_grace)

    def _start_grace(self) -> None:
        log.info(
            "SIGTERM: draining. /readyz now fails; new requests are served for %gs more; %d in flight",
            self.grace_s,
            self.in_flight,
        )
        assert self._loop is not None
        self._loop.call_later(self.grace_s, self._end_grace)

    def _end_grace(self) -> None:
        log.info(
            "drain: no new connections; %d requests in flight get up to %gs to finish", self.in_flight, self.timeout_s
        )
        self._give_back()
        signal.raise_signal(signal.SIGTERM)  # now uvicorn's shutdown: close the listener, wait for connections

    def _give_back(self) -> None:
        previous = self._previous
        if not (callable(previous) or previous in (signal.SIG_IGN, signal.SIG_DFL)):
            previous = signal.SIG_DFL  # the handler was not installed from Python: the default is all we can restore
        signal.signal(signal.SIGTERM, previous)
        self._installed = False


class DrainAwareMiddleware:
    """Pure ASGI: counts requests in flight, and while draining asks each client to close its connection.

    `connection: close` moves keep-alive clients (proxies, SDK connection pools) to other replicas during the grace
    period, instead of leaving them an idle connection that the end of the drain will close under them. A request
    still running at the drain deadline (uvicorn cancels it) ends with an OpenAI-shaped 503, which the SDKs retry,
    or, when a stream had begun, with an SSE error event, as any stream that breaks does.
    """

    def __init__(self, app: Callable[..., Awaitable[None]], drain: Drain) -> None:
        self.app = app
        self.drain = drain

    async def __call__(self, scope: MutableMapping[str, Any], receive: Any, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        drain = self.drain
        if drain.runtime.draining:
            send = _asking_to_close(send)
        drain.in_flight += 1
        try:
            await self.app(scope, receive, send)
        except asyncio.CancelledError:
            if not drain.runtime.draining:
                raise
            log.warning("drain deadline: cut a request still running on %s", scope["path"][:200])
            await _shutting_down(send)
        finally:
            drain.in_flight -= 1


async def _shutting_down(send: Send) -> None:
    error = GatewayError(503, "The gateway is shutting down; retry the request.", code="shutting_down")
    try:
        await send_json(send, error.status, error.body(), [(b"content-type", JSON), (b"connection", b"close")])
    except RuntimeError:  # the response had begun: only a stream can still be running, so end it in-band
        with contextlib.suppress(Exception):
            await send({"type": "http.response.body", "body": error.sse_event(), "more_body": False})


def _asking_to_close(send: Send) -> Send:
    async def send_closing(message: MutableMapping[str, Any]) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", ()), (b"connection", b"close")]}
        await send(message)

    return send_closing
