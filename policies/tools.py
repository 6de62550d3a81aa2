"""What `switchyard policy check | explain | test` do, as functions returning text and a verdict."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.config import ConfigError
from gateway.errors import GatewayError
from policies.catalog import Screen
from policies.conditions import RequestFacts
from policies.engine import CompiledRoute, RouteDecision, Router
from policies.loader import LocatedTest, PolicySet, load_policies
from policies.schema import Route

SIMPLE_FIELDS = ("model", "tenant", "endpoint", "stream")
from gateway.safety.engine import SafetyEngine


@dataclass
class Report:
    lines: list[str]
    ok: bool

    def text(self) -> str:
        return "\n".join(self.lines)


def lint(policies: PolicySet) -> list[str]:
    """Problems no schema can see: routes that can never match, fallbacks that can never run."""
    problems = []
    routes = policies.routes
    for j, later in enumerate(routes):
        for i in range(j):
            if _covers(routes[i], later):
                problems.append(
                    f"{policies.origins[j]}: routes[{j}]: route {later.name!r} is never reached: "
                    f"route {routes[i].name!r} ({policies.origins[i]}) matches every request it would"
                )
                break
        seen: set[str] = set()
        sends = {s if isinstance(s, str) else s.target for s in later.send}
        for name in later.fallback:
            if name in seen:
                problems.append(f"{policies.origins[j]}: routes[{j}].fallback: {name!r} is listed twice")
            elif len(sends) == 1 and name in sends:
                problems.append(
                    f"{policies.origins[j]}: routes[{j}].fallback: {name!r} is never used: it is the route's only send target"
                )
            seen.add(name)
    return problems


def _covers(earlier: Route, later: Route) -> bool:
    """True when every request matching `later` also matches `earlier` (judged on simple fields)."""
    first, second = earlier.when, later.when
    if any(getattr(first, f) is not None for f in type(first).model_fields if f not in SIMPLE_FIELDS):
        return False
    for name in SIMPLE_FIELDS:
        wanted = getattr(first, name)
        if wanted is None:
            continue
        theirs = getattr(second, name)
        if theirs is None or not _as_set(theirs) <= _as_set(wanted):
            return False
    return True


def _as_set(value: Any) -> set[str]:
    return {str(v) for v in value} if isinstance(value, list) else {str(value)}


def check(files: list[Path], targets: Collection[str] | None, env: Mapping[str, str]) -> Report:
    try:
        policies = load_policies(files, targets, env)
    except ConfigError as exc:
        return Report([str(p) for p in exc.problems], ok=False)
    problems = lint(policies)
    if problems:
        return Report(problems, ok=False)
    note = "" if targets is not None else " (target names not checked: no --config given)"
    return Report([f"OK: {len(policies.routes)} routes, {len(policies.tests)} tests in {len(files)} files{note}"], ok=True)


def facts_for(
    request: Mapping[str, Any], tenant: str, endpoint: str, headers: Mapping[str, str], safety: SafetyEngine | None = None
) -> RequestFacts:
    """The routing facts of a request; with the policy's safety filters, what they would find in it too."""
    raw_headers = {k.lower().encode("latin-1"): str(v).encode("latin-1") for k, v in headers.items()}
    pii, flags = safety.detect(dict(request)) if safety is not None else (frozenset(), frozenset())
    return RequestFacts(
        str(request.get("model", "")), tenant, endpoint, bool(request.get("stream", False)), raw_headers, request,
        pii, flags,
    )


def safety_of(policies: PolicySet) -> SafetyEngine | None:
    return SafetyEngine(policies.safety) if policies.safety is not None else None


def explain(router: Router, policies: PolicySet, facts: RequestFacts, screen: Screen | None = None) -> Report:
    origin = dict(zip((r.name for r in policies.routes), policies.origins))
    lines = [
        f"request: model {facts.model!r}, tenant {facts.tenant or '(none)'!r}, endpoint {facts.endpoint}, "
        f"stream {str(facts.stream).lower()}, ~{facts.prompt_tokens} prompt tokens"
    ]
    misses, matched = router.explain(facts)
    for name, reason in misses:
        lines.append(f"  skip  {name} ({origin.get(name, '?')}): {reason}")
    if matched is None:
        if router.knows(facts.model):
            lines.append(f"  match (implicit route) target {facts.model!r} served as is")
            return Report(lines, ok=True)
        lines.append(f"  no route matches and {facts.model!r} is not a target: the client gets 404 model_not_found")
        return Report(lines, ok=False)
    lines.append(f"  match {matched.name} ({origin.get(matched.name, '?')})")
    lines.extend("    " + line for line in describe(matched, facts, screen))
    return Report(lines, ok=True)


