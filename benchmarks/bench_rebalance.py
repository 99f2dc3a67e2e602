"""Do generated images help a classifier on an under-represented class more than the simple baselines do?

Setup. The digits are split once (seed 0) into a held-out balanced TEST set (--test-per-class images of each
class) that nothing trains on, and a train split in which one class (the minority) keeps only a fraction of its
images. A configuration is one imbalance level (--keeps: the fraction of the minority's train images kept) and one
minority class (--minorities); the defaults give 2 x 2 = 4 configurations.

Per configuration, with ganops' own steps: a cdcgan (preset `cdcgan`, seed 0, --steps) is trained on the
imbalanced train split only (`train_to_files`), exported (`export_generator`) and loaded (`load_served`); the
quality check's classifier is trained on the train split (`read_real_data`) and the quality check runs on the
minority (`check_quality`), as `ganops rebalance --class <minority>` does. Then, per seed (--seeds), six candidate
training sets are built from the train split: none, class_weights (same data, inverse-frequency weights),
oversample, smote, gan (filtered generated images) and mix (half repeated real, half generated), the added images
coming from `Sets.added` (the code path of `ganops rebalance`), as many as `plan_rebalance` gives the minority to
reach the largest class under --max-synthetic-fraction. The generated images are drawn with synthesis.seed = the
seed, so every seed draws other latents. Each candidate is trained with both classifiers (logistic regression on
pixels and the project's small CNN, `fit_predict` with the seed) and scored on the TEST set: minority recall,
balanced accuracy, macro F1. Per configuration it prints the benefit table (paired differences to the best
baseline with 95% t-intervals over the seeds), the gan/mix filtering counts and the time taken; at the end a
summary against the targets of issue 27.

Ends with: RESULT rebalance_balanced_accuracy ours=<better of gan/mix> reference=<best of none/class_weights/
oversample/smote> ratio=<ours/reference> balanced_accuracy, each the mean balanced accuracy over all
configurations, classifiers and seeds.

Usage: python benchmarks/bench_rebalance.py [--quick] [--keeps 0.1 0.25] [--minorities 3 8] [--seeds 0 1 2 3 4]
       [--steps 3000] [--test-per-class 40] [--max-synthetic-fraction 0.9]
"""

from __future__ import annotations

import argparse
import math
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from components.config import SynthesisConfig  # noqa: E402
from components.data.importers import digits_arrays  # noqa: E402
from components.data.png import encode_png  # noqa: E402
from components.presets import load_config  # noqa: E402
from components.serving.export import export_generator  # noqa: E402
from components.serving.runtime import Served, load_served  # noqa: E402
from components.synthesis.benefit import (  # noqa: E402
    BASELINES,
    CLASSIFIERS,
    DECIDING,
    SYNTHETIC,
    BenefitTable,
    Candidate,
    benefit_table,
    fit_predict,
    format_benefit,
    score,
)
from components.synthesis.quality import RealData, check_quality, format_quality, read_real_data  # noqa: E402
from components.synthesis.rebalance import MAX, plan_rebalance  # noqa: E402
from components.synthesis.synthesize import CLASS_WEIGHTS, NONE, Sets  # noqa: E402
from components.training.job import train_to_files  # noqa: E402

PRESET = "cdcgan"
ADDING = ("oversample", "smote", "gan", "mix")  # the candidates that add images via Sets.added
AGREEMENT_TARGET = 0.95  # issue 27: generated samples classified as their requested class >= 95% per class
# On a shared 2-core machine (load ~4), 2026-12-07: 100 cdcgan steps took 2.4 s on 1 torch thread and 7-30 s on 2;
# one CNN fit 1.5 s on 1 thread and 5-7 s on 2 (the threads of an oversubscribed pool wait on each other).
THREADS_NOTE = "1 torch thread: on shared cores 2 threads ran the cdcgan and the CNN 3-12x slower"
QUICK = {"steps": 300, "seeds": [0, 1], "keeps": [0.1], "minorities": [3]}


@dataclass
class Outcome:
    """One configuration's measurements."""

    keep: float
    minority: int
    table: BenefitTable
    scores: dict[tuple[str, str, int], dict[str, float]]
    agreement: dict[str, float]  # per class: the quality check's classifier agreement with the requested class
    quality_passed: bool
    filtering: dict[str, list[int]]  # gan/mix: [drawn, kept, rejected] summed over seeds
    seconds: dict[str, float]


