"""Personal data in the model's output (`safety.pii.responses: redact`): found with the policy's scanner and
replaced by `<ENTITY_TYPE>` before the client sees it, in JSON replies and in SSE streams.

The scan runs on the model's own words, before pseudonymized values are put back (safety/restore.py): a value
the client sent comes back as sent, and a placeholder is never taken for, or cut by, a finding.

Streams are not buffered. Each choice's text (and each tool call's arguments) is released as it comes,
except a tail that the next event could still turn into part of an entity (`held_from`):
- the last token (the text after the last whitespace), which may go on;
- when that token is empty or could be a group of a number written with spaces (digits and `+-()./`), the
  groups of that kind before it on the same line (the first may end a token such as `"phone":"+1`): a
  phone number, card or SSN still being written;
- groups of four letters or digits back to an IBAN's start (two letters, two digits), and everything after it;
never more than HOLD_CHARS: past that, the oldest part is released (scanned, like everything else).
What is released is scanned together with the held tail (recognizers look at the characters after a value)
and the last CONTEXT_CHARS already released (context words such as "phone", within 80 characters before a
value, raise its score), so a value cut anywhere across events is found exactly as in the whole text. A
finding that reaches into the held tail is held with it. Only a value longer than HOLD_CHARS, or one split
at a space between words of letters (a date with a month name, a name found by `ner_model`), may be scanned
in parts: what the scan then finds is redacted (a value begun in released text loses the rest), but a part
that alone does not look like a value gets through. Each event's scan covers at most CONTEXT_CHARS +
HOLD_CHARS + the event's own text, and none runs on text without a character some entity needs.

A stream that breaks off drops its held tail: nothing unscanned reaches the client.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Sequence
from time import perf_counter
from typing import Any

import orjson

from adapters.base import UpstreamError
from gateway.errors import GatewayError
from gateway.exchange import Exchange
from gateway.safety.pii import Finding, PiiScanner
from gateway.safety.restore import Key, rewrite_stream
from gateway.safety.schema import NER_ENTITIES
from gateway.safety.slots import is_json_text, outside_escapes, spliced

HOLD_CHARS = 128  # longest tail a stream holds back (emails and spaced numbers are far shorter)
CONTEXT_CHARS = 100  # released text kept as the next scan's left context: covers the scanner's 80-character look-back
EVENT = ("response_pii", "redact")
FAILED = ("response_pii", "error")
UNAVAILABLE = "The safety check of the model's reply could not run, so the reply was withheld."

_NUMBER_CHARS = frozenset("0123456789+()-./")
_ASCII_ALNUM = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")
_IBAN_START = re.compile(r"[A-Za-z]{2}[0-9]{2}[A-Za-z0-9]*")
_IBAN_GROUP = re.compile(r"[A-Za-z0-9]{4}")
# Every pattern entity holds one of these (the scanner's own triggers look for them: digits for numbers, dates
# and IDs, `@` for an email, `.` or `:` for a URL or an IP address, `:` `-` `.` for a MAC address): text without
# any cannot hold one, and is released unscanned. Names (`ner_model`) can be anywhere: always scanned.
_PATTERN_CHAR = re.compile(r"[\d@.:\-]")
_SHORT_WORD = re.compile(r"[A-Za-z0-9]{1,4}")  # a last token that may grow into an IBAN group
_BLANK = " \t"


def held_from(text: str) -> int:
    """Where the tail of `text` that could still become part of an entity starts (len(text): none)."""
    floor = max(0, len(text) - HOLD_CHARS)
    start = len(text)
    while start > floor and not text[start - 1].isspace():
        start -= 1
    last = text[start:]
    letters = False  # a group with letters lies to the right: only an IBAN can span it
    if last:
        number = _number_in(last)
        if number is None:
            if not _SHORT_WORD.fullmatch(last):
                return start
            letters = True
        elif number > 0:
            return start  # a number starts in it
    held = at = start
    while at > floor:
        end = at
        while end > floor and text[end - 1] in _BLANK:
            end -= 1
        if end == at:
            break  # a line break ends a run
        begin = end
        while begin > floor and not text[begin - 1].isspace():
            begin -= 1
        if begin == end or (begin == floor and floor > 0):
            break  # a line break, or a token the hold window cuts
        token = text[begin:end]
        number = _number_in(token)
        if number is not None:
            if not letters:
                held = begin
            if number > 0:
                break
        elif _IBAN_START.fullmatch(token, _trailing(token, _ASCII_ALNUM)):
            return begin
        elif _IBAN_GROUP.fullmatch(token):
            letters = True
        else:
            break
        at = begin
    return held


def _trailing(token: str, chars: frozenset[str]) -> int:
    """Where the run of `chars` that ends `token` starts."""
    at = len(token)
    while at > 0 and token[at - 1] in chars:
        at -= 1
    return at


def _number_in(token: str) -> int | None:
    """Where the group of a number that ends `token` starts: 0 for the whole token, later after a quote,
    colon… (`"phone":"+1`); None when the token does not end in one (or the digits are glued to a word)."""
    at = _trailing(token, _NUMBER_CHARS)
    if at == len(token) or at > 0 and (token[at - 1].isalnum() or token[at - 1] == "_"):
        return None
    return at


def redacted(text: str, findings: Sequence[Finding], json_text: bool = False) -> str:
    return spliced(text, _spans(findings), json_text)


def _spans(findings: Sequence[Finding]) -> list[tuple[int, int, str]]:
    return [(f.start, f.end, f"<{f.entity}>") for f in findings]


class ReplyRedactor:
    """Built once per policy load; thread-safe (the scanner is, and per-reply state lives elsewhere)."""

    def __init__(self, scanner: PiiScanner, timeout_s: float, fail_closed: bool) -> None:
        self._scanner = scanner
        self.prefilter = None if set(scanner.entities) & set(NER_ENTITIES) else _PATTERN_CHAR
        self._timeout_s = timeout_s
        self._fail_closed = fail_closed

    def findings(self, text: str, exchange: Exchange, in_stream: bool = False) -> tuple[Finding, ...]:
        try:
            return self._scanner.analyze(text, perf_counter() + self._timeout_s)
        except Exception:  # noqa: BLE001 - a detector failing must not take the gateway down
            exchange.safety_events += (FAILED,)
            if not self._fail_closed:
                return ()
            if in_stream:  # headers are gone: the relay tells the client in-band, as for an upstream failure
                raise UpstreamError("safety", 503, UNAVAILABLE, code="safety_unavailable") from None
            raise GatewayError(503, UNAVAILABLE, code="safety_unavailable") from None

    def redact_json(self, body: bytes, exchange: Exchange) -> bytes:
        """A whole reply with PII in every choice's text and tool-call arguments redacted."""
        try:
            payload = orjson.loads(body)
        except orjson.JSONDecodeError:
            return body
        choices = payload.get("choices") if isinstance(payload, dict) else None
        if not isinstance(choices, list):
            return body
        found = False
        for holder, name in _text_fields(choices):
            text = holder[name]
            findings = self.findings(text, exchange) if text else ()
            if findings:
                holder[name] = redacted(text, findings, json_text=is_json_text(name))
                found = True
        if not found:
            return body
        exchange.safety_events += (EVENT,)
        return orjson.dumps(payload)

    def redact_stream(self, events: AsyncIterator[bytes], exchange: Exchange) -> AsyncIterator[bytes]:
        return rewrite_stream(events, _StreamRedactor(self, exchange))


