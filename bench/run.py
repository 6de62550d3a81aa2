"""Switchyard benchmark: one command, one run, results as ratios (the machine is noisy).

    .venv/bin/python bench/run.py [--quick] [--rounds 3] [--out docs/benchmarks.md --chart docs/img/benchmarks.png]

Scenarios, all loaded by wrk on the load core with the same POST (a ~1 KB prompt, new every request):
  (a) nginx mock upstream direct  — proves the upstream is not the bottleneck
  (b) bench/passthrough.py        — bare Starlette + aiohttp, the ceiling for a Python gateway
  (c) the gateway, core path      — `python -m gateway serve`: a key and a target, nothing optional
  (d) the gateway, full pipeline  — policy routes, Redis limits, PII + abuse filters, metrics, tracing
Then open-loop latency at a fixed rate (added latency = gateway − upstream direct), streaming
time-to-first-chunk overhead, start-to-ready time, idle and loaded RSS.
Exit code: 0 with a report (goals may FAIL), 1 if the harness or a gateway could not run (then --out
and --chart are left untouched), 130 on Ctrl-C/SIGTERM. See bench/README.md.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
sys.path.insert(0, str(BENCH_DIR))  # sibling modules, also when imported from elsewhere

try:
    import bench_scenarios as scenarios
except ImportError as exc:  # aiohttp missing: wrong interpreter
    sys.exit(f"[bench] {exc}; run with the project venv: .venv/bin/python bench/run.py")
import bench_doc
import bench_report as report
from bench_proc import HarnessError, Processes, ensure_tools, find_tool, pick_cores


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Switchyard benchmark (see bench/README.md)")
    p.add_argument("--duration", type=int, default=None, help="seconds per wrk measurement (default 10)")
    p.add_argument("--connections", type=int, default=64, help="wrk connections (default 64)")
    p.add_argument("--rate", type=float, default=200.0, help="open-loop arrival rate, req/s (default 200)")
    p.add_argument("--rate-duration", type=int, default=None,
                   help="seconds of open-loop load per path and round (default 15)")
    p.add_argument("--quick", action="store_true", help="3 s wrk runs, 5 s open loop, 100 TTFC samples")
    p.add_argument("--out", type=Path, help="also write the markdown report to FILE")
    p.add_argument("--chart", type=Path, help="also draw the PNG chart to FILE (needs matplotlib)")
    p.add_argument("--samples", type=int, default=None, help="TTFC samples per target (default 300)")
    p.add_argument("--rounds", type=int, default=1,
                   help="alternate the servers this many times and report medians (default 1)")
    p.add_argument("--skip-gateway", action="store_true", help="upstream and passthrough only")
    args = p.parse_args(argv)
    args.duration = max(1, args.duration if args.duration is not None else (3 if args.quick else 10))
    args.rate_duration = max(1, args.rate_duration if args.rate_duration is not None
                             else (5 if args.quick else 15))
    args.samples = max(10, args.samples if args.samples is not None else (100 if args.quick else 300))
    args.rounds = max(1, args.rounds)
    if args.rate <= 0:
        p.error("--rate must be positive")
    return args


def gateway_unavailable() -> str | None:
    """Why the gateways cannot run, or None. `python -m gateway` needs gateway.cli, so import that too."""
    try:
        proc = subprocess.run([sys.executable, "-c", "import gateway, gateway.cli"], cwd=REPO_ROOT,
                              capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        return "gateway not importable yet (import took > 60 s)"
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["?"])[-1]
        return f"gateway not importable yet ({last})"
    if find_tool("redis-server") is None:
        return "redis-server not installed (the full pipeline needs it: apt-get install redis-server)"
    return None


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    # SIGTERM/SIGHUP take the same clean-up path as Ctrl-C (the finally blocks stop every child).
    raise KeyboardInterrupt


def write_outputs(rep: report.Report, args: argparse.Namespace, workdir: Path, failed: bool) -> None:
    """Print the report; write --out/--chart only from a run that worked (a partial report must not
    replace a good one), else keep it in the temp dir."""
    out, chart = (args.out, args.chart) if not failed else (workdir / "report.md", None)
    chart_link = None
    if chart:
        try:
            import bench_chart
            bench_chart.draw(rep, chart)
            chart_link = os.path.relpath(chart.resolve(), out.resolve().parent) if out else str(chart)
            print(f"[bench] chart written to {chart}")
        except ImportError as exc:
            print(f"[bench] no chart: {exc} (matplotlib is a dev dependency)", file=sys.stderr)
    text = bench_doc.render(rep, chart_link)
    print("\n" + text)
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
        print(f"[bench] report written to {out}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # SIGINT explicitly too: a shell starting us in the background would have it ignored.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _raise_interrupt)
    signal.signal(signal.SIGHUP, _raise_interrupt)
    shown = sys.argv[1:] if argv is None else argv
    rep = report.Report(args=vars(args), command=shlex.join(["python", "bench/run.py", *shown]))
    workdir = Path(tempfile.mkdtemp(prefix="switchyard-bench-"))
    failed: str | None = None
    try:
        tools = ensure_tools()
        server_core, load_core = pick_cores()
        rep.machine = {"date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
                       **report.machine_info(server_core, load_core)}
        # The harness itself (open-loop and TTFC clients, ready polling) stays off the server core.
        os.sched_setaffinity(0, {load_core})
        rep.gateway_skip = "--skip-gateway given" if args.skip_gateway else gateway_unavailable()
        if rep.gateway_skip:
            print(f"[bench] gateways skipped: {rep.gateway_skip}", flush=True)
        key = "sk-bench-" + secrets.token_hex(16)
        with Processes(workdir) as procs:
            scenarios.run(scenarios.Ctx(args, tools, server_core, load_core, procs, workdir, key), rep)
    except KeyboardInterrupt:
        print("\n[bench] interrupted; all child processes stopped", file=sys.stderr)
        shutil.rmtree(workdir, ignore_errors=True)
        return 130
    except (HarnessError, OSError, subprocess.SubprocessError) as exc:
        failed = f"{type(exc).__name__}: {exc}"
        rep.error = failed.splitlines()[0]
    rep.machine["loadavg_end"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    # Gateways that could not even start (not importable, no redis-server) make the run a failure too,
    # unless --skip-gateway asked for that.
    broken = failed or rep.gateway_error or (rep.gateway_skip and not args.skip_gateway)
    write_outputs(rep, args, workdir, failed=bool(broken))
    if broken:
        why = failed or rep.gateway_error or rep.gateway_skip
        print(f"[bench] ERROR: {why}\n[bench] logs and the partial report kept in {workdir}", file=sys.stderr)
        return 1
    shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
