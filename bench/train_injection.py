"""Trains the injection detector's linear model (gateway/safety/learned.py) and writes gateway/safety/injection_model.json.

    .venv/bin/python bench/train_injection.py [--loso] [--window 24] [--l2 1e-2] [--l1 0.002] [--epochs 30] [--blind-fp 0.015] [--worst-fp 0.02] [--fp R]

Training data: the development sets in safety_prompts.py (tuning set, held-out sets 1-4, all read and used
by now), held-out sets 5 to 7 (safety_heldout_v5.py … v7: blind when scored, each its own set here, so
leaving one out is the honest estimate for text other people wrote) and the hand-written sets in
safety_training.py, plus long harmless documents with and without an attack pasted in. Never a later blind
set (8 on). Logistic regression with AdaGrad, L2 and a little L1 on the word weights (fewer rare words with
weights of their own), deterministic order (fixed seed); the heuristic signals are features
learned jointly with the words (each signal's weight times its strength enters the logit the gradient is taken
at). The operating point comes from leave-one-set-out: every set is scored by a model trained without it, and
the cut is the lowest logit keeping the out-of-set false positives of the blind-written sets 4-7 (the ones rich
in harmless prompts that sound suspicious, so the rate the product promises) at or below --blind-fp pooled and
--worst-fp each; --fp R uses the pooled rate over every set instead. The shipped bias is shifted by that cut,
so a score of 0.5 means it. --loso prints the per-set figures.
"""

from __future__ import annotations

import argparse
import json
import math
import random
from collections import Counter
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from safety_data import typical_prompts  # noqa: E402
from safety_prompts import (  # noqa: E402
    FINAL_ATTACKS, FINAL_BENIGN, FRESH_ATTACKS, FRESH_BENIGN, HELD_OUT_ATTACKS, HELD_OUT_BENIGN, HELD_OUT_V4_ATTACKS,
    HELD_OUT_V4_BENIGN, injection_sets,
)
from safety_heldout_v5 import HELD_OUT_V5_ATTACKS, HELD_OUT_V5_BENIGN  # noqa: E402
from safety_heldout_v6 import HELD_OUT_V6_ATTACKS, HELD_OUT_V6_BENIGN  # noqa: E402
from safety_heldout_v7 import HELD_OUT_V7_ATTACKS, HELD_OUT_V7_BENIGN  # noqa: E402
from safety_training import training_sets  # noqa: E402

from gateway.safety.injection import InjectionDetector  # noqa: E402
from gateway.safety.learned import MODEL_PATH, LinearModel, best_window, combined, position_features  # noqa: E402

# Sets other people wrote blind, rich in benign prompts that sound suspicious: the calibration --blind-fp uses.
BLIND_WRITTEN = ("held-out 4", "held-out 5", "held-out 6", "held-out 7")
COMMON = 20  # examples a word must occur in to keep its place in the shipped table at any weight

Example = tuple[dict[str, float], list[list[list[str]]], int]  # signal values, per reading the features per position, label


def long_documents(seed: int) -> tuple[list[str], list[str]]:
    """Harmless ~1-3 KB business texts, and the same with one training attack pasted somewhere inside."""
    rng = random.Random(seed)
    attacks, _ = training_sets()["training"]
    docs = [" ".join(typical_prompts(count=rng.randint(1, 3), seed=seed + i, size=rng.choice((600, 1024, 1500)))) for i in range(60)]
    bad = []
    for doc in docs[:30]:
        cut = doc.rfind(". ", 0, rng.randrange(len(doc))) + 2
        bad.append(doc[:cut] + rng.choice(attacks) + " " + doc[cut:])
    return bad, docs[30:]


def all_sets() -> dict[str, tuple[list[str], list[str]]]:
    sets = {
        "tuning set": injection_sets(),
        "held-out 1": (HELD_OUT_ATTACKS, HELD_OUT_BENIGN),
        "held-out 2": (FRESH_ATTACKS, FRESH_BENIGN),
        "held-out 3": (FINAL_ATTACKS, FINAL_BENIGN),
        "held-out 4": (HELD_OUT_V4_ATTACKS, HELD_OUT_V4_BENIGN),
        "held-out 5": (HELD_OUT_V5_ATTACKS, HELD_OUT_V5_BENIGN),
        "held-out 6": (HELD_OUT_V6_ATTACKS, HELD_OUT_V6_BENIGN),
        "held-out 7": (HELD_OUT_V7_ATTACKS, HELD_OUT_V7_BENIGN),
    }
    sets.update(training_sets())
    sets["long documents a"] = long_documents(23)
    sets["long documents b"] = long_documents(97)
    return sets


