"""Does rebalancing with a conditional GAN help a classifier on an under-represented class?

The digits are split by a fixed seed into a held-out balanced test set (--test-per-class images of each class) and
a train split, in which one class (--minority) is cut to --keep (10%) of its size. Per seed: a cdcgan (preset
`cdcgan`) is trained on the imbalanced train split only, exported, checked by ganops' quality check, and used by
ganops' rebalance (`--class <minority>`) to write real + synthetic. Two classifiers (logistic regression on pixels; the small CNN of
fid_domain) are trained on (a) the imbalanced real set, (b) (a) with the minority images duplicated to the same
count as (c), (c) the rebalanced set, and scored on the test set: minority-class recall and macro F1.

Usage: python benchmarks/bench_rebalance.py [--seeds 0 1 2] [--steps 3000] [--max-synthetic-fraction 0.9]
       [--no-class-balanced]
Ends with: RESULT rebalance_minority_recall ours=<(c)> reference=<(a)> ratio=<(c)/(a)> recall
(means over seeds and both classifiers).
"""

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score, recall_score

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from components.core.pixels import to_unit_range  # noqa: E402
from components.data.images import load_images  # noqa: E402
from components.data.importers import digits_arrays  # noqa: E402
from components.data.png import encode_png  # noqa: E402
from components.evaluation.domain import train_extractor  # noqa: E402
from components.presets import load_config  # noqa: E402
from components.serving.export import export_generator  # noqa: E402
from components.serving.runtime import load_served  # noqa: E402
from components.synthesis.quality import check_quality, format_quality  # noqa: E402
from components.synthesis.rebalance import count_classes, plan_rebalance, write_rebalanced  # noqa: E402
from components.training.job import train_to_files  # noqa: E402

LABELS = [str(i) for i in range(10)]


def split(test_per_class: int, minority: int, keep: float, seed: int = 0):
    """(train x, train y, test x, test y): a balanced held-out test set, the minority cut in the train split."""
    x, y = digits_arrays()
    rng = np.random.default_rng(seed)
    train, test = [], []
    for c in range(10):
        idx = rng.permutation(np.flatnonzero(y == c))
        test += list(idx[:test_per_class])
        rest = idx[test_per_class:]
        train += list(rest[: max(1, round(len(rest) * keep))] if c == minority else rest)
    train, test = np.array(sorted(train)), np.array(sorted(test))
    return x[train], y[train], x[test], y[test]


def write_folder(x, y, dest: Path) -> Path:
    for i, (image, label) in enumerate(zip(x, y, strict=True)):
        (dest / str(label)).mkdir(parents=True, exist_ok=True)
        (dest / str(label) / f"{i:05d}.png").write_bytes(encode_png(image))
    return dest


def oversample(x, y, minority: int, count: int):
    """Naive oversampling: the minority images repeated until the class holds `count`."""
    idx = np.flatnonzero(y == minority)
    extra = np.resize(idx, max(0, count - len(idx)))
    return np.concatenate([x, x[extra]]), np.concatenate([y, y[extra]])


def fit_predict(kind: str, x, y, test_x, seed: int):
    if kind == "logreg":
        model = LogisticRegression(max_iter=3000, C=0.1).fit(x.reshape(len(x), -1) / 255.0, y)
        return model.predict(test_x.reshape(len(test_x), -1) / 255.0)
    model, _ = train_extractor(to_unit_range(torch.from_numpy(x[:, None])), torch.from_numpy(y), 10, epochs=15, seed=seed)
    with torch.no_grad():
        return model(to_unit_range(torch.from_numpy(test_x[:, None]))).argmax(1).numpy()


