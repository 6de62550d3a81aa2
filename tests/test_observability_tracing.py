"""Traces: the tracing module against the SDK's in-memory exporter, then a real gateway exporting over OTLP/HTTP
to a real receiver, with the client's traceparent continued and each attempt's propagated upstream."""

from __future__ import annotations

import os

import openai
import pytest
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from adapters.base import Endpoint, UpstreamError, UpstreamRequest, Usage
from fakes import count_words, reply_text
from fakes.keys import make_key
from fakes.otlp_receiver import CLIENT, SERVER, STATUS_ERROR, OTLPReceiver
from gateway.config import ConfigError, ObservabilityConfig, TargetConfig, load_config
from gateway.exchange import Exchange, request_id_from
from observability.settings import Sampling, TracingSettings, observability_settings
from observability.tracing import Tracing
from observability.usage import OutputMeter

KEY, KEY_HASH = make_key("acme")
CLIENT_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_SPAN = "00f067aa0ba902b7"


def traceparent(flags: str = "01") -> bytes:
    return f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-{flags}".encode()


# ----- settings: env at the boundary ----------------------------------------------------------------------------


def settings_for(env: dict[str, str], **tracing) -> TracingSettings | None:
    return observability_settings(ObservabilityConfig(tracing=tracing), env).tracing


