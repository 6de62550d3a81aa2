"""Gateway requests/s with observability off and on, under wrk: the "keeps ≥ 0.85×" requirement.

    .venv/bin/python bench/observability_load.py [--duration 8] [--rounds 3] [--connections 64]

Same harness as bench/run.py (the gateway pinned to one core; wrk, the nginx mock upstream and an OTLP sink
on the other). Variants, alternated round by round so machine noise hits them alike:
  off      observability.metrics false, no tracing
  metrics  metrics, no tracing
  on       metrics, and traces exported to the sink at the default sampling (1%)
  on-100%  metrics, and every request traced (for reference: sample in production)
Reports the median requests/s of each and its ratio to `off`.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import secrets
import statistics
import sys
import tempfile
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
sys.path.insert(0, str(BENCH_DIR))

import bench_measure as measure  # noqa: E402
import bench_nginx  # noqa: E402
from bench_proc import Processes, ensure_tools, free_port, pick_cores, wait_ready  # noqa: E402

MODEL = "bench-upstream"
VARIANTS = {  # name: the config's observability section (OTEL_EXPORTER_OTLP_ENDPOINT is set for all)
    "off": "{metrics: false, tracing: {enabled: false}}",
    "metrics": "{metrics: true, tracing: {enabled: false}}",
    "on": "{metrics: true}",
    "on-100%": "{metrics: true, tracing: {sample_ratio: 1.0}}",
}


def config(workdir: Path, name: str, nginx_port: int, key: str) -> Path:
    path = workdir / f"gateway-{name}.yaml"
    path.write_text(
        f'targets:\n  {MODEL}: {{adapter: openai, base_url: "http://127.0.0.1:{nginx_port}/v1", model: bench-model}}\n'
        f'tenants:\n  bench: {{keys: ["sha256:{hashlib.sha256(key.encode()).hexdigest()}"], models: [{MODEL}]}}\n'
        f"observability: {VARIANTS[name]}\n"
    )
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=64)
    args = parser.parse_args()
    tools = ensure_tools()
    server_core, load_core = pick_cores()
    key = "sk-bench-" + secrets.token_hex(8)
    results: dict[str, list[float]] = {name: [] for name in VARIANTS}
    with tempfile.TemporaryDirectory(prefix="obs-load-") as tmp, Processes(Path(tmp)) as procs:
        workdir = Path(tmp)
        on_load_core = [tools["taskset"], "-c", str(load_core)]
        nginx_port, sink_port = free_port(), free_port()
        nginx_conf = bench_nginx.write_config(workdir / "nginx", nginx_port)
        nginx = procs.spawn("nginx", on_load_core + bench_nginx.command(tools["nginx"], workdir / "nginx", nginx_conf))
        wait_ready(nginx, nginx_port, timeout_s=10)
        sink = procs.spawn("otlp-sink", on_load_core + [sys.executable, str(BENCH_DIR / "otlp_sink.py"),
                                                        "--port", str(sink_port)])
        wait_ready(sink, sink_port)
        env = {**os.environ, "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{sink_port}"}
        for round_number in range(args.rounds):
            for name in VARIANTS:
                port = free_port()
                argv = [tools["taskset"], "-c", str(server_core), sys.executable, "-m", "gateway", "serve",
                        "--config", str(config(workdir, name, nginx_port, key)), "--port", str(port)]
                gateway = procs.spawn(f"gateway-{name}-{round_number}", argv, cwd=REPO_ROOT, env=env)
                wait_ready(gateway, port)
                measure.preflight(port, key, MODEL)
                result = measure.load(tools["wrk"], tools["taskset"], load_core, port, args.duration,
                                      args.connections, key, MODEL)
                results[name].append(result.rps)
                print(f"[obs-load] round {round_number + 1} {name:8} {result.rps:8.0f} req/s "
                      f"(p50 {result.p50_ms:.2f} ms, errors {result.errors})", flush=True)
                procs.stop(gateway)
    baseline = statistics.median(results["off"])
    print(f"\nmedian over {args.rounds} rounds of {args.duration} s, {args.connections} connections:")
    for name, values in results.items():
        rps = statistics.median(values)
        print(f"  {name:8} {rps:8.0f} req/s   {rps / baseline:5.2f}× off")
    return 0


if __name__ == "__main__":
    sys.exit(main())
