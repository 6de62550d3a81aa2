"""Soak: one real gateway, 100,000 mixed chat requests, and the leaks only a long run shows.

    .venv/bin/python bench/soak.py [--redis] [--requests 100000] [--warmup 10000] [--concurrency 32] [--json FILE]
    make soak                      # the full run; SOAK_ARGS="--requests 20000" for a shorter one

One `python -m gateway serve` (a generated config: a policy route, a priced target, a tenant concurrency limit,
with --redis kept in a private redis-server) in front of bench/soak_upstream.py. bench/soak_load.py's client
keeps `--concurrency` requests in flight: half JSON, a third streams read to their end, the rest streams it
hangs up on after their first event. Goals, checked
once the load has stopped and the gateway is idle again:

  errors            none: every reply 200 and whole (streams end with [DONE]), no client exception
  memory            gateway RSS at the end ≤ its RSS after the warm-up × (1 + --rss-growth, default 10%)
  upstream sockets  the gateway's ESTABLISHED connections to the upstream ≤ the pool, and not growing
  tasks             switchyard_event_loop_tasks back to its idle baseline (± --task-slack)
  upstream          every request arrived; each JSON reply and each stream not hung up on was written whole
  log               no traceback in the gateway's log
  redis             (--redis) one connection to Redis, every concurrency lease given back, the limits' keys there

Exit status: 0 all goals met, 1 a goal failed, 2 the harness could not run (its logs are kept and named).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import secrets
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
sys.path.insert(0, str(BENCH_DIR))  # sibling modules, also when imported from elsewhere

from bench_proc import HarnessError, Managed, Processes, free_port, http_status, rss_mb, wait_ready  # noqa: E402
from bench_setup import redis_integer, redis_keys, start_redis  # noqa: E402
from soak_load import Client, established_connections, watch  # noqa: E402

POOL_ROOM = 8  # the target's max_connections is the client's concurrency plus this: a leak soon exhausts it
LEASES_KEY = "sy:{soak}:t:conc"  # the tenant's concurrency leases in Redis (gateway/limit.py names the keys)
NO_PROXY = "127.0.0.1,localhost,::1"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=100_000, help="requests in all, warm-up included")
    parser.add_argument("--warmup", type=int, default=10_000, help="requests before the reference RSS is taken")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rss-growth", type=float, default=0.10, help="allowed RSS growth after the warm-up")
    parser.add_argument("--task-slack", type=int, default=2, help="tasks allowed above the idle baseline")
    parser.add_argument("--progress-s", type=float, default=10.0, help="seconds between progress lines")
    parser.add_argument("--json", type=Path, help="also write the numbers and verdicts to FILE")
    parser.add_argument("--redis", action="store_true", help="limits in a private redis-server (make soak does this)")
    args = parser.parse_args(argv)
    if not 0 < args.warmup < args.requests:
        parser.error("--warmup must be above 0 and below --requests")
    return args


def write_config(workdir: Path, upstream_port: int, key: str, concurrency: int, redis_port: int | None) -> Path:
    digest = hashlib.sha256(key.encode()).hexdigest()
    (workdir / "policy.yaml").write_text(
        "version: 1\nroutes:\n  - {name: chat, when: {model: chat}, send: [soak], attempt_timeout_s: 20}\n"
    )
    path = workdir / "gateway.yaml"
    # The concurrency limit has room for twice the client's: leaked leases would show up as 429s. With Redis, a
    # requests limit too (never reached), whose window shows after the load that the admissions went there.
    limits = f"concurrent_requests: {2 * concurrency}" + (", requests_per_minute: 1000000000" if redis_port else "")
    path.write_text(
        "targets:\n"
        f'  soak: {{adapter: openai, base_url: "http://127.0.0.1:{upstream_port}/v1", model: soak-model,\n'
        f"         max_connections: {concurrency + POOL_ROOM}, price: {{input_per_mtok: 1.0, output_per_mtok: 2.0}}}}\n"
        "tenants:\n"
        f'  soak: {{keys: ["sha256:{digest}"], models: [chat], limits: {{{limits}}}}}\n'
        "policies: [policy.yaml]\n"
        + (f'state: {{redis_url: "redis://127.0.0.1:{redis_port}/0"}}\n' if redis_port else "")
    )
    return path


def gauge(port: int, name: str) -> float:
    """One unlabelled sample of the gateway's /metrics."""
    status, body = http_status(port, "GET", "/metrics", timeout=5.0)
    if status != 200:
        raise HarnessError(f"/metrics answered {status}")
    for line in body.decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise HarnessError(f"/metrics has no {name}")


def upstream_stats(port: int) -> dict[str, int]:
    status, body = http_status(port, "GET", "/stats")
    if status != 200:
        raise HarnessError(f"upstream /stats answered {status}")
    return json.loads(body)


