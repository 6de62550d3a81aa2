"""The soak (bench/soak.py, `make soak`: 100,000 requests) in short: 3,000 mixed requests through a real gateway
with its limits in Redis, then no errors, no memory growth after the warm-up, no leaked upstream connections,
event-loop tasks, Redis connections or concurrency leases, and an upstream that wrote every reply nobody hung up on."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SOAK = Path(__file__).resolve().parents[1] / "bench" / "soak.py"


def test_a_short_soak_meets_every_goal(tmp_path):
    report = tmp_path / "soak.json"
    run = subprocess.run(
        [sys.executable, str(SOAK), "--redis", "--requests", "3000", "--warmup", "1000", "--json", str(report)],
        capture_output=True, text=True, timeout=90,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    numbers = json.loads(report.read_text())
    assert all(check["pass"] for check in numbers["checks"].values()), numbers["checks"]
    assert "redis" in numbers["checks"], "the limits ran in Redis: one connection, every lease given back"
    # The mix really ran: JSON, whole streams, and hang-ups the gateway passed on upstream.
    assert numbers["sent"] == {"json": 1500, "stream": 1050, "abandon": 450}
    assert numbers["ok"] == numbers["sent"] and numbers["errors"] == 0
    assert numbers["upstream"]["stream_aborted"] > 0, "a client hanging up mid-stream must cancel the upstream stream"
    # The task gauge is live: it rose under load and came back down.
    assert numbers["tasks_peak"] > numbers["tasks_idle"] + 2 >= numbers["tasks_end"]
