"""Limits and budgets through real gateway processes sharing a real Redis: exact across replicas, one Redis call per
request, OpenAI's headers and errors, and spend that outlives the gateways."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import Counter

import httpx
import openai
import pytest

from fakes import async_wait_until, wait_until
from fakes.keys import make_key

KEY, KEY_HASH = make_key("acme")
OTHER_KEY, OTHER_HASH = make_key("beta")
PROMPT = "x" * 40  # 10 tokens by the gateway's estimate; the echo target reports the same for embeddings


def config(redis_url: str | None, limits: dict, targets: dict | None = None) -> dict:
    state = {"redis_url": redis_url} if redis_url else {}
    return {
        "state": state,
        "targets": targets or {"echo": {"adapter": "echo"}},
        "tenants": {
            "acme": {"keys": [KEY_HASH], "models": ["*"], "limits": limits},
            "beta": {"keys": [OTHER_HASH], "models": ["*"]},
        },
    }


def chat(content: str = "hello", model: str = "echo", **extra) -> dict:
    return {"model": model, "messages": [{"role": "user", "content": content}], **extra}


async def post_all(gateways, count: int, path: str = "/v1/chat/completions", body: dict | None = None, key: str = KEY):
    """`count` requests spread round-robin over the gateways, 32 at a time; returns the responses."""
    clients = [httpx.AsyncClient(base_url=g.base_url, timeout=10) for g in gateways]
    gate = asyncio.Semaphore(32)
    spread = itertools.cycle(clients)

    async def one(client: httpx.AsyncClient) -> httpx.Response:
        async with gate:
            return await client.post(path, json=body or chat(), headers={"Authorization": f"Bearer {key}"})

    try:
        return await asyncio.gather(*(one(next(spread)) for _ in range(count)))
    finally:
        for client in clients:
            await client.aclose()


def statuses(responses) -> Counter:
    return Counter(r.status_code for r in responses)


def metric(gateway, series: str) -> float:
    """A sample from GET /metrics, e.g. 'switchyard_redis_up'; 0 when absent."""
    _, _, body = gateway.http_get("/metrics")
    for line in body.decode().splitlines():
        name, _, value = line.rpartition(" ")
        if name == series:
            return float(value)
    return 0.0


async def test_two_gateways_share_one_requests_per_minute_limit_exactly(start_gateway, redis_url):
    gateways = [start_gateway(config(redis_url, {"requests_per_minute": 100})) for _ in range(2)]
    responses = await post_all(gateways, 300)
    assert statuses(responses) == {200: 100, 429: 200}
    admitted_by = Counter(r.url.port for r in responses if r.status_code == 200)
    assert len(admitted_by) == 2, "both gateways admitted some: the limit is shared, not split"
    refused = next(r for r in responses if r.status_code == 429)
    error = refused.json()["error"]
    assert error["code"] == "rate_limit_exceeded" and error["type"] == "rate_limit_error"
    assert "requests per minute" in error["message"] and "tenant 'acme'" in error["message"]
    assert 1 <= int(refused.headers["retry-after"]) <= 60 and int(refused.headers["retry-after-ms"]) > 0
    assert refused.headers["x-ratelimit-limit-requests"] == "100"
    assert refused.headers["x-ratelimit-remaining-requests"] == "0"
    rejected = 'switchyard_ratelimit_rejections_total{limit="requests_per_minute",tenant="acme"}'
    assert sum(metric(g, rejected) for g in gateways) == 200
    # another tenant is untouched, and never told about acme
    other = await post_all(gateways, 4, key=OTHER_KEY)
    assert statuses(other) == {200: 4}


async def test_two_gateways_share_one_tokens_per_minute_limit_exactly(start_gateway, redis_url):
    gateways = [start_gateway(config(redis_url, {"tokens_per_minute": 1000})) for _ in range(2)]
    body = {"model": "echo", "input": PROMPT}
    responses = await post_all(gateways, 300, path="/v1/embeddings", body=body)
    assert statuses(responses) == {200: 100, 429: 200}
    refused = next(r for r in responses if r.status_code == 429)
    assert "tokens per minute" in refused.json()["error"]["message"]
    assert refused.headers["x-ratelimit-limit-tokens"] == "1000"


async def test_route_limits_are_each_tenants_own(start_gateway, redis_url):
    policy = {
        "version": 1,
        "routes": [{"name": "chat", "when": {"model": "chat"}, "send": ["echo"], "limits_per_tenant": {"requests_per_minute": 3}}],
    }
    gateway = start_gateway(config(redis_url, {"requests_per_minute": 50}), policies={"policy.yaml": policy})
    acme = await post_all([gateway], 5, body=chat(model="chat"))
    beta = await post_all([gateway], 5, body=chat(model="chat"), key=OTHER_KEY)
    assert statuses(acme) == statuses(beta) == {200: 3, 429: 2}
    message = next(r for r in beta if r.status_code == 429).json()["error"]["message"]
    assert "tenant 'beta' on route 'chat'" in message and "acme" not in message
    assert statuses(await post_all([gateway], 5, body=chat(model="echo"))) == {200: 5}, "other routes are not limited"


async def test_key_limits_apply_on_top_of_the_tenants(start_gateway, redis_url):
    second_key, second_hash = make_key("acme-ci")
    cfg = config(redis_url, {"requests_per_minute": 50})
    cfg["tenants"]["acme"]["keys"].append({"hash": second_hash, "name": "ci", "limits": {"requests_per_minute": 2}})
    gateway = start_gateway(cfg)
    limited = await post_all([gateway], 4, key=second_key)
    assert statuses(limited) == {200: 2, 429: 2}
    assert "API key 'ci'" in next(r for r in limited if r.status_code == 429).json()["error"]["message"]
    first = await post_all([gateway], 4)
    assert statuses(first) == {200: 4}
    remaining = min(int(r.headers["x-ratelimit-remaining-requests"]) for r in first)
    assert remaining == 44, "the ci key's 2 requests count for the tenant too"


def redis_tokens(redis_server, tenant: str = "acme") -> int:
    client = redis_server.client()
    try:
        return int(client.hget(f"sy:{{{tenant}}}:t:tpm:w", "_") or 0)
    finally:
        client.close()


def test_tokens_are_corrected_by_the_usage_upstreams_report_streams_included(start_gateway, redis_server, redis_url, openai_upstream):
    target = {"adapter": "openai", "base_url": openai_upstream.base_url, "model": "m"}
    gateway = start_gateway(config(redis_url, {"tokens_per_minute": 100_000}, targets={"up": target}))
    sdk = openai.OpenAI(base_url=gateway.openai_base_url, api_key=KEY, max_retries=0)
    words = "one two three four five six seven eight"  # 38 characters: estimated at 10 tokens
    reply = sdk.chat.completions.create(model="up", messages=[{"role": "user", "content": words}])
    reported = reply.usage.prompt_tokens + reply.usage.completion_tokens
    assert reported != 10, "the test needs a reported usage unlike the estimate"
    wait_until(lambda: redis_tokens(redis_server) == reported, message="JSON usage reconciled")
    stream = sdk.chat.completions.create(model="up", messages=[{"role": "user", "content": words}], stream=True)
    chunks = list(stream)
    assert not any(chunk.usage for chunk in chunks), "the client did not ask for usage and gets none"
    wait_until(lambda: redis_tokens(redis_server) == 2 * reported, message="stream usage reconciled")


async def test_budget_is_shared_and_outlives_the_gateways(start_gateway, redis_server, redis_url):
    # $0.01 per input token: each request costs 10 tokens = $0.10. Admitted while spent < $0.35: four requests.
    priced = {"echo": {"adapter": "echo", "price": {"input_per_mtok": 10_000, "output_per_mtok": 0}}}
    gateways = [start_gateway(config(redis_url, {"usd_per_day": 0.35}, targets=priced)) for _ in range(2)]
    client = redis_server.client()

    def spent() -> float:
        return float(client.hget("sy:{acme}:t:usd:day", "s") or 0)

    admitted = 0
    for i in range(6):
        [response] = await post_all([gateways[i % 2]], 1, body=chat(PROMPT))
        if response.status_code == 200:
            admitted += 1
            assert response.headers["x-switchyard-cost-usd"].startswith("0.1000")
            await async_wait_until(lambda: spent() >= admitted * 0.1 - 1e-9, message="spend recorded")
    assert admitted == 4 and spent() == pytest.approx(0.4)
    for gateway in gateways:
        gateway.stop()
        gateway.start()
    [refused] = await post_all(gateways[:1], 1, body=chat(PROMPT))
    assert refused.status_code == 429, "spend lives in Redis, not in the gateways"
    error = refused.json()["error"]
    assert error["code"] == "budget_exceeded" and "USD per day" in error["message"] and "UTC day" in error["message"]
    until_midnight = 86_400 - time.time() % 86_400  # UTC days are whole multiples of 86 400 s of Unix time
    assert abs(int(refused.headers["retry-after"]) - until_midnight) <= 5
    assert refused.headers["x-should-retry"] == "false"
    client.close()


async def test_concurrency_slots_are_held_by_streams_until_they_end_or_the_client_leaves(start_gateway, redis_url, openai_upstream):
    openai_upstream.chunk_delay = 0.1  # a stream of n words takes about n / 10 seconds
    target = {"adapter": "openai", "base_url": openai_upstream.base_url, "model": "m"}
    gateways = [start_gateway(config(redis_url, {"concurrent_requests": 2}, targets={"up": target})) for _ in range(2)]
    headers = {"Authorization": f"Bearer {KEY}"}
    async with httpx.AsyncClient(timeout=10) as client:

        async def open_stream(gateway, words: int) -> httpx.Response:
            body = chat(" ".join(["word"] * words), model="up", stream=True)
            request = client.build_request("POST", gateway.base_url + "/v1/chat/completions", json=body, headers=headers)
            return await client.send(request, stream=True)

        async def status_of_one_more(gateway) -> int:
            response = await client.post(gateway.base_url + "/v1/chat/completions", json=chat(model="up"), headers=headers)
            return response.status_code

        async def eventually_admitted(gateway) -> None:
            deadline = asyncio.get_running_loop().time() + 5
            while await status_of_one_more(gateway) != 200:
                assert asyncio.get_running_loop().time() < deadline, "a slot was never freed"

        first, second = await open_stream(gateways[0], 25), await open_stream(gateways[1], 300)
        assert first.status_code == second.status_code == 200
        refused = await client.post(gateways[1].base_url + "/v1/chat/completions", json=chat(model="up"), headers=headers)
        assert refused.status_code == 429 and "concurrent requests" in refused.json()["error"]["message"]
        assert refused.headers["retry-after"] == "1"
        await first.aread()  # the stream ends: its slot frees
        await first.aclose()
        await eventually_admitted(gateways[1])
        # The admitted request above frees its slot just after its answer was sent: wait for that too.
        deadline = asyncio.get_running_loop().time() + 5
        while (third := await open_stream(gateways[0], 300)).status_code != 200:
            await third.aclose()
            assert asyncio.get_running_loop().time() < deadline, "the finished request's slot was never freed"
        assert await status_of_one_more(gateways[0]) == 429, "two streams hold both slots"
        await second.aclose()  # the client leaves mid-stream: its slot frees too
        await eventually_admitted(gateways[0])
        await third.aclose()


def test_without_redis_limits_live_in_the_process_and_speak_openai(start_gateway):
    gateway = start_gateway(config(None, {"requests_per_minute": 3, "tokens_per_minute": 1000}))
    sdk = openai.OpenAI(base_url=gateway.openai_base_url, api_key=KEY, max_retries=0)
    raw = sdk.chat.completions.with_raw_response.create(model="echo", messages=[{"role": "user", "content": PROMPT}])
    assert raw.headers["x-ratelimit-limit-requests"] == "3" and raw.headers["x-ratelimit-remaining-requests"] == "2"
    assert raw.headers["x-ratelimit-reset-requests"] == "1m0s"
    assert raw.headers["x-ratelimit-limit-tokens"] == "1000" and raw.headers["x-ratelimit-remaining-tokens"] == "990"
    for _ in range(2):
        sdk.chat.completions.create(model="echo", messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(openai.RateLimitError) as refused:
        sdk.chat.completions.create(model="echo", messages=[{"role": "user", "content": "hi"}])
    assert refused.value.code == "rate_limit_exceeded"
    assert refused.value.response.headers["x-ratelimit-reset-requests"].endswith("s")
    assert gateway.http_get("/readyz")[2] == b'{"status":"ready"}'


def commandstats(redis_server) -> dict[str, int]:
    client = redis_server.client()
    try:
        return {name.removeprefix("cmdstat_"): stats["calls"] for name, stats in client.info("commandstats").items()}
    finally:
        client.close()


# Commandstats also counts what scripts run; and a gateway may open a new connection under load.
RUN_BY_THE_SCRIPT = {
    "time", "zadd", "zrem", "zcard", "zrange", "zrangebyscore", "zremrangebyscore", "zscore",
    "hget", "hmget", "hset", "hdel", "hincrby", "hincrbyfloat", "pexpire",
}  # fmt: skip
NOT_PER_REQUEST = {"hello", "client|setinfo", "client|setname", "ping", "script|load", "config|resetstat", "info", "zcard"}


def sent_by_gateways(redis_server) -> dict[str, int]:
    return {
        name: calls
        for name, calls in commandstats(redis_server).items()
        if name not in RUN_BY_THE_SCRIPT and name not in NOT_PER_REQUEST
    }


@pytest.mark.parametrize(
    ("limits", "calls_per_request"),
    [
        ({"requests_per_minute": 1000}, 1),  # nothing to tell back at the end
        ({"requests_per_minute": 1000, "tokens_per_minute": 10**6, "concurrent_requests": 50, "usd_per_month": 100}, 2),
    ],
)
async def test_one_redis_call_admits_a_request_whatever_its_limits(start_gateway, redis_server, redis_url, limits, calls_per_request):
    priced = {"echo": {"adapter": "echo", "price": {"input_per_mtok": 1, "output_per_mtok": 1}}}
    policy = {"version": 1, "routes": [{"name": "r", "when": {"model": "chat"}, "send": ["echo"], "limits_per_tenant": limits}]}
    cfg = config(redis_url, limits, targets=priced)
    second_key, second_hash = make_key("acme-2")
    cfg["tenants"]["acme"]["keys"].append({"hash": second_hash, "limits": limits})
    gateway = start_gateway(cfg, policies={"policy.yaml": policy})
    await post_all([gateway], 5, body=chat(model="chat"), key=second_key)  # connections made, script loaded
    client = redis_server.client()
    if calls_per_request == 2:  # the warm-up's settlements land after its answers: let them, before counting
        await async_wait_until(lambda: client.zcard("sy:{acme}:t:conc") == 0, message="warm-up settled")
    client.config_resetstat()
    # one at a time: tenant, key and route limits take one call to admit, one to settle when there is something to tell
    for _ in range(20):
        assert statuses(await post_all([gateway], 1, body=chat(model="chat"), key=second_key)) == {200: 1}
    expected = 20 * calls_per_request
    await async_wait_until(lambda: sent_by_gateways(redis_server).get("evalsha") == expected, message="settled")
    assert sent_by_gateways(redis_server) == {"evalsha": expected}
    # many at once: still one call per admission; settlements of ended requests share calls
    client.config_resetstat()
    assert statuses(await post_all([gateway], 64, body=chat(model="chat"), key=second_key)) == {200: 64}
    await async_wait_until(lambda: client.zcard("sy:{acme}:t:rpm") == 5 + 20 + 64, message="admitted")
    if calls_per_request == 2:
        await async_wait_until(lambda: client.zcard("sy:{acme}:t:conc") == 0, message="slots released")
    sent = sent_by_gateways(redis_server)
    assert set(sent) == {"evalsha"} and 64 <= sent["evalsha"] <= 64 * calls_per_request
    client.close()
