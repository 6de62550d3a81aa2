"""Config loading: typed validation with errors that name file, line and field."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.config import ConfigError, load_config
from gateway.settings import load_settings
from policies.loader import load_policies

ROOT = Path(__file__).resolve().parent.parent
HASH = "sha256:" + "a" * 64


def write(tmp_path: Path, text: str, name: str = "config.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def problems(path: Path, env: dict | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_settings(path, env or {})
    return [str(p) for p in info.value.problems]


def test_errors_name_file_line_and_field(tmp_path):
    path = write(tmp_path, "server:\n  port: 99999\ntargets:\n  a: {adapter: openai, model: x}\n  b: {adapter: nope}\nfoo: 1\n")
    assert problems(path) == [
        f"{path}:2: server.port: Input should be less than or equal to 65535",
        f"{path}:4: targets.a: base_url is required for adapter openai",
        f"{path}:5: targets.b.adapter: Input should be 'openai', 'litellm' or 'echo'",
        f"{path}:6: foo: Extra inputs are not permitted",
    ]


def test_env_interpolation_with_default_and_missing_variable(tmp_path):
    text = "targets:\n  a: {adapter: openai, base_url: '${URL:-http://127.0.0.1:9/v1}', model: m, api_key: '${KEY}'}\n"
    path = write(tmp_path, text)
    config = load_config(path, {"KEY": "secret"})
    assert config.targets["a"].api_key == "secret" and config.targets["a"].base_url == "http://127.0.0.1:9/v1"
    assert "secret" not in repr(config.targets["a"]), "api keys must not show in reprs (and so in logs)"
    assert problems(path) == [f"{path}:2: targets.a.api_key: environment variable KEY is not set"]


def test_yaml_pitfalls_are_caught(tmp_path):
    assert problems(write(tmp_path, "targets: {}\ntargets: {}\n")) == [f"{tmp_path}/config.yaml:2: targets: duplicate key"]
    assert problems(write(tmp_path, "targets: [\n")) == [
        f"{tmp_path}/config.yaml:2: invalid YAML: expected the node content, but found '<stream end>'"
    ]
    assert problems(write(tmp_path, "- a\n")) == [f"{tmp_path}/config.yaml:1: the file must contain a mapping at the top level"]
    assert problems(tmp_path / "missing.yaml") == [f"{tmp_path}/missing.yaml: file not found"]


def test_yes_no_on_off_are_words_that_boolean_fields_still_read(tmp_path):
    """YAML 1.1 would make `prompt_injection: off` the boolean false, which no detector action is."""
    policy = write(tmp_path, "version: 1\nsafety:\n  abuse: {prompt_injection: off, secrets: off}\n  pii: {responses: off}\n", "p.yaml")
    config = load_config(write(tmp_path, "observability: {metrics: no}\npolicies: [p.yaml]\n"), {})
    assert config.observability.metrics is False
    assert load_config(write(tmp_path, "observability: {metrics: on}\n"), {}).observability.metrics is True
    safety = load_policies([policy], None, {}).safety
    assert safety is not None and safety.abuse is not None and safety.pii is not None
    assert (safety.abuse.prompt_injection, safety.abuse.secrets, safety.pii.responses) == ("off", "off", "off")


def test_keys_must_be_hashes_and_unique_per_tenant_and_models_must_exist(tmp_path):
    path = write(tmp_path, f"targets: {{echo: {{adapter: echo}}}}\ntenants:\n  t: {{keys: [plain-key], models: [echo]}}\n")
    assert problems(path) == [f"{path}:3: tenants.t.keys[0]: String should match pattern '^sha256:[0-9a-f]{{64}}$'"]
    path = write(tmp_path, f"targets: {{echo: {{adapter: echo}}}}\ntenants:\n  t: {{keys: ['{HASH}'], models: [echo]}}\n  u: {{keys: ['{HASH}'], models: [chta]}}\n")
    found = problems(path)
    assert found == [f"{path}:1: key hash is listed for both tenants 't' and 'u'"]
    path = write(tmp_path, f"targets: {{echo: {{adapter: echo}}}}\ntenants:\n  u: {{keys: ['{HASH}'], models: [chta]}}\n")
    assert problems(path) == [f"{path}: tenants.u.models[0]: unknown model 'chta': not a target or a route alias"]


def test_policy_errors_are_located_in_the_policy_file(tmp_path):
    write(tmp_path, "version: 1\nroutes:\n  - name: chat\n    when: {model: chat}\n    send: [gpt]\n    retry: {attempts: 0}\n", "p.yaml")
    path = write(tmp_path, "targets: {echo: {adapter: echo}}\npolicies: [p.yaml]\n")
    assert problems(path) == [
        f"{tmp_path}/p.yaml:6: routes[0].retry.attempts: Input should be greater than or equal to 1",
    ]
    write(tmp_path, "version: 1\nroutes:\n  - name: chat\n    when: {model: chat}\n    send: [gpt]\n", "p.yaml")
    assert problems(path) == [f"{tmp_path}/p.yaml:5: routes[0].send[0]: unknown target 'gpt'"]


def cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gateway", *args], cwd=cwd, capture_output=True, text=True, timeout=60)


def test_config_check_and_schema_commands(tmp_path):
    ok = cli("config", "check", "config.example.yaml")
    assert ok.returncode == 0 and "OK (5 targets, 2 tenants, 8 routes from 4 policy files)" in ok.stdout
    bad = cli("config", "check", str(write(tmp_path, "server: {port: x}\n")))
    assert bad.returncode == 1
    assert f"{tmp_path}/config.yaml:1: server.port: Input should be a valid integer" in bad.stderr
    schema = json.loads(cli("config", "schema").stdout)
    assert schema["title"] == "Switchyard gateway config" and "targets" in schema["properties"]


def test_keys_new_prints_a_key_whose_hash_it_prints(tmp_path):
    import hashlib

    out = cli("keys", "new", "--tenant", "bot").stdout
    key = out.split("key (shown once, give it to the client): ")[1].split()[0]
    key_hash = out.split("hash (put this in config): ")[1].split()[0]
    assert key_hash == "sha256:" + hashlib.sha256(key.encode()).hexdigest()
    assert len(key) > 40


def test_metrics_keys_must_be_hashes_and_the_old_redis_connections_field_is_named(tmp_path):
    path = write(tmp_path, "observability:\n  metrics_keys: [scraper-secret]\n")
    assert problems(path) == [f"{path}:2: observability.metrics_keys[0]: String should match pattern '^sha256:[0-9a-f]{{64}}$'"]
    assert load_config(write(tmp_path, f"observability: {{metrics_keys: ['{HASH}']}}\n"), {}).observability.metrics_keys == [HASH]
    # Renamed to redis_max_pipelines (the limits keep one connection): a config with the old name says which field.
    path = write(tmp_path, "state:\n  redis_max_connections: 16\n")
    assert problems(path) == [f"{path}:2: state.redis_max_connections: Extra inputs are not permitted"]
    path = write(tmp_path, "state:\n  redis_max_pipelines: 0\n")
    assert problems(path) == [f"{path}:2: state.redis_max_pipelines: Input should be greater than or equal to 1"]