def poll(condition: Callable[[], bool], timeout_s: float, interval_s: float = 0.1) -> bool:
    """Whether `condition` came true within timeout_s (checked every interval_s)."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval_s)
    return True


def streams_settled(stats: dict[str, int]) -> bool:
    return stats.get("stream_done", 0) + stats.get("stream_aborted", 0) == stats.get("stream_started", 0)


def idle_tasks(port: int) -> int:
    """The task count once two scrapes 0.2 s apart agree and nothing is in flight (start-up work settled)."""
    readings: list[int] = []

    def settled() -> bool:
        readings.append(int(gauge(port, "switchyard_event_loop_tasks")))
        return len(readings) > 1 and readings[-1] == readings[-2] and gauge(port, "switchyard_in_flight_requests") == 0

    poll(settled, timeout_s=10, interval_s=0.2)
    return readings[-1]


def wait_idle(port: int) -> None:
    if not poll(lambda: gauge(port, "switchyard_in_flight_requests") == 0, timeout_s=30):
        raise HarnessError("the gateway still has requests in flight 30 s after the load stopped")


async def drive(
    client: Client, start: int, stop: int, args: argparse.Namespace, probe: Callable[[], dict[str, float]],
    peaks: dict[str, float],
) -> None:
    watcher = asyncio.ensure_future(watch(client, args.requests, probe, peaks, args.progress_s))
    try:
        await client.run(start, stop)
    finally:
        watcher.cancel()


def run_event_loop(coroutine: Coroutine[Any, Any, None]) -> None:
    try:
        import uvloop

        uvloop.run(coroutine)
    except ImportError:
        asyncio.run(coroutine)


def soak(args: argparse.Namespace, procs: Processes, workdir: Path) -> dict:
    upstream_port, gateway_port = free_port(), free_port()
    upstream = procs.spawn("upstream", [sys.executable, str(BENCH_DIR / "soak_upstream.py"), "--port", str(upstream_port)])
    wait_ready(upstream, upstream_port, timeout_s=10)
    key = "sk-soak-" + secrets.token_hex(12)
    redis_port = start_redis(procs, []) if args.redis else None
    config = write_config(workdir, upstream_port, key, args.concurrency, redis_port)
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True", "NO_PROXY": NO_PROXY, "no_proxy": NO_PROXY}
    argv = [sys.executable, "-m", "gateway", "serve", "--config", str(config), "--host", "127.0.0.1",
            "--port", str(gateway_port)]
    gateway: Managed = procs.spawn("gateway", argv, cwd=REPO_ROOT, env=env)
    wait_ready(gateway, gateway_port)
    numbers: dict = {"requests": args.requests, "warmup": args.warmup, "concurrency": args.concurrency}
    numbers["pool"] = args.concurrency + POOL_ROOM
    numbers["tasks_idle"] = idle_tasks(gateway_port)
    numbers["rss_idle_mb"] = rss_mb(gateway.pid)
    client, peaks = Client(gateway_port, key, args.concurrency), {}

    def probe() -> dict[str, float]:
        return {"rss_mb": round(rss_mb(gateway.pid), 1), "tasks": gauge(gateway_port, "switchyard_event_loop_tasks")}

    began = time.monotonic()
    run_event_loop(drive(client, 0, args.warmup, args, probe, peaks))
    wait_idle(gateway_port)
    numbers["rss_warm_mb"] = rss_mb(gateway.pid)
    run_event_loop(drive(client, args.warmup, args.requests, args, probe, peaks))
    numbers["load_s"] = time.monotonic() - began
    wait_idle(gateway_port)
    numbers["rss_end_mb"] = rss_mb(gateway.pid)
    numbers["rss_peak_mb"] = max(peaks.get("rss_mb", 0.0), numbers["rss_end_mb"])
    numbers["tasks_peak"] = int(peaks.get("tasks", 0))
    tasks = lambda: int(gauge(gateway_port, "switchyard_event_loop_tasks"))  # noqa: E731
    poll(lambda: tasks() <= numbers["tasks_idle"] + args.task_slack, timeout_s=10)
    numbers["tasks_end"] = tasks()
    first = established_connections(gateway.pid, upstream_port)
    time.sleep(1.0)  # a count that is still climbing a second after the load is a leak
    numbers["upstream_connections"] = [first, established_connections(gateway.pid, upstream_port)]
    # The upstream learns of a hang-up at its next write: give its streams a moment to notice.
    poll(lambda: streams_settled(upstream_stats(upstream_port)), timeout_s=5)
    numbers["upstream"] = upstream_stats(upstream_port)
    if redis_port is not None:
        # A lease is given back when its request ends; the last settlements may still be on their way.
        leases = lambda: redis_integer(redis_port, "ZCARD", LEASES_KEY)  # noqa: E731
        poll(lambda: leases() == 0, timeout_s=5)
        numbers["redis"] = {"connections": established_connections(gateway.pid, redis_port), "leases": leases(),
                            "keys": redis_keys(redis_port)}
    numbers["sent"], numbers["ok"] = dict(client.tally.sent), dict(client.tally.ok)
    numbers["errors"] = sum(client.tally.errors.values())
    numbers["error_examples"] = client.tally.examples()
    numbers["req_per_s"] = args.requests / numbers["load_s"]
    numbers["gateway_running"] = gateway.popen.poll() is None
    numbers["tracebacks"] = gateway.log_path.read_text(errors="replace").count("Traceback")
    return numbers


def verdicts(numbers: dict, args: argparse.Namespace) -> dict[str, tuple[bool, str]]:
    up, sent, ok = numbers["upstream"], numbers["sent"], numbers["ok"]
    growth = numbers["rss_end_mb"] / numbers["rss_warm_mb"] - 1
    first, last = numbers["upstream_connections"]
    streams_sent = sent.get("stream", 0) + sent.get("abandon", 0)
    return {
        "errors": (numbers["errors"] == 0, f"{numbers['errors']} of {numbers['requests']}"),
        "memory": (
            growth <= args.rss_growth,
            f"{numbers['rss_warm_mb']:.1f} MiB after warm-up → {numbers['rss_end_mb']:.1f} MiB at the end "
            f"({growth:+.1%}, goal ≤ {args.rss_growth:+.0%}); idle before load {numbers['rss_idle_mb']:.1f}, "
            f"peak {numbers['rss_peak_mb']:.1f}",
        ),
        "upstream sockets": (
            last <= first and max(first, last) <= numbers["pool"],
            f"{first} then {last} a second later (pool {numbers['pool']}, client concurrency {numbers['concurrency']})",
        ),
        "tasks": (
            numbers["tasks_end"] <= numbers["tasks_idle"] + args.task_slack,
            f"{numbers['tasks_idle']} idle before load, up to {numbers['tasks_peak']} under load, "
            f"{numbers['tasks_end']} after (slack {args.task_slack})",
        ),
        "upstream": (
            up.get("json_done", 0) == ok.get("json", 0) == sent.get("json", 0)
            and up.get("stream_started", 0) == streams_sent
            and up.get("stream_done", 0) >= ok.get("stream", 0) == sent.get("stream", 0)
            and streams_settled(up),
            f"JSON {up.get('json_done', 0)} written / {sent.get('json', 0)} sent; streams {up.get('stream_started', 0)} "
            f"begun / {streams_sent} sent, {up.get('stream_done', 0)} whole (≥ {sent.get('stream', 0)} read to the end), "
            f"{up.get('stream_aborted', 0)} cut short of {sent.get('abandon', 0)} hung up on",
        ),
        # The upstream finishes some abandoned streams before the gateway notices; none cut at all means the
        # gateway never passes a hang-up on.
        "hang-ups passed on": (
            up.get("stream_aborted", 0) > 0,
            f"{up.get('stream_aborted', 0)} upstream streams cut short after {sent.get('abandon', 0)} client hang-ups",
        ),
        "log": (
            numbers["tracebacks"] == 0 and numbers["gateway_running"],
            f"{numbers['tracebacks']} tracebacks, gateway {'running' if numbers['gateway_running'] else 'DEAD'}",
        ),
    } | ({} if "redis" not in numbers else {
        "redis": (
            numbers["redis"]["connections"] == 1 and numbers["redis"]["leases"] == 0 and numbers["redis"]["keys"] > 0,
            f"{numbers['redis']['connections']} connection(s) to Redis, {numbers['redis']['leases']} concurrency leases "
            f"still held, {numbers['redis']['keys']} keys",
        ),
    })


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="soak-"))
    try:
        with Processes(workdir) as procs:
            numbers = soak(args, procs, workdir)
    except HarnessError as exc:
        print(f"[soak] harness error: {exc}\n[soak] logs kept in {workdir}", file=sys.stderr)
        return 2
    checks = verdicts(numbers, args)
    print(f"\n[soak] {numbers['requests']} requests at concurrency {numbers['concurrency']} in "
          f"{numbers['load_s']:.1f} s ({numbers['req_per_s']:.0f} req/s), mix sent {numbers['sent']}")
    for name, (passed, detail) in checks.items():
        print(f"  {'PASS' if passed else 'FAIL'}  {name:17} {detail}")
    for example in numbers["error_examples"]:
        print(f"        {example}")
    numbers["checks"] = {name: {"pass": passed, "detail": detail} for name, (passed, detail) in checks.items()}
    if args.json:
        args.json.write_text(json.dumps(numbers, indent=2))
    failed = [name for name, (passed, _) in checks.items() if not passed]
    if failed:
        print(f"[soak] FAILED: {', '.join(failed)}; logs kept in {workdir}")
        return 1
    shutil.rmtree(workdir, ignore_errors=True)
    print("[soak] all goals met")
    return 0


if __name__ == "__main__":
    sys.exit(main())
