"""The PII scanner's shortcuts agree with the libraries they stand in for.

`safety.phones` replays python-phonenumbers' verdicts (parse, is_valid_number, the matcher's national
prefix rule) from its metadata; `IbanRunner` replays IbanRecognizer.analyze; `unbounded`/`required` read
regex patterns to skip timeouts and windows. Each is held to the original on many generated inputs.
"""

from __future__ import annotations

import random
import re

import pytest
from faker import Faker
from phonenumbers import NumberParseException, is_valid_number, parse
from phonenumbers.phonenumbermatcher import _is_national_prefix_present_if_required
from gateway.safety.presidio import IbanRecognizer

from gateway.safety.phones import NumberingPlans
from gateway.safety.recognizers import QUADRATIC_WINDOW, IbanRunner, required, untimed_window

REGIONS = ("US", "GB", "DE", "FR", "IL", "IN", "CA", "BR")
PREFIXES = ["", "", "", "0", "1", "00", "011", "44", "49", "33", "972", "91", "55", "90", "9012", "0800", "1800"]
PLUS = ["+1", "+44", "+49", "+33", "+972", "+91", "+55", "+7", "+86", "+800", "+0"]


def oracle(candidate: str, region: str | None) -> bool:
    """What PhoneNumberMatcher (leniency VALID) decides for a candidate read in `region`."""
    try:
        number = parse(candidate, region, keep_raw_input=True)
    except NumberParseException:
        return False
    return is_valid_number(number) and (region is None or _is_national_prefix_present_if_required(number))


def candidates(seed: int, count: int) -> list[str]:
    rng = random.Random(seed)
    found = []
    for locale in ("en_US", "en_GB", "de_DE", "fr_FR", "he_IL", "en_IN", "pt_BR", "en_CA"):
        fake = Faker(locale)
        fake.seed_instance(seed)
        found += [fake.phone_number() for _ in range(count // 40)]
    for _ in range(count):
        digits = "".join(rng.choice("0123456789") for _ in range(rng.randint(3, 14)))
        number = rng.choice(PLUS if rng.random() < 0.2 else PREFIXES) + digits
        if rng.random() < 0.4 and not number.startswith("+"):
            number = re.sub(r"(\d{3})(?=\d)", lambda m: m.group(1) + rng.choice([" ", "-", ".", "/", ""]), number)
        if rng.random() < 0.1:
            number = "(" + number[:3] + ") " + number[3:]
        found.append(number)
    return found


@pytest.mark.parametrize("seed", [1, 2])
def test_phone_verdicts_match_phonenumbers(seed):
    plans = NumberingPlans(REGIONS)
    checked = disagreements = 0
    for candidate in candidates(seed, 3000):
        international = candidate.lstrip("(").startswith("+")
        verdicts = {region: oracle(candidate, region) for region in ([None] if international else REGIONS)}
        for region, expected in verdicts.items():
            checked += 1
            disagreements += plans.valid(candidate, region) != expected
        if not international:
            disagreements += plans.valid_in_any(candidate, REGIONS) != any(verdicts.values())
    assert checked > 15000
    assert disagreements == 0


def test_phone_verdicts_cover_both_answers():
    plans = NumberingPlans(REGIONS)
    assert plans.valid("(415) 555-0132", "US") and plans.valid("030 12345678", "DE")
    assert plans.valid("+44 20 7946 0958", None) and plans.valid("1 415 555 0132", "US")
    assert not plans.valid("4155550132", "DE")  # a German number needs its national prefix written
    assert not plans.valid("1972-02-19", "US") and not plans.valid("555-0199", "US")


def test_iban_runner_matches_the_recognizers_analyze():
    recognizer = IbanRecognizer()
    runner = IbanRunner(recognizer, ["IBAN_CODE"], None)
    texts = [
        "pay to DE89 3704 0044 0532 0130 00 please",
        "iban gb82west12345698765432 in lower case",
        "GB82 WEST 1234 5698 7654 32 and FR14 2004 1010 0505 0001 3M02 606, then DE89370400440532013001",
        "I want my deposit in DE89370400440532013000 2 days from today.",
        "NL91ABNA0417164300 NL91ABNA0417164301 XX00 1234",
    ]
    fake = Faker("de_DE")
    fake.seed_instance(3)
    texts += [f"account {fake.iban()} and {fake.iban().lower()} end" for _ in range(30)]
    for text in texts:
        expected = sorted((r.start, r.end, r.score) for r in recognizer.analyze(text, ["IBAN_CODE"]))
        got = sorted((start, end, score) for start, end, _, score in runner.spans(text, [(0, len(text))], None, None))
        assert got == expected, text


def test_pattern_reading():
    assert untimed_window(r"\b([0-9]{3})-([0-9]{2})-([0-9]{4})\b") is None  # linear: never timed
    assert untimed_window(r"[a-f]{4}:(?:%[0-9a-z]+)?(?![\w:])") == QUADRATIC_WINDOW
    assert untimed_window(r"\w+(?:-+\w+)*@") == 0 and untimed_window(r"(?:ab){2,}") == 0
    assert untimed_window(r"(?:a+b){3}") == 0 and untimed_window(r"(?=x*)y*") == 0
    assert untimed_window(r"\p{L}") == 0  # syntax the stdlib parser does not know: assume the worst
    assert required(r"(?:[0-9a-f]{1,4}:){7}[0-9a-f]{1,4}|::1") == {":"}
    assert required(r"a?-b") == {"-"} and required(r"(?:x|y)z") == frozenset()
