"""Presidio without spaCy until spaCy is used (gateway/safety/deferred.py). Each case runs in a fresh
interpreter: what is imported is process state."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def run(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_a_pattern_scanner_never_loads_spacy() -> None:
    out = run(
        """
        import sys
        from gateway.safety.pii import PiiScanner
        scanner = PiiScanner(["EMAIL_ADDRESS", "PHONE_NUMBER", "CREDIT_CARD", "US_SSN", "IBAN_CODE", "URL"], 0.4)
        found = scanner.analyze("write to a.b@example.com or call +1 415-555-0132")
        real = [m for m in sys.modules if m.startswith(("spacy", "thinc")) and type(sys.modules[m]).__name__ != "_StandInModule"]
        print(sorted(f.entity for f in found), real)
        """
    )
    assert out == "['EMAIL_ADDRESS', 'PHONE_NUMBER'] []"


def test_the_first_use_of_spacy_loads_the_real_one_for_presidio_and_everyone() -> None:
    out = run(
        """
        import sys
        import gateway.safety.presidio
        from presidio_analyzer.nlp_engine import nlp_artifacts, SpacyNlpEngine, StanzaNlpEngine
        from spacy.tokens import Doc  # a stand-in still
        doc = object()
        print(isinstance(doc, Doc), "spacy.cli" in sys.modules)  # no instance can exist: False, nothing loaded
        import spacy
        nlp = spacy.blank("en")  # a use: the real spaCy loads
        real = nlp("hello world")
        print(isinstance(real, Doc), isinstance(real, nlp_artifacts.Doc), issubclass(type(real), Doc), "spacy.cli" in sys.modules)
        print(type(sys.modules["spacy"]).__name__, spacy.__version__ == sys.modules["spacy"].__version__)
        class Sub(SpacyNlpEngine):  # Presidio's own spaCy classes are real classes
            pass
        print(StanzaNlpEngine.engine_name, issubclass(Sub, SpacyNlpEngine))  # a stand-in taken early forwards
        """
    )
    assert out.splitlines() == ["False False", "True True True True", "module True", "stanza True"]


def test_a_spacy_pipeline_runs_through_the_stand_ins_end_to_end(tmp_path) -> None:
    """NER through Presidio's spaCy engine, spaCy having been deferred when Presidio was imported."""
    out = run(
        f"""
        import sys
        from gateway.safety.pii import PiiScanner  # Presidio imported, spaCy deferred
        assert "spacy.cli" not in sys.modules
        import spacy
        nlp = spacy.blank("en")
        ruler = nlp.add_pipe("entity_ruler")
        ruler.add_patterns([{{"label": "PERSON", "pattern": "Alice Moreno"}}])
        nlp.to_disk({str(tmp_path / "pipeline")!r})
        scanner = PiiScanner(["PERSON", "EMAIL_ADDRESS"], 0.4, ner_model={str(tmp_path / "pipeline")!r})
        text = "Please ask Alice Moreno at alice@example.com"
        print(sorted((f.entity, text[f.start:f.end]) for f in scanner.analyze(text)))
        """
    )
    assert out == "[('EMAIL_ADDRESS', 'alice@example.com'), ('PERSON', 'Alice Moreno')]"
