"""The benchmark's scenarios, in the order they run; each fills the Report as it goes, so a failure
still leaves a partial report. Orchestrated by run.py (command line, clean-up, output)."""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import bench_measure as measure
import bench_nginx
import bench_openloop as openloop
import bench_report as report
import bench_setup as setup
from bench_proc import HarnessError, Managed, Processes, free_port, realtime_client, rss_mb, wait_ready

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent


@dataclass
class Ctx:
    """Everything the scenarios share; built once in run.main()."""
    args: argparse.Namespace
    tools: dict[str, str]
    server_core: int
    load_core: int
    procs: Processes
    workdir: Path
    key: str
    redis_port: int = 0  # set when the full pipeline's services start
    sink_port: int = 0

    def on_core(self, core: int) -> list[str]:
        return [self.tools["taskset"], "-c", str(core)]  # taskset execs: the child keeps its pid


@dataclass
class Server:
    port: int
    model: str
    child: Managed


def start_server(ctx: Ctx, name: str, argv: list[str], port: int,
                 env_extra: dict[str, str] | None = None) -> tuple[Managed, report.Startup]:
    """Start twice: the first (cold: .pyc, page cache) is reported for information and stopped;
    the second gives the ready time checked against the goal and the idle RSS."""
    pinned = ctx.on_core(ctx.server_core) + argv
    # A deployed install has .pyc files; PYTHONDONTWRITEBYTECODE (set in some dev shells) would make
    # every start recompile the gateway. __pycache__ is git-ignored.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"} | (env_extra or {})
    cold = ctx.procs.spawn(f"{name}-cold", pinned, cwd=REPO_ROOT, env=env)
    cold_s = wait_ready(cold, port)
    ctx.procs.stop(cold)
    child = ctx.procs.spawn(name, pinned, cwd=REPO_ROOT, env=env)
    ready_s = wait_ready(child, port)
    time.sleep(0.5)  # let lazy start-up work settle; still idle, before any load
    return child, report.Startup(cold_s, ready_s, rss_mb(child.pid))


def load(ctx: Ctx, port: int, model: str) -> measure.WrkResult:
    # Every scenario gets the same request: the ~1 KB prompt that differs on every request.
    return measure.load(ctx.tools["wrk"], ctx.tools["taskset"], ctx.load_core, port, ctx.args.duration,
                        ctx.args.connections, ctx.key, model, script=measure.VARYING_SCRIPT)


def combine(results: list[measure.WrkResult]) -> measure.WrkResult:
    """Median over rounds (one round: itself)."""
    return measure.WrkResult(
        rps=statistics.median(r.rps for r in results),
        p50_ms=statistics.median(r.p50_ms for r in results),
        p99_ms=statistics.median(r.p99_ms for r in results),
        requests=sum(r.requests for r in results),
        errors=sum(r.errors for r in results),
    )


def check_full(headers: dict[str, str]) -> str:
    """The full pipeline's preflight reply must show each feature at work; returns the evidence."""
    problems = []
    if headers.get("x-switchyard-route") != setup.FULL_ROUTE:
        problems.append(f"route {headers.get('x-switchyard-route')!r}, not {setup.FULL_ROUTE!r}")
    if "x-ratelimit-limit-requests" not in headers:
        problems.append("no x-ratelimit-* headers: limits not applied")
    if "pii" not in headers.get("x-switchyard-safety", ""):
        problems.append("no pii event in x-switchyard-safety for a prompt holding an e-mail address")
    if problems:
        raise HarnessError("full pipeline preflight: " + "; ".join(problems))
    return (f"Preflight reply: route `{headers['x-switchyard-route']}`, "
            f"x-switchyard-safety `{headers['x-switchyard-safety']}`, "
            f"x-ratelimit-limit-requests `{headers['x-ratelimit-limit-requests']}`, "
            f"x-switchyard-cost-usd `{headers.get('x-switchyard-cost-usd', '–')}`.")