def describe(route: CompiledRoute, facts: RequestFacts | None = None, screen: Screen | None = None) -> list[str]:
    spec = route.route
    if spec.deny is not None:
        return [f"deny (403 denied_by_policy): {spec.deny}"]
    total = sum(w for _, w in route.weights) or 1.0
    arms = ", ".join(f"{t} ({100 * w / total:.0f}%)" for t, w in route.weights)
    lines = [f"send: {arms}" + (" — sticky by user" if route.sticky else "")]
    for arm, decision in zip((t for t, w in route.weights if w > 0), route.candidates()):
        excluded = list(decision.excluded)
        if screen is not None and facts is not None and decision.targets:
            try:
                screened = screen.apply(decision, facts.tenant, facts)
                excluded = list(screened.excluded)
                decision = screened
            except GatewayError as error:
                lines.append(f"if {arm} is picked: {error.status} {error.code}: {error.message}")
                continue
        for reason in excluded:
            lines.append(f"excluded {reason}")
        if decision.targets:
            lines.append(f"if {arm} is picked: {' → '.join(decision.targets)}")
        else:
            lines.append(f"if {arm} is picked: no target left (403 requirement_not_met)")
    retry = spec.retry
    lines.append(
        f"retry: {retry.attempts} attempt(s) per target on {', '.join(retry.on)}; "
        f"fallback on {', '.join(spec.fallback_on)}"
    )
    if spec.timeout_s or spec.attempt_timeout_s:
        lines.append(f"timeouts: total {spec.timeout_s or '-'} s, per attempt {spec.attempt_timeout_s or '-'} s")
    return lines


def run_tests(router: Router, policies: PolicySet) -> Report:
    lines, failed = [], 0
    safety = safety_of(policies) if policies.tests else None
    for located in policies.tests:
        problem = _run_one(router, located, safety)
        where = f"{located.file}:{located.line}"
        if problem is None:
            lines.append(f"PASS {located.test.name}")
        else:
            failed += 1
            lines.append(f"FAIL {located.test.name} ({where}): {problem}")
    lines.append(f"{len(policies.tests) - failed} passed, {failed} failed")
    return Report(lines, ok=failed == 0)


def _run_one(router: Router, located: LocatedTest, safety: SafetyEngine | None) -> str | None:
    test = located.test
    expect = test.expect
    facts = facts_for(test.request, test.tenant or "", test.endpoint, test.headers, safety)
    decision = router.decide(facts)
    if decision is None:
        if expect.get("status") == 404 and len(expect) == 1:
            return None
        return f"no route matches (the client would get 404); expected {expect}"
    matched = next((r for r in router.routes if r.name == decision.route), None)
    candidates: tuple[RouteDecision, ...] = matched.candidates() if matched else (decision,)
    if "route" in expect and expect["route"] != decision.route:
        return f"expected route {expect['route']!r}, got {decision.route!r}"
    if "deny" in expect:
        if bool(expect["deny"]) != (decision.deny is not None):
            return f"expected deny={expect['deny']!r}, got {'a deny' if decision.deny else 'no deny'}"
    got_status = 403 if decision.deny is not None else 200
    if "status" in expect and expect["status"] != got_status:
        return f"expected status {expect['status']}, got {got_status}"
    if "target" in expect:
        firsts = [c.targets[0] for c in candidates if c.targets]
        if expect["target"] not in firsts:
            return f"expected target {expect['target']!r}, but route {decision.route!r} sends to {firsts}"
        chosen = next(c for c in candidates if c.targets and c.targets[0] == expect["target"])
    else:
        chosen = decision
    if "fallback" in expect and list(chosen.targets[1:]) != list(expect["fallback"]):
        return f"expected fallback {expect['fallback']}, got {list(chosen.targets[1:])}"
    return None
