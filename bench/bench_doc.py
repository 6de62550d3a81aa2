"""The benchmark report as markdown (docs/benchmarks.md when run by `make bench-report`)."""

from __future__ import annotations

from bench_report import GATEWAYS, LABELS, MIN_FULL_RPS, OPENLOOP, THROUGHPUT, Report, goals, sanity_notes, verdict

FULL_PIPELINE = (
    "auth → PII redaction (six entities) + prompt-injection and secret detection on a ~1 KB prompt that "
    "is new on every request → a policy of four routes (the request takes the `chat` route) → Redis limits "
    "(requests, tokens, concurrency and daily budget on the tenant, requests on the key and the route; far "
    "above the load, so every request is admitted and settled) → the upstream → cost, Prometheus metrics, "
    "and traces at the default sampling (1 %) exported over OTLP/HTTP to a sink"
)


def _throughput(rep: Report) -> list[str]:
    rows = ["| scenario | req/s | p50 ms | p99 ms | ÷ ceiling |", "|---|---:|---:|---:|---:|"]
    for name in THROUGHPUT:
        label, res = LABELS[name], rep.scenarios.get(name)
        if res is None:
            why = "not measured"
            if name in GATEWAYS and rep.gateway_error:
                why = "FAILED: " + rep.gateway_error.splitlines()[0]
            elif name in GATEWAYS and rep.gateway_skip:
                why = rep.gateway_skip
            rows.append(f"| {label} | – | – | – | {why} |")
            continue
        ratio = rep.ratio(name)
        flag = f" ⚠ {res.error_rate:.1%} errors" if res.errors else ""
        rows.append(f"| {label}{flag} | {res.rps:,.0f} | {res.p50_ms:.2f} | {res.p99_ms:.2f} | "
                    f"{'–' if ratio is None else f'{ratio:.2f}'} |")
    return rows


