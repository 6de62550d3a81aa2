"""Personal data detection with Presidio's recognizers, at gateway speed.

Stock Presidio runs every recognizer over the whole text through an NLP pipeline; most of that time
goes to recognizers scanning prose that cannot hold their entity (a phone number needs digits, an
email an `@`). Here each recognizer runs directly, only on the windows of text a cheap trigger found
(whole whitespace-delimited tokens around it, plus one token on each side), so its own regexes,
checksums and validators decide exactly as they would on the full text (safety/rules.py lists where
Switchyard is deliberately stricter or broader). A text of a few KB is scanned whole by a recognizer
whose patterns run in linear time, when one of them occurs at all: cheaper than finding windows
(for card numbers and SSNs, when a cheaper gate matches: GATES); in ASCII text from the token where the
first match can start (tests/test_safety_scan_starts.py).
Context words (Presidio's `context`) raise a score the
way its context enhancer does, looking at the five words before a match. On ASCII text the digit
patterns run as faster twins (safety/twin.py), and phone numbers, card numbers and SSNs are looked for
only in a text with a run of seven digits and phone punctuation (recognizers.LONG_RUN): most prose has none.

Presidio is imported here (through safety/presidio.py), so import this module only when a policy enables PII detection.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from time import perf_counter
from typing import Any

import regex
from gateway.safety.presidio import (
    CreditCardRecognizer, IbanRecognizer, NlpEngine, PatternRecognizer, PhoneRecognizer, RecognizerRegistry, nlp_engine,
)
from gateway.safety.rules import MASTERCARD_2_SERIES, adjusted_score, rejected
from gateway.safety.recognizers import LONG_RUN, AnalyzeRunner, Counts, IbanRunner, PatternRunner, PhoneRunner, Runner
from gateway.safety.twin import AnyOf, Twin
from gateway.safety.schema import NER_ENTITIES

# Presidio's context enhancer defaults: +0.35, at least 0.4, from the five words before the match.
CONTEXT_BOOST = 0.35
CONTEXT_MIN_SCORE = 0.4
CONTEXT_WORDS = 5
PROBE_CHARS = 4096  # see analyze
_WORD = re.compile(r"[^\W_]+")
_DIGIT_GROUPS = re.compile(r"(?:[- .]?\d)*")  # the rest of a run of digit groups
_GROUP_SEPARATORS = "- ."

# Where each entity could be: a cheap regex whose matches must cover the whole entity (multi-token ones
# included); its recognizer then runs on those stretches, widened to whole tokens plus one on each side.
# (Compiled with the `regex` module, which scans these faster than `re`.)
_DIGITS = r"\d+"
TRIGGERS: dict[str, str | tuple[str, ...]] = {
    "EMAIL_ADDRESS": r"@",
    "URL": r"(?i)https?://|www\d{0,3}\.|[a-z0-9-]\.[a-z]{2,}",
    # The middle of an IPv4 address; or what every IPv6 form holds: "::" or six groups ("h:h:h:h:h:h:", in the
    # full and the IPv4-embedded forms; a time of day has two). Two patterns, each led by one character range,
    # scan several times faster than their alternation (see twin.AnyOf).
    "IP_ADDRESS": (r"\d\.\d{1,3}\.\d", r":(?::|(?:[0-9A-Fa-f]{1,4}:){5})"),
    "MAC_ADDRESS": r"[0-9A-Fa-f]{2}[:-][0-9A-Fa-f]{2}[:-]|[0-9A-Fa-f]{4}\.[0-9A-Fa-f]{4}\.",
    # (Presidio's IBAN pattern ignores case too; the letters are looked for behind the digits, which scans faster.)
    "IBAN_CODE": r"(?<=[A-Za-z][A-Za-z])\d\d(?:[ -]?[A-Za-z0-9]{1,4})+",
    "CREDIT_CARD": r"\d{4}(?:[- ]?\d{3,5}){2,4}",
    "US_SSN": r"\d\d\d(?:[- .]?\d\d[- .]?\d{4}|\d\d-\d{4}|-\d{6})",
    **{
        entity: _DIGITS
        for entity in (
            "CRYPTO", "US_BANK_NUMBER", "US_DRIVER_LICENSE", "US_ITIN", "US_PASSPORT", "UK_NHS", "MEDICAL_LICENSE",
            "DATE_TIME", "UUID",
        )
    },
}
# Cheaper than a trigger and a probe (every pattern, \b-bounded, as one alternation) together, for recognizers
# whose matches are digits bounded by \b: such a match has no digit on either side. (The lookbehind comes after
# the leading digits: a pattern led by digits is tried only where they are, one led by a lookbehind everywhere.)
# A gate matches wherever one of the recognizer's patterns does, from the same place (tests/test_safety_scan_starts.py).
# For SSNs the patterns are tried only there (PatternRunner.starts): five \b-led patterns each scanning a text cost
# more than one scan for the gate's places; the card's two patterns cost less.
GATED_STARTS = frozenset({"US_SSN"})
GATES: dict[str, str] = {
    "CREDIT_CARD": r"\d{4}(?<!\d{5})(?:[- ]?\d{3,5}){3}(?!\d)",
    "US_SSN": r"\d\d\d(?<!\d\d\d\d)(?:[- .]?\d\d[- .]?\d{4}|\d\d-\d{4}|-\d{6})(?!\d)",
}
_WARM_UP = (
    "call +1 415-555-0132, 020 7946 0958, 030 12345678, 01 23 45 67 89, 03-123-4567, 98765 43210 or (11) 91234-5678; "
    "mail a.b@example.com, card 4111 1111 1111 1111, SSN 234-56-7890, IBAN DE89 3704 0044 0532 0130 00, host 10.1.2.3"
)


@dataclass(frozen=True, slots=True)
class Finding:
    start: int
    end: int
    entity: str
    score: float


def _space_before(text: str, end: int) -> int:
    """Index of the last whitespace character before `end`, or -1."""
    found = text.rfind(" ", 0, end)
    for char in "\n\t":  # (each search stops at the nearest one found so far)
        found = max(found, text.rfind(char, found + 1, end))
    return found


def _space_after(text: str, start: int) -> int:
    """Index of the first whitespace character at or after `start`, or len(text)."""
    found = len(text)
    for char in " \n\t":
        at = text.find(char, start, found)
        if at >= 0:
            found = at
    return found


def around(text: str, start: int, end: int) -> tuple[int, int]:
    """From the token before the one holding `start` to the token after the one holding `end - 1`."""
    left = _space_before(text, start)  # the whitespace just before start's token
    while left > 0 and text[left - 1].isspace():
        left -= 1
    left = _space_before(text, left) + 1 if left > 0 else 0
    right = _space_after(text, end)
    size = len(text)
    while right < size and text[right].isspace():
        right += 1
    right = _space_after(text, right) if right < size else size
    return left, right


def windows(text: str, trigger: regex.Pattern[str] | AnyOf) -> list[tuple[int, int]]:
    """The stretches of whole tokens around each trigger match, one token of margin on each side, merged.
    A match inside a run of digit groups (`1234567890 2300 5457 6624 0268`) widens to the whole run first: a
    trigger match may end a group or two before a value that ends the run does."""
    found: list[tuple[int, int]] = []
    for match in trigger.finditer(text):
        start, end = match.span()
        if found and end <= found[-1][1]:
            continue  # inside the previous window already
        end = _DIGIT_GROUPS.match(text, end).end()
        while start > 1 and text[start - 1] in _GROUP_SEPARATORS and text[start - 2].isdigit() or start > 0 and text[start - 1].isdigit():
            start -= 1
        start, end = around(text, start, end)
        if found and start <= found[-1][1]:
            found[-1] = (found[-1][0], max(end, found[-1][1]))
        else:
            found.append((start, end))
    return found


def resolve_overlaps(findings: Iterable[Finding]) -> list[Finding]:
    """Non-overlapping findings, preferring the higher score, then the longer span; in text order."""
    kept: list[Finding] = []
    for finding in sorted(findings, key=lambda f: (-f.score, f.start - f.end, f.start)):
        if all(finding.end <= other.start or finding.start >= other.end for other in kept):
            kept.append(finding)
    kept.sort(key=lambda f: f.start)
    return kept


class PiiScanner:
    """Finds the configured entities in texts. Built once per policy load; `analyze` is thread-safe."""

    def __init__(
        self,
        entities: Sequence[str],
        threshold: float,
        allow: Iterable[str] = (),
        ner_model: str | None = None,
    ) -> None:
        self.entities = tuple(entities)
        self.threshold = threshold
        self.allow = frozenset(allow)
        self._nlp, self._runners = _build_runners(self.entities, ner_model, self.counts)
        if not any(runner.needs_nlp for runner in self._runners):
            self._nlp = None
        self._steps = {ascii: _steps(self._runners, ascii) for ascii in (True, False)}
        self.analyze(_WARM_UP)  # phonenumbers compiles its larger patterns on first use: not on a request

    def analyze(self, text: str, deadline: float | None = None) -> tuple[Finding, ...]:
        """Findings in `text`; raises TimeoutError when the scan runs past `deadline` (perf_counter)."""
        artifacts = self._nlp.process_text(text, "en") if self._nlp is not None else None
        size = len(text)
        whole = [(0, size)]
        short = size <= PROBE_CHARS
        ascii = text.isascii()
        long_run_pattern, steps = self._steps[ascii]
        spans_by_trigger: dict[regex.Pattern[str] | AnyOf | None, list[tuple[int, int]]] = {None: whole}
        found = []
        long_run: int | None = None  # where the text's first LONG_RUN starts (-1: none), once a runner asks
        for runner, needs_long_run, gate, trigger, probe in steps:
            if deadline is not None and perf_counter() > deadline:
                raise TimeoutError("PII scan ran out of time")
            if needs_long_run:
                if long_run is None:
                    hit = long_run_pattern.search(text)
                    long_run = -1 if hit is None else hit.start()
                if long_run < 0:
                    continue
            # In ASCII text a scan of the whole text may start at the whitespace before the token where the
            # first possible match is: no match starts earlier (the gates' and the patterns' letters and
            # digits are then the same; a phone number's lead characters are in its token).
            if probe is not None and short:
                # Up to a few KB, a recognizer whose patterns all run in linear time scans the whole text
                # (as stock Presidio does) if its trigger and then one of its patterns occur at all: that
                # costs less than cutting the text into windows. Each of its matches starts where the
                # probe (one of them) or the gate (a match of it) first matches, or later.
                if gate is not None:  # (a gate match needing a LONG_RUN is one: it starts at the first or later)
                    hit = gate.search(text, long_run) if needs_long_run else gate.search(text)
                else:
                    hit = probe.search(text) if trigger is None or trigger.search(text) else None
                where = [] if hit is None else [(max(0, _space_before(text, hit.start())), size)] if ascii else whole
            elif needs_long_run and trigger is None and ascii:
                where = [(max(0, _space_before(text, long_run)), size)]  # (phone numbers: digit groups, LONG_RUNs)
            else:
                if trigger not in spans_by_trigger:
                    spans_by_trigger[trigger] = windows(text, trigger)
                where = spans_by_trigger[trigger]
            if not where:
                continue
            for start, end, entity, score in runner.spans(text, where, artifacts, deadline):
                value = text[start:end]
                if value in self.allow or rejected(entity, text, start, end):
                    continue
                score = _with_context(text, start, adjusted_score(entity, value, score), runner.context)
                if score >= self.threshold:
                    found.append(Finding(start, end, entity, score))
        return tuple(resolve_overlaps(found)) if len(found) > 1 else tuple(found)

    def counts(self, entity: str, text: str, start: int, end: int, score: float, context: tuple[str, ...]) -> bool:
        """Whether a recognizer's span would make it into the findings (the checks `analyze` applies)."""
        value = text[start:end]
        if value in self.allow or rejected(entity, text, start, end):
            return False
        score = adjusted_score(entity, value, score)
        return score >= self.threshold or _with_context(text, start, score, context) >= self.threshold


