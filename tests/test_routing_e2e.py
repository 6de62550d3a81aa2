"""Routing policy through a real gateway process and fault-injecting upstreams.

Each test proves which upstream answered from the reply text the fakes derive from their own name.
"""

from __future__ import annotations

import time
from collections import Counter

import httpx
import openai
import pytest

from fakes import wait_until
from fakes.keys import make_key
from fakes.network import free_port

MESSAGES = [{"role": "user", "content": "hello"}]
KEY, KEY_HASH = make_key("acme")


def gateway_config(targets: dict, **extra) -> dict:
    return {"targets": targets, "tenants": {"acme": {"keys": [KEY_HASH], "models": ["*"]}}, **extra}


def openai_target(upstream, **options) -> dict:
    return {"adapter": "openai", "base_url": upstream.base_url, "model": f"{upstream.name}-model", **options}


def client(gateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.openai_base_url, api_key=KEY, max_retries=0, timeout=30)


def chat_policy(**route) -> dict:
    return {"version": 1, "routes": [{"name": "chat", "when": {"model": "chat"}, **route}]}


FAULTS = {
    "502": ("status", {"status": 502}),
    "429 with Retry-After": ("status", {"status": 429, "headers": {"Retry-After": "7"}}),
    "hang past the attempt timeout": ("hang", {}),
    "connection reset": ("reset", {}),
}


@pytest.mark.parametrize("fault", list(FAULTS))
def test_healthy_fallback_means_zero_client_visible_errors(fault, make_openai_upstream, start_gateway):
    primary, backup = make_openai_upstream("primary"), make_openai_upstream("backup")
    kind, params = FAULTS[fault]
    primary.set_fault(kind, **params)
    gateway = start_gateway(
        gateway_config({"primary": openai_target(primary), "backup": openai_target(backup)}),
        policies={"policy.yaml": chat_policy(send=["primary"], fallback=["backup"], attempt_timeout_s=0.5)},
    )
    sdk = client(gateway)
    for i in range(5):
        raw = sdk.chat.completions.with_raw_response.create(model="chat", messages=[{"role": "user", "content": f"q{i}"}])
        reply = raw.parse()
        assert reply.choices[0].message.content == f"backup:backup-model:q{i}"
        assert raw.headers["x-switchyard-target"] == "backup"
        assert raw.headers["x-switchyard-route"] == "chat"
    assert len(backup.requests) == 5
    assert len(primary.requests) >= 1


def test_connection_refused_falls_back(make_openai_upstream, start_gateway):
    backup = make_openai_upstream("backup")
    dead = {"adapter": "openai", "base_url": f"http://127.0.0.1:{free_port()}/v1", "model": "m"}
    gateway = start_gateway(
        gateway_config({"dead": dead, "backup": openai_target(backup)}),
        policies={"policy.yaml": chat_policy(send=["dead"], fallback=["backup"])},
    )
    raw = client(gateway).chat.completions.with_raw_response.create(model="chat", messages=MESSAGES)
    assert raw.parse().choices[0].message.content == "backup:backup-model:hello"
    assert raw.headers["x-switchyard-attempts"] == "2"


@pytest.mark.parametrize(
    ("kind", "params", "error_class", "status"),
    [
        ("status", {"status": 502}, openai.InternalServerError, 502),
        ("status", {"status": 500}, openai.InternalServerError, 502),
        ("status", {"status": 429, "headers": {"Retry-After": "7"}}, openai.RateLimitError, 429),
        ("status", {"status": 401}, openai.InternalServerError, 502),
        ("hang", {}, openai.InternalServerError, 504),
        ("reset", {}, openai.InternalServerError, 502),
        ("bad_json", {}, openai.InternalServerError, 502),
    ],
)
def test_without_fallback_the_client_gets_the_right_openai_error(kind, params, error_class, status, openai_upstream, start_gateway):
    openai_upstream.set_fault(kind, **params)
    gateway = start_gateway(
        gateway_config({"only": openai_target(openai_upstream)}),
        policies={"policy.yaml": chat_policy(send=["only"], attempt_timeout_s=0.5)},
    )
    with pytest.raises(error_class) as info:
        client(gateway).chat.completions.create(model="chat", messages=MESSAGES)
    error = info.value
    assert error.status_code == status
    body = error.response.json()["error"]
    assert set(body) == {"message", "type", "param", "code"}
    if status == 429:
        assert error.response.headers["retry-after"] == "7"
    if kind == "status" and params["status"] == 401:
        assert "credentials" in body["message"]


