"""Deterministic reply content shared by the fake upstreams.

Every reply is a pure function of the request (plus the upstream's name), so a test can compute what it expects
with these same helpers instead of hard-coding strings, and can prove *which* upstream answered.
"""

from __future__ import annotations

import base64
import hashlib
import re
import struct
from typing import Any

# Splits text into streaming pieces at ':' and whitespace, keeping the separators, so even a short reply such as
# "a:model:hi there" arrives in several chunks and "".join(pieces) == text.
_PIECE_PATTERN = re.compile(r"[^:\s]*[:\s]+|[^:\s]+")


def reply_text(upstream_name: str, model: str, prompt_text: str) -> str:
    """The text a fake upstream answers with: names the upstream, the model it was asked for and the prompt."""
    return f"{upstream_name}:{model}:{prompt_text}"


def choice_text(base_text: str, index: int) -> str:
    """Text of choice `index` when a request asks for n > 1 choices; choice 0 is always the plain reply."""
    return base_text if index == 0 else f"{base_text} (choice {index})"


def count_words(text: str) -> int:
    """The fakes' stand-in for a tokenizer: one token per whitespace-separated word."""
    return len(text.split())


def split_pieces(text: str) -> list[str]:
    """The pieces a streamed reply is sent in; their concatenation is exactly `text`."""
    return _PIECE_PATTERN.findall(text)


def truncate_words(text: str, max_words: int | None) -> tuple[str, bool]:
    """Cuts `text` to `max_words` words (a `max_tokens` limit); returns the text and whether it was cut."""
    if max_words is None or count_words(text) <= max_words:
        return text, False
    return " ".join(text.split()[: max(max_words, 0)]), True


def content_text(content: Any) -> str:
    """Plain text of a message's content, in either API's shape.

    Handles a string, a list of text parts/blocks, and Anthropic tool_result blocks (whose own content may be a
    string or blocks); images and other non-text parts contribute nothing.
    """
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts: list[str] = []
        for part in content:
            if isinstance(part, str):
                texts.append(part)
            elif isinstance(part, dict) and part.get("type") == "text":
                texts.append(str(part.get("text", "")))
            elif isinstance(part, dict) and part.get("type") == "tool_result":
                texts.append(content_text(part.get("content")))
        return " ".join(text for text in texts if text)
    return ""


def last_user_text(messages: list[Any]) -> str:
    """Text of the last message whose role is "user" ("" when there is none)."""
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            return content_text(message.get("content"))
    return ""


def words_in_messages(messages: list[Any]) -> int:
    """Prompt token count: words in every message's text content."""
    return sum(count_words(content_text(m.get("content"))) for m in messages if isinstance(m, dict))


def embedding_vector(upstream_name: str, model: str, text: str, dimensions: int = 8) -> list[float]:
    """A deterministic embedding for `text`.

    Each component is (byte - 128) / 128 for bytes of a SHA-256 stream over the inputs: values in [-1, 1) that are
    exact in float32, so the base64 encoding the openai SDK asks for by default round-trips without error.
    """
    stream = b""
    block = 0
    while len(stream) < dimensions:
        seed = f"{upstream_name}\x00{model}\x00{text}\x00{block}".encode()
        stream += hashlib.sha256(seed).digest()
        block += 1
    return [(byte - 128) / 128 for byte in stream[:dimensions]]


def float32_base64(vector: list[float]) -> str:
    """The `encoding_format: base64` form of an embedding: little-endian float32s, base64-encoded."""
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")
