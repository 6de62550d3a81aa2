"""Prometheus metrics and the cost header, from real traffic through a real gateway to fake upstreams.

The fakes report usage as word counts (fakes/replies.py), so every expected token count and cost here is
computed from the prompts the test sent, independently of the gateway.
"""

from __future__ import annotations

import json

import httpx
import openai
import pytest

from fakes import OpenAIUpstream, count_words, reply_text, wait_until
from fakes.keys import make_key
from fakes.metrics import scrape
from gateway.tokens import estimate_tokens

KEY, KEY_HASH = make_key("acme")
PRICE = {"input_per_mtok": 2.0, "output_per_mtok": 8.0}
UPSTREAM_MODEL = "llama-model"


def cost_of(input_tokens: int, output_tokens: int) -> float:
    return (input_tokens * PRICE["input_per_mtok"] + output_tokens * PRICE["output_per_mtok"]) / 1e6


def priced_target(upstream: OpenAIUpstream, **options) -> dict:
    return {"adapter": "openai", "base_url": upstream.base_url, "model": UPSTREAM_MODEL, "price": PRICE, **options}


def gateway_config(targets: dict, **extra) -> dict:
    return {"targets": targets, "tenants": {"acme": {"keys": [KEY_HASH], "models": ["*"]}}, **extra}


def chat_policy(**route) -> dict:
    return {"version": 1, "routes": [{"name": "chat", "when": {"model": "chat"}, **route}]}


def client(gateway, key: str = KEY) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.openai_base_url, api_key=key, max_retries=0, timeout=30)


def test_requests_tokens_and_cost_add_up_exactly(openai_upstream, start_gateway):
    gateway = start_gateway(
        gateway_config({"llama": priced_target(openai_upstream)}),
        policies={"policy.yaml": chat_policy(send=["llama"])},
    )
    sdk = client(gateway)
    expected_input = expected_output = 0
    expected_cost = 0.0
    for prompt in ("one two three", "four five", "six"):
        raw = sdk.chat.completions.with_raw_response.create(model="chat", messages=[{"role": "user", "content": prompt}])
        reply = raw.parse()
        tokens_in = count_words(prompt)
        tokens_out = count_words(reply_text(openai_upstream.name, UPSTREAM_MODEL, prompt))
        assert (reply.usage.prompt_tokens, reply.usage.completion_tokens) == (tokens_in, tokens_out)
        assert float(raw.headers["x-switchyard-cost-usd"]) == pytest.approx(cost_of(tokens_in, tokens_out), abs=1e-10)
        expected_input += tokens_in
        expected_output += tokens_out
        expected_cost += cost_of(tokens_in, tokens_out)
    for prompt in ("stream me please", "and me"):
        raw = sdk.chat.completions.with_raw_response.create(
            model="chat", messages=[{"role": "user", "content": prompt}], stream=True
        )
        assert "x-switchyard-cost-usd" not in raw.headers  # a stream's cost is known only at its end
        text = "".join(chunk.choices[0].delta.content or "" for chunk in raw.parse() if chunk.choices)
        assert text == reply_text(openai_upstream.name, UPSTREAM_MODEL, prompt)
        expected_input += count_words(prompt)
        expected_output += count_words(text)
        expected_cost += cost_of(count_words(prompt), count_words(text))
    with pytest.raises(openai.AuthenticationError):
        client(gateway, key="sk-not-a-key").chat.completions.create(model="chat", messages=[{"role": "user", "content": "x"}])
    with pytest.raises(openai.NotFoundError):
        sdk.chat.completions.create(model="made-up-model-name", messages=[{"role": "user", "content": "x"}])

    metrics = scrape(gateway)
    answered = {"route": "chat", "target": "llama", "tenant": "acme"}
    assert metrics.value("switchyard_requests_total", **answered, provider="openai", status="200") == 5
    assert metrics.value("switchyard_requests_total", route="none", target="none", tenant="none", status="401") == 1
    assert metrics.value("switchyard_requests_total", route="none", target="none", tenant="acme", status="404") == 1
    assert metrics.value("switchyard_tokens_total", **answered, type="input") == expected_input
    assert metrics.value("switchyard_tokens_total", **answered, type="output") == expected_output
    assert metrics.value("switchyard_cost_usd_total", **answered) == pytest.approx(expected_cost, rel=1e-9)
    assert metrics.value("switchyard_request_duration_seconds_count", **answered) == 5
    assert metrics.value("switchyard_time_to_first_token_seconds_count", **answered) == 2
    assert metrics.value("switchyard_upstream_duration_seconds_count", target="llama", provider="openai") == 5
    assert metrics.value("switchyard_overhead_seconds_count", route="chat") == 5
    assert metrics.value("switchyard_overhead_seconds_count", route="none") == 2
    assert metrics.value("switchyard_in_flight_requests") == 0
    assert metrics.matching("switchyard_circuit_open", target="llama")[0].value == 0
    # Labels carry config names, catalog classes and status codes only: nothing a client typed.
    assert "made-up-model-name" not in metrics.text
    known = {"chat", "llama", "acme", "openai", "none", "input", "output", "200", "401", "404", "self_hosted", "unknown"}
    assert metrics.label_values() <= known | {
        sample.labels["le"] for sample in metrics.samples if "le" in sample.labels
    }


