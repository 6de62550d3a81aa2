"""Everything the gateway is configured with, loaded and cross-checked as one unit.

A config or policy file that fails any check is rejected whole, so a reload never leaves a
half-applied state behind.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from gateway.auth import hash_key
from gateway.config import ConfigError, GatewayConfig, ServerConfig, TargetConfig, TenantConfig, load_config
from gateway.yamlsource import SourceError
from policies.catalog import Catalog
from policies.engine import Router
from policies.loader import PolicySet, load_policies

DEMO_KEY = "sk-switchyard-demo"


@dataclass(frozen=True)
class Settings:
    config: GatewayConfig
    policies: PolicySet
    source: str | None  # the config file, or None for the built-in zero-config setup

    def policy_paths(self) -> list[Path]:
        base = Path(self.source).parent if self.source else Path.cwd()
        return [base / p for p in self.config.policies]

    def router(self, catalog: Catalog | None = None) -> Router:
        return Router(self.policies.routes, self.config.targets.keys(), catalog=catalog)

    def with_policies(self, env: Mapping[str, str]) -> Settings:
        """These settings with the policy files read again; raises ConfigError if any is bad."""
        return _checked(self.config, load_policies(self.policy_paths(), self.config.targets.keys(), env), self.source)


def load_settings(config_path: str | Path, env: Mapping[str, str]) -> Settings:
    path = Path(config_path)
    config = load_config(path, env)
    policy_paths = [path.parent / p for p in config.policies]
    return _checked(config, load_policies(policy_paths, config.targets.keys(), env), str(path))


def _checked(config: GatewayConfig, policies: PolicySet, source: str | None) -> Settings:
    settings = Settings(config, policies, source)
    router = settings.router()
    problems = [
        SourceError(source or "config", None, ("tenants", tenant, "models", i), f"unknown model {model!r}: not a target or a route alias")
        for tenant, spec in config.tenants.items()
        for i, model in enumerate(spec.models)
        if model != "*" and not router.knows(model)
    ]
    if problems:
        raise ConfigError(problems)
    return settings


def demo_settings(host: str = "127.0.0.1", port: int = 8080) -> Settings:
    """Zero config: the echo target and a demo tenant whose well-known key only reaches echo."""
    config = GatewayConfig(
        server=ServerConfig(host=host, port=port),
        targets={"echo": TargetConfig(adapter="echo")},
        tenants={"demo": TenantConfig(keys=[hash_key(DEMO_KEY)], models=["echo"])},
    )
    return Settings(config, PolicySet(), None)
