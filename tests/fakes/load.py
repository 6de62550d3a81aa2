"""Steady mixed load on a gateway: concurrent clients sending JSON and streaming chat completions back to back.

Every request is tagged with the load's `phase` at the moment it was sent, so a test can flip a fault, move to a
new phase, wait for enough answers in it, and then judge exactly the requests sent while the fault was on. A
phase is over once `settle(phase)` returns: nothing sent in it is still in flight.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass

import httpx
import orjson

from .polling import async_wait_until


@dataclass(frozen=True)
class Outcome:
    """One request as its client saw it."""

    phase: str
    kind: str  # "json" or "stream"
    prompt: str
    sent_at: float  # time.monotonic() when it was sent
    seconds: float
    status: int | None = None  # None: no HTTP response at all (see `failure`)
    code: str | None = None  # the error code, from an error body or a stream's error event
    served_by: str | None = None  # x-switchyard-target
    text: str = ""  # the reply's content, a stream's deltas joined
    whole: bool = False  # a JSON reply parsed, or a stream ended with [DONE]
    failure: str | None = None  # the exception's type name when the exchange broke
    error_shape: bool = True  # an error body was OpenAI's {"error": {message, type, param, code}}
    retry_after: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == 200 and self.whole and self.code is None and self.failure is None


class MixedLoad:
    """`clients` concurrent clients; client i sends a JSON request, then a stream (odd i: the other way round),
    and so on, until `stop()`. Prompts are unique per request: "c<client>-r<number>"."""

    def __init__(self, base_url: str, key: str, model: str, clients: int = 16, timeout: float = 15.0) -> None:
        self.base_url = base_url
        self.model = model
        self.clients = clients
        self.headers = {"Authorization": f"Bearer {key}"}
        self.timeout = timeout
        self.phase = "start"
        self.outcomes: list[Outcome] = []
        self._pending: Counter[str] = Counter()
        self._running = False
        self._task: asyncio.Task[list[None]] | None = None

    # ----- driving -------------------------------------------------------------------------------------------

    def start(self) -> None:
        self._running = True
        self._task = asyncio.ensure_future(asyncio.gather(*(self._client(i) for i in range(self.clients))))

    async def stop(self) -> None:
        """Lets every client finish its current request, then returns; re-raises a client's crash."""
        self._running = False
        if self._task is not None:
            await self._task

    async def __aenter__(self) -> MixedLoad:
        self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def answers(self, count: int, phase: str | None = None, timeout: float = 20.0) -> None:
        """Waits until `count` requests of `phase` (default: the current one) have been answered."""
        phase = phase or self.phase
        await async_wait_until(
            lambda: len(self.of(phase)) >= count, timeout=timeout, message=f"{count} answers in phase {phase!r}"
        )

    async def settle(self, phase: str, timeout: float = 20.0) -> list[Outcome]:
        """Waits until no request sent in `phase` is in flight; returns that phase's outcomes."""
        await async_wait_until(lambda: self._pending[phase] == 0, timeout=timeout, message=f"phase {phase!r} to settle")
        return self.of(phase)

    async def run_phase(self, phase: str, count: int, next_phase: str = "between") -> list[Outcome]:
        """Sends in `phase` until `count` answers came back, moves on to `next_phase`, and returns the whole of
        `phase` once it has settled. Whatever the test changed before calling this applied to all of it."""
        self.phase = phase
        await self.answers(count, phase)
        self.phase = next_phase
        return await self.settle(phase)

    def of(self, phase: str) -> list[Outcome]:
        return [outcome for outcome in self.outcomes if outcome.phase == phase]

    # ----- one client ----------------------------------------------------------------------------------------

    async def _client(self, index: int) -> None:
        limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
        async with httpx.AsyncClient(base_url=self.base_url, headers=self.headers, timeout=self.timeout, limits=limits) as http:
            number = 0
            while self._running:
                stream = (number + index) % 2 == 1
                phase = self.phase
                self._pending[phase] += 1
                try:
                    outcome = await self._request(http, phase, stream, f"c{index}-r{number}")
                finally:
                    self._pending[phase] -= 1
                self.outcomes.append(outcome)
                number += 1

    async def _request(self, http: httpx.AsyncClient, phase: str, stream: bool, prompt: str) -> Outcome:
        body = {"model": self.model, "messages": [{"role": "user", "content": prompt}], "stream": stream}
        kind = "stream" if stream else "json"
        began = time.monotonic()
        seen: dict = {}
        try:
            async with http.stream("POST", "/v1/chat/completions", json=body) as response:
                seen = {"status": response.status_code, "served_by": response.headers.get("x-switchyard-target"),
                        "retry_after": response.headers.get("retry-after")}
                if response.status_code != 200 or not stream:
                    seen.update(_read_json(await response.aread(), response.status_code))
                else:
                    seen.update(await _read_stream(response))
        except httpx.HTTPError as error:
            seen["failure"] = type(error).__name__
        return Outcome(phase, kind, prompt, began, time.monotonic() - began, **seen)


def _read_json(payload: bytes, status: int) -> dict:
    try:
        parsed = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return {"error_shape": False}
    if status == 200:
        return {"text": parsed["choices"][0]["message"]["content"], "whole": True}
    error = parsed.get("error") if isinstance(parsed, dict) else None
    shaped = isinstance(error, dict) and set(error) == {"message", "type", "param", "code"}
    return {"code": error.get("code") if shaped else None, "error_shape": shaped}


async def _read_stream(response: httpx.Response) -> dict:
    pieces, seen = [], {}
    async for line in response.aiter_lines():
        if not line.startswith("data: "):
            continue
        data = line[len("data: "):]
        if data == "[DONE]":
            seen["whole"] = True
            break
        try:
            event = orjson.loads(data)
        except orjson.JSONDecodeError:
            seen["failure"] = "InvalidEventData"
            break
        if "error" in event:
            error = event["error"]
            seen["code"] = error.get("code")
            seen["error_shape"] = set(error) == {"message", "type", "param", "code"}
            continue
        for choice in event.get("choices") or ():
            pieces.append(choice.get("delta", {}).get("content") or "")
    seen["text"] = "".join(pieces)
    return seen