def start_gateways(ctx: Ctx, rep: report.Report, nginx_port: int, sse_port: int) -> dict[str, Server]:
    """The core-path and the full-pipeline gateways, both on the server core (each idle while another
    server is measured). A gateway that fails is reported and left out; the run goes on without it."""
    redis_port = ctx.redis_port = setup.start_redis(ctx.procs, ctx.on_core(ctx.load_core))
    sink_port = ctx.sink_port = setup.start_sink(ctx.procs, ctx.on_core(ctx.load_core))
    plans = {
        "gateway": (setup.core_config(ctx.workdir, nginx_port, sse_port, ctx.key), setup.UPSTREAM_MODEL, {}),
        "full": (setup.full_config(ctx.workdir, nginx_port, redis_port, ctx.key), setup.FULL_MODEL,
                 {"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{sink_port}"}),
    }
    servers: dict[str, Server] = {}
    for name, (cfg, model, env) in plans.items():
        print(f"[bench] {report.LABELS[name]}: starting...", flush=True)
        port = free_port()
        argv = [sys.executable, "-m", "gateway", "serve", "--config", str(cfg), "--host", "127.0.0.1",
                "--port", str(port)]
        try:
            child, rep.startups[name] = start_server(ctx, name, argv, port, env)
            headers = measure.preflight(port, ctx.key, model, openloop.varying_bodies(model)(0))
            if name == "full":
                rep.evidence.append(check_full(headers))
        except HarnessError as exc:
            # nginx and the passthrough work, so this is the gateway's fault: measure the rest, report
            # it as failed, and exit non-zero at the end.
            rep.gateway_error = "; ".join(filter(None, [rep.gateway_error, f"{name}: {exc}"]))
            print(f"[bench] {name} FAILED: {exc}", file=sys.stderr, flush=True)
            continue
        servers[name] = Server(port, model, child)
    return servers


def throughput(ctx: Ctx, rep: report.Report, servers: dict[str, Server]) -> None:
    runs: dict[str, list[measure.WrkResult]] = {name: [] for name in servers}
    for i in range(ctx.args.rounds):
        for name, server in servers.items():
            print(f"[bench] round {i + 1}/{ctx.args.rounds}: {report.LABELS[name]}...", flush=True)
            runs[name].append(load(ctx, server.port, server.model))
            if server.child.popen.poll() is not None:
                raise HarnessError(f"{name} exited during its load\n{server.child.log_tail()}")
            # The memory a server holds right after its load: the peak over rounds.
            rss = rss_mb(server.child.pid)
            rep.loaded_rss_mb[name] = max(rss, rep.loaded_rss_mb.get(name, 0.0))
    for name, results in runs.items():
        rep.scenarios[name] = combine(results)


def fixed_rate(ctx: Ctx, rep: report.Report, targets: dict[str, Server]) -> None:
    """Open-loop latency at --rate, the same paths alternated round by round."""
    runs: dict[str, list[openloop.OpenLoopResult]] = {name: [] for name in targets}
    for i in range(ctx.args.rounds):
        for name, server in targets.items():
            print(f"[bench] round {i + 1}/{ctx.args.rounds}: open loop {ctx.args.rate:g} req/s via {name}...",
                  flush=True)
            bodies = openloop.varying_bodies(server.model)
            runs[name].append(openloop.run(server.port, ctx.key, bodies, ctx.args.rate, ctx.args.rate_duration))
    for name, results in runs.items():
        rep.openloop[name] = openloop.merge(results)


def redis_round_trip(ctx: Ctx) -> report.RoundTrip:
    """PING round trips from the server core to the benchmark's redis-server, at the open-loop rate."""
    duration = ctx.args.rate_duration
    argv = ctx.on_core(ctx.server_core) + [sys.executable, str(BENCH_DIR / "redis_rtt.py"), "--port",
                                           str(ctx.redis_port), "--rate", str(ctx.args.rate), "--duration", str(duration)]
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=duration + 30)
    except subprocess.TimeoutExpired as exc:
        raise HarnessError(f"redis_rtt.py did not finish in {duration + 30} s") from exc
    if proc.returncode != 0:
        raise HarnessError(f"redis_rtt.py failed (exit {proc.returncode}): {proc.stderr[-500:]}")
    return report.RoundTrip(**json.loads(proc.stdout))


def full_evidence(ctx: Ctx, rep: report.Report) -> None:
    keys = setup.redis_keys(ctx.redis_port)
    exports, size = setup.sink_exports(ctx.sink_port)
    # Zero would mean that part of the pipeline was not on: the report must not claim it was.
    rep.evidence.append(f"Redis held {keys} keys after the load (the limits' windows, leases and spend)."
                        if keys else "**Redis held no keys after the load: the limits did not use it.**")
    calls, per_call = setup.redis_scripts(ctx.redis_port)
    if calls:
        rep.evidence.append(f"Redis ran the limits script {calls:,} times, {per_call:.1f} µs of its own time per call "
                            "on average (admissions, and settlements batched together).")
    rep.evidence.append(f"The OTLP sink received {exports} trace exports ({size / 1024:.0f} KiB) "
                        "from the sampled requests." if exports else
                        "**The OTLP sink received no trace export: tracing was not on.**")


