"""The replayed result checks (safety/checks.py) give Presidio's own answers."""

from __future__ import annotations

import random

import pytest

from gateway.safety.checks import checks
from gateway.safety.presidio import CreditCardRecognizer
from presidio_analyzer.predefined_recognizers import IpRecognizer


def _card_like(rng: random.Random) -> str:
    digits = "".join(rng.choice("0123456789") for _ in range(rng.randint(0, 19)))
    return "".join(c + (rng.choice(["", "", " ", "-"]) if rng.random() < 0.25 else "") for c in digits)


def test_luhn_replay_agrees_with_presidio():
    recognizer = CreditCardRecognizer()
    validate, invalidate = checks(recognizer)
    assert validate is not recognizer.validate_result
    rng = random.Random(5)
    values = [_card_like(rng) for _ in range(20000)]
    values += ["4111 1111 1111 1111", "4111-1111-1111-1112", "2223003122003222", "", "٤١١١١١١١١١١١١١١١"]
    agreed = 0
    for value in values:
        assert validate(value) == recognizer.validate_result(value), value
        agreed += validate(value)
    assert agreed > 1000  # (about one in ten random numbers passes the checksum)
    with pytest.raises(ValueError):
        validate("4111.1111")  # not a separator Presidio removes: int() refuses it there too
    with pytest.raises(ValueError):
        recognizer.validate_result("4111.1111")
    assert invalidate("4111 1111 1111 1111") == recognizer.invalidate_result("4111 1111 1111 1111")


def test_ip_shortcut_agrees_with_presidio():
    recognizer = IpRecognizer()
    validate, invalidate = checks(recognizer)
    assert invalidate is not recognizer.invalidate_result
    rng = random.Random(9)
    octets = ["0", "00", "01", "7", "09", "10", "99", "100", "199", "200", "249", "250", "255", "256", "300", "1000", "٣"]
    values = [".".join(rng.choice(octets) for _ in range(rng.choice([3, 4, 4, 4, 5]))) for _ in range(5000)]
    values += [v + rng.choice(["/24", "/33", "/0", "/255.255.0.0", ""]) for v in values[:500]]
    values += ["::1", "2001:db8::8a2e:370:7334", "::ffff:10.0.0.1", "fe80::1%eth0", "1.2.3.4 ", "1.2.3.4\n"]
    for value in values:
        assert bool(invalidate(value)) == bool(recognizer.invalidate_result(value)), value
    assert sum(not invalidate(v) for v in values) > 200  # (valid addresses are among them)


def test_other_recognizers_keep_their_own_checks():
    from presidio_analyzer.predefined_recognizers import UsSsnRecognizer

    recognizer = UsSsnRecognizer()
    assert checks(recognizer) == (recognizer.validate_result, recognizer.invalidate_result)


def _with_check_digits(country: str, bban: str) -> str:
    number = (bban + country + "00").upper().translate({ord(c): str(int(c, 36)) for c in "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"})
    return f"{country}{98 - int(number) % 97:02d}{bban}"


def test_iban_replay_agrees_with_presidio():
    from gateway.safety.presidio import IbanRecognizer

    recognizer = IbanRecognizer()
    validate, _ = checks(recognizer)
    assert validate is not recognizer.validate_result
    rng = random.Random(11)
    alnum = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    values = []
    for _ in range(6000):
        country = rng.choice(["DE", "GB", "FR", "NL", "ES", "IT", "XX", "AL", "MT", "NO"])
        bban = "".join(rng.choice("0123456789" if rng.random() < 0.7 else alnum) for _ in range(rng.randint(4, 30)))
        value = _with_check_digits(country, bban) if rng.random() < 0.7 else country + f"{rng.randint(0, 99):02d}" + bban
        if rng.random() < 0.3:
            value = " ".join(value[i : i + 4] for i in range(0, len(value), 4))
        if rng.random() < 0.2:
            value = value.lower() if rng.random() < 0.5 else value[:2].lower() + value[2:]
        if rng.random() < 0.05:
            value = value.replace("0", "٠")  # non-ASCII: left to Presidio
        values.append(value)
    values += ["DE89 3704 0044 0532 0130 00", "GB82WEST12345698765432", "gb82west12345698765432", "DE89", ""]
    verdicts = [validate(value) for value in values]
    assert verdicts == [recognizer.validate_result(value) for value in values]
    assert verdicts.count(True) > 20 and verdicts.count(None) > 5 and verdicts.count(False) > 1000
