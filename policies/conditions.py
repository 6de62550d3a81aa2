"""Route conditions, compiled once per policy load into small predicate objects.

Each condition answers `holds(facts)` on the hot path, and `miss(facts)` — why it did not hold —
for `switchyard policy explain`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from gateway.tokens import estimate_tokens, prompt_text
from policies.schema import TokenBounds, When


class RequestFacts:
    """What routing may look at. Costly facts (the prompt's token estimate) are computed on demand."""

    __slots__ = ("model", "tenant", "endpoint", "stream", "headers", "body", "pii_entities", "_prompt_tokens")

    def __init__(
        self,
        model: str,
        tenant: str,
        endpoint: str,
        stream: bool,
        headers: Mapping[bytes, bytes] | None = None,
        body: Mapping[str, Any] | None = None,
        pii_entities: frozenset[str] = frozenset(),
    ) -> None:
        self.model = model
        self.tenant = tenant
        self.endpoint = endpoint
        self.stream = stream
        self.headers = headers or {}
        self.body = body or {}
        self.pii_entities = pii_entities
        self._prompt_tokens: int | None = None

    @property
    def prompt_tokens(self) -> int:
        if self._prompt_tokens is None:
            self._prompt_tokens = estimate_tokens(prompt_text(self.body))  # type: ignore[arg-type]
        return self._prompt_tokens

    def header(self, name: str) -> str | None:
        value = self.headers.get(name.lower().encode("latin-1"))
        return value.decode("latin-1") if value is not None else None

    def metadata(self, key: str) -> Any:
        metadata = self.body.get("metadata")
        return metadata.get(key) if isinstance(metadata, dict) else None

    @property
    def user(self) -> Any:
        return self.body.get("user")


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _texts(values: Any) -> frozenset[str]:
    items = values if isinstance(values, list) else [values]
    return frozenset(t for t in (_text(v) for v in items) if t is not None)


class Condition:
    def holds(self, facts: RequestFacts) -> bool:
        raise NotImplementedError

    def miss(self, facts: RequestFacts) -> str | None:
        raise NotImplementedError


class OneOf(Condition):
    """A fact whose value must be one of a set."""

    __slots__ = ("label", "values", "read")

    def __init__(self, label: str, values: frozenset[str], read: Callable[[RequestFacts], Any]) -> None:
        self.label = label
        self.values = values
        self.read = read

    def holds(self, facts: RequestFacts) -> bool:
        return _text(self.read(facts)) in self.values

    def miss(self, facts: RequestFacts) -> str | None:
        if self.holds(facts):
            return None
        actual = _text(self.read(facts))
        shown = "(absent)" if actual is None else repr(actual[:80])
        return f"{self.label} is {shown}, not one of {sorted(self.values)}"


class TokenRange(Condition):
    __slots__ = ("bounds",)

    def __init__(self, bounds: TokenBounds) -> None:
        self.bounds = bounds

    def holds(self, facts: RequestFacts) -> bool:
        n, b = facts.prompt_tokens, self.bounds
        return (
            (b.gt is None or n > b.gt)
            and (b.gte is None or n >= b.gte)
            and (b.lt is None or n < b.lt)
            and (b.lte is None or n <= b.lte)
        )

    def miss(self, facts: RequestFacts) -> str | None:
        if self.holds(facts):
            return None
        wanted = ", ".join(f"{k} {v}" for k, v in self.bounds.model_dump(exclude_none=True).items())
        return f"est_prompt_tokens is {facts.prompt_tokens}, not {wanted}"


class AnyEntity(Condition):
    __slots__ = ("entities",)

    def __init__(self, entities: frozenset[str]) -> None:
        self.entities = entities

    def holds(self, facts: RequestFacts) -> bool:
        return not self.entities.isdisjoint(facts.pii_entities)

    def miss(self, facts: RequestFacts) -> str | None:
        if self.holds(facts):
            return None
        return f"none of the PII entities {sorted(self.entities)} was found"


class AllOf(Condition):
    __slots__ = ("parts",)

    def __init__(self, parts: list[Condition]) -> None:
        self.parts = parts

    def holds(self, facts: RequestFacts) -> bool:
        for part in self.parts:
            if not part.holds(facts):
                return False
        return True

    def miss(self, facts: RequestFacts) -> str | None:
        for part in self.parts:
            reason = part.miss(facts)
            if reason is not None:
                return reason
        return None


class AnyOf(Condition):
    __slots__ = ("parts",)

    def __init__(self, parts: list[Condition]) -> None:
        self.parts = parts

    def holds(self, facts: RequestFacts) -> bool:
        return any(part.holds(facts) for part in self.parts)

    def miss(self, facts: RequestFacts) -> str | None:
        if self.holds(facts):
            return None
        return "none of `any` held: " + "; ".join(p.miss(facts) or "" for p in self.parts)


class Not(Condition):
    __slots__ = ("part",)

    def __init__(self, part: Condition) -> None:
        self.part = part

    def holds(self, facts: RequestFacts) -> bool:
        return not self.part.holds(facts)

    def miss(self, facts: RequestFacts) -> str | None:
        return "the `not` condition held" if self.part.holds(facts) else None


def compile_when(when: When) -> AllOf:
    parts: list[Condition] = []
    for label, read in (
        ("model", lambda f: f.model),
        ("tenant", lambda f: f.tenant),
        ("endpoint", lambda f: f.endpoint),
        ("stream", lambda f: f.stream),
        ("user", lambda f: f.user),
        ("pii", lambda f: "detected" if f.pii_entities else "none"),
    ):
        wanted = getattr(when, label)
        if wanted is not None:
            parts.append(OneOf(label, _texts(wanted), read))
    for name, wanted in (when.header or {}).items():
        parts.append(OneOf(f"header {name}", _texts(wanted), lambda f, n=name: f.header(n)))
    for key, wanted in (when.metadata or {}).items():
        parts.append(OneOf(f"metadata.{key}", _texts(wanted), lambda f, k=key: f.metadata(k)))
    if when.est_prompt_tokens is not None:
        parts.append(TokenRange(when.est_prompt_tokens))
    if when.pii_entities:
        parts.append(AnyEntity(frozenset(when.pii_entities)))
    if when.all:
        parts.append(AllOf([compile_when(w) for w in when.all]))
    if when.any:
        parts.append(AnyOf([compile_when(w) for w in when.any]))
    if when.not_ is not None:
        parts.append(Not(compile_when(when.not_)))
    return AllOf(parts)
