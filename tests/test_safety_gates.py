"""The shortcuts that decide where a recognizer runs must never lose a match: the gates (pii.GATES) match
wherever the trigger and the probe both do, and the IBAN runner's start-only scan finds what `finditer` finds."""

from __future__ import annotations

import random
import sys
from pathlib import Path

import pytest

from gateway.safety.pii import PiiScanner

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
from safety_data import ENTITIES, pii_samples  # noqa: E402


@pytest.fixture(scope="module")
def scanner() -> PiiScanner:
    return PiiScanner(list(ENTITIES), 0.4)


def _texts() -> list[str]:
    rng = random.Random(17)
    texts = [t for t, _ in pii_samples(400, seed=19)]
    for alphabet in ("0123456789 -.", "0123456789 -./:()+x", "0123456789٣٤ -.", "ABDEGKabde0123456789 -"):
        texts += ["".join(rng.choice(alphabet) for _ in range(rng.randint(5, 80))) for _ in range(1500)]
    return texts


def test_a_gate_matches_wherever_trigger_and_probe_do(scanner):
    gated = [r for r in scanner._runners if r.gate is not None]
    assert {r.entities[0] for r in gated} >= {"CREDIT_CARD", "US_SSN", "IBAN_CODE"}
    opened = 0
    for text in _texts():
        for runner in gated:
            for kind in ("ascii", "unicode") if text.isascii() else ("unicode",):
                trigger, probe, gate = (getattr(t, kind) for t in (runner.trigger, runner.probe, runner.gate))
                if trigger.search(text) and probe.search(text):
                    opened += 1
                    assert gate.search(text), (runner.entities, text)
    assert opened > 1000


def test_gate_twins_match_the_same_on_ascii_text(scanner):
    for runner in scanner._runners:
        if runner.gate is not None:
            for text in _texts():
                if text.isascii():
                    assert [m.span() for m in runner.gate.ascii.finditer(text)] == [m.span() for m in runner.gate.unicode.finditer(text)]


def test_iban_start_scan_finds_what_finditer_finds(scanner):
    (runner,) = [r for r in scanner._runners if r.entities == ["IBAN_CODE"]]
    assert runner._from_heads
    rng = random.Random(23)
    texts = ["".join(rng.choice("ABDEGXabſK0123456789 -") for _ in range(rng.randint(5, 90))) for _ in range(4000)]
    texts += ["pay DE89 3704 0044 0532 0130 00 or GB82WEST12345698765432, de89370400440532013000 ok"]
    found = 0
    for text in texts:
        cut = rng.randint(0, len(text))  # (a window may start inside an IBAN: its letters are not in it)
        for windows in ([(0, len(text))], [(cut, len(text))], [(0, cut), (min(cut + 1, len(text)), len(text))]):
            by_heads = [(base, m.span(), m.groups()) for base, m in runner._from_heads_matches(text, windows)]
            assert by_heads == [(base, m.span(), m.groups()) for base, m in runner._matches(text, windows, None)], (text, windows)
            found += len(by_heads)
    assert found > 100
