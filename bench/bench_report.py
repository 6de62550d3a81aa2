"""The benchmark's results and goals: what was measured, and PASS/FAIL per goal (rendered by bench_doc.py)."""

from __future__ import annotations

import os
import platform
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench_measure import TtfcResult, WrkResult
from bench_openloop import OpenLoopResult

# Goals. Throughput is judged as a ratio to the passthrough measured in the same run, because absolute
# numbers on a shared, noisy machine say little; the absolute per-core goal is reported as well.
MIN_CORE_RATIO = 0.70       # gateway core path req/s ÷ passthrough req/s
MIN_FULL_RATIO = 0.40       # gateway full pipeline req/s ÷ passthrough req/s
MIN_FULL_RPS = 2500.0       # gateway full pipeline req/s on one core
MAX_ADDED_P50_MS = 0.5      # at the fixed open-loop rate: gateway full − upstream direct
MAX_ADDED_P99_MS = 2.0
MAX_TTFC_OVERHEAD_MS = 1.0
MAX_READY_S = 1.5
MAX_IDLE_RSS_MB = 120.0
MIN_UPSTREAM_HEADROOM = 3.0  # nginx direct ÷ passthrough; below this the mock may be a bottleneck
MAX_ERROR_RATE = 0.001
MAX_QUIET_LOADAVG = 1.0  # 1-min loadavg at start above this: other work is running, the report says so

LABELS = {
    "upstream": "(a) upstream direct (nginx)",
    "passthrough": "(b) bare passthrough, the ceiling",
    "gateway": "(c) gateway, core path",
    "full": "(d) gateway, full pipeline",
    "proxy": "(h) a hop in C, nginx as a proxy",
}
THROUGHPUT = ("upstream", "passthrough", "gateway", "full")  # the throughput table's rows
# Open-loop rows: the scenario each row loads, in the order measured.
OPENLOOP = {"direct": "upstream", "proxy": "proxy", "passthrough": "passthrough", "gateway": "gateway", "full": "full"}
GATEWAYS = ("gateway", "full")


@dataclass
class Startup:
    cold_ready_s: float  # first start after a while: may include .pyc writes and cold page cache
    ready_s: float       # second start: the number checked against the goal
    rss_mb: float        # VmRSS (process tree) after ready, before any load


@dataclass
class RoundTrip:
    p50_ms: float
    p99_ms: float
    samples: int


@dataclass
class Report:
    args: dict[str, Any]
    command: str = ""
    machine: dict[str, str] = field(default_factory=dict)
    gateway_skip: str | None = None   # gateways deliberately not run (not importable yet, --skip-gateway)
    gateway_error: str | None = None  # a gateway tried and failed: did not start, or preflight not right
    scenarios: dict[str, WrkResult] = field(default_factory=dict)
    startups: dict[str, Startup] = field(default_factory=dict)
    loaded_rss_mb: dict[str, float] = field(default_factory=dict)  # right after that server's last wrk run
    openloop: dict[str, OpenLoopResult] = field(default_factory=dict)
    ttfc: dict[str, TtfcResult] = field(default_factory=dict)
    evidence: list[str] = field(default_factory=list)  # what proves the full pipeline did its work
    redis_rtt: RoundTrip | None = None  # one Redis round trip (PING) from the server core, at the open-loop rate
    error: str | None = None

    def ratio(self, name: str) -> float | None:
        res, base = self.scenarios.get(name), self.scenarios.get("passthrough")
        return res.rps / base.rps if res and base and base.rps else None

    def added_ms(self, name: str) -> tuple[float, float] | None:
        """(p50, p99) of `name` minus upstream direct at the same open-loop rate."""
        res, direct = self.openloop.get(name), self.openloop.get("direct")
        return (res.p50_ms - direct.p50_ms, res.p99_ms - direct.p99_ms) if res and direct else None

    def ttfc_overhead_ms(self) -> float | None:
        gw, direct = self.ttfc.get("gateway"), self.ttfc.get("direct")
        return gw.median_ms - direct.median_ms if gw and direct else None


