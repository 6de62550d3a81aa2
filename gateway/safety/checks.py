"""Three of Presidio's result checks, replayed where they cost more than the match they judge.

The runners ask a recognizer's `validate_result` and `invalidate_result` of every match. The credit card's
Luhn checksum builds lists and a string per doubled digit (about 5 µs a card number), the IP address check
builds an `ipaddress` interface object (about 5 µs an address), and the IBAN check looks its country's format
up in the `regex` module's pattern cache (about 10 µs an IBAN). The replays give the same answers in a fraction
of that; what a shortcut does not cover (a non-ASCII IBAN, anything but a plain IPv4 address) still goes to
Presidio's own check. tests/test_safety_checks.py holds them to Presidio's answers.
"""

from __future__ import annotations

import functools
import inspect
import re
from collections.abc import Callable
from typing import Any

import regex
from gateway.safety.presidio import CreditCardRecognizer, IbanRecognizer

Check = Callable[[str], Any]
# A dotted quad that `ipaddress` reads as an IPv4 address: four ASCII octets of at most 255, no leading zeros.
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_PLAIN_IPV4 = re.compile(rf"{_OCTET}(?:\.{_OCTET}){{3}}")


def checks(recognizer: Any) -> tuple[Check, Check]:
    """The recognizer's (validate_result, invalidate_result), replayed where that is cheaper."""
    validate, invalidate = recognizer.validate_result, recognizer.invalidate_result
    kind = type(recognizer)
    if kind.validate_result is CreditCardRecognizer.validate_result:
        validate = _luhn(tuple(recognizer.replacement_pairs))
    elif kind.validate_result is IbanRecognizer.validate_result:
        validate = _iban(recognizer)
    if kind.invalidate_result.__qualname__ == "IpRecognizer.invalidate_result":
        invalidate = _ip_invalid(invalidate)
    return validate, invalidate


def _luhn(pairs: tuple[tuple[str, str], ...]) -> Check:
    """CreditCardRecognizer.validate_result: the separators removed, the Luhn checksum of what remains
    (a non-digit raises ValueError, as in Presidio; a doubled digit's digits sum to 2d - 9 from 5 up)."""

    def validate(text: str) -> bool:
        for search, replacement in pairs:
            text = text.replace(search, replacement)
        digits = [int(char) for char in text]
        total = sum(digits[-1::-2])
        for digit in digits[-2::-2]:
            total += digit * 2 - 9 if digit > 4 else digit * 2
        return total % 10 == 0

    return validate


def _ip_invalid(presidio: Check) -> Check:
    """IpRecognizer.invalidate_result (None: an address, True: not one), without `ipaddress` for a plain IPv4 address."""

    def invalidate(text: str) -> Any:
        return None if _PLAIN_IPV4.fullmatch(text) else presidio(text)

    return invalidate


def _iban(recognizer: Any) -> Check:
    """IbanRecognizer.validate_result (True, None: valid only in capitals, False) for an ASCII IBAN: the
    separators removed, the mod-97 check digits, then the country's format as written, then in capitals."""
    presidio, pairs, letters = recognizer.validate_result, tuple(recognizer.replacement_pairs), recognizer.LETTERS
    bos, eos = recognizer.BOSEOS or ("", "")
    per_country = inspect.getmodule(IbanRecognizer).regex_per_country  # type: ignore[union-attr]

    @functools.lru_cache(maxsize=None)  # (two ASCII letters or digits: bounded; compiled on first use, not at startup)
    def country_format(country: str) -> regex.Pattern[str] | None:
        """The format Presidio matches with regex.match(format, iban, flags=DOTALL|MULTILINE), if any."""
        pattern = per_country.get(country)
        return regex.compile(bos + pattern + eos, flags=regex.DOTALL | regex.MULTILINE) if pattern else None

    def validate(text: str) -> bool | None:
        iban = text
        for search, replacement in pairs:
            iban = iban.replace(search, replacement)
        if len(iban) < 5 or not iban.isascii() or not iban.isalnum():
            return presidio(text)  # (what int() would refuse, which Presidio logs)
        capitals = iban.upper()
        number = (capitals[4:] + capitals[:2] + "00").translate(letters)
        if f"{98 - (int(number) % 97):0>2}" != iban[2:4]:
            return False
        written = country_format(iban[:2])
        if written is not None and written.match(iban):
            return True
        upper = country_format(capitals[:2])
        return None if upper is not None and upper.match(capitals) else False

    return validate
