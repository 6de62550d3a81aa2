"""Load policy files: schema first, then what only the whole config can tell (target names)."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from pathlib import Path

from gateway.config import ConfigError, validate
from gateway.yamlsource import SourceError, load_yaml
from policies.schema import PolicyFile, Route, WeightedTarget


def load_policies(paths: Sequence[Path], targets: Collection[str], env: Mapping[str, str]) -> list[Route]:
    """All routes of the given files, in order; raises ConfigError naming every problem found."""
    routes: list[Route] = []
    problems: list[SourceError] = []
    seen: dict[str, str] = {}
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
        for i, route in enumerate(policy.routes):
            where = ("routes", i)
            if route.name in seen:
                problems.append(doc.error(where + ("name",), f"route name {route.name!r} is already used in {seen[route.name]}"))
            seen[route.name] = str(path)
            for j, entry in enumerate(route.send):
                name = entry.target if isinstance(entry, WeightedTarget) else entry
                if name not in targets:
                    problems.append(doc.error(where + ("send", j), f"unknown target {name!r}"))
            for j, name in enumerate(route.fallback):
                if name not in targets:
                    problems.append(doc.error(where + ("fallback", j), f"unknown target {name!r}"))
        routes.extend(policy.routes)
    if problems:
        raise ConfigError(problems)
    return routes
