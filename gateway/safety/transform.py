"""What happens to a found value: redacted, masked, hashed or replaced by a numbered placeholder."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping

from gateway.safety.pii import Finding
from gateway.safety.slots import spliced

MASK_KEEP = 4  # trailing letters/digits a mask leaves readable, as on a card receipt


class Pseudonyms:
    """One request's placeholders: the same value always gets the same `<ENTITY_N>`.

    Numbering follows first appearance, so a resent conversation history gets the same placeholders
    on every turn.
    """

    __slots__ = ("_by_value", "_counts", "values")

    def __init__(self) -> None:
        self._by_value: dict[tuple[str, str], str] = {}
        self._counts: dict[str, int] = {}
        self.values: dict[str, str] = {}  # placeholder -> original value

    def placeholder(self, entity: str, value: str) -> str:
        key = (entity, value)
        found = self._by_value.get(key)
        if found is None:
            number = self._counts.get(entity, 0) + 1
            self._counts[entity] = number
            found = f"<{entity}_{number}>"
            self._by_value[key] = found
            self.values[found] = value
        return found


def mask(value: str) -> str:
    keep = MASK_KEEP
    out = []
    for char in reversed(value):
        if char.isalnum():
            out.append(char if keep > 0 else "*")
            keep -= 1
        else:
            out.append(char)
    return "".join(reversed(out))


class Transformer:
    """Applies the policy's per-entity actions to findings; built once per policy load."""

    def __init__(self, actions: Mapping[str, str], hash_key: bytes) -> None:
        self._actions = dict(actions)
        self._hash_key = hash_key

    def changes_anything(self, entities: Iterable[str]) -> bool:
        return any(self._actions[e] in ("redact", "mask", "hash", "pseudonymize") for e in entities)

    def apply(self, text: str, findings: Iterable[Finding], pseudonyms: Pseudonyms) -> str:
        spans = ((f.start, f.end, self.replacement(f.entity, text[f.start : f.end], pseudonyms)) for f in findings)
        return spliced(text, ((start, end, new) for start, end, new in spans if new is not None))

    def replacement(self, entity: str, value: str, pseudonyms: Pseudonyms | None) -> str | None:
        """What replaces `value`; `pseudonyms` may be None when no entity is pseudonymized."""
        action = self._actions[entity]
        if action == "redact":
            return f"<{entity}>"
        if action == "mask":
            return mask(value)
        if action == "hash":
            digest = hmac.new(self._hash_key, value.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()
            return f"<{entity}:{digest[:12]}>"
        if action == "pseudonymize":
            assert pseudonyms is not None
            return pseudonyms.placeholder(entity, value)
        return None  # detect (and block, decided before any text is changed)