def split(test_per_class: int, minority: int, keep: float, seed: int = 0):
    """(train x, train y, test x, test y), images uint8 (N, 1, 8, 8): a balanced held-out test set, and the
    minority cut to `keep` of its images in the train split."""
    x, y = digits_arrays()
    rng = np.random.default_rng(seed)
    train, test = [], []
    for c in range(10):
        idx = rng.permutation(np.flatnonzero(y == c))
        test += list(idx[:test_per_class])
        rest = idx[test_per_class:]
        train += list(rest[: max(2, round(len(rest) * keep))] if c == minority else rest)
    train, test = np.array(sorted(train)), np.array(sorted(test))
    return x[train, None], y[train], x[test, None], y[test]


def write_folder(x: np.ndarray, y: np.ndarray, dest: Path) -> Path:
    for i, (image, label) in enumerate(zip(x, y, strict=True)):
        (dest / str(label)).mkdir(parents=True, exist_ok=True)
        (dest / str(label) / f"{i:05d}.png").write_bytes(encode_png(image[0]))
    return dest


def synthesis_for(args, seed: int) -> SynthesisConfig:
    """The cdcgan preset's synthesis section with the generated images' seed and the synthetic-fraction bound."""
    overrides = [f"synthesis.seed={seed}", f"synthesis.max_synthetic_fraction={args.max_synthetic_fraction}"]
    return load_config(PRESET, overrides).synthesis


def train_generator(train_dir: Path, work: Path, steps: int, overrides: list[str]) -> Served:
    """The cdcgan trained on the imbalanced train split, exported and loaded as `ganops rebalance` loads it."""
    cfg = load_config(PRESET, ["seed=0", f"train.steps={steps}", "validation.min_images=10", *overrides])
    trained = train_to_files(train_dir, cfg, work / "train")
    return load_served(export_generator(trained.weights, work / "exports", "bench-cdcgan", "1", {}), "torchscript")


def quality(served: Served, real: RealData, minority: int, cfg: SynthesisConfig) -> tuple[dict[str, float], bool]:
    """Print the quality check on the minority (as `ganops rebalance --class` runs it) and every class's
    classifier agreement; returns ({label: agreement}, whether the minority passed)."""
    label = served.labels[minority]
    report = check_quality(served, real, [label], cfg)
    print(format_quality(report), flush=True)
    every = check_quality(served, real, served.labels, cfg)
    agreement = {c.label: c.accuracy for c in every.classes}
    low = [f"{k} {v:.1%}" for k, v in agreement.items() if v < AGREEMENT_TARGET]
    print(
        f"classifier agreement per class (target >= {AGREEMENT_TARGET:.0%}): "
        + " ".join(f"{k}:{v:.1%}" for k, v in agreement.items())
        + (f"; under target: {', '.join(low)}" if low else "; all at target"),
        flush=True,
    )
    return agreement, report.passed


def minority_need(real: RealData, labels: list[str], minority: int, max_fraction: float) -> dict[int, int]:
    """{minority: images to add} so it reaches the largest class, capped as `ganops rebalance` caps it."""
    counts = {label: int(np.sum(real.targets == i)) for i, label in enumerate(labels)}
    plan = plan_rebalance(counts, MAX, max_fraction, only=[labels[minority]])
    return {labels.index(p.label): p.synthetic for p in plan if p.synthetic}


def candidates(sets: Sets, x: np.ndarray, y: np.ndarray, need: dict[int, int], seed: int, filtering: dict) -> list[Candidate]:
    """The six candidate training sets of one seed; adds the gan/mix filtering counts to `filtering`."""
    out = [Candidate(NONE, x, y), Candidate(CLASS_WEIGHTS, x, y, class_weights=True)]
    for method in ADDING:
        added = sets.added(method, x, y, need, seed)
        out.append(Candidate(method, np.concatenate([x, added.x]), np.concatenate([y, added.y])))
        for f in added.filtering.values():
            total = filtering.setdefault(method, [0, 0, 0])
            total[0], total[1], total[2] = total[0] + f.drawn, total[1] + f.kept, total[2] + f.rejected
    return out


