"""The HTTP-level vocabulary the fake upstreams share: recorded requests, error signalling, JSON and SSE bodies."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from aiohttp import web


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the upstream received it. Header names are lower-cased."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any  # parsed JSON; None when the body is empty or not JSON
    raw: bytes
    peer: tuple[str, int] | None  # client address: distinct ports mean distinct TCP connections

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


class UpstreamRejection(Exception):
    """Raised by handlers to answer with an error in the upstream's own error shape."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        error_type: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.error_type = error_type
        self.code = code
        self.headers = dict(headers or {})


def json_response(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    body = json.dumps(payload, ensure_ascii=False).encode()
    return web.Response(body=body, status=status, headers=headers, content_type="application/json")


def sse_event(data: Any, event: str | None = None) -> bytes:
    """One server-sent event; `data` is JSON-encoded unless it is already a string (e.g. "[DONE]")."""
    text = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)
    prefix = f"event: {event}\n" if event else ""
    return f"{prefix}data: {text}\n\n".encode()


def parse_json(raw: bytes) -> Any:
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return None


def peer_of(request: web.Request) -> tuple[str, int] | None:
    transport = request.transport
    peer = transport.get_extra_info("peername") if transport is not None else None
    return (str(peer[0]), int(peer[1])) if peer else None
