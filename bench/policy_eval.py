"""Cost of one routing decision for a 50-route policy (goal: ≤ 20 µs per request).

    .venv/bin/python bench/policy_eval.py

Three cases: the request matches the last of 50 routes that all share its model alias (worst
case: every route's conditions are tested), matches the first route, and asks for a model that
only the last route claims (the alias index skips the other 49).
"""

from __future__ import annotations

import sys
import timeit
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from policies.conditions import RequestFacts  # noqa: E402
from policies.engine import Router  # noqa: E402
from policies.schema import PolicyFile  # noqa: E402

GOAL_US = 20.0


def fifty_routes() -> PolicyFile:
    routes = []
    for i in range(49):
        when = [
            {"model": "chat", "tenant": f"tenant-{i}"},
            {"model": "chat", "header": {"x-team": f"team-{i}"}},
            {"model": "chat", "metadata": {"project": f"p-{i}"}, "stream": True},
            {"model": "chat", "any": [{"user": f"u-{i}"}, {"tenant": f"t-{i}"}], "endpoint": "chat"},
            {"model": "chat", "not": {"tenant": "acme"}, "pii": "detected"},
        ][i % 5]
        routes.append({"name": f"r{i}", "when": when, "send": ["a"], "fallback": ["b"]})
    routes.append({"name": "last", "when": {"model": ["chat", "rare"]}, "send": [{"target": "a", "weight": 9}, {"target": "b", "weight": 1}]})
    return PolicyFile.model_validate({"version": 1, "routes": routes})


def per_call_us(router: Router, facts: RequestFacts, number: int = 20000) -> float:
    best = min(timeit.repeat(lambda: router.decide(facts), number=number, repeat=5))
    return best / number * 1e6


def main() -> int:
    router = Router(fifty_routes().routes, ["a", "b"])
    headers = {b"authorization": b"Bearer x", b"content-type": b"application/json", b"x-team": b"none"}
    body = {"model": "chat", "messages": [{"role": "user", "content": "hello " * 200}], "metadata": {"project": "zz"}}
    cases = {
        "matches route 50 of 50 (all share the alias)": RequestFacts("chat", "acme", "chat", True, headers, body),
        "matches route 1 of 50": RequestFacts("chat", "tenant-0", "chat", False, headers, body),
        "alias only route 50 claims (index skips 49)": RequestFacts("rare", "acme", "chat", False, headers, body),
    }
    print("| case | µs per decision |\n| --- | --- |")
    worst = 0.0
    for name, facts in cases.items():
        assert router.decide(facts) is not None
        cost = per_call_us(router, facts)
        worst = max(worst, cost)
        print(f"| {name} | {cost:.2f} |")
    print(f"\nworst case {worst:.2f} µs; goal ≤ {GOAL_US:.0f} µs: {'PASS' if worst <= GOAL_US else 'FAIL'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