def score_seeds(args, served: Served, real: RealData, minority: int, test: tuple[np.ndarray, np.ndarray]):
    """{(method, classifier, seed): metrics} on the TEST set, and the gan/mix filtering counts."""
    x, y = real.images.numpy(), real.targets.astype(np.int64)
    need = minority_need(real, served.labels, minority, args.max_synthetic_fraction)
    print(f"minority {served.labels[minority]}: {int(np.sum(y == minority))} real + {sum(need.values())} added per candidate", flush=True)
    scores: dict[tuple[str, str, int], dict[str, float]] = {}
    filtering: dict[str, list[int]] = {}
    for seed in args.seeds:
        started = time.perf_counter()
        sets = Sets(served, real, synthesis_for(args, seed))  # synthesis.seed = seed: other latents per seed
        for candidate in candidates(sets, x, y, need, seed, filtering):
            for classifier in CLASSIFIERS:
                predicted = fit_predict(classifier, candidate, test[0], len(served.labels), seed)
                scores[(candidate.method, classifier, seed)] = score(test[1], predicted, [minority])
        line = " ".join(f"{m}/{c} {scores[(m, c, seed)][DECIDING]:.3f}" for m in BASELINES + SYNTHETIC for c in CLASSIFIERS)
        print(f"  seed {seed} ({time.perf_counter() - started:.0f} s) balanced accuracy: {line}", flush=True)
    return scores, filtering


def run_configuration(args, keep: float, minority: int, work: Path) -> Outcome:
    """Train, check and score one (imbalance level, minority class) configuration."""
    print(f"\n=== minority {minority} cut to {keep:.0%} of its train images ===", flush=True)
    x, y, test_x, test_y = split(args.test_per_class, minority, keep)
    train_dir = write_folder(x, y, work / "train-split")
    seconds, started = {}, time.perf_counter()
    served = train_generator(train_dir, work, args.steps, args.set)
    seconds["train"] = time.perf_counter() - started
    print(f"cdcgan trained ({args.steps} steps) and exported in {seconds['train']:.0f} s", flush=True)
    started = time.perf_counter()
    cfg = synthesis_for(args, 0)
    real = read_real_data(served, train_dir, cfg, work / "cache")
    agreement, passed = quality(served, real, minority, cfg)
    if not passed:
        print("the quality check FAILED: gan and mix are measured anyway (ganops rebalance --method gan would refuse)", flush=True)
    seconds["quality"] = time.perf_counter() - started
    started = time.perf_counter()
    scores, filtering = score_seeds(args, served, real, minority, (test_x, test_y))
    seconds["fits"] = time.perf_counter() - started
    table = benefit_table(scores, list(args.seeds), [str(minority)], len(test_y))
    outcome = Outcome(keep, minority, table, scores, agreement, passed, filtering, seconds)
    print_configuration(outcome)
    return outcome


def print_configuration(o: Outcome) -> None:
    # format_benefit's second line describes ganops' own check; here the scores come from the held-out TEST set
    text = (
        format_benefit(o.table)
        .replace(
            "The validation split is carved from your training data (stratified by class), not from a test set.",
            f"Scored on the held-out balanced TEST set ({o.table.validation_images} images) that nothing trained on.",
        )
        .replace("validation images", "test images")
    )
    print(text)
    for method, (drawn, kept, rejected) in o.filtering.items():
        print(f"  {method} generated images over {len(o.table.seeds)} seed(s): {drawn} drawn, {kept} kept, {rejected} rejected")
    s = o.seconds
    print(
        f"time: train {s['train']:.0f} s, quality check {s['quality']:.0f} s, fits {s['fits']:.0f} s, total {sum(s.values()):.0f} s",
        flush=True,
    )


def beats(o: Outcome, classifier: str) -> list[str]:
    """The synthetic methods whose paired 95% intervals against the best baseline lie above 0 in balanced accuracy
    AND in minority recall (issue 27's target) with `classifier`."""
    rows = [r for r in o.table.rows if r.classifier == classifier and r.method in SYNTHETIC]
    return [r.method for r in rows if r.low[DECIDING] > 0 and r.low["minority_recall"] > 0]


def signed(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:+.3f}"


def overall(outcomes: list[Outcome], method: str) -> float:
    """Mean balanced accuracy of `method` over every configuration, classifier and seed."""
    return float(np.mean([v[DECIDING] for o in outcomes for (m, _, _), v in o.scores.items() if m == method]))


