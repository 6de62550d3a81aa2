"""Redis dies under load and comes back: no crash, no hung request, fail_open / fail_closed honoured, recovery on
its own, and /readyz telling the truth all along."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field

import httpx
import orjson

from fakes import async_wait_until, wait_until
from fakes.keys import make_key
from fakes.network import free_port

KEY, KEY_HASH = make_key("acme")
BODY = {"model": "echo", "messages": [{"role": "user", "content": "hello"}]}


def config(redis_url: str, on_error: str, limits: dict | None = None) -> dict:
    return {
        "state": {"redis_url": redis_url, "on_redis_error": on_error, "redis_timeout_s": 0.2, "redis_retry_s": 0.2},
        "targets": {"echo": {"adapter": "echo"}},
        "tenants": {"acme": {"keys": [KEY_HASH], "models": ["echo"], "limits": limits or {"requests_per_minute": 10**6}}},
    }


@dataclass
class Load:
    """Requests sent back to back by a few workers until stopped; what came back, and the slowest answer."""

    gateway: object
    statuses: Counter = field(default_factory=Counter)
    codes: Counter = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    slowest: float = 0.0
    answered: int = 0
    _running: bool = True

    async def run(self, workers: int = 6) -> None:
        async with httpx.AsyncClient(base_url=self.gateway.base_url, timeout=5) as client:
            await asyncio.gather(*(self._worker(client) for _ in range(workers)))

    async def _worker(self, client: httpx.AsyncClient) -> None:
        headers = {"Authorization": f"Bearer {KEY}"}
        while self._running:
            began = time.monotonic()
            try:
                response = await client.post("/v1/chat/completions", json=BODY, headers=headers)
            except httpx.HTTPError as error:  # a hang ends here as a ReadTimeout
                self.failures.append(type(error).__name__)
                continue
            self.slowest = max(self.slowest, time.monotonic() - began)
            self.statuses[response.status_code] += 1
            if response.status_code != 200:
                self.codes[response.json()["error"]["code"]] += 1
            self.answered += 1

    async def more(self, count: int) -> None:
        """Waits until `count` more requests have been answered."""
        target = self.answered + count
        await async_wait_until(lambda: self.answered >= target, timeout=10, message=f"{count} more answers")

    def stop(self) -> None:
        self._running = False


def redis_up(gateway) -> str:
    _, _, body = gateway.http_get("/metrics")
    return next(line.split()[1] for line in body.decode().splitlines() if line.startswith("switchyard_redis_up "))


def ready(gateway) -> tuple[int | None, dict]:
    status, _, body = gateway.http_get("/readyz")
    return status, orjson.loads(body) if body else {}


async def test_fail_open_keeps_serving_through_a_redis_crash_and_recovers_alone(start_gateway, redis_server, redis_url):
    gateway = start_gateway(config(redis_url, "fail_open"))
    assert ready(gateway) == (200, {"status": "ready", "redis": "up"})
    assert redis_up(gateway) == "1.0"
    load = Load(gateway)
    running = asyncio.ensure_future(load.run())
    try:
        await load.more(50)
        redis_server.kill()
        await load.more(200)
        assert ready(gateway)[0] == 200 and ready(gateway)[1]["status"] == "degraded"
        assert redis_up(gateway) == "0.0"
        redis_server.start()  # empty, as after a crash without persistence
        await async_wait_until(lambda: ready(gateway)[1].get("redis") == "up", timeout=5, message="redis back")
        await load.more(50)
        assert redis_up(gateway) == "1.0"
    finally:
        load.stop()
        await running
    assert load.failures == [] and set(load.statuses) == {200}, "every request was answered, and admitted"
    assert load.slowest < 2.0, "no request waited on the dead Redis"
    client = redis_server.client()
    assert client.zcard("sy:{acme}:t:rpm") > 0, "admissions went back to Redis by themselves"
    client.close()
    log = gateway.log_text()
    assert log.count("is unavailable") == 1 and log.count("is reachable again") == 1, log
    assert "Traceback" not in log and gateway.running


async def test_fail_closed_refuses_clearly_while_redis_is_down_then_serves_again(start_gateway, redis_server, redis_url):
    gateway = start_gateway(config(redis_url, "fail_closed"))
    load = Load(gateway)
    running = asyncio.ensure_future(load.run())
    try:
        await load.more(50)
        redis_server.kill()
        await async_wait_until(lambda: load.statuses[503] >= 50, message="503s while Redis is down")
        status, body = ready(gateway)
        assert status == 503 and body["reason"] == "redis unreachable" and body["redis"] == "down"
        redis_server.start()
        await async_wait_until(lambda: ready(gateway)[0] == 200, timeout=5, message="ready again")
        served = load.statuses[200]
        await async_wait_until(lambda: load.statuses[200] >= served + 50, message="served again")
    finally:
        load.stop()
        await running
    assert load.failures == [] and set(load.statuses) == {200, 503}
    assert set(load.codes) == {"limits_unavailable"}
    assert load.slowest < 2.0
    assert "Traceback" not in gateway.log_text() and gateway.running


async def test_redis_unreachable_from_the_start_with_fail_open_enforces_limits_per_process(start_gateway):
    gateway = start_gateway(config(f"redis://127.0.0.1:{free_port()}/0", "fail_open", {"requests_per_minute": 3}))
    status, body = ready(gateway)
    assert status == 200 and body["status"] == "degraded" and body["redis"] == "down"
    async with httpx.AsyncClient(base_url=gateway.base_url, timeout=5) as client:
        responses = [
            await client.post("/v1/chat/completions", json=BODY, headers={"Authorization": f"Bearer {KEY}"}) for _ in range(5)
        ]
    assert [r.status_code for r in responses] == [200, 200, 200, 429, 429]
    _, _, metrics = gateway.http_get("/metrics")
    assert 'switchyard_limits_degraded_total{mode="fail_open"} 5.0' in metrics.decode()


def test_redis_unreachable_from_the_start_with_fail_closed_is_not_ready(start_gateway):
    gateway = start_gateway(config(f"redis://127.0.0.1:{free_port()}/0", "fail_closed"), wait_ready=False)
    wait_until(lambda: ready(gateway)[1].get("reason") == "redis unreachable", message="started, not ready")
    status, body = ready(gateway)
    assert status == 503 and body["limits"].startswith("requests refused")
    refused = httpx.post(gateway.base_url + "/v1/chat/completions", json=BODY, headers={"Authorization": f"Bearer {KEY}"})
    assert refused.status_code == 503 and refused.json()["error"]["code"] == "limits_unavailable"
    assert refused.headers["retry-after"] == "1"
    _, _, metrics = gateway.http_get("/metrics")
    assert 'switchyard_limits_degraded_total{mode="fail_closed"} 1.0' in metrics.decode()
