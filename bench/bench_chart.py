"""The report's PNG: req/s per scenario against the 0.40× ceiling line, and added latency at a fixed rate.

Needs matplotlib (a dev dependency); imported only when a chart is asked for.
"""

from __future__ import annotations

from pathlib import Path

from bench_report import LABELS, MAX_ADDED_P50_MS, MAX_ADDED_P99_MS, MIN_FULL_RATIO, MIN_FULL_RPS, Report


def draw(rep: Report, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")  # no display
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.8), gridspec_kw={"width_ratios": [1.1, 1]})

    names = [n for n in ("passthrough", "gateway", "full") if n in rep.scenarios]
    values = [rep.scenarios[n].rps for n in names]
    colors = {"passthrough": "#9e9e9e", "gateway": "#4c72b0", "full": "#dd8452"}
    bars = left.bar([LABELS[n].replace(", ", ",\n", 1) for n in names], values, color=[colors[n] for n in names])
    left.bar_label(bars, labels=[f"{v:,.0f}" for v in values], padding=3)
    base = rep.scenarios.get("passthrough")
    if base:
        left.axhline(base.rps * MIN_FULL_RATIO, color="#c44e52", linestyle="--", linewidth=1.2,
                     label=f"goal for (d): {MIN_FULL_RATIO:.2f} × ceiling")
    left.axhline(MIN_FULL_RPS, color="#555555", linestyle=":", linewidth=1.2,
                 label=f"goal for (d): {MIN_FULL_RPS:,.0f} req/s")
    left.legend(loc="upper right", fontsize=8)
    up = rep.scenarios.get("upstream")
    title = "req/s, server pinned to one core"
    if up:  # far above the rest: stated, not drawn, so the bars that matter stay readable
        title += f"\n(a) upstream direct (nginx): {up.rps:,.0f} req/s, off the scale"
    left.set_title(title, fontsize=10)
    left.set_ylabel("requests per second")
    left.set_ylim(0, max([*values, MIN_FULL_RPS]) * 1.2)
    left.tick_params(axis="x", labelsize=8)

    rate = rep.args["rate"]
    rows = [(n, rep.added_ms(n)) for n in ("proxy", "passthrough", "gateway", "full")]
    rows = [(n, a) for n, a in rows if a is not None]
    xs = range(len(rows))
    width = 0.38
    p50 = right.bar([x - width / 2 for x in xs], [a[0] for _, a in rows], width, label="added p50", color="#4c72b0")
    p99 = right.bar([x + width / 2 for x in xs], [a[1] for _, a in rows], width, label="added p99", color="#dd8452")
    right.bar_label(p50, fmt="%.2f", padding=2, fontsize=8)
    right.bar_label(p99, fmt="%.2f", padding=2, fontsize=8)
    for goal, color, name in ((MAX_ADDED_P50_MS, "#4c72b0", "p50"), (MAX_ADDED_P99_MS, "#dd8452", "p99")):
        right.axhline(goal, color=color, linestyle=":", linewidth=1.2, label=f"{name} goal {goal} ms")
    right.axhline(0, color="black", linewidth=0.6)
    right.set_xticks(list(xs), [LABELS[n].replace(", ", ",\n", 1) for n, _ in rows], fontsize=8)
    right.set_ylabel("ms over upstream direct")
    right.set_title(f"added latency at {rate:g} req/s (open loop, vs upstream direct)", fontsize=10)
    right.legend(fontsize=8, loc="upper left")

    fig.suptitle(f"Switchyard benchmark — {rep.machine.get('date', '')}", fontsize=11)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
