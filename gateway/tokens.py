"""Fast token estimates, for limits and for upstreams that report no usage.

Four characters per token is the usual rule of thumb for English BPE vocabularies; exactness comes
from the upstream's own usage report when there is one.
"""

from __future__ import annotations

from typing import Any


def estimate_tokens(text: str) -> int:
    return tokens_for_characters(len(text))


def tokens_for_characters(count: int) -> int:
    """The estimate for text known only by its length, e.g. a stream counted as it passed."""
    return (count + 3) // 4


def prompt_text(body: dict[str, Any]) -> str:
    """All user-controlled text of a request body, joined: messages, prompt or embedding input."""
    parts: list[str] = []
    messages = body.get("messages")
    if isinstance(messages, list):
        for message in messages:
            if isinstance(message, dict):
                parts.append(content_text(message.get("content")))
    for field in ("prompt", "input"):
        value = body.get(field)
        if isinstance(value, str):
            parts.append(value)
        elif isinstance(value, list):
            parts.extend(item for item in value if isinstance(item, str))
    return "\n".join(parts)


def content_text(content: Any) -> str:
    """The text of a message's content: a string, or the text parts of a list of parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(part.get("text", "") for part in content if isinstance(part, dict) and isinstance(part.get("text"), str))
    return ""
