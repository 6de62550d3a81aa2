"""The OpenAI-compatible front door through a real gateway, with the official openai SDK as the client.

Three kinds of target: a local OpenAI-compatible fake (zero translation), the Anthropic-format fake
through litellm (translation both ways), and the built-in echo.
"""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import httpx
import openai
import pytest

from fakes import count_words, reply_text, wait_until
from fakes.keys import make_key
from fakes.metrics import scrape
from fakes.network import free_port

ROOT = Path(__file__).resolve().parent.parent

KEY, KEY_HASH = make_key("acme")
TOOLS = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object", "properties": {}}}}]


def config(openai_upstream, anthropic_upstream=None) -> dict:
    targets = {
        "mock": {"adapter": "openai", "base_url": openai_upstream.base_url, "model": "upstream-model", "api_key": "sk-upstream"},
        "echo": {"adapter": "echo"},
    }
    if anthropic_upstream is not None:
        targets["claude"] = {
            "adapter": "litellm", "model": "anthropic/claude-sonnet-4-5",
            "base_url": anthropic_upstream.base_url, "api_key": "test-anthropic-key",
        }
    models = ["chat", "echo", "embed"] + (["claude"] if anthropic_upstream is not None else [])
    return {"targets": targets, "tenants": {"acme": {"keys": [KEY_HASH], "models": models}}}


POLICY = {
    "version": 1,
    "routes": [
        {"name": "chat", "when": {"model": "chat"}, "send": ["mock"]},
        {"name": "embed", "when": {"model": "embed"}, "send": ["mock"]},
    ],
}


@pytest.fixture
def gateway(openai_upstream, start_gateway):
    return start_gateway(config(openai_upstream), policies={"policy.yaml": POLICY})


@pytest.fixture
def sdk(gateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.openai_base_url, api_key=KEY, max_retries=0, timeout=30)


def test_chat_json_rewrites_only_the_model_and_passes_everything_else_through(sdk, openai_upstream):
    raw = sdk.chat.completions.with_raw_response.create(
        model="chat",
        messages=[{"role": "user", "content": "call a tool please"}],
        tools=TOOLS,
        n=2,
        response_format={"type": "json_object"},
        temperature=0.2,
        extra_body={"vendor_knob": {"nested": [1, 2.5, None]}},
    )
    reply = raw.parse()
    assert len(reply.choices) == 2
    call = reply.choices[0].message.tool_calls[0]
    assert call.function.name == "lookup" and '"upstream": "openai-fake"' in call.function.arguments
    sent = openai_upstream.last_request
    assert sent.body["model"] == "upstream-model"
    assert sent.header("authorization") == "Bearer sk-upstream", "the target's key, never the client's"
    assert KEY not in str(sent.headers)
    for field in ("tools", "n", "response_format", "temperature", "vendor_knob", "messages"):
        assert field in sent.body
    assert sent.body["vendor_knob"] == {"nested": [1, 2.5, None]}
    assert raw.headers["x-switchyard-target"] == "mock" and raw.headers["x-switchyard-route"] == "chat"
    assert raw.headers["x-switchyard-attempts"] == "1"
    assert float(raw.headers["x-switchyard-overhead-ms"]) >= 0 and len(raw.headers["x-request-id"]) >= 16
    assert reply.usage.prompt_tokens == count_words("call a tool please")


def test_stream_with_and_without_include_usage(sdk, openai_upstream):
    chunks = list(sdk.chat.completions.create(
        model="chat", messages=[{"role": "user", "content": "stream this"}], stream=True, stream_options={"include_usage": True}
    ))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == reply_text("openai-fake", "upstream-model", "stream this")
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == count_words(text)
    assert openai_upstream.last_request.body["stream_options"] == {"include_usage": True}

    chunks = list(sdk.chat.completions.create(model="chat", messages=[{"role": "user", "content": "no usage"}], stream=True))
    assert all(c.usage is None for c in chunks), "the usage event the gateway asked for is not forwarded"
    assert all(c.choices for c in chunks)
    assert openai_upstream.last_request.body["stream_options"] == {"include_usage": True}