def test_retries_fallbacks_and_open_circuits_are_counted(make_openai_upstream, start_gateway):
    primary, backup = make_openai_upstream("primary"), make_openai_upstream("backup")
    gateway = start_gateway(
        gateway_config({"primary": priced_target(primary), "backup": priced_target(backup)}),
        policies={
            "policy.yaml": {
                **chat_policy(send=["primary"], fallback=["backup"], retry={"attempts": 2, "backoff_s": 0.01, "on": ["5xx"]}),
                "circuit_breaker": {"consecutive_failures": 2, "cooldown_s": 60},
            }
        },
    )
    sdk = client(gateway)
    primary.set_fault("status", status=503, times=1)  # fails once, then the retry succeeds
    raw = sdk.chat.completions.with_raw_response.create(model="chat", messages=[{"role": "user", "content": "a"}])
    assert raw.headers["x-switchyard-target"] == "primary" and raw.headers["x-switchyard-attempts"] == "2"
    primary.set_fault("status", status=502)  # from now on: both tries fail, the backup answers, the circuit opens
    raw = sdk.chat.completions.with_raw_response.create(model="chat", messages=[{"role": "user", "content": "b"}])
    assert raw.headers["x-switchyard-target"] == "backup" and raw.headers["x-switchyard-attempts"] == "3"

    metrics = scrape(gateway)
    assert metrics.value("switchyard_retries_total", route="chat") == 2
    assert metrics.value("switchyard_fallbacks_total", route="chat") == 1
    assert metrics.value("switchyard_requests_total", route="chat", target="primary", status="200") == 1
    assert metrics.value("switchyard_requests_total", route="chat", target="backup", status="200") == 1
    # The upstream time of the fallen-back request counts against the target that answered it.
    assert metrics.value("switchyard_upstream_duration_seconds_count", target="backup") == 1
    assert metrics.matching("switchyard_circuit_open", target="primary")[0].value == 1
    assert metrics.matching("switchyard_circuit_open", target="backup")[0].value == 0


class UsageFreeUpstream(OpenAIUpstream):
    """An OpenAI-compatible server that never reports usage, as some self-hosted servers do."""

    def _chat_stream(self, common, choices, usage, include_usage):
        return super()._chat_stream(common, choices, usage, False)

    async def _chat_completions(self, request):
        response = await super()._chat_completions(request)
        if response.content_type == "application/json":
            payload = json.loads(response.body)
            payload.pop("usage", None)
            response.body = json.dumps(payload).encode()
        return response


