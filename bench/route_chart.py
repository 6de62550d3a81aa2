"""Cost and latency per route, read from a real gateway's /metrics after a run: the picture in the README.

    .venv/bin/python bench/route_chart.py [--requests 30] [--out docs/img/cost-latency-per-route.png]

Starts a stand-in upstream serving three models at different speeds and answer lengths, and a gateway with
three routes on it, priced as they would be in production: gpt-4o and claude-sonnet-4-5 from litellm's bundled
price map, a self-hosted Llama at its configured price. It sends the same prompts through each route, then
draws cost per 1,000 requests and mean latency per route from the gateway's own metrics. matplotlib is a dev
dependency (`make test` installs it).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

REPO_ROOT = Path(__file__).resolve().parent.parent
KEY = "sk-route-chart"
# Upstream model: (mean seconds to answer, mean output tokens)
MODELS = {"gpt-4o": (0.35, 320), "claude-sonnet-4-5": (0.5, 420), "meta-llama/Llama-3.1-8B-Instruct": (0.12, 280)}
ROUTES = {  # route name: (alias clients ask for, target)
    "support-chat": ("chat", "gpt-4o"),
    "deep-reasoning": ("reason", "claude-sonnet"),
    "pii-stays-in-house": ("private", "llama-local"),
}
PROMPTS = ["Summarise this support ticket for the on-call engineer.", "Draft a polite reply to a refund request.",
           "Explain the difference between our two pricing plans.", "List three follow-up questions for the customer."]
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class StandInUpstream(BaseHTTPRequestHandler):
    """An OpenAI-compatible /v1/chat/completions whose speed and answer length depend on the model asked for."""

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        seconds, tokens = MODELS[body["model"]]
        rng = random.Random(hashlib.sha256(json.dumps(body, sort_keys=True).encode()).digest())
        time.sleep(seconds * rng.uniform(0.7, 1.3))
        prompt_tokens = sum(len(str(m.get("content", "")).split()) for m in body["messages"]) * 4 // 3
        completion_tokens = int(tokens * rng.uniform(0.7, 1.3))
        reply = json.dumps({
            "id": "chatcmpl-chart", "object": "chat.completion", "created": 0, "model": body["model"],
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens},
        }).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, *args: object) -> None:
        pass


def gateway_config(upstream: str) -> tuple[dict, dict]:
    key_hash = "sha256:" + hashlib.sha256(KEY.encode()).hexdigest()
    targets = {
        "gpt-4o": {"adapter": "openai", "base_url": upstream, "model": "gpt-4o"},
        "claude-sonnet": {"adapter": "openai", "base_url": upstream, "model": "claude-sonnet-4-5"},
        "llama-local": {"adapter": "openai", "base_url": upstream, "model": "meta-llama/Llama-3.1-8B-Instruct",
                        "price": {"input_per_mtok": 0.02, "output_per_mtok": 0.02}},
    }
    policy = {"version": 1, "routes": [
        {"name": route, "when": {"model": alias}, "send": [target]} for route, (alias, target) in ROUTES.items()
    ]}
    config = {"server": {"policy_watch_s": 0}, "targets": targets,
              "tenants": {"chart": {"keys": [key_hash], "models": ["*"]}}, "policies": ["policy.json"]}
    return config, policy


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def post(base: str, alias: str, prompt: str) -> None:
    body = json.dumps({"model": alias, "messages": [{"role": "user", "content": prompt}]}).encode()
    request = urllib.request.Request(base + "/v1/chat/completions", body, {
        "Authorization": f"Bearer {KEY}", "Content-Type": "application/json"})
    with _DIRECT.open(request, timeout=30) as response:
        response.read()


def wait_ready(base: str, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            sys.exit("route_chart: the gateway exited before it was ready")
        try:
            with _DIRECT.open(base + "/readyz", timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    sys.exit("route_chart: the gateway was not ready within 30 s")


def run(requests: int) -> dict[str, dict[str, float]]:
    """Per route: requests, cost, mean latency and mean gateway overhead, as the gateway's /metrics tells."""
    upstream = ThreadingHTTPServer(("127.0.0.1", 0), StandInUpstream)
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    with tempfile.TemporaryDirectory(prefix="route-chart-") as workdir:
        config, policy = gateway_config(f"http://127.0.0.1:{upstream.server_address[1]}/v1")
        (Path(workdir) / "config.json").write_text(json.dumps(config))  # JSON is YAML
        (Path(workdir) / "policy.json").write_text(json.dumps(policy))
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True", "NO_PROXY": "127.0.0.1"}
        gateway = subprocess.Popen([sys.executable, "-m", "gateway", "serve", "--config", f"{workdir}/config.json",
                                    "--port", str(port)], cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL)
        try:
            wait_ready(base, gateway)
            threads = [threading.Thread(target=lambda alias=alias: [post(base, alias, PROMPTS[i % len(PROMPTS)])
                                                                     for i in range(requests)])
                       for alias, _ in ROUTES.values()]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            with _DIRECT.open(base + "/metrics", timeout=5) as response:
                text = response.read().decode()
        finally:
            gateway.terminate()
            gateway.wait(timeout=60)
            upstream.shutdown()
    stats: dict[str, dict[str, float]] = {route: {} for route in ROUTES}
    wanted = {"switchyard_requests_total": "requests", "switchyard_cost_usd_total": "cost",
              "switchyard_request_duration_seconds_sum": "latency", "switchyard_overhead_seconds_sum": "overhead"}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            route = sample.labels.get("route")
            if sample.name in wanted and route in stats:
                stats[route][wanted[sample.name]] = stats[route].get(wanted[sample.name], 0.0) + sample.value
    return stats


def draw(stats: dict[str, dict[str, float]], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    routes = list(stats)
    labels = [f"{route}\n→ {ROUTES[route][1]}" for route in routes]
    per_thousand = [stats[r]["cost"] / stats[r]["requests"] * 1000 for r in routes]
    latency_ms = [stats[r]["latency"] / stats[r]["requests"] * 1000 for r in routes]
    overhead_ms = [stats[r]["overhead"] / stats[r]["requests"] * 1000 for r in routes]
    colors = ["#4c72b0", "#8172b3", "#55a868"]
    figure, (cost_axis, latency_axis) = plt.subplots(1, 2, figsize=(10, 3.4), dpi=110)
    bars = cost_axis.barh(labels, per_thousand, color=colors)
    cost_axis.bar_label(bars, [f"${v:,.2f}" if v >= 0.01 else f"${v:.4f}" for v in per_thousand], padding=3)
    cost_axis.set_xlabel("USD per 1,000 requests")
    cost_axis.set_xlim(0, max(per_thousand) * 1.3)
    cost_axis.invert_yaxis()
    bars = latency_axis.barh(labels, latency_ms, color=colors)
    latency_axis.bar_label(bars, [f"{v:,.0f} ms (gateway {o:.1f} ms)" for v, o in zip(latency_ms, overhead_ms)], padding=3)
    latency_axis.set_xlabel("mean latency, ms")
    latency_axis.set_xlim(0, max(latency_ms) * 1.6)
    latency_axis.invert_yaxis()
    latency_axis.set_yticklabels([])
    for axis in (cost_axis, latency_axis):
        axis.spines[["top", "right"]].set_visible(False)
    figure.suptitle("Cost and latency per route, from the gateway's own metrics")
    figure.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=30, help="requests per route")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "docs" / "img" / "cost-latency-per-route.png")
    args = parser.parse_args()
    stats = run(args.requests)
    for route, values in stats.items():
        print(f"{route:20} {values}")
    draw(stats, args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