def test_completions_embeddings_and_models(sdk, openai_upstream):
    completion = sdk.completions.create(model="chat", prompt="say hi")
    assert completion.choices[0].text == reply_text("openai-fake", "upstream-model", "say hi")
    streamed = "".join(c.choices[0].text for c in sdk.completions.create(model="chat", prompt="say hi", stream=True) if c.choices)
    assert streamed == completion.choices[0].text
    embedding = sdk.embeddings.create(model="embed", input=["a b", "c"])
    assert len(embedding.data) == 2 and len(embedding.data[0].embedding) == 8
    assert openai_upstream.last_request.path == "/v1/embeddings"
    ids = sorted(m.id for m in sdk.models.list())
    assert ids == ["chat", "echo", "embed"], "only what the tenant may use and the gateway knows"


async def test_async_client_concurrent_requests_and_streams(gateway):
    client = openai.AsyncOpenAI(base_url=gateway.openai_base_url, api_key=KEY, max_retries=0)

    async def one(i: int) -> str:
        if i % 2:
            stream = await client.chat.completions.create(model="chat", messages=[{"role": "user", "content": f"q{i}"}], stream=True)
            return "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
        reply = await client.chat.completions.create(model="chat", messages=[{"role": "user", "content": f"q{i}"}])
        return reply.choices[0].message.content

    results = await asyncio.gather(*(one(i) for i in range(40)))
    assert results == [reply_text("openai-fake", "upstream-model", f"q{i}") for i in range(40)]
    await client.close()


