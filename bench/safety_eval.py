"""Safety filters: precision, recall and speed on the labeled sets in bench/safety_data.py and safety_prompts.py.

    .venv/bin/python bench/safety_eval.py [--samples 1200] [--no-stock]

PII: Switchyard's scanner (Presidio's recognizers run directly on trigger windows, default policy threshold
0.4) against stock Presidio (AnalyzerEngine, no-op NLP engine, the same six entities, its default threshold),
on synthetic prompts with exact gold spans and hard negatives. A finding counts when it overlaps a gold span of
the same entity. Speed is CPU time per KB of text the scanner has not seen before (the cache is bypassed).
Injection: the detector (heuristic signals and the linear model of gateway/safety/learned.py) at the default
threshold, recall on attacks and false positives on benign prompts. Every set in safety_prompts.py and
safety_training.py is training data for that model now, so their rows are fits, not estimates: the honest
figures are bench/train_injection.py's leave-one-set-out ones. Sets 5 to 7 (bench/safety_heldout_v5.py … v7)
were blind and scored once each; they are training data since. Set 8 (bench/safety_heldout_v8.py) is blind,
written apart from the detector: scored once, its misses and false positives are never printed, even with -v
(--skip-blind leaves it out).
"""

from __future__ import annotations

import argparse
import sys
import time
import types
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from safety_data import ENTITIES, pii_samples, typical_prompts  # noqa: E402
from safety_prompts import (  # noqa: E402
    FINAL_ATTACKS, FINAL_BENIGN, FRESH_ATTACKS, FRESH_BENIGN, HELD_OUT_ATTACKS, HELD_OUT_BENIGN, HELD_OUT_V4_ATTACKS,
    HELD_OUT_V4_BENIGN, injection_sets,
)
from safety_heldout_v5 import HELD_OUT_V5_ATTACKS, HELD_OUT_V5_BENIGN  # noqa: E402
from safety_heldout_v6 import HELD_OUT_V6_ATTACKS, HELD_OUT_V6_BENIGN  # noqa: E402
from safety_heldout_v7 import HELD_OUT_V7_ATTACKS, HELD_OUT_V7_BENIGN  # noqa: E402
from safety_training import training_sets  # noqa: E402

from gateway.safety.injection import InjectionDetector  # noqa: E402
from gateway.safety.schema import PiiPolicy, PromptInjection  # noqa: E402

Span = tuple[int, int, str]


def score(samples, predict) -> tuple[dict[str, Counter], float, int]:
    """Per entity tp/fn/fp counts, seconds spent predicting, characters scanned."""
    counts: dict[str, Counter] = {e: Counter() for e in ENTITIES}
    spent, chars = 0.0, 0
    for text, gold in samples:
        began = time.process_time()
        found = predict(text)
        spent += time.process_time() - began
        chars += len(text)
        for start, end, entity in gold:
            hit = any(e == entity and s < end and start < f for s, f, e in found)
            counts[entity]["tp" if hit else "fn"] += 1
        for start, end, entity in found:
            if entity in counts and not any(e == entity and s < end and start < f for s, f, e in gold):
                counts[entity]["fp"] += 1
    return counts, spent, chars


def ratios(c: Counter) -> tuple[float, float]:
    precision = c["tp"] / (c["tp"] + c["fp"]) if c["tp"] + c["fp"] else 1.0
    recall = c["tp"] / (c["tp"] + c["fn"]) if c["tp"] + c["fn"] else 1.0
    return precision, recall


def speed(predict, texts: list[str]) -> float:
    """ms per KB."""
    began = time.process_time()
    for text in texts:
        predict(text)
    return (time.process_time() - began) * 1000 / (sum(map(len, texts)) / 1024)


def ours():
    from gateway.safety.pii import PiiScanner

    policy = PiiPolicy(entities=list(ENTITIES))
    scanner = PiiScanner(policy.entities, policy.score_threshold)
    return lambda text: [(f.start, f.end, f.entity) for f in scanner.analyze(text)]


def stock():
    import tldextract
    from presidio_analyzer import AnalyzerEngine, RecognizerRegistry
    from presidio_analyzer.nlp_engine.no_op_nlp_engine import NoOpNlpEngine
    from presidio_analyzer.predefined_recognizers.generic import email_recognizer

    # Only so the stock engine runs offline here: its email validator would fetch the suffix list.
    email_recognizer.tldextract = types.SimpleNamespace(extract=tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None))
    nlp = NoOpNlpEngine(models=[{"lang_code": "en", "model_name": "no_op"}])
    nlp.load()
    registry = RecognizerRegistry(supported_languages=["en"])
    registry.load_predefined_recognizers(nlp_engine=nlp, languages=["en"])
    engine = AnalyzerEngine(nlp_engine=nlp, registry=registry, supported_languages=["en"])
    return lambda text: [(r.start, r.end, r.entity_type) for r in engine.analyze(text, language="en", entities=list(ENTITIES))]


