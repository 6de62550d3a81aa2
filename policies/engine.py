"""Decide: which route a request matches and which targets, in order, may serve it."""

from __future__ import annotations

import random
from collections.abc import Collection, Iterable
from dataclasses import dataclass

from policies.schema import Route, WeightedTarget


@dataclass(frozen=True, slots=True)
class RouteDecision:
    route: str
    targets: tuple[str, ...]  # the chosen target first, then the fallbacks


@dataclass(frozen=True, slots=True)
class RequestFacts:
    """What routing may look at; built once per request by the pipeline."""

    model: str
    tenant: str
    endpoint: str
    stream: bool


def _as_set(value: str | list[str] | None) -> frozenset[str] | None:
    if value is None:
        return None
    return frozenset([value]) if isinstance(value, str) else frozenset(value)


class CompiledRoute:
    __slots__ = ("name", "models", "tenants", "endpoints", "stream", "_targets", "_cumulative", "_total", "fallback")

    def __init__(self, route: Route) -> None:
        self.name = route.name
        self.models = _as_set(route.when.model)
        self.tenants = _as_set(route.when.tenant)
        self.endpoints = _as_set(route.when.endpoint)
        self.stream = route.when.stream
        entries = [s if isinstance(s, WeightedTarget) else WeightedTarget(target=s) for s in route.send]
        self._targets = tuple(e.target for e in entries)
        running = 0.0
        cumulative = []
        for entry in entries:
            running += entry.weight
            cumulative.append(running)
        self._cumulative = tuple(cumulative)
        self._total = running
        self.fallback = tuple(route.fallback)

    def matches(self, facts: RequestFacts) -> bool:
        return (
            (self.models is None or facts.model in self.models)
            and (self.tenants is None or facts.tenant in self.tenants)
            and (self.endpoints is None or facts.endpoint in self.endpoints)
            and (self.stream is None or facts.stream == self.stream)
        )

    def choose(self, draw: float) -> RouteDecision:
        """The decision for a uniform draw in [0, 1): the weighted pick first, then the fallbacks."""
        point = draw * self._total
        chosen = self._targets[-1]
        for target, edge in zip(self._targets, self._cumulative):
            if point < edge:
                chosen = target
                break
        ordered = (chosen,) + tuple(t for t in self.fallback if t != chosen)
        return RouteDecision(self.name, ordered)


class Router:
    """A compiled policy. Immutable: a reload builds a new Router and swaps it in whole."""

    def __init__(self, routes: Iterable[Route], targets: Collection[str], rng: random.Random | None = None) -> None:
        self._routes = tuple(CompiledRoute(r) for r in routes)
        self._targets = frozenset(targets)
        self._random = (rng or random.Random()).random
        self.aliases = frozenset(m for r in self._routes if r.models for m in r.models)

    def knows(self, model: str) -> bool:
        return model in self.aliases or model in self._targets

    def decide(self, facts: RequestFacts) -> RouteDecision | None:
        for route in self._routes:
            if route.matches(facts):
                return route.choose(self._random())
        if facts.model in self._targets:
            # A target no route claims is served as is: an implicit one-target route.
            return RouteDecision(facts.model, (facts.model,))
        return None
