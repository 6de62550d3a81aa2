"""Scans of requests that arrive together run together.

Under load the event loop handles many requests in one turn, and each would run its scan between other
steps of the request (parsing, routing, the upstream call) that evict the detectors' tables and compiled
patterns from the CPU caches. Queued until the end of the loop's turn and run back to back, the scans find
them warm: measured in the gateway bench, 10 % less CPU per request with a new 1 KB prompt each. A request
alone waits one loop turn. A long queue is worked off in slices of at most SLICE_S, so other requests
(health checks, streams) still get the loop between slices.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from time import perf_counter
from typing import Generic, TypeVar

Job = TypeVar("Job")
Result = TypeVar("Result")

SLICE_S = 0.002


class Batcher(Generic[Job, Result]):
    """Runs `work(job)` for every job submitted in one turn of the event loop, back to back."""

    def __init__(self, work: Callable[[Job], Result], slice_s: float = SLICE_S) -> None:
        self._work = work
        self._slice_s = slice_s
        self._queue: list[tuple[Job, asyncio.Future[Result]]] = []

    def run(self, job: Job) -> asyncio.Future[Result]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Result] = loop.create_future()
        self._queue.append((job, future))
        if len(self._queue) == 1:
            loop.call_soon(self._drain)
        return future

    def _drain(self) -> None:
        queue = self._queue
        stop = perf_counter() + self._slice_s
        done = 0
        for job, future in queue:
            done += 1
            if not future.cancelled():  # (the client went away meanwhile)
                try:
                    future.set_result(self._work(job))
                except Exception as exc:  # noqa: BLE001 - the job's own caller decides what a failure means
                    future.set_exception(exc)
            if perf_counter() >= stop:
                break
        del queue[:done]
        if queue:
            asyncio.get_running_loop().call_soon(self._drain)
