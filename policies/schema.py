"""The policy file format, typed. See README "Policy reference"."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, StringConstraints, field_validator, model_validator

from gateway.config import HeaderName, Limits, Name, Requirements, Strict
from gateway.safety.schema import SafetyFlag, SafetyPolicy

EndpointName = Literal["chat", "completion", "embedding"]
ErrorClass = Annotated[
    str,
    BeforeValidator(lambda v: str(v) if isinstance(v, int) and not isinstance(v, bool) else v),
    StringConstraints(pattern=r"^(429|5xx|[45][0-9][0-9]|timeout|connect|context_length|content_policy)$")
]
Scalar = str | int | float | bool
OneOrMany = Scalar | list[Scalar]


class TokenBounds(Strict):
    gt: int | None = None
    gte: int | None = None
    lt: int | None = None
    lte: int | None = None


class When(Strict):
    """All given conditions must hold; an empty `when` matches every request."""

    model: Name | list[Name] | None = Field(None, description="Model alias(es) the client asked for.")
    tenant: Name | list[Name] | None = None
    endpoint: EndpointName | list[EndpointName] | None = None
    stream: bool | None = None
    header: dict[HeaderName, OneOrMany] | None = Field(None, description="Request header name → accepted value(s).")
    metadata: dict[str, OneOrMany] | None = Field(None, description="Body `metadata` key → accepted value(s).")
    user: OneOrMany | None = Field(None, description="Accepted value(s) of the body's `user` field.")
    est_prompt_tokens: TokenBounds | None = None
    pii: Literal["detected", "none"] | None = Field(None, description="Data class set by the safety filters.")
    pii_entities: list[str] | None = Field(None, description="Matches when any of these entity types was found.")
    flagged: list[SafetyFlag] | None = Field(None, description="Matches when the safety filters flagged any of these.")
    all: list[When] | None = None
    any: list[When] | None = None
    not_: When | None = Field(None, alias="not")

    @field_validator("header")
    @classmethod
    def _latin1_values(cls, header: dict[str, OneOrMany] | None) -> dict[str, OneOrMany] | None:
        for name, values in (header or {}).items():
            for value in values if isinstance(values, list) else [values]:
                if isinstance(value, str) and not value.isascii():
                    try:
                        value.encode("latin-1")
                    except UnicodeEncodeError:
                        raise ValueError(f"header {name}: {value!r} cannot be sent in an HTTP header (Latin-1 only)") from None
        return header


class WeightedTarget(Strict):
    target: Name
    weight: float = Field(1.0, ge=0, description="Relative share of traffic among the route's send targets.")


class Retry(Strict):
    attempts: int = Field(1, ge=1, le=10, description="Tries per target, the first included.")
    on: list[ErrorClass] = Field(default_factory=lambda: ["429", "5xx", "timeout", "connect"])
    backoff_s: float = Field(0.1, ge=0, le=60, description="First backoff; doubles per try, with full jitter.")
    max_backoff_s: float = Field(5.0, ge=0, le=600, description="Longest wait, Retry-After included.")


class Route(Strict):
    name: Name
    when: When = When()
    send: list[Name | WeightedTarget] = Field(default_factory=list, description="Targets, picked by weight.")
    deny: str | None = Field(None, description="Refuse matching requests (403) with this message.")
    sticky: Literal["user"] | None = Field(None, description="Keep each `user` on one weighted arm.")
    fallback: list[Name] = Field(default_factory=list, description="Tried in order when the chosen target fails.")
    fallback_on: list[ErrorClass] = Field(
        default_factory=lambda: ["429", "5xx", "timeout", "connect", "context_length", "content_policy"]
    )
    retry: Retry = Retry()
    require: Requirements | None = Field(None, description="Only targets whose metadata meets these may serve the route.")
    keep_pii: bool = Field(False, description="Its targets (and fallbacks) run in house: personal data is sent as is.")
    timeout_s: float | None = Field(None, gt=0, le=3600, description="Whole request, all attempts included.")
    attempt_timeout_s: float | None = Field(None, gt=0, le=3600, description="Each upstream attempt.")
    limits_per_tenant: Limits | None = Field(
        None, description="Each tenant's own limits on this route, on top of its tenant and key limits."
    )

    @model_validator(mode="after")
    def _send_or_deny(self) -> Route:
        if self.deny is None and not self.send:
            raise ValueError("a route needs `send` targets or a `deny` message")
        if self.deny is not None and (self.send or self.fallback):
            raise ValueError("a `deny` route cannot also `send` or `fallback`")
        if self.send and not any(_weight(s) > 0 for s in self.send):
            raise ValueError("at least one send target needs a weight above 0")
        return self


def _weight(entry: str | WeightedTarget) -> float:
    return entry.weight if isinstance(entry, WeightedTarget) else 1.0


class CircuitBreaker(Strict):
    consecutive_failures: int = Field(5, ge=1, description="Open after this many failures in a row.")
    error_rate: float = Field(0.5, gt=0, le=1, description="…or when this share of the window's requests failed.")
    window_s: float = Field(30.0, gt=0, le=3600)
    min_requests: int = Field(20, ge=1, description="The error rate counts only from this many requests.")
    cooldown_s: float = Field(30.0, gt=0, le=3600, description="Open this long, then one half-open probe.")


class PolicyTest(Strict):
    name: str
    request: dict[str, Any]
    tenant: Name | None = None
    endpoint: EndpointName = "chat"
    headers: dict[str, str] = Field(default_factory=dict)
    expect: dict[str, Any]

    @model_validator(mode="after")
    def _known_expectations(self) -> PolicyTest:
        unknown = set(self.expect) - {"route", "target", "fallback", "deny", "status"}
        if unknown:
            raise ValueError(f"unknown expectation(s): {', '.join(sorted(unknown))}")
        return self


class PolicyFile(Strict):
    version: Literal[1]
    routes: list[Route] = Field(default_factory=list, description="First match wins.")
    circuit_breaker: CircuitBreaker | None = None
    safety: SafetyPolicy | None = Field(None, description="PII and abuse filters; one policy file may set them.")
    tests: list[PolicyTest] = Field(default_factory=list)
