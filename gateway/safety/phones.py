"""Phone numbers judged the way python-phonenumbers judges them, without its parser's overhead.

Presidio's PhoneRecognizer keeps what `PhoneNumberMatcher` finds at leniency VALID: a candidate that
`parse` reads, `is_valid_number` accepts, and that carries its national prefix where the number's
format requires one. `parse` + those checks cost about 30 µs a candidate, mostly in generic work
(normalising, extension and RFC 3966 handling, building the number object) that a run of ASCII digits
and plain separators does not need. `NumberingPlans` replays the same decisions on the digit string
with the same metadata, compiled once: country-code and national-prefix stripping with its viability
checks, the possible-length rules, the region choice among regions sharing a calling code, the
number-type patterns and the national-prefix requirement. Whatever it does not model (an
international dialling prefix such as 00 or 011, a calling code outside the configured regions',
unusual characters) it leaves to phonenumbers itself. tests/test_safety_phones.py holds it to
phonenumbers' own answers.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import regex
from phonenumbers import (
    COUNTRY_CODE_TO_REGION_CODE,
    NumberParseException,
    PhoneMetadata,
    is_valid_number,
    national_significant_number,
    normalize_digits_only,
    parse,
)
from phonenumbers.phonenumber import CountryCodeSource

# _test_number_length's outcomes, as far as parse cares: stripping is kept for POSSIBLE or TOO_LONG.
_POSSIBLE, _TOO_SHORT, _LOCAL_ONLY, _INVALID_LENGTH, _TOO_LONG = range(5)
_MIN_NSN, _MAX_NSN = 2, 17
_TYPES = ("premium_rate", "toll_free", "shared_cost", "voip", "personal_number", "pager", "uan", "voicemail", "fixed_line")
_FIRST_GROUP_ONLY = re.compile(r"\(?\\1\)?")  # phonenumbers' _FIRST_GROUP_ONLY_PREFIX_PATTERN
# Characters a candidate may hold for the replay to apply: parse treats them as plain separators
# (no extension marker such as "~", no second number, no letters).
PLAIN = frozenset("0123456789 -.()/+")
_DIGITS_ONLY = str.maketrans("", "", " -.()/+")

Desc = tuple[frozenset[int], re.Pattern[str]]


def _desc(desc: object) -> Desc | None:
    pattern = getattr(desc, "national_number_pattern", None)
    if not pattern:
        return None  # _match_national_number: an absent or empty pattern matches nothing
    return frozenset(desc.possible_length or ()), re.compile(pattern)  # type: ignore[attr-defined]


def _first_digits(*patterns: str | None) -> frozenset[str]:
    """The digits a string matched by one of `patterns` at its start can begin with."""
    found: set[str] = set()
    for pattern in filter(None, patterns):
        compiled = regex.compile(pattern)  # (the `regex` module can tell a partial match)
        found.update(d for d in "0123456789" if compiled.match(d, partial=True))
    return frozenset(found)


def _typed(general: Desc | None, types: list[Desc]) -> dict[int, re.Pattern[str]]:
    """_number_type_helper(...) != UNKNOWN as one regex per number length: the general description must
    match, then any type admitting that length (phonenumbers tries them one by one)."""
    if general is None:
        return {}
    sizes, pattern = general
    table = {}
    for size in sizes or range(_MAX_NSN + 1):
        alternatives = dict.fromkeys(p.pattern for lengths, p in types if not lengths or size in lengths)
        if alternatives:
            either = "|".join(f"(?:{p})" for p in alternatives)
            table[size] = re.compile(rf"(?=(?:{pattern.pattern})\Z)(?:{either})")
    return table


def plain_digits(candidate: str) -> str | None:
    """The digits of a candidate made of PLAIN characters only, else None."""
    return candidate.translate(_DIGITS_ONLY) if PLAIN.issuperset(candidate) else None


class _Plan:
    """One region's metadata, as parse, is_valid_number and the matcher read it."""

    __slots__ = (
        "code", "cc", "idd", "prefix", "transform", "idd_first", "prefix_first", "general", "lengths", "local", "typed", "leading",
        "formats", "needs_prefix",
    )

    def __init__(self, code: str) -> None:
        metadata = PhoneMetadata.metadata_for_region(code)
        self.code = code
        self.cc = str(metadata.country_code)
        self.idd = re.compile(metadata.international_prefix) if metadata.international_prefix else None
        self.prefix = re.compile(metadata.national_prefix_for_parsing) if metadata.national_prefix_for_parsing else None
        self.transform = metadata.national_prefix_transform_rule or None
        # Digits an international or national prefix may start with (most numbers start otherwise).
        self.idd_first = _first_digits(metadata.international_prefix)
        self.prefix_first = _first_digits(metadata.national_prefix_for_parsing)
        general = metadata.general_desc
        self.general = _desc(general)
        self.lengths = tuple(sorted(general.possible_length))
        self.local = frozenset(general.possible_length_local_only)
        kinds = _TYPES if metadata.same_mobile_and_fixed_line_pattern else (*_TYPES, "mobile")
        self.typed = _typed(self.general, [d for d in (_desc(getattr(metadata, kind, None)) for kind in kinds) if d])
        self.leading = re.compile(metadata.leading_digits) if metadata.leading_digits else None
        # _choose_formatting_pattern_for_number takes the first format whose leading digits and pattern fit:
        # one alternation in the same order, its named group saying which.
        formats = metadata.number_format
        self.formats = re.compile(
            "|".join(
                f"(?P<f{i}>" + (f"(?={f.leading_digits_pattern[-1]})" if f.leading_digits_pattern else "") + f"(?:{f.pattern}))"
                for i, f in enumerate(formats)
            )
        ) if formats else None
        self.needs_prefix = [
            bool(f.national_prefix_formatting_rule)
            and not f.national_prefix_optional_when_formatting
            and not _FIRST_GROUP_ONLY.fullmatch(f.national_prefix_formatting_rule)
            for f in formats
        ]
        if not any(self.needs_prefix):
            self.formats = None  # (no format requires the prefix: wants_prefix is False without matching one)

    def viable(self, number: str) -> bool:
        """_match_national_number against the general description (the pattern only, no lengths)."""
        return self.general is not None and self.general[1].fullmatch(number) is not None

    def strip_prefix(self, number: str) -> tuple[str, bool]:
        """_maybe_strip_national_prefix_carrier_code: (the number, whether a prefix was stripped)."""
        if not number or number[0] not in self.prefix_first or self.prefix is None:
            return number, False
        found = self.prefix.match(number)
        if found is None:
            return number, False
        groups = found.groups()
        if self.transform is None or not groups or groups[-1] is None:
            rest = number[found.end() :]
        else:
            rest = self.prefix.sub(self.transform, number, count=1)
        if self.viable(number) and not self.viable(rest):
            return number, False
        return rest, True

    def length(self, number: str) -> int:
        """_test_number_length for an unknown number type."""
        size = len(number)
        if size in self.local:
            return _LOCAL_ONLY
        if self.lengths[0] == size:
            return _POSSIBLE
        if self.lengths[0] > size:
            return _TOO_SHORT
        if self.lengths[-1] < size:
            return _TOO_LONG
        return _POSSIBLE if size in self.lengths[1:] else _INVALID_LENGTH

    def national_number(self, number: str) -> str:
        """parse's last step: drop the national prefix if what remains has a possible length."""
        stripped, _ = self.strip_prefix(number)
        return stripped if self.length(stripped) in (_POSSIBLE, _TOO_LONG) else number

    def has_type(self, nsn: str) -> bool:
        typed = self.typed.get(len(nsn))
        return typed is not None and typed.fullmatch(nsn) is not None

    def wants_prefix(self, nsn: str) -> bool:
        """Whether the format this number is written in requires the national prefix."""
        chosen = self.formats.fullmatch(nsn) if self.formats is not None else None
        return chosen is not None and self.needs_prefix[int(chosen.lastgroup[1:])]  # type: ignore[index]

    def prefix_present(self, nsn: str, digits: str) -> bool:
        """The matcher's _is_national_prefix_present_if_required for a number read in national form."""
        return not self.wants_prefix(nsn) or self.strip_prefix(digits)[1]


