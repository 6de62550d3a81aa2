"""The objects built once from Settings and shared by every request: the request path's tools.

Policies can be swapped while serving (`reload_policies`); targets, tenants and keys are fixed
for the life of the process (a config change rolls the process).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from adapters import build_adapter
from adapters.base import Adapter
from gateway.auth import Authenticator, OperatorKeys, Tenant
from gateway.config import ConfigError
from gateway.limit import Limiter
from gateway.settings import Settings
from observability.cost import price_map_for
from policies.breaker import BreakerBoard
from policies.catalog import Catalog, Screen
from policies.engine import Router
from gateway.safety.behaviour import BehaviourBook
from gateway.safety.engine import SafetyEngine

log = logging.getLogger("switchyard.policy")

YOUNG_COLLECTION_THRESHOLD = 10_000  # see Runtime.start


@dataclass(frozen=True)
class LoadedPolicies:
    settings: Settings
    safety: SafetyEngine


@dataclass
class PolicyStatus:
    version: int = 1
    digest: str = ""
    loaded_at: float = field(default_factory=time.time)
    last_error: str | None = None


class Runtime:
    def __init__(self, settings: Settings) -> None:
        config = settings.config
        self.settings = settings
        self.authenticator = Authenticator(config.tenants)
        self.admin = OperatorKeys(config.admin_keys, "Admin endpoints need an admin key.")
        metrics_keys = config.observability.metrics_keys
        self.metrics_access = OperatorKeys(metrics_keys, "GET /metrics needs a metrics key.") if metrics_keys else None
        self.price_map = price_map_for(config.targets)  # litellm's bundled model map, parsed once
        self.catalog = Catalog(config.targets, self.price_map)
        self.screen = Screen(self.catalog, config.tenants)
        self.router: Router = settings.router(self.catalog)
        self.adapters: dict[str, Adapter] = {name: build_adapter(name, t) for name, t in config.targets.items()}
        self.breakers = BreakerBoard(config.targets.keys(), settings.policies.breaker)
        self.max_body_bytes = config.server.max_body_bytes
        self.policy = PolicyStatus(digest=settings.policies.digest)
        self.limiter = Limiter(config.state, config.tenants)
        self.behaviour = BehaviourBook(config.state)
        self.safety = SafetyEngine(settings.policies.safety, self.behaviour)
        self.draining = False

    async def start(self) -> None:
        await asyncio.gather(self.limiter.start(), *(adapter.start() for adapter in self.adapters.values()))
        # What start-up built (modules, config, Presidio's recognizers when PII is on) lives as long as the
        # process: out of the cyclic collector's scans, which otherwise walk it all on every full collection.
        gc.freeze()
        # A request allocates a few hundred tracked objects, nearly all freed by reference counting when it ends;
        # at the default threshold (700) the young generation is collected every few requests for almost nothing.
        # 10,000 cut 3-7 % of the CPU per request with the safety filters on (alternating runs of bench/run.py's
        # full pipeline on two days), for a few MB of garbage at most; the rarer young collections walk at most
        # 10,000 objects, and p99 at 200 req/s did not move.
        gc.set_threshold(YOUNG_COLLECTION_THRESHOLD, *gc.get_threshold()[1:])

    async def close(self) -> None:
        adapters = (adapter.close() for adapter in self.adapters.values())
        await asyncio.gather(self.limiter.close(), self.behaviour.close(), *adapters, return_exceptions=True)

    def ready(self) -> bool:
        return not self.draining and self.limiter.ready() and all(adapter.ready() for adapter in self.adapters.values())

    def models_for(self, tenant: Tenant) -> list[str]:
        """What the tenant may ask for: an alias only when one of its routes can match the tenant."""
        router = self.router
        aliases = {alias for alias in router.aliases if router.reachable(alias, tenant.name)}
        return sorted(m for m in aliases | self.adapters.keys() if tenant.may_use(m))

    def model_card(self, name: str, tenant: Tenant) -> dict[str, Any]:
        """An OpenAI model object, with the target's catalog metadata (or an alias's targets) as extra fields."""
        card: dict[str, Any] = {"id": name, "object": "model", "created": 0, "owned_by": "switchyard"}
        profile = self.catalog.profiles.get(name)
        if profile is not None:
            card.update(profile.as_json())
        else:
            card["targets"] = self.router.targets_of(name, tenant.name)
        return card

    def reload_policies(self, env: Mapping[str, str]) -> bool:
        """Reads the policy files again and swaps them in if they are valid and changed.

        Returns whether a new version took effect; raises ConfigError (the old policy keeps
        serving) if the files are invalid.
        """
        return self.apply_policies(self.read_policies(env))

    def read_policies(self, env: Mapping[str, str]) -> LoadedPolicies | ConfigError:
        """The current settings with freshly read policy files (and the safety filters they ask for),
        or why they were rejected.

        Touches no live state, so it may run in a worker thread (building PII detection takes a while).
        """
        try:
            settings = self.settings.with_policies(env)
        except ConfigError as exc:
            return exc
        if settings.policies.digest == self.policy.digest:
            return LoadedPolicies(settings, self.safety)
        return LoadedPolicies(settings, SafetyEngine(settings.policies.safety, self.behaviour))

    def apply_policies(self, loaded: LoadedPolicies | ConfigError) -> bool:
        if isinstance(loaded, ConfigError):
            self.policy.last_error = str(loaded)
            log.error("policy reload rejected, version %d keeps serving:\n%s", self.policy.version, loaded)
            raise loaded
        self.policy.last_error = None
        if loaded.settings.policies.digest == self.policy.digest:
            return False
        router = loaded.settings.router(self.catalog)
        self.breakers.apply(loaded.settings.policies.breaker)
        self.settings, self.router, self.safety = loaded.settings, router, loaded.safety
        self.policy = PolicyStatus(self.policy.version + 1, loaded.settings.policies.digest)
        log.info(
            "policy version %d loaded (%d routes, sha256 %s)", self.policy.version, len(router.routes), self.policy.digest[:12]
        )
        return True
