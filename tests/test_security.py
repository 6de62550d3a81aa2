"""Security review, part one: tenants are isolated from each other, admin endpoints need the admin key, and
secrets are never compared by plain equality. Each test runs a real gateway against recording fake upstreams.

Tenant isolation means: a tenant cannot call, list or learn of another tenant's models or targets; its traffic
spends only its own limits, concurrency and budget; its errors name nothing of the other tenant's.
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import httpx
import pytest

from fakes import wait_until
from fakes.keys import make_key

ROOT = Path(__file__).resolve().parent.parent
KEY_A, HASH_A = make_key("tenant-a")
KEY_B, HASH_B = make_key("tenant-b")
KEY_C, HASH_C = make_key("tenant-c")
ADMIN_KEY, ADMIN_HASH = make_key("admin")
UPSTREAM_KEY_A, UPSTREAM_KEY_B = "sk-upstream-of-a-9f1c", "sk-upstream-of-b-77e2"
CHAT = "/v1/chat/completions"
# Tenant A's model list; everything named b-… belongs to tenant B only.
A_MODELS = ["a-chat", "a-private-llm", "shared"]
B_MODELS = ["b-chat", "b-secret-llm", "b-secret-alias", "shared"]


def two_tenants(a_upstream, b_upstream, *, a_limits=None, b_limits=None, state=None) -> dict:
    return {
        "state": state or {},
        "targets": {
            # A's target is priced so that a single request spends A's budget; B's is free.
            "a-private-llm": {"adapter": "openai", "base_url": a_upstream.base_url, "model": "a-upstream-model",
                              "api_key": UPSTREAM_KEY_A, "price": {"input_per_mtok": 1000, "output_per_mtok": 1000}},
            "b-secret-llm": {"adapter": "openai", "base_url": b_upstream.base_url, "model": "b-upstream-model",
                             "api_key": UPSTREAM_KEY_B},
        },
        "tenants": {
            "tenant-a": {"keys": [HASH_A], "models": A_MODELS, "limits": a_limits or {}},
            "tenant-b": {"keys": [HASH_B], "models": B_MODELS, "limits": b_limits or {}},
            "tenant-c": {"keys": [HASH_C], "models": ["*"]},
        },
        "admin_keys": [ADMIN_HASH],
    }


POLICY = {
    "version": 1,
    "routes": [
        {"name": "a-chat", "when": {"model": "a-chat"}, "send": ["a-private-llm"]},
        {"name": "b-chat", "when": {"model": "b-chat"}, "send": ["b-secret-llm"]},
        {"name": "b-secret-route", "when": {"model": "b-secret-alias", "tenant": "tenant-b"}, "send": ["b-secret-llm"]},
        # One alias, routed per tenant in the three ways a policy can say "only B" / "not A".
        {"name": "shared-b-all", "when": {"model": "shared", "all": [{"tenant": "tenant-b"}]}, "send": ["b-secret-llm"]},
        {"name": "shared-not-a", "when": {"model": "shared", "not": {"tenant": ["tenant-a"]}}, "send": ["b-secret-llm"]},
        {"name": "shared-a", "when": {"model": "shared"}, "send": ["a-private-llm"]},
    ],
}


def secrets_of_b(b_upstream) -> list[str]:
    """What tenant A must never see in anything the gateway answers it."""
    return ["tenant-b", "b-chat", "b-secret", "b-upstream-model", b_upstream.origin, f":{b_upstream.port}",
            KEY_B, HASH_B.removeprefix("sha256:"), UPSTREAM_KEY_B, UPSTREAM_KEY_A, KEY_A, ADMIN_KEY]


def assert_nothing_of_b(response: httpx.Response, b_upstream, echoed: str = "") -> None:
    """`echoed`: a model name A itself sent, which the answer may quote back."""
    shown = response.text + json.dumps(dict(response.headers))
    if echoed:
        shown = shown.replace(echoed, "")
    assert [s for s in secrets_of_b(b_upstream) if s in shown] == [], response.text


def chat(model: str, content: str = "hello", **extra) -> dict:
    return {"model": model, "messages": [{"role": "user", "content": content}], **extra}


def not_allowed(model: str) -> dict:
    return {"error": {"message": f"This API key may not use model {model!r}.",
                      "type": "permission_error", "param": "model", "code": "model_not_allowed"}}


def not_found(model: str) -> dict:
    return {"error": {"message": f"The model {model!r} does not exist or you do not have access to it.",
                      "type": "invalid_request_error", "param": "model", "code": "model_not_found"}}


@pytest.fixture
def upstreams(make_openai_upstream):
    return make_openai_upstream("a"), make_openai_upstream("b")


# ----- 1. tenant isolation: models ---------------------------------------------------------------------------------


def test_a_tenant_can_neither_call_nor_list_nor_detect_another_tenants_models(upstreams, start_gateway):
    a_up, b_up = upstreams
    gateway = start_gateway(two_tenants(a_up, b_up), policies={"policy.yaml": POLICY})
    # Headers that might be taken to name a tenant, and B's own key in the headers a Bearer key outranks.
    impersonation = {"x-tenant": "tenant-b", "x-switchyard-tenant": "tenant-b", "openai-organization": "tenant-b",
                     "openai-project": "tenant-b", "api-key": KEY_B, "x-api-key": KEY_B}
    for extra in ({}, impersonation):
        with httpx.Client(base_url=gateway.base_url, headers={"Authorization": f"Bearer {KEY_A}", **extra}, timeout=30) as a:
            listed = a.get("/v1/models")
            assert listed.status_code == 200
            cards = {card["id"]: card for card in listed.json()["data"]}
            assert sorted(cards) == sorted(A_MODELS)
            assert cards["shared"]["targets"] == ["a-private-llm"], "B's routes of a shared alias are B's business"
            assert_nothing_of_b(listed, b_up)

            # B's alias, B's target, B's tenant-only alias and a model nobody has: one and the same answer,
            # because anything outside A's list is refused before anyone looks whether it exists.
            for model in ("b-chat", "b-secret-llm", "b-secret-alias", "no-such-model"):
                for path, body in ((CHAT, chat(model)), ("/v1/completions", {"model": model, "prompt": "x"}),
                                   ("/v1/embeddings", {"model": model, "input": "x"})):
                    response = a.post(path, json=body)
                    assert response.status_code == 403 and response.json() == not_allowed(model), response.text
                    assert_nothing_of_b(response, b_up, echoed=repr(model))

            served = a.post(CHAT, json=chat("shared"))
            assert served.status_code == 200 and served.headers["x-switchyard-target"] == "a-private-llm"
            assert_nothing_of_b(served, b_up)
    assert b_up.requests == []
    assert {r.header("authorization") for r in a_up.requests} == {f"Bearer {UPSTREAM_KEY_A}"}

    with httpx.Client(base_url=gateway.base_url, headers={"Authorization": f"Bearer {KEY_B}"}, timeout=30) as b:
        cards = {card["id"]: card for card in b.get("/v1/models").json()["data"]}
        assert sorted(cards) == sorted(B_MODELS) and cards["shared"]["targets"] == ["b-secret-llm"]
        assert b.post(CHAT, json=chat("b-secret-alias")).status_code == 200
    # A tenant allowed every model is still not shown an alias whose every route is for another tenant.
    with httpx.Client(base_url=gateway.base_url, headers={"Authorization": f"Bearer {KEY_C}"}, timeout=30) as c:
        assert [card["id"] for card in c.get("/v1/models").json()["data"]] == [
            "a-chat", "a-private-llm", "b-chat", "b-secret-llm", "shared"]
        assert c.post(CHAT, json=chat("b-secret-alias")).json() == not_found("b-secret-alias")


def test_route_reachability_per_tenant_is_conservative():
    from policies.engine import may_match, must_match
    from policies.schema import When

    def when(**fields) -> When:
        return When.model_validate(fields)

    assert not may_match(when(tenant="b"), "a") and may_match(when(tenant=["a", "b"]), "a")
    assert not may_match(when(all=[{"tenant": "b"}], header={"x": "1"}), "a")
    assert not may_match(when(any=[{"tenant": "b"}, {"tenant": "c"}]), "a")
    assert may_match(when(any=[{"tenant": "b"}, {"header": {"x": "1"}}]), "a"), "a header is the client's to send"
    assert not may_match(when(**{"not": {"tenant": "a"}}), "a") and may_match(when(**{"not": {"tenant": "a"}}), "b")
    assert may_match(when(**{"not": {"tenant": "a", "stream": True}}), "a"), "A's JSON requests still match"
    assert must_match(when(model="m", tenant="a"), "a", model_settled=True) and not must_match(when(model="m"), "a")
    assert not must_match(when(tenant="a", stream=True), "a") and must_match(when(), "a")


# ----- 1. tenant isolation: limits, concurrency, budget ------------------------------------------------------------


@pytest.mark.parametrize("backend", ["memory", "redis"])
def test_a_tenant_spends_only_its_own_limits_concurrency_and_budget(backend, upstreams, start_gateway, request):
    a_up, b_up = upstreams
    a_up.chunk_delay = 1.0  # A's streams last seconds: long enough to hold A's one concurrency slot
    limits = {"requests_per_minute": 100, "concurrent_requests": 1, "usd_per_day": 0.001}
    redis_server = request.getfixturevalue("redis_server") if backend == "redis" else None
    state = {"redis_url": request.getfixturevalue("redis_url")} if redis_server else {}
    gateway = start_gateway(two_tenants(a_up, b_up, a_limits=limits, b_limits=limits, state=state), policies={"policy.yaml": POLICY})
    a = httpx.Client(base_url=gateway.base_url, headers={"Authorization": f"Bearer {KEY_A}", "x-tenant": "tenant-b"}, timeout=30)
    b = httpx.Client(base_url=gateway.base_url, headers={"Authorization": f"Bearer {KEY_B}"}, timeout=30)
    seen_by_a: list[httpx.Response] = []

    with a.stream("POST", CHAT, json=chat("a-chat", "hi", stream=True)) as held:
        lines = held.iter_lines()  # kept: a dropped iterator would close the stream
        next(lines)  # A's stream is under way: A's one slot is taken
        refused = a.post(CHAT, json=chat("a-chat"))
        seen_by_a.append(refused)
        assert refused.status_code == 429 and refused.json() == {"error": {
            "message": "Too many concurrent requests for tenant 'tenant-a' (limit 1); try again when one has finished.",
            "type": "rate_limit_error", "param": None, "code": "rate_limit_exceeded"}}
        # B's slot, B's request window and B's budget are untouched by A's traffic.
        first_of_b = b.post(CHAT, json=chat("b-chat"))
        assert first_of_b.status_code == 200 and first_of_b.headers["x-ratelimit-remaining-requests"] == "99"

    def budget_refusal() -> httpx.Response | None:
        # Until A's stream has settled (its slot freed, its cost counted) A may get a 429 for concurrency, or
        # one more admitted request, which spends A's budget on its own.
        response = a.post(CHAT, json=chat("a-chat"))
        seen_by_a.append(response)
        return response if response.status_code == 429 and response.json()["error"]["code"] == "budget_exceeded" else None

    spent = wait_until(budget_refusal, timeout=10, interval=0.05, message="A's spend reaches its budget")
    message = spent.json()["error"]["message"]
    assert re.fullmatch(r"Budget reached: tenant 'tenant-a' has spent its 0\.001 USD per day\. It resets at the start "
                        r"of the next UTC day, in [0-9hms.]+\.", message), message
    second_of_b = b.post(CHAT, json=chat("b-chat"))
    assert second_of_b.status_code == 200 and second_of_b.headers["x-ratelimit-remaining-requests"] == "98"
    for response in seen_by_a:
        assert_nothing_of_b(response, b_up)
    if redis_server is not None:
        keys = list(redis_server.client().keys("*"))
        assert keys and all(k.startswith(("sy:{tenant-a}:", "sy:{tenant-b}:")) for k in keys), keys
        assert not [k for k in keys if KEY_A in k or KEY_B in k], "Redis holds key ids, never keys"
    a.close()
    b.close()


# ----- 2. admin endpoints ------------------------------------------------------------------------------------------

ADMIN_REFUSAL = {"error": {"message": "Admin endpoints need an admin key.", "type": "invalid_request_error",
                           "param": None, "code": "invalid_api_key"}}


def test_admin_endpoints_refuse_everyone_but_an_admin_key(upstreams, start_gateway):
    a_up, b_up = upstreams
    gateway = start_gateway(two_tenants(a_up, b_up), policies={"policy.yaml": POLICY})
    wrong_admin = ADMIN_KEY[:-1] + ("0" if ADMIN_KEY[-1] != "0" else "1")
    refused_headers = [
        {}, {"Authorization": f"Bearer {KEY_A}"}, {"api-key": KEY_B}, {"x-api-key": KEY_A},
        {"Authorization": f"Bearer {wrong_admin}"}, {"Authorization": "Bearer"}, {"Authorization": f"Basic {ADMIN_KEY}"},
        {"Authorization": f"Bearer {ADMIN_HASH}"}, {"Authorization": f"Bearer {ADMIN_HASH.removeprefix('sha256:')}"},
        {"Authorization": f"Bearer {KEY_A}", "x-admin": "true", "x-switchyard-admin": ADMIN_KEY[:8]},
    ]
    for headers in refused_headers:
        with httpx.Client(base_url=gateway.base_url, headers=headers, timeout=10) as http:
            for response in (http.get("/admin/policy"), http.post("/admin/reload")):
                assert response.status_code == 401 and response.json() == ADMIN_REFUSAL, (headers, response.text)
                assert response.headers["content-type"] == "application/json"
    for headers in ({"Authorization": f"Bearer {ADMIN_KEY}"}, {"api-key": ADMIN_KEY}, {"x-api-key": ADMIN_KEY}):
        with httpx.Client(base_url=gateway.base_url, headers=headers, timeout=10) as http:
            status = http.get("/admin/policy")
            assert status.status_code == 200 and status.json()["routes"][0] == "a-chat"
            assert http.post("/admin/reload").json()["reloaded"] is False
            # The admin key is no tenant key: it reaches no model.
            invalid = {"error": {"message": "Invalid API key.", "type": "invalid_request_error", "param": None,
                                 "code": "invalid_api_key"}}
            assert http.get("/v1/models").json() == invalid
            assert http.post(CHAT, json=chat("a-chat")).json() == invalid
    with httpx.Client(base_url=gateway.base_url, headers={"Authorization": f"Bearer {ADMIN_KEY}"}, timeout=10) as http:
        assert http.get("/admin/reload").status_code == 405
    assert a_up.requests == [] and b_up.requests == []
    assert ADMIN_KEY not in gateway.log_text() and KEY_A not in gateway.log_text()


def test_without_admin_keys_the_admin_endpoints_stay_shut(upstreams, start_gateway):
    a_up, b_up = upstreams
    config = two_tenants(a_up, b_up)
    del config["admin_keys"]
    gateway = start_gateway(config, policies={"policy.yaml": POLICY})
    for headers in ({}, {"Authorization": f"Bearer {ADMIN_KEY}"}, {"Authorization": "Bearer"}):
        with httpx.Client(base_url=gateway.base_url, headers=headers, timeout=10) as http:
            assert http.get("/admin/policy").json() == ADMIN_REFUSAL
            assert http.post("/admin/reload").status_code == 401


METRICS_KEY, METRICS_HASH = make_key("scraper")
METRICS_REFUSAL = {"error": {"message": "GET /metrics needs a metrics key.", "type": "invalid_request_error",
                             "param": None, "code": "invalid_api_key"}}


def test_with_metrics_keys_only_a_metrics_key_reads_metrics(upstreams, start_gateway):
    # /metrics names every tenant and route, with their request counts and spend: with `metrics_keys` set it is for
    # the scraper alone. The admin key does not open it (least privilege both ways), nor does a tenant's.
    a_up, b_up = upstreams
    config = two_tenants(a_up, b_up) | {"observability": {"metrics": True, "metrics_keys": [METRICS_HASH]}}
    gateway = start_gateway(config, policies={"policy.yaml": POLICY})
    with httpx.Client(base_url=gateway.base_url, headers={"Authorization": f"Bearer {KEY_A}"}, timeout=10) as http:
        assert http.post(CHAT, json=chat("a-chat")).status_code == 200
    wrong = METRICS_KEY[:-1] + ("0" if METRICS_KEY[-1] != "0" else "1")
    refused_headers = [
        {}, {"Authorization": f"Bearer {KEY_A}"}, {"Authorization": f"Bearer {ADMIN_KEY}"}, {"Authorization": f"Bearer {wrong}"},
        {"Authorization": f"Bearer {METRICS_HASH}"}, {"Authorization": f"Basic {METRICS_KEY}"}, {"Authorization": "Bearer"},
    ]
    for headers in refused_headers:
        response = httpx.get(gateway.base_url + "/metrics", headers=headers, timeout=10)
        assert response.status_code == 401 and response.json() == METRICS_REFUSAL, (headers, response.text)
        assert "tenant-a" not in response.text
    for headers in ({"Authorization": f"Bearer {METRICS_KEY}"}, {"x-api-key": METRICS_KEY}):
        response = httpx.get(gateway.base_url + "/metrics", headers=headers, timeout=10)
        assert response.status_code == 200 and 'tenant="tenant-a"' in response.text
    # The metrics key is no tenant key, and no admin key.
    with httpx.Client(base_url=gateway.base_url, headers={"Authorization": f"Bearer {METRICS_KEY}"}, timeout=10) as http:
        assert http.get("/v1/models").status_code == 401
        assert http.get("/admin/policy").json() == ADMIN_REFUSAL
    assert METRICS_KEY not in gateway.log_text()


# ----- 3. secrets are compared as digests, never with == -----------------------------------------------------------

# Digests are not in the list: policy files' digests are no secrets, and a key's digest is only ever a dict key
# (gateway/auth.py: KeyRing), whose comparison runs on digests a client cannot steer toward a stored one.
SECRET_NAME = re.compile(r"(^|_)(key|keys|token|secret|password|passwd|hmac|credential|authorization)$",
                         re.IGNORECASE)
PRODUCT_PACKAGES = ("gateway", "adapters", "policies", "observability")


def _secret_operand(node: ast.expr) -> str | None:
    name = node.id if isinstance(node, ast.Name) else node.attr if isinstance(node, ast.Attribute) else None
    return name if name is not None and SECRET_NAME.search(name) else None


def plain_comparisons_of_secrets(source: str) -> list[tuple[int, str]]:
    """`a == b` / `a != b` where an operand is named like secret material and neither side is a literal."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Compare) or not all(isinstance(op, (ast.Eq, ast.NotEq)) for op in node.ops):
            continue
        operands = [node.left, *node.comparators]
        if any(isinstance(o, ast.Constant) for o in operands):
            continue  # comparing with a literal ("hash" == action) compares no secret
        names = [n for n in map(_secret_operand, operands) if n]
        if names:
            found.append((node.lineno, names[0]))
    return found


