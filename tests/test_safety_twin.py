"""The PII scan's shortcuts must not change what it finds: ASCII twins of digit patterns, the long-run gate
for phone numbers, card numbers and SSNs, and the secrets scan's one-character gates."""

from __future__ import annotations

import random
import sys
from pathlib import Path

import pytest

from gateway.safety.pii import PiiScanner
from gateway.safety.recognizers import LONG_RUN, LONG_RUN_ENTITIES
from gateway.safety.secrets import _GATED, _MUST_CONTAIN
from gateway.safety.twin import Twin, ascii_digits

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
from safety_data import ENTITIES, pii_samples  # noqa: E402


@pytest.mark.parametrize(
    ("pattern", "spelled"),
    [
        (r"\d{3}-\d", r"[0-9]{3}-[0-9]"),
        (r"[\d:]x", r"[0-9:]x"),
        (r"[^\d]\D", r"[^0-9][^0-9]"),
        (r"[]\d]", r"[]0-9]"),  # a "]" first in a set is a member, not its end
        (r"\\d", r"\\d"),  # an escaped backslash, then a letter d
        (r"[\D]", r"[\D]"),  # no plain spelling for a non-digit inside a set: left alone
        (r"[[:digit:]]\d", r"[[:digit:]]\d"),  # POSIX classes: left alone
        (r"(?x) \d # \d", r"(?x) \d # \d"),  # verbose mode: left alone
    ],
)
def test_ascii_digits_spells_digit_classes_as_ranges(pattern, spelled):
    assert ascii_digits(pattern) == spelled


def test_twins_match_the_same_on_ascii_text():
    scanner = PiiScanner(list(ENTITIES), 0.4)
    twins = [LONG_RUN] + [t for r in scanner._runners for t in (r.trigger, r.probe) if t is not None]
    twins += [twin for r in scanner._runners for _, twin, _, _ in getattr(r, "_patterns", ())]
    assert any(t.ascii is not t.unicode for t in twins)
    rng = random.Random(3)
    texts = [t for t, _ in pii_samples(200, seed=13)]
    texts += ["".join(rng.choice("0123456789 -.:()/+abAB@x\n") for _ in range(120)) for _ in range(200)]
    for twin in twins:
        for text in texts:
            assert [m.span() for m in twin.ascii.finditer(text)] == [m.span() for m in twin.unicode.finditer(text)], twin.unicode.pattern


def test_non_ascii_text_uses_the_pattern_as_written():
    twin = Twin(r"\d+")
    assert twin.on("١٢٣ and 45") is twin.unicode and twin.unicode.findall("١٢٣ and 45") == ["١٢٣", "45"]
    assert twin.on("123 and 45") is twin.ascii


def test_every_phone_card_and_ssn_finding_lies_in_a_long_run():
    """The gate: a text without a LONG_RUN skips those recognizers, so it must hold every value they find."""
    scanner = PiiScanner(list(ENTITIES), 0.4)
    checked = 0
    for text, _ in pii_samples(400, seed=21):
        runs = [m.span() for m in LONG_RUN.unicode.finditer(text)]
        for finding in scanner.analyze(text):
            if finding.entity in LONG_RUN_ENTITIES:
                checked += 1
                # (a phone number may start with "(" or "+" and end with an extension, outside the run of digits)
                assert any(a < finding.end and finding.start < b for a, b in runs), text[finding.start : finding.end]
    assert checked > 100
    assert scanner.analyze("Mail jordan.reyes@northwind-corp.com, ref 12345.")  # gated off, the email is still found


def test_each_secret_literal_sits_behind_a_character_it_contains():
    gated = {needle: gate for gate, needles in _GATED for needle in needles}
    assert gated.keys() == {n for needles in _MUST_CONTAIN.values() for n in needles}
    assert all(gate in needle for needle, gate in gated.items())