Step = tuple[Runner, bool, "regex.Pattern[str] | None", "regex.Pattern[str] | AnyOf | None", "regex.Pattern[str] | None"]


def _steps(runners: Sequence[Runner], ascii: bool) -> tuple[regex.Pattern[str], list[Step]]:
    """What `analyze` reads of each runner, for ASCII text or not, looked up once: (the LONG_RUN pattern,
    [(runner, whether it needs a LONG_RUN, its gate, trigger and probe patterns)])."""

    def pick(twin: Twin | None) -> regex.Pattern[str] | None:
        return None if twin is None else twin.ascii if ascii else twin.unicode

    steps = [(r, r.needs_long_run, pick(r.gate), pick(r.trigger), pick(r.probe)) for r in runners]
    return (LONG_RUN.ascii if ascii else LONG_RUN.unicode), steps


def _with_context(text: str, start: int, score: float, context: tuple[str, ...]) -> float:
    if not context or score >= 1.0:
        return score
    before = " ".join(_WORD.findall(text[max(0, start - 80) : start].lower())[-CONTEXT_WORDS:])
    if any(word in before for word in context):  # (a context word is one word: it cannot span the joins)
        return min(1.0, max(score + CONTEXT_BOOST, CONTEXT_MIN_SCORE))
    return score


