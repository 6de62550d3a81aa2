"""The one place Switchyard imports Presidio: spaCy stays unloaded until a spaCy model is used (safety/deferred.py)."""

from __future__ import annotations

from gateway.safety.deferred import defer

defer()

from presidio_analyzer import Pattern, PatternRecognizer, RecognizerRegistry  # noqa: E402
from presidio_analyzer.nlp_engine import NlpEngine, NoOpNlpEngine  # noqa: E402
from presidio_analyzer.predefined_recognizers import CreditCardRecognizer, IbanRecognizer, PhoneRecognizer  # noqa: E402

__all__ = [
    "CreditCardRecognizer", "IbanRecognizer", "NlpEngine", "NoOpNlpEngine", "Pattern", "PatternRecognizer", "PhoneRecognizer",
    "RecognizerRegistry", "nlp_engine",
]


class _PatternsOnly(NoOpNlpEngine):
    """Presidio's no-op engine without the spaCy vocabulary its constructor builds: nothing here reads it."""

    def __init__(self) -> None:
        self.models = [{"lang_code": "en", "model_name": "no_op"}]
        self.nlp = None


def nlp_engine(ner_model: str | None) -> NlpEngine:
    """A loaded engine: spaCy with `ner_model` (checked installed by the policy schema), or none at all."""
    if ner_model is None:
        engine: NlpEngine = _PatternsOnly()
    else:
        from presidio_analyzer.nlp_engine import SpacyNlpEngine

        engine = SpacyNlpEngine(models=[{"lang_code": "en", "model_name": ner_model}])
    engine.load()
    return engine
