"""The access log's JSON lines, and what must never leave the gateway: keys and prompts, in logs, metrics or traces."""

from __future__ import annotations

import json
import secrets

import openai
import pytest

from fakes import count_words, reply_text
from fakes.keys import make_key
from fakes.metrics import scrape
from fakes.otlp_receiver import OTLPReceiver

KEY, KEY_HASH = make_key("acme")
PRICE = {"input_per_mtok": 1.0, "output_per_mtok": 3.0}


def access_lines(gateway) -> list[dict]:
    return [json.loads(line) for line in gateway.log_text().splitlines() if line.startswith("{")]


def test_one_json_line_per_request(openai_upstream, start_gateway):
    config = {
        "targets": {"llama": {"adapter": "openai", "base_url": openai_upstream.base_url, "model": "m", "price": PRICE}},
        "tenants": {"acme": {"keys": [KEY_HASH], "models": ["*"]}},
        "observability": {"access_log": True},
    }
    gateway = start_gateway(config)
    sdk = openai.OpenAI(base_url=gateway.openai_base_url, api_key=KEY, max_retries=0, timeout=30)
    raw = sdk.chat.completions.with_raw_response.create(
        model="llama", messages=[{"role": "user", "content": "hello there"}], extra_headers={"x-request-id": "req-json-1"}
    )
    raw.parse()
    list(sdk.chat.completions.create(model="llama", messages=[{"role": "user", "content": "stream"}], stream=True,
                                     extra_headers={"x-request-id": "req-stream-1"}))
    with pytest.raises(openai.NotFoundError):
        sdk.chat.completions.create(model="nope", messages=[{"role": "user", "content": "x"}],
                                    extra_headers={"x-request-id": "req-404"})

    lines = {line["request_id"]: line for line in access_lines(gateway)}
    assert set(lines) == {"req-json-1", "req-stream-1", "req-404"}
    answered = lines["req-json-1"]
    tokens_in, tokens_out = count_words("hello there"), count_words(reply_text("openai-fake", "m", "hello there"))
    assert answered | {"time": 0, "duration_ms": 0, "overhead_ms": 0, "pid": 0} == {
        "time": 0, "request_id": "req-json-1", "tenant": "acme", "endpoint": "chat", "route": "llama",
        "target": "llama", "provider": "openai", "status": 200, "duration_ms": 0, "overhead_ms": 0,
        "first_token_ms": None, "attempts": 1, "retries": 0, "fallbacks": 0, "input_tokens": tokens_in,
        "output_tokens": tokens_out, "usage_reported": True, "cost_usd": pytest.approx((tokens_in + 3 * tokens_out) / 1e6),
        "trace_id": None, "pid": 0,
    }
    assert 0 < answered["overhead_ms"] <= answered["duration_ms"]
    assert float(raw.headers["x-switchyard-overhead-ms"]) == answered["overhead_ms"]
    streamed = lines["req-stream-1"]
    assert streamed["status"] == 200 and 0 < streamed["first_token_ms"] <= streamed["duration_ms"]
    assert streamed["output_tokens"] == count_words(reply_text("openai-fake", "m", "stream"))
    assert lines["req-404"]["status"] == 404 and lines["req-404"]["route"] == "none"
    assert lines["req-404"]["cost_usd"] is None


def test_keys_and_prompts_never_reach_logs_metrics_or_traces(openai_upstream, start_gateway):
    prompt = f"my secret is {secrets.token_hex(8)}"
    upstream_key = f"sk-upstream-{secrets.token_hex(8)}"
    wrong_key = f"sk-wrong-{secrets.token_hex(8)}"
    openai_upstream.api_key = upstream_key
    with OTLPReceiver() as receiver:
        config = {
            "targets": {"llama": {"adapter": "openai", "base_url": openai_upstream.base_url, "model": "m",
                                  "api_key": upstream_key, "price": PRICE}},
            "tenants": {"acme": {"keys": [KEY_HASH], "models": ["*"]}},
            "observability": {"access_log": True, "tracing": {"sample_ratio": 1.0}},
        }
        env = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.origin, "OTEL_BSP_SCHEDULE_DELAY": "50"}
        gateway = start_gateway(config, env=env)
        sdk = openai.OpenAI(base_url=gateway.openai_base_url, api_key=KEY, max_retries=0, timeout=30)
        messages = [{"role": "user", "content": prompt}]
        assert prompt in sdk.chat.completions.create(model="llama", messages=messages).choices[0].message.content
        list(sdk.chat.completions.create(model="llama", messages=messages, stream=True))
        with pytest.raises(openai.NotFoundError):
            sdk.chat.completions.create(model=prompt, messages=messages)
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=gateway.openai_base_url, api_key=wrong_key, max_retries=0).chat.completions.create(
                model="llama", messages=messages
            )
        metrics = scrape(gateway).text
        receiver.wait_for_spans(5)  # two requests answered (server + client span each), two rejected
        gateway.stop()  # flushes the last spans and log lines
        exported = b"".join(receiver.raw_exports())
        logs = gateway.log_text()
    assert len(access_lines(gateway)) == 4
    for secret in (prompt, KEY, upstream_key, wrong_key, KEY_HASH.removeprefix("sha256:")):
        assert secret not in logs
        assert secret not in metrics
        assert secret.encode() not in exported
