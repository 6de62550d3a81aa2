"""One request's journey through the pipeline: what each step learned, for the next ones."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from time import perf_counter

from adapters.base import Endpoint, Usage

_CLIENT_REQUEST_ID = re.compile(rb"^[A-Za-z0-9._:-]{1,128}$")


def request_id_from(value: bytes | None) -> bytes:
    """The client's x-request-id when it is safe to echo into headers and logs, else a fresh one."""
    if value is not None and _CLIENT_REQUEST_ID.match(value):
        return value
    return os.urandom(12).hex().encode()


@dataclass(slots=True)
class Exchange:
    endpoint: Endpoint
    request_id: bytes
    started: float = field(default_factory=perf_counter)
    tenant: str = ""
    model: str = ""
    route: str = ""
    target: str = ""
    attempts: int = 0
    retries: int = 0
    fallbacks: int = 0
    upstream_seconds: float = 0.0  # time spent waiting on upstreams, excluded from gateway overhead
    status: int = 0
    usage: Usage = field(default_factory=Usage)

    def overhead_ms(self) -> float:
        return (perf_counter() - self.started - self.upstream_seconds) * 1000.0
