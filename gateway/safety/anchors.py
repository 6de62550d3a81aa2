"""What must appear in a text for a phrase pattern (phrases.py) to match: its anchor words or substrings.

The injection detector (injection.py) tries a pattern only on texts holding one of its anchors, and its gate
counts a signal as possible only when they are present; both read them from here, derived once from the
patterns' own spelling.
"""

from __future__ import annotations

import re

# Substrings one of which must appear, for the patterns that do not start with a word.
_SUBSTRING_ANCHORS = {
    "\\[\\s*": ("[",),
    "<!--": ("<!--",),
    "(?:<": ("<|", "[inst", "[/inst", "<<sys", "<</sys"),
    "(?:^": ("system", "admin", "developer", "root"),
    "(?:[-": ("end of", "---"),
    "!\\[": ("![",),
}
# What must then match too before the whole pattern is searched for: forged role lines start anywhere a
# sentence does, so that search is slow, and the keyword-then-colon core rules most texts out first.
_CORES = {"(?:^": r"(?:system|admin|developer|root)[\]*\s]*(?:message|prompt|override|instruction)?\s*:"}


def anchors(pattern: str) -> tuple[frozenset[str] | None, tuple[str, ...] | None]:
    """What must appear for `pattern` to match: whole words (the first word of each alternative of a
    leading `\\b(?:a|b|…)` group, or its leading word), else substrings; (None, None): always run it."""
    for start, substrings in _SUBSTRING_ANCHORS.items():
        if pattern.startswith(start):
            return None, substrings
    if pattern.startswith("\\b") and not pattern.startswith("\\b(?:"):
        word = _LEADING_WORD.match(pattern, 2)
        return (frozenset([word.group()]), None) if word else (None, None)
    if not pattern.startswith("\\b(?:"):
        return None, None
    depth, alternatives, current = 0, [], ""
    for char in pattern[5:]:
        if char == "(":
            depth += 1
        elif char == ")":
            if depth == 0:
                break
            depth -= 1
        if char == "|" and depth == 0:
            alternatives.append(current)
            current = ""
        else:
            current += char
    alternatives.append(current)
    words: set[str] = set()
    for alternative in alternatives:
        variants = _word_variants(alternative)
        if variants is None:
            return None, None
        words.update(variants)
    return frozenset(words), None


def core(pattern: str) -> re.Pattern[str] | None:
    return next((re.compile(core) for start, core in _CORES.items() if pattern.startswith(start)), None)


def _word_variants(alternative: str) -> list[str] | None:
    """The whole words an alternative such as `ignore`, `points?`, `oublie[sz]?` or `begin(?:ning)?` can start with."""
    word = _LEADING_WORD.match(alternative)
    if word is None:
        return None
    head, rest = word.group(), alternative[word.end() :]
    if not rest or rest[0] in " '\\":
        return [head]
    if rest[0] == "?":
        return [head, head[:-1]]
    optional = _OPTIONAL_TAIL.match(rest)
    if optional:
        tails = optional.group(1).split("|") if optional.group(1) else list(optional.group(2))
        return [head] + [head + tail for tail in tails]
    return None


_LEADING_WORD = re.compile(r"[a-z0-9]+")
_OPTIONAL_TAIL = re.compile(r"(?:\(\?:([a-z|]+)\)|\[([a-z]+)\])\?")
