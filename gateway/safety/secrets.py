"""Credentials pasted into prompts: provider API keys, tokens, private keys, passwords.

Each pattern marks the span to remove; for `password: …`-style assignments only the value, so the
model still sees that a password was there.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

# (kind, pattern); group "value" (or "spoken", for "my password is …", which must look like one), when
# present, is the part to redact.
_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (kind, re.compile(pattern))
    for kind, pattern in (
        ("private_key", r"-----BEGIN (?:[A-Z]+ )*PRIVATE KEY(?: BLOCK)?-----[\s\S]*?(?:-----END (?:[A-Z]+ )*PRIVATE KEY(?: BLOCK)?-----|$)"),
        ("aws_access_key", r"\b(?:AKIA|ASIA|AGPA|AIDA|AROA|ANPA|ANVA|AIPA)[0-9A-Z]{16}\b"),
        ("github_token", r"\b(?:gh[pousr]_[A-Za-z0-9]{36,255}|github_pat_[A-Za-z0-9_]{60,255})\b"),
        ("gitlab_token", r"\bglpat-[A-Za-z0-9_-]{20,}\b"),
        ("anthropic_key", r"\bsk-ant-[A-Za-z0-9_-]{20,}\b"),
        ("openai_key", r"\bsk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_-]{20,}\b"),
        ("stripe_key", r"\b(?:sk|rk|pk)_(?:live|test)_[A-Za-z0-9]{16,}\b"),
        ("slack_token", r"\bxox[abposr]-[A-Za-z0-9-]{10,}\b"),
        ("slack_webhook", r"https://hooks\.slack\.com/services/[A-Za-z0-9/_-]{20,}"),
        ("google_api_key", r"\bAIza[0-9A-Za-z_-]{35}\b"),
        ("jwt", r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\b"),
        ("credentials_in_url", r"\b[a-z][a-z0-9+.-]{1,20}://[^\s:/@]{1,64}:(?P<value>[^\s@/]{3,128})@[^\s/]+"),
        (
            "password",
            r"(?i)\b(?:password|passwd|pwd|passphrase|secret|api[_-]?key|access[_-]?token|auth[_-]?token|client[_-]?secret|secret[_-]?key)\b"
            r"[\"']?\s*(?:[:=]\s*[\"']?(?P<value>[^\s\"',;]{6,128})|(?:is|was)\s+[\"']?(?P<spoken>(?=[^\s\"',;]*[\d!@#$%^&*])[^\s\"',;]{6,128}))",
        ),
    )
)


# A literal each kind's match must contain (lower-cased for the password-like kinds): most texts hold
# none, and a substring test costs far less than the pattern.
_MUST_CONTAIN = {
    "private_key": ("PRIVATE KEY",), "aws_access_key": ("AKIA", "ASIA", "AGPA", "AIDA", "AROA", "ANPA", "ANVA", "AIPA"),
    "github_token": ("ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_"), "gitlab_token": ("glpat-",),
    "anthropic_key": ("sk-ant-",), "openai_key": ("sk-",), "stripe_key": ("_live_", "_test_"), "slack_token": ("xox",),
    "slack_webhook": ("hooks.slack.com",), "google_api_key": ("AIza",), "jwt": ("eyJ",), "credentials_in_url": ("://",),
}
# What the password-like pattern's keywords contain (each keyword holds one of these).
_PASSWORD_WORDS = ("pass", "pwd", "secret", "api_key", "api-key", "apikey", "token")


def _gated(needles: set[str]) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """The literals grouped by a character each holds that prose rarely does (its first one that is not a
    lower-case letter, else its last): a one-character `in` is a memchr, far cheaper than a substring search,
    and most texts hold none of these characters, or only a few."""
    groups: dict[str, list[str]] = {}
    for needle in sorted(needles):
        gate = next((c for c in needle if not ("a" <= c <= "z")), needle[-1])
        groups.setdefault(gate, []).append(needle)
    return tuple((gate, tuple(group)) for gate, group in groups.items())


_GATED = _gated({n for needles in _MUST_CONTAIN.values() for n in needles})


def find_secrets(text: str) -> Iterator[tuple[int, int, str]]:
    """(start, end, kind) of each secret, in text order, without overlaps."""
    present = {n for gate, needles in _GATED if gate in text for n in needles if n in text}
    lower = text.lower()
    words = any(w in lower for w in _PASSWORD_WORDS)
    if not present and not words:
        return iter(())
    found: list[tuple[int, int, str]] = []
    for kind, pattern in _PATTERNS:
        needles = _MUST_CONTAIN.get(kind)
        if needles is not None and present.isdisjoint(needles):
            continue
        if needles is None and not words:
            continue
        for match in pattern.finditer(text):
            value = next((name for name in ("value", "spoken") if name in pattern.groupindex and match.group(name)), None)
            start, end = match.span(value) if value else match.span()
            if all(end <= s or start >= e for s, e, _ in found):
                found.append((start, end, kind))
    found.sort()
    return iter(found)
