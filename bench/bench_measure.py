"""Measurements: wrk throughput/latency, a correctness preflight, streaming time-to-first-chunk."""

from __future__ import annotations

import asyncio
import json
import math
import os
import secrets
import statistics
import string
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from bench_proc import HarnessError, http_request

BENCH_DIR = Path(__file__).resolve().parent
LUA_SCRIPT = BENCH_DIR / "post.lua"  # a short fixed prompt
VARYING_SCRIPT = BENCH_DIR / "safety_post.lua"  # a ~1 KB prompt, different on every request
CHAT_PATH = "/v1/chat/completions"


@dataclass
class WrkResult:
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int  # connect+read+write+timeout+non-2xx/3xx: a fast error is not a fast request

    @property
    def error_rate(self) -> float:
        return self.errors / max(self.requests, 1)


@dataclass
class TtfcResult:
    median_ms: float
    p99_ms: float
    samples: int
    buffered: int  # samples whose first read already held "[DONE]": the path did not stream


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile (no interpolation, so p99 is a latency actually observed)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(pct / 100 * len(ordered)) - 1)]


def chat_body(model: str, stream: bool = False) -> bytes:
    body: dict[str, object] = {
        "model": model,
        "messages": [{"role": "user", "content": "Say hello in one short sentence."}],
        "max_tokens": 32,
    }
    if stream:
        body["stream"] = True
    return json.dumps(body).encode()


def preflight(port: int, key: str, model: str, body: bytes | None = None) -> dict[str, str]:
    """One request before the load: a server answering 401/404 fast would otherwise look great.
    Returns the response headers (lower-case names) for scenario-specific checks."""
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {key}"}
    try:
        status, resp_headers, data = http_request(port, "POST", CHAT_PATH, body or chat_body(model),
                                                  headers, timeout=10.0)
    except OSError as exc:
        raise HarnessError(f"preflight POST to :{port} failed: {exc}") from exc
    try:
        ok = status == 200 and "choices" in json.loads(data)
    except ValueError:
        ok = False
    if not ok:
        raise HarnessError(f"preflight POST to :{port} (model {model}) got {status}: {data[:300]!r}")
    return resp_headers


def run_id() -> str:
    """A tag new for every load run (letters only, so no detector reads it as a number): the prompts of one
    run never repeat an earlier run's, which the safety filters' cache would answer."""
    return "".join(secrets.choice(string.ascii_lowercase) for _ in range(8))


def run_wrk(wrk: str, taskset: str, core: int, port: int, duration_s: int, connections: int,
            key: str, model: str, script: Path | None = None) -> WrkResult:
    """Run wrk pinned to `core` (1 thread, Lua POST script, default LUA_SCRIPT) and parse its JSON
    summary line."""
    script = script or LUA_SCRIPT
    argv = [taskset, "-c", str(core), wrk, "-t1", f"-c{connections}", f"-d{duration_s}s",
            "--latency", "--timeout", "5s", "-s", str(script), f"http://127.0.0.1:{port}{CHAT_PATH}"]
    # BENCH_LUA_DIR: safety_post.lua loads post.lua from there.
    env = {**os.environ, "BENCH_KEY": key, "BENCH_MODEL": model, "BENCH_LUA_DIR": str(BENCH_DIR),
           "BENCH_RUN": run_id()}
    try:
        proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=duration_s + 60)
    except subprocess.TimeoutExpired as exc:
        raise HarnessError(f"wrk against :{port} did not finish in {duration_s + 60} s") from exc
    for line in proc.stdout.splitlines():
        if line.startswith("BENCH_JSON "):
            data = json.loads(line[len("BENCH_JSON "):])
            return WrkResult(rps=data["rps"], p50_ms=data["p50_ms"], p99_ms=data["p99_ms"],
                             requests=data["requests"], errors=sum(data["errors"].values()))
    raise HarnessError(f"wrk gave no summary (exit {proc.returncode}):\n{proc.stdout[-1500:]}"
                       f"\n{proc.stderr[-1500:]}")


def load(wrk: str, taskset: str, core: int, port: int, duration_s: int, connections: int,
         key: str, model: str, warmup_s: int = 1, script: Path | None = None) -> WrkResult:
    """Warm up (connections, pools, caches, lazy imports) for warmup_s, then measure."""
    run_wrk(wrk, taskset, core, port, warmup_s, connections, key, model, script)
    return run_wrk(wrk, taskset, core, port, duration_s, connections, key, model, script)


async def _first_chunk_ms(session: aiohttp.ClientSession, url: str, body: bytes,
                          headers: dict[str, str]) -> tuple[float, bool]:
    """(ms from sending the request to the first body bytes, whether that read held the whole
    stream); drains the rest so the connection is reused for the next sample."""
    start = time.perf_counter()
    async with session.post(url, data=body, headers=headers) as resp:
        first = await resp.content.readany()
        elapsed = (time.perf_counter() - start) * 1000
        if resp.status != 200 or not first.startswith(b"data:"):
            raise HarnessError(f"stream request to {url} got {resp.status}: {first[:300]!r}")
        async for _ in resp.content.iter_any():
            pass
    # The upstream spaces its chunks apart, so a relay that streams cannot deliver [DONE] first.
    return elapsed, b"[DONE]" in first


async def _ttfc(targets: dict[str, tuple[str, bytes]], key: str, samples: int,
                warmup: int) -> dict[str, TtfcResult]:
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {key}",
               "Accept": "text/event-stream"}
    timeout = aiohttp.ClientTimeout(total=30)
    times: dict[str, list[float]] = {name: [] for name in targets}
    buffered = dict.fromkeys(targets, 0)
    sessions = {name: aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1), timeout=timeout)
                for name in targets}
    try:
        # Interleave the targets sample by sample so machine noise hits all of them alike.
        for i in range(warmup + samples):
            for name, (url, body) in targets.items():
                ms, whole = await _first_chunk_ms(sessions[name], url, body, headers)
                if i >= warmup:
                    times[name].append(ms)
                    buffered[name] += whole
    finally:
        for session in sessions.values():
            await session.close()
    return {name: TtfcResult(statistics.median(v), percentile(v, 99), len(v), buffered[name])
            for name, v in times.items()}


def ttfc(targets: dict[str, tuple[str, bytes]], key: str, samples: int = 300,
         warmup: int = 20, budget_s: float = 120.0) -> dict[str, TtfcResult]:
    """Sequential streaming requests per target: {name: (url, body)} -> median/p99 TTFC (ms)."""
    async def bounded() -> dict[str, TtfcResult]:
        try:
            return await asyncio.wait_for(_ttfc(targets, key, samples, warmup), budget_s)
        except TimeoutError as exc:
            raise HarnessError(f"TTFC measurement exceeded {budget_s:.0f} s") from exc

    return asyncio.run(bounded())
