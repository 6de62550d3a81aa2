"""How the litellm adapter names a provider's failure (adapters/litellm.py _upstream_error)."""

from __future__ import annotations

import asyncio

from adapters.litellm import _upstream_error


class APIConnectionError(Exception):
    pass


class RateLimitError(Exception):
    def __init__(self) -> None:
        super().__init__("slow down")
        self.status_code = 429


def test_each_failure_gets_its_own_kind_and_status() -> None:
    unreachable = _upstream_error("claude", APIConnectionError("connection refused"))
    assert (unreachable.kind, unreachable.status, unreachable.message) == ("connect", 502, "could not reach upstream target 'claude'")
    late = _upstream_error("claude", asyncio.TimeoutError())
    assert (late.kind, late.status) == ("timeout", 504)
    limited = _upstream_error("claude", RateLimitError())
    assert limited.status == 429


def test_a_failure_without_a_status_is_not_called_unreachable_and_quotes_nothing() -> None:
    broken = _upstream_error("claude", ValueError("could not parse reply to: my secret prompt"))
    assert (broken.kind, broken.status) == ("protocol", 502)
    assert broken.message == "upstream target 'claude' failed (ValueError)"
    assert "secret" not in broken.message
