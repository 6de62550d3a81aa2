"""Pseudonymize's restore: JSON bodies, and SSE streams cut at every possible position without buffering."""

from __future__ import annotations

import orjson
import pytest

from gateway.safety.restore import Restorer

VALUES = {"<EMAIL_ADDRESS_1>": "ann@example.org", "<PHONE_NUMBER_1>": "+1 415-555-0132", "<PHONE_NUMBER_12>": "020 7946 0958"}
REPLY = "Mail <EMAIL_ADDRESS_1>, call <PHONE_NUMBER_1> or <PHONE_NUMBER_12>; keep <b>bold</b> and <EMAIL_ADDRESS_9>."
RESTORED = "Mail ann@example.org, call +1 415-555-0132 or 020 7946 0958; keep <b>bold</b> and <EMAIL_ADDRESS_9>."


def chat_event(content: str | None, finish: str | None = None, index: int = 0) -> bytes:
    delta = {} if content is None else {"content": content}
    payload = {"id": "c1", "object": "chat.completion.chunk", "model": "m", "choices": [{"index": index, "delta": delta, "finish_reason": finish}]}
    return b"data: " + orjson.dumps(payload) + b"\n\n"


def completion_event(text: str, finish: str | None = None) -> bytes:
    payload = {"id": "c1", "object": "text_completion", "choices": [{"index": 0, "text": text, "finish_reason": finish}]}
    return b"data: " + orjson.dumps(payload) + b"\n\n"


async def relay(restorer: Restorer, chunks: list[bytes]) -> list[bytes]:
    async def upstream():
        for chunk in chunks:
            yield chunk

    return [out async for out in restorer.restore_stream(upstream())]


def contents(outputs: list[bytes], field: str = "content") -> list[str]:
    texts = []
    for output in outputs:
        for event in output.split(b"\n\n"):
            if not event.startswith(b"data: {"):
                continue
            for choice in orjson.loads(event[6:])["choices"]:
                piece = choice["delta"].get(field) if "delta" in choice else choice.get("text")
                texts.append(piece or "")
    return texts


def test_json_bodies_are_restored_raw_and_unicode_escaped():
    restorer = Restorer(VALUES)
    body = orjson.dumps({"choices": [{"message": {"content": REPLY}}]})
    assert orjson.loads(restorer.restore_json(body))["choices"][0]["message"]["content"] == RESTORED
    escaped = body.replace(b"<", b"\\u003c").replace(b">", b"\\u003e")  # how Go servers (Ollama) write them
    assert orjson.loads(restorer.restore_json(escaped))["choices"][0]["message"]["content"] == RESTORED
    quoted = Restorer({"<PERSON_1>": 'O"Brien \\ co'})
    assert orjson.loads(quoted.restore_json(b'{"c": "hi <PERSON_1>"}')) == {"c": 'hi O"Brien \\ co'}


@pytest.mark.parametrize("cut", range(1, len(REPLY)))
async def test_a_stream_cut_anywhere_restores_exactly_and_holds_back_only_a_partial_placeholder(cut):
    restorer = Restorer(VALUES)
    chunks = [chat_event(""), chat_event(REPLY[:cut]), chat_event(REPLY[cut:]), chat_event(None, "stop"), b"data: [DONE]\n\n"]
    outputs = await relay(restorer, chunks)
    assert "".join(contents(outputs)) == RESTORED
    first_text = "".join(contents(outputs[:2]))
    held = REPLY[:cut][len(REPLY[:cut].rstrip("<ABCDEFGHIJKLMNOPQRSTUVWXYZ_0123456789")) :]
    # What was held back is at most the trailing partial placeholder, and only if it is a prefix of one.
    assert restorer.restore_text(REPLY[:cut]).startswith(first_text)
    if first_text != restorer.restore_text(REPLY[:cut]):
        assert any(name.startswith(held[held.rfind("<") :]) for name in VALUES)
    assert outputs[-1].endswith(b"data: [DONE]\n\n")


@pytest.mark.parametrize("size", [1, 2, 3, 5, 7])
async def test_tiny_deltas_tool_arguments_and_completions_are_restored(size):
    restorer = Restorer(VALUES)
    pieces = [REPLY[i : i + size] for i in range(0, len(REPLY), size)]
    outputs = await relay(restorer, [chat_event(p) for p in pieces] + [chat_event(None, "stop")])
    assert "".join(contents(outputs)) == RESTORED

    arguments = orjson.dumps({"to": "<EMAIL_ADDRESS_1>"}).decode()
    calls = [
        b"data: " + orjson.dumps({"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": arguments[i : i + size]}}]}}]}) + b"\n\n"
        for i in range(0, len(arguments), size)
    ]
    outputs = await relay(restorer, calls + [chat_event(None, "tool_calls")])
    sent = "".join(
        call["function"]["arguments"]
        for output in outputs for event in output.split(b"\n\n") if event.startswith(b"data: {")
        for choice in orjson.loads(event[6:])["choices"] for call in choice["delta"].get("tool_calls", [])
    )
    assert orjson.loads(sent) == {"to": "ann@example.org"}

    outputs = await relay(restorer, [completion_event(p) for p in pieces] + [completion_event("", "stop")])
    assert "".join(contents(outputs)) == RESTORED


async def test_choices_are_kept_apart_and_a_stream_ending_early_still_flushes():
    restorer = Restorer(VALUES)
    chunks = [chat_event("a <EMAIL_", index=0), chat_event("b <PHONE_NU", index=1), chat_event("ADDRESS_1>", index=0), chat_event("MBER_1>", index=1)]
    outputs = await relay(restorer, chunks)
    by_choice: dict[int, str] = {0: "", 1: ""}
    for output in outputs:
        for event in output.split(b"\n\n"):
            if event.startswith(b"data: {"):
                for choice in orjson.loads(event[6:])["choices"]:
                    by_choice[choice["index"]] += choice["delta"].get("content") or ""
    assert by_choice == {0: "a ann@example.org", 1: "b +1 415-555-0132"}

    outputs = await relay(restorer, [chat_event("cut off at <EMAIL_ADD")])  # no finish, no [DONE]
    assert "".join(contents(outputs)) == "cut off at <EMAIL_ADD"


async def test_events_without_placeholders_pass_byte_for_byte():
    restorer = Restorer(VALUES)
    chunks = [chat_event("plain text, <b>markup</b> and a < sign"), b": keep-alive\n\n", b'data: {"choices": [], "usage": {"prompt_tokens": 3}}\n\n']
    assert b"".join(await relay(restorer, chunks)) == b"".join(chunks)
