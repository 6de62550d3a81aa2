"""Presidio's recognizers, run directly and only where they can match.

Each runner wraps one Presidio recognizer and reports raw (start, end, entity, score) spans for a
text and the windows of it worth scanning (see `safety.pii.windows`):

- `PatternRunner`: a PatternRecognizer's own regexes, scores, `validate_result` and
  `invalidate_result`, in the same order and with the same outcome as its `analyze`, without the
  per-match explanation objects and timestamps that make `analyze` slow.
- `PhoneRunner`: PhoneRecognizer asks python-phonenumbers to match every region over the whole
  text (about 0.2 ms per region per digit group). Here a digit group is first checked against each
  region's own number patterns from the phonenumbers metadata (microseconds); where the whole group
  could be a number, one `parse` + `is_valid_number` decides, and otherwise phonenumbers' own matcher
  runs, only for the regions where the group could hold a valid number, on the group alone.
- `AnalyzeRunner`: anything else (IBAN with its own analyze, NER recognizers): `analyze` per window.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from time import perf_counter
from typing import Any

import regex
from phonenumbers import (
    COUNTRY_CODE_TO_REGION_CODE,
    NumberParseException,
    PhoneMetadata,
    PhoneNumberMatcher,
    is_valid_number,
    parse,
)
from presidio_analyzer import PatternRecognizer

from gateway.safety.rules import EXTRA_CONTEXT

Span = tuple[int, int, str, float]
Window = tuple[int, int]


class Runner:
    """One recognizer: which entities, which trigger kind (`None`: the whole text), its context words."""

    def __init__(self, recognizer: Any, entities: list[str], trigger: regex.Pattern[str] | None) -> None:
        self.recognizer = recognizer
        self.entities = entities
        self.trigger = trigger
        extra = tuple(word for e in entities for word in EXTRA_CONTEXT.get(e, ()))
        self.context = tuple(word.lower() for word in (recognizer.context or ())) + extra
        self.needs_nlp = False

    def spans(self, text: str, windows: Sequence[Window], artifacts: Any, deadline: float | None) -> list[Span]:
        raise NotImplementedError


class PatternRunner(Runner):
    def __init__(self, recognizer: PatternRecognizer, entities: list[str], trigger: regex.Pattern[str] | None) -> None:
        super().__init__(recognizer, entities, trigger)
        flags = recognizer.global_regex_flags
        self._patterns = [(regex.compile(p.regex, flags=flags), p.score) for p in recognizer.patterns]
        self._entity = recognizer.supported_entities[0]
        self._validate = recognizer.validate_result
        self._invalidate = recognizer.invalidate_result

    def spans(self, text: str, windows: Sequence[Window], artifacts: Any, deadline: float | None) -> list[Span]:
        found: dict[tuple[int, int], float] = {}
        # A pathological input must not pin a core: regex matching stops at the scan's deadline.
        timeout = None if deadline is None else max(deadline - perf_counter(), 1e-6)
        for compiled, base in self._patterns:
            for low, high in windows:
                for match in compiled.finditer(text, low, high, timeout=timeout):
                    start, end = match.span()
                    if start == end:
                        continue
                    value = text[start:end]
                    valid = self._validate(value)
                    if valid is False or self._invalidate(value):
                        continue
                    score = 1.0 if valid else base
                    if found.get((start, end), -1.0) < score:
                        found[(start, end)] = score
        return [(start, end, self._entity, score) for (start, end), score in found.items()]


class AnalyzeRunner(Runner):
    def __init__(self, recognizer: Any, entities: list[str], trigger: regex.Pattern[str] | None, needs_nlp: bool = False) -> None:
        super().__init__(recognizer, entities, trigger)
        self.needs_nlp = needs_nlp

    def spans(self, text: str, windows: Sequence[Window], artifacts: Any, deadline: float | None) -> list[Span]:
        found = []
        for low, high in windows:
            window = text if (low, high) == (0, len(text)) else text[low:high]
            for result in self.recognizer.analyze(window, self.entities, artifacts if self.needs_nlp else None):
                found.append((result.start + low, result.end + low, result.entity_type, result.score))
        return found


# Phone punctuation phonenumbers accepts between digit blocks (at most four characters of it); an
# extension marker such as "x" ends the group, so the number before it is judged on its own.
_GAP = re.compile(r"[-\u2010-\u2015\u2212\u30fc\uff0d-\uff0f \u00a0\u00ad\u200b\u2060\u3000()\uff08\uff09\uff3b\uff3d.\[\]/~\u2053\u223c\uff5e\s]{1,4}")
_BLOCK = re.compile(r"\d+")
_PLUS = ("+", "\uff0b")
_EXTENSION = re.compile(r"[ \t]?(?:x|ext\.?|extension)[ \t]?\d{1,7}(?!\w)", re.IGNORECASE)
_FIRST_GROUP_ONLY = re.compile(r"\(?\\1\)?")
MAX_PHONE_DIGITS = 17  # E.164's 15, plus an international prefix
_NUMBER_TYPES = (
    "fixed_line", "mobile", "toll_free", "premium_rate", "shared_cost", "personal_number", "voip", "pager", "uan",
    "voicemail",
)


class _Region:
    """What a national number of one region (and those sharing its country code) can look like.

    `could_be` is a necessary condition for phonenumbers' VALID leniency: the number, once its
    national prefix is stripped, must match one of the number-type patterns of a region with that
    country code (how `is_valid_number` decides), and if its format requires the national prefix,
    the prefix must have been written.
    """

    __slots__ = ("code", "lengths", "valid", "prefix", "idd", "formats")

    def __init__(self, code: str) -> None:
        metadata = PhoneMetadata.metadata_for_region(code)
        self.code = code
        patterns, lengths = [], set()
        for sibling in COUNTRY_CODE_TO_REGION_CODE.get(metadata.country_code, (code,)):
            data = PhoneMetadata.metadata_for_region(sibling)
            for kind in _NUMBER_TYPES:
                desc = getattr(data, kind, None)
                if desc is not None and desc.national_number_pattern:
                    patterns.append(desc.national_number_pattern)
                    lengths.update(desc.possible_length or data.general_desc.possible_length)
        self.lengths = frozenset(lengths)
        self.valid = re.compile("|".join(f"(?:{p})" for p in dict.fromkeys(patterns)))
        self.prefix = re.compile(metadata.national_prefix_for_parsing) if metadata.national_prefix_for_parsing else None
        self.idd = re.compile(metadata.international_prefix) if metadata.international_prefix else None
        # (leading digits, pattern, whether a number in this format must be written with its national prefix)
        self.formats = [
            (
                re.compile(f.leading_digits_pattern[-1]) if f.leading_digits_pattern else None,
                re.compile(f.pattern),
                bool(f.national_prefix_formatting_rule)
                and not f.national_prefix_optional_when_formatting
                and not _FIRST_GROUP_ONLY.fullmatch(f.national_prefix_formatting_rule),
            )
            for f in metadata.number_format
        ]

    def could_be(self, digits: str) -> bool:
        if self.idd is not None and self.idd.match(digits):
            return True  # international form: leave it to the matcher
        if self._national(digits) and not self._needs_prefix(digits):
            return True
        stripped = self.prefix.match(digits) if self.prefix is not None else None
        if stripped:
            rest = stripped.group(stripped.lastindex) if stripped.lastindex else digits[stripped.end() :]
            return bool(rest) and self._national(rest)
        return False

    def _needs_prefix(self, digits: str) -> bool:
        """Whether the format this number would be written in requires the national prefix (as the matcher checks)."""
        for leading, pattern, needs_prefix in self.formats:
            if (leading is None or leading.match(digits)) and pattern.fullmatch(digits):
                return needs_prefix
        return False

    def _national(self, digits: str) -> bool:
        return len(digits) in self.lengths and self.valid.fullmatch(digits) is not None


class PhoneRunner(Runner):
    def __init__(self, recognizer: Any, entities: list[str], trigger: regex.Pattern[str] | None) -> None:
        super().__init__(recognizer, entities, trigger)
        self._score = float(recognizer.SCORE)
        self._leniency = recognizer.leniency
        # Regions sharing a country code accept the same numbers (US and CA: NANP): one matcher does.
        by_code: dict[int, str] = {}
        for code in recognizer.supported_regions:
            by_code.setdefault(PhoneMetadata.metadata_for_region(code).country_code, code)
        self._regions = [_Region(code) for code in by_code.values()]
        self._min_digits = min(min(r.lengths) for r in self._regions)

    def spans(self, text: str, windows: Sequence[Window], artifacts: Any, deadline: float | None) -> list[Span]:
        found: dict[tuple[int, int], None] = {}
        for low, high in windows:
            for start, end in self._groups(text, low, high):
                lead = start
                while lead > low and start - lead < 2 and text[lead - 1] in "(+\uff0b":
                    lead -= 1
                international = "+" in text[lead:start] or "\uff0b" in text[lead:start]
                span = self._number(text, lead, start, end, low, high, international)
                if span is not None:
                    found[span] = None
        return [(start, end, self.entities[0], self._score) for start, end in found]

    def _number(self, text: str, lead: int, start: int, end: int, low: int, high: int, international: bool) -> tuple[int, int] | None:
        """The phone number in the digit group text[start:end], if any region's rules make one of it."""
        group = text[lead:end]
        whole = _NOT_DIGIT.sub("", group)
        if international:
            if _valid(group, None):
                extension = _EXTENSION.match(text, end, high)
                return lead, extension.end() if extension else end
            return self._match(text, lead, end, low, high, self._regions[:1])
        tries = _tries(text[start:end])
        regions = [r for r in self._regions if any(r.could_be(digits) for digits in tries)]
        for region in regions:
            # The usual case, the whole group is the number: parse it once instead of running the matcher.
            if region.could_be(whole) and _valid(group, region.code):
                extension = _EXTENSION.match(text, end, high)
                return lead, extension.end() if extension else end
        return self._match(text, lead, end, low, high, regions)

    def _match(self, text: str, lead: int, end: int, low: int, high: int, regions: list[_Region]) -> tuple[int, int] | None:
        """phonenumbers' own matcher on the group and a little room around it (its lead characters, an extension)."""
        begin, finish = max(low, lead - 1), min(high, end + 16)
        piece = text[begin:finish]
        for region in regions:
            for match in PhoneNumberMatcher(piece, region.code, leniency=self._leniency):
                return match.start + begin, match.end + begin
        return None

    def _groups(self, text: str, low: int, high: int) -> list[tuple[int, int]]:
        """Runs of digit blocks joined by short phone punctuation, as the matcher's candidates are."""
        groups: list[list[int]] = []
        for block in _BLOCK.finditer(text, low, high):
            if groups and _GAP.fullmatch(text, groups[-1][1], block.start()):
                groups[-1][1] = block.end()
                groups[-1][2] += block.end() - block.start()
            else:
                groups.append([block.start(), block.end(), block.end() - block.start()])
        return [(start, end) for start, end, digits in groups if digits >= self._min_digits]


