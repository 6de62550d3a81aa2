"""Graceful drain: what a real gateway process does with SIGTERM while streams are in flight (Kubernetes' pod stop)."""

from __future__ import annotations

import asyncio
import json
import signal
import time

import httpx
import openai
import pytest
from fakes import async_wait_until, reply_text
from fakes.keys import make_key

KEY, KEY_HASH = make_key("acme")
PROMPT = "keep streaming through the drain please"


def gateway_config(upstream, **server) -> dict:
    return {
        "server": server,
        "targets": {"up": {"adapter": "openai", "base_url": upstream.base_url, "model": "up-model"}},
        "tenants": {"acme": {"keys": [KEY_HASH], "models": ["*"]}},
    }


async def stream_text(sdk: openai.AsyncOpenAI) -> tuple[str, str | None]:
    """The streamed reply's text and its finish reason."""
    stream = await sdk.chat.completions.create(model="up", messages=[{"role": "user", "content": PROMPT}], stream=True)
    text, finish = "", None
    async for chunk in stream:
        if chunk.choices:
            text += chunk.choices[0].delta.content or ""
            finish = chunk.choices[0].finish_reason or finish
    return text, finish


@pytest.mark.parametrize("workers", [1, 2])
async def test_sigterm_turns_unready_serves_through_the_grace_period_and_lets_streams_finish(
    workers, openai_upstream, start_gateway
):
    openai_upstream.set_fault("slow_stream", chunk_delay=0.4)  # ~4 s per stream: it outlives the 1.5 s grace
    gateway = start_gateway(
        gateway_config(openai_upstream, drain_grace_s=1.5, drain_timeout_s=30), args=["--workers", str(workers)]
    )
    sdk = openai.AsyncOpenAI(base_url=gateway.openai_base_url, api_key=KEY, max_retries=0, timeout=30)
    streams = [asyncio.create_task(stream_text(sdk)) for _ in range(4)]
    await async_wait_until(lambda: openai_upstream.in_flight == 4, timeout=10, message="4 streams upstream")

    gateway.send_signal(signal.SIGTERM)
    # Each probe is a new connection, as the kubelet's are; a blocking one here only delays the streams' reads.
    status, _, body = await async_wait_until(
        lambda: (reply := gateway.http_get("/readyz", timeout=2))[0] == 503 and reply,
        timeout=5,
        message="/readyz to fail",
    )
    assert json.loads(body)["reason"] == "draining"
    assert not any(stream.done() for stream in streams), "/readyz must fail before the streams end"

    # Grace period: a brand-new connection is still served, and told to go elsewhere next time.
    async with httpx.AsyncClient(base_url=gateway.base_url, timeout=10) as http:
        late = await http.post(
            "/v1/chat/completions",
            headers={"Authorization": f"Bearer {KEY}"},
            json={"model": "up", "messages": [{"role": "user", "content": "just in time"}]},
        )
    assert late.status_code == 200
    assert late.json()["choices"][0]["message"]["content"] == reply_text("openai-fake", "up-model", "just in time")
    assert late.headers["connection"] == "close"

    # After the grace period the listener closes, while the streams are still running...
    await async_wait_until(lambda: gateway.probe("/readyz") is None, timeout=10, message="the listener to close")
    assert not all(stream.done() for stream in streams), "the streams must outlive the grace period"
    assert gateway.running

    # ...and every one of them completes, whole, before the process exits 0.
    results = await asyncio.gather(*streams)
    assert results == [(reply_text("openai-fake", "up-model", PROMPT), "stop")] * 4
    assert await asyncio.to_thread(gateway.wait, 15) == 0
    log = gateway.log_text()
    assert "SIGTERM: draining" in log and "drained: exiting" in log
    assert "Traceback" not in log
    assert openai_upstream.cancelled_streams == 0


async def test_a_request_still_waiting_for_its_upstream_at_the_deadline_gets_a_retryable_503(
    openai_upstream, start_gateway
):
    openai_upstream.set_fault("slow_stream", chunk_delay=5)  # the first byte would come long after the deadline
    gateway = start_gateway(gateway_config(openai_upstream, drain_grace_s=0, drain_timeout_s=1))
    sdk = openai.AsyncOpenAI(base_url=gateway.openai_base_url, api_key=KEY, max_retries=0, timeout=60)
    stream = asyncio.create_task(stream_text(sdk))
    await async_wait_until(lambda: openai_upstream.in_flight == 1, timeout=10, message="the stream upstream")

    signalled = time.monotonic()
    gateway.send_signal(signal.SIGTERM)
    with pytest.raises(openai.APIStatusError) as cut:
        await asyncio.wait_for(stream, timeout=10)
    assert cut.value.status_code == 503 and cut.value.code == "shutting_down"  # the SDKs retry a 503 elsewhere
    assert await asyncio.to_thread(gateway.wait, 15) == 0
    assert time.monotonic() - signalled < 8, "the drain deadline bounds the shutdown"
    assert "Traceback" not in gateway.log_text()


async def test_a_stream_still_running_at_the_deadline_ends_with_an_error_event(openai_upstream, start_gateway):
    openai_upstream.set_fault("slow_stream", chunk_delay=2.5)  # ~20 s in all, far past the 1 s deadline
    gateway = start_gateway(gateway_config(openai_upstream, drain_grace_s=0, drain_timeout_s=1))
    sdk = openai.AsyncOpenAI(base_url=gateway.openai_base_url, api_key=KEY, max_retries=0, timeout=60)
    stream = await sdk.chat.completions.create(model="up", messages=[{"role": "user", "content": PROMPT}], stream=True)
    chunks = aiter(stream)
    first = await anext(chunks)  # the stream has begun: headers and its first event reached the client
    assert first.choices[0].delta.role == "assistant"

    gateway.send_signal(signal.SIGTERM)
    with pytest.raises(openai.APIError, match="shutting down"):
        async for _ in chunks:
            pass
    assert await asyncio.to_thread(gateway.wait, 15) == 0
    assert "Traceback" not in gateway.log_text()


def test_drain_settings_are_validated(tmp_path):
    from gateway.config import ConfigError, load_config

    path = tmp_path / "config.yaml"
    path.write_text("server:\n  drain_grace_s: -1\n  drain_timeout_s: 0\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, {})
    assert [str(p) for p in info.value.problems] == [
        f"{path}:2: server.drain_grace_s: Input should be greater than or equal to 0",
        f"{path}:3: server.drain_timeout_s: Input should be greater than 0",
    ]
    path.write_text("server: {}\n")
    server = load_config(path, {}).server
    assert (server.drain_grace_s, server.drain_timeout_s) == (0.0, 30.0)
