"""A fake Anthropic Messages API upstream on a real port, for gateway tests (e.g. behind litellm).

Like the OpenAI fake, the reply text is f"{name}:{model}:{last user text}" and tokens are words, so tests assert
exact content and usage. Authentication is checked as Anthropic does, so a gateway that forwards the wrong key
(or its own client's key) fails loudly with Anthropic's 401.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from types import MappingProxyType
from typing import Any

from aiohttp import web

from .base import FakeUpstream
from .replies import (
    content_text,
    count_words,
    last_user_text,
    reply_text,
    split_pieces,
    truncate_words,
    words_in_messages,
)
from .wire import UpstreamRejection, json_response, sse_event

# Anthropic's error type for each status (https://docs.anthropic.com/en/api/errors).
_ERROR_TYPES: MappingProxyType[int, str] = MappingProxyType(
    {
        400: "invalid_request_error",
        401: "authentication_error",
        402: "billing_error",
        403: "permission_error",
        404: "not_found_error",
        413: "request_too_large",
        429: "rate_limit_error",
        500: "api_error",
        504: "timeout_error",
        529: "overloaded_error",
    }
)
TOOL_TRIGGER = "call a tool"  # a last user message containing this makes the reply a tool_use block
ANTHROPIC_TEST_KEY = "test-anthropic-key"  # the key the fake expects unless told otherwise


class AnthropicUpstream(FakeUpstream):
    """Speaks POST /v1/messages (JSON and SSE). `base_url` is the origin, as the anthropic SDK and litellm expect."""

    def __init__(
        self, name: str = "anthropic-fake", *, api_key: str = ANTHROPIC_TEST_KEY, chunk_delay: float = 0.0
    ) -> None:
        super().__init__(name, chunk_delay=chunk_delay)
        self.api_key = api_key

    @property
    def base_url(self) -> str:
        return self.origin

    def routes(self) -> list[web.RouteDef]:
        return [web.post("/v1/messages", self._messages)]

    def error_response(self, rejection: UpstreamRejection) -> web.Response:
        error_type = rejection.error_type or _ERROR_TYPES.get(rejection.status, "api_error")
        payload = {"type": "error", "error": {"type": error_type, "message": rejection.message}}
        return json_response(payload, status=rejection.status, headers=rejection.headers)

    async def _messages(self, request: web.Request) -> web.StreamResponse:
        record = self.record_of(request)
        # litellm sends `x-api-key`; the anthropic SDK (2.x) sends its api_key as `Authorization: Bearer`.
        if self.api_key not in (record.header("x-api-key"), _bearer_token(record.header("authorization"))):
            raise UpstreamRejection(401, "invalid x-api-key")
        if not record.header("anthropic-version"):
            raise UpstreamRejection(400, "anthropic-version: header is required")
        body = self.json_body(request)
        model, messages, max_tokens = body.get("model"), body.get("messages"), body.get("max_tokens")
        if not isinstance(model, str) or not isinstance(messages, list) or not messages:
            raise UpstreamRejection(400, "model: Field required; messages: Field required")
        if not isinstance(max_tokens, int):
            raise UpstreamRejection(400, "max_tokens: Field required")

        sequence = self.sequence_of(request)
        prompt_text = last_user_text(messages)
        input_tokens = words_in_messages(messages) + count_words(content_text(body.get("system")))
        tools = body.get("tools") or []
        if tools and TOOL_TRIGGER in prompt_text:
            tool_input = {"upstream": self.name, "text": prompt_text}
            block: dict[str, Any] = {
                "type": "tool_use",
                "id": f"toolu_{sequence}",
                "name": tools[0]["name"],
                "input": tool_input,
            }
            stop_reason, output_tokens = "tool_use", count_words(json.dumps(tool_input))
        else:
            text, cut = truncate_words(reply_text(self.name, model, prompt_text), max_tokens)
            block = {"type": "text", "text": text}
            stop_reason, output_tokens = ("max_tokens" if cut else "end_turn"), count_words(text)

        message = {
            "id": f"msg_{self.name}_{sequence}",
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [block],
            "stop_reason": stop_reason,
            "stop_sequence": None,
            "usage": _usage(input_tokens, output_tokens),
        }
        headers = {"request-id": f"req_{self.name}_{sequence}"}
        if body.get("stream") is True:
            return await self.send_stream(request, _message_events(message), headers)
        return json_response(message, headers=headers)


def _message_events(message: dict[str, Any]) -> Iterator[bytes]:
    """The exact event sequence of Anthropic's streaming Messages API for a one-block message."""
    block = message["content"][0]
    usage = message["usage"]
    # Like the real API, message_start carries the input usage and an early output count that message_delta's
    # cumulative count then replaces.
    start = {
        **message,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {**usage, "output_tokens": 1},
    }
    yield sse_event({"type": "message_start", "message": start}, "message_start")

    if block["type"] == "tool_use":
        opening = {**block, "input": {}}
        deltas = [
            {"type": "input_json_delta", "partial_json": piece} for piece in split_pieces(json.dumps(block["input"]))
        ]
    else:
        opening = {"type": "text", "text": ""}
        deltas = [{"type": "text_delta", "text": piece} for piece in split_pieces(block["text"])]
    yield sse_event({"type": "content_block_start", "index": 0, "content_block": opening}, "content_block_start")
    yield sse_event({"type": "ping"}, "ping")
    for delta in deltas:
        yield sse_event({"type": "content_block_delta", "index": 0, "delta": delta}, "content_block_delta")
    yield sse_event({"type": "content_block_stop", "index": 0}, "content_block_stop")

    message_delta = {
        "type": "message_delta",
        "delta": {"stop_reason": message["stop_reason"], "stop_sequence": None},
        "usage": {"output_tokens": usage["output_tokens"]},
    }
    yield sse_event(message_delta, "message_delta")
    yield sse_event({"type": "message_stop"}, "message_stop")


def _bearer_token(authorization: str | None) -> str | None:
    if authorization is None or not authorization.startswith("Bearer "):
        return None
    return authorization.removeprefix("Bearer ")


def _usage(input_tokens: int, output_tokens: int) -> dict[str, int]:
    return {
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
    }
