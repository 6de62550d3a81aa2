"""The `switchyard` command line."""

from __future__ import annotations

import argparse
import os
import sys

import orjson

from gateway import cli_policy as policy_commands
from gateway.config import ConfigError, config_schema
from gateway.settings import DEMO_KEY, demo_settings, load_settings


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "run"):
        parser.print_help()
        return 2
    return args.run(args)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="switchyard", description="Switchyard LLM gateway")
    commands = parser.add_subparsers(title="commands")

    serve = commands.add_parser("serve", help="run the gateway")
    serve.add_argument("--config", help="config file (default: $SWITCHYARD_CONFIG, else a zero-config demo)")
    serve.add_argument("--host", help="bind address (default: from config, else 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default: from config, else 8080)")
    serve.add_argument("--workers", type=int, help="worker processes (default: from config, else 1)")
    serve.set_defaults(run=_serve)

    config = commands.add_parser("config", help="check a config file or print its JSON Schema").add_subparsers()
    check = config.add_parser("check", help="validate a config file and the policy files it names")
    check.add_argument("file")
    check.set_defaults(run=_config_check)
    config.add_parser("schema", help="print the config JSON Schema").set_defaults(run=_config_schema)

    policy = commands.add_parser("policy", help="check, explain and test routing policy files").add_subparsers()
    pcheck = policy.add_parser("check", help="validate policy files (schema, targets, shadowed routes)")
    pcheck.add_argument("files", nargs="*", help="policy files, in order (default: the config's `policies`)")
    pcheck.add_argument("--config", help="gateway config, to check target names (default: $SWITCHYARD_CONFIG)")
    pcheck.set_defaults(run=policy_commands.check)
    pexplain = policy.add_parser("explain", help="show which route a request takes, and why")
    pexplain.add_argument("--request", required=True, help="a JSON request body file ('-' for stdin)")
    pexplain.add_argument("--tenant", default="", help="the calling tenant")
    pexplain.add_argument("--endpoint", default="chat", choices=["chat", "completion", "embedding"])
    pexplain.add_argument("--header", action="append", default=[], metavar="NAME:VALUE", help="a request header")
    pexplain.add_argument("--config", help="gateway config (default: $SWITCHYARD_CONFIG)")
    pexplain.add_argument("--policy", nargs="+", help="policy files to use instead of the config's")
    pexplain.set_defaults(run=policy_commands.explain)
    ptest = policy.add_parser("test", help="run the `tests:` written in policy files")
    ptest.add_argument("files", nargs="*", help="policy files, in order (default: the config's `policies`)")
    ptest.add_argument("--config", help="gateway config, for target names (default: $SWITCHYARD_CONFIG)")
    ptest.set_defaults(run=policy_commands.test)
    catalog = commands.add_parser("catalog", help="print the targets' metadata: kind, openness, license, prices…")
    catalog.add_argument("--config", help="gateway config (default: $SWITCHYARD_CONFIG)")
    catalog.add_argument("--json", action="store_true", help="JSON instead of a table")
    catalog.set_defaults(run=policy_commands.catalog)

    keys = commands.add_parser("keys", help="API keys").add_subparsers()
    new = keys.add_parser("new", help="make a new API key; prints it once with the hash for config")
    new.add_argument("--tenant", default="my-tenant", help="tenant name for the config snippet")
    new.set_defaults(run=_keys_new)
    return parser


def _serve(args: argparse.Namespace) -> int:
    from gateway.server import serve
    from observability.settings import worker_metrics_dir

    path = args.config or os.environ.get("SWITCHYARD_CONFIG")
    if path:
        try:
            settings = load_settings(path, os.environ)
        except ConfigError as exc:
            print(f"switchyard: config rejected:\n{exc}", file=sys.stderr)
            return 2
        server = settings.config.server
        host, port, workers = args.host or server.host, args.port or server.port, args.workers or server.workers
    else:
        host, port, workers = args.host or "127.0.0.1", args.port or 8080, args.workers or 1
        settings = demo_settings(host, port)
        print(
            "switchyard: no config given, serving the built-in echo target. Try:\n"
            f"  curl http://{host}:{port}/v1/chat/completions -H 'Authorization: Bearer {DEMO_KEY}' "
            "-H 'Content-Type: application/json' "
            """-d '{"model": "echo", "messages": [{"role": "user", "content": "hello"}]}'""",
            flush=True,
        )
    with worker_metrics_dir(workers, os.environ):  # before any worker process imports prometheus_client
        serve(settings, host, port, workers)
    return 0


def _config_check(args: argparse.Namespace) -> int:
    try:
        settings = load_settings(args.file, os.environ)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 1
    config = settings.config
    print(
        f"{args.file}: OK ({len(config.targets)} targets, {len(config.tenants)} tenants, "
        f"{len(settings.policies.routes)} routes from {len(config.policies)} policy files)"
    )
    return 0


def _config_schema(args: argparse.Namespace) -> int:
    sys.stdout.write(orjson.dumps(config_schema(), option=orjson.OPT_INDENT_2).decode() + "\n")
    return 0


def _keys_new(args: argparse.Namespace) -> int:
    from gateway.auth import new_key

    key, key_hash = new_key()
    print(f"key (shown once, give it to the client): {key}")
    print(f"hash (put this in config): {key_hash}")
    print(f"config snippet:\n  tenants:\n    {args.tenant}:\n      keys: [\"{key_hash}\"]")
    return 0

