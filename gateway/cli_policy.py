"""`switchyard policy check | explain | test` and `switchyard catalog`: ops tooling over policy files."""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import orjson

from gateway.config import ConfigError, GatewayConfig, load_config
from observability.cost import CostModel, price_map_for
from policies.catalog import Catalog, Screen
from policies.engine import Router
from policies.loader import PolicySet, load_policies


@dataclass
class Workspace:
    """Policy files with the config that gives them meaning (targets, tenants), when there is one."""

    config: GatewayConfig | None
    files: list[Path]

    def load(self) -> tuple[Router, PolicySet, Screen | None]:
        """Raises ConfigError when a policy file is invalid."""
        targets = self.config.targets if self.config else None
        policies = load_policies(self.files, targets.keys() if targets else None, os.environ)
        if self.config is None:
            names = sorted({n for r in policies.routes for n in [*(s if isinstance(s, str) else s.target for s in r.send), *r.fallback]})
            return Router(policies.routes, names), policies, None
        catalog = Catalog(self.config.targets, price_map_for(self.config.targets))
        screen = Screen(catalog, self.config.tenants)
        return Router(policies.routes, self.config.targets.keys(), catalog=catalog), policies, screen


def _config(config_path: str | None) -> GatewayConfig | None | int:
    path = config_path or os.environ.get("SWITCHYARD_CONFIG")
    if not path:
        return None
    try:
        return load_config(path, os.environ)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2


def _workspace(given: list[str], config_path: str | None) -> Workspace | int:
    """The files named on the command line, else the config's policy files in their order."""
    config = _config(config_path)
    if isinstance(config, int):
        return config
    if given:
        return Workspace(config, [Path(f) for f in given])
    if config is None:
        print("name policy files, or give --config (or $SWITCHYARD_CONFIG) to use the config's", file=sys.stderr)
        return 2
    base = Path(config_path or os.environ["SWITCHYARD_CONFIG"]).parent
    return Workspace(config, [base / p for p in config.policies])


def _loaded(given: list[str], config_path: str | None) -> tuple[Router, PolicySet, Screen | None] | int:
    """The compiled policy, or the exit code after printing why it could not be loaded."""
    workspace = _workspace(given, config_path)
    if isinstance(workspace, int):
        return workspace
    try:
        return workspace.load()
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2


def check(args: argparse.Namespace) -> int:
    from policies.tools import check as check_files

    workspace = _workspace(args.files, args.config)
    if isinstance(workspace, int):
        return workspace
    targets = workspace.config.targets.keys() if workspace.config else None
    report = check_files(workspace.files, targets, os.environ)
    print(report.text(), file=sys.stdout if report.ok else sys.stderr)
    return 0 if report.ok else 1


def explain(args: argparse.Namespace) -> int:
    from policies.tools import explain as explain_request
    from policies.tools import facts_for, safety_of

    try:
        raw = sys.stdin.buffer.read() if args.request == "-" else Path(args.request).read_bytes()
        request = orjson.loads(raw)
    except (OSError, orjson.JSONDecodeError) as exc:
        print(f"{args.request}: cannot read the request as JSON: {exc}", file=sys.stderr)
        return 2
    if not isinstance(request, dict):
        print(f"{args.request}: the request must be a JSON object", file=sys.stderr)
        return 2
    headers = dict(h.split(":", 1) for h in args.header if ":" in h)
    loaded = _loaded(args.policy or [], args.config)
    if isinstance(loaded, int):
        return loaded
    router, policies, screen = loaded
    facts = facts_for(request, args.tenant, args.endpoint, headers, safety_of(policies))
    report = explain_request(router, policies, facts, screen)
    print(report.text())
    return 0 if report.ok else 1


def test(args: argparse.Namespace) -> int:
    from policies.tools import run_tests

    loaded = _loaded(args.files, args.config)
    if isinstance(loaded, int):
        return loaded
    router, policies, _ = loaded
    report = run_tests(router, policies)
    print(report.text())
    return 0 if report.ok else 1


def catalog(args: argparse.Namespace) -> int:
    config = _config(args.config)
    if config is None:
        print("catalog needs --config (or $SWITCHYARD_CONFIG)", file=sys.stderr)
        return 2
    if isinstance(config, int):
        return config
    price_map = price_map_for(config.targets)
    profiles = Catalog(config.targets, price_map).profiles
    costs = CostModel(config.targets, price_map)
    rows = []
    for name, profile in profiles.items():
        rate = costs.rate(name)
        rows.append({
            "target": name,
            **profile.as_json(),
            "input_usd_per_mtok": round(rate.input_per_token * 1e6, 6) if rate.source != "unknown" else None,
            "output_usd_per_mtok": round(rate.output_per_token * 1e6, 6) if rate.source != "unknown" else None,
        })
    if args.json:
        print(orjson.dumps(rows, option=orjson.OPT_INDENT_2).decode())
        return 0
    columns = ["target", "kind", "openness", "license", "residency", "data_retention", "input_usd_per_mtok", "output_usd_per_mtok", "context_window", "capabilities"]
    table = [columns] + [[_cell(row[c]) for c in columns] for row in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(columns))]
    for line in table:
        print("  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip())
    return 0


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, list):
        return ",".join(value) or "-"
    return str(value)
