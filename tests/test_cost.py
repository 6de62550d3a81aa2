"""The cost module: configured prices, litellm's bundled map, unknown models."""

from __future__ import annotations

import pytest

from adapters.base import Usage
from gateway.config import TargetConfig
from observability.cost import CostModel, bundled_price_map


def test_bundled_price_map_is_read_offline_and_knows_closed_models():
    prices = bundled_price_map()
    assert prices["gpt-4o"]["input_cost_per_token"] == pytest.approx(2.5e-06)
    assert prices["claude-sonnet-4-5"]["output_cost_per_token"] == pytest.approx(1.5e-05)


def test_costs_by_source():
    targets = {
        "gpt-4o": TargetConfig(adapter="litellm", model="openai/gpt-4o"),
        "claude": TargetConfig(adapter="litellm", model="anthropic/claude-sonnet-4-5"),
        "llama": TargetConfig(adapter="openai", base_url="http://h/v1", model="meta/llama", price={"input_per_mtok": 0.2, "output_per_mtok": 0.4}),
        "mystery": TargetConfig(adapter="openai", base_url="http://h/v1", model="no-such-model"),
        "echo": TargetConfig(adapter="echo"),
    }
    model = CostModel(targets)
    usage = Usage(input_tokens=1000, output_tokens=500)
    assert model.cost_usd("gpt-4o", usage) == pytest.approx(1000 * 2.5e-06 + 500 * 1e-05)
    assert model.cost_usd("claude", usage) == pytest.approx(1000 * 3e-06 + 500 * 1.5e-05)
    assert model.cost_usd("llama", usage) == pytest.approx((1000 * 0.2 + 500 * 0.4) / 1e6)
    assert model.rate("llama").source == "config" and model.rate("gpt-4o").source == "litellm"
    assert model.cost_usd("mystery", usage) == 0.0 and model.rate("mystery").source == "unknown"
    assert model.cost_usd("echo", usage) == 0.0
