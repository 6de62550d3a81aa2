"""The injection model's word part in C (gateway/safety/_wordscore.c) gives the numbers the Python path gives.

The C module is optional at install (no compiler: Python does the work), so the two must agree to the last bit:
the gate, the verdicts and their scores must not depend on whether it was built.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.safety import learned
from gateway.safety.injection import InjectionDetector, normalise, read, read_in_python, split_words
from gateway.safety.learned import LinearModel

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
from safety_data import typical_prompts  # noqa: E402
from safety_prompts import FINAL_ATTACKS, FINAL_BENIGN, HELD_OUT_ATTACKS, HELD_OUT_BENIGN, injection_sets  # noqa: E402

NATIVE = LinearModel.load()
PYTHON = LinearModel.load(native=False)


def test_the_c_word_part_is_built_here():
    # Without it everything still works, only slower: this catches a build that failed quietly (no compiler or
    # no Python headers: `make run` prints setuptools' warning and goes on).
    assert learned.NativeWeights is not None, "gateway/safety/_wordscore.c was not built: install gcc and the Python headers"
    assert learned.native_read is not None
    assert NATIVE._native is not None and PYTHON._native is None


def _texts() -> list[str]:
    texts = [*typical_prompts(count=200), *HELD_OUT_ATTACKS, *HELD_OUT_BENIGN, *FINAL_ATTACKS, *FINAL_BENIGN]
    for attacks, benign in [injection_sets()]:
        texts += [*attacks, *benign]
    return texts


def test_every_evaluation_text_gets_the_same_word_part_and_verdict():
    native, python = InjectionDetector(model=NATIVE), InjectionDetector(model=PYTHON)
    texts = _texts()
    assert len(texts) > 500
    for text in texts:
        words = split_words(normalise(text)[0])
        assert NATIVE.text_part([words]) == PYTHON.text_part([words]), text[:80]
        assert native.score(text) == python.score(text), text[:80]


# Words the model knows (so known pairs come up), words it does not (their prefix's weight), and odd ones.
_KNOWN = sorted(word for word in PYTHON._words if word.isalnum())[:3000]
_word = st.one_of(
    st.sampled_from(_KNOWN),
    st.sampled_from(["ignore", "previous", "instructions", "system", "prompt", "you", "are", "now", "the", "a"]),
    st.text("abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=30),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_word, max_size=700), st.integers(min_value=1, max_value=40))
def test_any_word_sequence_and_window_gives_the_python_result(words, window):
    # Up to 700 words: past the C side's stack buffer (512), so its heap path runs too.
    NATIVE.window = PYTHON.window = window
    try:
        assert NATIVE.text_part([words]) == PYTHON.text_part([words])
        assert NATIVE.text_part([words, words[::-1]]) == PYTHON.text_part([words, words[::-1]])
    finally:
        NATIVE.window = PYTHON.window = LinearModel.load(native=False).window


@pytest.mark.parametrize("words", [[], ["x"], ["ignore"] * 24, ["ignore"] * 25, ["é", "ignore"], ["naïve", "prompt"]])
def test_edges_and_words_that_are_not_ascii(words):
    # A word that is not ASCII (split_words never makes one, a caller might) is left to the Python path.
    assert NATIVE.text_part([words]) == PYTHON.text_part([words])


def test_bad_arguments_are_refused_not_crashed():
    weights = NATIVE._native
    assert weights is not None
    with pytest.raises(TypeError):
        weights.best_window(("not", "a", "list"), 24)
    with pytest.raises(ValueError):
        weights.best_window(["a"], 0)
    assert weights.best_window([1, 2], 24) is None  # not str: the Python path raises its own error
    with pytest.raises(TypeError):
        learned.NativeWeights({1: 0.5}, {}, {}, 5)
    with pytest.raises(TypeError):
        learned.NativeWeights({}, {}, {("a",): 0.5}, 5)


# ----- the reading of a text (injection.read; learned.native_read in C) ---------------------------------------------


def test_every_evaluation_text_is_read_the_same():
    read_in_c = 0
    for text in _texts():
        assert read(text) == read_in_python(text), text[:80]
        read_in_c += learned.native_read(text) is not None
    assert read_in_c > 500, "most evaluation texts are ASCII: read in C"


@settings(max_examples=500, deadline=None)
@given(st.lists(st.sampled_from([*"aZ09 x.-@\t\n\r\x0b\x0c\x1c\x1f", "  ", "Ab1", "ÉÀ", "\u200b"]), max_size=150).map("".join))
def test_any_text_is_read_as_python_reads_it(text):
    # Whitespace of every ASCII kind, at the ends or alone, double spaces or none: collapsed exactly when Python
    # collapses; text that is not ASCII goes to the Python path.
    assert read(text) == read_in_python(text)
    native = learned.native_read(text)
    assert (native is None) == (not text.isascii())


def test_reading_refuses_what_is_not_text():
    with pytest.raises(TypeError):
        learned.native_read(b"bytes")


def test_without_the_c_module_the_detector_gives_the_same_verdicts():
    # As on a machine that had no compiler at install: the import fails, learned.py and injection.py use Python.
    texts = _texts()[::25]
    script = (
        "import json, logging, sys\n"
        "logging.basicConfig()\n"
        "sys.modules['gateway.safety._wordscore'] = None  # import now raises ImportError\n"
        "from gateway.safety import learned\n"
        "from gateway.safety.injection import InjectionDetector\n"
        "assert learned.NativeWeights is None and learned.native_read is None\n"
        "detector = InjectionDetector()\n"
        "print(json.dumps([[v.score, list(v.signals)] for v in map(detector.score, json.load(sys.stdin))]))\n"
    )
    run = subprocess.run([sys.executable, "-c", script], input=json.dumps(texts), capture_output=True, text=True,
                         cwd=Path(__file__).resolve().parent.parent, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "C word scoring was not built" in run.stderr, "the operator is told why scoring is slower"
    detector = InjectionDetector()
    assert json.loads(run.stdout) == [[v.score, list(v.signals)] for v in map(detector.score, texts)]