class _Country:
    """The regions sharing one calling code, in phonenumbers' order (the main region first)."""

    __slots__ = ("plans", "main", "sizes", "_leading", "_free")

    def __init__(self, cc: int) -> None:
        self.plans = [_Plan(code) for code in COUNTRY_CODE_TO_REGION_CODE[cc] if PhoneMetadata.metadata_for_region(code)]
        self.main = self.plans[0]
        self.sizes = frozenset(size for plan in self.plans for size in plan.typed)  # lengths a valid number can have
        # region_code_for_number takes the first region whose leading digits match the number, or (for a
        # region without them) whose patterns give it a type. One alternation finds the first of the former,
        # its named group saying which; the regions without leading digits before it are tried in turn.
        with_leading = [(i, plan) for i, plan in enumerate(self.plans) if plan.leading is not None]
        self._leading = (
            re.compile("|".join(f"(?P<r{i}>{plan.leading.pattern})" for i, plan in with_leading)) if with_leading else None
        )
        self._free = [(i, plan) for i, plan in enumerate(self.plans) if plan.leading is None]

    def valid(self, nsn: str) -> bool:
        """is_valid_number: the region region_code_for_number picks must know the number's type."""
        if len(nsn) not in self.sizes:
            return False
        if len(self.plans) == 1:
            return self.main.has_type(nsn)
        found = self._leading.match(nsn) if self._leading is not None else None
        first = int(found.lastgroup[1:]) if found is not None and found.lastgroup else len(self.plans)
        for i, plan in self._free:
            if i > first:
                break
            if plan.has_type(nsn):
                return True
        return first < len(self.plans) and self.plans[first].has_type(nsn)


