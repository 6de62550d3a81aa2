"""What limits cost: CPU per admission in process memory and in Redis, Redis calls per request, gateway requests/s.

    .venv/bin/python bench/limits_bench.py [--requests 20000] [--gateway [--duration 5] [--connections 64] [--rounds 3]]

Part 1, in this process: the limit step (gateway/limit.py) admits and settles requests whose plan has a tenant's
requests/tokens/concurrency/daily-budget limits, a key's and a route's requests limit (eight limits, one call),
one at a time and 64 at once (the concurrent calls share pipelines). Reported: this process's CPU per request
(redis-server's own CPU is another process and not counted here), Redis's commands per request, and Redis's own time
running them per request (INFO commandstats: what sizes a Redis shared by every replica).
Part 2, --gateway: wrk against `python -m gateway serve` pinned to one core, an nginx upstream, redis-server,
nginx and wrk on the other core (as bench/run.py), with limits off, in memory, and in Redis. Goal: limits in
Redis keep at least 85% of the requests/s without limits.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path

import redis
import uvloop
import yaml

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
sys.path[:0] = [str(BENCH_DIR), str(REPO_ROOT)]

import bench_measure as measure  # noqa: E402
import bench_nginx  # noqa: E402
from bench_proc import Processes, ensure_tools, free_port, pick_cores, wait_ready  # noqa: E402

from adapters.base import Endpoint, Usage  # noqa: E402
from gateway.auth import Tenant, key_id  # noqa: E402
from gateway.config import GatewayConfig, Limits  # noqa: E402
from gateway.exchange import Exchange  # noqa: E402
from gateway.limit import Limiter  # noqa: E402
from policies.conditions import RequestFacts  # noqa: E402
from policies.engine import RouteDecision  # noqa: E402

GOAL_RATIO = 0.85
GATEWAYS = {
    "off": "off",
    "memory": "memory: requests, tokens, concurrency, budget",
    "redis-rpm": "redis: requests per minute (admit only)",
    "redis": "redis: requests, tokens, concurrency, budget (admit + settle)",
}
KEY_HASH = "sha256:" + "ab" * 32
BIG = 10**12  # limits never reached: every request is admitted and does all the work
TENANT_LIMITS = {"requests_per_minute": BIG, "tokens_per_minute": BIG, "concurrent_requests": 10**6, "usd_per_day": BIG}


def start_redis(procs: Processes, core: int, taskset: str | None) -> int:
    port = free_port()
    argv = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    procs.spawn("redis", ([taskset, "-c", str(core)] if taskset else []) + argv)
    client = redis.Redis(port=port)
    deadline = time.monotonic() + 10
    while True:
        try:
            client.ping()
            return port
        except redis.ConnectionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def limiter_for(redis_url: str | None) -> Limiter:
    config = GatewayConfig.model_validate(
        {
            "state": {"redis_url": redis_url} if redis_url else {},
            "tenants": {"t": {"keys": [{"hash": KEY_HASH, "limits": {"requests_per_minute": BIG}}], "models": ["*"], "limits": TENANT_LIMITS}},
        }
    )
    return Limiter(config.state, config.tenants)


async def one_request(limiter: Limiter, tenant: Tenant, decision: RouteDecision, facts: RequestFacts) -> None:
    exchange = Exchange(Endpoint.CHAT, b"bench")
    await limiter.admit(tenant, decision, facts, exchange)
    exchange.usage = Usage(19, 9, True)
    exchange.cost_usd = 0.0001
    limiter.settle(exchange)


async def admit_cost(redis_url: str | None, requests: int, concurrency: int, limited: bool = True) -> float:
    """CPU microseconds of this process per admitted-and-settled request (limited=False: a tenant without limits)."""
    limiter = limiter_for(redis_url)
    await limiter.start()
    tenant = Tenant("t", frozenset(), True, key_id(KEY_HASH) if limited else "unlimited")
    decision = RouteDecision("chat", ("a",), limits=Limits(requests_per_minute=BIG) if limited else None)
    facts = RequestFacts("chat", "t", "chat", False, {}, {"messages": [{"role": "user", "content": "Say hello in one short sentence."}]})
    for _ in range(200):  # warm: connections, script, plan cache
        await one_request(limiter, tenant, decision, facts)
    began = time.process_time()
    for _ in range(requests // concurrency):
        await asyncio.gather(*(one_request(limiter, tenant, decision, facts) for _ in range(concurrency)))
    spent = time.process_time() - began
    await limiter.close()  # waits for the last settlements
    return spent / (requests // concurrency * concurrency) * 1e6


def part_one(redis_port: int, requests: int) -> None:
    url = f"redis://127.0.0.1:{redis_port}/0"
    client = redis.Redis(port=redis_port, decode_responses=True)
    print("| backend | requests at once | CPU µs per request | of which limits (admit + settle) | Redis commands per request "
          "| Redis µs per request |")
    print("| --- | --- | --- | --- | --- | --- |")
    for concurrency in (1, 64):
        # The same loop for a tenant without limits: what the request itself and asyncio cost here.
        baseline = uvloop.run(admit_cost(None, requests, concurrency, limited=False))
        print(f"| none | {concurrency} | {baseline:.1f} | - | - | - |", flush=True)
        for name, redis_url in (("memory", None), ("redis", url)):
            client.flushall()
            client.config_resetstat()
            cost = uvloop.run(admit_cost(redis_url, requests, concurrency))
            stats = client.info("commandstats")
            scripts = [stats.get(f"cmdstat_{c}", {}) for c in ("evalsha", "eval")]
            sent, usec = (sum(s.get(field, 0) for s in scripts) for field in ("calls", "usec"))
            per_request = f"{sent / (requests + 200):.2f} EVALSHA" if redis_url else "-"
            # The scripts' time in redis-server (their commands included), per request: admit + settle.
            redis_us = usec / (requests + 200)
            redis_cell = f"{redis_us:.1f} (one Redis core: ~{1e6 / redis_us:,.0f} req/s)" if redis_url else "-"
            print(f"| {name} | {concurrency} | {cost:.1f} | {cost - baseline:.1f} | {per_request} | {redis_cell} |", flush=True)
    client.close()


def gateway_config(workdir: Path, nginx_port: int, key: str, redis_port: int, limits: str) -> Path:
    digest = hashlib.sha256(key.encode()).hexdigest()
    tenant: dict = {"keys": [f"sha256:{digest}"], "models": ["bench-upstream"]}
    config: dict = {"targets": {"bench-upstream": {"adapter": "openai", "base_url": f"http://127.0.0.1:{nginx_port}/v1", "model": "bench-model"}}}
    if limits != "off":
        tenant["limits"] = {"requests_per_minute": BIG} if limits.endswith("rpm") else TENANT_LIMITS
    if limits.startswith("redis"):
        config["state"] = {"redis_url": f"redis://127.0.0.1:{redis_port}/0"}
    config["tenants"] = {"bench": tenant}
    path = workdir / f"gateway-{limits}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def part_two(procs: Processes, tools: dict[str, str], cores: tuple[int, int], redis_port: int, args: argparse.Namespace) -> None:
    server_core, load_core = cores
    nginx_port = free_port()
    root = procs.workdir / "nginx"
    conf = bench_nginx.write_config(root, nginx_port)
    nginx = procs.spawn("nginx", [tools["taskset"], "-c", str(load_core), *bench_nginx.command(tools["nginx"], root, conf)])
    wait_ready(nginx, nginx_port, timeout_s=10)
    key = "sk-bench-" + secrets.token_hex(16)
    ports: dict[str, int] = {}
    for limits in GATEWAYS:  # all started once, each idle while another is measured
        port = ports[limits] = free_port()
        cfg = gateway_config(procs.workdir, nginx_port, key, redis_port, limits)
        argv = [tools["taskset"], "-c", str(server_core), sys.executable, "-m", "gateway", "serve", "--config", str(cfg),
                "--host", "127.0.0.1", "--port", str(port)]  # fmt: skip
        wait_ready(procs.spawn(f"gateway-{limits}", argv, cwd=REPO_ROOT), port)
        measure.preflight(port, key, "bench-upstream")
    runs: dict[str, list[measure.WrkResult]] = {limits: [] for limits in GATEWAYS}
    for round_ in range(args.rounds):  # alternated, so a noisy moment hurts every variant alike
        for limits, port in ports.items():
            print(f"[bench] round {round_ + 1}/{args.rounds}: limits {limits}...", file=sys.stderr, flush=True)
            runs[limits].append(
                measure.load(tools["wrk"], tools["taskset"], load_core, port, args.duration, args.connections, key, "bench-upstream")
            )
    rps = {limits: statistics.median(r.rps for r in results) for limits, results in runs.items()}
    print(f"\n| gateway limits (median of {args.rounds}) | requests/s | p99 ms | vs off | errors |")
    print("| --- | --- | --- | --- | --- |")
    for limits, results in runs.items():
        p99 = statistics.median(r.p99_ms for r in results)
        errors = sum(r.errors for r in results)
        print(f"| {GATEWAYS[limits]} | {rps[limits]:.0f} | {p99:.2f} | {rps[limits] / rps['off']:.1%} | {errors} |")
    ratio = rps["redis"] / rps["off"]
    print(f"\nlimits in Redis keep {ratio:.1%} of the requests/s (goal ≥ {GOAL_RATIO:.0%}): {'PASS' if ratio >= GOAL_RATIO else 'FAIL'}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--gateway", action="store_true", help="also measure gateway requests/s with wrk")
    parser.add_argument("--duration", type=int, default=5, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3, help="wrk runs per variant, alternated; medians reported")
    args = parser.parse_args()
    tools = ensure_tools() if args.gateway else {}
    cores = pick_cores()
    workdir = Path(tempfile.mkdtemp(prefix="switchyard-limits-bench-"))
    with Processes(workdir) as procs:
        redis_port = start_redis(procs, cores[1], tools.get("taskset"))
        part_one(redis_port, args.requests)
        if args.gateway:
            part_two(procs, tools, cores, redis_port, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
