"""The `safety:` section of a policy file, typed. See README "Safety filters"."""

from __future__ import annotations

import importlib.util
from typing import Literal

from pydantic import Field, field_validator

from gateway.config import Strict

# Entities the pattern recognizers find without any NLP model, and those that need one (`ner_model`).
PATTERN_ENTITIES = (
    "EMAIL_ADDRESS", "PHONE_NUMBER", "CREDIT_CARD", "US_SSN", "IBAN_CODE", "IP_ADDRESS", "URL", "CRYPTO",
    "MAC_ADDRESS", "US_BANK_NUMBER", "US_DRIVER_LICENSE", "US_ITIN", "US_PASSPORT", "UK_NHS", "MEDICAL_LICENSE",
    "DATE_TIME", "UUID",
)
NER_ENTITIES = ("PERSON", "LOCATION", "NRP", "ORGANIZATION")
DEFAULT_ENTITIES = ["EMAIL_ADDRESS", "PHONE_NUMBER", "CREDIT_CARD", "US_SSN", "IBAN_CODE", "IP_ADDRESS"]

SafetyFlag = Literal["prompt_injection", "secret", "banned_term"]
PiiAction = Literal["redact", "mask", "hash", "pseudonymize", "block", "detect"]
DetectorAction = Literal["flag", "block", "off"]
SecretAction = Literal["redact", "flag", "block", "off"]


class PiiPolicy(Strict):
    entities: list[str] = Field(default_factory=lambda: list(DEFAULT_ENTITIES), description="Entity types to look for.")
    action: PiiAction = Field("redact", description="What happens to a found value on its way to a route not trusted with PII.")
    actions: dict[str, PiiAction] = Field(default_factory=dict, description="Per-entity overrides of `action`.")
    score_threshold: float = Field(0.4, ge=0, le=1, description="Findings scoring below this are ignored.")
    allow: list[str] = Field(default_factory=list, description="Exact values never treated as PII (e.g. a support address).")
    on_error: Literal["fail_closed", "fail_open"] = Field("fail_closed", description="If the scan itself fails.")
    scan_timeout_s: float = Field(0.5, gt=0, le=60, description="A text whose scan takes longer counts as a scan failure.")
    ner_model: str | None = Field(None, description="An installed spaCy package (e.g. en_core_web_sm) for PERSON, LOCATION…")
    hash_key: str | None = Field(None, repr=False, description="HMAC key for `hash`; random per policy load when unset.")
    responses: Literal["off", "redact"] = Field(
        "off", description="Scan the model's output too, and redact the listed entities (`<EMAIL_ADDRESS>`) before the client sees them."
    )

    @field_validator("entities")
    @classmethod
    def _known_entities(cls, entities: list[str]) -> list[str]:
        unknown = [e for e in entities if e not in PATTERN_ENTITIES + NER_ENTITIES]
        if unknown:
            raise ValueError(f"unknown entity type(s) {unknown}; known: {', '.join(PATTERN_ENTITIES + NER_ENTITIES)}")
        if not entities:
            raise ValueError("list at least one entity type")
        return list(dict.fromkeys(entities))

    @field_validator("ner_model")
    @classmethod
    def _installed(cls, name: str | None) -> str | None:
        if name is not None and importlib.util.find_spec(name) is None:
            raise ValueError(f"spaCy model {name!r} is not installed; install it as a package (nothing is downloaded at run time)")
        return name

    @field_validator("actions")
    @classmethod
    def _known_action_entities(cls, actions: dict[str, PiiAction]) -> dict[str, PiiAction]:
        unknown = [e for e in actions if e not in PATTERN_ENTITIES + NER_ENTITIES]
        if unknown:
            raise ValueError(f"unknown entity type(s) {unknown}")
        return actions

    def action_for(self, entity: str) -> PiiAction:
        return self.actions.get(entity, self.action)


class PromptInjection(Strict):
    action: DetectorAction = "flag"
    threshold: float = Field(0.5, gt=0, le=1, description="Scores at or above this count as an injection attempt.")


class BannedTerms(Strict):
    terms: list[str] = Field(min_length=1, description="Words or phrases, matched case-insensitively as whole words.")
    action: Literal["flag", "block"] = "block"


class Behaviour(Strict):
    """Per API key: traffic against the key's own baseline, and strikes for violations."""

    rate_factor: float = Field(5.0, gt=1, description="Flag a minute with this many times the key's usual requests or tokens.")
    min_requests_per_minute: int = Field(30, ge=1, description="Below this, a minute is never unusual.")
    strike_ttl_s: float = Field(3600, gt=0, le=7 * 86400, description="How long a violation counts against a key.")
    ban_after: int | None = Field(None, ge=1, description="Suspend a key after this many strikes (off by default: flag only).")
    ban_s: float = Field(900, gt=0, le=7 * 86400, description="How long a suspension lasts.")


class AbusePolicy(Strict):
    prompt_injection: DetectorAction | PromptInjection = "off"
    secrets: SecretAction = "off"
    banned_terms: BannedTerms | None = None
    behaviour: Behaviour | None = None

    def injection(self) -> PromptInjection:
        spec = self.prompt_injection
        return spec if isinstance(spec, PromptInjection) else PromptInjection(action=spec)


class SafetyPolicy(Strict):
    pii: PiiPolicy | None = None
    abuse: AbusePolicy | None = None
