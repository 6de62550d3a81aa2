"""The supply chain, offline: what `make audit` (pip-audit against PyPI's advisories) cannot check here.

Every dependency is pinned to one version with hashes, the project's own pins agree with the locks, the
runtime lock is a subset of the dev lock at the same versions, and no release known to be malicious is pinned.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LOCKS = ("requirements.lock", "requirements-dev.lock", "requirements-build.lock")
# Releases pulled from PyPI as malicious; a lock must never pin them again.
KNOWN_MALICIOUS = {("litellm", "1.82.7"), ("litellm", "1.82.8")}
_PIN = re.compile(r"^([A-Za-z0-9_.\-]+)==([^\s\\;]+)")


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def read_lock(path: Path) -> dict[str, tuple[str, int]]:
    """package → (version, number of hashes), from pip-compile's output."""
    name = path.name
    pins: dict[str, tuple[str, int]] = {}
    current: str | None = None
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.startswith("--hash=sha256:"):
            assert current is not None, f"{name}: a hash before any requirement"
            assert re.fullmatch(r"--hash=sha256:[0-9a-f]{64}( \\)?", stripped), f"{name}: malformed hash line {stripped!r}"
            version, hashes = pins[current]
            pins[current] = (version, hashes + 1)
            continue
        match = _PIN.match(stripped)
        assert match, f"{name}: {stripped!r} is not pinned with =="
        current = _normal(match.group(1))
        assert current not in pins, f"{name}: {current} pinned twice"
        pins[current] = (match.group(2), 0)
    return pins


def problems(pins: dict[str, tuple[str, int]]) -> list[str]:
    unhashed = [f"{name} has no hash" for name, (_, hashes) in pins.items() if hashes == 0]
    malicious = [f"{name}=={version} is a known malicious release" for name, (version, _) in pins.items()
                 if (name, version) in KNOWN_MALICIOUS]
    return unhashed + malicious


@pytest.mark.parametrize("lock", LOCKS)
def test_every_requirement_is_pinned_exactly_with_hashes(lock):
    pins = read_lock(ROOT / lock)
    assert pins and problems(pins) == []


def test_the_checks_catch_a_malicious_or_unhashed_pin(tmp_path):
    bad = tmp_path / "requirements.lock"
    bad.write_text("litellm==1.82.8 \\\n    --hash=sha256:" + "0" * 64 + "\norjson==3.13.0\n")
    assert problems(read_lock(bad)) == ["orjson has no hash", "litellm==1.82.8 is a known malicious release"]
    bad.write_text("litellm>=1.82\n")
    with pytest.raises(AssertionError, match="not pinned"):
        read_lock(bad)


def test_the_project_pins_agree_with_the_locks():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    runtime, dev = read_lock(ROOT / "requirements.lock"), read_lock(ROOT / "requirements-dev.lock")

    def pinned(requirements: list[str]) -> dict[str, str]:
        found = {}
        for requirement in requirements:
            match = re.fullmatch(r"([A-Za-z0-9_.\-]+)(?:\[[^\]]*\])?==(\S+)", requirement)
            assert match, f"pyproject.toml: {requirement!r} is not pinned exactly"
            found[_normal(match.group(1))] = match.group(2)
        return found

    for name, version in pinned(project["dependencies"]).items():
        assert runtime[name][0] == version, f"{name}: pyproject {version}, requirements.lock {runtime[name][0]}"
    for name, version in pinned(project["optional-dependencies"]["dev"]).items():
        assert dev[name][0] == version, f"{name}: pyproject {version}, requirements-dev.lock {dev[name][0]}"
    # The dev venv is the runtime one plus tools: the same versions of everything the gateway runs on.
    moved = {name: (version, dev.get(name, ("missing", 0))[0]) for name, (version, _) in runtime.items()
             if dev.get(name, ("missing", 0))[0] != version}
    assert moved == {}