@dataclass
class Goal:
    name: str
    target: str
    measured: str
    ok: bool | None  # None: not measured (FAIL if a gateway broke, else SKIP); info rows use `info`
    info: bool = False


def machine_info(server_core: int, load_core: int) -> dict[str, str]:
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": f"{cpu}; nproc {len(os.sched_getaffinity(0))} ({os.cpu_count()} logical cores on the host)",
        "kernel": platform.release(),
        "pinning": f"server under test on core {server_core}; wrk, the open-loop client, nginx, "
                   f"redis-server, the OTLP sink and the SSE upstream on core {load_core} (taskset)",
        "python": f"{platform.python_version()} ({sys.executable})",
        "loadavg_start": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }


def _fmt(value: float | None, spec: str, unit: str = "") -> str:
    return "–" if value is None else f"{value:{spec}}{unit}"


def _errors_ok(rep: Report, name: str) -> bool:
    res = rep.scenarios.get(name)
    return res is not None and res.error_rate <= MAX_ERROR_RATE


def goals(rep: Report) -> list[Goal]:
    full = rep.scenarios.get("full")
    core_ratio, full_ratio = rep.ratio("gateway"), rep.ratio("full")
    added = rep.added_ms("full")
    ttfc = rep.ttfc_overhead_ms()
    out = [
        Goal("core path req/s ÷ ceiling (passthrough)", f"≥ {MIN_CORE_RATIO:.2f}", _fmt(core_ratio, ".2f"),
             None if core_ratio is None else core_ratio >= MIN_CORE_RATIO and _errors_ok(rep, "gateway")),
        Goal("full pipeline req/s ÷ ceiling (passthrough)", f"≥ {MIN_FULL_RATIO:.2f}", _fmt(full_ratio, ".2f"),
             None if full_ratio is None else full_ratio >= MIN_FULL_RATIO and _errors_ok(rep, "full")),
        Goal("full pipeline req/s on one core", f"≥ {MIN_FULL_RPS:,.0f}",
             _fmt(full.rps if full else None, ",.0f"), None if full is None else full.rps >= MIN_FULL_RPS),
        Goal(f"added p50 at {rep.args['rate']:g} req/s (full − direct)", f"≤ {MAX_ADDED_P50_MS} ms",
             _fmt(added[0] if added else None, ".3f", " ms"), None if added is None else added[0] <= MAX_ADDED_P50_MS),
        Goal(f"added p99 at {rep.args['rate']:g} req/s (full − direct)", f"≤ {MAX_ADDED_P99_MS} ms",
             _fmt(added[1] if added else None, ".3f", " ms"), None if added is None else added[1] <= MAX_ADDED_P99_MS),
        Goal("streaming first-chunk overhead (core − direct, medians)", f"≤ {MAX_TTFC_OVERHEAD_MS:.0f} ms",
             _fmt(ttfc, ".3f", " ms"), None if ttfc is None else ttfc <= MAX_TTFC_OVERHEAD_MS),
    ]
    starts = [(rep.startups.get(name), label) for name, label in (("gateway", "core"), ("full", "full pipeline"))]
    out += [Goal(f"start → ready, {label}", f"≤ {MAX_READY_S} s", _fmt(st.ready_s if st else None, ".3f", " s"),
                 None if st is None else st.ready_s <= MAX_READY_S) for st, label in starts]
    out += [Goal(f"idle RSS, {label}", f"≤ {MAX_IDLE_RSS_MB:.0f} MB",
                 _fmt(st.rss_mb if st else None, ".1f", " MB"), None if st is None else st.rss_mb <= MAX_IDLE_RSS_MB)
            for st, label in starts]
    out.append(Goal("RSS right after the full-pipeline load", "(reported)",
                    _fmt(rep.loaded_rss_mb.get("full"), ".1f", " MB"), None, info=True))
    return out


