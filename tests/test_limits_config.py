"""Limits in config and policy files (validated, located errors) and how refusals read."""

from __future__ import annotations

from pathlib import Path

import pytest

from adapters.base import Endpoint
from gateway.auth import Tenant, key_id
from gateway.config import ConfigError, GatewayConfig, Limits, StateConfig
from gateway.exchange import Exchange
from gateway.limit import Limiter, openai_duration, refusal
from gateway.limits_base import Kind, LimitSpec, Verdict
from gateway.settings import load_settings
from policies.conditions import RequestFacts
from policies.engine import RouteDecision

HASH = "sha256:" + "a" * 64
OTHER = "sha256:" + "b" * 64


def problems(tmp_path: Path, config: str, policy: str | None = None) -> list[str]:
    if policy is not None:
        (tmp_path / "p.yaml").write_text(policy)
    path = tmp_path / "config.yaml"
    path.write_text(config)
    with pytest.raises(ConfigError) as info:
        load_settings(path, {})
    return [str(p).removeprefix(f"{tmp_path}/") for p in info.value.problems]


def test_limit_errors_name_file_line_and_field(tmp_path):
    config = f"""targets: {{echo: {{adapter: echo}}}}
state: {{redis_url: "http://redis:6379", on_redis_error: fail_later}}
tenants:
  acme:
    keys:
      - {HASH}
      - {{hash: "{OTHER}", label: ci, limits: {{requests_per_minute: 0}}}}
    models: [echo]
    limits: {{tokens_per_minute: 1.5, usd_per_day: -1, requests_per_hour: 5}}
"""
    assert problems(tmp_path, config) == [
        "config.yaml:2: state.redis_url: String should match pattern '^(redis|rediss|unix)://\\S+$'",
        "config.yaml:2: state.on_redis_error: Input should be 'fail_open' or 'fail_closed'",
        "config.yaml:7: tenants.acme.keys[1].limits.requests_per_minute: Input should be greater than or equal to 1",
        "config.yaml:7: tenants.acme.keys[1].label: Extra inputs are not permitted",
        "config.yaml:9: tenants.acme.limits.tokens_per_minute: Input should be a valid integer, got a number with a fractional part",
        "config.yaml:9: tenants.acme.limits.usd_per_day: Input should be greater than 0",
        "config.yaml:9: tenants.acme.limits.requests_per_hour: Extra inputs are not permitted",
    ]


def test_a_key_listed_twice_is_caught_in_either_form(tmp_path):
    config = f"""targets: {{echo: {{adapter: echo}}}}
tenants:
  a: {{keys: ["{HASH}"], models: [echo]}}
  b: {{keys: [{{hash: "{HASH}", limits: {{requests_per_minute: 5}}}}], models: [echo]}}
"""
    assert problems(tmp_path, config) == ["config.yaml:1: key hash is listed for both tenants 'a' and 'b'"]


def test_route_limit_errors_are_located_in_the_policy_file(tmp_path):
    policy = "version: 1\nroutes:\n  - name: r\n    when: {model: chat}\n    send: [echo]\n    limits_per_tenant: {concurrent_requests: 0}\n"
    config = "targets: {echo: {adapter: echo}}\npolicies: [p.yaml]\n"
    assert problems(tmp_path, config, policy) == [
        "p.yaml:6: routes[0].limits_per_tenant.concurrent_requests: Input should be greater than or equal to 1"
    ]


def test_plain_key_hashes_and_key_objects_live_side_by_side():
    config = GatewayConfig.model_validate(
        {"tenants": {"acme": {"keys": [HASH, {"hash": OTHER, "name": "ci"}], "models": ["*"], "limits": {"usd_per_day": 5}}}}
    )
    keys = config.tenants["acme"].key_configs()
    assert [(k.hash, k.name, k.limits) for k in keys] == [(HASH, None, Limits()), (OTHER, "ci", Limits())]


@pytest.mark.parametrize(
    ("ms", "text"),
    [(0, "0ms"), (120, "120ms"), (1000, "1s"), (1500, "1.5s"), (59_999, "59.999s"), (60_000, "1m0s"), (360_000, "6m0s"),
     (3_723_400, "1h2m3.4s"), (86_400_000, "24h0m0s")],
)  # fmt: skip
def test_reset_durations_are_written_as_openai_writes_them(ms, text):
    assert openai_duration(ms) == text


def verdict(retry_ms: int) -> Verdict:
    return Verdict(False, 0, retry_ms, -1, 0, 0, -1, 0, 0, 0)


def spec(kind: Kind, amount: float, scope: str = "tenant 'acme'") -> LimitSpec:
    return LimitSpec(kind, amount, 60_000, ("k",), scope)


def test_refusals_name_the_limit_and_when_to_come_back():
    rate = refusal(spec(Kind.REQUESTS, 100), verdict(12_300), 0)
    assert rate.status == 429 and rate.code == "rate_limit_exceeded"
    assert rate.message == "Rate limit reached for tenant 'acme': requests per minute (limit 100). Try again in 12.3s."
    assert dict(rate.headers) == {b"retry-after": b"13", b"retry-after-ms": b"12300"}
    budget = refusal(spec(Kind.USD_MONTH, 50.0, "API key 'ci'"), verdict(90_000_000), 0)
    assert budget.code == "budget_exceeded" and "API key 'ci' has spent its 50 USD per month" in budget.message
    assert dict(budget.headers)[b"x-should-retry"] == b"false"
    too_big = refusal(spec(Kind.TOKENS, 1000), verdict(-1), 4000)
    assert "~4000 prompt tokens" in too_big.message and b"retry-after" not in dict(too_big.headers)


async def test_requests_without_limits_cost_no_call_and_carry_no_headers():
    config = GatewayConfig.model_validate({"tenants": {"free": {"keys": [HASH], "models": ["*"]}}})
    limiter = Limiter(StateConfig(), config.tenants)
    exchange = Exchange(Endpoint.CHAT, b"id")
    tenant = Tenant("free", frozenset(), True, key_id(HASH))
    await limiter.admit(tenant, RouteDecision("r", ("echo",)), RequestFacts("echo", "free", "chat", False), exchange)
    assert exchange.ratelimit_headers == () and exchange.admission is None
