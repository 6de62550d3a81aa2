"""Decide: which route a request matches and which targets, in order, may serve it.

A Router is a compiled policy and never changes; a reload builds a new one and swaps it in whole,
so a request in flight keeps the decision it started with.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import dataclass

from gateway.config import Limits
from policies.catalog import Catalog
from policies.conditions import RequestFacts, compile_first_match, compile_when, safety_reads
from policies.schema import Retry, Route, WeightedTarget, When

NO_RETRY = Retry(attempts=1)


@dataclass(frozen=True, slots=True)
class RouteDecision:
    route: str
    targets: tuple[str, ...]  # the chosen target first, then the fallbacks
    retry: Retry = NO_RETRY
    fallback_on: frozenset[str] = frozenset({"429", "5xx", "timeout", "connect"})
    timeout_s: float | None = None
    attempt_timeout_s: float | None = None
    deny: str | None = None
    excluded: tuple[str, ...] = ()  # why targets of the route were dropped, for errors and explain
    limits: Limits | None = None  # the route's limits_per_tenant
    keep_pii: bool = False  # the route's targets may receive personal data as sent


class CompiledRoute:
    __slots__ = ("name", "models", "condition", "sticky", "weights", "_decisions", "_cumulative", "_total", "route")

    def __init__(self, route: Route, catalog: Catalog | None = None) -> None:
        self.route = route
        self.name = route.name
        model = route.when.model
        self.models = None if model is None else frozenset([model] if isinstance(model, str) else model)
        self.condition = compile_when(route.when)
        self.sticky = route.sticky == "user"
        entries = [s if isinstance(s, WeightedTarget) else WeightedTarget(target=s) for s in route.send]
        self.weights = tuple((e.target, e.weight) for e in entries)
        common = {
            "retry": route.retry,
            "fallback_on": frozenset(route.fallback_on),
            "timeout_s": route.timeout_s,
            "attempt_timeout_s": route.attempt_timeout_s,
            "limits": route.limits_per_tenant,
            "keep_pii": route.keep_pii,
        }
        if route.deny is not None:
            self._decisions: tuple[RouteDecision, ...] = (RouteDecision(self.name, (), deny=route.deny),)
            self._cumulative: tuple[float, ...] = (1.0,)
            self._total = 1.0
            return
        decisions, cumulative, running = [], [], 0.0
        for entry in entries:
            if entry.weight <= 0:
                continue
            chain = (entry.target,) + tuple(dict.fromkeys(t for t in route.fallback if t != entry.target))
            excluded = catalog.exclusions(chain, route.require) if catalog is not None else {}
            allowed = tuple(t for t in chain if t not in excluded)
            decisions.append(RouteDecision(self.name, allowed, **common, excluded=tuple(excluded.values())))
            running += entry.weight
            cumulative.append(running)
        self._decisions = tuple(decisions)
        self._cumulative = tuple(cumulative)
        self._total = running

    def choose(self, facts: RequestFacts, draw: float) -> RouteDecision:
        if len(self._decisions) == 1:
            return self._decisions[0]
        if self.sticky and facts.user is not None:
            digest = hashlib.blake2b(f"{self.name}\0{facts.user}".encode(), digest_size=8).digest()
            draw = int.from_bytes(digest, "big") / 2.0**64
        point = draw * self._total
        for decision, edge in zip(self._decisions, self._cumulative):
            if point < edge:
                return decision
        return self._decisions[-1]

    def candidates(self) -> tuple[RouteDecision, ...]:
        return self._decisions


class Presumption:
    """The decision made before the safety scan, and what the scan could change about it.

    A request is routed once before it is scanned, as if the scan finds nothing, so that work which depends
    only on the route (its limits, in Redis) can run while the scan does. `final` gives the decision once the
    findings are in the facts: the presumed one, unless a route up to the one that matched reads a finding
    the scan made (then the request is routed again).
    """

    __slots__ = ("decision", "_reads", "_router")

    def __init__(self, router: Router, decision: RouteDecision | None, reads: frozenset[str]) -> None:
        self.decision = decision
        self._reads = reads
        self._router = router

    def final(self, facts: RequestFacts) -> RouteDecision | None:
        reads = self._reads
        if reads and ((facts.pii_entities and "pii" in reads) or (facts.safety_flags and "flags" in reads)):
            return self._router.decide(facts)
        return self.decision


class Router:
    def __init__(
        self, routes: Iterable[Route], targets: Collection[str], rng: random.Random | None = None, catalog: Catalog | None = None
    ) -> None:
        self.routes = tuple(CompiledRoute(r, catalog) for r in routes)
        self._targets = frozenset(targets)
        self._random = (rng or random.Random()).random
        self.aliases = frozenset(m for r in self.routes if r.models for m in r.models)
        # Per model alias, the routes that can match it, in order, compiled into one function whose
        # model tests are already settled by the lookup.
        self._for_model = {alias: self._group([r for r in self.routes if r.models is None or alias in r.models]) for alias in self.aliases}
        self._for_other = self._group([r for r in self.routes if r.models is None])

    @staticmethod
    def _group(routes: list[CompiledRoute]) -> tuple[tuple[CompiledRoute, ...], Callable[[RequestFacts], int], tuple[frozenset[str], ...]]:
        """The routes, their first-match function, and per route the safety findings read by it or a route before
        it; the last entry (also index -1: no match) holds what the whole group reads."""
        first_match = compile_first_match([compile_when(r.route.when, skip_model=True) for r in routes])
        reads, upto = [], frozenset[str]()
        for route in routes:
            upto = upto | safety_reads(route.route.when)
            reads.append(upto)
        return tuple(routes), first_match, tuple(reads) or (upto,)

    def targets_of(self, alias: str, tenant: str) -> list[str]:
        """Every target a route claiming this alias may send to for this tenant, in order of first mention.

        Routes that can never match the tenant (or come after one that always does) are left out: their
        targets are other tenants' business.
        """
        names: dict[str, None] = {}
        for route in self._routes_for(alias, tenant):
            if route.models and alias in route.models:
                for decision in route.candidates():
                    names.update(dict.fromkeys(decision.targets))
        return list(names)

    def reachable(self, alias: str, tenant: str) -> bool:
        """Whether some route for this alias can match a request of this tenant."""
        return any(True for _ in self._routes_for(alias, tenant))

    def _routes_for(self, alias: str, tenant: str) -> Iterator[CompiledRoute]:
        routes = self._for_model[alias][0] if alias in self._for_model else ()
        for route in routes:
            if may_match(route.route.when, tenant):
                yield route
                if must_match(route.route.when, tenant, model_settled=True):
                    return

    def knows(self, model: str) -> bool:
        return model in self.aliases or model in self._targets

    def decide(self, facts: RequestFacts) -> RouteDecision | None:
        routes, first_match, _ = self._for_model.get(facts.model, self._for_other)
        return self._decision(routes, first_match(facts), facts)

    def presume(self, facts: RequestFacts) -> Presumption:
        """The decision for `facts` before their safety findings are known (see Presumption)."""
        routes, first_match, reads = self._for_model.get(facts.model, self._for_other)
        index = first_match(facts)
        return Presumption(self, self._decision(routes, index, facts), reads[index])

    def _decision(self, routes: tuple[CompiledRoute, ...], index: int, facts: RequestFacts) -> RouteDecision | None:
        if index >= 0:
            return routes[index].choose(facts, self._random())
        if facts.model in self._targets:
            # A target no route claims is served as is: an implicit one-target route.
            return RouteDecision(facts.model, (facts.model,))
        return None

    def explain(self, facts: RequestFacts) -> tuple[list[tuple[str, str]], CompiledRoute | None]:
        """Why each route before the match did not match, and the matching route (if any)."""
        misses: list[tuple[str, str]] = []
        for route in self.routes:
            reason = route.condition.miss(facts)
            if reason is None:
                return misses, route
            misses.append((route.name, reason))
        return misses, None


def may_match(when: When, tenant: str) -> bool:
    """False only when `when` fails for every request of `tenant`, whatever else the request holds."""
    if when.tenant is not None and tenant not in _names(when.tenant):
        return False
    if when.all is not None and not all(may_match(w, tenant) for w in when.all):
        return False
    if when.any is not None and not any(may_match(w, tenant) for w in when.any):
        return False
    return when.not_ is None or not must_match(when.not_, tenant)


def must_match(when: When, tenant: str, model_settled: bool = False) -> bool:
    """True only when `when` holds for every request of `tenant` (for its alias, if `model_settled`)."""
    tested = _NOT_TENANT_OR_MODEL if model_settled else _NOT_TENANT
    if any(getattr(when, field) is not None for field in tested):
        return False
    if when.tenant is not None and tenant not in _names(when.tenant):
        return False
    if when.all is not None and not all(must_match(w, tenant) for w in when.all):
        return False
    if when.any is not None and not any(must_match(w, tenant) for w in when.any):
        return False
    return when.not_ is None or not may_match(when.not_, tenant)


_NOT_TENANT = tuple(field for field in When.model_fields if field not in ("tenant", "all", "any", "not_"))
_NOT_TENANT_OR_MODEL = tuple(field for field in _NOT_TENANT if field != "model")


def _names(value: str | list[str]) -> frozenset[str]:
    return frozenset([value] if isinstance(value, str) else value)
