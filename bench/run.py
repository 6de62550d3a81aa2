"""Switchyard benchmark: one command, one run, results as ratios (the machine is noisy).

    .venv/bin/python bench/run.py [--duration 10] [--connections 64] [--quick] [--out FILE]

Scenarios, all loaded by wrk on the load core with the same POST:
  (a) nginx mock upstream direct  — proves the upstream is not the bottleneck
  (b) bench/passthrough.py        — bare Starlette + aiohttp, the ceiling for a Python gateway
  (c) the gateway                 — `python -m gateway serve`, pinned to the server core like (b)
Plus streaming time-to-first-chunk overhead, start-to-ready time and idle RSS.
Exit code: 0 with a report (targets may FAIL), 1 if the harness or the gateway could not run,
130 on Ctrl-C/SIGTERM. See bench/README.md.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
sys.path.insert(0, str(BENCH_DIR))  # sibling modules, also when imported from elsewhere

try:
    import bench_measure as measure
except ImportError as exc:  # aiohttp missing: wrong interpreter
    sys.exit(f"[bench] {exc}; run with the project venv: .venv/bin/python bench/run.py")
import bench_nginx
import bench_report as report
from bench_proc import HarnessError, Managed, Processes, ensure_tools, free_port, \
    pick_cores, rss_mb, wait_ready

UPSTREAM_MODEL = "bench-upstream"  # gateway target name -> nginx
SSE_MODEL = "bench-sse"            # gateway target name -> bench/sse_upstream.py


@dataclass
class Ctx:
    """Everything the scenarios share; built once in main()."""
    args: argparse.Namespace
    tools: dict[str, str]
    server_core: int
    load_core: int
    procs: Processes
    workdir: Path
    key: str


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Switchyard benchmark (see bench/README.md)")
    p.add_argument("--duration", type=int, default=None, help="seconds per wrk measurement (default 10)")
    p.add_argument("--connections", type=int, default=64, help="wrk connections (default 64)")
    p.add_argument("--quick", action="store_true", help="3 s smoke run, 100 TTFC samples")
    p.add_argument("--out", type=Path, help="also write the markdown report to FILE")
    p.add_argument("--samples", type=int, default=None, help="TTFC samples per target (default 300)")
    p.add_argument("--rounds", type=int, default=1,
                   help="alternate (b)/(c) this many times and report medians (default 1)")
    p.add_argument("--skip-gateway", action="store_true", help="run (a) and (b) only")
    args = p.parse_args(argv)
    args.duration = max(1, args.duration if args.duration is not None else (3 if args.quick else 10))
    args.samples = max(10, args.samples if args.samples is not None else (100 if args.quick else 300))
    args.rounds = max(1, args.rounds)
    return args


def gateway_unavailable() -> str | None:
    """Why (c) cannot run, or None. `python -m gateway` needs gateway.cli, so import that too."""
    try:
        proc = subprocess.run([sys.executable, "-c", "import gateway, gateway.cli"], cwd=REPO_ROOT,
                              capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        return "gateway not importable yet (import took > 60 s)"
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["?"])[-1]
        return f"gateway not importable yet ({last})"
    return None


def write_gateway_config(workdir: Path, nginx_port: int, sse_port: int, key: str) -> Path:
    # The gateway stores only sha256 hashes of keys; the plaintext stays in this process and wrk's env.
    digest = hashlib.sha256(key.encode()).hexdigest()
    path = workdir / "gateway.yaml"
    path.write_text(
        "targets:\n"
        f'  {UPSTREAM_MODEL}: {{adapter: openai, base_url: "http://127.0.0.1:{nginx_port}/v1", '
        "model: bench-model}\n"
        f'  {SSE_MODEL}: {{adapter: openai, base_url: "http://127.0.0.1:{sse_port}/v1", '
        "model: bench-model}\n"
        "tenants:\n"
        f'  bench: {{keys: ["sha256:{digest}"], models: [{UPSTREAM_MODEL}, {SSE_MODEL}]}}\n'
    )
    return path


def start_server(ctx: Ctx, name: str, argv: list[str], port: int) -> tuple[Managed, report.Startup]:
    """Start twice: the first (cold: .pyc, page cache) is reported for information and stopped;
    the second gives the ready time checked against the target and the idle RSS."""
    pinned = [ctx.tools["taskset"], "-c", str(ctx.server_core), *argv]  # taskset execs: same pid
    # A deployed install has .pyc files; PYTHONDONTWRITEBYTECODE (set in some dev shells) would make
    # every start recompile the gateway. __pycache__ is git-ignored.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    cold = ctx.procs.spawn(f"{name}-cold", pinned, cwd=REPO_ROOT, env=env)
    cold_s = wait_ready(cold, port)
    ctx.procs.stop(cold)
    child = ctx.procs.spawn(name, pinned, cwd=REPO_ROOT, env=env)
    ready_s = wait_ready(child, port)
    time.sleep(0.5)  # let lazy start-up work settle; still idle, before any load
    return child, report.Startup(cold_s, ready_s, rss_mb(child.pid))


def load(ctx: Ctx, port: int, model: str) -> measure.WrkResult:
    return measure.load(ctx.tools["wrk"], ctx.tools["taskset"], ctx.load_core, port, ctx.args.duration,
                        ctx.args.connections, ctx.key, model)


def combine(results: list[measure.WrkResult]) -> measure.WrkResult:
    """Median over rounds (one round: itself)."""
    return measure.WrkResult(
        rps=statistics.median(r.rps for r in results),
        p50_ms=statistics.median(r.p50_ms for r in results),
        p99_ms=statistics.median(r.p99_ms for r in results),
        requests=sum(r.requests for r in results),
        errors=sum(r.errors for r in results),
    )


def run(ctx: Ctx, rep: report.Report) -> None:
    """All scenarios; fills `rep` as it goes so a failure still leaves a partial report."""
    nginx_port, sse_port, pt_port, gw_port = (free_port() for _ in range(4))
    on_load_core = [ctx.tools["taskset"], "-c", str(ctx.load_core)]

    root = ctx.workdir / "nginx"
    conf = bench_nginx.write_config(root, nginx_port)
    nginx = ctx.procs.spawn("nginx", on_load_core + bench_nginx.command(ctx.tools["nginx"], root, conf))
    wait_ready(nginx, nginx_port, timeout_s=10)
    sse = ctx.procs.spawn("sse-upstream", on_load_core + [sys.executable, str(BENCH_DIR / "sse_upstream.py"),
                                                          "--port", str(sse_port)])
    wait_ready(sse, sse_port, timeout_s=30)

    print("[bench] (a) nginx mock upstream direct...", flush=True)
    measure.preflight(nginx_port, ctx.key, UPSTREAM_MODEL)
    rep.scenarios["upstream"] = load(ctx, nginx_port, UPSTREAM_MODEL)

    print("[bench] (b) passthrough: starting...", flush=True)
    _, rep.startups["passthrough"] = start_server(
        ctx, "passthrough", [sys.executable, str(BENCH_DIR / "passthrough.py"), "--port", str(pt_port),
                             "--upstream", f"http://127.0.0.1:{nginx_port}"], pt_port)
    measure.preflight(pt_port, ctx.key, UPSTREAM_MODEL)

    gateway_up = False
    if rep.gateway_skip is None:
        print("[bench] (c) gateway: starting...", flush=True)
        cfg = write_gateway_config(ctx.workdir, nginx_port, sse_port, ctx.key)
        argv = [sys.executable, "-m", "gateway", "serve", "--config", str(cfg), "--host", "127.0.0.1",
                "--port", str(gw_port)]
        try:
            _, rep.startups["gateway"] = start_server(ctx, "gateway", argv, gw_port)
            measure.preflight(gw_port, ctx.key, UPSTREAM_MODEL)
            gateway_up = True
        except HarnessError as exc:
            # nginx and the passthrough already work, so this is the gateway's fault: keep measuring
            # (b) and direct TTFC, report (c) as failed, and exit non-zero at the end.
            rep.gateway_error = str(exc)
            print(f"[bench] (c) gateway FAILED: {exc}", file=sys.stderr, flush=True)

    pt_runs: list[measure.WrkResult] = []
    gw_runs: list[measure.WrkResult] = []
    for i in range(ctx.args.rounds):
        print(f"[bench] round {i + 1}/{ctx.args.rounds}: (b) passthrough...", flush=True)
        pt_runs.append(load(ctx, pt_port, UPSTREAM_MODEL))
        if gateway_up:
            print(f"[bench] round {i + 1}/{ctx.args.rounds}: (c) gateway...", flush=True)
            gw_runs.append(load(ctx, gw_port, UPSTREAM_MODEL))
    rep.scenarios["passthrough"] = combine(pt_runs)
    if gw_runs:
        rep.scenarios["gateway"] = combine(gw_runs)

    print(f"[bench] streaming time-to-first-chunk ({ctx.args.samples} samples each)...", flush=True)
    # A second passthrough, in front of the SSE upstream: the cost of a bare Python hop, for context.
    pts_port = free_port()
    pts = ctx.procs.spawn("passthrough-sse", [ctx.tools["taskset"], "-c", str(ctx.server_core),
                                              sys.executable, str(BENCH_DIR / "passthrough.py"),
                                              "--port", str(pts_port),
                                              "--upstream", f"http://127.0.0.1:{sse_port}"])
    wait_ready(pts, pts_port)
    stream_body = measure.chat_body("bench-model", stream=True)
    targets = {"direct": (f"http://127.0.0.1:{sse_port}/v1/chat/completions", stream_body),
               "passthrough": (f"http://127.0.0.1:{pts_port}/v1/chat/completions", stream_body)}
    if gateway_up:
        targets["gateway"] = (f"http://127.0.0.1:{gw_port}/v1/chat/completions",
                              measure.chat_body(SSE_MODEL, stream=True))
    rep.ttfc = measure.ttfc(targets, ctx.key, samples=ctx.args.samples)


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    # SIGTERM/SIGHUP take the same clean-up path as Ctrl-C (the finally blocks stop every child).
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # SIGINT explicitly too: a shell starting us in the background would have it ignored.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _raise_interrupt)
    signal.signal(signal.SIGHUP, _raise_interrupt)
    rep = report.Report(args=vars(args))
    workdir = Path(tempfile.mkdtemp(prefix="switchyard-bench-"))
    failed: str | None = None
    try:
        tools = ensure_tools()
        server_core, load_core = pick_cores()
        # The harness itself (TTFC client, ready polling) stays off the server core.
        os.sched_setaffinity(0, {load_core})
        rep.machine = report.machine_info(server_core, load_core)
        rep.gateway_skip = "--skip-gateway given" if args.skip_gateway else gateway_unavailable()
        if rep.gateway_skip:
            print(f"[bench] (c) skipped: {rep.gateway_skip}", flush=True)
        key = "sk-bench-" + secrets.token_hex(16)
        with Processes(workdir) as procs:
            run(Ctx(args, tools, server_core, load_core, procs, workdir, key), rep)
    except KeyboardInterrupt:
        print("\n[bench] interrupted; all child processes stopped", file=sys.stderr)
        shutil.rmtree(workdir, ignore_errors=True)
        return 130
    except (HarnessError, OSError, subprocess.SubprocessError) as exc:
        failed = f"{type(exc).__name__}: {exc}"
        rep.error = failed.splitlines()[0]
    rep.machine["loadavg_end"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    text = report.render(rep)
    print("\n" + text)
    if args.out:
        args.out.write_text(text)
        print(f"[bench] report written to {args.out}")
    if failed or rep.gateway_error:
        print(f"[bench] ERROR: {failed or 'the gateway failed (see above)'}\n"
              f"[bench] logs kept in {workdir}", file=sys.stderr)
        return 1
    shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