def synthetic_set(train_dir: Path, work: Path, args, seed: int):
    """Train the cdcgan on the imbalanced split, export it, quality-check and rebalance with ganops' own steps."""
    cfg = load_config(
        "cdcgan",
        [
            f"seed={seed}",
            f"train.steps={args.steps}",
            "validation.min_images=10",
            f"train.class_balanced={str(args.class_balanced).lower()}",
            f"synthesis.max_synthetic_fraction={args.max_synthetic_fraction}",
            f"synthesis.seed={seed}",
        ],
    )
    trained = train_to_files(train_dir, cfg, work / "train")
    served = load_served(export_generator(trained.weights, work / "exports", "bench-cdcgan", str(seed), {}), "torchscript")
    plan = plan_rebalance(
        count_classes(train_dir, served.labels), "max", cfg.synthesis.max_synthetic_fraction, only=[str(args.minority)]
    )  # as `ganops rebalance --class 3`
    quality = check_quality(served, train_dir, [p.label for p in plan if p.synthetic], cfg.synthesis, work / "cache")
    print(format_quality(quality), flush=True)
    write_rebalanced(served, train_dir, plan, work / "rebalanced", cfg.synthesis, quality)
    x, y = load_images(work / "rebalanced", LABELS)
    return x[:, 0], y, quality.passed


def run_seed(args, seed: int, work: Path) -> dict:
    x, y, test_x, test_y = split(args.test_per_class, args.minority, args.keep)
    train_dir = write_folder(x, y, work / "train-split")
    started = time.perf_counter()
    cx, cy, passed = synthetic_set(train_dir, work, args, seed)
    print(
        f"seed {seed}: cdcgan trained and rebalanced in {time.perf_counter() - started:.0f} s; "
        f"minority {int((y == args.minority).sum())} real -> {int((cy == args.minority).sum())}",
        flush=True,
    )
    sets = {
        "a_imbalanced": (x, y),
        "b_oversampled": oversample(x, y, args.minority, int((cy == args.minority).sum())),
        "c_rebalanced": (cx, cy),
    }
    out = {"quality_passed": passed}
    for name, (sx, sy) in sets.items():
        for kind in ("logreg", "cnn"):
            pred = fit_predict(kind, sx, sy, test_x, seed)
            out[(name, kind)] = (
                recall_score(test_y, pred, labels=[args.minority], average="macro"),
                f1_score(test_y, pred, average="macro"),
            )
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--minority", type=int, default=3)
    parser.add_argument("--keep", type=float, default=0.1)
    parser.add_argument("--test-per-class", type=int, default=40)
    parser.add_argument("--max-synthetic-fraction", type=float, default=0.9)
    parser.add_argument(
        "--class-balanced",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="train the cdcgan with train.class_balanced (the preset's default)",
    )
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    results = []
    for seed in args.seeds:
        work = Path(tempfile.mkdtemp(prefix="ganops-bench-rebalance-"))
        try:
            results.append(run_seed(args, seed, work))
        finally:
            shutil.rmtree(work, ignore_errors=True)
    print(
        f"\nminority class {args.minority} cut to {args.keep:.0%}; held-out test {args.test_per_class}/class; "
        f"seeds {args.seeds}; class-balanced cdcgan: {args.class_balanced}; quality check passed on {sum(r['quality_passed'] for r in results)}/{len(results)}"
    )
    print("| training set | classifier | minority recall | macro F1 |\n| --- | --- | --- | --- |")
    for name in ("a_imbalanced", "b_oversampled", "c_rebalanced"):
        for kind in ("logreg", "cnn"):
            rec = np.array([r[(name, kind)][0] for r in results])
            f1 = np.array([r[(name, kind)][1] for r in results])
            print(f"| {name} | {kind} | {rec.mean():.3f} ± {rec.std():.3f} | {f1.mean():.3f} ± {f1.std():.3f} |")
    ours = np.mean([r[("c_rebalanced", k)][0] for r in results for k in ("logreg", "cnn")])
    ref = np.mean([r[("a_imbalanced", k)][0] for r in results for k in ("logreg", "cnn")])
    print(f"RESULT rebalance_minority_recall ours={ours:.4f} reference={ref:.4f} ratio={ours / ref:.3f} recall")


if __name__ == "__main__":
    main()
