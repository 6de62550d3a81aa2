"""The objects built once from Settings and shared by every request: the request path's tools."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from adapters import build_adapter
from adapters.base import Adapter
from gateway.auth import AdminAuthenticator, Authenticator
from gateway.settings import Settings
from policies.engine import Router


@dataclass
class Runtime:
    settings: Settings
    authenticator: Authenticator
    admin: AdminAuthenticator
    router: Router
    adapters: dict[str, Adapter]
    max_body_bytes: int
    draining: bool = field(default=False)

    @classmethod
    def build(cls, settings: Settings) -> Runtime:
        config = settings.config
        return cls(
            settings=settings,
            authenticator=Authenticator(config.tenants),
            admin=AdminAuthenticator(config.admin_keys),
            router=settings.router(),
            adapters={name: build_adapter(name, target) for name, target in config.targets.items()},
            max_body_bytes=config.server.max_body_bytes,
        )

    async def start(self) -> None:
        await asyncio.gather(*(adapter.start() for adapter in self.adapters.values()))

    async def close(self) -> None:
        await asyncio.gather(*(adapter.close() for adapter in self.adapters.values()), return_exceptions=True)

    def ready(self) -> bool:
        return not self.draining and all(adapter.ready() for adapter in self.adapters.values())

    def models_for(self, tenant_models: frozenset[str], all_models: bool) -> list[str]:
        known = sorted(self.router.aliases | self.adapters.keys())
        return known if all_models else [m for m in known if m in tenant_models]
