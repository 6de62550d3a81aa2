"""The access log's JSON lines, and what must never leave the gateway: keys and prompts, in logs, metrics or traces."""

from __future__ import annotations

import json
import secrets

import httpx
import openai
import pytest

from fakes import count_words, reply_text, wait_until
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

    # A line is written once the answer is out, so the last one may land just after the client has it.
    lines = wait_until(lambda: {line["request_id"]: line for line in access_lines(gateway)} if len(access_lines(gateway)) >= 3 else None)
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


def test_keys_prompts_and_pii_never_reach_logs_metrics_or_traces(openai_upstream, start_gateway):
    """A full mix of requests — JSON, streams, upstream errors quoting the prompt, safety blocks, redaction,
    pseudonymization, rate limits, wrong keys in every header — then every byte the gateway let out besides its
    answers (stdout/stderr with the access log, OTLP exports, /metrics) is searched for each secret."""
    marker = secrets.token_hex(6)
    email, phone, ssn = f"dana.{marker}@northwind-corp.com", "+1 415-555-0132", "536-22-8471"
    prompts = {name: f"{name} prompt {secrets.token_hex(8)}" for name in ("json", "stream", "failed", "refused", "limited")}
    upstream_key = f"sk-upstream-{secrets.token_hex(8)}"
    limited_key, limited_hash = make_key("acme-limited")
    admin_key, admin_hash = make_key("admin")
    wrong_keys = [f"sk-wrong-{secrets.token_hex(8)}" for _ in range(3)]
    openai_upstream.api_key = upstream_key
    policy = {
        "version": 1,
        "routes": [{"name": "chat", "when": {"model": "chat"}, "send": ["llama"]}],
        "safety": {"pii": {"entities": ["EMAIL_ADDRESS", "PHONE_NUMBER", "US_SSN"], "action": "redact",
                           "actions": {"EMAIL_ADDRESS": "pseudonymize", "US_SSN": "block"}}},
    }
    with OTLPReceiver() as receiver:
        config = {
            "targets": {"llama": {"adapter": "openai", "base_url": openai_upstream.base_url, "model": "m",
                                  "api_key": upstream_key, "price": PRICE}},
            "tenants": {"acme": {"keys": [KEY_HASH, {"hash": limited_hash, "name": "limited", "limits": {"requests_per_minute": 1}}],
                                 "models": ["*"]}},
            "admin_keys": [admin_hash],
            "observability": {"access_log": True, "tracing": {"sample_ratio": 1.0}},
        }
        env = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.origin, "OTEL_BSP_SCHEDULE_DELAY": "50"}
        gateway = start_gateway(config, policies={"policy.yaml": policy}, env=env)
        sdk = openai.OpenAI(base_url=gateway.openai_base_url, api_key=KEY, max_retries=0, timeout=30)

        def ask(name: str, text: str = "", **options):
            return sdk.chat.completions.create(model="chat", messages=[{"role": "user", "content": prompts[name] + text}], **options)

        pii = f" mail {email}, call {phone}"
        assert email in ask("json", pii).choices[0].message.content, "pseudonymized, then restored for the client"
        assert email in "".join(c.choices[0].delta.content or "" for c in ask("stream", pii, stream=True) if c.choices)
        sent = "".join(r.raw.decode() for r in openai_upstream.requests)
        assert email not in sent and phone not in sent, "the upstream saw placeholders"
        openai_upstream.set_fault("status", status=400, message=f"rejected: {prompts['failed']}", times=1)
        with pytest.raises(openai.BadRequestError):
            ask("failed")
        openai_upstream.set_fault("status", status=500, message=f"crashed on {prompts['failed']}", times=1)
        with pytest.raises(openai.InternalServerError):
            ask("failed")
        with pytest.raises(openai.PermissionDeniedError):
            ask("refused", f" my SSN is {ssn}")
        with pytest.raises(openai.NotFoundError):
            sdk.chat.completions.create(model=prompts["refused"], messages=[{"role": "user", "content": prompts["refused"]}])
        limited = openai.OpenAI(base_url=gateway.openai_base_url, api_key=limited_key, max_retries=0, timeout=30)
        limited.chat.completions.create(model="chat", messages=[{"role": "user", "content": prompts["limited"]}])
        with pytest.raises(openai.RateLimitError):
            limited.chat.completions.create(model="chat", messages=[{"role": "user", "content": prompts["limited"]}])
        with httpx.Client(base_url=gateway.base_url, timeout=30) as http:
            body = {"model": "chat", "messages": [{"role": "user", "content": prompts["refused"]}]}
            for header, wrong in zip(("Authorization", "api-key", "x-api-key"), wrong_keys):
                value = f"Bearer {wrong}" if header == "Authorization" else wrong
                assert http.post("/v1/chat/completions", json=body, headers={header: value}).status_code == 401
            assert http.get("/admin/policy", headers={"Authorization": f"Bearer {KEY}"}).status_code == 401
            assert http.get("/admin/policy", headers={"Authorization": f"Bearer {admin_key}"}).status_code == 200
        metrics = scrape(gateway).text
        receiver.wait_for_spans(6)
        gateway.stop()  # flushes the last spans and log lines
        exported = b"".join(receiver.raw_exports())
        logs = gateway.log_text()
    assert len(access_lines(gateway)) == 11  # one per pipeline request; admin and metrics calls are not logged
    keys = [KEY, limited_key, admin_key, upstream_key, *wrong_keys, KEY_HASH.removeprefix("sha256:"), limited_hash.removeprefix("sha256:")]
    for secret in [*prompts.values(), email, marker, phone, ssn, *keys]:
        assert secret not in logs
        assert secret not in metrics
        assert secret.encode() not in exported
