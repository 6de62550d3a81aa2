"""Accept: read the request body within its size limit and check what the gateway relies on.

Only the fields the gateway itself uses are checked; everything else is passed through untouched
for the upstream to judge.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from adapters.base import Endpoint
from gateway.errors import GatewayError, bad_request

MAX_CHOICES = 128
# OpenAI's numeric sampling fields. Their types are checked here, where it is cheap, so that a string in one is the
# same 400 on every target: the echo target ignores them and litellm reports a malformed call as an upstream failure.
INTEGER_FIELDS = ("max_tokens", "max_completion_tokens", "seed")
NUMBER_FIELDS = ("temperature", "top_p", "presence_penalty", "frequency_penalty")


@dataclass(slots=True)
class ParsedRequest:
    body: dict[str, Any]
    model: str
    stream: bool
    client_wants_usage: bool


async def read_body(receive: Any, headers: Mapping[bytes, bytes], max_bytes: int) -> bytes:
    declared = headers.get(b"content-length")
    if declared is not None:
        try:
            length = int(declared)
        except ValueError:
            raise bad_request("Content-Length is not a number.") from None
        if length > max_bytes:
            raise _too_large(max_bytes)
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone()
        chunk = message.get("body", b"")
        if chunk:
            size += len(chunk)
            if size > max_bytes:
                raise _too_large(max_bytes)
            chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


class ClientGone(Exception):
    """The client disconnected before the gateway answered; there is no one to answer."""


def _too_large(max_bytes: int) -> GatewayError:
    return GatewayError(413, f"Request body is larger than the gateway's limit of {max_bytes} bytes.", code="request_too_large")


def parse_request(endpoint: Endpoint, raw: bytes) -> ParsedRequest:
    """The body as JSON whatever Content-Type says: `curl -d` sends a form type for JSON too."""
    if not raw:
        raise bad_request("The request body is empty; send a JSON object.")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        reason = "is not valid UTF-8" if "utf-8" in str(exc).lower() else "is not valid JSON"
        raise bad_request(f"The request body {reason}.", code="invalid_json") from None
    if not isinstance(body, dict):
        raise bad_request("The request body must be a JSON object.", code="invalid_json")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise bad_request("'model' is required and must be a non-empty string.", param="model")
    _CHECKS[endpoint](body)
    _check_numbers(body)
    stream = body.get("stream", False)
    if stream is None:
        stream = False
    if not isinstance(stream, bool):
        raise bad_request("'stream' must be a boolean.", param="stream")
    if stream and endpoint is Endpoint.EMBEDDING:
        raise bad_request("Embeddings cannot be streamed.", param="stream")
    options = body.get("stream_options")
    if options is not None and not isinstance(options, dict):
        raise bad_request("'stream_options' must be an object.", param="stream_options")
    wants_usage = bool(stream and options and options.get("include_usage") is True)
    n = body.get("n")
    if n is not None and (not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= MAX_CHOICES):
        raise bad_request(f"'n' must be an integer from 1 to {MAX_CHOICES}.", param="n")
    return ParsedRequest(body, model, stream, wants_usage)


def _check_chat(body: dict[str, Any]) -> None:
    messages = body.get("messages")
    if messages is None:
        raise bad_request("'messages' is required.", param="messages")
    if not isinstance(messages, list) or not messages:
        raise bad_request("'messages' must be a non-empty array.", param="messages")
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise bad_request(f"'messages[{i}]' must be an object.", param=f"messages[{i}]")
        if not isinstance(message.get("role"), str):
            raise bad_request(f"'messages[{i}].role' is required and must be a string.", param=f"messages[{i}].role")
        content = message.get("content")
        if content is not None and not isinstance(content, (str, list)):
            raise bad_request(
                f"'messages[{i}].content' must be a string or an array of content parts.", param=f"messages[{i}].content"
            )
        if isinstance(content, list):
            _check_parts(content, f"messages[{i}].content")


def _check_parts(parts: list[Any], where: str) -> None:
    # A text part's text must be a string: the safety filters scan strings only, so text in any other shape
    # would reach the upstream unscanned.
    for j, part in enumerate(parts):
        if not isinstance(part, dict) or not isinstance(part.get("type"), str):
            raise bad_request(f"'{where}[{j}]' must be an object with a string 'type'.", param=f"{where}[{j}]")
        if part["type"] == "text" and not isinstance(part.get("text"), str):
            raise bad_request(f"'{where}[{j}].text' must be a string.", param=f"{where}[{j}].text")


def _check_numbers(body: dict[str, Any]) -> None:
    for name in INTEGER_FIELDS:
        value = body.get(name)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
            raise bad_request(f"'{name}' must be an integer.", param=name)
    for name in NUMBER_FIELDS:
        value = body.get(name)
        if value is not None and (not isinstance(value, (int, float)) or isinstance(value, bool)):
            raise bad_request(f"'{name}' must be a number.", param=name)


def _check_completion(body: dict[str, Any]) -> None:
    prompt = body.get("prompt")
    if prompt is None:
        raise bad_request("'prompt' is required.", param="prompt")
    if isinstance(prompt, str):
        return
    if isinstance(prompt, list) and prompt and all(isinstance(p, (str, int, list)) and not isinstance(p, bool) for p in prompt):
        return
    raise bad_request("'prompt' must be a string, an array of strings, or tokens.", param="prompt")


def _check_embedding(body: dict[str, Any]) -> None:
    value = body.get("input")
    if value is None:
        raise bad_request("'input' is required.", param="input")
    if isinstance(value, str) and value:
        return
    if isinstance(value, list) and value and all(isinstance(v, (str, int, list)) and not isinstance(v, bool) for v in value):
        return
    raise bad_request("'input' must be a non-empty string or array.", param="input")


_CHECKS = {Endpoint.CHAT: _check_chat, Endpoint.COMPLETION: _check_completion, Endpoint.EMBEDDING: _check_embedding}
