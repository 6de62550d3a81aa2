"""Closed APIs that are not OpenAI-shaped (Anthropic, Gemini, Bedrock, Azure, Mistral…) via litellm.

litellm costs seconds to import, so it is imported once, in a thread, when the first target that
uses it starts; /readyz stays unready until then. Its price map is the bundled one: nothing is
fetched over the network.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import os
from collections.abc import AsyncIterator
from typing import Any

import orjson

from adapters.base import Adapter, Endpoint, UpstreamError, UpstreamReply, UpstreamRequest, Usage, status_error
from adapters.sse import DONE, read_usage, sse_data

# Fields the gateway consumes itself or that litellm reads as its own options.
# The OpenAI request parameters handed to litellm. An allow-list, not a deny-list: litellm also
# takes keyword arguments such as api_base, api_key, extra_headers or aws_* credentials, and a
# client must never be able to choose where the gateway's credentials are sent.
_OPENAI_PARAMETERS = frozenset({
    "temperature", "top_p", "n", "stop", "max_tokens", "max_completion_tokens", "presence_penalty",
    "frequency_penalty", "logit_bias", "logprobs", "top_logprobs", "user", "response_format", "seed",
    "tools", "tool_choice", "parallel_tool_calls", "functions", "function_call", "reasoning_effort",
    "modalities", "audio", "prediction", "service_tier", "web_search_options", "thinking",
    "dimensions", "encoding_format", "suffix", "echo", "best_of",
})


def import_litellm() -> Any:
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    litellm = importlib.import_module("litellm")
    litellm.telemetry = False
    litellm.suppress_debug_info = True
    # litellm logs a line per call at INFO, and request bodies at DEBUG: prompts must never reach logs.
    for name in ("LiteLLM", "LiteLLM Router", "LiteLLM Proxy"):
        logging.getLogger(name).setLevel(logging.WARNING)
    return litellm


class LiteLLMAdapter(Adapter):
    def __init__(self, name: str, target: Any) -> None:
        super().__init__(name, target)
        self._litellm: Any = None
        self._loading: asyncio.Future[Any] | None = None
        self._provider = (target.model or "").split("/", 1)[0] if "/" in (target.model or "") else "litellm"

    @property
    def provider(self) -> str:
        return self._provider

    async def start(self) -> None:
        self._loading = asyncio.get_running_loop().run_in_executor(None, import_litellm)
        self._loading.add_done_callback(self._loaded)

    def _loaded(self, future: asyncio.Future[Any]) -> None:
        if not future.cancelled() and future.exception() is None:
            self._litellm = future.result()

    def ready(self) -> bool:
        return self._litellm is not None

    def _options(self, body: dict[str, Any]) -> dict[str, Any]:
        options = {k: v for k, v in body.items() if k in _OPENAI_PARAMETERS}
        options.update(
            model=self.target.model,
            timeout=self.target.timeout_s,
            num_retries=0,  # retries and fallbacks are the gateway's policy, not litellm's
        )
        if self.target.api_key:
            options["api_key"] = self.target.api_key
        if self.target.base_url:
            options["api_base"] = self.target.base_url
        if self.target.headers:
            options["extra_headers"] = dict(self.target.headers)
        return options

    async def send(self, request: UpstreamRequest) -> UpstreamReply:
        litellm = self._litellm
        if litellm is None:
            assert self._loading is not None, "adapter used before start()"
            litellm = await self._loading
        body = request.body
        options = self._options(body)
        usage = Usage()
        try:
            if request.endpoint is Endpoint.EMBEDDING:
                response = await litellm.aembedding(input=body["input"], **options)
            elif request.endpoint is Endpoint.COMPLETION:
                response = await litellm.atext_completion(prompt=body["prompt"], stream=request.stream, **self._stream_options(request), **options)
            else:
                response = await litellm.acompletion(messages=body["messages"], stream=request.stream, **self._stream_options(request), **options)
        except Exception as exc:
            raise _upstream_error(self.name, exc) from None
        if request.stream:
            return UpstreamReply(
                200, events=self._events(response, usage, request.client_wants_usage), usage=usage, content_type=b"text/event-stream"
            )
        payload = response.model_dump(exclude_none=True)
        if isinstance(payload.get("usage"), dict):
            read_usage(payload["usage"], usage)
        return UpstreamReply(200, body=orjson.dumps(payload), usage=usage)

    @staticmethod
    def _stream_options(request: UpstreamRequest) -> dict[str, Any]:
        return {"stream_options": {"include_usage": True}} if request.stream else {}

    async def _events(self, stream: Any, usage: Usage, forward_usage: bool) -> AsyncIterator[bytes]:
        try:
            async for chunk in stream:
                payload = chunk.model_dump(exclude_none=True)
                if isinstance(payload.get("usage"), dict):
                    read_usage(payload["usage"], usage)
                    if not payload.get("choices"):
                        if forward_usage:
                            yield sse_data(orjson.dumps(payload))
                        continue
                    if not forward_usage:
                        del payload["usage"]
                yield sse_data(orjson.dumps(payload))
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            raise _upstream_error(self.name, exc) from None
        yield DONE


_LITELLM_CODES = {
    "ContextWindowExceededError": "context_length_exceeded",
    "ContentPolicyViolationError": "content_policy_violation",
}


def _upstream_error(target: str, exc: Exception) -> UpstreamError:
    where = f"upstream target {target!r}"
    name = type(exc).__name__
    status = getattr(exc, "status_code", None)
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    retry_after = headers.get("retry-after") if headers is not None else None
    if "Timeout" in name or isinstance(exc, asyncio.TimeoutError):
        return UpstreamError("timeout", 504, f"{where} timed out")
    if name == "APIConnectionError":
        return UpstreamError("connect", 502, f"could not reach {where}")
    if not isinstance(status, int):
        # Anything else without an HTTP status (a malformed reply, a provider SDK's own failure): the target
        # answered, so not "could not reach"; the exception's name says which, its text may quote the prompt.
        return UpstreamError("protocol", 502, f"{where} failed ({name})")
    detail = str(getattr(exc, "message", "")) or None
    return status_error(target, status, detail, retry_after=retry_after, code=_LITELLM_CODES.get(name))
