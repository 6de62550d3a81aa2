"""The benchmark report: collected results, targets, markdown rendering."""

from __future__ import annotations

import os
import platform
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench_measure import TtfcResult, WrkResult

# Targets from the project brief. Throughput is judged as a ratio to the passthrough measured in the
# same run, because absolute numbers on a shared, noisy machine say little.
MIN_RATIO = 0.70        # gateway req/s ÷ passthrough req/s
MAX_TTFC_OVERHEAD_MS = 1.0
MAX_READY_S = 1.5
MAX_IDLE_RSS_MB = 120.0
MIN_UPSTREAM_HEADROOM = 3.0  # nginx direct ÷ passthrough; below this the mock may be a bottleneck
MAX_ERROR_RATE = 0.001

LABELS = {
    "upstream": "(a) upstream direct (nginx)",
    "passthrough": "(b) passthrough (Starlette + aiohttp)",
    "gateway": "(c) gateway",
}


@dataclass
class Startup:
    cold_ready_s: float  # first start after a while: may include .pyc writes and cold page cache
    ready_s: float       # second start: the number checked against the target
    rss_mb: float        # VmRSS (process tree) after ready, before any load


@dataclass
class Report:
    args: dict[str, Any]
    machine: dict[str, str] = field(default_factory=dict)
    gateway_skip: str | None = None   # (c) deliberately not run (not importable yet, --skip-gateway)
    gateway_error: str | None = None  # (c) tried and failed: did not start, or preflight not 200
    scenarios: dict[str, WrkResult] = field(default_factory=dict)
    startups: dict[str, Startup] = field(default_factory=dict)
    ttfc: dict[str, TtfcResult] = field(default_factory=dict)
    error: str | None = None


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
        "cpu": f"{cpu} ({os.cpu_count()} logical cores)",
        "pinning": f"server core {server_core} (taskset), wrk + nginx + SSE upstream core {load_core}",
        "python": f"{platform.python_version()} ({sys.executable})",
        "loadavg_start": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }


def _verdict(ok: bool | None, gateway_failed: bool) -> str:
    if ok is None:  # not measured: FAIL if the gateway broke, SKIP if it was not run at all
        return "FAIL" if gateway_failed else "SKIP"
    return "PASS" if ok else "FAIL"


def _throughput_table(rep: Report) -> list[str]:
    base = rep.scenarios.get("passthrough")
    rows = ["| scenario | req/s | p50 ms | p99 ms | ratio vs passthrough |", "|---|---:|---:|---:|---:|"]
    for name, label in LABELS.items():
        res = rep.scenarios.get(name)
        if res is None:
            why = "not measured"
            if name == "gateway" and rep.gateway_error:
                why = "FAILED: " + rep.gateway_error.splitlines()[0]
            elif name == "gateway" and rep.gateway_skip:
                why = rep.gateway_skip
            rows.append(f"| {label} | – | – | – | {why} |")
            continue
        ratio = f"{res.rps / base.rps:.2f}" if base and base.rps else "–"
        flag = f" ⚠ {res.error_rate:.1%} errors" if res.error_rate > MAX_ERROR_RATE else ""
        rows.append(f"| {label}{flag} | {res.rps:,.0f} | {res.p50_ms:.2f} | {res.p99_ms:.2f} | {ratio} |")
    return rows


def _startup_table(rep: Report) -> list[str]:
    rows = ["| process | start→ready s | first start→ready s (writes .pyc) | idle RSS MB |",
            "|---|---:|---:|---:|"]
    for name in ("passthrough", "gateway"):
        s = rep.startups.get(name)
        if s is None:
            rows.append(f"| {name} | – | – | – |")
        else:
            rows.append(f"| {name} | {s.ready_s:.3f} | {s.cold_ready_s:.3f} | {s.rss_mb:.1f} |")
    return rows


def _ttfc_lines(rep: Report) -> tuple[list[str], float | None]:
    rows = ["| path | median ms | p99 ms | samples |", "|---|---:|---:|---:|"]
    for name, label in (("direct", "SSE upstream direct"), ("passthrough", "through the bare passthrough"),
                        ("gateway", "through the gateway")):
        t = rep.ttfc.get(name)
        rows.append(f"| {label} | {t.median_ms:.3f} | {t.p99_ms:.3f} | {t.samples} |" if t
                    else f"| {label} | – | – | – |")
    direct, pt, gw = rep.ttfc.get("direct"), rep.ttfc.get("passthrough"), rep.ttfc.get("gateway")
    overhead = gw.median_ms - direct.median_ms if direct and gw else None
    rows.append("")
    if overhead is not None:
        rows.append(f"First-chunk overhead (median gateway − median direct): **{overhead:.3f} ms**")
    if direct and pt:
        # Any extra process hop costs wake-ups and copies; this shows how much of the overhead
        # a do-nothing Python proxy already pays on this machine.
        rows.append(f"(bare passthrough − direct: {pt.median_ms - direct.median_ms:.3f} ms"
                    + (f"; gateway − passthrough: {gw.median_ms - pt.median_ms:.3f} ms)" if gw else ")"))
    return rows, overhead


