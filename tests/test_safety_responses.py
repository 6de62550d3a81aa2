"""PII in the model's output (`safety.pii.responses: redact`): the streaming redactor on its own, then through a
real gateway whose upstream answers with scripted text, whole or cut into the pieces a test chooses."""

from __future__ import annotations

import asyncio
import random
import threading
from collections.abc import AsyncIterator

import openai
import orjson
import pytest
from aiohttp import web

from adapters.base import Endpoint, UpstreamError
from fakes import FakeUpstream, wait_until
from fakes.keys import make_key
from fakes.metrics import scrape
from fakes.wire import json_response, sse_event
from gateway.errors import GatewayError
from gateway.exchange import Exchange
from gateway.safety.pii import PiiScanner
from gateway.safety.responses import HOLD_CHARS, ReplyRedactor, _StreamRedactor, held_from, redacted
from policies.loader import load_policies

KEY, KEY_HASH = make_key("acme")
ENTITIES = ["EMAIL_ADDRESS", "PHONE_NUMBER", "CREDIT_CARD", "IBAN_CODE", "IP_ADDRESS", "US_SSN"]

EMAIL = "dana.whitfield@northwind-corp.com"
PHONE = "+1 415-555-0132"
CARD = "4539 1488 0343 6467"
IBAN = "DE89 3704 0044 0532 0130 00"
IBAN_LETTERS = "GB82 WEST 1234 5698 7654 32"
SSN = "536-22-8471"
IP = "172.16.254.7"
VALUES = {EMAIL: "<EMAIL_ADDRESS>", PHONE: "<PHONE_NUMBER>", CARD: "<CREDIT_CARD>"}
TEXTS = [
    f"Reach me at {EMAIL} or {PHONE}. Card {CARD}, IBAN {IBAN}, server {IP}.",
    f"Sure! The customer's email is {EMAIL}\nand the phone: {PHONE}; card number {CARD} and SSN {SSN}, thanks",
    f"{CARD} {PHONE} {EMAIL}",
    f"call 4155550132 now, or wire to {IBAN_LETTERS} or ring 020 7946 0958 (office) ok",
    "No personal data here: version 1.2.3, 42 items, order 12345 shipped on 2024-05-01.",
    f"Your address <EMAIL_ADDRESS_1> is on file; a new one is {EMAIL}.",
    orjson.dumps({"email": EMAIL, "phone": PHONE, "card": CARD, "iban": IBAN}).decode(),  # tool-call arguments
]


# ----- the redactor on its own ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def scanner() -> PiiScanner:
    return PiiScanner(ENTITIES, 0.4)


def exchange() -> Exchange:
    return Exchange(Endpoint.CHAT, b"test")


def streamed(redactor: ReplyRedactor, pieces: list[str], ex: Exchange | None = None) -> list[str]:
    """What a client receives for one choice's content sent in `pieces`, through the real SSE walker."""
    async def run() -> list[str]:
        out = []
        async for chunk in redactor.redact_stream(_events(pieces), ex or exchange()):
            for event in chunk.split(b"\n\n"):
                data = event.removeprefix(b"data: ")
                if data and data != b"[DONE]":
                    out.append(orjson.loads(data)["choices"][0]["delta"].get("content") or "")
        return out

    return asyncio.run(run())


