"""The objects built once from Settings and shared by every request: the request path's tools.

Policies can be swapped while serving (`reload_policies`); targets, tenants and keys are fixed
for the life of the process (a config change rolls the process).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from adapters import build_adapter
from adapters.base import Adapter
from gateway.auth import AdminAuthenticator, Authenticator
from gateway.config import ConfigError
from gateway.settings import Settings
from policies.breaker import BreakerBoard
from policies.engine import Router

log = logging.getLogger("switchyard.policy")


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
        self.admin = AdminAuthenticator(config.admin_keys)
        self.router: Router = settings.router()
        self.adapters: dict[str, Adapter] = {name: build_adapter(name, t) for name, t in config.targets.items()}
        self.breakers = BreakerBoard(config.targets.keys(), settings.policies.breaker)
        self.max_body_bytes = config.server.max_body_bytes
        self.policy = PolicyStatus(digest=settings.policies.digest)
        self.draining = False

    async def start(self) -> None:
        await asyncio.gather(*(adapter.start() for adapter in self.adapters.values()))

    async def close(self) -> None:
        await asyncio.gather(*(adapter.close() for adapter in self.adapters.values()), return_exceptions=True)

    def ready(self) -> bool:
        return not self.draining and all(adapter.ready() for adapter in self.adapters.values())

    def models_for(self, tenant_models: frozenset[str], all_models: bool) -> list[str]:
        known = sorted(self.router.aliases | self.adapters.keys())
        return known if all_models else [m for m in known if m in tenant_models]

    def reload_policies(self, env: Mapping[str, str]) -> bool:
        """Reads the policy files again and swaps them in if they are valid and changed.

        Returns whether a new version took effect; raises ConfigError (the old policy keeps
        serving) if the files are invalid.
        """
        return self.apply_policies(self.read_policies(env))

    def read_policies(self, env: Mapping[str, str]) -> Settings | ConfigError:
        """The current settings with freshly read policy files, or why they were rejected.

        Touches no live state, so it may run in a worker thread.
        """
        try:
            return self.settings.with_policies(env)
        except ConfigError as exc:
            return exc

    def apply_policies(self, loaded: Settings | ConfigError) -> bool:
        if isinstance(loaded, ConfigError):
            self.policy.last_error = str(loaded)
            log.error("policy reload rejected, version %d keeps serving:\n%s", self.policy.version, loaded)
            raise loaded
        self.policy.last_error = None
        if loaded.policies.digest == self.policy.digest:
            return False
        router = loaded.router()
        self.breakers.apply(loaded.policies.breaker)
        self.settings, self.router = loaded, router
        self.policy = PolicyStatus(self.policy.version + 1, loaded.policies.digest)
        log.info(
            "policy version %d loaded (%d routes, sha256 %s)", self.policy.version, len(router.routes), self.policy.digest[:12]
        )
        return True
