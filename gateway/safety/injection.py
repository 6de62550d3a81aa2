"""Prompt-injection and jailbreak detection: heuristic signals and a small linear model, no network.

Text is first normalised the way attackers try to dodge filters: Unicode compatibility forms folded,
zero-width characters dropped, look-alike Cyrillic and Greek letters mapped to Latin, leetspeak digits
read as letters, and base64 blobs decoded and scanned too. Phrase signals (each with a weight) and intent
features (intent.py, for paraphrases no phrase pattern knows) find known shapes of attack; a logistic model
trained offline (learned.py, bench/train_injection.py) weighs those signals together with the words of the
text, so a phrase that also occurs in harmless requests ("developer mode" on a phone) no longer decides
alone; the phrases live in phrases.py, overrides in other languages and scripts in languages.py. Signal names
(never the matched text) say why, for headers and traces; "classifier" when the words alone made the score.

Most harmless texts skip the signal search: the model's word part is computed exactly first, and when even
every signal whose anchor words are present, at its heaviest, could not lift the text to the gate (the
default threshold), the signals are not looked for; when they could, the heaviest are looked for one at a
time until those left could not (see InjectionDetector).
"""

from __future__ import annotations

import base64
import binascii
import math
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import filterfalse

from gateway.safety.anchors import anchors, core
from gateway.safety.intent import GROUP_SHIFT, IntentScorer
from gateway.safety.languages import ASCII_VERBS, ASKS, LATIN_NOUNS, LATIN_VERBS, SCRIPT_NOUNS, SCRIPT_VERBS
from gateway.safety.learned import COUNTER_SIGNALS, UNCOMBINED, LinearModel, native_read, sigmoid
from gateway.safety.phrases import SIGNALS

_ZERO_WIDTH = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff\u00ad\u180e"), None)
_HOMOGLYPHS = str.maketrans(
    "аеорсухіјѕԁһԛԝАВЕКМНОРСТУХІЈЅαβεικνορτυχΑΒΕΖΗΙΚΜΝΟΡΤΥΧ",
    "aeopcyxijsdhqwABEKMHOPCTYXIJSabeiknoptuxABEZHIKMNOPTYX",
)
_LEET = str.maketrans("013457@$", "oieastas")
_LATIN_AND_LOOKALIKE = re.compile(r"[a-zA-Z][\u0400-\u04ff\u0370-\u03ff]|[\u0400-\u04ff\u0370-\u03ff][a-zA-Z]")
_BASE64 = re.compile(r"(?<![A-Za-z0-9+/])[A-Za-z0-9+/]{24,}={0,2}(?![A-Za-z0-9+/=])")
_SPACES = re.compile(r"\s+")

FOREIGN = ("foreign_override", 0.85)
# In the gate's cue table, signal names sit above the intent scorer's bits (families, then structure groups).
_NAME_SHIFT = 64
_INTENT_MASK = (1 << _NAME_SHIFT) - 1
_FAMILY_MASK = (1 << GROUP_SHIFT) - 1  # below the intent scorer's structure groups


def foreign_pattern() -> re.Pattern[str]:
    """Overrides in other languages (languages.py): a verb and a noun within a clause, in either order, or an ask."""

    def either(words: tuple[str, ...]) -> str:
        folded = {unicodedata.normalize("NFKC", w).translate(_HOMOGLYPHS).lower() for w in words}
        return "|".join(map(re.escape, sorted(folded, key=len, reverse=True)))

    verbs = rf"(?:(?<!\w)(?:{either(LATIN_VERBS)})(?!\w)|{either(SCRIPT_VERBS)})"
    nouns = rf"(?:(?<!\w)(?:{either(LATIN_NOUNS)})|{either(SCRIPT_NOUNS)})"
    gap = r"[^.!?。！？\n]{0,40}?"
    return re.compile(rf"{verbs}{gap}{nouns}|{nouns}{gap}{verbs}|{either(ASKS)}")


