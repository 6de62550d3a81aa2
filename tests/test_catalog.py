"""The model catalog's defaults (litellm's bundled map, the SPDX list) and the request screen."""

from __future__ import annotations

import pytest

from gateway.config import Requirements, TargetConfig, TenantConfig
from gateway.errors import GatewayError
from observability.cost import bundled_price_map
from policies.catalog import Catalog, Screen, openness_of_license, request_needs
from policies.conditions import RequestFacts
from policies.engine import RouteDecision


@pytest.fixture(scope="module")
def price_map():
    return bundled_price_map()


def test_defaults_from_litellms_map(price_map):
    catalog = Catalog(
        {
            "gpt": TargetConfig(adapter="litellm", model="openai/gpt-4o"),
            "claude": TargetConfig(adapter="litellm", model="anthropic/claude-sonnet-4-5"),
            "embed": TargetConfig(adapter="openai", base_url="http://x/v1", model="text-embedding-3-small", kind="closed_api"),
            "vllm": TargetConfig(adapter="openai", base_url="http://x/v1", model="my-finetune"),
        },
        price_map,
    )
    gpt, claude, embed, vllm = (catalog.profiles[n] for n in ("gpt", "claude", "embed", "vllm"))
    assert (gpt.kind, gpt.openness, gpt.context_window) == ("closed_api", "closed", 128000)
    assert gpt.capabilities == {"tools", "vision", "json_mode"}
    assert claude.context_window == 200000 and "tools" in claude.capabilities
    assert embed.capabilities == {"embeddings"} and embed.context_window == 8191
    assert (vllm.kind, vllm.openness, vllm.data_retention, vllm.capabilities) == ("self_hosted", None, "none", None)


@pytest.mark.parametrize(
    ("license_id", "openness"),
    [("Apache-2.0", "open_source"), ("MIT", "open_source"), ("GPL-3.0-only", "open_source"),
     ("CC-BY-NC-4.0", "open_weight"), ("llama3.1", "open_weight"), (None, None)],
)
def test_openness_from_the_spdx_list(license_id, openness):
    assert openness_of_license(license_id) == openness


def test_explicit_metadata_wins(price_map):
    target = TargetConfig(adapter="litellm", model="openai/gpt-4o", context_window=1000, capabilities=["tools"], residency="us")
    profile = Catalog({"t": target}, price_map).profiles["t"]
    assert (profile.context_window, profile.capabilities, profile.residency) == (1000, {"tools"}, "us")


def test_request_needs():
    assert request_needs("embedding", {}) == {"embeddings"}
    assert request_needs("chat", {"tools": [{}], "response_format": {"type": "json_schema"}}) == {"tools", "json_mode"}
    image = {"role": "user", "content": [{"type": "text", "text": "x"}, {"type": "image_url", "image_url": {"url": "data:"}}]}
    assert request_needs("chat", {"messages": [image]}) == {"vision"}
    assert request_needs("chat", {"messages": [{"role": "user", "content": "plain"}], "response_format": {"type": "text"}}) == frozenset()


def test_screen_drops_targets_and_names_what_is_unmet(price_map):
    catalog = Catalog(
        {
            "us": TargetConfig(adapter="openai", base_url="http://x/v1", model="m", residency="us", capabilities=["tools"]),
            "eu": TargetConfig(adapter="openai", base_url="http://x/v1", model="m", residency="eu", capabilities=[], context_window=10),
        },
        price_map,
    )
    def tenant(require: Requirements | None) -> TenantConfig:
        return TenantConfig(keys=["sha256:" + "a" * 64], models=["*"], require=require)

    screen = Screen(catalog, {"eu-only": tenant(Requirements(residency=["eu"])), "any": tenant(None)})
    decision = RouteDecision("chat", ("us", "eu"))
    short = RequestFacts("chat", "eu-only", "chat", False, {}, {"messages": [{"role": "user", "content": "hi"}]})
    assert screen.apply(decision, "eu-only", short).targets == ("eu",)
    assert screen.apply(decision, "any", short) is decision
    long_body = {"messages": [{"role": "user", "content": "word " * 100}]}
    assert screen.apply(decision, "any", RequestFacts("chat", "any", "chat", False, {}, long_body)).targets == ("us",)
    with pytest.raises(GatewayError) as info:
        screen.apply(decision, "eu-only", RequestFacts("chat", "eu-only", "chat", False, {}, long_body))
    assert info.value.status == 403 and info.value.code == "requirement_not_met"
    assert info.value.message == (
        "No target of route 'chat' meets the requirements: us: residency us not in [eu]; "
        "eu: ~125 prompt tokens exceed its context window of 10"
    )
    tools = {"tools": [{"type": "function"}], "messages": [{"role": "user", "content": "x"}]}
    with pytest.raises(GatewayError) as info:
        screen.apply(decision, "eu-only", RequestFacts("chat", "eu-only", "chat", False, {}, tools))
    assert info.value.status == 403
    with pytest.raises(GatewayError) as info:
        screen.apply(RouteDecision("chat", ("eu",)), "any", RequestFacts("chat", "any", "chat", False, {}, tools))
    assert (info.value.status, info.value.code) == (400, "capability_not_supported")
