"""What a Presidio pattern's text tells before it runs: how long a window it may scan without a timeout, and
which characters every match holds. Read with the stdlib's own regex parser (Presidio's patterns are written
for `re`); a pattern it cannot read gets the cautious answer.
"""

from __future__ import annotations

import re._parser as sre_parser  # the stdlib's own regex parser, to read a pattern's repetitions
from re._constants import (
    ANY,
    ASSERT,
    ASSERT_NOT,
    ATOMIC_GROUP,
    BRANCH,
    GROUPREF_EXISTS,
    IN,
    LITERAL,
    MAX_REPEAT,
    MAXREPEAT,
    MIN_REPEAT,
    NOT_LITERAL,
    POSSESSIVE_REPEAT,
    SUBPATTERN,
)
from typing import Any

_REPEATS = (MAX_REPEAT, MIN_REPEAT, POSSESSIVE_REPEAT)
_SINGLE = (IN, LITERAL, NOT_LITERAL, ANY)  # what matches exactly one character
QUADRATIC_WINDOW = 256  # characters: n² steps of a backtracking matcher stay well under a millisecond
MAX_NESTED_WORK = 64  # nested bounded repetitions whose maxima multiply past this are treated as unbounded


def untimed_window(pattern: str) -> int | None:
    """The longest window `pattern` may scan without a timeout: any (None) for a pattern without unbounded
    (or deeply nested) repetition, whose work per starting position is small and bounded (linear time);
    QUADRATIC_WINDOW for one with a single unbounded run of one character class (at most quadratic); 0
    for anything else (Presidio's URL pattern takes seconds on 2 KB of "a.a.a."), or what the stdlib
    parser cannot read.
    """
    try:
        count = _unbounded(sre_parser.parse(pattern), 1)
    except Exception:  # noqa: BLE001 - syntax only the `regex` module knows: assume the worst
        return 0
    return None if count == 0 else QUADRATIC_WINDOW if count == 1 else 0


def _unbounded(items: Any, factor: int) -> int:
    """How many unbounded repetitions `items` holds; 2 or more for any that is not a simple one, or for
    bounded repetitions nested so deep that the work per position explodes (`factor`: the product of the
    enclosing repetitions' maxima)."""
    count = 0
    for op, av in items:
        if op in _REPEATS:
            body = av[2]
            if av[1] == MAXREPEAT:
                count += 1 if factor == 1 and len(body) == 1 and body[0][0] in _SINGLE else 2
                count += _unbounded(body, MAX_NESTED_WORK + 1)
            else:
                inner = factor * av[1] if av[1] > 1 else factor  # (an optional part repeats nothing)
                count += 2 if inner > MAX_NESTED_WORK else _unbounded(body, inner)
        elif op is SUBPATTERN:
            count += _unbounded(av[3], factor)
        elif op is BRANCH:
            count += sum(_unbounded(alternative, factor) for alternative in av[1])
        elif op in (ASSERT, ASSERT_NOT):
            count += _unbounded(av[1], factor)
        elif op is ATOMIC_GROUP:
            count += _unbounded(av, factor)
        elif op is GROUPREF_EXISTS:
            count += 2
    return count


def required(pattern: str) -> frozenset[str]:
    """Characters (other than letters, which case-insensitive flags would bend) every match of `pattern` contains."""
    try:
        return _required(sre_parser.parse(pattern))
    except Exception:  # noqa: BLE001 - syntax only the `regex` module knows: no shortcut
        return frozenset()


def _required(sequence: Any) -> frozenset[str]:
    found: set[str] = set()
    for op, av in sequence:
        if op is LITERAL and not chr(av).isalpha():
            found.add(chr(av))
        elif op in _REPEATS and av[0] >= 1:
            found |= _required(av[2])
        elif op is SUBPATTERN:
            found |= _required(av[3])
        elif op is BRANCH:
            found |= frozenset.intersection(*(_required(alternative) for alternative in av[1]))
    return frozenset(found)