@dataclass(frozen=True, slots=True)
class Verdict:
    score: float
    signals: tuple[str, ...]  # names only, never text


def normalise(text: str) -> tuple[str, bool]:
    """Lower-case text with disguises removed, and whether any disguise was found."""
    if text.isascii():  # nothing to fold, strip or map: the common case, kept cheap
        lower = text.lower()
        return (_collapse_spaces(lower) if "  " in lower or "\n" in lower or "\t" in lower else lower), False
    folded = unicodedata.normalize("NFKC", text)
    stripped = folded.translate(_ZERO_WIDTH)
    disguised = len(stripped) != len(folded) or _LATIN_AND_LOOKALIKE.search(stripped) is not None
    plain = stripped.translate(_HOMOGLYPHS).lower()
    return _SPACES.sub(" ", plain), disguised


def _collapse_spaces(text: str) -> str:
    """`_SPACES.sub(" ", text)` at a fraction of the cost: str.split breaks at the same whitespace as \\s."""
    inner = " ".join(text.split())
    if not inner:
        return " " if text else ""
    return (" " if text[0].isspace() else "") + inner + (" " if text[-1].isspace() else "")


_WORDS = re.compile(r"[a-z0-9]+")
_LEET_WORD = re.compile(r"(?=[a-z0-9]*[a-z][a-z0-9]*[a-z])(?=[a-z0-9]*[013457])[a-z0-9]{4,}")


# Every ASCII character that cannot be part of a word, as a space: str.split then finds the words of an ASCII
# text as _WORDS.findall would, at a fraction of the cost (a byte table: bytes.translate is a plain lookup per
# character, str.translate a dict lookup).
_NOT_WORD = bytes(c if "0" <= chr(c) <= "9" or "a" <= chr(c) <= "z" else 32 for c in range(256))


def read(text: str) -> tuple[str, bool, list[str], list[str]]:
    """`normalise`, then the words of the result, and those of them holding a digit (in C for ASCII text, when
    built: learned.native_read; else `read_in_python`, which stays the reference)."""
    reading = native_read(text) if native_read is not None else None
    if reading is None:
        return read_in_python(text)
    plain, words, mixed = reading
    return plain, False, words, mixed


def read_in_python(text: str) -> tuple[str, bool, list[str], list[str]]:
    plain, disguised = normalise(text)
    words = split_words(plain)
    return plain, disguised, words, list(filterfalse(str.isalpha, words))


def _reasons(hits: dict[str, float]) -> tuple[str, ...]:
    """The names of the attack signals found; "classifier" when none was (the words alone made the score)."""
    return tuple(sorted(name for name in hits if name not in COUNTER_SIGNALS)) or ("classifier",)


def split_words(plain: str) -> list[str]:
    """The words of a normalised text: runs of a-z and 0-9."""
    return plain.encode("ascii").translate(_NOT_WORD).decode("ascii").split() if plain.isascii() else _WORDS.findall(plain)


def _long_runs(mixed: list[str]) -> bool:
    """Whether the words holding digits include a run long enough to be base64 (see `_evidence`)."""
    for word in mixed:  # plain loops: most texts have a few numbers, and a generator costs more than the test
        if len(word) >= 20:
            return True
    return False


def _leet_words(mixed: list[str]) -> bool:
    """Whether the words holding digits call for a de-leeted reading (see `_evidence`)."""
    for word in mixed:
        if not word.isdigit() and _LEET_WORD.fullmatch(word):
            return True
    return False


def _decoded_blobs(text: str) -> list[str]:
    blobs = []
    for match in _BASE64.finditer(text):
        raw = match.group()
        try:
            decoded = base64.b64decode(raw + "=" * (-len(raw) % 4), validate=True)
        except (binascii.Error, ValueError):
            continue
        try:
            plain = decoded.decode("utf-8")
        except UnicodeDecodeError:
            continue
        if sum(c.isalpha() or c.isspace() for c in plain) >= 0.85 * len(plain) and " " in plain:
            blobs.append(plain)
    return blobs


