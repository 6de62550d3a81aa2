"""The learned half of the injection detector: a linear model over words and the heuristic signals.

Trained offline by bench/train_injection.py (logistic regression, fixed seed) and shipped as
injection_model.json next to this file; loaded once when a detector is built. Each word position of the
normalised text contributes the weights of its word, of the bigram ending there and of its first five letters
(a cheap stand-in for character n-grams: inflections and unseen compounds share a prefix; a short word is its
own prefix). The text's part of the score is the best sum over any `window` consecutive positions, so an attack
pasted into a long harmless document is not diluted by it; the heuristic signals (injection.py, intent.py) add
their learned weights on top. The bias is shifted at training time so that 0.5 is the operating point chosen by leave-one-set-out
evaluation, and PromptInjection's default threshold keeps its meaning.

The best window is computed in C (_wordscore.c) when the module was built at install: the same sums in the same
order over flat tables, eight times faster; `text_part` falls back to the Python below, which stays the
reference (tests/test_wordscore.py holds the two to the same results).
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterator
from itertools import accumulate
from operator import sub
from pathlib import Path

try:  # the word part in C, built from _wordscore.c at install when a compiler was at hand; else Python does it
    from gateway.safety._wordscore import Weights as NativeWeights
    from gateway.safety._wordscore import read as native_read  # the reading before it, for injection.py
except ImportError:  # no compiler at install (tests/test_wordscore.py runs this path in a subprocess)
    NativeWeights = native_read = None

log = logging.getLogger("switchyard.safety")

MODEL_PATH = Path(__file__).with_name("injection_model.json")
PREFIX = 5


def position_features(words: list[str]) -> list[list[str]]:
    """The features at each word position, spelled as in the model file (the trainer's view of `contributions`)."""
    features = []
    previous = ""
    for word in words:
        features.append([word, previous + " " + word, word[:PREFIX] + "~"])
        previous = word
    return features


def best_window(values: list[float], window: int) -> tuple[int, float]:
    """(start, sum) of the `window` consecutive values with the largest sum; all of them when fewer."""
    if len(values) <= window:
        return 0, sum(values)
    total = sum(values[:window])
    best, start = total, 0
    for end in range(window, len(values)):
        total += values[end] - values[end - window]
        if total > best:
            best, start = total, end - window + 1
    return start, best


class LinearModel:
    """Weights read once from the shipped file; `text_part` and `signal_part` are cheap enough for every request."""

    def __init__(self, data: dict, native: bool = True) -> None:
        """`native`: use the C word part when it is built (False: Python only, as the tests compare them)."""
        self.bias: float = data["bias"]
        self.window: int = data["window"]
        self.signals: dict[str, float] = data["signals"]
        # Laid out for `contributions`, whose lookups all run in C (map over the words, no string built in Python).
        unigrams: dict[str, float] = {}
        prefixes: dict[str, float] = {}
        bigrams: dict[tuple[str, str], float] = {}
        for key, weight in data["words"].items():
            if key.endswith("~"):
                prefixes[key[:-1]] = weight
            elif " " in key:
                first, _, second = key.partition(" ")
                bigrams[first, second] = weight
            else:
                unigrams[key] = weight
        self._words = _WordWeights(prefixes)
        for word, weight in unigrams.items():
            self._words[word] = weight + prefixes.get(word[:PREFIX], 0.0)  # the sum _values would make, made once
        # A position whose bigram the model knows: the whole contribution, made once (the same float sum).
        self._pairs = {(first, second): self._words[second] + weight for (first, second), weight in bigrams.items()}
        self._words.seal()
        self._native = NativeWeights(dict(self._words), prefixes, self._pairs, PREFIX) if native and NativeWeights else None
        if native and NativeWeights is None:
            log.warning("the injection detector's C word scoring was not built (no C compiler at install): "
                        "it runs in Python, several times slower; install gcc and the Python headers and reinstall")

    @classmethod
    def load(cls, path: Path = MODEL_PATH, native: bool = True) -> LinearModel:
        return cls(json.loads(path.read_text(encoding="utf-8")), native)

    def contributions(self, words: list[str]) -> list[float]:
        """Per word position, the summed weights of the features `position_features` names there."""
        return list(self._values(words))

    def _values(self, words: list[str]) -> Iterator[float]:
        previous = [""]
        previous += words  # a list zips faster than a chain
        # A known bigram's whole contribution, else the word's own: one lookup each, no addition per word.
        return map(self._pairs.get, zip(previous, words), map(self._words.__getitem__, words))

    def text_part(self, texts: list[list[str]]) -> float:
        """The best window over the text and any decoded or de-leeted readings of it."""
        best = -math.inf
        window, native = self.window, self._native
        for words in texts:
            total = native.best_window(words, window) if native is not None else None
            if total is None:  # (C is not built, or a word is not ASCII)
                if len(words) <= window:
                    total = sum(self._values(words))
                else:
                    running = list(accumulate(self._values(words), initial=0.0))
                    total = max(map(sub, running[window:], running))
            best = max(best, total)
        return best

    def signal_part(self, hits: dict[str, float]) -> float:
        signals = self.signals
        part = signals.get("*", 0.0) * combined(hits)
        for name, weight in hits.items():
            part += signals.get(name, 0.0) * weight
        return part


UNSEEN_WORDS = 1 << 16  # how many words the model never saw `_WordWeights` remembers, at most


class _WordWeights(dict[str, float]):
    """A word's unigram weight plus its prefix's; a word the model never saw has its prefix's alone. Unseen
    words of letters are remembered too (the same value, found in C next time instead of by a Python call), up
    to UNSEEN_WORDS of them, so the table stays bounded whatever clients send."""

    __slots__ = ("_prefixes", "_full")

    def __init__(self, prefixes: dict[str, float]) -> None:
        super().__init__()
        self._prefixes = prefixes
        self._full = 0  # the size at which to stop remembering, set by `seal` once the model's words are in

    def seal(self) -> None:
        self._full = len(self) + UNSEEN_WORDS

    def __missing__(self, word: str) -> float:
        weight = self._prefixes.get(word[:PREFIX], 0.0)
        if len(self) < self._full and word.isalpha():  # numbers are too many to be worth keeping
            self[word] = weight
        return weight


# Signals that speak against an attack (talk about attacks, material pasted to work on): their learned weights decide, and they stay
# out of `combined`, which sums up the evidence for one. An override in another script stays out too: such a text
# has no words the model knows, so its own weight must carry it, and with it in `combined` training would inflate
# that sum's weight for every English text instead.
COUNTER_SIGNALS = frozenset({"discussion", "pasted"})
UNCOMBINED = COUNTER_SIGNALS | {"foreign_override"}


def combined(hits: dict[str, float]) -> float:
    """The heuristic score alone: 1 - Π(1 - weight), so two medium signals outweigh one."""
    remaining = 1.0
    for name, weight in hits.items():
        if name not in UNCOMBINED:
            remaining *= 1.0 - weight
    return 1.0 - remaining


def sigmoid(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z)) if z > -60 else 0.0
