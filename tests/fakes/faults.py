"""Fault injection for the fake upstreams: what can go wrong, and a thread-safe switch tests flip at any time."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

# Every fault kind with the parameters it accepts; anything else is a typo in a test and raises at once instead of
# silently injecting a different fault than the test thinks.
FAULT_PARAMETERS: MappingProxyType[str, frozenset[str]] = MappingProxyType(
    {
        # An error reply in the upstream's own error shape. `headers` e.g. {"Retry-After": "3"}.
        "status": frozenset({"status", "message", "type", "code", "headers"}),
        # No reply at all: the connection is closed after `seconds`, or when the upstream stops (default).
        "hang": frozenset({"seconds"}),
        # A normal reply, sent after `seconds`.
        "delay": frozenset({"seconds"}),
        # The TCP connection is reset (RST) without any reply.
        "reset": frozenset(),
        # A stream that sends `after_chunks` SSE events and then drops the connection mid-body.
        "stream_reset": frozenset({"after_chunks"}),
        # A stream that sends `after_chunks` SSE events and then ends cleanly, without its [DONE].
        "stream_truncated": frozenset({"after_chunks"}),
        # A stream that sends every event, [DONE] included, then keeps the connection open for `seconds` (default:
        # until the upstream stops) before ending the body.
        "stream_linger": frozenset({"seconds"}),
        # A stream that waits `chunk_delay` seconds before each SSE event.
        "slow_stream": frozenset({"chunk_delay"}),
        # A stream that sends `after_chunks` SSE events, then goes silent for `seconds` (default: until the upstream
        # stops) with the connection open, then sends the rest.
        "stream_stall": frozenset({"after_chunks", "seconds"}),
        # HTTP 200 whose body is not valid JSON (or, for a stream, an SSE event whose data is not JSON).
        "bad_json": frozenset(),
    }
)
REQUIRED_PARAMETERS: MappingProxyType[str, frozenset[str]] = MappingProxyType(
    {"status": frozenset({"status"}), "delay": frozenset({"seconds"})}
)
# These only make sense for streaming requests; a non-streaming request passes through without using up `times`.
STREAM_ONLY_KINDS = frozenset({"stream_reset", "stream_truncated", "stream_linger", "slow_stream", "stream_stall"})


@dataclass(frozen=True)
class Fault:
    """One injected misbehaviour; `path`, when set, limits it to requests for that exact path."""

    kind: str
    params: dict[str, Any] = field(default_factory=dict)
    path: str | None = None

    def applies_to(self, path: str, streaming: bool) -> bool:
        if self.path is not None and self.path != path:
            return False
        return streaming or self.kind not in STREAM_ONLY_KINDS


def validate_fault(kind: str, params: dict[str, Any]) -> None:
    """Raises ValueError/TypeError for an unknown kind, unknown parameters or missing required ones."""
    if kind not in FAULT_PARAMETERS:
        raise ValueError(f"unknown fault kind {kind!r}; known: {sorted(FAULT_PARAMETERS)}")
    unknown = set(params) - FAULT_PARAMETERS[kind]
    if unknown:
        raise TypeError(f"fault {kind!r} takes {sorted(FAULT_PARAMETERS[kind])}, not {sorted(unknown)}")
    missing = REQUIRED_PARAMETERS.get(kind, frozenset()) - set(params)
    if missing:
        raise TypeError(f"fault {kind!r} needs {sorted(missing)}")


class FaultSwitch:
    """Holds the current fault, set from the test thread and consumed by the server thread.

    With `times=N` the fault applies to the next N matching requests only, after which the upstream is healthy
    again: that is how tests express "fail once, then succeed" for retry and fallback behaviour.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._fault: Fault | None = None
        self._remaining: int | None = None

    def set(self, fault: Fault, times: int | None) -> None:
        validate_fault(fault.kind, fault.params)
        if times is not None and times < 1:
            raise ValueError("times must be at least 1 (use clear_fault() for none)")
        with self._lock:
            self._fault, self._remaining = fault, times

    def clear(self) -> None:
        with self._lock:
            self._fault, self._remaining = None, None

    def current(self) -> Fault | None:
        with self._lock:
            return self._fault

    def take(self, path: str, streaming: bool) -> Fault | None:
        """The fault to apply to this request, if any, counting it against `times`."""
        with self._lock:
            fault = self._fault
            if fault is None or not fault.applies_to(path, streaming):
                return None
            if self._remaining is not None:
                self._remaining -= 1
                if self._remaining == 0:
                    self._fault, self._remaining = None, None
            return fault