def examples(detector: InjectionDetector, attacks: list[str], benign: list[str]) -> list[Example]:
    found = []
    for label, texts in ((1, attacks), (0, benign)):
        for text in texts:
            hits, readings = detector.evidence(text)
            signals = dict(hits)
            signals["*"] = combined(hits)
            found.append((signals, [position_features(words) for words in readings], label))
    return found


def train(data: list[Example], window: int, l2: float, epochs: int, seed: int = 1, l1: float = 0.0) -> dict:
    counts: dict[str, int] = {}
    for _, readings, _ in data:
        for feature in {f for positions in readings for here in positions for f in here}:
            counts[feature] = counts.get(feature, 0) + 1
    vocabulary = {f for f, n in counts.items() if n >= 2}
    positives = sum(label for *_, label in data)
    class_weight = {1: len(data) / (2 * positives), 0: len(data) / (2 * (len(data) - positives))}
    words: dict[str, float] = {}
    signals: dict[str, float] = {}
    squares: dict[str, float] = {}
    bias, bias_square, rate = 0.0, 1e-8, 0.3
    order = list(range(len(data)))
    rng = random.Random(seed)

    def step(key: str, table: dict[str, float], gradient: float, l1: float) -> None:
        weight = table.get(key, 0.0)
        gradient += l2 * weight
        squares[key] = squares.get(key, 1e-8) + gradient * gradient
        scale = rate / math.sqrt(squares[key])
        weight -= scale * gradient
        # L1 as a proximal step: a word whose evidence does not outweigh it lands on exactly zero, so words seen in
        # a handful of examples carry less of the score (what made harmless word salad score high without it).
        table[key] = math.copysign(max(0.0, abs(weight) - scale * l1), weight)

    for _ in range(epochs):
        rng.shuffle(order)
        for index in order:
            values, readings, label = data[index]
            best, chosen, start = -math.inf, None, 0
            for positions in readings:
                here = [sum(words.get(f, 0.0) for f in fs) for fs in positions]
                at, total = best_window(here, window)
                if total > best:
                    best, chosen, start = total, positions, at
            z = bias + best + sum(signals.get("sig:" + k, 0.0) * v for k, v in values.items())
            gradient = (_sigmoid(z) - label) * class_weight[label]
            bias_square += gradient * gradient
            bias -= rate * gradient / math.sqrt(bias_square)
            for key, value in values.items():
                if value:
                    step("sig:" + key, signals, gradient * value, 0.0)
            for fs in chosen[start : start + window]:
                for f in fs:
                    if f in vocabulary:
                        step(f, words, gradient, l1)
    signals = {k[4:]: v for k, v in signals.items()}
    return {"bias": bias, "window": window, "signals": signals, "words": words}


def _sigmoid(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-max(min(z, 60.0), -60.0)))


def logits(model: dict, data: list[Example]) -> list[tuple[float, int]]:
    table, signals = model["words"], model["signals"]
    found = []
    for values, readings, label in data:
        text = max(best_window([sum(table.get(f, 0.0) for f in fs) for fs in positions], model["window"])[1] for positions in readings)
        found.append((model["bias"] + text + sum(signals.get(k, 0.0) * v for k, v in values.items()), label))
    return found


def rates(scored: list[tuple[float, int]], cut: float) -> tuple[float, float]:
    bad = [z for z, label in scored if label]
    good = [z for z, label in scored if not label]
    return sum(z >= cut for z in bad) / max(len(bad), 1), sum(z >= cut for z in good) / max(len(good), 1)


