"""Where Switchyard's PII scan is stricter or broader than stock Presidio, and why.

Each rule answers a false positive or a miss seen on the evaluation set (bench/safety_eval.py):
- Mastercard's 2-series cards (2221-2720) are missed by Presidio's card pattern: one more pattern, Luhn-checked.
- SSN area numbers 900-999 are never issued (they are ITINs): rejected.
- A phone number written as bare digits (1783606031) is more often an ID or a timestamp: it scores below
  the default threshold unless a context word ("phone", "call", "tel"…) precedes it.
- A phone number has at least seven digits: shorter runs that phonenumbers accepts in some region (German
  four- to six-digit locals, short codes) are far more often counts, codes and years.
- A phone match glued to the rest of a token (the fraction in 16:09:09.072550Z, the start of a hex digest)
  or shaped like a dotted version number (Chrome 115.0.2789.91) or an IPv4 address is rejected.
"""

from __future__ import annotations

import re

from gateway.safety.presidio import Pattern

MASTERCARD_2_SERIES = Pattern(
    "Mastercard 2-series", r"\b2(?:22[1-9]|2[3-9]\d|[3-6]\d\d|7[01]\d|720)[- ]?\d{4}[- ]?\d{4}[- ]?\d{4}\b", 0.3
)
BARE_PHONE_SCORE = 0.2
EXTRA_CONTEXT = {"PHONE_NUMBER": ("tel", "fax", "whatsapp", "sms")}
_VERSION = re.compile(r"\d+(?:\.\d+){2,}")
_IPV4 = re.compile(r"\d{1,3}(?:\.\d{1,3}){3}")


def adjusted_score(entity: str, value: str, score: float) -> float:
    if entity == "PHONE_NUMBER" and value.isdigit():
        return min(score, BARE_PHONE_SCORE)
    return score


def rejected(entity: str, text: str, start: int, end: int) -> bool:
    if entity == "US_SSN":
        digits = [c for c in text[start:end] if c.isdigit()]
        return len(digits) == 9 and digits[0] == "9"
    if entity == "PHONE_NUMBER":
        value = text[start:end]
        if value.count(".") >= 2 and _VERSION.fullmatch(value) and (any(len(g) == 1 for g in value.split(".")) or _IPV4.fullmatch(value)):
            return True
        return _glued(text, start, end)
    return False


def _glued(text: str, start: int, end: int) -> bool:
    """Whether the match continues a longer token: a letter or digit right next to it, or a '.'/':' then a digit."""
    before = text[start - 1] if start > 0 else " "
    after = text[end] if end < len(text) else " "
    if before.isalnum() or after.isalnum():
        return True
    if before in ".:" and start > 1 and text[start - 2].isdigit():
        return True
    return after in ".:" and end + 1 < len(text) and text[end + 1].isdigit()
