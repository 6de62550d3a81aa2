"""Inspect: what a request carries (personal data, injection attempts, secrets, banned terms) and what
the policy says to do about it. Built once per policy load; a reload swaps it with the router.

Detection runs before the route is decided, so routes can match on what was found (`pii: detected`,
`flagged: [prompt_injection]`). PII actions apply after: a route marked `keep_pii` (its targets run in
house) gets the body as sent; any other gets a redacted copy, or a 403 for entities set to `block`.
Every text is scanned once: results are cached by a digest of the text (chat clients resend the whole
conversation every turn), a request with a lot of new text is scanned in a worker thread so the
event loop keeps serving, and the scans of requests that arrive together run together, detector by detector
(safety/batch.py).
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
import os
import re
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from time import perf_counter
from typing import TYPE_CHECKING, Any

from adapters.base import UpstreamReply
from gateway.errors import GatewayError
from gateway.exchange import Exchange
from gateway.tokens import estimate_tokens
from gateway.safety.batch import Batcher
from gateway.safety.behaviour import BehaviourBook, unusual
from gateway.safety.injection import InjectionDetector, Verdict
from gateway.safety.restore import Restorer
from gateway.safety.schema import AbusePolicy, PiiPolicy, SafetyPolicy
from gateway.safety.secrets import find_secrets
from gateway.safety.slots import Path, Slot, is_json_text, replaced, spliced, text_slots

if TYPE_CHECKING:
    from gateway.safety.responses import ReplyRedactor  # imported with Presidio, only for a policy that asks

log = logging.getLogger("switchyard.safety")

OFFLOAD_CHARS = 4096  # new text beyond this is scanned off the event loop
CACHE_ENTRIES = 8192
_NOTHING = Verdict(0.0, ())


@dataclass(frozen=True, slots=True)
class TextReport:
    """Everything the detectors found in one text; positions only, never values."""

    pii: tuple[Any, ...]  # safety.pii.Finding
    injection: Verdict | None  # None: not scored, the text came from a non-user message
    secrets: tuple[tuple[int, int, str], ...]
    entities: frozenset[str] = frozenset()  # the PII entity types in `pii`


_CLEAN = TextReport((), _NOTHING, ())


class Screening:
    """One request's findings, and what they do to its body and reply."""

    __slots__ = ("pii_entities", "flags", "_slots", "_reports", "_engine", "restorer", "redactor")

    def __init__(self, engine: SafetyEngine | None = None, slots: Sequence[Slot] = (), reports: Sequence[TextReport] = ()) -> None:
        self._engine = engine
        self._slots = slots
        self._reports = reports
        entities: frozenset[str] = frozenset()
        for report in reports:
            if report.entities:
                entities = entities | report.entities if entities else report.entities
        self.pii_entities = entities
        self.flags: frozenset[str] = frozenset()
        self.restorer: Restorer | None = None
        self.redactor = engine.replies if engine is not None else None  # None unless `responses: redact`

    def body_for(self, body: dict[str, Any], keep_pii: bool, exchange: Exchange) -> dict[str, Any]:
        """The body to send on the decided route: as is, redacted, or refused (403) for blocked PII."""
        engine = self._engine
        if engine is None or not (self.pii_entities or engine.redacts_secrets):
            return body
        return engine.protect(body, self._slots, self._reports, keep_pii, self, exchange)

    async def redact(self, reply: UpstreamReply, exchange: Exchange) -> None:
        """PII in the model's output redacted (`responses: redact`), before restore puts the client's values back."""
        redactor = self.redactor
        assert redactor is not None
        if reply.body is not None:
            if len(reply.body) > OFFLOAD_CHARS:
                reply.body = await asyncio.to_thread(redactor.redact_json, reply.body, exchange)
            else:
                reply.body = redactor.redact_json(reply.body, exchange)
        if reply.events is not None:
            reply.events = redactor.redact_stream(reply.events, exchange)

    def restore(self, reply: UpstreamReply) -> None:
        if self.restorer is None:
            return
        if reply.body is not None:
            reply.body = self.restorer.restore_json(reply.body)
        if reply.events is not None:
            reply.events = self.restorer.restore_stream(reply.events)


NO_SCREENING = Screening()


