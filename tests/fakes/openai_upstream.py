"""A fake OpenAI-compatible upstream (think vLLM or api.openai.com) on a real port, for gateway tests.

Replies are derived from the request: chat content is f"{name}:{model}:{last user text}" (see replies.py), so a
test can assert exactly which upstream answered which request. Usage counts words as tokens.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from aiohttp import web

from .base import FakeUpstream
from .replies import (
    choice_text,
    count_words,
    embedding_vector,
    float32_base64,
    last_user_text,
    reply_text,
    split_pieces,
    truncate_words,
    words_in_messages,
)
from .wire import UpstreamRejection, json_response, sse_event

# OpenAI's (type, code) for an error status, used when a test's fault does not name them.
_ERROR_KINDS: MappingProxyType[int, tuple[str, str | None]] = MappingProxyType(
    {
        400: ("invalid_request_error", None),
        401: ("invalid_request_error", "invalid_api_key"),
        403: ("permission_error", None),
        404: ("invalid_request_error", "model_not_found"),
        413: ("invalid_request_error", "request_too_large"),
        429: ("rate_limit_error", "rate_limit_exceeded"),
        500: ("server_error", None),
        502: ("server_error", None),
        503: ("server_error", "service_unavailable"),
        504: ("server_error", "timeout"),
    }
)
TOOL_TRIGGER = "call a tool"  # a last user message containing this makes the reply a call of the first tool


@dataclass(frozen=True)
class _Choice:
    """One generated choice: either text or a tool call."""

    index: int
    text: str | None
    tool_call: dict[str, Any] | None
    finish_reason: str

    @property
    def completion_tokens(self) -> int:
        if self.tool_call is not None:
            return count_words(self.tool_call["function"]["arguments"])
        return count_words(self.text or "")


class OpenAIUpstream(FakeUpstream):
    """Speaks /v1/chat/completions, /v1/completions, /v1/embeddings and /v1/models.

    `api_key`, when given, is required as `Authorization: Bearer <key>` (401 otherwise), which lets tests prove
    the gateway sends each target's configured key.
    """

    def __init__(
        self,
        name: str = "openai-fake",
        *,
        models: Sequence[str] = ("upstream-model",),
        api_key: str | None = None,
        embedding_dimensions: int = 8,
        chunk_delay: float = 0.0,
    ) -> None:
        super().__init__(name, chunk_delay=chunk_delay)
        self.models = list(models)
        self.api_key = api_key
        self.embedding_dimensions = embedding_dimensions

    @property
    def base_url(self) -> str:
        return f"{self.origin}/v1"

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/v1/chat/completions", self._chat_completions),
            web.post("/v1/completions", self._completions),
            web.post("/v1/embeddings", self._embeddings),
            web.get("/v1/models", self._models),
        ]

    def error_response(self, rejection: UpstreamRejection) -> web.Response:
        default_type, default_code = _ERROR_KINDS.get(rejection.status, ("api_error", None))
        error = {
            "message": rejection.message,
            "type": rejection.error_type or default_type,
            "param": None,
            "code": rejection.code or default_code,
        }
        return json_response({"error": error}, status=rejection.status, headers=rejection.headers)

    # ----- endpoints -----------------------------------------------------------------------------------------

    async def _chat_completions(self, request: web.Request) -> web.StreamResponse:
        self._check_key(request)
        body = self.json_body(request)
        model = _required(body, "model", str)
        messages = _required(body, "messages", list)
        prompt_text = last_user_text(messages)
        choices = self._chat_choices(request, body, model, prompt_text)
        usage = _usage(words_in_messages(messages), sum(choice.completion_tokens for choice in choices))
        common = self._common_fields(request, "chatcmpl", model)
        if body.get("stream") is True:
            events = self._chat_stream(common, choices, usage, _include_usage(body))
            return await self.send_stream(request, events, self._reply_headers(request))
        payload = {**common, "object": "chat.completion", "choices": [_chat_choice(c) for c in choices], "usage": usage}
        return json_response(payload, headers=self._reply_headers(request))

    async def _completions(self, request: web.Request) -> web.StreamResponse:
        self._check_key(request)
        body = self.json_body(request)
        model = _required(body, "model", str)
        prompts = _prompt_texts(body.get("prompt", ""))
        n = _choice_count(body)
        max_tokens = body.get("max_tokens")
        choices: list[_Choice] = []
        for prompt_index, prompt in enumerate(prompts):
            for choice_index in range(n):
                text = choice_text(reply_text(self.name, model, prompt), choice_index)
                text, cut = truncate_words(text, max_tokens)
                choices.append(_Choice(prompt_index * n + choice_index, text, None, "length" if cut else "stop"))
        usage = _usage(sum(count_words(p) for p in prompts), sum(c.completion_tokens for c in choices))
        common = {**self._common_fields(request, "cmpl", model), "object": "text_completion"}
        if body.get("stream") is True:
            events = _completion_stream(common, choices, usage, _include_usage(body))
            return await self.send_stream(request, events, self._reply_headers(request))
        payload = {
            **common,
            "choices": [
                {"text": c.text, "index": c.index, "logprobs": None, "finish_reason": c.finish_reason} for c in choices
            ],
            "usage": usage,
        }
        return json_response(payload, headers=self._reply_headers(request))

    async def _embeddings(self, request: web.Request) -> web.StreamResponse:
        self._check_key(request)
        body = self.json_body(request)
        model = _required(body, "model", str)
        texts = _prompt_texts(_required(body, "input", (str, list)))
        dimensions = int(body.get("dimensions") or self.embedding_dimensions)
        as_base64 = body.get("encoding_format") == "base64"
        data = []
        for index, text in enumerate(texts):
            vector = embedding_vector(self.name, model, text, dimensions)
            data.append(
                {"object": "embedding", "index": index, "embedding": float32_base64(vector) if as_base64 else vector}
            )
        tokens = sum(count_words(text) for text in texts)
        payload = {
            "object": "list",
            "data": data,
            "model": model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
        return json_response(payload, headers=self._reply_headers(request))

    async def _models(self, request: web.Request) -> web.StreamResponse:
        self._check_key(request)
        data = [{"id": model, "object": "model", "created": 1700000000, "owned_by": self.name} for model in self.models]
        return json_response({"object": "list", "data": data}, headers=self._reply_headers(request))

    # ----- building replies ----------------------------------------------------------------------------------

    def _check_key(self, request: web.Request) -> None:
        if self.api_key is None:
            return
        if self.record_of(request).header("authorization") != f"Bearer {self.api_key}":
            raise UpstreamRejection(401, f"Incorrect API key provided to {self.name}.")

    def _chat_choices(self, request: web.Request, body: dict[str, Any], model: str, prompt_text: str) -> list[_Choice]:
        tools = body.get("tools") or []
        max_tokens = body.get("max_completion_tokens") or body.get("max_tokens")
        base_text = reply_text(self.name, model, prompt_text)
        choices = []
        for index in range(_choice_count(body)):
            if tools and TOOL_TRIGGER in prompt_text:
                arguments = json.dumps({"upstream": self.name, "text": prompt_text})
                tool_call = {
                    "id": f"call_{self.sequence_of(request)}_{index}",
                    "type": "function",
                    "function": {"name": tools[0]["function"]["name"], "arguments": arguments},
                }
                choices.append(_Choice(index, None, tool_call, "tool_calls"))
            else:
                text, cut = truncate_words(choice_text(base_text, index), max_tokens)
                choices.append(_Choice(index, text, None, "length" if cut else "stop"))
        return choices

    def _chat_stream(
        self, common: dict[str, Any], choices: list[_Choice], usage: dict[str, int], include_usage: bool
    ) -> Iterator[bytes]:
        def chunk(index: int, delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
            choice = {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
            payload = {**common, "object": "chat.completion.chunk", "choices": [choice]}
            if include_usage:
                payload["usage"] = None  # as OpenAI does: usage only in the final, choice-less chunk
            return sse_event(payload)

        for choice in choices:
            if choice.tool_call is not None:
                call, function = choice.tool_call, choice.tool_call["function"]
                opening = {
                    "index": 0,
                    "id": call["id"],
                    "type": "function",
                    "function": {"name": function["name"], "arguments": ""},
                }
                yield chunk(choice.index, {"role": "assistant", "content": None, "tool_calls": [opening]})
                for piece in split_pieces(function["arguments"]):
                    yield chunk(choice.index, {"tool_calls": [{"index": 0, "function": {"arguments": piece}}]})
            else:
                yield chunk(choice.index, {"role": "assistant", "content": ""})
                for piece in split_pieces(choice.text or ""):
                    yield chunk(choice.index, {"content": piece})
            yield chunk(choice.index, {}, choice.finish_reason)
        if include_usage:
            yield sse_event({**common, "object": "chat.completion.chunk", "choices": [], "usage": usage})
        yield sse_event("[DONE]")

    def _common_fields(self, request: web.Request, id_prefix: str, model: str) -> dict[str, Any]:
        return {
            "id": f"{id_prefix}-{self.name}-{self.sequence_of(request)}",
            "created": int(time.time()),
            "model": model,
            "system_fingerprint": "fp_fake",
        }

    def _reply_headers(self, request: web.Request) -> dict[str, str]:
        return {"x-request-id": f"req-{self.name}-{self.sequence_of(request)}"}


def _completion_stream(
    common: dict[str, Any], choices: list[_Choice], usage: dict[str, int], include_usage: bool
) -> Iterator[bytes]:
    for choice in choices:
        for piece in split_pieces(choice.text or ""):
            yield sse_event(
                {**common, "choices": [{"text": piece, "index": choice.index, "logprobs": None, "finish_reason": None}]}
            )
        yield sse_event(
            {
                **common,
                "choices": [
                    {"text": "", "index": choice.index, "logprobs": None, "finish_reason": choice.finish_reason}
                ],
            }
        )
    if include_usage:
        yield sse_event({**common, "choices": [], "usage": usage})
    yield sse_event("[DONE]")


def _chat_choice(choice: _Choice) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": choice.text, "refusal": None}
    if choice.tool_call is not None:
        message["tool_calls"] = [choice.tool_call]
    return {"index": choice.index, "message": message, "logprobs": None, "finish_reason": choice.finish_reason}


def _usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def _include_usage(body: dict[str, Any]) -> bool:
    options = body.get("stream_options")
    return isinstance(options, dict) and options.get("include_usage") is True


def _choice_count(body: dict[str, Any]) -> int:
    n = body.get("n") or 1
    if not isinstance(n, int) or n < 1:
        raise UpstreamRejection(400, f"n must be a positive integer, got {n!r}")
    return n


def _prompt_texts(value: Any) -> list[str]:
    """A prompt/input as texts: a string, a list of strings, or token arrays (rendered as their numbers)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value and all(isinstance(item, int) for item in value):
        return [" ".join(str(token) for token in value)]
    if isinstance(value, list):
        return [item if isinstance(item, str) else " ".join(str(token) for token in item) for item in value]
    raise UpstreamRejection(400, f"expected a string or a list, got {type(value).__name__}")


def _required(body: dict[str, Any], field: str, kind: type | tuple[type, ...]) -> Any:
    value = body.get(field)
    if value is None or not isinstance(value, kind) or (isinstance(value, list) and not value):
        raise UpstreamRejection(400, f"'{field}' is required", code="missing_required_parameter")
    return value