def test_the_audit_finds_a_plain_comparison_of_secrets():
    assert plain_comparisons_of_secrets("ok = presented_key == stored_key\nfine = action == 'hash'\n") == [(1, "presented_key")]
    assert plain_comparisons_of_secrets("if self._admin_token != token: pass") == [(1, "_admin_token")]
    assert plain_comparisons_of_secrets("hmac.compare_digest(a_key, b_key)") == []


def test_no_secret_is_compared_with_plain_equality_in_the_product():
    found = {
        f"{path.relative_to(ROOT)}:{line} ({name})"
        for package in PRODUCT_PACKAGES
        for path in sorted((ROOT / package).rglob("*.py"))
        for line, name in plain_comparisons_of_secrets(path.read_text())
    }
    assert found == set(), "compare secrets with hmac.compare_digest, or look them up by SHA-256 digest"


def test_keys_are_looked_up_by_digest_and_the_plaintext_is_never_kept():
    from gateway.auth import Authenticator, KeyRing, OperatorKeys, hash_key
    from gateway.config import TenantConfig

    ring = KeyRing([(HASH_A, "tenant-a")])
    assert ring.owner(KEY_A) == "tenant-a"
    assert ring.owner(KEY_A[:-1]) is None and ring.owner(KEY_A + " ") is None and ring.owner(HASH_A) is None
    assert ring.owner(HASH_A.removeprefix("sha256:")) is None, "the stored digest is not itself a key"
    authenticator = Authenticator({"tenant-a": TenantConfig(keys=[hash_key(KEY_A)], models=["*"])})
    assert authenticator.authenticate({b"authorization": f"Bearer {KEY_A}".encode()}).name == "tenant-a"
    held = repr(vars(authenticator._keys)) + repr(vars(OperatorKeys([ADMIN_HASH], "no")._keys))
    assert KEY_A not in held and ADMIN_KEY not in held
