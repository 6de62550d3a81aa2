"""Ways of reaching a model. One module per way, all behind `adapters.base.Adapter`."""

from __future__ import annotations

from gateway.config import TargetConfig

from adapters.base import Adapter


def build_adapter(name: str, target: TargetConfig) -> Adapter:
    """The adapter for one configured target; imports only what that adapter needs."""
    if target.adapter == "openai":
        from adapters.openai import OpenAIAdapter

        return OpenAIAdapter(name, target)
    if target.adapter == "litellm":
        from adapters.litellm import LiteLLMAdapter

        return LiteLLMAdapter(name, target)
    from adapters.echo import EchoAdapter

    return EchoAdapter(name, target)
