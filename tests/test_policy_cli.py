"""`switchyard policy check | explain | test`, run as the real command."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "gateway", "policy", *args], cwd=ROOT, input=stdin, capture_output=True, text=True, timeout=60
    )


def write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_shipped_examples_pass_check_and_their_own_tests():
    check = cli("check", "--config", "config.example.yaml")
    assert check.returncode == 0, check.stderr
    assert check.stdout.strip() == "OK: 8 routes, 8 tests in 4 files"
    tests = cli("test", "--config", "config.example.yaml")
    assert tests.returncode == 0, tests.stdout
    assert tests.stdout.strip().endswith("8 passed, 0 failed")


def test_check_reports_schema_target_and_shadowing_problems(tmp_path):
    bad = write(tmp_path, "bad.yaml", "version: 2\nroutes:\n  - name: x\n    send: []\n")
    result = cli("check", bad)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"{bad}:1: version: Input should be 1",
        f"{bad}:3: routes[0]: a route needs `send` targets or a `deny` message",
    ]
    config = write(tmp_path, "config.yaml", "targets: {a: {adapter: echo}, b: {adapter: echo}}\n")
    shadowed = write(
        tmp_path,
        "shadow.yaml",
        "version: 1\nroutes:\n"
        "  - {name: all-chat, when: {model: [chat, chat2]}, send: [a]}\n"
        "  - {name: vip-chat, when: {model: chat, tenant: vip}, send: [b]}\n"
        "  - {name: typo, when: {model: other}, send: [c], fallback: [b, b]}\n",
    )
    result = cli("check", "--config", config, shadowed)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [f"{shadowed}:5: routes[2].send[0]: unknown target 'c'"]
    fixed = Path(shadowed).read_text().replace("send: [c]", "send: [a]")
    Path(shadowed).write_text(fixed)
    result = cli("check", "--config", config, shadowed)
    assert result.stderr.splitlines() == [
        f"{shadowed}:4: routes[1]: route 'vip-chat' is never reached: route 'all-chat' ({shadowed}:3) matches every request it would",
        f"{shadowed}:5: routes[2].fallback: 'b' is listed twice",
    ]


def test_explain_shows_why_earlier_routes_missed_and_the_chain(tmp_path):
    request = json.dumps({"model": "chat", "messages": [{"role": "user", "content": "hello"}]})
    result = cli("explain", "--config", "config.example.yaml", "--request", "-", "--tenant", "support-bot", stdin=request)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "request: model 'chat', tenant 'support-bot', endpoint chat, stream false, ~2 prompt tokens"
    assert lines[1] == "  skip  interns-in-house-only (policies/examples/tenant-deny-external.yaml:4): tenant is 'support-bot', not one of ['interns']"
    assert lines[2] == "  skip  beta-team-canary (policies/examples/tenant-deny-external.yaml:7): header x-team is (absent), not one of ['beta']"
    assert "  match chat (policies/examples/closed-primary-selfhosted-fallback.yaml:4)" in lines
    assert "    if gpt-4o is picked: gpt-4o → claude-sonnet → llama-local" in lines
    unknown = cli("explain", "--config", "config.example.yaml", "--request", "-", stdin=json.dumps({"model": "nope"}))
    assert unknown.returncode == 1
    assert unknown.stdout.splitlines()[-1] == "  no route matches and 'nope' is not a target: the client gets 404 model_not_found"
    broken = cli("explain", "--config", "config.example.yaml", "--request", "-", stdin="{not json")
    assert broken.returncode == 2 and "-: cannot read the request as JSON" in broken.stderr


def test_policy_tests_fail_with_a_located_message(tmp_path):
    policy = write(
        tmp_path,
        "p.yaml",
        "version: 1\nroutes:\n  - {name: chat, when: {model: chat}, send: [a], fallback: [b]}\n"
        "tests:\n"
        "  - name: right\n    request: {model: chat}\n    expect: {route: chat, target: a, fallback: [b]}\n"
        "  - name: wrong target\n    request: {model: chat}\n    expect: {target: b}\n"
        "  - name: unknown model\n    request: {model: zzz}\n    expect: {status: 404}\n",
    )
    result = cli("test", policy)
    assert result.returncode == 1
    assert result.stdout.splitlines() == [
        "PASS right",
        f"FAIL wrong target ({policy}:8): expected target 'b', but route 'chat' sends to ['a']",
        "PASS unknown model",
        "2 passed, 1 failed",
    ]
