"""Presidio's recognizers, run directly and only where they can match.

Each runner wraps one Presidio recognizer and reports raw (start, end, entity, score) spans for a
text and the windows of it worth scanning (see `safety.pii.windows`):

- `PatternRunner`: a PatternRecognizer's own regexes, scores, `validate_result` and
  `invalidate_result`, in the same order and with the same outcome as its `analyze`, without the
  per-match explanation objects and timestamps that make `analyze` slow. A pattern without
  unbounded repetition runs in linear time and skips the `regex` timeout (which costs several times
  a short window's whole scan; see `untimed_window`); a window lacking a character every match
  needs is skipped. The slowest checks are replayed (safety/checks.py), and a value several patterns
  match is checked once.
- `IbanRunner`: IbanRecognizer's own `analyze`, replayed the same way; its pattern is tried only where
  an IBAN can start.
- `PhoneRunner`: PhoneRecognizer asks python-phonenumbers to match every region over the whole
  text (about 0.2 ms per region per digit group). Here each digit group is judged by
  `safety.phones`, which replays phonenumbers' verdicts from its metadata in microseconds; only a
  group that is no number as a whole but holds one after a separator goes to phonenumbers' matcher.
- `AnalyzeRunner`: anything else (NER recognizers): `analyze` per window.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from time import perf_counter
from typing import Any

import regex
from phonenumbers import PhoneMetadata, PhoneNumberMatcher
from gateway.safety.presidio import PatternRecognizer

from gateway.safety.checks import checks
from gateway.safety.phones import NumberingPlans, plain_digits
from gateway.safety.reading import QUADRATIC_WINDOW, required, untimed_window  # noqa: F401 - QUADRATIC_WINDOW: for the tests
from gateway.safety.rules import EXTRA_CONTEXT
from gateway.safety.twin import Twin

Span = tuple[int, int, str, float]
_UNJUDGED = object()
Window = tuple[int, int]


class Runner:
    """One recognizer: which entities, which trigger kind (`None`: the whole text), its context words."""

    def __init__(self, recognizer: Any, entities: list[str], trigger: Twin | None) -> None:
        self.recognizer = recognizer
        self.entities = entities
        self.trigger = trigger
        extra = tuple(word for e in entities for word in EXTRA_CONTEXT.get(e, ()))
        self.context = tuple(word.lower() for word in (recognizer.context or ())) + extra
        self.needs_nlp = False
        self.needs_long_run = False  # finds nothing in a text without a LONG_RUN
        self.probe: Twin | None = None  # matches somewhere in a text iff one of the patterns does
        # With a probe: a cheaper search matching somewhere in every text the trigger and the probe both
        # match in (maybe more), that alone decides whether a short text is scanned whole.
        self.gate: Twin | None = None

    def spans(self, text: str, windows: Sequence[Window], artifacts: Any, deadline: float | None) -> list[Span]:
        raise NotImplementedError


class _RegexRunner(Runner):
    """A recognizer driven by its own `patterns` (compiled here, with Presidio's flags)."""

    def __init__(self, recognizer: Any, entities: list[str], trigger: Twin | None) -> None:
        super().__init__(recognizer, entities, trigger)
        flags = recognizer.global_regex_flags
        self._patterns = [(p.score, *_compiled(p.regex, flags)) for p in recognizer.patterns]
        self.probe = _probe(recognizer.patterns, flags)
        if self.probe is not None and len(self._patterns) == 1:
            self.gate = trigger  # (the probe would be the one pattern, searched twice where it occurs)

    def _matches(self, text: str, windows: Sequence[Window], deadline: float | None) -> Iterator[tuple[float, Any]]:
        """(pattern score, match) for every pattern in every window, pattern by pattern as Presidio goes."""
        ascii = text.isascii()
        for base, twin, untimed, needs in self._patterns:
            compiled = twin.ascii if ascii else twin.unicode
            for low, high in windows:
                if needs and not all(text.find(c, low, high) >= 0 for c in needs):
                    continue
                for match in _finditer(compiled, untimed, text, low, high, deadline):
                    yield base, match


class PatternRunner(_RegexRunner):
    def __init__(self, recognizer: PatternRecognizer, entities: list[str], trigger: Twin | None) -> None:
        super().__init__(recognizer, entities, trigger)
        self.needs_long_run = trigger is not None and set(entities) <= LONG_RUN_ENTITIES  # (their triggers are such runs)
        self._entity = recognizer.supported_entities[0]
        self._validate, self._invalidate = checks(recognizer)
        # A pattern matching at every place one of the patterns can match from (and maybe more): set (with
        # linear-time patterns only), each pattern is tried just there. Several \b-led patterns each scanning
        # a text cost more than one digit-led scan for their possible starts.
        self.starts: Twin | None = None

    def _matches(self, text: str, windows: Sequence[Window], deadline: float | None) -> Iterator[tuple[float, Any]]:
        if self.starts is None:
            yield from super()._matches(text, windows, deadline)
            return
        ascii = text.isascii()
        starts = self.starts.ascii if ascii else self.starts.unicode
        places = [[m.start() for m in starts.finditer(text, low, high, overlapped=True)] for low, high in windows]
        for base, twin, _, needs in self._patterns:
            compiled = twin.ascii if ascii else twin.unicode
            for (low, high), at in zip(windows, places):
                if needs and not all(text.find(c, low, high) >= 0 for c in needs):
                    continue
                after = low  # what finditer gives: the leftmost match at or after the last one's end
                for start in at:
                    if start >= after:
                        match = compiled.match(text, start, high)
                        if match is not None:
                            after = match.end()
                            yield base, match

    def spans(self, text: str, windows: Sequence[Window], artifacts: Any, deadline: float | None) -> list[Span]:
        found: dict[tuple[int, int], float] = {}
        judged: dict[str, Any] = {}  # value -> validate_result, or False if dropped: patterns often match the same value
        for base, match in self._matches(text, windows, deadline):
            start, end = match.span()
            if start == end:
                continue
            value = text[start:end]
            valid = judged.get(value, _UNJUDGED)
            if valid is _UNJUDGED:
                valid = self._validate(value)
                if valid is not False and self._invalidate(value):
                    valid = False
                judged[value] = valid
            if valid is False:
                continue
            score = 1.0 if valid else base
            if found.get((start, end), -1.0) < score:
                found[(start, end)] = score
        return [(start, end, self._entity, score) for (start, end), score in found.items()]


_IBAN_HEAD = "(?<![A-Z0-9])([A-Z]{2}[0-9]{2}"  # how Presidio's IBAN pattern starts (two heads cannot overlap)


class IbanRunner(_RegexRunner):
    """IbanRecognizer's own analyze (it overrides PatternRecognizer's): for each match, the span up to the
    end of its last group, then of each earlier one, until one validates; without its explanation objects."""

    def __init__(self, recognizer: Any, entities: list[str], trigger: Twin | None) -> None:
        super().__init__(recognizer, entities, trigger)
        self._validate = checks(recognizer)[0]
        # Presidio's pattern opens with a lookbehind, which the `regex` module tries at every position (about
        # 5 µs on a short prompt); a match starts with two letters and two digits, so it is tried only there
        # (when the pattern is the one known and runs without a timeout). The same flags: the same letters.
        self._from_heads = all(
            untimed is None and p.regex.startswith(_IBAN_HEAD) for (_, _, untimed, _), p in zip(self._patterns, recognizer.patterns)
        )
        # (Its two digits, looked for first and the letters behind them: faster than the letters first.)
        self._heads = regex.compile("(?<=[A-Z][A-Z])[0-9]{2}", flags=recognizer.global_regex_flags)

    def _from_heads_matches(self, text: str, windows: Sequence[Window]) -> Iterator[tuple[float, Any]]:
        """What `_matches` gives, finding each match as `finditer` would: the leftmost at or after the last
        one's end, tried at each place a match can start."""
        ascii = text.isascii()
        for base, twin, _, _ in self._patterns:
            compiled = twin.ascii if ascii else twin.unicode
            for low, high in windows:
                after = low
                for digits in self._heads.finditer(text, low, high):
                    head = digits.start() - 2
                    if head < after:
                        continue  # (in the last match, or its letters before the window)
                    match = compiled.match(text, head, high)
                    if match is not None:
                        after = match.end()
                        yield base, match

    def spans(self, text: str, windows: Sequence[Window], artifacts: Any, deadline: float | None) -> list[Span]:
        found: list[Span] = []
        matches = self._from_heads_matches(text, windows) if self._from_heads else self._matches(text, windows, deadline)
        for base, match in matches:
            start = match.start()
            for group in range(len(match.groups()), 0, -1):
                end = match.end(group) if match.end(group) > start else match.end()  # (-1: the group did not take part)
                if end <= start:
                    continue
                valid = self._validate(text[start:end])
                score = base if valid is None else (1.0 if valid else 0.0)
                if score > 0.0:
                    found.append((start, end, self.entities[0], score))
                    break
        return found


class AnalyzeRunner(Runner):
    def __init__(self, recognizer: Any, entities: list[str], trigger: Twin | None, needs_nlp: bool = False) -> None:
        super().__init__(recognizer, entities, trigger)
        self.needs_nlp = needs_nlp

    def spans(self, text: str, windows: Sequence[Window], artifacts: Any, deadline: float | None) -> list[Span]:
        found = []
        for low, high in windows:
            window = text if (low, high) == (0, len(text)) else text[low:high]
            for result in self.recognizer.analyze(window, self.entities, artifacts if self.needs_nlp else None):
                found.append((result.start + low, result.end + low, result.entity_type, result.score))
        return found


def _compiled(pattern: str, flags: int) -> tuple[Twin, int | None, frozenset[str]]:
    """The pattern compiled, the longest window it may scan without a timeout (None: any), and what a
    window must contain for it to match."""
    return Twin(pattern, flags), untimed_window(pattern), required(pattern)


def _probe(patterns: Sequence[Any], flags: int) -> Twin | None:
    """All of a recognizer's patterns as one alternation: one search tells whether a short text needs them.
    Only for patterns that run in linear time."""
    if not patterns or any(untimed_window(p.regex) is not None for p in patterns):
        return None
    return Twin("|".join(f"(?:{p.regex})" for p in patterns), flags)


def _finditer(compiled: regex.Pattern[str], untimed: int | None, text: str, low: int, high: int, deadline: float | None) -> Iterator[Any]:
    if untimed is None or high - low <= untimed:
        return compiled.finditer(text, low, high)  # (a timeout costs more than the whole scan of a short window)
    # A pathological input must not pin a core: matching stops at the scan's deadline.
    timeout = None if deadline is None else max(deadline - perf_counter(), 1e-6)
    return compiled.finditer(text, low, high, timeout=timeout)


# Phone punctuation phonenumbers accepts between digit blocks (at most four characters of it); an
# extension marker such as "x" ends the group, so the number before it is judged on its own.
_GAP_CHAR = r"[-\u2010-\u2015\u2212\u30fc\uff0d-\uff0f \u00a0\u00ad\u200b\u2060\u3000()\uff08\uff09\uff3b\uff3d.\[\]/~\u2053\u223c\uff5e\s]"
_GAP = _GAP_CHAR + "{1,4}"
_GROUP = Twin(rf"\d+(?:{_GAP}\d+)*")  # (the `regex` module scans for it faster than `re`)
# Seven or more characters of digits and phone punctuation, from a digit to a digit: every phone candidate
# (a digit group of MIN_PHONE_DIGITS or more), card number and SSN is one (see pii.TRIGGERS). Most prose
# holds none, and one scan for it spares their three.
LONG_RUN = Twin(rf"\d{_GAP_CHAR[:-1]}\d]{{5,}}\d")  # (the set: phone punctuation and digits)
LONG_RUN_ENTITIES = frozenset({"PHONE_NUMBER", "CREDIT_CARD", "US_SSN"})
_LEAD = "(+\uff0b"
_EXTENSION = re.compile(r"[ \t]?(?:x|ext\.?|extension)[ \t]?\d{1,7}(?!\w)", re.IGNORECASE)
_EXTENSION_STARTS = (" ", "\t", "x", "X", "e", "E")  # what an extension's first character can be
MAX_PHONE_DIGITS = 17  # E.164's 15, plus an international prefix
MIN_PHONE_DIGITS = 7  # see safety/rules.py
# (entity, text, start, end, score, context words) -> whether such a span would be reported at all
Counts = Callable[[str, str, int, int, float, tuple[str, ...]], bool]


class PhoneRunner(Runner):
    """Digit groups judged by `safety.phones` (phonenumbers' own verdicts, replayed cheaply); phonenumbers'
    matcher runs only on a group that is no number as a whole but holds one (split at its separators).

    `counts` says whether a phone number found at a span would make it into the results (allow-list,
    rules, score threshold, context): a group whose only possible number would not is not validated.
    Bare digit runs (IDs, timestamps), which score below the default threshold without a context word,
    are most digit groups in ordinary text.
    """

    def __init__(
        self, recognizer: Any, entities: list[str], trigger: Twin | None, counts: Counts | None = None
    ) -> None:
        super().__init__(recognizer, entities, trigger)
        self.needs_long_run = True  # (its candidates are digit groups of at least MIN_PHONE_DIGITS)
        self._score = float(recognizer.SCORE)
        self._leniency = recognizer.leniency
        # Regions sharing a country code accept the same numbers (US and CA: NANP): one of them does.
        by_code: dict[int, str] = {}
        for code in recognizer.supported_regions:
            by_code.setdefault(PhoneMetadata.metadata_for_region(code).country_code, code)
        self._regions = tuple(by_code.values())
        self._plans = NumberingPlans(self._regions)
        self._min_digits = max(MIN_PHONE_DIGITS, self._plans.min_digits)
        self._counts = counts
        # _GROUP's runs of at least _min_digits digits, in ASCII text: a run's first digit is followed by
        # the rest, each after at most four characters of phone punctuation (a shorter run fails at each of
        # its digits, as every later start sees fewer).
        self._long_groups = regex.compile(rf"[0-9](?=(?:{_GAP_CHAR}{{0,4}}[0-9]){{{self._min_digits - 1}}})[0-9]*(?:{_GAP}[0-9]+)*")

    def spans(self, text: str, windows: Sequence[Window], artifacts: Any, deadline: float | None) -> list[Span]:
        found: dict[tuple[int, int], None] = {}
        for low, high in windows:
            for count, (start, end, split) in enumerate(self._groups(text, low, high), 1):
                if deadline is not None and count % 64 == 0 and perf_counter() > deadline:
                    raise TimeoutError("PII scan ran out of time")
                lead = start
                while lead > low and start - lead < 2 and text[lead - 1] in _LEAD:
                    lead -= 1
                for span in self._number(text, lead, start, end, split, low, high):
                    found[span] = None
        return [(start, end, self.entities[0], self._score) for start, end in found]

    def _number(self, text: str, lead: int, start: int, end: int, split: bool, low: int, high: int) -> Sequence[tuple[int, int]]:
        """The phone numbers in the digit group text[lead:end]: the group, or what the matcher finds in it."""
        group = text[lead:end]
        extension = _EXTENSION.match(text, end, high) if text.startswith(_EXTENSION_STARTS, end) else None
        whole = (lead, extension.end() if extension else end)
        reported = self._counts is None or self._counts(self.entities[0], text, *whole, self._score, self.context)
        digits = plain_digits(group)
        if "+" in text[lead:start] or "\uff0b" in text[lead:start]:
            if self._plans.valid(group, None, digits):
                return (whole,) if reported else ()
            return self._match(text, lead, end, low, high, self._regions[:1])
        if reported and self._plans.valid_in_any(group, self._regions, digits):
            return (whole,)  # the usual case: the whole group is the number
        if not split:
            return ()  # no separator to split at: the whole group was the only candidate
        inner = _tries(text[start:end]) - {digits}
        if not inner:
            return ()
        if not reported and self._plans.valid_in_any(group, self._regions, digits):
            return ()  # (a group that is a number as a whole gives that number, which is not reported)
        # (asked after that: a date such as 05/01/2026 04 is a number as a whole, and its parts in each region cost more)
        regions = [r for r in self._regions if any(self._plans.valid_in_any(t, (r,)) for t in inner)]
        return self._match(text, lead, end, low, high, regions) if regions else ()

    def _match(self, text: str, lead: int, end: int, low: int, high: int, regions: Sequence[str]) -> list[tuple[int, int]]:
        """phonenumbers' own matcher, per region, on the group and a little room around it (its lead
        characters, an extension): every number it finds, as Presidio keeps them all."""
        begin, finish = max(low, lead - 1), min(high, end + 16)
        piece = text[begin:finish]
        return [
            (match.start + begin, match.end + begin)
            for region in regions
            for match in PhoneNumberMatcher(piece, region, leniency=self._leniency)
        ]

    def _groups(self, text: str, low: int, high: int) -> Iterator[tuple[int, int, bool]]:
        """Runs of digit blocks joined by short phone punctuation, as the matcher's candidates are:
        (start, end, whether it has separators)."""
        if text.isascii():
            # (Most runs are short: the pattern skips them itself, sparing a Python step each.)
            for match in self._long_groups.finditer(text, low, high):
                start, end = match.span()
                yield start, end, not match.group().isdigit()
            return
        for match in _GROUP.unicode.finditer(text, low, high):
            start, end = match.span()
            if end - start < self._min_digits:
                continue
            group = match.group()
            if group.isdigit():
                yield start, end, False
            elif len(_NOT_DIGIT.sub("", group)) >= self._min_digits:
                yield start, end, True


# Where phonenumbers' matcher looks for a number inside a candidate that is not one as a whole: before
# the first separator and after each: to the end for slashes and hyphens, to the next dot for dots, the
# next token for spaces.
_TO_END = (("/", re.compile(r"/+")), ("-", re.compile(r"\s-|-\s")), (None, re.compile(r"[\u2012-\u2015\uff0d]")))
_WIDE_HYPHENS = frozenset("\u2012\u2013\u2014\u2015\uff0d")
_DOTS = re.compile(r"\.+")
_NOT_DIGIT = re.compile(r"\D+")


def _tries(candidate: str) -> set[str]:
    """The digit strings (long enough to be a phone number) the matcher may parse for `candidate` (a superset)."""
    tokens = candidate.split()
    if len(tokens) == 1 and "/" not in candidate and "." not in candidate and _WIDE_HYPHENS.isdisjoint(candidate):
        return set()  # no separator the matcher splits at (a date such as 2011-07-20): the fast common answer
    texts: list[str] = []
    for needle, separator in _TO_END:
        if needle in candidate if needle else not _WIDE_HYPHENS.isdisjoint(candidate):
            for i, match in enumerate(separator.finditer(candidate)):
                if i == 0:
                    texts.append(candidate[: match.start()])
                texts.append(candidate[match.end() :])
    if "." in candidate:
        texts += _DOTS.split(candidate)
    if len(tokens) > 1:
        texts += tokens
    tries = {_NOT_DIGIT.sub("", t) for t in texts if len(t) >= MIN_PHONE_DIGITS}
    return {digits for digits in tries if MAX_PHONE_DIGITS >= len(digits) >= MIN_PHONE_DIGITS}
