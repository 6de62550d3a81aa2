"""Gateway throughput with PII redaction and abuse detection on, as a ratio of the bare passthrough.

    .venv/bin/python bench/safety_bench.py [--duration 10] [--connections 64]

Same harness and pinning as bench/run.py (server core / load core, nginx mock upstream), with a ~1 KB
user prompt (bench/safety_post.lua) that differs on every request, so every request has new text to scan
(the worst case: in a chat, earlier turns come from the cache). Measured back to back: (b) passthrough,
(c) the gateway without safety, (s) the gateway with `safety: {pii: redact (six entities), abuse:
{prompt_injection: flag, secrets: redact}}`, and (s-cached) the same with a repeated prompt. Goal for (s):
at least 0.40 × (b). `--without-injection` turns the injection detector off, to see what the rest costs.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import secrets
import sys
import tempfile
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))

import bench_measure as measure  # noqa: E402
import bench_nginx  # noqa: E402
from bench_proc import Processes, ensure_tools, free_port, pick_cores, wait_ready  # noqa: E402

GOAL = 0.40
MODEL = "bench-upstream"
SAFETY = """version: 1
safety:
  pii: {entities: [EMAIL_ADDRESS, PHONE_NUMBER, CREDIT_CARD, US_SSN, IBAN_CODE, IP_ADDRESS], action: redact}
  abuse: {prompt_injection: flag, secrets: redact}
"""


def gateway_config(workdir: Path, nginx_port: int, key: str, policy: str | None) -> Path:
    digest = hashlib.sha256(key.encode()).hexdigest()
    text = (
        f'targets:\n  {MODEL}: {{adapter: openai, base_url: "http://127.0.0.1:{nginx_port}/v1", model: bench-model}}\n'
        f'tenants:\n  bench: {{keys: ["sha256:{digest}"], models: [{MODEL}]}}\n'
    )
    if policy is not None:
        (workdir / "safety.yaml").write_text(policy)
        text += "policies: [safety.yaml]\n"
    path = workdir / f"gateway-{'safety' if policy else 'bare'}.yaml"
    path.write_text(text)
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--without-injection", action="store_true",
                        help="prompt_injection off: what the rest of the safety step costs, the detector aside")
    args = parser.parse_args()
    policy = SAFETY.replace("prompt_injection: flag", 'prompt_injection: "off"') if args.without_injection else SAFETY
    tools = ensure_tools()
    server_core, load_core = pick_cores()
    os.sched_setaffinity(0, {load_core})
    measure.LUA_SCRIPT = BENCH_DIR / "safety_post.lua"  # the harness's wrk runner, with the varying prompt
    os.environ["BENCH_LUA_DIR"] = str(BENCH_DIR)
    key = "sk-bench-" + secrets.token_hex(16)
    workdir = Path(tempfile.mkdtemp(prefix="switchyard-safety-bench-"))
    results: dict[str, float] = {}
    with Processes(workdir) as procs:
        nginx_port = free_port()
        root = workdir / "nginx"
        conf = bench_nginx.write_config(root, nginx_port)
        on_load = [tools["taskset"], "-c", str(load_core)]
        wait_ready(procs.spawn("nginx", on_load + bench_nginx.command(tools["nginx"], root, conf)), nginx_port, timeout_s=10)
        pinned = [tools["taskset"], "-c", str(server_core), sys.executable]
        servers = {
            "passthrough": [str(BENCH_DIR / "passthrough.py"), "--upstream", f"http://127.0.0.1:{nginx_port}"],
            "gateway": ["-m", "gateway", "serve", "--config", str(gateway_config(workdir, nginx_port, key, None))],
            "gateway+safety": ["-m", "gateway", "serve", "--config", str(gateway_config(workdir, nginx_port, key, policy))],
        }
        for name, argv in servers.items():
            port = free_port()
            extra = ["--port", str(port)] + (["--host", "127.0.0.1"] if argv[0] == "-m" else [])
            child = procs.spawn(name, pinned + argv + extra, cwd=BENCH_DIR.parent)
            wait_ready(child, port, timeout_s=60)
            measure.preflight(port, key, MODEL)
            os.environ.pop("BENCH_FIXED", None)
            run = measure.load(tools["wrk"], tools["taskset"], load_core, port, args.duration, args.connections, key, MODEL)
            results[name] = run.rps
            print(f"{name:<24} {run.rps:>9.0f} req/s  p50 {run.p50_ms:.2f} ms  p99 {run.p99_ms:.2f} ms  errors {run.errors}")
            if name == "gateway+safety":
                os.environ["BENCH_FIXED"] = "1"
                cached = measure.load(tools["wrk"], tools["taskset"], load_core, port, args.duration, args.connections, key, MODEL)
                results["gateway+safety (cached)"] = cached.rps
                print(f"{'gateway+safety (cached)':<24} {cached.rps:>9.0f} req/s  p50 {cached.p50_ms:.2f} ms")
            procs.stop(child)
    base = results["passthrough"]
    for name in ("gateway", "gateway+safety", "gateway+safety (cached)"):
        print(f"{name} / passthrough = {results[name] / base:.2f}")
    ratio = results["gateway+safety"] / base
    print(f"goal: gateway+safety ≥ {GOAL:.2f} × passthrough: {'PASS' if ratio >= GOAL else 'FAIL'} ({ratio:.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
