"""One request's journey through the pipeline: what each step learned, for the next ones."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from random import getrandbits
from time import perf_counter
from typing import TYPE_CHECKING

from adapters.base import Endpoint, Usage

if TYPE_CHECKING:
    from gateway.limit import Admission
    from observability.tracing import RequestTrace
    from observability.usage import OutputMeter

_CLIENT_REQUEST_ID = re.compile(rb"^[A-Za-z0-9._:-]{1,128}$")


def request_id_from(value: bytes | None) -> bytes:
    """The client's x-request-id when it is safe to echo into headers and logs, else a fresh one."""
    if value is not None and _CLIENT_REQUEST_ID.match(value):
        return value
    # Unique, not secret: nothing trusts a request id. The random module is seeded from the OS and reseeded in a
    # forked child; os.urandom would cost a system call on every request.
    return b"%024x" % getrandbits(96)


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
    policy_version: int = 0
    overhead_seconds: float = 0.0  # gateway time until the response headers, fixed when they are written
    first_token_seconds: float | None = None  # streams: arrival to the first event sent to the client
    cost_usd: float | None = None  # None while unknown: no usage yet, or a target without a price
    trace: RequestTrace | None = None  # None unless tracing is on
    output: OutputMeter | None = None  # what the reply said, when usage must be counted or a trace wants it
    ratelimit_headers: tuple[tuple[bytes, bytes], ...] = ()  # x-ratelimit-*, when limits apply
    limited_by: str = ""  # the limit (config field name) that refused the request
    admission: Admission | None = None  # what the limits must be told when the request ends
    safety_events: tuple[tuple[str, str], ...] = ()  # (kind, action) per safety finding: names only, never values

    def fix_overhead(self) -> float:
        """The gateway's own time so far (upstream time excluded), kept as the request's overhead; in seconds.

        Called when the response headers are written: what follows for a stream is mostly the upstream's pace.
        """
        self.overhead_seconds = perf_counter() - self.started - self.upstream_seconds
        return self.overhead_seconds