# Where phonenumbers' matcher looks for a number inside a candidate that is not one as a whole:
# before the first separator, and after each (up to the next dot, or for spaces the next token).
_INNER = (
    (re.compile(r"/+"), None),
    (re.compile(r"\s-|-\s"), None),
    (re.compile(r"[\u2012-\u2015\uff0d]"), None),
    (re.compile(r"\.+"), "."),
    (re.compile(r"\s+"), " "),
)
_NOT_DIGIT = re.compile(r"\D+")


def _valid(text: str, region: str | None) -> bool:
    try:
        return is_valid_number(parse(text, region))
    except NumberParseException:
        return False


def _tries(candidate: str) -> set[str]:
    """The digit strings the matcher may parse for `candidate` (a superset)."""
    texts = [candidate]
    for separator, stop in _INNER:
        first = True
        for match in separator.finditer(candidate):
            if first:
                texts.append(candidate[: match.start()])
                first = False
            rest = candidate[match.end() :]
            if stop == ".":
                rest = rest.split(".", 1)[0]
            elif stop == " ":
                rest = rest.split(maxsplit=1)[0] if rest.strip() else ""
            texts.append(rest)
    tries = {_NOT_DIGIT.sub("", t) for t in texts}
    return {digits for digits in tries if MAX_PHONE_DIGITS >= len(digits) >= 4}
