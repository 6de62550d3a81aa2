"""Load policy files: schema first, then what only the whole config can tell (target names)."""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from gateway.config import ConfigError, validate
from gateway.yamlsource import SourceError, YamlDocument, load_yaml
from policies.schema import CircuitBreaker, PolicyFile, PolicyTest, Route, WeightedTarget
from gateway.safety.schema import SafetyPolicy


@dataclass(frozen=True)
class LocatedTest:
    file: str
    line: int | None
    test: PolicyTest


@dataclass(frozen=True)
class PolicySet:
    """Every route of every policy file, in order, with what else the files say."""

    routes: tuple[Route, ...] = ()
    origins: tuple[str, ...] = ()  # "file:line" of each route, for messages
    breaker: CircuitBreaker = CircuitBreaker()
    tests: tuple[LocatedTest, ...] = ()
    files: tuple[str, ...] = ()
    digest: str = hashlib.sha256(b"").hexdigest()
    safety: SafetyPolicy | None = None


def load_policies(paths: Sequence[Path], targets: Collection[str] | None, env: Mapping[str, str]) -> PolicySet:
    """Raises ConfigError naming every problem found. `targets=None` skips target-name checks."""
    routes: list[Route] = []
    origins: list[str] = []
    tests: list[LocatedTest] = []
    breaker: CircuitBreaker | None = None
    safety: SafetyPolicy | None = None
    problems: list[SourceError] = []
    seen: dict[str, str] = {}
    digest = hashlib.sha256()
    for path in paths:
        try:
            doc = load_yaml(path, env)
            policy: PolicyFile = validate(PolicyFile, doc)
        except SourceError as exc:
            problems.append(exc)
            continue
        except ConfigError as exc:
            problems.extend(exc.problems)
            continue
        digest.update(doc.digest.encode())
        for i, route in enumerate(policy.routes):
            if route.name in seen:
                problems.append(doc.error(("routes", i, "name"), f"route name {route.name!r} is already used in {seen[route.name]}"))
            seen[route.name] = str(path)
            if targets is not None:
                problems.extend(_unknown_targets(doc, i, route, targets))
        if policy.circuit_breaker is not None:
            if breaker is not None:
                problems.append(doc.error(("circuit_breaker",), "circuit_breaker is already set in an earlier policy file"))
            breaker = policy.circuit_breaker
        if policy.safety is not None:
            if safety is not None:
                problems.append(doc.error(("safety",), "safety is already set in an earlier policy file"))
            safety = policy.safety
        tests.extend(LocatedTest(str(path), doc.line_of(("tests", i)), t) for i, t in enumerate(policy.tests))
        routes.extend(policy.routes)
        origins.extend(f"{path}:{doc.line_of(('routes', i))}" for i in range(len(policy.routes)))
    if problems:
        raise ConfigError(problems)
    return PolicySet(
        tuple(routes), tuple(origins), breaker or CircuitBreaker(), tuple(tests), tuple(str(p) for p in paths),
        digest.hexdigest(), safety,
    )


def _unknown_targets(doc: YamlDocument, index: int, route: Route, targets: Collection[str]) -> list[SourceError]:
    where = ("routes", index)
    problems = []
    for j, entry in enumerate(route.send):
        name = entry.target if isinstance(entry, WeightedTarget) else entry
        if name not in targets:
            problems.append(doc.error(where + ("send", j), f"unknown target {name!r}"))
    for j, name in enumerate(route.fallback):
        if name not in targets:
            problems.append(doc.error(where + ("fallback", j), f"unknown target {name!r}"))
    return problems
