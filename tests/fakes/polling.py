"""Waiting for a condition with a deadline: the only way tests synchronise with servers and background work."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(condition: Callable[[], T], *, timeout: float = 5.0, interval: float = 0.02, message: str = "") -> T:
    """Polls `condition` until it returns something truthy and returns that; fails the test at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"condition not met within {timeout}s: {message or condition!r}")
        time.sleep(interval)


async def async_wait_until(
    condition: Callable[[], T], *, timeout: float = 5.0, interval: float = 0.02, message: str = ""
) -> T:
    """`wait_until` for async tests: yields to the event loop between polls instead of blocking it."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"condition not met within {timeout}s: {message or condition!r}")
        await asyncio.sleep(interval)