def test_tracing_is_off_unless_an_endpoint_or_the_config_asks_for_it():
    assert settings_for({}) is None
    assert settings_for({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}).endpoint == "http://collector:4318/v1/traces"
    assert settings_for({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/custom"}).endpoint == "http://c:4318/custom"
    assert settings_for({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_SDK_DISABLED": "true"}) is None
    assert settings_for({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_TRACES_EXPORTER": "none"}) is None
    assert settings_for({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, enabled=False) is None
    assert settings_for({}, enabled=True).endpoint == "http://localhost:4318/v1/traces"


def test_a_bad_observability_section_is_rejected_with_its_line(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("targets: {echo: {adapter: echo}}\nobservability:\n  tracing:\n    sample_ratio: 2\n  acces_log: true\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, {})
    message = str(info.value)
    assert f"{path}:4: observability.tracing.sample_ratio" in message
    assert f"{path}:5: observability.acces_log" in message


def test_sampling_and_service_name_come_from_config_then_env_then_defaults():
    on = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}
    assert settings_for(on).sampling == Sampling(0.01, parent_based=True)
    assert settings_for(on).service_name == "switchyard"
    env = {**on, "OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.25", "OTEL_SERVICE_NAME": "gw"}
    assert settings_for(env).sampling == Sampling(0.25, parent_based=False)
    assert settings_for(env).service_name == "gw"
    assert settings_for({**on, "OTEL_TRACES_SAMPLER": "parentbased_always_off"}).sampling == Sampling(0.0)
    assert settings_for(env, sample_ratio=1.0, service_name="edge").sampling == Sampling(1.0)
    assert settings_for(env, sample_ratio=1.0, service_name="edge").service_name == "edge"


# ----- the tracing module, with the SDK's in-memory exporter ---------------------------------------------------


TARGETS = {
    "llama": TargetConfig(adapter="openai", base_url="http://vllm.models:8000/v1", model="meta/llama-3"),
    "gpt": TargetConfig(adapter="openai", base_url="https://api.openai.com/v1", model="gpt-4o"),
}


@pytest.fixture
def in_memory():
    exporter = InMemorySpanExporter()
    settings = TracingSettings("http://unused", Sampling(1.0), "switchyard-test")
    tracing = Tracing(settings, TARGETS, {"llama": "openai", "gpt": "openai"}, SimpleSpanProcessor(exporter))
    yield tracing, exporter
    tracing.shutdown()


def test_spans_of_a_request_with_a_failed_attempt_and_a_fallback(in_memory):
    tracing, exporter = in_memory
    exchange = Exchange(Endpoint.CHAT, request_id_from(b"req-1"))
    trace = tracing.start(Endpoint.CHAT, {b"traceparent": traceparent()})
    assert trace is not None
    exchange.trace = trace
    request = UpstreamRequest(Endpoint.CHAT, {"model": "chat"}, False, False)
    trace.attempt_started("llama", request)
    first_header = request.headers["traceparent"]
    trace.attempt_failed(UpstreamError("status", 502, "upstream said no", upstream_status=503))
    trace.attempt_started("gpt", request)
    second_header = request.headers["traceparent"]
    exchange.tenant, exchange.route, exchange.target, exchange.policy_version = "acme", "chat", "gpt", 3
    exchange.status, exchange.usage, exchange.cost_usd = 200, Usage(7, 11, True), 0.5
    output = OutputMeter({})
    output.read_reply(b'{"model": "gpt-4o-2024-08-06", "choices": [{"finish_reason": "stop"}, {"finish_reason": "length"}]}')
    trace.finish(exchange, output)

    failed, answered, server = exporter.get_finished_spans()
    assert server.name == "POST /v1/chat/completions" and server.kind is SpanKind.SERVER
    assert f"{server.context.trace_id:032x}" == CLIENT_TRACE and f"{server.parent.span_id:016x}" == CLIENT_SPAN
    assert dict(server.attributes) == {
        "http.request.method": "POST", "http.route": "/v1/chat/completions", "http.response.status_code": 200,
        "switchyard.request_id": "req-1", "switchyard.tenant": "acme", "switchyard.route": "chat",
        "switchyard.target": "gpt", "switchyard.policy.version": 3, "switchyard.cost_usd": 0.5,
    }
    for span, header in ((failed, first_header), (answered, second_header)):
        assert span.kind is SpanKind.CLIENT and span.parent.span_id == server.context.span_id
        assert header == f"00-{CLIENT_TRACE}-{span.context.span_id:016x}-01"
    assert failed.name == "chat meta/llama-3" and failed.status.status_code is StatusCode.ERROR
    assert failed.attributes["error.type"] == "503"
    assert failed.attributes["server.address"] == "vllm.models" and failed.attributes["server.port"] == 8000
    assert answered.name == "chat gpt-4o" and answered.status.status_code is StatusCode.UNSET
    assert dict(answered.attributes) == {
        "gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-4o",
        "server.address": "api.openai.com", "server.port": 443, "gen_ai.usage.input_tokens": 7,
        "gen_ai.usage.output_tokens": 11, "gen_ai.response.model": "gpt-4o-2024-08-06",
        "gen_ai.response.finish_reasons": ("stop", "length"),
    }
    assert server.resource.attributes["service.name"] == "switchyard-test"


def test_an_unsampled_client_trace_is_passed_on_but_not_recorded(in_memory):
    tracing, exporter = in_memory
    trace = tracing.start(Endpoint.EMBEDDING, {b"traceparent": traceparent("00")})
    assert trace is not None and not trace.recording
    request = UpstreamRequest(Endpoint.EMBEDDING, {"model": "e"}, False, False)
    trace.attempt_started("llama", request)
    trace_id, parent, flags = request.headers["traceparent"].split("-")[1:]
    assert (trace_id, flags) == (CLIENT_TRACE, "00")
    exchange = Exchange(Endpoint.EMBEDDING, b"r")
    exchange.status = 200
    trace.finish(exchange, None)
    assert exporter.get_finished_spans() == ()


def test_requests_without_a_client_trace_are_head_sampled():
    exporter = InMemorySpanExporter()
    tracing = Tracing(TracingSettings("http://unused", Sampling(0.0), "s"), TARGETS, {}, SimpleSpanProcessor(exporter))
    assert tracing.start(Endpoint.CHAT, {}) is None  # not sampled: no span, no cost
    assert tracing.start(Endpoint.CHAT, {b"traceparent": traceparent("01")}).recording  # the client decided
    tracing.shutdown()


# ----- a real gateway exporting to a real OTLP/HTTP receiver ---------------------------------------------------


@pytest.fixture
def receiver():
    with OTLPReceiver() as running:
        yield running


def tracing_env(receiver: OTLPReceiver) -> dict[str, str]:
    return {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.origin, "OTEL_BSP_SCHEDULE_DELAY": "50"}


def test_the_gateway_exports_genai_spans_and_propagates_traceparent(receiver, make_openai_upstream, start_gateway):
    primary = make_openai_upstream("primary")
    primary.set_fault("status", status=503, times=1)
    config = {
        "targets": {"llama": {"adapter": "openai", "base_url": primary.base_url, "model": "llama-model"}},
        "tenants": {"acme": {"keys": [KEY_HASH], "models": ["*"]}},
        "observability": {"tracing": {"sample_ratio": 1.0, "service_name": "gw-under-test"}},
    }
    policy = {"version": 1, "routes": [{"name": "chat", "when": {"model": "chat"}, "send": ["llama"],
                                        "retry": {"attempts": 2, "backoff_s": 0.01}}]}
    gateway = start_gateway(config, policies={"policy.yaml": policy}, env=tracing_env(receiver))
    sdk = openai.OpenAI(base_url=gateway.openai_base_url, api_key=KEY, max_retries=0, timeout=30)
    chunks = list(sdk.chat.completions.create(
        model="chat", messages=[{"role": "user", "content": "trace me"}], stream=True,
        extra_headers={"traceparent": traceparent().decode()},
    ))
    assert chunks

    spans = receiver.wait_for_spans(3)
    assert len(spans) == 3
    server = next(s for s in spans if s.kind == SERVER)
    failed, answered = sorted((s for s in spans if s.kind == CLIENT), key=lambda s: s.status_code != STATUS_ERROR)
    assert server.resource["service.name"] == "gw-under-test"
    assert (server.trace_id, server.parent_span_id) == (CLIENT_TRACE, CLIENT_SPAN)
    assert server.attributes["switchyard.route"] == "chat" and server.attributes["switchyard.tenant"] == "acme"
    assert server.attributes["switchyard.target"] == "llama" and server.attributes["switchyard.policy.version"] == 1
    assert server.attributes["http.response.status_code"] == 200
    for span in (failed, answered):
        assert span.name == "chat llama-model" and span.trace_id == CLIENT_TRACE
        assert span.parent_span_id == server.span_id
        assert span.attributes["gen_ai.provider.name"] == "openai"
        assert span.attributes["gen_ai.request.model"] == "llama-model"
        assert span.attributes["server.address"] == "127.0.0.1" and span.attributes["server.port"] == primary.port
    assert failed.status_code == STATUS_ERROR and failed.attributes["error.type"] == "503"
    reply = reply_text("primary", "llama-model", "trace me")
    assert answered.attributes["gen_ai.usage.input_tokens"] == count_words("trace me")
    assert answered.attributes["gen_ai.usage.output_tokens"] == count_words(reply)
    assert answered.attributes["gen_ai.response.model"] == "llama-model"
    assert answered.attributes["gen_ai.response.finish_reasons"] == ["stop"]
    # Each attempt told the upstream its own span as the parent.
    sent = [request.header("traceparent") for request in primary.requests]
    assert sent == [f"00-{CLIENT_TRACE}-{failed.span_id}-01", f"00-{CLIENT_TRACE}-{answered.span_id}-01"]


def test_without_tracing_configured_nothing_is_exported_or_propagated(receiver, openai_upstream, start_gateway):
    config = {
        "targets": {"llama": {"adapter": "openai", "base_url": openai_upstream.base_url, "model": "m"}},
        "tenants": {"acme": {"keys": [KEY_HASH], "models": ["*"]}},
    }
    env = {key: "" for key in os.environ if key.startswith("OTEL_")}
    gateway = start_gateway(config, env=env)
    sdk = openai.OpenAI(base_url=gateway.openai_base_url, api_key=KEY, max_retries=0, timeout=30)
    sdk.chat.completions.create(model="llama", messages=[{"role": "user", "content": "hi"}],
                                extra_headers={"traceparent": traceparent().decode()})
    assert openai_upstream.last_request.header("traceparent") is None
    gateway.stop()  # a shutdown flushes any queued spans: there must be none
    assert receiver.requests == []