class SafetyEngine:
    def __init__(self, policy: SafetyPolicy | None, behaviour: BehaviourBook | None = None) -> None:
        policy = policy or SafetyPolicy()
        self.pii: PiiPolicy | None = policy.pii
        self.abuse: AbusePolicy = policy.abuse or AbusePolicy()
        self.active = self.pii is not None or policy.abuse is not None
        self._scanner = None
        self._transformer = None
        self._pseudonyms: Any = None  # transform.Pseudonyms, imported with Presidio only for a PII policy
        self._numbers = False  # whether an entity is pseudonymized (numbered placeholders, restored in replies)
        self.replies: ReplyRedactor | None = None  # `responses: redact`: scans the model's output
        if self.pii is not None:
            from gateway.safety.pii import PiiScanner  # Presidio loads only when a policy asks for PII detection
            from gateway.safety.transform import Pseudonyms, Transformer

            self._pseudonyms = Pseudonyms
            self._scan_timeout = self.pii.scan_timeout_s
            self._scanner = PiiScanner(self.pii.entities, self.pii.score_threshold, self.pii.allow, self.pii.ner_model)
            key = self.pii.hash_key.encode() if self.pii.hash_key else os.urandom(32)
            self._transformer = Transformer({e: self.pii.action_for(e) for e in self.pii.entities}, key)
            self._numbers = any(self.pii.action_for(e) == "pseudonymize" for e in self.pii.entities)
            if self.pii.responses == "redact":
                from gateway.safety.responses import ReplyRedactor

                self.replies = ReplyRedactor(self._scanner, self._scan_timeout, self.pii.on_error == "fail_closed")
            # What a set of found entity types means on a route that gets redacted text: the types set to block,
            # and the events to record. Few distinct sets occur: remembered, not worked out per request.
            self._pii_outcome = functools.lru_cache(maxsize=256)(self._outcome)
        self._injection = self.abuse.injection()
        self._detector = InjectionDetector(gate=self._injection.threshold) if self._injection.action != "off" else None
        self.redacts_secrets = self.abuse.secrets == "redact"
        terms = self.abuse.banned_terms
        self._banned = re.compile(r"\b(?:" + "|".join(re.escape(t.lower()) for t in terms.terms) + r")\b") if terms else None
        self._behaviour = behaviour if self.abuse.behaviour is not None else None
        self._cache: OrderedDict[bytes, TextReport] = OrderedDict()
        self._batch: Batcher[list[tuple[str, bool]], list[TextReport]] = Batcher(self._scan_jobs)

    async def inspect(self, body: dict[str, Any], key_id: str, exchange: Exchange) -> Screening:
        """Scans the request; raises GatewayError (403) when a detector set to `block` fires."""
        if not self.active:
            return NO_SCREENING
        slots = text_slots(body)
        if self._behaviour is not None:
            await self._check_behaviour(key_id, slots, exchange)
        reports = await self._reports(slots, exchange)
        screening = Screening(self, slots, reports)
        found = self._abuse(slots, reports)
        if found and self._behaviour is not None:
            assert self.abuse.behaviour is not None
            if await self._behaviour.strike(key_id, self.abuse.behaviour):
                exchange.safety_events += (("behaviour", "ban"),)
        for kind, action, _ in found:
            exchange.safety_events += ((kind, action),)
        for kind, action, message in found:
            if action == "block":
                raise GatewayError(403, message, code=f"{kind}_detected")
        screening.flags = frozenset(kind for kind, _, _ in found)
        return screening

    def detect(self, body: dict[str, Any]) -> tuple[frozenset[str], frozenset[str]]:
        """What inspect would tell routing about `body` (PII entity types, safety flags), acting on nothing:
        for `switchyard policy test` and `explain`."""
        if not self.active:
            return frozenset(), frozenset()
        slots = text_slots(body)
        reports = self._scan_all([(slot.text, slot.from_user) for slot in slots])
        return frozenset(f.entity for r in reports for f in r.pii), frozenset(kind for kind, _, _ in self._abuse(slots, reports))

    # ----- scanning ---------------------------------------------------------------------------------

    async def _reports(self, slots: list[Slot], exchange: Exchange) -> list[TextReport]:
        cache = self._cache
        keys = [hashlib.blake2b(s.text.encode("utf-8", "surrogatepass"), digest_size=16).digest() for s in slots]
        reports: list[TextReport | None] = []
        missing: dict[bytes, tuple[str, bool]] = {}  # text, and whether it needs an injection score
        for key, slot in zip(keys, slots):
            report = cache.get(key)
            if report is not None and (report.injection is not None or not slot.from_user):
                cache.move_to_end(key)
            else:
                report = None
                missing[key] = (slot.text, slot.from_user or missing.get(key, ("", False))[1])
            reports.append(report)
        if not missing:
            return reports  # type: ignore[return-value]  # (all found)
        jobs = list(missing.values())
        try:
            if sum(len(text) for text, _ in jobs) > OFFLOAD_CHARS:
                fresh = await asyncio.to_thread(self._scan_all, jobs)
            else:
                fresh = await self._batch.run(jobs)  # with the other requests of this loop turn
        except Exception as exc:  # noqa: BLE001 - a detector failing must not take the gateway down
            return self._scan_failed(exc, slots, exchange)
        scanned = dict(zip(missing, fresh))
        cache.update(scanned)
        while len(cache) > CACHE_ENTRIES:
            cache.popitem(last=False)
        return [r if r is not None else scanned[k] for r, k in zip(reports, keys)]

    def _scan_all(self, texts: list[tuple[str, bool]]) -> list[TextReport]:
        """One request's texts (text, from a user), scanned here and now; raises what a detector raised."""
        reports = self._scan_jobs([texts])[0]
        if isinstance(reports, Exception):
            raise reports
        return reports

    def _scan_jobs(self, jobs: list[list[tuple[str, bool]]]) -> list[list[TextReport] | Exception]:
        """The reports for several requests' texts, or the error that failed a request's scan. Each detector goes
        over every text in turn, rather than each text through every detector: a detector's tables and patterns
        stay in the CPU caches from one text to the next."""
        texts = [(index, text, from_user) for index, job in enumerate(jobs) for text, from_user in job]
        failed: dict[int, Exception] = {}
        pii = self._each(texts, failed, self._pii) if self._scanner is not None else [()] * len(texts)
        # Only user text counts for injection (see _abuse): an assistant's or system's text is not scored,
        # unless it comes back as a user's (then it is scanned again).
        injection = self._each(texts, failed, self._injection_of) if self._detector is not None else [_NOTHING] * len(texts)
        secrets = self._each(texts, failed, self._secrets) if self.abuse.secrets != "off" else [()] * len(texts)
        reports: list[list[TextReport] | Exception] = [[] for _ in jobs]
        for (index, _, _), found, verdict, secret in zip(texts, pii, injection, secrets):
            if index not in failed:
                report = _CLEAN if not found and not secret and verdict is _NOTHING else TextReport(
                    found, verdict, secret, frozenset(f.entity for f in found)
                )
                reports[index].append(report)  # type: ignore[union-attr]
        for index, exc in failed.items():
            reports[index] = exc
        return reports

    @staticmethod
    def _each(texts: list[tuple[int, str, bool]], failed: dict[int, Exception], detect: Callable[[str, bool], Any]) -> list[Any]:
        """`detect` over every text of the requests not failed yet; a request whose text makes it raise fails."""
        found: list[Any] = []
        for index, text, from_user in texts:
            if index in failed:
                found.append(None)
                continue
            try:
                found.append(detect(text, from_user))
            except Exception as exc:  # noqa: BLE001 - it fails this request's scan only
                failed[index] = exc
                found.append(None)
        return found

    def _pii(self, text: str, from_user: bool) -> tuple[Any, ...]:
        assert self._scanner is not None
        return self._scanner.analyze(text, perf_counter() + self._scan_timeout)

    def _injection_of(self, text: str, from_user: bool) -> Verdict | None:
        assert self._detector is not None
        return self._detector.score(text) if from_user else None

    @staticmethod
    def _secrets(text: str, from_user: bool) -> tuple[tuple[int, int, str], ...]:
        return tuple(find_secrets(text))

    def _scan_failed(self, exc: Exception, slots: list[Slot], exchange: Exchange) -> list[TextReport]:
        log.error("safety scan failed: %s", type(exc).__name__)  # the text itself is never logged
        if self.pii is not None and self.pii.on_error == "fail_closed":
            exchange.safety_events += (("pii", "error"),)
            raise GatewayError(503, "The safety check could not run, so the request was not sent.", code="safety_unavailable")
        exchange.safety_events += (("pii", "error"),)
        return [_CLEAN for _ in slots]

    # ----- abuse --------------------------------------------------------------------------------------

    def _abuse(self, slots: list[Slot], reports: list[TextReport]) -> list[tuple[str, str, str]]:
        """(kind, action, message for a refusal) per detector that fired."""
        found: list[tuple[str, str, str]] = []
        if self._detector is not None:
            threshold = self._injection.threshold
            verdicts = [
                r.injection for s, r in zip(slots, reports) if s.from_user and r.injection is not None and r.injection.score >= threshold
            ]
            if verdicts:
                signals = ", ".join(sorted({name for v in verdicts for name in v.signals}))
                found.append(("prompt_injection", self._injection.action,
                              f"The request looks like a prompt-injection or jailbreak attempt ({signals})."))
        if self.abuse.secrets != "off" and any(r.secrets for r in reports):
            kinds = ", ".join(sorted({kind for r in reports for _, _, kind in r.secrets}))
            found.append(("secret", self.abuse.secrets, f"The request contains credentials ({kinds})."))
        terms = self.abuse.banned_terms
        if terms is not None and self._banned is not None and any(self._banned.search(s.text.lower()) for s in slots if s.from_user):
            found.append(("banned_term", terms.action, "The request contains a term this service does not accept."))
        return found

    async def _check_behaviour(self, key_id: str, slots: list[Slot], exchange: Exchange) -> None:
        assert self._behaviour is not None and self.abuse.behaviour is not None
        tokens = estimate_tokens("".join(s.text for s in slots))
        minute = await self._behaviour.observe(key_id, tokens)
        if minute.banned_ms > 0:
            exchange.safety_events += (("behaviour", "block"),)
            seconds = str(max(1, round(minute.banned_ms / 1000))).encode()
            raise GatewayError(
                403, "This API key is suspended for a while after repeated policy violations.",
                code="key_suspended", headers=[(b"retry-after", seconds)],
            )
        if unusual(minute, self.abuse.behaviour):
            exchange.safety_events += (("rate_anomaly", "flag"),)

    # ----- PII actions ----------------------------------------------------------------------------

    def protect(
        self, body: dict[str, Any], slots: Sequence[Slot], reports: Sequence[TextReport], keep_pii: bool,
        screening: Screening, exchange: Exchange,
    ) -> dict[str, Any]:
        entities = screening.pii_entities
        pii_applies = bool(entities) and not keep_pii and self.pii is not None
        if pii_applies:
            blocked, events = self._pii_outcome(entities)
            if blocked:
                exchange.safety_events += (("pii", "block"),)
                raise GatewayError(403, "The request contains personal data this route may not receive: " + ", ".join(blocked) + ".",
                                   code="pii_detected")
            exchange.safety_events += events
        elif entities:
            exchange.safety_events += (("pii", "kept"),)
        pseudonyms = self._pseudonyms() if pii_applies and self._numbers else None
        redacts_secrets = self.redacts_secrets
        changes: dict[Path, str] = {}
        for slot, report in zip(slots, reports):
            secrets = report.secrets if redacts_secrets else ()
            findings = report.pii if pii_applies else ()
            if secrets or findings:
                text = self._rewrite(slot.text, findings, secrets, pseudonyms, is_json_text(slot.path[-1]))
                if text != slot.text:
                    changes[slot.path] = text
        if pseudonyms is not None and pseudonyms.values:
            screening.restorer = Restorer(pseudonyms.values)
        return replaced(body, changes) if changes else body

    def _outcome(self, entities: frozenset[str]) -> tuple[tuple[str, ...], tuple[tuple[str, str], ...]]:
        assert self.pii is not None
        actions = {e: self.pii.action_for(e) for e in entities}
        return tuple(sorted(e for e, a in actions.items() if a == "block")), tuple(("pii", a) for a in sorted(set(actions.values())))

    def _rewrite(
        self, text: str, findings: Sequence[Any], secrets: Sequence[tuple[int, int, str]], pseudonyms: Any, json_text: bool
    ) -> str:
        if secrets:
            # A secret wins over any PII finding overlapping it; secrets become <SECRET> first.
            findings = [f for f in findings if all(f.end <= s or f.start >= e for s, e, _ in secrets)]
        replacements = [(start, end, "<SECRET>") for start, end, _ in secrets]
        for finding in findings:
            assert self._transformer is not None
            value = text[finding.start : finding.end]
            replacements.append((finding.start, finding.end, self._transformer.replacement(finding.entity, value, pseudonyms) or value))
        if secrets:
            replacements.sort(key=lambda span: span[0])  # (findings alone are in text order already)
        return spliced(text, replacements, json_text)

