"""The `switchyard` command line."""

from __future__ import annotations

import argparse
import os
import sys

import orjson

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

    keys = commands.add_parser("keys", help="API keys").add_subparsers()
    new = keys.add_parser("new", help="make a new API key; prints it once with the hash for config")
    new.add_argument("--tenant", default="my-tenant", help="tenant name for the config snippet")
    new.set_defaults(run=_keys_new)
    return parser


def _serve(args: argparse.Namespace) -> int:
    from gateway.server import serve

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
        f"{len(settings.routes)} routes from {len(config.policies)} policy files)"
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