class NumberingPlans:
    """Verdicts for the calling codes of `regions`; `None` means "ask phonenumbers"."""

    def __init__(self, regions: Iterable[str]) -> None:
        self._countries: dict[int, _Country] = {}
        self._plans: dict[str, tuple[_Plan, _Country]] = {}
        for code in regions:
            cc = PhoneMetadata.metadata_for_region(code).country_code
            country = self._countries.setdefault(cc, _Country(cc))
            self._plans[code] = (next((p for p in country.plans if p.code == code), None) or _Plan(code), country)

    def national(self, digits: str, region: str) -> bool | None:
        """Whether ASCII `digits`, written without a leading +, are a number the matcher keeps for `region`."""
        plan, country = self._plans[region]
        first = digits[0]
        if first in plan.idd_first and plan.idd is not None and plan.idd.match(digits):
            return None  # an international dialling prefix: a calling code may follow
        if first not in plan.prefix_first and plan is country.main and not digits.startswith(plan.cc):
            # Read as written, nothing to strip: the number must be valid and need no national prefix.
            return len(digits) in country.sizes and not plan.wants_prefix(digits) and country.valid(digits)
        if digits.startswith(plan.cc):
            potential, _ = plan.strip_prefix(digits[len(plan.cc) :])
            if (not plan.viable(digits) and plan.viable(potential)) or plan.length(digits) == _TOO_LONG:
                # Written with the calling code: no national prefix is required.
                nsn = country.main.national_number(potential) if len(potential) >= _MIN_NSN else ""
                return _MIN_NSN <= len(nsn) <= _MAX_NSN and country.valid(nsn)
        stripped, prefixed = plan.strip_prefix(digits)
        nsn = stripped if plan.length(stripped) in (_POSSIBLE, _TOO_LONG) else digits
        if len(nsn) > _MAX_NSN or not country.valid(nsn):
            return False
        if plan is country.main:
            return prefixed or not plan.wants_prefix(nsn)
        return country.main.prefix_present(nsn, digits)

    def international(self, digits: str) -> bool | None:
        """Whether ASCII `digits`, written after a +, are a valid number."""
        if len(digits) <= _MIN_NSN or digits[0] == "0":
            return False
        for size in (1, 2, 3):
            cc = int(digits[:size])
            if cc in COUNTRY_CODE_TO_REGION_CODE:
                break
        else:
            return False
        country = self._countries.get(cc)
        if country is None:
            return None
        national = digits[size:]
        if len(national) < _MIN_NSN:
            return False
        nsn = country.main.national_number(national)
        return len(nsn) <= _MAX_NSN and country.valid(nsn)

    @property
    def min_digits(self) -> int:
        """The fewest digits a valid number of these calling codes has."""
        return min(min(country.sizes) for country in self._countries.values())

    def valid(self, candidate: str, region: str | None, digits: str | None = None) -> bool:
        """Whether `candidate` (digits and separators, maybe after '(' or '+') is a number the matcher keeps
        when read in `region`, or in international form when `region` is None. `digits`: its digits, when
        the caller has them and the candidate holds only PLAIN characters."""
        if digits is None:
            digits = plain_digits(candidate)
        if digits and (region is None) == ("+" in candidate):
            verdict = self.international(digits) if region is None else self.national(digits, region)
            if verdict is not None:
                return verdict
        return self._ask_phonenumbers(candidate, region)

    def valid_in_any(self, candidate: str, regions: Iterable[str], digits: str | None = None) -> bool:
        """Whether `candidate`, written without '+', is a number the matcher keeps for one of `regions`
        (`digits`: its plain_digits, when the caller has them)."""
        digits = digits or plain_digits(candidate)
        if not digits or "+" in candidate:
            return any(self._ask_phonenumbers(candidate, region) for region in regions)
        for region in regions:
            verdict = self.national(digits, region)
            if verdict or verdict is None and self._ask_phonenumbers(candidate, region):
                return True
        return False

    def _ask_phonenumbers(self, candidate: str, region: str | None) -> bool:
        try:
            number = parse(candidate, region, keep_raw_input=True)
        except NumberParseException:
            return False
        if not is_valid_number(number):
            return False
        if region is None or number.country_code_source != CountryCodeSource.FROM_DEFAULT_COUNTRY:
            return True
        country = self._countries.get(number.country_code)
        if country is None:
            return True
        return country.main.prefix_present(national_significant_number(number), normalize_digits_only(candidate))
