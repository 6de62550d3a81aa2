"""What observability costs per request: the record step with metrics, tracing and the access log on or off.

    .venv/bin/python bench/observability_cost.py [--requests 20000]

Drives the real Recorder (observability/recorder.py) through one request's calls — begin, an upstream
attempt, answered, record — with a JSON reply, and reports CPU µs per request (all threads, so the span
exporter's background work counts) above a baseline where everything is off. Spans go to a real OTLP/HTTP
sink in another process. Metrics in multiprocess mode (--workers N) are measured in a child process, because
prometheus_client picks its storage at import. The machine is shared and noisy: compare rows of one run.
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from adapters.base import Endpoint, UpstreamReply, UpstreamRequest, Usage  # noqa: E402
from gateway.config import GatewayConfig, TargetConfig, TenantConfig  # noqa: E402
from gateway.exchange import Exchange, request_id_from  # noqa: E402
from gateway.runtime import Runtime  # noqa: E402
from gateway.settings import Settings  # noqa: E402
from observability.recorder import Recorder  # noqa: E402
from observability.settings import ObservabilitySettings, Sampling, TracingSettings  # noqa: E402
from policies.loader import PolicySet  # noqa: E402

BODY = {"model": "llama", "messages": [{"role": "user", "content": "How far is the moon?"}]}
REPLY = (
    b'{"id":"cmpl-1","object":"chat.completion","created":1,"model":"llama-3.1-8b","choices":[{"index":0,'
    b'"message":{"role":"assistant","content":"About 384,400 km."},"finish_reason":"stop"}],'
    b'"usage":{"prompt_tokens":12,"completion_tokens":8,"total_tokens":20}}'
)
HEADERS = {b"authorization": b"Bearer sk-x", b"content-type": b"application/json"}

SINK = [sys.executable, str(Path(__file__).resolve().parent / "otlp_sink.py"), "--port", "0"]  # prints its port


def runtime() -> Runtime:
    price = {"input_per_mtok": 0.2, "output_per_mtok": 0.4}
    config = GatewayConfig(
        targets={"llama": TargetConfig(adapter="openai", base_url="http://127.0.0.1:9/v1", model="llama-3.1-8b", price=price)},
        tenants={"acme": TenantConfig(keys=["sha256:" + "0" * 64], models=["*"])},
    )
    return Runtime(Settings(config, PolicySet(), None))


def one_request(recorder: Recorder) -> None:
    exchange = Exchange(Endpoint.CHAT, request_id_from(None))
    recorder.begin(exchange, HEADERS)
    exchange.tenant, exchange.route, exchange.policy_version = "acme", "chat", 1
    request = UpstreamRequest(Endpoint.CHAT, BODY, False, False)
    exchange.target, exchange.attempts = "llama", 1
    if exchange.trace is not None:
        exchange.trace.attempt_started("llama", request)
    exchange.upstream_seconds = 0.002
    recorder.answered(exchange, UpstreamReply(200, body=REPLY, usage=Usage(12, 8, True)), BODY)
    exchange.fix_overhead()
    exchange.status = 200
    recorder.record(exchange)


def per_request_us(recorder: Recorder, requests: int) -> float:
    for _ in range(min(2000, requests)):  # bind label children, warm caches
        one_request(recorder)
    started = time.process_time()
    for _ in range(requests):
        one_request(recorder)
    if recorder.tracing is not None:
        recorder.tracing.provider.force_flush()  # the exporter's work belongs to these requests
    return (time.process_time() - started) / requests * 1e6


def scenarios(endpoint: str) -> dict[str, ObservabilitySettings]:
    def tracing(ratio: float) -> TracingSettings:
        return TracingSettings(endpoint, Sampling(ratio), "bench")

    multiprocess_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if multiprocess_dir:
        return {"metrics (multiprocess files)": ObservabilitySettings(metrics=True, multiprocess_dir=multiprocess_dir)}
    return {
        "metrics": ObservabilitySettings(metrics=True),
        "tracing 10% (default), no metrics": ObservabilitySettings(metrics=False, tracing=tracing(0.1)),
        "tracing 100%, no metrics": ObservabilitySettings(metrics=False, tracing=tracing(1.0)),
        "metrics + tracing 10%": ObservabilitySettings(metrics=True, tracing=tracing(0.1)),
        "metrics + tracing 100%": ObservabilitySettings(metrics=True, tracing=tracing(1.0)),
        "metrics + tracing 10% + access log": ObservabilitySettings(metrics=True, access_log=True, tracing=tracing(0.1)),
    }


def measure(requests: int, endpoint: str) -> list[tuple[str, float]]:
    logging.getLogger("switchyard.access").addHandler(logging.FileHandler(os.devnull))
    logging.getLogger("switchyard.access").propagate = False
    shared = runtime()
    baseline = per_request_us(Recorder(ObservabilitySettings(metrics=False), shared), requests)
    rows = [("all off (baseline)", baseline)]
    for name, settings in scenarios(endpoint).items():
        recorder = Recorder(settings, shared)
        rows.append((name, per_request_us(recorder, requests) - baseline))
        if recorder.tracing is not None:
            recorder.tracing.shutdown()
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    sink = subprocess.Popen(SINK, stdout=subprocess.PIPE, text=True)
    try:
        assert sink.stdout is not None
        endpoint = f"http://127.0.0.1:{sink.stdout.readline().strip()}/v1/traces"
        rows = measure(args.requests, endpoint)
    finally:
        sink.terminate()
        sink.wait()
    if args.child:
        for name, value in rows[1:]:
            print(f"{name}\t{value}")
        return 0
    with tempfile.TemporaryDirectory(prefix="bench-metrics-") as directory:
        child = subprocess.run(
            [sys.executable, __file__, "--requests", str(args.requests), "--child"],
            env={**os.environ, "PROMETHEUS_MULTIPROC_DIR": directory}, capture_output=True, text=True, check=True,
        )
    rows += [(name, float(value)) for name, value in (line.split("\t") for line in child.stdout.splitlines())]
    print(f"record step, CPU per request ({args.requests} requests, JSON reply; rows after the first: added µs)")
    for name, value in rows:
        print(f"  {name:<40} {value:8.1f} µs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