def verdict(goal: Goal, rep: Report) -> str:
    if goal.info:
        return "info"
    if goal.ok is None:
        return "FAIL" if rep.gateway_error or rep.error else "SKIP"
    return "PASS" if goal.ok else "FAIL"


def sanity_notes(rep: Report) -> list[str]:
    notes: list[str] = []
    load_start = float(rep.machine.get("loadavg_start", "0").split()[0])
    if load_start > MAX_QUIET_LOADAVG:
        notes.append(f"**The machine was busy** (loadavg {load_start:.2f} before the harness started anything): "
                     "other work shared both cores, so these numbers are mostly noise; rerun on a quiet machine.")
    up, pt = rep.scenarios.get("upstream"), rep.scenarios.get("passthrough")
    if up and pt and pt.rps:
        headroom = up.rps / pt.rps
        ok = "ok" if headroom >= MIN_UPSTREAM_HEADROOM else "TOO LOW: the mock may be the bottleneck"
        notes.append(f"Upstream headroom: nginx direct is {headroom:.1f}× the passthrough ({ok}).")
    hop = rep.added_ms("passthrough")
    if hop and (hop[0] > MAX_ADDED_P50_MS or hop[1] > MAX_ADDED_P99_MS):
        notes.append(f"**A bare Python hop alone misses the latency goals here**: the passthrough (b) adds "
                     f"{hop[0]:.3f} ms at p50 and {hop[1]:.3f} ms at p99 at {rep.args.get('rate', 0):g} req/s "
                     f"(goals for the whole pipeline: {MAX_ADDED_P50_MS} / {MAX_ADDED_P99_MS} ms), so this machine "
                     "cannot show them met by any Python gateway; compare the gateways' own overhead and the ratios.")
    pt_ttfc, direct_ttfc = rep.ttfc.get("passthrough"), rep.ttfc.get("direct")
    if pt_ttfc and direct_ttfc and pt_ttfc.median_ms - direct_ttfc.median_ms > MAX_TTFC_OVERHEAD_MS:
        notes.append(f"**A bare Python hop alone misses the first-chunk goal here**: the passthrough adds "
                     f"{pt_ttfc.median_ms - direct_ttfc.median_ms:.3f} ms to the first chunk (goal for the gateway: "
                     f"{MAX_TTFC_OVERHEAD_MS} ms); compare gateway − passthrough.")
    for name, res in rep.scenarios.items():
        if res.errors:
            notes.append(f"{LABELS[name]}: {res.errors} errors (connect/read/write/timeout/non-2xx) "
                         f"in {res.requests} requests.")
    for name, res in rep.openloop.items():
        if res.errors:
            notes.append(f"Open loop via {name}: {res.errors} failed requests (not in the percentiles).")
        if res.achieved < 0.95 * res.rate:
            notes.append(f"Open loop via {name}: only {res.achieved:.0f} of {res.rate:g} req/s answered: "
                         "that path could not keep up with the rate.")
        if not res.realtime:
            notes.append(f"Open loop via {name}: the client could not run at SCHED_FIFO (not root?); its own "
                         "wake-up lag on a busy core is in these latencies.")
        if res.late_p99_ms > 1.0:
            notes.append(f"Open loop via {name}: the client itself sent late (p99 {res.late_p99_ms:.2f} ms); "
                         "the load core was busy, treat these latencies with care.")
    for name, t in rep.ttfc.items():
        if t.buffered > t.samples // 2:
            notes.append(f"TTFC via {name}: {t.buffered}/{t.samples} first reads held the whole stream "
                         "([DONE]): that path buffers instead of streaming.")
    if rep.gateway_skip:
        notes.append(f"Gateways skipped: {rep.gateway_skip}.")
    if rep.gateway_error:
        notes.append(f"**A gateway failed**: {rep.gateway_error.splitlines()[0]} (log path on stderr).")
    if rep.error:
        notes.append(f"**Run aborted**: {rep.error} (partial results above).")
    return notes
