"""Putting pseudonymized values back into replies: whole JSON bodies, and SSE streams without buffering.

A stream is never held back except for a possible placeholder cut across events: when a content
delta ends in a proper prefix of one of this request's placeholders (say `<EMAIL_ADD`), that tail
waits for the next delta of the same choice; anything else passes at once. Content is decoded from
each event's JSON, restored, and encoded again, so escaping inside `data:` lines is handled.
The walk over events (rewrite_stream) is shared with response redaction (safety/responses.py).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Mapping
from typing import Any, Protocol

import orjson

_PLACEHOLDER_BYTES = re.compile(rb"(?:<|\\u003[cC])([A-Z][A-Z_]*_[0-9]+)(?:>|\\u003[eE])")
_PLACEHOLDER = re.compile(r"<[A-Z][A-Z_]*_[0-9]+>")
_DONE = b"[DONE]"
Key = tuple[Any, ...]  # ("content", choice) | ("text", choice) | ("arguments", choice, tool call)


class FieldFilter(Protocol):
    def split(self, key: Key, text: str, final: bool) -> tuple[str, str]:
        """`text` (what was held for `key`, then what just came) → what to send now, and what to hold.
        `final`: the field ends here, so nothing may be held."""
        ...


class Restorer:
    """One request's placeholder → value map, for replies in either form."""

    def __init__(self, values: Mapping[str, str]) -> None:
        self._values = dict(values)
        self._json_values = {name[1:-1].encode(): orjson.dumps(value)[1:-1] for name, value in values.items()}
        self._prefixes = frozenset(name[:i] for name in values for i in range(1, len(name)))

    def restore_text(self, text: str) -> str:
        if "<" not in text:
            return text
        return _PLACEHOLDER.sub(lambda m: self._values.get(m.group(), m.group()), text)

    def restore_json(self, body: bytes) -> bytes:
        """Placeholders in a JSON body, written raw or `\\u003c`-escaped (as Go servers do), restored."""
        return _PLACEHOLDER_BYTES.sub(lambda m: self._json_values.get(m.group(1), m.group()), body)

    def held_tail(self, text: str) -> int:
        """Where a trailing partial placeholder starts in `text` (len(text) if there is none)."""
        cut = text.rfind("<")
        if cut >= 0 and text[cut:] in self._prefixes:
            return cut
        return len(text)

    def split(self, key: Key, text: str, final: bool) -> tuple[str, str]:
        cut = len(text) if final else self.held_tail(text)
        return self.restore_text(text[:cut]), text[cut:]

    def restore_stream(self, events: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        return rewrite_stream(events, self)


async def rewrite_stream(events: AsyncIterator[bytes], fields: FieldFilter) -> AsyncIterator[bytes]:
    """`events` with every choice's text and tool-call arguments passed through `fields`.

    Text still held when the stream ends is sent in events of its own; when `events` raises, it is dropped.
    """
    stream = _StreamFields(fields)
    async for chunk in events:
        out = stream.feed(chunk)
        if out:
            yield out
    tail = stream.finish()
    if tail:
        yield tail


class _StreamFields:
    """Per-stream state: the held tail of each choice's content (and each tool call's arguments)."""

    def __init__(self, fields: FieldFilter) -> None:
        self._fields = fields
        self._held: dict[Key, str] = {}
        self._last: dict[str, Any] = {}

    def feed(self, chunk: bytes) -> bytes:
        out = []
        for event in chunk.split(b"\n\n"):
            if event.strip():
                out.append(self._event(event))
        return b"".join(out)

    def finish(self) -> bytes:
        return self._flush_all()

    def _event(self, event: bytes) -> bytes:
        data = _data_of(event)
        if data is None:
            return event + b"\n\n"
        if data == _DONE:
            return self._flush_all() + event + b"\n\n"
        try:
            payload = orjson.loads(data)
        except orjson.JSONDecodeError:
            return event + b"\n\n"
        choices = payload.get("choices") if isinstance(payload, dict) else None
        if not isinstance(choices, list) or not choices:
            return event + b"\n\n"
        self._last = {k: payload[k] for k in ("id", "object", "created", "model") if k in payload}
        changed = False
        for choice in choices:
            if isinstance(choice, dict):
                changed |= self._choice(choice)
        return b"data: " + orjson.dumps(payload) + b"\n\n" if changed else event + b"\n\n"

    def _choice(self, choice: dict[str, Any]) -> bool:
        index = choice.get("index", 0)
        final = choice.get("finish_reason") is not None
        changed = False
        delta = choice.get("delta")
        if isinstance(delta, dict):
            changed |= self._field(delta, "content", ("content", index), final)
            calls = delta.get("tool_calls")
            if isinstance(calls, list):
                for call in calls:
                    function = call.get("function") if isinstance(call, dict) else None
                    if isinstance(function, dict):
                        changed |= self._field(function, "arguments", ("arguments", index, call.get("index", 0)), final)
            if final:
                changed |= self._flush_choice(delta, index)
        elif "text" in choice:
            changed |= self._field(choice, "text", ("text", index), final)
        return changed

    def _field(self, holder: dict[str, Any], name: str, key: Key, final: bool) -> bool:
        piece = holder.get(name)
        held = self._held.pop(key, "")
        if not isinstance(piece, str):
            if held:
                self._held[key] = held
            return False
        out, rest = self._fields.split(key, held + piece, final)
        if rest:
            self._held[key] = rest
        if out == piece:
            return False
        holder[name] = out
        return True

    def _flush_choice(self, delta: dict[str, Any], index: Any) -> bool:
        """A choice finished while text was held (its last delta carried none of it): put it back."""
        changed = False
        for key in [k for k in self._held if k[1] == index and k[0] != "text"]:
            text = self._fields.split(key, self._held.pop(key), True)[0]
            if key[0] == "content":
                delta["content"] = (delta.get("content") or "") + text
            else:
                delta.setdefault("tool_calls", []).append({"index": key[2], "function": {"arguments": text}})
            changed = True
        return changed

    def _flush_all(self) -> bytes:
        out = []
        for key, held in list(self._held.items()):
            kind, index = key[0], key[1]
            text = self._fields.split(key, held, True)[0]
            if kind == "content":
                choice: dict[str, Any] = {"index": index, "delta": {"content": text}, "finish_reason": None}
            elif kind == "text":
                choice = {"index": index, "text": text, "finish_reason": None}
            else:
                call = {"index": key[2], "function": {"arguments": text}}
                choice = {"index": index, "delta": {"tool_calls": [call]}, "finish_reason": None}
            out.append(b"data: " + orjson.dumps({**self._last, "choices": [choice]}) + b"\n\n")
        self._held.clear()
        return b"".join(out)


def _data_of(event: bytes) -> bytes | None:
    for line in event.split(b"\n"):
        if line.startswith(b"data:"):
            return line[5:].strip()
    return None
