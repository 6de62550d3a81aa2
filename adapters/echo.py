"""The built-in `echo` target: no network, a reply derived from the input, real usage counts.

It is the zero-config default and the smoke-test target, so its output is deterministic.
"""

from __future__ import annotations

import hashlib
import struct
import time
from collections.abc import AsyncIterator
from typing import Any

import orjson

from adapters.base import Adapter, Endpoint, UpstreamReply, UpstreamRequest, Usage
from adapters.sse import DONE, sse_data
from gateway.tokens import content_text, estimate_tokens, prompt_text

EMBEDDING_DIMENSIONS = 16


class EchoAdapter(Adapter):
    @property
    def model_name(self) -> str:
        return self.target.model or "echo"

    async def send(self, request: UpstreamRequest) -> UpstreamReply:
        body = request.body
        usage = Usage(input_tokens=estimate_tokens(prompt_text(body)), reported=True)
        if request.endpoint is Endpoint.EMBEDDING:
            return UpstreamReply(200, body=orjson.dumps(self._embeddings(body, usage)), usage=usage)
        reply = "echo: " + _last_user_text(body)
        usage.output_tokens = estimate_tokens(reply)
        choices = max(1, body.get("n") or 1)
        if request.stream:
            events = self._stream(request.endpoint, reply, choices, usage, request.client_wants_usage)
            return UpstreamReply(200, events=events, usage=usage, content_type=b"text/event-stream")
        return UpstreamReply(200, body=orjson.dumps(self._completion(request.endpoint, reply, choices, usage)), usage=usage)

    def _completion(self, endpoint: Endpoint, reply: str, choices: int, usage: Usage) -> dict[str, Any]:
        if endpoint is Endpoint.CHAT:
            items = [
                {"index": i, "message": {"role": "assistant", "content": reply}, "finish_reason": "stop", "logprobs": None}
                for i in range(choices)
            ]
            kind = "chat.completion"
        else:
            items = [{"index": i, "text": reply, "finish_reason": "stop", "logprobs": None} for i in range(choices)]
            kind = "text_completion"
        return {
            "id": "echo-" + _digest(reply)[:24],
            "object": kind,
            "created": int(time.time()),
            "model": self.model_name,
            "choices": items,
            "usage": _usage_json(usage),
        }

    async def _stream(
        self, endpoint: Endpoint, reply: str, choices: int, usage: Usage, with_usage: bool
    ) -> AsyncIterator[bytes]:
        chat = endpoint is Endpoint.CHAT
        base = {
            "id": "echo-" + _digest(reply)[:24],
            "object": "chat.completion.chunk" if chat else "text_completion",
            "created": int(time.time()),
            "model": self.model_name,
        }
        pieces = [word + " " for word in reply.split(" ")]
        pieces[-1] = pieces[-1][:-1]
        for index in range(choices):
            if chat:
                yield sse_data(orjson.dumps({**base, "choices": [{"index": index, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]}))
            for piece in pieces:
                delta = {"delta": {"content": piece}} if chat else {"text": piece}
                yield sse_data(orjson.dumps({**base, "choices": [{"index": index, **delta, "finish_reason": None}]}))
            end = {"delta": {}} if chat else {"text": ""}
            yield sse_data(orjson.dumps({**base, "choices": [{"index": index, **end, "finish_reason": "stop"}]}))
        if with_usage:
            yield sse_data(orjson.dumps({**base, "choices": [], "usage": _usage_json(usage)}))
        yield DONE

    def _embeddings(self, body: dict[str, Any], usage: Usage) -> dict[str, Any]:
        inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
        data = [
            {"object": "embedding", "index": i, "embedding": _vector(orjson.dumps(item))} for i, item in enumerate(inputs)
        ]
        return {
            "object": "list",
            "data": data,
            "model": self.model_name,
            "usage": {"prompt_tokens": usage.input_tokens, "total_tokens": usage.input_tokens},
        }


def _last_user_text(body: dict[str, Any]) -> str:
    messages = body.get("messages")
    if isinstance(messages, list):
        for message in reversed(messages):
            if isinstance(message, dict) and message.get("role") == "user":
                return content_text(message.get("content"))
        return ""
    prompt = body.get("prompt")
    if isinstance(prompt, list):
        return " ".join(p for p in prompt if isinstance(p, str))
    return prompt if isinstance(prompt, str) else ""


def _usage_json(usage: Usage) -> dict[str, int]:
    return {
        "prompt_tokens": usage.input_tokens,
        "completion_tokens": usage.output_tokens,
        "total_tokens": usage.input_tokens + usage.output_tokens,
    }


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _vector(seed: bytes) -> list[float]:
    raw = hashlib.sha512(seed).digest()
    values = [v / 32768.0 for v in struct.unpack(f"<{EMBEDDING_DIMENSIONS}h", raw[: EMBEDDING_DIMENSIONS * 2])]
    norm = sum(v * v for v in values) ** 0.5 or 1.0
    return [round(v / norm, 6) for v in values]