def _occurrences(plain: str, word: str) -> list[int]:
    """Where `word` starts as a whole word (letters and digits around it end a word, as in _WORDS)."""
    found, at, size = [], plain.find(word), len(word)
    while at >= 0:
        end = at + size
        if (at == 0 or not plain[at - 1].isalnum()) and (end == len(plain) or not plain[end].isalnum()):
            found.append(at)
        at = plain.find(word, end)
    return found


class InjectionDetector:
    """Built once; each signal's regex runs only on texts holding one of its anchor words.

    `gate`: the lowest threshold the verdicts are compared with. A text whose score provably stays below it
    whatever signals are found (the model's exact word part, plus the most every signal whose anchor words are
    present could add, less those already looked for one by one and found absent) is scored by the words alone;
    its score is then exact unless a signal would have fired, and below `gate` either way. Most harmless texts
    take that path and skip the full signal search.
    """

    def __init__(
        self, signals: tuple[tuple[str, float, str], ...] = SIGNALS, model: LinearModel | None = None, gate: float = 0.5
    ) -> None:
        self._signals = [
            (name, weight, re.compile(pattern), *anchors(pattern), core(pattern)) for name, weight, pattern in signals
        ]
        by_word: dict[str, list[int]] = {}
        for index, (_, _, _, words, _, _) in enumerate(self._signals):
            for word in words or ():
                by_word.setdefault(word, []).append(index)
        self._by_word = {word: tuple(indices) for word, indices in by_word.items()}
        self._anchor_words = frozenset(by_word)
        self._unanchored = tuple(index for index, (_, _, _, words, _, _) in enumerate(self._signals) if words is None)
        self._intent = IntentScorer()
        self._foreign = foreign_pattern()
        self._model = model or LinearModel.load()
        self._gate = math.log(gate / (1.0 - gate)) if gate < 1.0 else math.inf
        heaviest: dict[str, float] = {}
        for name, weight in [(s[0], s[1]) for s in self._signals] + self._intent.weights() + [FOREIGN]:
            heaviest[name] = max(heaviest.get(name, 0.0), weight)
        # For the gate, a bit per signal name: what it could add to the logit at most, and to `combined`
        # (a signal the model weighs down adds nothing); the names each anchor word or substring makes possible.
        self._bits = {name: 1 << i for i, name in enumerate(sorted(heaviest))}
        self._most = {
            self._bits[name]: (max(0.0, self._model.signals.get(name, 0.0)) * weight, 1.0 if name in UNCOMBINED else 1.0 - weight)
            for name, weight in heaviest.items()
        }
        self._star = max(0.0, self._model.signals.get("*", 0.0))
        # One table for the gate: each word's intent cues (intent.IntentScorer.cues) and, from bit _NAME_SHIFT on,
        # the signals it anchors; a foreign override verb in plain ASCII makes that signal possible.
        cues = self._intent.cues()
        if max(map(int.bit_length, cues.values())) > _NAME_SHIFT:
            raise ValueError("the intent cues have outgrown the bits below the signal names")
        for word, indices in self._by_word.items():
            cues[word] = cues.get(word, 0) | self._names_bits(self._signals[i][0] for i in indices) << _NAME_SHIFT
        for word in ASCII_VERBS:
            cues[word] = cues.get(word, 0) | self._bits[FOREIGN[0]] << _NAME_SHIFT
        self._cues = cues
        # For the branch and bound: each name's phrase signals, and the names in the order they are looked for.
        indices_of: dict[str, list[int]] = {}
        for index, signal in enumerate(self._signals):
            indices_of.setdefault(signal[0], []).append(index)
        self._indices_of = {name: tuple(indices) for name, indices in indices_of.items()}

        def most(name: str) -> float:
            logit, keep = self._most[self._bits[name]]
            return logit + self._star * (1.0 - keep)

        self._heaviest_first = [(name, self._bits[name]) for name in sorted(heaviest, key=most, reverse=True)]
        self._cue_words = frozenset(cues)
        # Grouped by a leading punctuation mark, whose absence (one memchr) rules the whole group out.
        groups: dict[str, list[tuple[int, str]]] = {}
        for i in self._unanchored:
            for substring in self._signals[i][4] or ("",):
                lead = substring[:1] if substring[:1] in "<[!-" else ""
                groups.setdefault(lead, []).append((self._bits[self._signals[i][0]], substring))
        self._substring_bits = tuple((lead, tuple(members)) for lead, members in groups.items())

    def _names_bits(self, names: Iterable[str]) -> int:
        bits = 0
        for name in names:
            bits |= self._bits[name]
        return bits

    def score(self, text: str) -> Verdict:
        plain, disguised, words, mixed = read(text)
        model = self._model
        if _long_runs(mixed):  # maybe base64: decoded readings too, the rare case, as `evidence` finds them
            hits, texts = self._evidence(text, plain, disguised, words, mixed)
            learned = model.text_part(texts)
        else:
            readings = [(plain, words)]
            if _leet_words(mixed):
                leet = plain.translate(_LEET)
                readings.append((leet, split_words(leet)))
            learned = model.text_part([words for _, words in readings])
            if not disguised and self._below_gate(model.bias + learned, readings):
                return Verdict(round(sigmoid(model.bias + learned), 6), ("classifier",))
            hits = {}
            for reading, words in readings:  # in `_evidence`'s order, so the signal part sums alike
                self._match(reading, hits, words)
            if disguised and hits:
                hits["disguised"] = 0.3
        score = sigmoid(model.bias + model.signal_part(hits) + learned)
        # With no heuristic signal, the words alone (the linear model) made the score: say so, so a flagged
        # verdict always names a reason.
        return Verdict(round(score, 6), _reasons(hits))

    def full_score(self, text: str) -> Verdict:
        """`score` without the gate: every signal looked for (what the gate is checked against)."""
        hits, texts = self.evidence(text)
        model = self._model
        score = sigmoid(model.bias + model.signal_part(hits) + model.text_part(texts))
        return Verdict(round(score, 6), _reasons(hits))

    def evidence(self, text: str) -> tuple[dict[str, float], list[list[str]]]:
        """The heuristic signals found, and the words of each reading of the text (plain, de-leeted, decoded)."""
        plain, disguised, words, mixed = read(text)
        return self._evidence(text, plain, disguised, words, mixed)

    def _evidence(
        self, text: str, plain: str, disguised: bool, words: list[str], mixed: list[str]
    ) -> tuple[dict[str, float], list[list[str]]]:
        hits: dict[str, float] = {}
        self._match(plain, hits, words)
        texts = [words]
        if _leet_words(mixed):  # 1gn0r3 pr3v10us 1nstruct10ns
            texts.append(self._match(plain.translate(_LEET), hits))
        if _long_runs(mixed):  # a base64 blob has long alphanumeric runs, digits among them
            for blob in _decoded_blobs(text):
                before = dict(hits)
                texts.append(self._match(normalise(blob)[0], hits))
                if hits != before:
                    hits["encoded"] = 0.3
        if disguised and hits:
            hits["disguised"] = 0.3
        return hits, texts

    def _below_gate(self, base: float, readings: list[tuple[str, list[str]]]) -> bool:
        """Whether the score provably stays below the gate whatever signals are found, `base` being the logit
        without them. Branch and bound: the signals whose anchors are present bound what they could add; the
        heaviest are then looked for one at a time, each found absent leaving the bound, until the bound falls
        below the gate (no signal needed) or one is found (the full search decides)."""
        gate = self._gate - 1e-9  # rounding
        bits, families = self._possible(readings)
        if base + self._most_signals(bits) < gate:
            return True
        views = [(plain, words, set(words), {}) for plain, words in readings]
        for name, bit in self._heaviest_first:
            if not bits & bit:
                continue
            if self._found(name, views, families):
                return False
            bits &= ~bit
            if base + self._most_signals(bits) < gate:
                return True
        return False

    def _possible(self, readings: list[tuple[str, list[str]]]) -> tuple[int, int]:
        """The bits of the signals whose anchors are present in some reading of the text, and the intent cue
        families of its words (intent.IntentScorer.found)."""
        cues = bits = 0
        table = self._cues
        for plain, words in readings:
            for word in self._cue_words.intersection(words):
                cues |= table[word]
            if not plain.isascii():
                bits |= self._bits[FOREIGN[0]]
            for lead, members in self._substring_bits:
                if lead in plain:
                    for bit, substring in members:
                        if substring in plain:
                            bits |= bit
        bits |= cues >> _NAME_SHIFT | self._names_bits(self._intent.possible(cues & _INTENT_MASK))
        return bits, cues & _FAMILY_MASK

    def _most_signals(self, bits: int) -> float:
        """An upper bound on the signals' part of the logit: every signal in `bits` at its heaviest."""
        most, remaining = 0.0, 1.0
        while bits:  # lowest bit first: the order of the names, so the sums come out the same every time
            bit = bits & -bits
            logit, keep = self._most[bit]
            most += logit
            remaining *= keep
            bits ^= bit
        return most + self._star * (1.0 - remaining)

    def _found(self, name: str, views: list[tuple[str, list[str], set[str], dict[str, list[int]]]], families: int) -> bool:
        """Whether `_match` would record `name` on some reading: (text, words, their set, word starts so far)."""
        for plain, words, vocabulary, starts in views:
            for index in self._indices_of.get(name, ()):
                anchored = self._signals[index][3]  # ruled out here when its anchor words are absent: no call
                if (anchored is None or not anchored.isdisjoint(vocabulary)) and self._fires(index, plain, vocabulary, starts):
                    return True
            if self._intent.found(name, plain, words, vocabulary, families):
                return True
            if name == FOREIGN[0] and self._foreign_found(plain, vocabulary):
                return True
        return False

    def _fires(self, index: int, plain: str, vocabulary: set[str], starts: dict[str, list[int]]) -> bool:
        """Whether phrase signal `index` matches; `starts` caches where each anchor word starts in `plain`.

        A pattern that begins with one of its anchor words can only match where such a word starts,
        so it is tried there alone instead of searched for through the whole text.
        """
        _, _, pattern, words, substrings, first = self._signals[index]
        if words is not None:
            for word in words.intersection(vocabulary):
                at_all = starts.get(word)
                if at_all is None:
                    at_all = starts[word] = _occurrences(plain, word)
                for at in at_all:
                    if pattern.match(plain, at):
                        return True
            return False
        if substrings is not None:
            return (
                any(s in plain for s in substrings)
                and (first is None or first.search(plain) is not None)
                and pattern.search(plain) is not None
            )
        return pattern.search(plain) is not None

    def _foreign_found(self, plain: str, vocabulary: set[str]) -> bool:
        return (not plain.isascii() or not ASCII_VERBS.isdisjoint(vocabulary)) and self._foreign.search(plain) is not None

    def _match(self, plain: str, hits: dict[str, float], seen: list[str] | None = None) -> list[str]:
        """Records the signals found in `plain`; returns its words in order (`seen`, when the caller has them)."""
        if seen is None:
            seen = split_words(plain)
        vocabulary = set(seen)
        starts: dict[str, list[int]] = {}
        candidates = set(self._unanchored)
        for word in self._anchor_words & vocabulary:
            candidates.update(self._by_word[word])
        signals = self._signals
        for index in candidates:  # only signals one of whose anchor words is here; each name keeps its heaviest hit
            name, weight = signals[index][:2]
            if weight > hits.get(name, 0.0) and self._fires(index, plain, vocabulary, starts):
                hits[name] = weight
        self._intent.signals(plain, seen, vocabulary, hits)
        name, weight = FOREIGN
        if name not in hits and self._foreign_found(plain, vocabulary):
            hits[name] = weight
        return seen
