"""Openness-aware routing through a real gateway: requirements, capabilities and context windows
decide which upstream gets each request, before any upstream call."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import openai
import pytest

from fakes.keys import make_key

ROOT = Path(__file__).resolve().parent.parent
KEY, KEY_HASH = make_key("acme")
EU_KEY, EU_HASH = make_key("eu-bank")
HELLO = [{"role": "user", "content": "hello"}]
TOOLS = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object", "properties": {}}}}]


@pytest.fixture
def upstreams(make_openai_upstream):
    return {name: make_openai_upstream(name) for name in ("closed-us", "open-eu", "big")}


@pytest.fixture
def gateway(upstreams, start_gateway):
    def target(name, **meta):
        return {"adapter": "openai", "base_url": upstreams[name].base_url, "model": f"{name}-model", **meta}

    config = {
        "targets": {
            "closed-us": target("closed-us", kind="closed_api", residency="us", capabilities=["tools", "json_mode"], context_window=100000),
            "open-eu": target("open-eu", license="Apache-2.0", residency="eu", capabilities=["json_mode"], context_window=40),
            "big": target("big", license="llama3.1", residency="eu", capabilities=["tools", "json_mode"], context_window=100000),
        },
        "tenants": {
            "acme": {"keys": [KEY_HASH], "models": ["*"]},
            "eu-bank": {"keys": [EU_HASH], "models": ["*"], "require": {"residency": ["eu", "on_prem"]}},
        },
    }
    policy = {
        "version": 1,
        "routes": [
            {"name": "open-only", "when": {"model": "open-chat"}, "send": ["closed-us"], "fallback": ["open-eu", "big"],
             "require": {"openness": ["open_weight", "open_source"]}},
            {"name": "source-only", "when": {"model": "source-chat"}, "send": ["closed-us"], "require": {"openness": "open_source"}},
            {"name": "chat", "when": {"model": "chat"}, "send": ["closed-us"], "fallback": ["open-eu", "big"]},
            {"name": "short", "when": {"model": "short"}, "send": ["open-eu"]},
        ],
    }
    return start_gateway(config, policies={"policy.yaml": policy})


def sdk(gateway, key=KEY):
    return openai.OpenAI(base_url=gateway.openai_base_url, api_key=key, max_retries=0)


def served_by(raw) -> str:
    return raw.headers["x-switchyard-target"]


def test_route_requirement_skips_closed_targets(gateway, upstreams):
    raw = sdk(gateway).chat.completions.with_raw_response.create(model="open-chat", messages=HELLO)
    assert served_by(raw) == "open-eu" and raw.headers["x-switchyard-attempts"] == "1"
    assert raw.parse().choices[0].message.content == "open-eu:open-eu-model:hello"
    assert upstreams["closed-us"].requests == []


def test_tenant_requirement_keeps_eu_data_in_the_eu(gateway, upstreams):
    raw = sdk(gateway, EU_KEY).chat.completions.with_raw_response.create(model="chat", messages=HELLO)
    assert served_by(raw) == "open-eu"
    raw = sdk(gateway, KEY).chat.completions.with_raw_response.create(model="chat", messages=HELLO)
    assert served_by(raw) == "closed-us"
    with pytest.raises(openai.PermissionDeniedError) as info:
        sdk(gateway, EU_KEY).chat.completions.create(model="closed-us", messages=HELLO)
    error = info.value.response.json()["error"]
    assert error["code"] == "requirement_not_met"
    assert error["message"] == "No target of route 'closed-us' meets the requirements: closed-us: residency us not in [eu, on_prem]"
    assert len(upstreams["closed-us"].requests) == 1, "only acme's request reached the US target"


def test_unsatisfiable_requirement_is_a_clear_403(gateway, upstreams):
    with pytest.raises(openai.PermissionDeniedError) as info:
        sdk(gateway).chat.completions.create(model="source-chat", messages=HELLO)
    assert info.value.response.json()["error"]["message"] == (
        "No target of route 'source-only' meets the requirements: closed-us: openness closed not in [open_source]"
    )
    assert all(u.requests == [] for u in upstreams.values())


def test_tools_go_only_to_tool_capable_targets(gateway, upstreams):
    raw = sdk(gateway, EU_KEY).chat.completions.with_raw_response.create(model="chat", messages=[{"role": "user", "content": "call a tool"}], tools=TOOLS)
    assert served_by(raw) == "big", "open-eu lacks tools; the chain continues to big"
    assert raw.parse().choices[0].message.tool_calls[0].function.name == "lookup"
    assert upstreams["open-eu"].requests == []


def test_long_prompts_skip_small_context_windows(gateway, upstreams):
    long_prompt = [{"role": "user", "content": "word " * 100}]
    raw = sdk(gateway, EU_KEY).chat.completions.with_raw_response.create(model="chat", messages=long_prompt)
    assert served_by(raw) == "big"
    assert upstreams["open-eu"].requests == []
    with pytest.raises(openai.BadRequestError) as info:
        sdk(gateway).chat.completions.create(model="short", messages=long_prompt)
    assert info.value.response.json()["error"]["code"] == "context_length_exceeded"
    assert upstreams["open-eu"].requests == []


def test_models_list_carries_metadata(gateway):
    cards = {m.id: m.model_dump() for m in sdk(gateway).models.list()}
    assert cards["open-eu"]["openness"] == "open_source" and cards["open-eu"]["residency"] == "eu"
    assert cards["big"]["openness"] == "open_weight" and cards["big"]["license"] == "llama3.1"
    assert cards["closed-us"]["kind"] == "closed_api" and cards["closed-us"]["context_window"] == 100000
    assert cards["chat"]["targets"] == ["closed-us", "open-eu", "big"]


def test_explain_lists_every_excluded_candidate(gateway):
    request = json.dumps({"model": "chat", "messages": [{"role": "user", "content": "call a tool"}], "tools": TOOLS})
    result = subprocess.run(
        [sys.executable, "-m", "gateway", "policy", "explain", "--config", str(gateway.config_path), "--request", "-", "--tenant", "eu-bank"],
        input=request, capture_output=True, text=True, cwd=ROOT, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "    excluded closed-us: residency us not in [eu, on_prem]" in lines
    assert "    excluded open-eu: does not support tools" in lines
    assert "    if closed-us is picked: big" in lines
    catalog = subprocess.run(
        [sys.executable, "-m", "gateway", "catalog", "--config", str(gateway.config_path), "--json"],
        capture_output=True, text=True, cwd=ROOT, timeout=60,
    )
    rows = {row["target"]: row for row in json.loads(catalog.stdout)}
    assert rows["open-eu"]["openness"] == "open_source" and rows["closed-us"]["kind"] == "closed_api"


def test_metrics_split_traffic_and_cost_by_openness_and_kind(gateway):
    from fakes.metrics import scrape

    client = sdk(gateway, EU_KEY)
    client.chat.completions.create(model="chat", messages=HELLO)  # → open-eu (open_source, self_hosted)
    sdk(gateway).chat.completions.create(model="chat", messages=HELLO)  # → closed-us (closed, closed_api)
    metrics = scrape(gateway)
    assert metrics.value("switchyard_requests_total", target="open-eu", openness="open_source", kind="self_hosted") == 1
    assert metrics.value("switchyard_requests_total", target="closed-us", openness="closed", kind="closed_api") == 1
    assert metrics.value("switchyard_tokens_total", type="input", openness="open_source") > 0
