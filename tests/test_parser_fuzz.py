"""Config and policy files from hostile or careless hands: whatever the text, loading it either works or raises
ConfigError whose every problem names the file (and the field, when there is one) — never another exception,
never a hang.

`make test` runs a few hundred deterministic examples; `make fuzz` many random ones.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from fakes.fuzzing import fuzz_settings
from fakes.keys import make_key
from gateway.config import ConfigError, load_config
from gateway.settings import load_settings
from gateway.yamlsource import MAX_DEPTH, MAX_VALUES, SourceError
from policies.loader import load_policies

_, KEY_HASH = make_key("acme")
ENV = {"UPSTREAM_KEY": "sk-test"}

CONFIG: dict[str, Any] = {
    "server": {"port": 8080, "max_body_bytes": 4096, "client_timeout_s": 10, "drain_grace_s": 1},
    "state": {"on_redis_error": "fail_open", "redis_timeout_s": 0.5},
    "targets": {
        "echo": {"adapter": "echo"},
        "gpt": {
            "adapter": "openai", "base_url": "http://127.0.0.1:9/v1", "model": "gpt-4o", "api_key": "${UPSTREAM_KEY}",
            "price": {"input_per_mtok": 1, "output_per_mtok": 2}, "headers": {"x-team": "a"}, "capabilities": ["tools"],
        },
    },
    "tenants": {
        "acme": {
            "keys": [KEY_HASH, {"hash": "sha256:" + "1" * 64, "name": "ci", "limits": {"requests_per_minute": 5}}],
            "models": ["echo", "smart"],
            "limits": {"tokens_per_minute": 1000, "usd_per_day": 2.5},
            "require": {"residency": "eu"},
        }
    },
    "policies": ["policy.yaml"],
    "observability": {"metrics": True, "tracing": {"sample_ratio": 0.5}},
}

POLICY: dict[str, Any] = {
    "version": 1,
    "routes": [
        {
            "name": "smart",
            "when": {
                "model": "smart",
                "header": {"x-tier": ["gold", "silver"]},
                "metadata": {"team": "a"},
                "est_prompt_tokens": {"gt": 10},
                "any": [{"stream": True}, {"not": {"tenant": "acme"}}],
            },
            "send": [{"target": "gpt", "weight": 3}, "echo"],
            "fallback": ["echo"],
            "retry": {"attempts": 2, "on": [429, "5xx"]},
            "timeout_s": 10,
            "limits_per_tenant": {"concurrent_requests": 2},
        },
        {"name": "blocked", "when": {"model": "blocked"}, "deny": "no"},
    ],
    "circuit_breaker": {"consecutive_failures": 3},
    "safety": {"pii": {"entities": ["EMAIL_ADDRESS"], "action": "redact"}, "abuse": {"prompt_injection": "flag"}},
    "tests": [{"name": "t1", "request": {"model": "smart", "messages": [{"role": "user", "content": "hi"}]}, "expect": {"route": "smart"}}],
}

# Values a careless edit or a hostile file puts where something else belongs.
JUNK = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**40), max_value=10**40)
    | st.floats()
    | st.text(max_size=30)
    | st.sampled_from(["", "*", "${NOT_SET}", "${X:-}", "sha256:", "5xx", "-1", "1e309", "http://", "\u202e", "échö", "🙂" * 40]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)

# Pieces of YAML syntax, put together at random: anchors, aliases, tags, flow and block collections, env references.
YAML_PIECES = st.sampled_from([
    "server:", "targets:", "tenants:", "routes:", "version: 1", "echo:", "adapter: echo", "- ", "  ", "\n", "\t",
    "{", "}", "[", "]", ",", ":", "&a ", "*a", "<<: *a", "!!str ", "!!binary ", "!!python/object:os.system ", "!x ",
    "? ", "|", ">-", "'", '"', "#", "~", "null", "true", ".nan", "1e999", "0x1F", "2020-01-01", "${HOME}", "${A:-b}",
    "---", "...", "%YAML 1.1", "\u00e9", "\u0000", "\ufeff", "9" * 40,
])


def mutations(document: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    """`document` with one of its values replaced, renamed, dropped, or joined by an unknown key."""

    @st.composite
    def mutate(draw: st.DrawFn) -> dict[str, Any]:
        mutated = copy.deepcopy(document)
        parent: Any = mutated
        while True:
            keys = list(parent) if isinstance(parent, dict) else list(range(len(parent)))
            key = draw(st.sampled_from(keys))
            child = parent[key]
            if isinstance(child, (dict, list)) and child and draw(st.booleans()):
                parent = child
                continue
            break
        action = draw(st.sampled_from(["replace", "rename", "drop", "add", "wrap", "stringify"]))
        if action == "rename" and isinstance(parent, dict):
            parent[draw(st.text(max_size=12))] = parent.pop(key)
        elif action == "replace":
            parent[key] = draw(JUNK)
        elif action == "drop":
            del parent[key]
        elif action == "add" and isinstance(parent, dict):
            parent[draw(st.text(min_size=1, max_size=12))] = draw(JUNK)
        elif action == "wrap":
            parent[key] = [parent[key]]
        else:
            parent[key] = str(parent[key])
        return mutated

    return mutate()


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("parser-fuzz")


def assert_loads_or_names_the_problem(load: Any, files: set[str], located: bool = True) -> None:
    try:
        load()
    except ConfigError as error:
        assert error.problems
        for problem in error.problems:
            assert isinstance(problem, SourceError) and problem.message.strip()
            # A policy file the config lists but that cannot be read (`policies: [""]`) is named as listed.
            unreadable = problem.message.startswith(("file not found", "cannot read file"))
            assert (problem.file in files or unreadable) and str(problem).startswith(problem.file), str(problem)
            if located and not unreadable:  # a file that parsed: each problem has a line, a field path, or both
                assert problem.line is not None or problem.path, str(problem)


def write(path: Path, content: Any) -> str:
    path.write_text(content if isinstance(content, str) else yaml.safe_dump(content, allow_unicode=True, sort_keys=False))
    return str(path)


def test_the_documents_mutated_here_are_valid(workdir):
    write(workdir / "policy.yaml", POLICY)
    settings = load_settings(write(workdir / "config.yaml", CONFIG), ENV)
    assert [route.name for route in settings.policies.routes] == ["smart", "blocked"]


@fuzz_settings(short=40, long=5_000)
@given(config=mutations(CONFIG))
def test_a_mutated_config_loads_or_names_file_and_field(workdir, config):
    policy = write(workdir / "policy.yaml", POLICY)
    path = write(workdir / "config.yaml", config)
    assert_loads_or_names_the_problem(lambda: load_settings(path, ENV), {path, policy})


@fuzz_settings(short=40, long=5_000)
@given(policy=mutations(POLICY))
def test_a_mutated_policy_loads_or_names_file_and_field(workdir, policy):
    policy_path = write(workdir / "policy.yaml", policy)
    path = write(workdir / "config.yaml", CONFIG)
    assert_loads_or_names_the_problem(lambda: load_settings(path, ENV), {path, policy_path})


@fuzz_settings(short=150, long=20_000)
@given(text=st.lists(YAML_PIECES, max_size=40).map("".join) | st.text(max_size=200))
def test_yaml_ish_text_loads_or_names_the_file(workdir, text):
    path = write(workdir / "fuzz.yaml", text)
    assert_loads_or_names_the_problem(lambda: load_config(path, ENV), {path}, located=False)
    assert_loads_or_names_the_problem(lambda: load_policies([Path(path)], None, ENV), {path}, located=False)


@fuzz_settings(short=50, long=5_000)
@given(raw=st.binary(max_size=200))
def test_arbitrary_bytes_load_or_name_the_file(workdir, raw):
    path = workdir / "bytes.yaml"
    path.write_bytes(raw)
    assert_loads_or_names_the_problem(lambda: load_config(path, ENV), {str(path)}, located=False)


def laughs(levels: int) -> str:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, levels)]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("server: &s {host: *s}\n", "a YAML alias refers to a value that contains it"),
        ("targets: &t [*t]\n", "a YAML alias refers to a value that contains it"),
        (laughs(9), f"the document expands to more than {MAX_VALUES} values"),
        ("server: " + "[" * 100 + "]" * 100 + "\n", f"nested deeper than {MAX_DEPTH} levels"),
        ("server: " + "{a: " * 5000 + "1" + "}" * 5000 + "\n", f"nested deeper than {MAX_DEPTH} levels"),
    ],
    ids=["alias-cycle-mapping", "alias-cycle-list", "billion-laughs", "deep", "deeper-than-the-stack"],
)
def test_alias_bombs_cycles_and_deep_nesting_are_config_errors(workdir, text, message):
    path = write(workdir / "bomb.yaml", text)
    with pytest.raises(ConfigError) as raised:
        load_config(path, ENV)
    assert message in str(raised.value) and str(raised.value).startswith(path)


def test_anchors_and_aliases_still_work(workdir):
    text = "targets:\n  a: &echo {adapter: echo}\n  b: *echo\n"
    assert set(load_config(write(workdir / "aliases.yaml", text), ENV).targets) == {"a", "b"}


@pytest.mark.parametrize(
    ("where", "headers", "message"),
    [
        ("policy", {"日本": "x"}, "routes[0].when.header.日本"),
        ("policy", {"x-tier": "gold\u2028"}, "cannot be sent in an HTTP header"),
        ("policy", {"x tier": "gold"}, "routes[0].when.header.x tier"),
        ("config", {"x-team": "a\r\nx-injected: 1"}, "targets.gpt.headers.x-team"),
        ("config", {"x-team": "ünïcödé ok, 日本 not"}, "targets.gpt.headers.x-team"),
    ],
)
def test_header_names_and_values_that_http_cannot_carry_are_config_errors(workdir, where, headers, message):
    # Found by the fuzzer: the router encodes header conditions as Latin-1 when it compiles a policy, which
    # raised UnicodeEncodeError at start-up; a target's extra headers failed only on the first request.
    config, policy = copy.deepcopy(CONFIG), copy.deepcopy(POLICY)
    if where == "policy":
        policy["routes"][0]["when"]["header"] = headers
    else:
        config["targets"]["gpt"]["headers"] = headers
    write(workdir / "policy.yaml", policy)
    path = write(workdir / "config.yaml", config)
    with pytest.raises(ConfigError) as raised:
        load_settings(path, ENV)
    assert message in str(raised.value)
