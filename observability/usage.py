"""What a reply said besides its usage report: how much text came back, which model answered, why it stopped.

Read only when needed: when an upstream may not report usage (the gateway then counts tokens itself, with the
estimate limits use too), and for a sampled trace (the response model and finish reasons are span attributes).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson

from adapters.base import Usage
from adapters.sse import event_data
from gateway.tokens import content_text, estimate_tokens, prompt_text, tokens_for_characters

MAX_FINISH_REASONS = 128  # one per choice, and `n` is capped at 128 too


class OutputMeter:
    __slots__ = ("body", "characters", "model", "finish_reasons")

    def __init__(self, request_body: dict[str, Any]) -> None:
        self.body = request_body
        self.characters = 0
        self.model = ""
        self.finish_reasons: list[str] = []

    def read_reply(self, payload: bytes) -> None:
        """A whole JSON reply."""
        parsed = _json_object(payload)
        if parsed is not None:
            self._read(parsed, "message")

    def read_events(self, events: bytes) -> None:
        """Complete SSE events of a stream."""
        for event in events.split(b"\n\n"):
            data = event_data(event)
            parsed = _json_object(data) if data and data != b"[DONE]" else None
            if parsed is not None:
                self._read(parsed, "delta")

    async def tap(self, events: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        """The same stream, read on its way to the client."""
        async for chunk in events:
            self.read_events(chunk)
            yield chunk

    def settle(self, usage: Usage) -> None:
        """Counts what the upstream did not report: the prompt from the request, the output as it was read."""
        if usage.reported:
            return
        usage.input_tokens = estimate_tokens(prompt_text(self.body))
        usage.output_tokens = tokens_for_characters(self.characters)

    def _read(self, payload: dict[str, Any], part: str) -> None:
        model = payload.get("model")
        if isinstance(model, str) and model:
            self.model = model[:200]
        choices = payload.get("choices")
        if not isinstance(choices, list):
            return
        for choice in choices:
            if not isinstance(choice, dict):
                continue
            self.characters += _characters(choice, part)
            reason = choice.get("finish_reason")
            if isinstance(reason, str) and len(self.finish_reasons) < MAX_FINISH_REASONS:
                self.finish_reasons.append(reason[:64])


def _json_object(data: bytes) -> dict[str, Any] | None:
    try:
        parsed = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    return parsed if isinstance(parsed, dict) else None


def _characters(choice: dict[str, Any], part: str) -> int:
    """Generated text in a choice: completion text, message content and tool-call arguments."""
    text = choice.get("text")
    count = len(text) if isinstance(text, str) else 0
    message = choice.get(part)
    if not isinstance(message, dict):
        return count
    count += len(content_text(message.get("content")))
    calls = message.get("tool_calls")
    if isinstance(calls, list):
        for call in calls:
            function = call.get("function") if isinstance(call, dict) else None
            arguments = function.get("arguments") if isinstance(function, dict) else None
            if isinstance(arguments, str):
                count += len(arguments)
    return count