def _text_fields(choices: list[Any]) -> list[tuple[dict[str, Any], str]]:
    """(holder, key) of every string the model wrote: message content, tool-call arguments, completion text."""
    fields: list[tuple[dict[str, Any], str]] = []
    for choice in choices:
        if not isinstance(choice, dict):
            continue
        if isinstance(choice.get("text"), str):
            fields.append((choice, "text"))
        message = choice.get("message")
        if not isinstance(message, dict):
            continue
        if isinstance(message.get("content"), str):
            fields.append((message, "content"))
        calls = message.get("tool_calls")
        for call in calls if isinstance(calls, list) else ():
            function = call.get("function") if isinstance(call, dict) else None
            if isinstance(function, dict) and isinstance(function.get("arguments"), str):
                fields.append((function, "arguments"))
    return fields


class _StreamRedactor:
    """One stream's state: the text released last per field, the left context of its next scan."""

    __slots__ = ("_redactor", "_exchange", "_context", "_found")

    def __init__(self, redactor: ReplyRedactor, exchange: Exchange) -> None:
        self._redactor = redactor
        self._exchange = exchange
        self._context: dict[Key, str] = {}
        self._found = False

    def split(self, key: Key, text: str, final: bool) -> tuple[str, str]:
        cut = len(text) if final else held_from(text)
        if cut == 0:
            return "", text  # all of it may still be part of an entity: nothing to scan yet
        context = self._context.pop(key, "")
        whole = context + text
        base = len(context)
        forced = not final and len(text) - cut >= HOLD_CHARS
        end = base + cut
        out, position, hit = [], base, False
        prefilter = self._redactor.prefilter
        scan = prefilter is None or prefilter.search(text) is not None
        spans = _spans(self._redactor.findings(whole, self._exchange, in_stream=True)) if scan else []
        if spans and is_json_text(key[0]):
            spans = outside_escapes(whole, spans)
        for start, stop, replacement in spans:
            if stop <= base:
                continue  # in text released before
            if start >= end:
                break
            if stop > end:  # it reaches into the held tail
                if not forced:
                    end = max(start, base)  # held until it is whole
                    break
                end = stop  # too long to hold: released whole, redacted
            out.append(whole[position : max(start, base)])  # (a value begun before: its rest)
            out.append(replacement)
            position, hit = stop, True
        out.append(whole[position:end])
        if hit and not self._found:
            self._found = True
            self._exchange.safety_events += (EVENT,)
        if not final:
            self._context[key] = whole[max(0, end - CONTEXT_CHARS) : end]
        return "".join(out), whole[end:]