def test_sdk_error_classes(gateway, sdk, openai_upstream):
    bad = openai.OpenAI(base_url=gateway.openai_base_url, api_key="sk-wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as info:
        bad.chat.completions.create(model="chat", messages=[{"role": "user", "content": "x"}])
    assert info.value.response.json()["error"]["code"] == "invalid_api_key"
    with pytest.raises(openai.BadRequestError) as info:
        sdk.chat.completions.create(model="chat", messages=[])
    assert info.value.response.json()["error"]["param"] == "messages"
    with pytest.raises(openai.PermissionDeniedError) as info:  # outside this tenant's models, known or not
        sdk.chat.completions.create(model="gpt-17", messages=[{"role": "user", "content": "x"}])
    assert info.value.response.json()["error"]["code"] == "model_not_allowed"
    openai_upstream.set_fault("status", status=429, headers={"Retry-After": "3"}, times=1)
    with pytest.raises(openai.RateLimitError) as info:
        sdk.chat.completions.create(model="chat", messages=[{"role": "user", "content": "x"}])
    assert info.value.response.headers["retry-after"] == "3"


def test_client_disconnect_mid_stream_cancels_the_upstream(gateway, openai_upstream):
    openai_upstream.set_fault("slow_stream", chunk_delay=0.3)
    body = {"model": "chat", "stream": True, "messages": [{"role": "user", "content": "a long answer " * 20}]}
    with httpx.Client(timeout=10) as http:
        with http.stream("POST", gateway.openai_base_url + "/chat/completions", json=body, headers={"Authorization": f"Bearer {KEY}"}) as response:
            assert response.status_code == 200
            next(response.iter_raw())  # the first event arrived; now walk away
    wait_until(lambda: openai_upstream.cancelled_streams == 1, timeout=10, message="the upstream stream to be cancelled")
    wait_until(lambda: openai_upstream.in_flight == 0, timeout=10, message="no upstream work left")


def test_a_stream_is_whole_at_done_even_while_the_upstream_keeps_its_connection_open(gateway, sdk, openai_upstream):
    # Some servers hold the connection open after [DONE]. The client's reply is complete then, and a client that
    # leaves at once has had a whole answer: it counts as answered (200), not as a client gone (499).
    openai_upstream.set_fault("stream_linger")  # until the upstream stops
    for prompt in ("linger once", "linger twice"):
        chunks = sdk.chat.completions.create(model="chat", messages=[{"role": "user", "content": prompt}], stream=True)
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == reply_text(
            openai_upstream.name, "upstream-model", prompt
        )
    body = {"model": "chat", "stream": True, "messages": [{"role": "user", "content": "leave at done"}]}
    with httpx.Client(timeout=10) as http:
        with http.stream("POST", gateway.openai_base_url + "/chat/completions", json=body, headers={"Authorization": f"Bearer {KEY}"}) as response:
            for line in response.iter_lines():
                if line == "data: [DONE]":
                    break  # and close the connection
    metrics = wait_until(lambda: _when_answered(gateway, 3), timeout=10, message="three answered")
    assert metrics.value("switchyard_requests_total", route="chat", status="499") == 0


def _when_answered(gateway, count: int):
    """The gateway's metrics once `count` requests of the chat route were answered (200), else None."""
    metrics = scrape(gateway)
    return metrics if metrics.value("switchyard_requests_total", route="chat", status="200") == count else None


def test_echo_target_streams_deterministically(sdk):
    reply = sdk.chat.completions.create(model="echo", messages=[{"role": "user", "content": "hello there"}])
    assert reply.choices[0].message.content == "echo: hello there"
    streamed = "".join(
        c.choices[0].delta.content or ""
        for c in sdk.chat.completions.create(model="echo", messages=[{"role": "user", "content": "hello there"}], stream=True)
        if c.choices
    )
    assert streamed == "echo: hello there"
    assert len(sdk.embeddings.create(model="echo", input="x").data[0].embedding) == 16


def test_zero_config_serve_prints_how_to_call_it_and_that_works(tmp_path):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "SWITCHYARD_CONFIG"}
    process = subprocess.Popen(
        [sys.executable, "-m", "gateway", "serve", "--port", str(port)],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        first_lines = [process.stdout.readline(), process.stdout.readline()]
        example = first_lines[1].strip()
        assert example.startswith(f"curl http://127.0.0.1:{port}/v1/chat/completions -H 'Authorization: Bearer sk-switchyard-demo'")
        wait_until(lambda: _status(f"http://127.0.0.1:{port}/readyz") == 200, timeout=20, message="demo gateway ready")
        result = subprocess.run(shlex.split(example) + ["-s"], capture_output=True, text=True, timeout=30)
        assert json.loads(result.stdout)["choices"][0]["message"]["content"] == "echo: hello"
    finally:
        process.terminate()
        process.wait(timeout=10)


def _status(url: str) -> int | None:
    try:
        return httpx.get(url, timeout=2).status_code
    except httpx.HTTPError:
        return None


def test_litellm_target_translates_to_anthropic_and_back(openai_upstream, anthropic_upstream, start_gateway):
    gateway = start_gateway(config(openai_upstream, anthropic_upstream), policies={"policy.yaml": POLICY})
    sdk = openai.OpenAI(base_url=gateway.openai_base_url, api_key=KEY, max_retries=0, timeout=60)
    reply = sdk.chat.completions.create(
        model="claude", messages=[{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi claude"}], max_tokens=50
    )
    assert reply.choices[0].message.content == reply_text("anthropic-fake", "claude-sonnet-4-5", "hi claude")
    assert reply.usage.prompt_tokens > 0 and reply.usage.completion_tokens == count_words(reply.choices[0].message.content)
    sent = anthropic_upstream.last_request
    assert sent.path == "/v1/messages" and sent.body["model"] == "claude-sonnet-4-5"
    assert sent.body["system"] in ("be brief", [{"type": "text", "text": "be brief"}])

    chunks = list(sdk.chat.completions.create(
        model="claude", messages=[{"role": "user", "content": "stream claude"}], max_tokens=50,
        stream=True, stream_options={"include_usage": True},
    ))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == reply_text("anthropic-fake", "claude-sonnet-4-5", "stream claude")
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == count_words(text)

    tool_reply = sdk.chat.completions.create(
        model="claude", messages=[{"role": "user", "content": "call a tool now"}], tools=TOOLS, max_tokens=50
    )
    call = tool_reply.choices[0].message.tool_calls[0]
    assert call.function.name == "lookup" and tool_reply.choices[0].finish_reason == "tool_calls"

    anthropic_upstream.set_fault("status", status=429, times=1)
    with pytest.raises(openai.RateLimitError):
        sdk.chat.completions.create(model="claude", messages=[{"role": "user", "content": "x"}], max_tokens=5)
    anthropic_upstream.set_fault("status", status=529, times=1)
    with pytest.raises(openai.InternalServerError) as info:
        sdk.chat.completions.create(model="claude", messages=[{"role": "user", "content": "x"}], max_tokens=5)
    assert info.value.status_code == 502
    log = gateway.log_text()
    assert "hi claude" not in log and "stream claude" not in log, "prompts never reach the logs"
    assert "LiteLLM completion()" not in log, "litellm's per-call INFO lines are silenced"
