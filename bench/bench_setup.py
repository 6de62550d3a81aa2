"""Gateway configs for the benchmark and the services the full pipeline needs (redis-server, OTLP sink).

Two gateway configs, both served by the same nginx mock upstream:
  core  the request path with nothing optional: a key, a target named by the request, metrics on.
  full  everything a production deployment typically turns on: the request names an alias that a
        policy route claims (among a few other routes), Redis limits of every kind on the tenant, the
        key and the route (high enough never to refuse, so each request does all the work), PII
        redaction + prompt-injection and secret detection (the policy of bench/safety_bench.py),
        metrics, and traces exported at the default sampling to bench/otlp_sink.py.
"""

from __future__ import annotations

import hashlib
import socket
import sys
import time
from pathlib import Path

from bench_proc import HarnessError, Processes, free_port, http_status, wait_ready
from safety_bench import SAFETY  # the safety policy safety_bench.py measures: one definition

BENCH_DIR = Path(__file__).resolve().parent
UPSTREAM_MODEL = "bench-upstream"  # core: the target name itself, served by nginx
SSE_MODEL = "bench-sse"            # core: streaming target (bench/sse_upstream.py)
FULL_MODEL = "chat"                # full: an alias, claimed by the policy's `chat` route
FULL_ROUTE = "chat"
BIG = 10**12                       # limits that are never reached
PRICE = "price: {input_per_mtok: 0.15, output_per_mtok: 0.6}"  # so the budget limit has spend to count

ROUTES = f"""routes:
  - name: beta-canary
    when: {{model: chat, header: {{x-team: beta}}}}
    send: [bench-canary]
    fallback: [{UPSTREAM_MODEL}]
  - name: long-prompts
    when: {{model: chat, est_prompt_tokens: {{gt: 8000}}}}
    send: [bench-canary]
  - name: injection-to-in-house
    when: {{model: chat, flagged: [prompt_injection]}}
    send: [bench-in-house]
  - name: {FULL_ROUTE}
    when: {{model: chat}}
    send: [{UPSTREAM_MODEL}]
    fallback: [bench-canary]
    retry: {{attempts: 2}}
    timeout_s: 30
    limits_per_tenant: {{requests_per_minute: {BIG}}}
"""


def _digest(key: str) -> str:
    # The gateway stores only sha256 hashes of keys; the plaintext stays in the harness and wrk's env.
    return hashlib.sha256(key.encode()).hexdigest()


def _target(name: str, port: int, extra: str = "") -> str:
    return f'  {name}: {{adapter: openai, base_url: "http://127.0.0.1:{port}/v1", model: bench-model{extra}}}\n'


def core_config(workdir: Path, nginx_port: int, sse_port: int, key: str) -> Path:
    path = workdir / "gateway-core.yaml"
    path.write_text(
        "targets:\n" + _target(UPSTREAM_MODEL, nginx_port) + _target(SSE_MODEL, sse_port)
        + "tenants:\n"
        f'  bench: {{keys: ["sha256:{_digest(key)}"], models: [{UPSTREAM_MODEL}, {SSE_MODEL}]}}\n'
    )
    return path


def full_config(workdir: Path, nginx_port: int, redis_port: int, key: str) -> Path:
    (workdir / "bench-policy.yaml").write_text(SAFETY + ROUTES)
    limits = (f"{{requests_per_minute: {BIG}, tokens_per_minute: {BIG}, concurrent_requests: 1000000, "
              f"usd_per_day: {BIG}}}")
    path = workdir / "gateway-full.yaml"
    path.write_text(
        "targets:\n"
        + "".join(_target(name, nginx_port, ", " + PRICE)
                  for name in (UPSTREAM_MODEL, "bench-canary", "bench-in-house"))
        + f'state: {{redis_url: "redis://127.0.0.1:{redis_port}/0"}}\n'
        "tenants:\n"
        "  bench:\n"
        f'    keys: [{{hash: "sha256:{_digest(key)}", name: bench-key, '
        f"limits: {{requests_per_minute: {BIG}}}}}]\n"
        f"    models: [{FULL_MODEL}]\n"
        f"    limits: {limits}\n"
        "policies: [bench-policy.yaml]\n"
        # Tracing: on because the harness sets OTEL_EXPORTER_OTLP_ENDPOINT; sampling left at its default.
        "observability: {metrics: true}\n"
    )
    return path


def _redis_command(port: int, command: bytes) -> bytes:
    """One command's reply, whole: a bulk string (INFO's) is read to its declared length."""
    with socket.create_connection(("127.0.0.1", port), timeout=1.0) as conn:
        conn.sendall(command)
        reply = conn.recv(4096)
        if reply.startswith(b"$"):
            header, _, _ = reply.partition(b"\r\n")
            size = len(header) + 2 + max(0, int(header[1:])) + 2
            while len(reply) < size:
                chunk = conn.recv(65536)
                if not chunk:
                    break
                reply += chunk
        return reply


def _redis_reply(port: int, *parts: str) -> bytes:
    command = b"*%d\r\n" % len(parts) + b"".join(b"$%d\r\n%s\r\n" % (len(p.encode()), p.encode()) for p in parts)
    return _redis_command(port, command)


def start_redis(procs: Processes, pinned: list[str]) -> int:
    """A private, non-persistent redis-server (argv prefix `pinned`: taskset to the load core)."""
    port = free_port()
    child = procs.spawn("redis", pinned + ["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                                           "--save", "", "--appendonly", "no"])
    deadline = time.monotonic() + 10
    while True:
        try:
            if _redis_command(port, b"PING\r\n").startswith(b"+PONG"):
                return port
        except OSError:
            pass
        if child.popen.poll() is not None or time.monotonic() > deadline:
            raise HarnessError(f"redis-server did not start on :{port}\n{child.log_tail()}")
        time.sleep(0.02)


def redis_integer(port: int, *parts: str) -> int:
    """The integer reply of one command to the private Redis (DBSIZE, ZCARD key…)."""
    return int(_redis_reply(port, *parts)[1:].split(b"\r\n", 1)[0])


def redis_keys(port: int) -> int:
    """DBSIZE: proof that the limits really went to Redis."""
    return redis_integer(port, "DBSIZE")


def redis_scripts(port: int) -> tuple[int, float]:
    """(calls, µs per call) of the limits script in the private Redis (INFO commandstats): its own time, which a
    Redis shared by every replica spends per request."""
    for line in _redis_reply(port, "INFO", "commandstats").decode().splitlines():
        if line.startswith("cmdstat_evalsha:"):  # cmdstat_evalsha:calls=…,usec=…,usec_per_call=…,…
            stats = dict(field.split("=", 1) for field in line.split(":", 1)[1].split(","))
            return int(stats["calls"]), float(stats["usec_per_call"])
    return 0, 0.0


def start_sink(procs: Processes, pinned: list[str]) -> int:
    port = free_port()
    child = procs.spawn("otlp-sink", pinned + [sys.executable, str(BENCH_DIR / "otlp_sink.py"),
                                               "--port", str(port)])
    wait_ready(child, port, timeout_s=30)
    return port


def sink_exports(port: int) -> tuple[int, int]:
    """(export requests, bytes) the sink has received."""
    _, body = http_status(port, "GET", "/count")
    exports, size = body.split()
    return int(exports), int(size)
