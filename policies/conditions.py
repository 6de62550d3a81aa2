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

    __slots__ = ("model", "tenant", "endpoint", "stream", "headers", "body", "pii_entities", "safety_flags", "_prompt_tokens")

    def __init__(
        self,
        model: str,
        tenant: str,
        endpoint: str,
        stream: bool,
        headers: Mapping[bytes, bytes] | None = None,
        body: Mapping[str, Any] | None = None,
        pii_entities: frozenset[str] = frozenset(),
        safety_flags: frozenset[str] = frozenset(),
    ) -> None:
        self.model = model
        self.tenant = tenant
        self.endpoint = endpoint
        self.stream = stream
        self.headers = headers or {}
        self.body = body or {}
        self.pii_entities = pii_entities
        self.safety_flags = safety_flags
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

    def source(self, consts: list[Any]) -> str:
        """A Python expression over `f` (the facts) equivalent to holds(); values go in `consts`.

        The router compiles these into one function per policy, so the hot path runs no
        per-condition method calls. Only constant indexes appear in the code, never policy text.
        """
        return f"{_const(consts, self)}.holds(f)"


def _const(consts: list[Any], value: Any) -> str:
    consts.append(value)
    return f"K[{len(consts) - 1}]"


class OneOf(Condition):
    """A fact whose value must be one of a set. `expression` reads the fact in compiled code."""

    __slots__ = ("label", "values", "read", "expression")

    def __init__(self, label: str, values: frozenset[str], read: Callable[[RequestFacts], Any], expression: str) -> None:
        self.label = label
        self.values = values
        self.read = read
        self.expression = expression

    def source(self, consts: list[Any]) -> str:
        return f"T({self.expression}) in {_const(consts, self.values)}"

    def holds(self, facts: RequestFacts) -> bool:
        return _text(self.read(facts)) in self.values

    def miss(self, facts: RequestFacts) -> str | None:
        if self.holds(facts):
            return None
        actual = _text(self.read(facts))
        shown = "(absent)" if actual is None else repr(actual[:80])
        return f"{self.label} is {shown}, not one of {sorted(self.values)}"


class StringOneOf(OneOf):
    """A fact that is always a string: no conversion needed in compiled code."""

    def source(self, consts: list[Any]) -> str:
        return f"{self.expression} in {_const(consts, self.values)}"


class HeaderOneOf(OneOf):
    def __init__(self, name: str, values: frozenset[str]) -> None:
        super().__init__(f"header {name}", values, lambda f: f.header(name), "")
        self.name = name.lower().encode("latin-1")

    __slots__ = ("name",)

    def source(self, consts: list[Any]) -> str:
        wanted = frozenset(v.encode("latin-1") for v in self.values)
        return f"f.headers.get({_const(consts, self.name)}) in {_const(consts, wanted)}"


class MetadataOneOf(OneOf):
    __slots__ = ("key",)

    def __init__(self, key: str, values: frozenset[str]) -> None:
        super().__init__(f"metadata.{key}", values, lambda f: f.metadata(key), "")
        self.key = key

    def source(self, consts: list[Any]) -> str:
        return f"T(f.metadata({_const(consts, self.key)})) in {_const(consts, self.values)}"


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
    """Any of these names among a set-valued fact: PII entity types found, or safety flags raised."""

    __slots__ = ("entities", "fact", "label")

    def __init__(self, entities: frozenset[str], fact: str = "pii_entities", label: str = "the PII entities") -> None:
        self.entities = entities
        self.fact = fact
        self.label = label

    def holds(self, facts: RequestFacts) -> bool:
        return not self.entities.isdisjoint(getattr(facts, self.fact))

    def miss(self, facts: RequestFacts) -> str | None:
        if self.holds(facts):
            return None
        return f"none of {self.label} {sorted(self.entities)} was found"

    def source(self, consts: list[Any]) -> str:
        return f"not {_const(consts, self.entities)}.isdisjoint(f.{self.fact})"


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

    def source(self, consts: list[Any]) -> str:
        return "(" + " and ".join(p.source(consts) for p in self.parts) + ")" if self.parts else "True"


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

    def source(self, consts: list[Any]) -> str:
        return "(" + " or ".join(p.source(consts) for p in self.parts) + ")" if self.parts else "False"


