"""Where user-controlled text lives in a request body, and a copy of the body with some of it replaced.

A slot is one string of the body, addressed by its path: message contents and their text parts,
tool-call arguments, completion prompts, embedding inputs. `spliced` rewrites spans of one string (the
redactions, masks and placeholders of safety/transform.py); `replaced` copies only the containers on
the changed paths, so a redacted body shares everything else with the client's (which stays
untouched: retries and fallbacks all send the same redacted copy).
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

Path = tuple[str | int, ...]

# Roles whose text an end user (or a tool's output, the indirect route) controls; system and developer
# prompts are the application's own, and abuse detection on them would only flag the app.
USER_ROLES = frozenset({"user", "tool", "function"})


@dataclass(frozen=True, slots=True)
class Slot:
    path: Path
    text: str
    from_user: bool  # counts for abuse detection; PII is looked for in every slot


def text_slots(body: Mapping[str, Any]) -> list[Slot]:
    found: list[Slot] = []
    messages = body.get("messages")
    if isinstance(messages, list):
        for i, message in enumerate(messages):
            if isinstance(message, dict):
                _message_slots(i, message, found)
    for field in ("prompt", "input"):
        value = body.get(field)
        if isinstance(value, str):
            found.append(Slot((field,), value, field == "prompt"))
        elif isinstance(value, list):
            for j, item in enumerate(value):
                if isinstance(item, str):
                    found.append(Slot((field, j), item, field == "prompt"))
    return found


def _message_slots(i: int, message: Mapping[str, Any], found: list[Slot]) -> None:
    from_user = message.get("role") in USER_ROLES
    content = message.get("content")
    if isinstance(content, str):
        found.append(Slot(("messages", i, "content"), content, from_user))
    elif isinstance(content, list):
        for j, part in enumerate(content):
            if isinstance(part, dict) and isinstance(part.get("text"), str):
                found.append(Slot(("messages", i, "content", j, "text"), part["text"], from_user))
    calls = message.get("tool_calls")
    if isinstance(calls, list):
        for k, call in enumerate(calls):
            function = call.get("function") if isinstance(call, dict) else None
            if isinstance(function, dict) and isinstance(function.get("arguments"), str):
                found.append(Slot(("messages", i, "tool_calls", k, "function", "arguments"), function["arguments"], from_user))


def replaced(body: dict[str, Any], changes: Mapping[Path, str]) -> dict[str, Any]:
    """A copy of `body` with the strings at `changes`' paths replaced; untouched parts are shared."""
    root: dict[str, Any] = dict(body)
    copied: set[Path] = {()}
    for path, text in changes.items():
        node: Any = root
        for depth, step in enumerate(path[:-1]):
            here = path[: depth + 1]
            child = node[step]
            if here not in copied:
                child = dict(child) if isinstance(child, dict) else list(child)
                node[step] = child
                copied.add(here)
            node = child
        node[path[-1]] = text
    return root


_JSON_ESCAPE = re.compile(r"\\(?:u[0-9A-Fa-f]{4}|[\s\S])")


def outside_escapes(text: str, spans: Iterable[tuple[int, int, str]]) -> list[tuple[int, int, str]]:
    """Spans of `text`, a JSON document held in a string (tool-call arguments), widened so that none starts or
    ends inside a JSON escape (`\\n`, `\\u00e9`): a value found right after one (`\\njane@example.com` reads
    as `njane@…`) would otherwise leave a lone backslash, and the arguments would no longer parse. Spans that
    then overlap are merged."""
    spans = list(spans)
    if "\\" not in text:
        return spans
    escapes = [match.span() for match in _JSON_ESCAPE.finditer(text)]
    starts = [start for start, _ in escapes]
    out: list[tuple[int, int, str]] = []
    for start, end, replacement in spans:
        i = bisect_right(starts, start) - 1
        if i >= 0 and escapes[i][0] < start < escapes[i][1]:
            start = escapes[i][0]
        i = bisect_right(starts, end) - 1
        if i >= 0 and escapes[i][0] < end < escapes[i][1]:
            end = escapes[i][1]
        if out and start < out[-1][1]:
            first, last, before = out.pop()
            start, end, replacement = first, max(end, last), before + replacement
        out.append((start, end, replacement))
    return out


def is_json_text(field: str | int) -> bool:
    """Whether a string held under `field` is a JSON document (a tool call's arguments), in a request body
    (a slot's path ends with it) or in a reply."""
    return field == "arguments"


def spliced(text: str, spans: Iterable[tuple[int, int, str]], json_text: bool = False) -> str:
    """`text` with each (start, end, replacement) span replaced; spans in text order, not overlapping. `json_text`:
    `text` is a JSON document (see is_json_text), and the spans are first widened past its escapes."""
    if json_text:
        spans = outside_escapes(text, spans)
    out: list[str] = []
    position = 0
    for start, end, replacement in spans:
        out.append(text[position:start])
        out.append(replacement)
        position = end
    if not out:
        return text
    out.append(text[position:])
    return "".join(out)