def test_retry_on_same_target_then_success(openai_upstream, start_gateway):
    openai_upstream.set_fault("status", status=503, times=1)
    gateway = start_gateway(
        gateway_config({"only": openai_target(openai_upstream)}),
        policies={"policy.yaml": chat_policy(send=["only"], retry={"attempts": 2, "backoff_s": 0.01})},
    )
    raw = client(gateway).chat.completions.with_raw_response.create(model="chat", messages=MESSAGES)
    assert raw.parse().choices[0].message.content == "openai-fake:only-model:hello".replace("only-model", "openai-fake-model")
    assert raw.headers["x-switchyard-attempts"] == "2"
    assert len(openai_upstream.requests) == 2


def test_retry_waits_at_least_retry_after(openai_upstream, start_gateway):
    openai_upstream.set_fault("status", status=429, headers={"Retry-After": "1"}, times=1)
    gateway = start_gateway(
        gateway_config({"only": openai_target(openai_upstream)}),
        policies={"policy.yaml": chat_policy(send=["only"], retry={"attempts": 2, "backoff_s": 0.01, "max_backoff_s": 3})},
    )
    began = time.monotonic()
    reply = client(gateway).chat.completions.create(model="chat", messages=MESSAGES)
    assert time.monotonic() - began >= 1.0
    assert reply.choices[0].message.content.startswith("openai-fake:")


def test_retry_after_longer_than_the_cap_moves_to_the_fallback_at_once(make_openai_upstream, start_gateway):
    primary, backup = make_openai_upstream("primary"), make_openai_upstream("backup")
    primary.set_fault("status", status=429, headers={"Retry-After": "30"})
    gateway = start_gateway(
        gateway_config({"primary": openai_target(primary), "backup": openai_target(backup)}),
        policies={"policy.yaml": chat_policy(send=["primary"], fallback=["backup"], retry={"attempts": 3, "max_backoff_s": 2})},
    )
    reply = client(gateway).chat.completions.create(model="chat", messages=MESSAGES)
    assert reply.choices[0].message.content.startswith("backup:")
    assert len(primary.requests) == 1


def test_client_errors_do_not_fall_back(make_openai_upstream, start_gateway):
    primary, backup = make_openai_upstream("primary"), make_openai_upstream("backup")
    primary.set_fault("status", status=400, message="max_tokens is too large", code="invalid_value")
    gateway = start_gateway(
        gateway_config({"primary": openai_target(primary), "backup": openai_target(backup)}),
        policies={"policy.yaml": chat_policy(send=["primary"], fallback=["backup"])},
    )
    with pytest.raises(openai.BadRequestError) as info:
        client(gateway).chat.completions.create(model="chat", messages=MESSAGES)
    assert info.value.response.json()["error"]["message"] == "max_tokens is too large"
    assert info.value.response.json()["error"]["code"] == "invalid_value"
    assert backup.requests == []


def test_context_length_errors_fall_back_to_a_bigger_model(make_openai_upstream, start_gateway):
    small, big = make_openai_upstream("small"), make_openai_upstream("big")
    small.set_fault("status", status=400, message="too long", code="context_length_exceeded")
    gateway = start_gateway(
        gateway_config({"small": openai_target(small), "big": openai_target(big)}),
        policies={"policy.yaml": chat_policy(send=["small"], fallback=["big"])},
    )
    reply = client(gateway).chat.completions.create(model="chat", messages=MESSAGES)
    assert reply.choices[0].message.content == "big:big-model:hello"


def test_stream_falls_back_before_the_first_byte(make_openai_upstream, start_gateway):
    primary, backup = make_openai_upstream("primary"), make_openai_upstream("backup")
    primary.set_fault("stream_reset", after_chunks=0)
    gateway = start_gateway(
        gateway_config({"primary": openai_target(primary), "backup": openai_target(backup)}),
        policies={"policy.yaml": chat_policy(send=["primary"], fallback=["backup"])},
    )
    stream = client(gateway).chat.completions.create(model="chat", messages=MESSAGES, stream=True)
    text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    assert text == "backup:backup-model:hello"


def test_stream_broken_after_the_first_byte_ends_with_an_error_event(make_openai_upstream, start_gateway):
    primary, backup = make_openai_upstream("primary"), make_openai_upstream("backup")
    primary.set_fault("stream_reset", after_chunks=2)
    gateway = start_gateway(
        gateway_config({"primary": openai_target(primary), "backup": openai_target(backup)}),
        policies={"policy.yaml": chat_policy(send=["primary"], fallback=["backup"])},
    )
    received = []
    with pytest.raises(openai.APIError) as info:
        for chunk in client(gateway).chat.completions.create(model="chat", messages=MESSAGES, stream=True):
            received.append(chunk)
    assert len(received) == 2
    assert "broke off the stream" in str(info.value)
    assert backup.requests == [], "after the first byte there is no falling back"