def start_proxy(ctx: Ctx, upstream_port: int) -> Server:
    """nginx as a reverse proxy to the mock upstream, on the server core like the gateways: the hop in C."""
    port = free_port()
    root = ctx.workdir / "nginx-proxy"
    conf = bench_nginx.write_proxy_config(root, port, upstream_port)
    child = ctx.procs.spawn("nginx-proxy", ctx.on_core(ctx.server_core) + bench_nginx.command(ctx.tools["nginx"], root, conf))
    wait_ready(child, port, timeout_s=10)
    measure.preflight(port, ctx.key, setup.UPSTREAM_MODEL, openloop.varying_bodies(setup.UPSTREAM_MODEL)(0))
    return Server(port, setup.UPSTREAM_MODEL, child)


def run(ctx: Ctx, rep: report.Report) -> None:
    nginx_port, sse_port, pt_port = (free_port() for _ in range(3))
    on_load_core = ctx.on_core(ctx.load_core)
    root = ctx.workdir / "nginx"
    conf = bench_nginx.write_config(root, nginx_port)
    nginx = ctx.procs.spawn("nginx", on_load_core + bench_nginx.command(ctx.tools["nginx"], root, conf))
    wait_ready(nginx, nginx_port, timeout_s=10)
    sse = ctx.procs.spawn("sse-upstream", on_load_core + [sys.executable, str(BENCH_DIR / "sse_upstream.py"),
                                                          "--port", str(sse_port)])
    wait_ready(sse, sse_port, timeout_s=30)
    body = openloop.varying_bodies(setup.UPSTREAM_MODEL)(0)

    print(f"[bench] {report.LABELS['upstream']}...", flush=True)
    measure.preflight(nginx_port, ctx.key, setup.UPSTREAM_MODEL, body)
    rep.scenarios["upstream"] = load(ctx, nginx_port, setup.UPSTREAM_MODEL)

    print(f"[bench] {report.LABELS['passthrough']}: starting...", flush=True)
    pt_child, rep.startups["passthrough"] = start_server(
        ctx, "passthrough", [sys.executable, str(BENCH_DIR / "passthrough.py"), "--port", str(pt_port),
                             "--upstream", f"http://127.0.0.1:{nginx_port}"], pt_port)
    measure.preflight(pt_port, ctx.key, setup.UPSTREAM_MODEL, body)
    servers = {"passthrough": Server(pt_port, setup.UPSTREAM_MODEL, pt_child)}
    if rep.gateway_skip is None:
        servers |= start_gateways(ctx, rep, nginx_port, sse_port)

    throughput(ctx, rep, servers)
    direct = Server(nginx_port, setup.UPSTREAM_MODEL, nginx)
    fixed_rate(ctx, rep, {"direct": direct, "proxy": start_proxy(ctx, nginx_port), **servers})
    if "full" in servers:
        rep.redis_rtt = redis_round_trip(ctx)
        full_evidence(ctx, rep)

    print(f"[bench] streaming time-to-first-chunk ({ctx.args.samples} samples each)...", flush=True)
    # A second passthrough, in front of the SSE upstream: the cost of a bare Python hop, for context.
    pts_port = free_port()
    pts = ctx.procs.spawn("passthrough-sse", ctx.on_core(ctx.server_core) + [
        sys.executable, str(BENCH_DIR / "passthrough.py"), "--port", str(pts_port),
        "--upstream", f"http://127.0.0.1:{sse_port}"])
    wait_ready(pts, pts_port)
    stream_body = measure.chat_body("bench-model", stream=True)
    targets = {"direct": (f"http://127.0.0.1:{sse_port}/v1/chat/completions", stream_body),
               "passthrough": (f"http://127.0.0.1:{pts_port}/v1/chat/completions", stream_body)}
    if "gateway" in servers:
        targets["gateway"] = (f"http://127.0.0.1:{servers['gateway'].port}/v1/chat/completions",
                              measure.chat_body(setup.SSE_MODEL, stream=True))
    with realtime_client():  # the same reason as the open-loop client: no wake-up lag of its own
        rep.ttfc = measure.ttfc(targets, ctx.key, samples=ctx.args.samples)
