"""The access log: one JSON line per request on stdout, through the `switchyard.access` logger.

Only ids, config names and numbers go in: never a key, a prompt, or the model string a client sent.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Mapping

import orjson

from gateway.exchange import Exchange

LOGGER = "switchyard.access"
NONE = "none"


def access_logger() -> logging.Logger:
    """The logger, writing bare lines to stdout (not through the root logger's formatted stderr lines)."""
    logger = logging.getLogger(LOGGER)
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False
    return logger


class AccessLog:
    def __init__(self, providers: Mapping[str, str], logger: logging.Logger | None = None) -> None:
        self._providers = providers
        self._logger = logger or access_logger()
        self._pid = os.getpid()

    def write(self, exchange: Exchange, duration: float) -> None:
        usage = exchange.usage
        trace = exchange.trace
        first_token = exchange.first_token_seconds
        line = {
            "time": round(time.time(), 3),
            "request_id": exchange.request_id.decode(),
            "tenant": exchange.tenant or NONE,
            "endpoint": exchange.endpoint.value,
            "route": exchange.route or NONE,
            "target": exchange.target or NONE,
            "provider": self._providers.get(exchange.target, NONE),
            "status": exchange.status,
            "duration_ms": round(duration * 1000, 3),
            "overhead_ms": round(exchange.overhead_seconds * 1000, 3),
            "first_token_ms": None if first_token is None else round(first_token * 1000, 3),
            "attempts": exchange.attempts,
            "retries": exchange.retries,
            "fallbacks": exchange.fallbacks,
            "input_tokens": usage.input_tokens,
            "output_tokens": usage.output_tokens,
            "usage_reported": usage.reported,
            "cost_usd": exchange.cost_usd,
            "trace_id": f"{trace.span.get_span_context().trace_id:032x}" if trace is not None and trace.recording else None,
            "pid": self._pid,
        }
        self._logger.info(orjson.dumps(line).decode())