def test_breaker_stops_sending_to_a_dead_target_and_recovers(make_openai_upstream, start_gateway):
    primary, backup = make_openai_upstream("primary"), make_openai_upstream("backup")
    primary.set_fault("status", status=503)
    policy = chat_policy(send=["primary"], fallback=["backup"])
    policy["circuit_breaker"] = {"consecutive_failures": 3, "cooldown_s": 1, "min_requests": 1000}
    gateway = start_gateway(
        gateway_config({"primary": openai_target(primary), "backup": openai_target(backup)}),
        policies={"policy.yaml": policy},
    )
    sdk = client(gateway)
    for _ in range(10):
        assert sdk.chat.completions.create(model="chat", messages=MESSAGES).choices[0].message.content.startswith("backup:")
    assert len(primary.requests) == 3, "the circuit opened after 3 failures"
    primary.clear_fault()
    primary.clear()

    def served_by_primary() -> bool:
        reply = sdk.chat.completions.create(model="chat", messages=MESSAGES)
        return reply.choices[0].message.content.startswith("primary:")

    wait_until(served_by_primary, timeout=10, message="the half-open probe to reach the recovered primary")
    for _ in range(5):
        assert served_by_primary()


def test_all_circuits_open_gives_503_with_retry_after(openai_upstream, start_gateway):
    openai_upstream.set_fault("status", status=500)
    policy = chat_policy(send=["only"])
    policy["circuit_breaker"] = {"consecutive_failures": 2, "cooldown_s": 30}
    gateway = start_gateway(gateway_config({"only": openai_target(openai_upstream)}), policies={"policy.yaml": policy})
    sdk = client(gateway)
    for _ in range(2):
        with pytest.raises(openai.InternalServerError):
            sdk.chat.completions.create(model="chat", messages=MESSAGES)
    with pytest.raises(openai.APIStatusError) as info:
        sdk.chat.completions.create(model="chat", messages=MESSAGES)
    assert info.value.status_code == 503
    assert info.value.response.json()["error"]["code"] == "circuit_open"
    assert 25 <= int(info.value.response.headers["retry-after"]) <= 30
    assert len(openai_upstream.requests) == 2


def test_weighted_split_through_the_gateway(make_openai_upstream, start_gateway):
    a, b = make_openai_upstream("a"), make_openai_upstream("b")
    gateway = start_gateway(
        gateway_config({"a": openai_target(a), "b": openai_target(b)}),
        policies={"policy.yaml": chat_policy(send=[{"target": "a", "weight": 80}, {"target": "b", "weight": 20}])},
    )
    counts: Counter[str] = Counter()
    with httpx.Client(base_url=gateway.base_url, headers={"Authorization": f"Bearer {KEY}"}) as http:
        for _ in range(500):
            response = http.post("/v1/chat/completions", json={"model": "chat", "messages": MESSAGES})
            counts[response.headers["x-switchyard-target"]] += 1
    # 500 draws at p=0.2: sd ≈ 9, so ±45 is ~5 sd.
    assert abs(counts["b"] - 100) <= 45
    assert counts["a"] + counts["b"] == 500
    assert len(b.requests) == counts["b"]


def test_deny_route_and_tenant_model_permissions(openai_upstream, start_gateway):
    other_key, other_hash = make_key("interns")
    config = gateway_config({"only": openai_target(openai_upstream)})
    config["tenants"]["interns"] = {"keys": [other_hash], "models": ["chat"]}
    policy = {
        "version": 1,
        "routes": [
            {"name": "no-interns", "when": {"tenant": "interns", "model": "chat"}, "deny": "Interns use the in-house model."},
            {"name": "chat", "when": {"model": "chat"}, "send": ["only"]},
        ],
    }
    gateway = start_gateway(config, policies={"policy.yaml": policy})
    interns = openai.OpenAI(base_url=gateway.openai_base_url, api_key=other_key, max_retries=0)
    with pytest.raises(openai.PermissionDeniedError) as info:
        interns.chat.completions.create(model="chat", messages=MESSAGES)
    assert info.value.response.json()["error"] == {
        "message": "Interns use the in-house model.", "type": "permission_error", "param": None, "code": "denied_by_policy",
    }
    with pytest.raises(openai.PermissionDeniedError) as info:  # the same answer as for a model that does not exist
        interns.chat.completions.create(model="only", messages=MESSAGES)
    assert info.value.response.json()["error"]["code"] == "model_not_allowed"
    with pytest.raises(openai.PermissionDeniedError) as info:
        interns.chat.completions.create(model="no-such-model", messages=MESSAGES)
    assert info.value.response.json()["error"]["code"] == "model_not_allowed"
    assert [m.id for m in interns.models.list()] == ["chat"]
    assert openai_upstream.requests == []
    assert client(gateway).chat.completions.create(model="chat", messages=MESSAGES).choices[0].message.content
