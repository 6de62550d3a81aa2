"""The benchmark harness still runs end to end (a tiny `make bench-report`); its numbers are not checked here.

Benchmarks are not tests: this only guards the harness against bit-rot — every scenario starts, answers its
preflight request and produces a row, and the full pipeline really went through Redis limits —
so that `make bench-report` works when someone needs the figures.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(
    len(os.sched_getaffinity(0)) < 2 or not (shutil.which("wrk") and shutil.which("nginx") or os.geteuid() == 0),
    reason="the harness needs 2 cores, and wrk + nginx (or root to install them)",
)


def test_the_benchmark_report_runs_every_scenario(tmp_path):
    out, chart = tmp_path / "benchmarks.md", tmp_path / "benchmarks.png"
    run = subprocess.run(
        [sys.executable, "bench/run.py", "--duration", "1", "--rate-duration", "1", "--rate", "50", "--samples", "10",
         "--connections", "8", "--out", str(out), "--chart", str(chart)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    report = out.read_text()
    for row in ("(a) upstream direct", "(b)", "(c)", "(d)"):
        line = next((line for line in report.splitlines() if line.startswith(f"| {row}")), None)
        assert line is not None, f"no throughput row {row!r} in the report"
        assert float(re.split(r"\s*\|\s*", line)[2].replace(",", "")) > 0, line
    assert re.search(r"Redis held [1-9][0-9]* keys after the load", report), "the full pipeline did not use Redis"
    assert re.search(r"Redis ran the limits script [1-9][0-9,]* times, \d+\.\d µs", report)
    # The hop in C and the Redis round trip, measured beside the gateways for where the added latency comes from
    assert re.search(r"^\| \(h\) a hop in C, nginx as a proxy \| \d+\.\d{3} \|", report, re.M), "no (h) row at a fixed rate"
    assert re.search(r"one Redis round trip from the server core at this rate takes \d+\.\d{3} ms", report)
    assert chart.stat().st_size > 10_000  # a drawn PNG, not an empty file
