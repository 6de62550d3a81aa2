"""Where the PII scan looks must cover every value its recognizers can match: the IP trigger's two patterns,
the start of a whole-text scan at the first gate, probe or LONG_RUN match, and the phone runner's runs of
at least seven digits, each held to the patterns it stands in for on generated text."""

from __future__ import annotations

import random

import pytest
import regex

from gateway.safety.pii import PiiScanner, _space_before
from gateway.safety.recognizers import _GROUP, _NOT_DIGIT, LONG_RUN, PhoneRunner
from gateway.safety.twin import AnyOf

ENTITIES = ["PHONE_NUMBER", "CREDIT_CARD", "US_SSN", "IBAN_CODE", "IP_ADDRESS", "EMAIL_ADDRESS"]


@pytest.fixture(scope="module")
def scanner() -> PiiScanner:
    return PiiScanner(ENTITIES, 0.4)


def _texts(seed: int, count: int) -> list[str]:
    """Token soup: IPv4 and IPv6 forms, times, card numbers, SSNs, IBAN-like and phone-like strings."""
    rng = random.Random(seed)

    def hexes() -> str:
        return "".join(rng.choice("0123456789abcdefABCDEF") for _ in range(rng.randint(1, 4)))

    def token() -> str:
        kind = rng.randrange(9)
        if kind == 0:
            return ".".join(str(rng.randint(0, 300)) for _ in range(rng.randint(3, 5)))
        if kind == 1:
            groups = [hexes() for _ in range(8)]
            cut = rng.randint(0, 7)
            return ":".join(groups[:cut]) + "::" + ":".join(groups[cut + rng.randint(0, 8 - cut) :])
        if kind == 2:
            tail = ".".join(str(rng.randint(0, 255)) for _ in range(4)) if rng.random() < 0.5 else hexes()
            return ":".join(hexes() for _ in range(rng.randint(1, 7))) + ":" + tail
        if kind == 3:
            return f"{rng.randint(0, 23):02}:{rng.randint(0, 59):02}:{rng.randint(0, 59):02}"
        if kind == 4:
            return rng.choice(["", "(", "+", "+("]) + "".join(rng.choice("0123456789 -./") for _ in range(rng.randint(3, 22)))
        if kind == 5:
            return rng.choice(["DE", "GB", "fr", "x"]) + "".join(rng.choice("0123456789 A") for _ in range(rng.randint(4, 30)))
        if kind == 6:
            return "".join(rng.choice("0123456789") for _ in range(rng.randint(1, 17)))
        return rng.choice(["ip", "ssn", "card", "call", "::", ":", "a.b", "word"])

    return [
        "".join(token() + rng.choice([" ", " ", "", ".", ",", ":", "-", "\n", "/"]) for _ in range(rng.randint(1, 12)))
        for _ in range(count)
    ]


def _runner(scanner: PiiScanner, entity: str):
    return next(r for r in scanner._runners if entity in r.entities)


def test_every_ip_match_holds_a_trigger_match(scanner):
    runner = _runner(scanner, "IP_ADDRESS")
    assert isinstance(runner.trigger.ascii, AnyOf)
    checked = 0
    for text in _texts(1, 3000):
        triggers = [m.span() for m in runner.trigger.on(text).finditer(text)]
        for _, twin, _, _ in runner._patterns:
            for match in twin.on(text).finditer(text):
                checked += 1
                assert any(a < match.end() and match.start() < b for a, b in triggers), (text, match.group())
    assert checked > 2000


def test_any_of_finds_what_the_alternation_finds():
    either = AnyOf((regex.compile(r"\d\.\d"), regex.compile(r"::")))
    alternation = regex.compile(r"\d\.\d|::")
    for text in _texts(2, 500):
        found = alternation.search(text)
        assert (either.search(text) is None) == (found is None)
        if found:
            assert either.search(text).start() == found.start()
        starts = [m.start() for m in either.finditer(text)]
        assert starts == sorted(starts) and {m.start() for m in alternation.finditer(text)} <= set(starts)


def test_whole_text_scans_start_before_every_match(scanner):
    """A gate's, probe's or LONG_RUN's first match: no pattern match starts before the whitespace ahead of it."""
    checked = 0
    for entity in ("CREDIT_CARD", "US_SSN", "IBAN_CODE"):
        runner = _runner(scanner, entity)
        gate = runner.gate or runner.probe
        for text in _texts(3, 3000):
            first = gate.ascii.search(text) if text.isascii() else None
            for _, twin, _, _ in runner._patterns:
                for match in twin.ascii.finditer(text) if first is not None else ():
                    checked += 1
                    assert match.start() > _space_before(text, first.start()), (entity, text, match.group())
    assert checked > 500


@pytest.mark.parametrize("entity", ["CREDIT_CARD", "US_SSN"])
def test_a_gate_matches_where_every_pattern_match_starts(scanner, entity):
    """Where `starts` is set the patterns are tried only at the gate's places (any text, ASCII or not)."""
    runner = _runner(scanner, entity)
    assert entity != "US_SSN" or runner.starts is runner.gate
    checked = 0
    for text in _texts(5, 3000) + [t.replace("1", "١") for t in _texts(6, 300)]:
        places = {m.start() for m in runner.gate.on(text).finditer(text, overlapped=True)}
        for _, twin, _, _ in runner._patterns:
            for match in twin.on(text).finditer(text):
                checked += 1
                assert match.start() in places, (text, match.group())
    assert checked > 200


def test_phone_runs_of_seven_digits_are_the_runs_filtered(scanner):
    runner: PhoneRunner = _runner(scanner, "PHONE_NUMBER")
    checked = 0
    for text in _texts(4, 3000):
        if not text.isascii():
            continue
        expected = []
        for match in _GROUP.unicode.finditer(text):
            group = match.group()
            digits = len(_NOT_DIGIT.sub("", group))
            if match.end() - match.start() >= runner._min_digits and digits >= runner._min_digits:
                expected.append((*match.span(), not group.isdigit()))
        assert list(runner._groups(text, 0, len(text))) == expected, text
        first = LONG_RUN.ascii.search(text)
        assert all(first is not None and start > _space_before(text, first.start()) for start, _, _ in expected)
        checked += len(expected)
    assert checked > 1000
