"""The test infrastructure, tested: the official SDKs against the fake upstreams, faults, and the private Redis.

If these fail, every gateway test built on them is suspect, so they check the fakes speak each API exactly as the
real SDKs expect and that each fault really happens.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import socket
import time
from typing import Any

import anthropic
import httpx
import openai
import pytest
from fakes import (
    ANTHROPIC_TEST_KEY,
    AnthropicUpstream,
    OpenAIUpstream,
    async_wait_until,
    choice_text,
    count_words,
    embedding_vector,
    wait_until,
)
from fakes.keys import make_key
from fakes.network import free_port
from fakes.redis_server import PrivateRedis

TOOLS = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object", "properties": {}}}}]


def openai_client(upstream: OpenAIUpstream, **options: Any) -> openai.OpenAI:
    settings: dict[str, Any] = {"api_key": "sk-test", "max_retries": 0, "timeout": 10, **options}
    return openai.OpenAI(base_url=upstream.base_url, **settings)


def anthropic_client(upstream: AnthropicUpstream, api_key: str = ANTHROPIC_TEST_KEY) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=upstream.base_url, api_key=api_key, max_retries=0, timeout=10)


def user(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


# ----- OpenAI fake ---------------------------------------------------------------------------------------------------


def test_openai_chat_reply_names_upstream_model_and_prompt(openai_upstream: OpenAIUpstream) -> None:
    messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello there"}]
    reply = openai_client(openai_upstream).chat.completions.create(model="m1", messages=messages)  # type: ignore[arg-type]

    assert reply.choices[0].message.content == "openai-fake:m1:hello there"
    assert reply.choices[0].finish_reason == "stop"
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens) == (4, 2)  # type: ignore[union-attr]
    recorded = openai_upstream.last_request
    assert (recorded.method, recorded.path) == ("POST", "/v1/chat/completions")
    assert recorded.header("Authorization") == "Bearer sk-test"
    assert recorded.body["messages"] == messages
    assert json.loads(recorded.raw) == recorded.body


def test_openai_chat_stream_sends_pieces_then_usage_then_done(openai_upstream: OpenAIUpstream) -> None:
    client = openai_client(openai_upstream)
    chunks = list(
        client.chat.completions.create(
            model="m1", messages=user("stream me please"), stream=True, stream_options={"include_usage": True}
        )
    )

    expected = "openai-fake:m1:stream me please"
    assert chunks[0].choices[0].delta.role == "assistant"
    pieces = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert "".join(pieces) == expected and len(pieces) >= 3
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == count_words(expected)
    assert openai_upstream.last_request.raw.count(b"data: [DONE]") == 0  # the request, not the reply
    without_usage = list(client.chat.completions.create(model="m1", messages=user("x"), stream=True))
    assert all(c.choices and c.usage is None for c in without_usage)


def test_openai_n_choices_and_tool_calls(openai_upstream: OpenAIUpstream) -> None:
    client = openai_client(openai_upstream)
    several = client.chat.completions.create(model="m", messages=user("hi"), n=3)
    assert [c.message.content for c in several.choices] == [choice_text("openai-fake:m:hi", i) for i in range(3)]

    called = client.chat.completions.create(model="m", messages=user("please call a tool"), tools=TOOLS)  # type: ignore[arg-type]
    call = called.choices[0].message.tool_calls[0]  # type: ignore[index]
    assert called.choices[0].finish_reason == "tool_calls"
    assert call.function.name == "lookup"  # type: ignore[union-attr]
    assert json.loads(call.function.arguments) == {"upstream": "openai-fake", "text": "please call a tool"}  # type: ignore[union-attr]

    streamed = client.chat.completions.create(model="m", messages=user("call a tool"), tools=TOOLS, stream=True)  # type: ignore[arg-type]
    arguments = "".join(
        tc.function.arguments or ""
        for chunk in streamed
        for tc in (chunk.choices[0].delta.tool_calls or [])
        if tc.function is not None
    )
    assert json.loads(arguments) == {"upstream": "openai-fake", "text": "call a tool"}


def test_openai_legacy_completions_json_and_stream(openai_upstream: OpenAIUpstream) -> None:
    client = openai_client(openai_upstream)
    reply = client.completions.create(model="m", prompt="once upon")
    assert reply.object == "text_completion" and reply.choices[0].text == "openai-fake:m:once upon"
    streamed = list(
        client.completions.create(model="m", prompt="once upon", stream=True, stream_options={"include_usage": True})
    )
    assert "".join(c.choices[0].text for c in streamed if c.choices) == "openai-fake:m:once upon"
    assert streamed[-1].usage is not None and streamed[-1].usage.prompt_tokens == 2


def test_openai_embeddings_are_deterministic_in_both_encodings(openai_upstream: OpenAIUpstream) -> None:
    client = openai_client(openai_upstream)
    by_default = client.embeddings.create(model="emb", input="hello world")  # the SDK asks for base64
    as_floats = client.embeddings.create(model="emb", input=["hello world", "other"], encoding_format="float")

    assert openai_upstream.requests[0].body["encoding_format"] == "base64"
    assert list(by_default.data[0].embedding) == embedding_vector("openai-fake", "emb", "hello world")
    assert [d.embedding for d in as_floats.data] == [
        embedding_vector("openai-fake", "emb", t) for t in ("hello world", "other")
    ]
    assert as_floats.usage.prompt_tokens == 3
    assert len(client.embeddings.create(model="emb", input="x", dimensions=40).data[0].embedding) == 40


def test_openai_models_and_required_key(make_openai_upstream: Any) -> None:
    upstream = make_openai_upstream("guarded", api_key="right", models=["a", "b"])
    assert [m.id for m in openai.OpenAI(base_url=upstream.base_url, api_key="right").models.list()] == ["a", "b"]
    with pytest.raises(openai.AuthenticationError):
        openai_client(upstream).models.list()


# ----- faults --------------------------------------------------------------------------------------------------------


def test_status_fault_is_an_openai_error_for_the_next_n_requests_only(openai_upstream: OpenAIUpstream) -> None:
    client = openai_client(openai_upstream)
    openai_upstream.set_fault("status", status=429, headers={"Retry-After": "7"}, times=1)
    with pytest.raises(openai.RateLimitError) as limited:
        client.chat.completions.create(model="m", messages=user("hi"))
    assert limited.value.response.headers["retry-after"] == "7"
    assert limited.value.code == "rate_limit_exceeded" and limited.value.type == "rate_limit_error"
    assert (
        client.chat.completions.create(model="m", messages=user("hi")).choices[0].message.content == "openai-fake:m:hi"
    )


def test_faults_can_target_one_path_and_reject_typos(openai_upstream: OpenAIUpstream) -> None:
    client = openai_client(openai_upstream)
    openai_upstream.set_fault("status", status=503, path="/v1/embeddings")
    assert client.chat.completions.create(model="m", messages=user("hi")).choices
    with pytest.raises(openai.InternalServerError):
        client.embeddings.create(model="e", input="x")
    with pytest.raises(ValueError):
        openai_upstream.set_fault("explode")
    with pytest.raises(TypeError):
        openai_upstream.set_fault("delay", second=1)


def test_reset_and_bad_json_faults(openai_upstream: OpenAIUpstream) -> None:
    client = openai_client(openai_upstream)
    openai_upstream.set_fault("reset", times=1)
    with pytest.raises(openai.APIConnectionError):
        client.chat.completions.create(model="m", messages=user("hi"))
    openai_upstream.set_fault("bad_json", times=1)
    with pytest.raises(json.JSONDecodeError):
        client.chat.completions.create(model="m", messages=user("hi"))
    assert len(openai_upstream.requests) == 2 and openai_upstream.fault is None


def test_stream_reset_drops_the_connection_after_k_events(openai_upstream: OpenAIUpstream) -> None:
    openai_upstream.set_fault("stream_reset", after_chunks=3)
    received = []
    with pytest.raises(openai.APIConnectionError):
        for chunk in openai_client(openai_upstream).chat.completions.create(
            model="m", messages=user("a b c d"), stream=True
        ):
            received.append(chunk)
    assert len(received) == 3
    assert openai_upstream.cancelled_streams == 0  # the upstream's own doing, not the client's


def test_stream_truncated_ends_cleanly_after_k_events_without_done(openai_upstream: OpenAIUpstream) -> None:
    openai_upstream.set_fault("stream_truncated", after_chunks=3)
    body = {"model": "m", "messages": user("a b c d"), "stream": True}
    response = httpx.post(openai_upstream.base_url + "/chat/completions", json=body)
    events = [line for line in response.text.splitlines() if line.startswith("data: ")]
    assert response.status_code == 200 and len(events) == 3
    assert "[DONE]" not in response.text


def test_stream_stall_goes_silent_after_k_events_then_sends_the_rest(openai_upstream: OpenAIUpstream) -> None:
    openai_upstream.set_fault("stream_stall", after_chunks=2, seconds=0.4)
    body = {"model": "m", "messages": user("a b c d"), "stream": True}
    arrived: list[float] = []
    started = time.monotonic()
    with httpx.stream("POST", openai_upstream.base_url + "/chat/completions", json=body, timeout=10) as response:
        for line in response.iter_lines():
            if line.startswith("data: "):
                arrived.append(time.monotonic() - started)
    assert len(arrived) >= 4
    gaps = [later - earlier for earlier, later in zip(arrived, arrived[1:])]
    assert gaps[1] >= 0.4, f"silent after the second event: {gaps}"
    assert max(gaps[:1] + gaps[2:]) < 0.4, f"and only there: {gaps}"


def test_delay_fault_answers_late(openai_upstream: OpenAIUpstream) -> None:
    openai_upstream.set_fault("delay", seconds=0.3)
    started = time.monotonic()
    openai_client(openai_upstream).chat.completions.create(model="m", messages=user("hi"))
    assert time.monotonic() - started >= 0.3


def test_client_timeout_on_a_hang_cancels_the_upstream_handler(openai_upstream: OpenAIUpstream) -> None:
    openai_upstream.set_fault("hang")
    with pytest.raises(openai.APITimeoutError):
        openai_client(openai_upstream, timeout=0.3).chat.completions.create(model="m", messages=user("hi"))
    wait_until(lambda: openai_upstream.in_flight == 0 and openai_upstream.cancelled_requests == 1)
    assert openai_upstream.cancelled_streams == 0


def test_stop_releases_a_hung_request_promptly() -> None:
    upstream = OpenAIUpstream("hangs").start()
    upstream.set_fault("hang")
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pending = pool.submit(
            openai_client(upstream, timeout=30).chat.completions.create, model="m", messages=user("hi")
        )
        wait_until(lambda: upstream.in_flight == 1)
        started = time.monotonic()
        upstream.stop()
        assert time.monotonic() - started < 5
        with pytest.raises(openai.APIConnectionError):
            pending.result(timeout=10)


def test_client_closing_a_slow_stream_is_counted_as_cancelled(openai_upstream: OpenAIUpstream) -> None:
    openai_upstream.set_fault("slow_stream", chunk_delay=0.2)
    stream = openai_client(openai_upstream).chat.completions.create(
        model="m", messages=user("a b c d e f"), stream=True
    )
    next(iter(stream))
    assert openai_upstream.in_flight == 1
    stream.close()
    wait_until(lambda: openai_upstream.cancelled_streams == 1 and openai_upstream.in_flight == 0)
    assert openai_upstream.cancelled_requests == 1


async def test_async_client_disconnect_and_connection_count(openai_upstream: OpenAIUpstream) -> None:
    openai_upstream.chunk_delay = 0.1
    client = openai.AsyncOpenAI(base_url=openai_upstream.base_url, api_key="k", max_retries=0, timeout=10)
    stream = await client.chat.completions.create(model="m", messages=user("a b c d e f"), stream=True)  # type: ignore[arg-type]
    async for _ in stream:
        break
    assert openai_upstream.open_connections == 1
    await stream.close()
    await client.close()
    await async_wait_until(lambda: openai_upstream.cancelled_streams == 1 and openai_upstream.open_connections == 0)


# ----- Anthropic fake ------------------------------------------------------------------------------------------------


def test_anthropic_message_reply_and_usage(anthropic_upstream: AnthropicUpstream) -> None:
    message = anthropic_client(anthropic_upstream).messages.create(
        model="claude-x",
        max_tokens=100,
        system="be brief",
        messages=user("hello there"),  # type: ignore[arg-type]
    )
    assert message.content[0].type == "text" and message.content[0].text == "anthropic-fake:claude-x:hello there"
    assert message.stop_reason == "end_turn"
    assert (message.usage.input_tokens, message.usage.output_tokens) == (4, 2)
    recorded = anthropic_upstream.last_request
    assert recorded.header("authorization") == f"Bearer {ANTHROPIC_TEST_KEY}" and recorded.header("anthropic-version")


def test_anthropic_stream_text_with_the_sdk_helper(anthropic_upstream: AnthropicUpstream) -> None:
    client = anthropic_client(anthropic_upstream)
    with client.messages.stream(model="claude-x", max_tokens=100, messages=user("stream me")) as stream:  # type: ignore[arg-type]
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "anthropic-fake:claude-x:stream me"
    assert final.stop_reason == "end_turn" and final.usage.output_tokens == count_words(text)


def test_anthropic_stream_event_sequence_on_the_wire(anthropic_upstream: AnthropicUpstream) -> None:
    body = {"model": "c", "max_tokens": 10, "stream": True, "messages": user("one two three")}
    headers = {"x-api-key": ANTHROPIC_TEST_KEY, "anthropic-version": "2023-06-01"}
    raw = httpx.post(f"{anthropic_upstream.base_url}/v1/messages", json=body, headers=headers).text
    events = [block.split("\n") for block in raw.strip().split("\n\n")]
    names = [lines[0].removeprefix("event: ") for lines in events]
    assert all(
        json.loads(lines[1].removeprefix("data: "))["type"] == name for name, lines in zip(names, events, strict=True)
    )
    deltas = names.count("content_block_delta")
    expected = ["message_start", "content_block_start", "ping"] + ["content_block_delta"] * deltas
    assert deltas >= 3 and names == expected + ["content_block_stop", "message_delta", "message_stop"]


def test_anthropic_tool_use_json_and_stream(anthropic_upstream: AnthropicUpstream) -> None:
    client = anthropic_client(anthropic_upstream)
    tools = [{"name": "lookup", "description": "d", "input_schema": {"type": "object", "properties": {}}}]
    message = client.messages.create(model="c", max_tokens=50, messages=user("call a tool now"), tools=tools)  # type: ignore[arg-type]
    block = message.content[0]
    assert message.stop_reason == "tool_use" and block.type == "tool_use" and block.name == "lookup"
    assert block.input == {"upstream": "anthropic-fake", "text": "call a tool now"}
    with client.messages.stream(model="c", max_tokens=50, messages=user("call a tool"), tools=tools) as stream:  # type: ignore[arg-type]
        streamed = stream.get_final_message()
    assert streamed.content[0].input == {"upstream": "anthropic-fake", "text": "call a tool"}  # type: ignore[union-attr]


def test_anthropic_auth_and_error_shapes(anthropic_upstream: AnthropicUpstream) -> None:
    with pytest.raises(anthropic.AuthenticationError) as refused:
        anthropic_client(anthropic_upstream, api_key="wrong").messages.create(
            model="c", max_tokens=5, messages=user("hi")
        )  # type: ignore[arg-type]
    assert refused.value.body == {
        "type": "error",
        "error": {"type": "authentication_error", "message": "invalid x-api-key"},
    }
    no_version = httpx.post(
        f"{anthropic_upstream.base_url}/v1/messages",
        json={"model": "c", "max_tokens": 5, "messages": user("hi")},
        headers={"x-api-key": ANTHROPIC_TEST_KEY},
    )
    assert no_version.status_code == 400 and no_version.json()["error"]["type"] == "invalid_request_error"
    anthropic_upstream.set_fault("status", status=529, times=1)
    with pytest.raises(anthropic.OverloadedError) as overloaded:
        anthropic_client(anthropic_upstream).messages.create(model="c", max_tokens=5, messages=user("hi"))  # type: ignore[arg-type]
    assert overloaded.value.body["error"]["type"] == "overloaded_error"  # type: ignore[index]


# ----- Redis and helpers ---------------------------------------------------------------------------------------------


def test_private_redis_survives_stop_and_start(redis_server: PrivateRedis, redis_url: str) -> None:
    assert redis_server.port != 6379 and redis_url == f"redis://127.0.0.1:{redis_server.port}/0"
    client = redis_server.client()
    client.set("before", "restart")
    redis_server.stop()
    assert not redis_server.ping()
    redis_server.start()
    assert redis_server.ping() and client.get("before") is None  # no persistence: a restart is a fresh Redis
    client.close()


def test_make_key_and_free_port() -> None:
    plaintext, hashed = make_key("acme")
    assert plaintext.startswith("sk-acme-") and hashed == "sha256:" + hashlib.sha256(plaintext.encode()).hexdigest()
    assert make_key("acme")[0] != plaintext
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", free_port()))


def test_upstream_can_go_down_and_come_back_on_the_same_port() -> None:
    with OpenAIUpstream("flaky") as upstream:
        client = openai_client(upstream)
        port = upstream.port
        upstream.stop()
        with pytest.raises(openai.APIConnectionError):
            client.models.list()
        upstream.start()
        assert upstream.port == port and [m.id for m in client.models.list()] == ["upstream-model"]