class Not(Condition):
    __slots__ = ("part",)

    def __init__(self, part: Condition) -> None:
        self.part = part

    def holds(self, facts: RequestFacts) -> bool:
        return not self.part.holds(facts)

    def miss(self, facts: RequestFacts) -> str | None:
        return "the `not` condition held" if self.part.holds(facts) else None

    def source(self, consts: list[Any]) -> str:
        return f"(not {self.part.source(consts)})"


def compile_when(when: When, skip_model: bool = False) -> AllOf:
    """The condition tree of a `when`; `skip_model` leaves out a model test the caller already made."""
    parts: list[Condition] = []
    if when.model is not None and not skip_model:
        parts.append(StringOneOf("model", _texts(when.model), lambda f: f.model, "f.model"))
    if when.tenant is not None:
        parts.append(StringOneOf("tenant", _texts(when.tenant), lambda f: f.tenant, "f.tenant"))
    if when.endpoint is not None:
        parts.append(StringOneOf("endpoint", _texts(when.endpoint), lambda f: f.endpoint, "f.endpoint"))
    if when.stream is not None:
        parts.append(OneOf("stream", _texts(when.stream), lambda f: f.stream, "f.stream"))
    if when.pii is not None:
        parts.append(StringOneOf("pii", _texts(when.pii), _pii_class, "('detected' if f.pii_entities else 'none')"))
    if when.user is not None:
        parts.append(OneOf("user", _texts(when.user), lambda f: f.user, "f.user"))
    for name, wanted in (when.header or {}).items():
        parts.append(HeaderOneOf(name, _texts(wanted)))
    for key, wanted in (when.metadata or {}).items():
        parts.append(MetadataOneOf(key, _texts(wanted)))
    if when.est_prompt_tokens is not None:
        parts.append(TokenRange(when.est_prompt_tokens))
    if when.pii_entities:
        parts.append(AnyEntity(frozenset(when.pii_entities)))
    if when.flagged:
        parts.append(AnyEntity(frozenset(when.flagged), "safety_flags", "the safety flags"))
    if when.all:
        parts.append(AllOf([compile_when(w) for w in when.all]))
    if when.any:
        parts.append(AnyOf([compile_when(w) for w in when.any]))
    if when.not_ is not None:
        parts.append(Not(compile_when(when.not_)))
    return AllOf(parts)


def safety_reads(when: When) -> frozenset[str]:
    """Which findings of the safety scan a `when` looks at: "pii" (entity types found), "flags" (flags raised)."""
    reads = set()
    if when.pii is not None or when.pii_entities:
        reads.add("pii")
    if when.flagged:
        reads.add("flags")
    for part in [*(when.all or ()), *(when.any or ()), *([when.not_] if when.not_ is not None else [])]:
        reads |= safety_reads(part)
    return frozenset(reads)


def _pii_class(facts: RequestFacts) -> str:
    return "detected" if facts.pii_entities else "none"


def compile_first_match(conditions: list[Condition]) -> Callable[[RequestFacts], int]:
    """One function returning the index of the first condition that holds, or -1."""
    consts: list[Any] = []
    lines = ["def first_match(f):"]
    for index, condition in enumerate(conditions):
        lines.append(f"    if {condition.source(consts)}: return {index}")
    lines.append("    return -1")
    namespace: dict[str, Any] = {"K": tuple(consts), "T": _text}
    exec(compile("\n".join(lines), "<policy>", "exec"), namespace)  # noqa: S102 - only constant indexes
    return namespace["first_match"]
