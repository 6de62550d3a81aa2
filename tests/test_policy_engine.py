"""The routing-policy engine alone: conditions, first match, weights, stickiness, deny."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from policies.conditions import RequestFacts
from policies.engine import Router
from policies.schema import PolicyFile

TARGETS = ["a", "b", "c", "local"]


def router(routes: list[dict], seed: int = 1) -> Router:
    policy = PolicyFile.model_validate({"version": 1, "routes": routes})
    return Router(policy.routes, TARGETS, random.Random(seed))


def facts(model: str = "chat", tenant: str = "t1", endpoint: str = "chat", stream: bool = False, headers=None, body=None, pii=()):
    return RequestFacts(model, tenant, endpoint, stream, headers or {}, body or {"model": model}, frozenset(pii))


def test_first_matching_route_wins_and_aliases_are_known():
    r = router([
        {"name": "special", "when": {"model": "chat", "tenant": "vip"}, "send": ["b"]},
        {"name": "chat", "when": {"model": "chat"}, "send": ["a"], "fallback": ["c", "local"]},
    ])
    assert r.decide(facts(tenant="vip")).route == "special"
    decision = r.decide(facts(tenant="other"))
    assert (decision.route, decision.targets) == ("chat", ("a", "c", "local"))
    assert r.knows("chat") and r.knows("local") and not r.knows("nope")


def test_unclaimed_target_is_an_implicit_route_and_unknown_model_is_none():
    r = router([{"name": "chat", "when": {"model": "chat"}, "send": ["a"]}])
    assert r.decide(facts(model="b")).targets == ("b",)
    assert r.decide(facts(model="nope")) is None


@pytest.mark.parametrize(
    ("when", "kwargs", "expected"),
    [
        ({"header": {"x-team": ["beta", "gamma"]}}, {"headers": {b"x-team": b"gamma"}}, True),
        ({"header": {"X-Team": "beta"}}, {"headers": {b"x-team": b"alpha"}}, False),
        ({"metadata": {"priority": "high"}}, {"body": {"metadata": {"priority": "high"}}}, True),
        ({"metadata": {"beta": True}}, {"body": {"metadata": {"beta": True}}}, True),
        ({"metadata": {"priority": "high"}}, {"body": {"metadata": "not-a-dict"}}, False),
        ({"user": ["u1", "u2"]}, {"body": {"user": "u2"}}, True),
        ({"endpoint": "embedding"}, {"endpoint": "chat"}, False),
        ({"stream": True}, {"stream": True}, True),
        ({"stream": True}, {"stream": False}, False),
        ({"pii": "detected"}, {"pii": ["EMAIL_ADDRESS"]}, True),
        ({"pii": "detected"}, {}, False),
        ({"pii": "none"}, {}, True),
        ({"pii_entities": ["CREDIT_CARD"]}, {"pii": ["EMAIL_ADDRESS"]}, False),
        ({"est_prompt_tokens": {"gt": 10}}, {"body": {"messages": [{"role": "user", "content": "x" * 100}]}}, True),
        ({"est_prompt_tokens": {"gt": 10}}, {"body": {"messages": [{"role": "user", "content": "short"}]}}, False),
        ({"any": [{"tenant": "x"}, {"tenant": "t1"}]}, {}, True),
        ({"all": [{"tenant": "t1"}, {"stream": True}]}, {}, False),
        ({"not": {"tenant": "t1"}}, {}, False),
        ({"not": {"tenant": "t2"}}, {}, True),
    ],
)
def test_conditions(when, kwargs, expected):
    r = router([{"name": "r", "when": {"model": "chat", **when}, "send": ["a"]}])
    decision = r.decide(facts(**kwargs))
    assert (decision is not None and decision.route == "r") is expected


def test_explain_gives_the_reason_of_the_first_failing_condition():
    r = router([
        {"name": "vip", "when": {"model": "chat", "tenant": "vip"}, "send": ["b"]},
        {"name": "long", "when": {"model": "chat", "est_prompt_tokens": {"gt": 1000}}, "send": ["c"]},
        {"name": "chat", "when": {"model": "chat"}, "send": ["a"]},
    ])
    misses, matched = r.explain(facts(tenant="t9"))
    assert matched is not None and matched.name == "chat"
    assert misses[0] == ("vip", "tenant is 't9', not one of ['vip']")
    assert misses[1][0] == "long" and misses[1][1] == "est_prompt_tokens is 0, not gt 1000"


def test_weighted_split_lands_within_tolerance():
    r = router([{"name": "ab", "when": {"model": "chat"}, "send": [{"target": "a", "weight": 90}, {"target": "b", "weight": 10}]}], seed=7)
    counts = Counter(r.decide(facts()).targets[0] for _ in range(20000))
    # 20,000 draws at p=0.1: sd ≈ 42, so ±200 is ~5 sd.
    assert abs(counts["b"] - 2000) < 200
    assert counts["a"] + counts["b"] == 20000


def test_weight_zero_arm_never_chosen_and_fallback_chain_skips_the_chosen_target():
    r = router([{
        "name": "ab", "when": {"model": "chat"},
        "send": [{"target": "a", "weight": 1}, {"target": "b", "weight": 0}],
        "fallback": ["a", "local"],
    }])
    assert {r.decide(facts()).targets for _ in range(200)} == {("a", "local")}


def test_sticky_by_user_keeps_each_user_on_one_arm_and_splits_users():
    r = router([{"name": "ab", "when": {"model": "chat"}, "sticky": "user", "send": [{"target": "a", "weight": 50}, {"target": "b", "weight": 50}]}])
    arms = {}
    for user in range(200):
        seen = {r.decide(facts(body={"user": f"u{user}"})).targets[0] for _ in range(5)}
        assert len(seen) == 1
        arms[user] = seen.pop()
    share = Counter(arms.values())
    assert 60 < share["a"] < 140 and 60 < share["b"] < 140


def test_deny_route():
    r = router([{"name": "no", "when": {"tenant": "interns"}, "deny": "not for interns"}, {"name": "ok", "send": ["a"]}])
    assert r.decide(facts(tenant="interns")).deny == "not for interns"
    assert r.decide(facts(tenant="staff")).deny is None


@pytest.mark.parametrize(
    "route, message",
    [
        ({"name": "x"}, "a route needs `send` targets or a `deny` message"),
        ({"name": "x", "deny": "no", "send": ["a"]}, "a `deny` route cannot also `send` or `fallback`"),
        ({"name": "x", "send": [{"target": "a", "weight": 0}]}, "at least one send target needs a weight above 0"),
    ],
)
def test_route_schema_errors(route, message):
    with pytest.raises(Exception) as info:
        PolicyFile.model_validate({"version": 1, "routes": [route]})
    assert message in str(info.value)


def test_compiled_matcher_agrees_with_the_condition_objects():
    """The router runs generated code; explain runs the objects. They must never disagree."""
    from policies.conditions import compile_first_match, compile_when
    from policies.schema import When

    rng = random.Random(3)
    leaves = [
        {"tenant": ["t1", "t2"]}, {"endpoint": "embedding"}, {"stream": True}, {"user": "u1"},
        {"header": {"x-team": "beta"}}, {"metadata": {"tier": ["gold", 1]}}, {"pii": "detected"},
        {"pii_entities": ["EMAIL_ADDRESS"]}, {"est_prompt_tokens": {"gt": 3}},
    ]

    def random_when(depth: int = 0) -> dict:
        when = dict(rng.choice(leaves))
        if depth < 2 and rng.random() < 0.5:
            when[rng.choice(["all", "any"])] = [random_when(depth + 1) for _ in range(rng.randint(1, 3))]
        if depth < 2 and rng.random() < 0.3:
            when["not"] = random_when(depth + 1)
        return when

    def random_facts() -> RequestFacts:
        body = {"user": rng.choice([None, "u1", "u2", 7]), "metadata": {"tier": rng.choice(["gold", "1", 1, None])}}
        body["messages"] = [{"role": "user", "content": "w " * rng.randint(0, 10)}]
        headers = {b"x-team": b"beta"} if rng.random() < 0.5 else {}
        pii = frozenset(rng.sample(["EMAIL_ADDRESS", "PHONE_NUMBER"], rng.randint(0, 2)))
        return RequestFacts("chat", rng.choice(["t1", "t3"]), rng.choice(["chat", "embedding"]), rng.random() < 0.5, headers, body, pii)

    for _ in range(300):
        conditions = [compile_when(When.model_validate(random_when())) for _ in range(4)]
        first_match = compile_first_match(conditions)
        for _ in range(20):
            facts = random_facts()
            expected = next((i for i, c in enumerate(conditions) if c.holds(facts)), -1)
            assert first_match(facts) == expected
            assert all((c.miss(facts) is None) == c.holds(facts) for c in conditions)