def test_tokens_are_counted_when_the_upstream_reports_no_usage(start_gateway):
    with UsageFreeUpstream("silent") as upstream:
        gateway = start_gateway(gateway_config({"silent": priced_target(upstream)}))
        sdk = client(gateway)
        json_prompt, stream_prompt = "how many tokens is this", "and this streamed one"
        raw = sdk.chat.completions.with_raw_response.create(model="silent", messages=[{"role": "user", "content": json_prompt}])
        assert raw.parse().usage is None
        json_in = estimate_tokens(json_prompt)
        json_out = estimate_tokens(reply_text("silent", UPSTREAM_MODEL, json_prompt))
        assert float(raw.headers["x-switchyard-cost-usd"]) == pytest.approx(cost_of(json_in, json_out), abs=1e-10)
        chunks = list(
            sdk.chat.completions.create(
                model="silent", messages=[{"role": "user", "content": stream_prompt}], stream=True,
                stream_options={"include_usage": True},
            )
        )
        assert all(chunk.usage is None for chunk in chunks)  # the gateway does not invent a usage event
        stream_in = estimate_tokens(stream_prompt)
        stream_out = estimate_tokens(reply_text("silent", UPSTREAM_MODEL, stream_prompt))

        metrics = scrape(gateway)
        labels = {"route": "silent", "target": "silent", "tenant": "acme"}
        assert metrics.value("switchyard_tokens_total", **labels, type="input") == json_in + stream_in
        assert metrics.value("switchyard_tokens_total", **labels, type="output") == json_out + stream_out
        expected = cost_of(json_in, json_out) + cost_of(stream_in, stream_out)
        assert metrics.value("switchyard_cost_usd_total", **labels) == pytest.approx(expected, rel=1e-9)


def test_a_stream_the_client_abandons_is_recorded_once_as_499(openai_upstream, start_gateway):
    openai_upstream.chunk_delay = 0.2
    gateway = start_gateway(gateway_config({"llama": priced_target(openai_upstream)}))
    body = {"model": "llama", "messages": [{"role": "user", "content": "a long answer please"}], "stream": True}
    with httpx.Client(timeout=10) as http:
        with http.stream("POST", gateway.openai_base_url + "/chat/completions", json=body,
                         headers={"Authorization": f"Bearer {KEY}"}) as response:
            assert response.status_code == 200
            next(response.iter_raw())  # the first event arrived; then the client hangs up
    labels = {"route": "llama", "target": "llama", "tenant": "acme"}

    def recorded():
        metrics = scrape(gateway)
        return metrics if metrics.value("switchyard_requests_total", **labels, status="499") else None

    metrics = wait_until(recorded, timeout=10)
    assert metrics.value("switchyard_requests_total", **labels) == 1
    assert metrics.value("switchyard_time_to_first_token_seconds_count", **labels) == 1
    assert metrics.value("switchyard_in_flight_requests") == 0


def test_metrics_can_be_switched_off(start_gateway):
    gateway = start_gateway(
        {"targets": {"echo": {"adapter": "echo"}}, "tenants": {"acme": {"keys": [KEY_HASH], "models": ["*"]}},
         "observability": {"metrics": False}}
    )
    assert gateway.probe("/metrics") == 404


def test_safety_findings_on_the_exchange_are_counted_by_kind_and_action():
    from adapters.base import Endpoint
    from fakes.metrics import Scrape
    from gateway.exchange import Exchange
    from observability.metrics import Metrics

    metrics = Metrics({"llama": "openai"})
    for events, status in (((("pii", "redact"), ("pii", "redact")), 200), ((("prompt_injection", "block"),), 403), ((), 200)):
        exchange = Exchange(Endpoint.CHAT, b"r")
        exchange.tenant, exchange.route, exchange.status, exchange.safety_events = "acme", "chat", status, events
        metrics.record(exchange, 0.01)
    scraped = Scrape(metrics.exposition().decode())
    assert scraped.value("switchyard_safety_events_total", kind="pii", action="redact") == 2
    assert scraped.value("switchyard_safety_events_total", kind="prompt_injection", action="block") == 1
    assert scraped.value("switchyard_requests_total", route="chat", target="none", status="403") == 1
    assert not scraped.matching("switchyard_time_to_first_token_seconds_count")  # no stream, no series