def pii_report(samples, typical, with_stock: bool) -> None:
    engines = {"switchyard": ours()}
    if with_stock:
        engines["stock presidio"] = stock()
    results = {name: score(samples, predict) for name, predict in engines.items()}
    print(f"PII: {len(samples)} prompts, {sum(len(g) for _, g in samples)} gold values, {sum(len(t) for t, _ in samples) / 1024:.0f} KB")
    header = f"{'entity':<16}" + "".join(f"{name + ' P':>18}{'R':>8}" for name in engines)
    print(header)
    totals = {name: Counter() for name in engines}
    for entity in ENTITIES:
        row = f"{entity:<16}"
        for name, (counts, _, _) in results.items():
            totals[name].update(counts[entity])
            precision, recall = ratios(counts[entity])
            row += f"{precision:>18.3f}{recall:>8.3f}"
        print(row)
    row = f"{'all structured':<16}"
    for name in engines:
        precision, recall = ratios(totals[name])
        row += f"{precision:>18.3f}{recall:>8.3f}"
    print(row)
    for name, (_, spent, chars) in results.items():
        print(f"{name}: {spent * 1000 / (chars / 1024):.3f} ms per KB of new text on the PII set")
    for name, predict in engines.items():
        print(f"{name}: {speed(predict, typical):.3f} ms per KB on {len(typical)} typical 1 KB prompts")


def blind_held_out() -> tuple[list[str], list[str]] | None:
    """Set 8, written apart from the detector's training data; None until it has been handed over."""
    try:
        from safety_heldout_v8 import HELD_OUT_V8_ATTACKS, HELD_OUT_V8_BENIGN
    except ImportError:
        return None
    return HELD_OUT_V8_ATTACKS, HELD_OUT_V8_BENIGN


def injection_report(verbose: bool, blind: bool) -> None:
    attacks, benign = injection_sets()
    detector = InjectionDetector()
    threshold = PromptInjection().threshold
    print(f"\nInjection/jailbreak, threshold {threshold}")
    sets = [
        ("development: tuning set (training data)", attacks, benign),
        ("development: held-out set 1 (training data)", HELD_OUT_ATTACKS, HELD_OUT_BENIGN),
        ("development: held-out set 2 (training data)", FRESH_ATTACKS, FRESH_BENIGN),
        ("development: held-out set 3 (training data)", FINAL_ATTACKS, FINAL_BENIGN),
        ("development: held-out set 4 (scored once before the model, training data since)", HELD_OUT_V4_ATTACKS, HELD_OUT_V4_BENIGN),
        ("development: held-out set 5 (blind when first scored, training data since)", HELD_OUT_V5_ATTACKS, HELD_OUT_V5_BENIGN),
        ("development: held-out set 6 (blind when first scored, training data since)", HELD_OUT_V6_ATTACKS, HELD_OUT_V6_BENIGN),
        ("development: held-out set 7 (blind when first scored, training data since)", HELD_OUT_V7_ATTACKS, HELD_OUT_V7_BENIGN),
    ]
    sets += [(f"development: safety_training.py {name} (training data)", bad, good) for name, (bad, good) in training_sets().items()]
    blind_sets = blind_held_out() if blind else None
    if blind_sets is not None:
        sets.append(("held-out set 8 (blind, scored once)", *blind_sets))
    for label, bad, good in sets:
        caught = [a for a in bad if detector.score(a).score >= threshold]
        false = [b for b in good if detector.score(b).score >= threshold]
        print(f"{label}: {len(bad)} attacks, {len(good)} benign: recall {len(caught) / len(bad):.3f}, "
              f"false positives {len(false) / len(good):.4f} ({len(false)})")
        if verbose and (blind_sets is None or bad is not blind_sets[0]):  # set 8 stays unread, or it stops being held out
            for a in bad:
                if a not in caught:
                    print("  missed:", a[:110].replace("\n", " "))
            for b in false:
                print("  false positive:", b[:110].replace("\n", " "), detector.score(b).signals)
    if blind_sets is None:
        print("held-out set 8 (blind, scored once): " + ("absent" if blind else "skipped (--skip-blind)"))
    print("threshold sweep (recall / false positives) per set:")
    for cut in (0.3, 0.4, 0.5, 0.6, 0.7):
        row = []
        for _, bad, good in sets:
            recall = sum(detector.score(a).score >= cut for a in bad) / len(bad)
            false = sum(detector.score(b).score >= cut for b in good) / len(good)
            row.append(f"{recall:.2f}/{false:.3f}")
        print(f"  {cut:.1f}: " + "   ".join(row))
    print(f"{speed(detector.score, attacks + benign):.3f} ms per KB (all prompts), "
          f"{speed(detector.score, typical_prompts()):.3f} ms per KB on typical 1 KB prompts")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=1200)
    parser.add_argument("--no-stock", action="store_true", help="skip stock Presidio (slow)")
    parser.add_argument("-v", action="store_true", help="list misses and false positives (never those of the blind set)")
    parser.add_argument("--skip-blind", action="store_true", help="leave the blind held-out set 8 out")
    args = parser.parse_args()
    pii_report(pii_samples(args.samples), typical_prompts(), not args.no_stock)
    injection_report(args.v, not args.skip_blind)


if __name__ == "__main__":
    main()
