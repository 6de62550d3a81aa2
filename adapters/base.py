"""The one interface every adapter implements, and the values that cross it."""

from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from gateway.config import TargetConfig


class Endpoint(enum.Enum):
    CHAT = "chat"
    COMPLETION = "completion"
    EMBEDDING = "embedding"

    @property
    def path(self) -> str:
        return _PATHS[self]


_PATHS = {Endpoint.CHAT: "/chat/completions", Endpoint.COMPLETION: "/completions", Endpoint.EMBEDDING: "/embeddings"}


@dataclass(slots=True)
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0
    reported: bool = False  # False: the upstream said nothing, counts are ours or zero


@dataclass(slots=True)
class UpstreamRequest:
    """What the gateway asks of a target. `body` is the client's body; adapters copy before changing it."""

    endpoint: Endpoint
    body: dict[str, Any]
    stream: bool
    client_wants_usage: bool
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class UpstreamReply:
    """A successful upstream answer: a whole JSON body, or a stream of complete SSE events."""

    status: int
    body: bytes | None = None
    events: AsyncIterator[bytes] | None = None
    usage: Usage = field(default_factory=Usage)
    content_type: bytes = b"application/json"
    release: Callable[[], None] = lambda: None


class UpstreamError(Exception):
    """An upstream failure, already mapped to what the client should see.

    `kind` says what went wrong (status, connect, timeout, protocol) so routing policy can decide
    whether to retry or fall back; `status` is the HTTP status for the client.
    """

    def __init__(
        self,
        kind: str,
        status: int,
        message: str,
        *,
        upstream_status: int | None = None,
        retry_after: str | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.status = status
        self.message = message
        self.upstream_status = upstream_status
        self.retry_after = retry_after
        self.code = code


def client_status_for(upstream_status: int) -> int:
    """The status a client sees for an upstream error status.

    The upstream's 401/403/404 mean the gateway's own credentials or target config are wrong, which
    the client cannot fix, so they become 502; the client's own mistakes (400, 413, 422) and rate
    limits pass through.
    """
    if upstream_status in (400, 413, 422, 429):
        return 400 if upstream_status == 422 else upstream_status
    if upstream_status in (408, 504):
        return 504
    if upstream_status == 503:
        return 503
    return 502


def status_error(
    target: str, status: int, detail: str | None, *, retry_after: str | None = None, code: str | None = None
) -> UpstreamError:
    """The UpstreamError for an upstream's error status, worded for the client.

    The client sees the upstream's own reason only when the request itself was refused (e.g. its
    context is too long); otherwise a neutral message, since upstream errors can name the
    gateway's account or key.
    """
    client_status = client_status_for(status)
    where = f"upstream target {target!r}"
    if client_status == 400 and detail:
        message = detail[:2000]
    elif client_status == 400:
        message = f"{where} refused the request"
    elif status == 429:
        message = f"{where} is rate limiting the gateway"
    elif status in (401, 403):
        message = f"{where} rejected the gateway's credentials"
    else:
        message = f"{where} answered HTTP {status}"
    return UpstreamError("status", client_status, message, upstream_status=status, retry_after=retry_after, code=code)


class Adapter(ABC):
    """One target's way of reaching its model. Built once at start-up, shared by all requests."""

    def __init__(self, name: str, target: TargetConfig) -> None:
        self.name = name
        self.target = target

    @property
    def provider(self) -> str:
        """The provider name for traces and metrics (`gen_ai.provider.name`)."""
        return self.target.adapter

    async def start(self) -> None:
        """Open connection pools and load what is needed; called once, inside the event loop."""

    async def close(self) -> None:
        """Release what start() opened."""

    def ready(self) -> bool:
        return True

    @abstractmethod
    async def send(self, request: UpstreamRequest) -> UpstreamReply:
        """Send one attempt. Raises UpstreamError on failure; a stream may raise it mid-way too."""
