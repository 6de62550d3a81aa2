"""The one place cost is computed, for metrics, the cost header and budgets alike.

Prices come from the target's configured `price` (self-hosted models), else from litellm's price
map as bundled in the installed package (read as a file: no litellm import, no network), else unknown
(cost zero, and no cost header). The built-in echo target is free.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from adapters.base import Usage
from gateway.config import TargetConfig

PRICE_MAP_FILE = "model_prices_and_context_window_backup.json"


@dataclass(frozen=True, slots=True)
class Rate:
    input_per_token: float
    output_per_token: float
    source: str  # "config", "litellm", "builtin" (echo: free) or "unknown"


UNKNOWN = Rate(0.0, 0.0, "unknown")
FREE = Rate(0.0, 0.0, "builtin")


def bundled_price_map() -> dict[str, Any]:
    """litellm's model map from its installed package; empty when litellm is not installed."""
    spec = importlib.util.find_spec("litellm")
    if spec is None or not spec.submodule_search_locations:
        return {}
    path = Path(next(iter(spec.submodule_search_locations))) / PRICE_MAP_FILE
    try:
        data = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def price_map_for(targets: Mapping[str, TargetConfig]) -> dict[str, Any]:
    """The bundled map when some target could be looked up in it (prices, context windows,
    capabilities); parsing it costs ~40 ms, so configs without such targets skip it."""
    return bundled_price_map() if any(t.adapter != "echo" and t.model for t in targets.values()) else {}


def lookup(price_map: Mapping[str, Any], model: str) -> Mapping[str, Any] | None:
    """A model's entry, trying `provider/model` as written, then without the provider prefix."""
    for name in (model, model.split("/", 1)[-1]):
        entry = price_map.get(name)
        if isinstance(entry, dict):
            return entry
    return None


class CostModel:
    """Per-target token rates, resolved once at start-up."""

    def __init__(self, targets: Mapping[str, TargetConfig], price_map: Mapping[str, Any] | None = None) -> None:
        if price_map is None:
            price_map = price_map_for(targets)
        self._rates = {name: _rate(target, price_map) for name, target in targets.items()}

    def rate(self, target: str) -> Rate:
        return self._rates.get(target, UNKNOWN)

    def cost_usd(self, target: str, usage: Usage) -> float:
        rate = self._rates.get(target, UNKNOWN)
        return usage.input_tokens * rate.input_per_token + usage.output_tokens * rate.output_per_token


def _rate(target: TargetConfig, price_map: Mapping[str, Any]) -> Rate:
    if target.price is not None:
        return Rate(target.price.input_per_mtok / 1e6, target.price.output_per_mtok / 1e6, "config")
    if target.adapter == "echo":
        return FREE
    if not target.model:
        return UNKNOWN
    entry = lookup(price_map, target.model)
    if entry is None:
        return UNKNOWN
    input_rate = entry.get("input_cost_per_token")
    output_rate = entry.get("output_cost_per_token")
    if not isinstance(input_rate, (int, float)) or not isinstance(output_rate, (int, float)):
        return UNKNOWN
    return Rate(float(input_rate), float(output_rate), "litellm")