def _openloop(rep: Report) -> list[str]:
    rate = rep.args["rate"]
    rows = [f"| path, at {rate:g} req/s | p50 ms | p90 ms | p99 ms | max ms | added p50 ms | added p99 ms "
            "| own overhead p50 / p99 ms | samples |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, scenario in OPENLOOP.items():
        res = rep.openloop.get(name)
        if res is None:
            rows.append(f"| {LABELS[scenario]} | – | – | – | – | – | – | – | – |")
            continue
        added = rep.added_ms(name) if name != "direct" else None
        extra = (f"{added[0]:+.3f} | {added[1]:+.3f}" if added else "(baseline) | (baseline)")
        own = (f"{res.own_p50_ms:.3f} / {res.own_p99_ms:.3f}"
               if res.own_p50_ms is not None and res.own_p99_ms is not None else "–")
        rows.append(f"| {LABELS[scenario]} | {res.p50_ms:.3f} | {res.p90_ms:.3f} | {res.p99_ms:.3f} | "
                    f"{res.max_ms:.2f} | {extra} | {own} | {res.samples} |")
    return rows


def _latency_parts(rep: Report) -> list[str]:
    """Where the added latency comes from: the hop itself (in C and in bare Python), the gateway's own work,
    and one Redis round trip (the full pipeline's limits make one before the upstream call)."""
    c_hop, py_hop, full = rep.added_ms("proxy"), rep.added_ms("passthrough"), rep.openloop.get("full")
    if not (c_hop and py_hop and full and full.own_p50_ms is not None and rep.redis_rtt):
        return []
    return ["", f"Where the added latency comes from, at p50: a hop with no work in it adds **{c_hop[0]:.3f} ms** "
            f"written in C (h) and **{py_hop[0]:.3f} ms** in bare Python (b); the full pipeline's own work adds "
            f"**{full.own_p50_ms:.3f} ms** (its header); one Redis round trip from the server core at this rate "
            f"takes {rep.redis_rtt.p50_ms:.3f} ms (p99 {rep.redis_rtt.p99_ms:.3f} ms; PING, `bench/redis_rtt.py`), "
            "and the full pipeline's exact limits wait for one before the upstream call, during the scans of a "
            "new prompt."]


def _startup(rep: Report) -> list[str]:
    rows = ["| process | start→ready s | first start→ready s (writes .pyc) | idle RSS MB | RSS after its load MB |",
            "|---|---:|---:|---:|---:|"]
    for name in ("passthrough", *GATEWAYS):
        s, loaded = rep.startups.get(name), rep.loaded_rss_mb.get(name)
        label = LABELS[name].split(" ", 1)[1]
        rows.append(f"| {label} | " + (f"{s.ready_s:.3f} | {s.cold_ready_s:.3f} | {s.rss_mb:.1f}" if s else "– | – | –")
                    + f" | {'–' if loaded is None else f'{loaded:.1f}'} |")
    return rows


def _ttfc(rep: Report) -> list[str]:
    rows = ["| path | median ms | p99 ms | samples |", "|---|---:|---:|---:|"]
    for name, label in (("direct", "SSE upstream direct"), ("passthrough", "through the bare passthrough"),
                        ("gateway", "through the gateway (core path)")):
        t = rep.ttfc.get(name)
        rows.append(f"| {label} | {t.median_ms:.3f} | {t.p99_ms:.3f} | {t.samples} |" if t
                    else f"| {label} | – | – | – |")
    direct, pt, gw = rep.ttfc.get("direct"), rep.ttfc.get("passthrough"), rep.ttfc.get("gateway")
    if direct and pt and gw:
        rows += ["", f"First-chunk overhead, gateway − direct: **{gw.median_ms - direct.median_ms:.3f} ms** "
                 f"(a bare Python hop, passthrough − direct: {pt.median_ms - direct.median_ms:.3f} ms; "
                 f"gateway − passthrough: {gw.median_ms - pt.median_ms:.3f} ms)."]
    return rows


def render(rep: Report, chart: str | None = None) -> str:
    a = rep.args
    out = ["# Benchmarks", "",
           "Generated by `make bench-report` (bench/run.py); do not edit by hand. How the harness works: "
           "[bench/README.md](../bench/README.md).", "",
           f"- command: `{rep.command}`"]
    out += [f"- {k}: {v}" for k, v in rep.machine.items()]
    out += [f"- throughput: `wrk -t1 -c{a['connections']} -d{a['duration']}s` (+1 s warm-up) per scenario, "
            f"{a['rounds']} round(s) alternating (b), (c), (d), medians; every scenario gets the same request, "
            "a ~1 KB user prompt that differs on every request (`bench/safety_post.lua`)",
            f"- latency at a fixed rate: open loop, {a['rate']:g} req/s for {a['rate_duration']} s (+1 s warm-up) "
            f"per path and round, latency from each request's scheduled send time (no coordinated omission)",
            "", "**Full pipeline (d)**: " + FULL_PIPELINE + ".", ""]
    if chart:
        out += [f"![req/s per scenario and added latency at {a['rate']:g} req/s]({chart})", ""]
    out += ["## Goals", "", "| goal | target | measured | result |", "|---|---|---:|---|"]
    out += [f"| {g.name} | {g.target} | {g.measured} | {verdict(g, rep)} |" for g in goals(rep)]
    ceiling = rep.scenarios.get("passthrough")
    if ceiling and ceiling.rps < MIN_FULL_RPS:
        out += ["", f"The {MIN_FULL_RPS:,.0f} req/s per core goal is out of reach on this machine for any Python "
                f"server on this stack: the bare passthrough itself, the ceiling, served {ceiling.rps:,.0f} req/s."]
    out += ["", "## Throughput, one core (non-stream POST /v1/chat/completions)", ""]
    out += _throughput(rep)
    out += ["", f"## Added latency at {a['rate']:g} req/s (open loop)", "",
            "Added = the path's percentile − upstream direct's, at the same rate in the same run. Own overhead: "
            "the gateway's `x-switchyard-overhead-ms` header (its time minus the upstream's, to the response "
            "headers), which leaves out the extra hop's network and wake-up cost that added latency includes.",
            ""]
    out += _openloop(rep)
    out += _latency_parts(rep)
    out += ["", "## Start-up and memory", ""]
    out += _startup(rep)
    out += ["", "## Streaming time to first chunk (sequential requests)", ""]
    out += _ttfc(rep)
    if rep.evidence:
        out += ["", "## The full pipeline did its work", "", *(f"- {line}" for line in rep.evidence)]
    notes = sanity_notes(rep)
    if notes:
        out += ["", "## Notes", "", *(f"- {n}" for n in notes)]
    out += ["", "Numbers from one run on a shared VM move by ±30 % from minute to minute; the ratios within "
            "one run are what to compare."]
    return "\n".join(out) + "\n"
