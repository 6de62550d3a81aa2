"""Server-sent events from OpenAI-compatible upstreams: framing and usage, without buffering."""

from __future__ import annotations

from collections.abc import AsyncIterator

import orjson

from adapters.base import Usage

DONE = b"data: [DONE]\n\n"


def sse_data(payload: bytes) -> bytes:
    return b"data: " + payload + b"\n\n"


async def framed_events(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """Re-cut arbitrary network chunks so every item holds only complete events.

    Whatever arrived is passed on at once up to its last event boundary; only a partial event
    waits for the rest of its bytes.
    """
    pending = b""
    async for chunk in chunks:
        if b"\r" in chunk:
            chunk = chunk.replace(b"\r\n", b"\n")
        data = pending + chunk if pending else chunk
        cut = data.rfind(b"\n\n")
        if cut < 0:
            pending = data
            continue
        pending = data[cut + 2 :]
        yield data[: cut + 2]
    if pending.strip():
        yield pending + b"\n\n"


class UsageTap:
    """Reads token usage out of passing chat/completion events.

    The gateway asks upstreams for a final usage event even when the client did not; such an event
    (empty `choices`) is dropped here unless the client asked for it.
    """

    __slots__ = ("usage", "forward_usage_event")

    def __init__(self, usage: Usage, forward_usage_event: bool) -> None:
        self.usage = usage
        self.forward_usage_event = forward_usage_event

    def __call__(self, events: bytes) -> bytes:
        if b'"usage"' not in events:
            return events
        kept = []
        for event in events.split(b"\n\n"):
            if not event:
                continue
            if b'"usage"' in event and self._take_usage(event) and not self.forward_usage_event:
                continue
            kept.append(event + b"\n\n")
        return b"".join(kept)

    def _take_usage(self, event: bytes) -> bool:
        """Records usage from the event; True when the event carries nothing but usage."""
        data = event_data(event)
        if data is None:
            return False
        try:
            payload = orjson.loads(data)
        except orjson.JSONDecodeError:
            return False
        usage = payload.get("usage") if isinstance(payload, dict) else None
        if not isinstance(usage, dict):
            return False
        read_usage(usage, self.usage)
        return payload.get("choices") == []


def read_usage(usage: dict, into: Usage) -> None:
    prompt = usage.get("prompt_tokens", usage.get("input_tokens"))
    completion = usage.get("completion_tokens", usage.get("output_tokens"))
    if isinstance(prompt, int):
        into.input_tokens = prompt
        into.reported = True
    if isinstance(completion, int):
        into.output_tokens = completion
        into.reported = True


def all_json(events: bytes) -> bool:
    """Whether every event's data is JSON (or [DONE]): checked on a stream's first events, before anything has
    reached the client, so a garbled stream can still be retried or sent to a fallback."""
    for event in events.split(b"\n\n"):
        data = event_data(event)
        if data is None or data == b"[DONE]":
            continue
        try:
            orjson.loads(data)
        except orjson.JSONDecodeError:
            return False
    return True


def ends_done(events: bytes) -> bool:
    """Whether these events end with [DONE], the end of every OpenAI stream (`data:[DONE]` too)."""
    return events.rstrip().endswith(b"[DONE]")


def event_data(event: bytes) -> bytes | None:
    """The payload of an event's first `data:` line."""
    for line in event.split(b"\n"):
        if line.startswith(b"data:"):
            return line[5:].strip()
    return None
