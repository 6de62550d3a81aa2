"""Random inputs through the C module (gateway/safety/_wordscore.c), checked against the Python path: run it under
valgrind with `make memcheck`, which fails on any memcheck error reported inside the module.

Not a pytest module (valgrind makes it take a minute or two); `make test` runs the same comparisons without
valgrind in tests/test_wordscore.py.
"""

from __future__ import annotations

import random

from gateway.safety import learned
from gateway.safety.injection import read, read_in_python
from gateway.safety.learned import LinearModel

ALPHABET = [*"aZ09 x.-@\t\n\r\x0b\x0c\x1c\x1f", "  ", "Ab1", "\n\n", "é"]


def main() -> None:
    assert learned.NativeWeights is not None and learned.native_read is not None, "the C module is not built"
    rng = random.Random(7)
    native, python = LinearModel.load(), LinearModel.load(native=False)
    known = list(python._words)[:2000]
    for _ in range(300):
        words = [rng.choice(known) if rng.random() < 0.7 else "".join(rng.choice("abcxyz019") for _ in range(rng.randint(1, 40)))
                 for _ in range(rng.randint(0, 900))]  # past the module's 512-word stack buffer too
        for window in (1, 5, 24, 1000):
            native.window = python.window = window
            assert native.text_part([words]) == python.text_part([words])
    for _ in range(3000):
        text = "".join(rng.choice(ALPHABET) for _ in range(rng.randint(0, 400)))
        assert read(text) == read_in_python(text)
    print("memcheck_wordscore: 1,200 word sequences and 3,000 texts, C and Python agree")


if __name__ == "__main__":
    main()