def summary(outcomes: list[Outcome], args) -> None:
    print(f"\n=== summary: {len(outcomes)} configurations, seeds {list(args.seeds)}, {args.steps} cdcgan steps ===")
    print(
        "| minority | kept | classifier | best baseline | gan bal.acc diff [95%] | mix bal.acc diff [95%] | beats it (bal.acc & recall) |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for o in outcomes:
        for classifier in CLASSIFIERS:
            rows = {r.method: r for r in o.table.rows if r.classifier == classifier}
            cells = [
                f"{signed(rows[m].diff[DECIDING])} [{signed(rows[m].low[DECIDING])}, {signed(rows[m].high[DECIDING])}]" for m in SYNTHETIC
            ]
            won = ", ".join(beats(o, classifier)) or "no"
            print(f"| {o.minority} | {o.keep:.0%} | {classifier} | {rows['gan'].reference} | {cells[0]} | {cells[1]} | {won} |")
    for o in outcomes:
        worst = min(o.agreement, key=o.agreement.get)
        met = all(v >= AGREEMENT_TARGET for v in o.agreement.values())
        print(
            f"minority {o.minority} kept {o.keep:.0%}: classifier agreement minority {o.agreement[str(o.minority)]:.1%}, "
            f"lowest {worst} {o.agreement[worst]:.1%} -> target >= {AGREEMENT_TARGET:.0%} per class {'met' if met else 'NOT met'}; "
            f"quality check on the minority {'passed' if o.quality_passed else 'FAILED'}"
        )
    for level in sorted({o.keep for o in outcomes}):
        at = [o for o in outcomes if o.keep == level]
        met = sum(all(beats(o, c) for c in CLASSIFIERS) for o in at)
        print(
            f"target (gan or mix beats the best baseline, balanced accuracy and minority recall, with both classifiers) "
            f"with the minority kept at {level:.0%}: met in {met} of {len(at)} configurations"
        )
    total = sum(sum(o.seconds.values()) for o in outcomes)
    print(f"total time {total:.0f} s")
    ours = max(SYNTHETIC, key=lambda m: overall(outcomes, m))
    reference = max(BASELINES, key=lambda m: overall(outcomes, m))
    o_value, r_value = overall(outcomes, ours), overall(outcomes, reference)
    print(f"ours = {ours}, reference = {reference} (means over configurations, classifiers and seeds)")
    print(f"RESULT rebalance_balanced_accuracy ours={o_value:.4f} reference={r_value:.4f} ratio={o_value / r_value:.3f} balanced_accuracy")


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help=f"smoke run (a few minutes on 2 cores): {QUICK}")
    parser.add_argument("--keeps", type=float, nargs="+", default=[0.1, 0.25], help="fractions of the minority's train images kept")
    parser.add_argument("--minorities", type=int, nargs="+", default=[3, 8], help="minority classes, one configuration each")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4], help="seeds of the candidates and classifiers")
    parser.add_argument("--steps", type=int, default=3000, help="cdcgan training steps per configuration")
    parser.add_argument("--test-per-class", type=int, default=40, help="held-out TEST images per class")
    parser.add_argument("--max-synthetic-fraction", type=float, default=0.9, help="synthesis.max_synthetic_fraction")
    parser.add_argument("--threads", type=int, default=1, help=f"torch CPU threads (default {THREADS_NOTE})")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override of the cdcgan preset (repeatable), e.g. train.augment=cutout",
    )
    args = parser.parse_args()
    if args.quick:
        for key, value in QUICK.items():
            setattr(args, key, value)
    if len(set(args.seeds)) != len(args.seeds):
        parser.error(f"--seeds must be distinct, got {args.seeds}")
    return args


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    print(
        f"bench_rebalance: keeps {args.keeps}, minorities {args.minorities}, seeds {args.seeds}, {args.steps} steps, "
        f"{args.threads} torch thread(s), preset {PRESET} with {args.set or 'no overrides'}",
        flush=True,
    )
    outcomes = []
    for keep in args.keeps:
        for minority in args.minorities:
            work = Path(tempfile.mkdtemp(prefix="ganops-bench-rebalance-"))
            try:
                outcomes.append(run_configuration(args, keep, minority, work))
            finally:
                shutil.rmtree(work, ignore_errors=True)
    summary(outcomes, args)


if __name__ == "__main__":
    main()