def _targets_table(rep: Report, overhead: float | None) -> list[str]:
    gw, pt = rep.scenarios.get("gateway"), rep.scenarios.get("passthrough")
    st = rep.startups.get("gateway")
    ratio = gw.rps / pt.rps if gw and pt and pt.rps else None
    checks: list[tuple[str, str, str, bool | None]] = [
        ("gateway req/s ÷ passthrough req/s", f"≥ {MIN_RATIO:.2f}",
         f"{ratio:.2f}" if ratio is not None else "–",
         None if ratio is None else (ratio >= MIN_RATIO and gw is not None
                                     and gw.error_rate <= MAX_ERROR_RATE)),
        ("streaming first-chunk overhead", f"≤ {MAX_TTFC_OVERHEAD_MS:.1f} ms",
         f"{overhead:.3f} ms" if overhead is not None else "–",
         None if overhead is None else overhead <= MAX_TTFC_OVERHEAD_MS),
        ("gateway start → ready", f"≤ {MAX_READY_S:.1f} s", f"{st.ready_s:.3f} s" if st else "–",
         None if st is None else st.ready_s <= MAX_READY_S),
        ("gateway idle RSS", f"≤ {MAX_IDLE_RSS_MB:.0f} MB", f"{st.rss_mb:.1f} MB" if st else "–",
         None if st is None else st.rss_mb <= MAX_IDLE_RSS_MB),
    ]
    rows = ["| check | target | measured | result |", "|---|---|---:|---|"]
    failed = rep.gateway_error is not None
    rows += [f"| {name} | {target} | {got} | {_verdict(ok, failed)} |" for name, target, got, ok in checks]
    return rows


def _sanity_notes(rep: Report) -> list[str]:
    notes: list[str] = []
    up, pt = rep.scenarios.get("upstream"), rep.scenarios.get("passthrough")
    if up and pt and pt.rps:
        headroom = up.rps / pt.rps
        verdict = "ok" if headroom >= MIN_UPSTREAM_HEADROOM else "TOO LOW: the mock may be the bottleneck"
        notes.append(f"- Upstream headroom: nginx direct is {headroom:.1f}× the passthrough ({verdict}).")
    for name, res in rep.scenarios.items():
        if res.errors:
            notes.append(f"- {LABELS[name]}: {res.errors} errors (connect/read/write/timeout/non-2xx) "
                         f"in {res.requests} requests.")
    for name, t in rep.ttfc.items():
        if t.buffered > t.samples // 2:
            notes.append(f"- TTFC via {name}: {t.buffered}/{t.samples} first reads held the whole stream "
                         "([DONE]): that path buffers instead of streaming.")
    if rep.gateway_skip:
        notes.append(f"- (c) skipped: {rep.gateway_skip}.")
    if rep.gateway_error:
        notes.append(f"- (c) **gateway failed**: {rep.gateway_error.splitlines()[0]} (log path on stderr).")
    if rep.error:
        notes.append(f"- **Run aborted**: {rep.error} (partial results above).")
    return notes


def render(rep: Report) -> str:
    a = rep.args
    out = ["## Switchyard benchmark", ""]
    out += [f"- {k}: {v}" for k, v in rep.machine.items()]
    out += [f"- load: wrk -t1 -c{a['connections']} -d{a['duration']}s (+1 s warm-up), rounds: {a['rounds']}",
            "", "### Throughput (non-stream POST /v1/chat/completions)", ""]
    out += _throughput_table(rep)
    out += ["", "### Start-up and idle memory", ""]
    out += _startup_table(rep)
    ttfc_rows, overhead = _ttfc_lines(rep)
    out += ["", "### Streaming time to first chunk (sequential requests)", ""]
    out += ttfc_rows
    out += ["", "### Targets", ""]
    out += _targets_table(rep, overhead)
    notes = _sanity_notes(rep)
    if notes:
        out += ["", "### Notes", "", *notes]
    return "\n".join(out) + "\n"