async def _events(pieces: list[str], fail: bool = False) -> AsyncIterator[bytes]:
    for piece in pieces:
        yield sse_event({"id": "c", "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]})
    if fail:
        raise UpstreamError("protocol", 502, "broke off")
    yield sse_event({"id": "c", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    yield sse_event("[DONE]")


def random_pieces(text: str, rng: random.Random) -> list[str]:
    cuts = sorted(rng.sample(range(1, len(text)), rng.randint(1, min(40, len(text) - 1))))
    return [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)])]


def test_a_stream_cut_anywhere_is_redacted_exactly_as_the_whole_text(scanner):
    redactor = ReplyRedactor(scanner, 5.0, fail_closed=True)
    rng = random.Random(20240501)
    for text in TEXTS:
        whole = redacted(text, scanner.analyze(text))
        splits = [random_pieces(text, rng) for _ in range(150)]
        splits.append(list(text))  # one character per event
        splits += [[text[:i], text[i:]] for i in range(1, len(text))]
        for pieces in splits:
            assert "".join(streamed(redactor, pieces)) == whole, pieces
    placeholder = TEXTS[5]
    assert redacted(placeholder, scanner.analyze(placeholder)).startswith("Your address <EMAIL_ADDRESS_1> is"), "never taken for PII"


@pytest.mark.parametrize(
    ("text", "held"),
    [
        ("Hello there, ", ""),  # prose passes whole
        ("Hello the", "the"),  # the last token may go on
        ("call 415 555 ", "415 555 "),  # a number written with spaces may go on
        ("call 415 555-01", "415 555-01"),
        ("card 4539 1488\n0343 ", "0343 "),  # a line break ends the run
        ("I paid 20 for this", "this"),  # a word cannot continue a number
        ('{"phone": "+1 415-', '"+1 415-'),  # a number led by a quote starts there
        ('{"phone":"+1 415-', '{"phone":"+1 415-'),
        ("wire to GB82 WEST 1234 56", "GB82 WEST 1234 56"),  # IBAN groups with letters, back to its start
        ("with 1234 WEST 5678", "5678"),  # letters without an IBAN start: not a number
        ("x" * 300, "x" * HOLD_CHARS),  # never more than HOLD_CHARS
    ],
)
def test_what_a_stream_holds_back(text, held):
    assert text[held_from(text) :] == held


def test_text_without_pii_is_released_at_once_up_to_its_last_word(scanner):
    redactor = ReplyRedactor(scanner, 5.0, fail_closed=True)
    words = "The quarterly report shows revenue grew by twelve percent this year".split(" ")
    pieces = [w + " " for w in words[:-1]] + [words[-1]]
    assert streamed(redactor, pieces) == [*pieces[:-1], "", pieces[-1]], "each piece passes in its own event, unchanged"
    split_words = ["The quar", "terly re", "port"]
    assert streamed(redactor, split_words) == ["The ", "quarterly ", "", "report"], "only the unfinished word waits"


def test_a_stream_that_breaks_off_drops_its_unscanned_tail(scanner):
    redactor = ReplyRedactor(scanner, 5.0, fail_closed=True)

    async def run() -> bytes:
        out = b""
        with pytest.raises(UpstreamError):
            async for chunk in redactor.redact_stream(_events(["Call me on 415 555", "-01"], fail=True), exchange()):
                out += chunk
        return out

    sent = asyncio.run(run())
    assert b"Call me on " in sent and b"415" not in sent


def test_a_failed_scan_withholds_the_reply_or_passes_it_as_configured(scanner):
    body = orjson.dumps({"choices": [{"index": 0, "message": {"role": "assistant", "content": f"mail {EMAIL}"}}]})
    closed, ex = ReplyRedactor(scanner, 1e-9, fail_closed=True), exchange()
    with pytest.raises(GatewayError) as refused:
        closed.redact_json(body, ex)
    assert refused.value.status == 503 and refused.value.code == "safety_unavailable"
    with pytest.raises(UpstreamError) as cut:
        streamed(closed, [f"mail {EMAIL} ", "bye"])
    assert cut.value.status == 503 and cut.value.code == "safety_unavailable"
    opened, ex = ReplyRedactor(scanner, 1e-9, fail_closed=False), exchange()
    assert opened.redact_json(body, ex) == body and ex.safety_events == (("response_pii", "error"),)


@pytest.mark.parametrize(("written", "parsed"), [("off", "off"), ("redact", "redact"), (None, "off")])
def test_the_policy_field_reads_bare_yaml_words_and_defaults_to_off(tmp_path, written, parsed):
    line = f"\n    responses: {written}" if written else ""
    path = tmp_path / "p.yaml"
    path.write_text(f"version: 1\nroutes: [{{name: c, when: {{model: c}}, send: [x]}}]\nsafety:\n  pii:\n    action: redact{line}\n")
    policy = load_policies([path], None, {}).safety
    assert policy is not None and policy.pii is not None and policy.pii.responses == parsed


# ----- through a gateway ----------------------------------------------------------------------------------------


class ScriptedUpstream(FakeUpstream):
    """OpenAI-shaped: answers every chat or completion request with `pieces`, joined in a JSON reply or one SSE
    event each. With `arguments`, a chat reply is a tool call with those arguments (streamed in `pieces`
    instead). With `gate` set, the last piece waits for it; `last_sent` tells when it went out."""

    def __init__(self) -> None:
        super().__init__("scripted")
        self.pieces: list[str] = ["hello"]
        self.tool_call = False
        self.gate: threading.Event | None = None
        self.last_sent = threading.Event()

    @property
    def base_url(self) -> str:
        return f"{self.origin}/v1"

    def routes(self) -> list[web.RouteDef]:
        return [web.post("/v1/chat/completions", self._answer), web.post("/v1/completions", self._answer)]

    def error_response(self, rejection) -> web.Response:
        return json_response({"error": {"message": rejection.message, "type": "invalid_request_error"}}, rejection.status)

    async def _answer(self, request: web.Request) -> web.StreamResponse:
        body = self.json_body(request)
        chat = request.path.endswith("/chat/completions")
        common = {"id": "cmpl-1", "created": 1700000000, "model": "upstream-model"}
        if not body.get("stream"):
            text = "".join(self.pieces)
            if not chat:
                return json_response({**common, "object": "text_completion", "choices": [{"index": 0, "text": text, "finish_reason": "stop"}]})
            message = {"role": "assistant", "content": text}
            if self.tool_call:
                message = {"role": "assistant", "content": None, "tool_calls": [_call(text)]}
            return json_response({**common, "object": "chat.completion", "choices": [{"index": 0, "message": message, "finish_reason": "stop"}]})
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for number, piece in enumerate(self.pieces):
            if number == len(self.pieces) - 1 and self.gate is not None:
                await asyncio.to_thread(self.gate.wait, 10)
                self.last_sent.set()
            if not chat:
                choice = {"index": 0, "text": piece, "finish_reason": None}
            elif self.tool_call:
                choice = {"index": 0, "delta": {"tool_calls": [_call(piece) if number == 0 else {"index": 0, "function": {"arguments": piece}}]}}
            else:
                choice = {"index": 0, "delta": {"content": piece}, "finish_reason": None}
            await response.write(sse_event({**common, "choices": [choice]}))
        last = {"index": 0, "text": "", "finish_reason": "stop"} if not chat else {"index": 0, "delta": {}, "finish_reason": "stop"}
        await response.write(sse_event({**common, "choices": [last]}))
        await response.write(sse_event("[DONE]"))
        await response.write_eof()
        return response


def _call(arguments: str) -> dict:
    return {"index": 0, "id": "call_1", "type": "function", "function": {"name": "lookup", "arguments": arguments}}


@pytest.fixture
def upstream():
    with ScriptedUpstream() as scripted:
        yield scripted


def start(start_gateway, upstream, responses: str = "redact", action: str = "redact"):
    config = {
        "targets": {"scripted": {"adapter": "openai", "base_url": upstream.base_url, "model": "upstream-model"}},
        "tenants": {"acme": {"keys": [KEY_HASH], "models": ["chat"]}},
    }
    safety = {"pii": {"entities": ENTITIES, "action": action, "responses": responses}}
    policy = {"version": 1, "routes": [{"name": "chat", "when": {"model": "chat"}, "send": ["scripted"]}], "safety": safety}
    return start_gateway(config, policies={"p.yaml": policy})


def client(gateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.openai_base_url, api_key=KEY, max_retries=0, timeout=30)


def chat_stream(sdk: openai.OpenAI, prompt: str = "hi") -> list[str]:
    stream = sdk.chat.completions.create(model="chat", messages=[{"role": "user", "content": prompt}], stream=True)
    return [c.choices[0].delta.content or "" for c in stream if c.choices]


def test_json_replies_are_redacted_in_content_tool_arguments_and_completion_text(start_gateway, upstream):
    gateway = start(start_gateway, upstream)
    sdk = client(gateway)
    upstream.pieces = [TEXTS[0]]
    raw = sdk.chat.completions.with_raw_response.create(model="chat", messages=[{"role": "user", "content": "hi"}])
    expected = "Reach me at <EMAIL_ADDRESS> or <PHONE_NUMBER>. Card <CREDIT_CARD>, IBAN <IBAN_CODE>, server <IP_ADDRESS>."
    assert raw.parse().choices[0].message.content == expected
    assert raw.headers["x-switchyard-safety"] == "response_pii;redact"

    upstream.tool_call, upstream.pieces = True, [orjson.dumps({"email": EMAIL, "card": CARD}).decode()]
    call = sdk.chat.completions.create(model="chat", messages=[{"role": "user", "content": "hi"}]).choices[0].message.tool_calls[0]
    assert orjson.loads(call.function.arguments) == {"email": "<EMAIL_ADDRESS>", "card": "<CREDIT_CARD>"}, "still valid JSON"

    upstream.pieces = [f"ssn {SSN}"]
    assert sdk.completions.create(model="chat", prompt="hi").choices[0].text == "ssn <US_SSN>"
    upstream.tool_call, upstream.pieces = False, ["Nothing personal, 42 items."]
    raw = sdk.chat.completions.with_raw_response.create(model="chat", messages=[{"role": "user", "content": "hi"}])
    assert raw.parse().choices[0].message.content == "Nothing personal, 42 items." and "x-switchyard-safety" not in raw.headers
    wait_until(lambda: scrape(gateway).value("switchyard_safety_events_total", kind="response_pii", action="redact") == 3)


@pytest.mark.parametrize("value", list(VALUES))
def test_a_value_split_across_events_at_any_point_never_reaches_the_client(start_gateway, upstream, value):
    gateway = start(start_gateway, upstream)
    sdk = client(gateway)
    before, after = "Sure, the contact is ", ", as requested."
    expected = before + VALUES[value] + after
    for cut in range(1, len(value)):
        for pieces in ([before + value[:cut], value[cut:] + after], [before, value[:cut], value[cut:], after]):
            upstream.pieces = pieces
            received = chat_stream(sdk)
            assert "".join(received) == expected, pieces
            assert not [p for p in received if p and p in value], "no part of the value on its own either"
    upstream.pieces = list(before + value + after)
    assert "".join(chat_stream(sdk)) == expected


def test_prose_streams_through_unchanged_and_undelayed(start_gateway, upstream):
    gateway = start(start_gateway, upstream)
    sdk = client(gateway)
    for pieces, first in ((["Hello there, ", "how are ", "you today?"], "Hello there, how are "),
                          (["My number is 415 555", "-0132. ", "Call me."], "My number is ")):
        upstream.gate, upstream.last_sent = threading.Event(), threading.Event()
        upstream.pieces = pieces
        stream = sdk.chat.completions.create(model="chat", messages=[{"role": "user", "content": "hi"}], stream=True)
        seen, early = "", False
        for chunk in stream:
            seen += (chunk.choices[0].delta.content or "") if chunk.choices else ""
            if seen == first and not upstream.gate.is_set():  # (events that add nothing may follow)
                early = not upstream.last_sent.is_set()
                upstream.gate.set()
        assert early, "released before the upstream sent its last piece"
        assert seen == "".join(pieces).replace("415 555-0132", "<PHONE_NUMBER>")


def test_responses_off_leaves_the_output_untouched(start_gateway, upstream):
    gateway = start(start_gateway, upstream, responses="off")
    sdk = client(gateway)
    upstream.pieces = [TEXTS[0][:30], TEXTS[0][30:]]
    assert sdk.chat.completions.create(model="chat", messages=[{"role": "user", "content": "hi"}]).choices[0].message.content == TEXTS[0]
    assert "".join(chat_stream(sdk)) == TEXTS[0]


def test_pseudonymized_values_come_back_and_new_ones_are_redacted(start_gateway, upstream):
    gateway = start(start_gateway, upstream, action="pseudonymize")
    sdk = client(gateway)
    mine = "ana.ortiz@example.org"
    reply = f"I updated <EMAIL_ADDRESS_1>; the old one was {EMAIL}, phone {PHONE}."
    expected = f"I updated {mine}; the old one was <EMAIL_ADDRESS>, phone <PHONE_NUMBER>."
    upstream.pieces = [reply]
    prompt = f"Change my email to {mine}"
    assert sdk.chat.completions.create(model="chat", messages=[{"role": "user", "content": prompt}]).choices[0].message.content == expected
    assert upstream.last_request.body["messages"][0]["content"] == "Change my email to <EMAIL_ADDRESS_1>"
    for size in (1, 3, 7):
        upstream.pieces = [reply[i : i + size] for i in range(0, len(reply), size)]
        assert "".join(chat_stream(sdk, prompt)) == expected


def test_legacy_completion_and_tool_call_streams_are_redacted(start_gateway, upstream):
    gateway = start(start_gateway, upstream)
    sdk = client(gateway)
    text = f"card {CARD} and mail {EMAIL} done"
    upstream.pieces = [text[i : i + 4] for i in range(0, len(text), 4)]
    completion = sdk.completions.create(model="chat", prompt="hi", stream=True)
    assert "".join(c.choices[0].text for c in completion if c.choices) == "card <CREDIT_CARD> and mail <EMAIL_ADDRESS> done"

    arguments = orjson.dumps({"email": EMAIL, "phone": PHONE}).decode()
    upstream.tool_call, upstream.pieces = True, [arguments[i : i + 5] for i in range(0, len(arguments), 5)]
    stream = sdk.chat.completions.create(model="chat", messages=[{"role": "user", "content": "hi"}], stream=True)
    parts = [c.choices[0].delta.tool_calls[0].function.arguments or "" for c in stream if c.choices and c.choices[0].delta.tool_calls]
    assert orjson.loads("".join(parts)) == {"email": "<EMAIL_ADDRESS>", "phone": "<PHONE_NUMBER>"}
    # Once per stream that had something redacted, counted when the stream ends.
    wait_until(lambda: scrape(gateway).value("switchyard_safety_events_total", kind="response_pii", action="redact") == 2)


def test_redacted_tool_arguments_in_replies_stay_valid_json(scanner):
    # In a reply, too, a value right after a JSON escape (`\njane@…`) must not leave a lone backslash behind:
    # whole, and streamed in pieces cut anywhere.
    redactor = ReplyRedactor(scanner, 5.0, fail_closed=True)
    arguments = orjson.dumps({"note": f"call back\n{EMAIL}", "tab": f"\t{EMAIL}", "quoted": f'"{EMAIL}"'}).decode()
    reply = {"choices": [{"index": 0, "message": {"role": "assistant", "tool_calls": [
        {"id": "c", "type": "function", "function": {"name": "send", "arguments": arguments}}]}}]}
    body = orjson.loads(redactor.redact_json(orjson.dumps(reply), exchange()))
    whole = body["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"]
    assert orjson.loads(whole) == {"note": "call back<EMAIL_ADDRESS>", "tab": "<EMAIL_ADDRESS>", "quoted": '"<EMAIL_ADDRESS>"'}
    rng = random.Random(7)
    for pieces in [random_pieces(arguments, rng) for _ in range(100)] + [list(arguments)]:
        stream = _StreamRedactor(redactor, exchange())
        out, held = [], ""
        for index, piece in enumerate(pieces):
            released, held = stream.split(("arguments", 0, 0), held + piece, final=index == len(pieces) - 1)
            out.append(released)
        assert "".join(out) == whole, pieces