def lowest_cut(scored: list[tuple[float, int]], fp: float) -> float:
    """The lowest logit at which at most `fp` of the benign examples in `scored` score at or above it."""
    benign = sorted(z for z, label in scored if not label)
    allowed = int(fp * len(benign))
    return benign[len(benign) - 1 - allowed] + 1e-6 if allowed < len(benign) else benign[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loso", action="store_true", help="print leave-one-set-out figures per set")
    parser.add_argument("--window", type=int, default=24)
    parser.add_argument("--l2", type=float, default=1e-2)
    parser.add_argument("--l1", type=float, default=0.002, help="L1 on the word weights, applied where a word occurs")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--blind-fp", type=float, default=0.015,
                        help="pooled out-of-set false-positive rate to allow on the blind-written sets")
    parser.add_argument("--worst-fp", type=float, default=0.02, help="and on each blind-written set")
    parser.add_argument("--fp", type=float, default=None, help="instead: the pooled rate to allow over every set")
    parser.add_argument("--dry-run", action="store_true", help="do not write the model file")
    parser.add_argument("--out", type=Path, default=MODEL_PATH, help="where to write the model (to compare before shipping)")
    parser.add_argument("--reorder", action="store_true",
                        help="only rewrite the shipped model's table in frequency order (see frequency_order), weights as they are")
    args = parser.parse_args()

    detector = InjectionDetector(model=LinearModel({"bias": 0.0, "window": 1, "signals": {}, "words": {}}))
    data = {name: examples(detector, bad, good) for name, (bad, good) in all_sets().items()}
    if args.reorder:
        model = json.loads(MODEL_PATH.read_text(encoding="utf-8"))
        model["words"] = frequency_order(model["words"], data)
        write(model, args.out)
        return
    held_out: dict[str, list[tuple[float, int]]] = {}
    for name in data:
        rest = [e for other, part in data.items() if other != name for e in part]
        held_out[name] = logits(train(rest, args.window, args.l2, args.epochs, l1=args.l1), data[name])
    pooled = [s for part in held_out.values() for s in part]
    blind = [s for name in BLIND_WRITTEN for s in held_out[name]]
    if args.fp is not None:
        cut, basis = lowest_cut(pooled, args.fp), f"pooled false positives <= {args.fp:.1%}"
    else:
        cut = max([lowest_cut(blind, args.blind_fp)] + [lowest_cut(held_out[name], args.worst_fp) for name in BLIND_WRITTEN])
        basis = f"false positives on {', '.join(BLIND_WRITTEN)} pooled <= {args.blind_fp:.1%}, each <= {args.worst_fp:.1%}"
    print(f"leave-one-set-out, cut {cut:.3f} ({basis}):")
    for name, scored in held_out.items():
        recall, false = rates(scored, cut)
        n_bad = sum(label for _, label in scored)
        print(f"  {name:<16} {n_bad:>4} attacks {len(scored) - n_bad:>4} benign: recall {recall:.3f}, false positives {false:.4f}")
    for name, scored in (("pooled", pooled), ("blind-written", blind)):
        recall, false = rates(scored, cut)
        print(f"  {name:<16} recall {recall:.3f}, false positives {false:.4f}")
    if args.loso:
        for shift in (-1.0, -0.5, 0.5, 1.0):
            row = "   ".join(f"{rates(s, cut + shift)[0]:.2f}/{rates(s, cut + shift)[1]:.3f}" for s in held_out.values())
            print(f"  cut {shift:+.1f}: {row}")
    if args.dry_run:
        return
    model = train([e for part in data.values() for e in part], args.window, args.l2, args.epochs, l1=args.l1)
    model["bias"] = round(model["bias"] - cut, 4)
    model["signals"] = {k: round(v, 4) for k, v in sorted(model["signals"].items())}
    # A word the table lacks costs a Python call at run time (learned._WordWeights.__missing__), so common words
    # stay in it even when L1 has weighed them to nothing.
    seen = Counter(word for part in data.values() for _, readings, _ in part for word in {here[0] for here in readings[0]})
    common = {word for word, n in seen.items() if n >= COMMON}
    words = model["words"]
    kept = {k: round(words.get(k, 0.0), 4) for k in words.keys() | common if k in common or abs(words[k]) >= 0.005}
    model["words"] = frequency_order(kept, data)
    write(model, args.out)


def frequency_order(words: dict[str, float], data: dict[str, list]) -> dict[str, float]:
    """The table with the features the training texts hold most often first, ties alphabetical. LinearModel builds
    its lookup tables in file order, so the entries, keys and weights most texts look up lie together in memory:
    fewer CPU cache misses per request (the text part of a 1 KB prompt, with cold caches, ~20 % faster)."""
    counts = Counter(f for part in data.values() for _, readings, _ in part for here in readings[0] for f in here)
    return {k: words[k] for k in sorted(words, key=lambda k: (-counts[k], k))}


def write(model: dict, out: Path) -> None:
    out.write_text(json.dumps(model, separators=(",", ":"), ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {out} ({len(model['words'])} word features, {out.stat().st_size // 1024} KB)")


if __name__ == "__main__":
    main()