def _build_runners(entities: Sequence[str], ner_model: str | None, counts: Counts) -> tuple[NlpEngine, list[Runner]]:
    engine = nlp_engine(ner_model)
    registry = RecognizerRegistry(supported_languages=["en"])
    registry.load_predefined_recognizers(nlp_engine=engine, languages=["en"])
    wanted = set(entities)
    runners: list[Runner] = []
    for recognizer in registry.get_recognizers("en", entities=list(entities)):
        covered = [e for e in recognizer.supported_entities if e in wanted]
        if not covered or (ner_model is None and any(e in NER_ENTITIES for e in covered)):
            continue
        _offline(recognizer)
        triggers = {TRIGGERS.get(e) for e in covered}
        trigger = Twin(triggers.pop()) if len(triggers) == 1 and None not in triggers else None
        if any(e in NER_ENTITIES for e in covered):
            runners.append(AnalyzeRunner(recognizer, covered, None, needs_nlp=True))
        elif isinstance(recognizer, IbanRecognizer):
            runners.append(IbanRunner(recognizer, covered, trigger))
        elif isinstance(recognizer, PhoneRecognizer):
            runners.append(PhoneRunner(recognizer, covered, None, counts))  # it finds its digit groups itself
        elif isinstance(recognizer, PatternRecognizer) and type(recognizer).analyze is PatternRecognizer.analyze:
            if isinstance(recognizer, CreditCardRecognizer):
                recognizer.patterns = [*recognizer.patterns, MASTERCARD_2_SERIES]  # a copy: the list is the class's
            runners.append(PatternRunner(recognizer, covered, trigger))
            if len(covered) == 1 and covered[0] in GATES and runners[-1].probe is not None:
                runners[-1].gate = Twin(GATES[covered[0]])
                if covered[0] in GATED_STARTS:
                    runners[-1].starts = runners[-1].gate
        else:
            runners.append(AnalyzeRunner(recognizer, covered, trigger))
    missing = wanted - {e for r in runners for e in r.entities}
    if missing:
        raise ValueError(f"no recognizer for {sorted(missing)}" + ("; set ner_model" if missing & set(NER_ENTITIES) else ""))
    return engine, runners


def _offline(recognizer: Any) -> None:
    """Presidio's email validator asks tldextract, whose default fetches the suffix list: use its bundled copy."""
    if recognizer.name == "EmailRecognizer":
        import tldextract

        extract = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)
        extract("warm.example.com")  # parse the bundled list now, not on the first request
        # tldextract reads only the host after the last "@" (unless the local part holds "/", "?" or "#"),
        # and a few domains make up most addresses: remember recent domains' answers (not addresses).
        known_domain = functools.lru_cache(maxsize=4096)(lambda domain: extract(domain).fqdn != "")

        def validate(text: str) -> bool:
            local, at, domain = text.rpartition("@")
            if at and not any(c in local for c in "/?#"):
                return known_domain(domain)
            return extract(text).fqdn != ""

        recognizer.validate_result = validate
