"""The benefit check of `ganops rebalance`: do synthetic images beat the simple baselines on the user's own data?

A stratified validation split is carved from the user's training data (never a test set). Each candidate training
set (no rebalancing, class weights, oversampling, SMOTE, GAN, mix) is built from the training part only, reference
classifiers (logistic regression and the project's small CNN) are trained on it over several seeds, and the scores
on the validation part are compared, seed by seed, with the best baseline: mean paired difference and its 95%
t-interval. `choose_method` turns the table into the `--method auto` decision, and keeps it honest: a synthetic
method wins only when its interval lies above zero with every classifier.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
import torch
from scipy import stats
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import balanced_accuracy_score, f1_score, recall_score
from threadpoolctl import threadpool_limits

from components.core.errors import GanopsError
from components.core.pixels import to_unit_range
from components.evaluation.domain import train_extractor

CLASSIFIERS = ("logreg", "cnn")
BASELINES = ("none", "class_weights", "oversample", "smote")  # methods that add no generated images
SYNTHETIC = ("gan", "mix")
METHODS = BASELINES + SYNTHETIC
METRICS = ("minority_recall", "balanced_accuracy", "macro_f1")
DECIDING = "balanced_accuracy"  # the metric that picks the reference and the winner
# One CNN fit on 1,228 digits (8x8, class 3 cut to 14 images), 4 seeds x with/without class weights, scored on 450
# held-out digits, torch on 1 thread of a shared 2-core machine (2 threads there were oversubscribed and ran 2-25 s):
# 15 epochs 1.8-1.9 s, balanced accuracy 0.969; 10 epochs 1.1 s, 0.962; 8 epochs 0.8 s, 0.959; 5 epochs 0.55 s, 0.937.
# 15 matches benchmarks/bench_rebalance.py, and the 0.007 that fewer epochs lose is the size of the differences the
# check is there to detect.
CNN_EPOCHS = 15
PREDICT_BATCH = 1000
CONFIDENCE = 0.95


@dataclass(frozen=True)
class Candidate:
    """One training set to compare."""

    method: str  # one of BASELINES + SYNTHETIC
    x: np.ndarray  # uint8 (N, C, H, W)
    y: np.ndarray  # int64 (N,) class indices
    class_weights: bool = False  # train with inverse-frequency class weights (the "class_weights" baseline)


@dataclass(frozen=True)
class Row:
    """One method x classifier: mean scores over seeds and the paired difference to the reference baseline."""

    method: str
    classifier: str
    means: dict[str, float]  # metric -> mean over seeds
    diff: dict[str, float]  # metric -> mean paired difference (this method - reference) over seeds
    low: dict[str, float]  # 95% interval of the paired difference (nan with one seed)
    high: dict[str, float]
    reference: str  # the best baseline for this classifier


@dataclass(frozen=True)
class BenefitTable:
    """The benefit check's result."""

    rows: list[Row]
    seeds: list[int]
    minority: list[str]  # label names of the classes rebalanced
    validation_images: int

    def to_dict(self) -> dict:
        """JSON-safe: nan becomes None."""
        return _json_safe(asdict(self))


def benefit_rows(table: BenefitTable) -> list[dict]:
    """One flat, JSON-safe dict per method x classifier (a Prefect table artifact's rows): the means, and the paired
    difference in balanced accuracy to the reference with its interval."""
    return [
        _json_safe(
            {
                "classifier": r.classifier,
                "method": r.method,
                **{m: r.means[m] for m in METRICS},
                "reference": r.reference,
                f"{DECIDING}_diff": r.diff[DECIDING],
                "low": r.low[DECIDING],
                "high": r.high[DECIDING],
            }
        )
        for r in table.rows
    ]


def _json_safe(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


def stratified_split(
    y: np.ndarray, labels: list[str], val_fraction: float, seed: int, min_per_class: int = 2
) -> tuple[np.ndarray, np.ndarray]:
    """(train indices, validation indices), sorted, stratified by class: each class puts round(n * val_fraction)
    images on the validation side, kept within [min_per_class, n - min_per_class]. Deterministic for a seed.

    Raises GanopsError when val_fraction is not in (0, 1), when y holds an index outside `labels`, or when a class
    (named by its label) has too few images to keep `min_per_class` on each side; a class with none is left out."""
    if not 0 < val_fraction < 1:
        raise GanopsError(f"the benefit check's validation fraction {val_fraction} must lie strictly between 0 and 1")
    if min_per_class < 1:
        raise GanopsError(f"the benefit check's min_per_class {min_per_class} must be at least 1")
    y = np.asarray(y)
    if y.size and (y.min() < 0 or y.max() >= len(labels)):
        raise GanopsError(f"class index {int(y.max() if y.max() >= len(labels) else y.min())} is not one of the {len(labels)} classes")
    rng = np.random.default_rng(seed)
    train, val = [], []
    for index, label in enumerate(labels):
        members = np.flatnonzero(y == index)
        need = 2 * min_per_class
        if not len(members):
            continue  # a class the generator knows but the data lacks (left out with --class): nothing to split
        if len(members) < need:
            raise GanopsError(
                f"class {label!r} has {len(members)} images: the benefit check needs at least {need} to keep "
                f"{min_per_class} on each side of its validation split"
            )
        take = min(max(round(len(members) * val_fraction), min_per_class), len(members) - min_per_class)
        order = rng.permutation(members)
        val.append(order[:take])
        train.append(order[take:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(val))


def _check_candidate(candidate: Candidate, val_x: np.ndarray, num_classes: int) -> None:
    x, y = candidate.x, candidate.y
    if candidate.method not in METHODS:
        raise GanopsError(f"benefit-check method {candidate.method!r} is not one of {', '.join(METHODS)}")
    if x.dtype != np.uint8 or x.ndim != 4 or len(x) != len(y) or not len(x):
        raise GanopsError(
            f"candidate {candidate.method!r} must hold uint8 images (N, C, H, W) and N labels, not {x.dtype} {x.shape} with {len(y)} labels"
        )
    if val_x.dtype != np.uint8 or val_x.shape[1:] != x.shape[1:]:
        raise GanopsError(f"validation images {val_x.dtype} {val_x.shape} do not match candidate {candidate.method!r} {x.shape}")
    if y.min() < 0 or y.max() >= num_classes:
        raise GanopsError(f"candidate {candidate.method!r} has a label outside 0..{num_classes - 1}")


def fit_predict(classifier: str, candidate: Candidate, val_x: np.ndarray, num_classes: int, seed: int) -> np.ndarray:
    """Train `classifier` ("logreg" or "cnn") on the candidate's images and return its predicted class indices
    (int64) for val_x. Deterministic for a seed. Raises GanopsError on an unknown classifier or method, or on
    images that are not uint8 (N, C, H, W) of the candidate's shape."""
    if classifier not in CLASSIFIERS:
        raise GanopsError(f"benefit-check classifier {classifier!r} is not one of {', '.join(CLASSIFIERS)}")
    _check_candidate(candidate, val_x, num_classes)
    y = candidate.y.astype(np.int64)
    if classifier == "logreg":
        model = LogisticRegression(max_iter=2000, C=0.1, class_weight="balanced" if candidate.class_weights else None, random_state=seed)
        # One BLAS thread: the matrices are tiny, and on busy cores BLAS threads spinning beside torch's OpenMP pool
        # turned a 0.03 s fit into 2-4 s (measured on 2 shared cores).
        with threadpool_limits(limits=1, user_api="blas"):
            model.fit(candidate.x.reshape(len(y), -1) / 255.0, y)
            return model.predict(val_x.reshape(len(val_x), -1) / 255.0).astype(np.int64)
    images = to_unit_range(np.ascontiguousarray(candidate.x))
    net, _ = train_extractor(images, torch.from_numpy(y), num_classes, epochs=CNN_EPOCHS, seed=seed, balanced=candidate.class_weights)
    with torch.no_grad():
        parts = [
            net(to_unit_range(np.ascontiguousarray(val_x[i : i + PREDICT_BATCH]))).argmax(1) for i in range(0, len(val_x), PREDICT_BATCH)
        ]
    return torch.cat(parts).numpy().astype(np.int64)


def score(y_true: np.ndarray, y_pred: np.ndarray, minority: list[int]) -> dict[str, float]:
    """minority_recall (mean recall over the `minority` class indices), balanced_accuracy and macro_f1 (sklearn,
    zero_division=0). Raises GanopsError when `minority` is empty or the arrays differ in length."""
    if not minority:
        raise GanopsError("the benefit check needs at least one minority class to score")
    if len(y_true) != len(y_pred) or not len(y_true):
        raise GanopsError(f"scores need as many predictions as labels (got {len(y_pred)} for {len(y_true)}), at least one")
    recalls = recall_score(y_true, y_pred, labels=minority, average=None, zero_division=0)
    return {
        "minority_recall": float(np.mean(recalls)),
        "balanced_accuracy": float(balanced_accuracy_score(y_true, y_pred)),
        "macro_f1": float(f1_score(y_true, y_pred, average="macro", zero_division=0)),
    }


def _ordered(names: set[str], known: tuple[str, ...]) -> list[str]:
    return [n for n in known if n in names] + sorted(names - set(known))


def _interval(diffs: np.ndarray) -> tuple[float, float, float]:
    """(mean, low, high) of paired differences: the 95% t-interval, nan bounds with a single seed."""
    mean = float(np.mean(diffs))
    if len(diffs) < 2:
        return mean, math.nan, math.nan
    half = float(stats.t.ppf(0.5 + CONFIDENCE / 2, len(diffs) - 1) * np.std(diffs, ddof=1) / math.sqrt(len(diffs)))
    return mean, mean - half, mean + half


def _classifier_rows(
    scores: dict[tuple[str, str, int], dict[str, float]], classifier: str, methods: list[str], seeds: list[int]
) -> list[Row]:
    def values(method: str, metric: str) -> np.ndarray:
        return np.array([scores[(method, classifier, s)][metric] for s in seeds], dtype=float)

    baselines = [m for m in methods if m in BASELINES]
    if not baselines:
        raise GanopsError(f"the benefit check for {classifier} has no baseline ({', '.join(BASELINES)}) to compare with")
    # max() keeps the first of equals, so a tie goes to the simpler baseline (BASELINES order)
    reference = max(baselines, key=lambda m: float(np.mean(values(m, DECIDING))))
    rows = []
    for method in methods:
        parts = {metric: _interval(values(method, metric) - values(reference, metric)) for metric in METRICS}
        rows.append(
            Row(
                method=method,
                classifier=classifier,
                means={metric: float(np.mean(values(method, metric))) for metric in METRICS},
                diff={metric: parts[metric][0] for metric in METRICS},
                low={metric: parts[metric][1] for metric in METRICS},
                high={metric: parts[metric][2] for metric in METRICS},
                reference=reference,
            )
        )
    return rows


def benefit_table(
    scores: dict[tuple[str, str, int], dict[str, float]], seeds: list[int], minority: list[str], validation_images: int
) -> BenefitTable:
    """From {(method, classifier, seed): metrics} (pure): per classifier, the reference is the baseline with the
    highest mean balanced accuracy; every method gets its means and the paired (same seed) differences to the
    reference with a 95% t-interval. Raises GanopsError when seeds are empty or repeated, a method or classifier
    lacks a seed, a score lacks a metric, or a classifier has no baseline."""
    if not seeds or len(set(seeds)) != len(seeds):
        raise GanopsError(f"the benefit check needs distinct seeds, got {seeds}")
    pairs = {(method, classifier) for method, classifier, _ in scores}
    for method, classifier in sorted(pairs):
        for seed in seeds:
            metrics = scores.get((method, classifier, seed))
            if metrics is None or any(m not in metrics for m in METRICS):
                raise GanopsError(f"the benefit check has no complete scores ({', '.join(METRICS)}) for {method}/{classifier} seed {seed}")
    rows = []
    for classifier in _ordered({c for _, c in pairs}, CLASSIFIERS):
        methods = _ordered({m for m, c in pairs if c == classifier}, METHODS)
        rows.extend(_classifier_rows(scores, classifier, methods, seeds))
    return BenefitTable(rows=rows, seeds=list(seeds), minority=list(minority), validation_images=validation_images)


def _signed(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:+.3f}"


def _versus(row: Row, metric: str = DECIDING) -> str:
    return f"{_signed(row.diff[metric])} [{_signed(row.low[metric])}, {_signed(row.high[metric])}]"


def _beats(row: Row) -> bool:
    """The rule for a synthetic method with one classifier: interval above zero, minority recall not lower."""
    return row.low[DECIDING] > 0 and row.diff["minority_recall"] >= 0  # nan (one seed) compares False


def _mean_over(rows: list[Row], pick: Callable[[Row], float]) -> float:
    return float(np.mean([pick(r) for r in rows]))


def choose_method(table: BenefitTable, allowed: tuple[str, ...] = ("oversample", "smote", "gan", "mix")) -> tuple[str, str]:
    """(method, one-line reason) for `--method auto` (pure). A synthetic method wins only if, with EVERY classifier,
    the 95% interval of its paired balanced-accuracy difference to the reference lies above 0 and its minority
    recall is not lower on average; among winners the larger mean difference (averaged over classifiers). Else
    the allowed baseline with the best balanced accuracy averaged over classifiers (oversample or smote by
    default), and the reason says synthetic images did not beat it. Raises GanopsError when nothing allowed is in
    the table."""
    classifiers = _ordered({r.classifier for r in table.rows}, CLASSIFIERS)
    by_method: dict[str, list[Row]] = {}
    for row in table.rows:
        by_method.setdefault(row.method, []).append(row)
    complete = {m: rows for m, rows in by_method.items() if m in allowed and len(rows) == len(classifiers)}
    synthetic = [m for m in SYNTHETIC if m in complete]
    winners = [m for m in synthetic if all(_beats(r) for r in complete[m])]
    seeds = f"{len(table.seeds)} seed{'s' if len(table.seeds) != 1 else ''}"
    if winners:
        best = max(winners, key=lambda m: _mean_over(complete[m], lambda r: r.diff[DECIDING]))
        detail = ", ".join(f"{_versus(r)} vs {r.reference} with {r.classifier}" for r in complete[best])
        return best, f"{best} beat the best baseline with every classifier ({seeds}): balanced accuracy {detail}"
    fallback = [m for m in complete if m not in SYNTHETIC]
    losers = "; ".join(
        f"{m}: "
        + ", ".join(
            f"balanced accuracy {_versus(r)} minority recall {_signed(r.diff['minority_recall'])} vs {r.reference} with {r.classifier}"
            for r in complete[m]
        )
        for m in synthetic
    )
    if not fallback:
        raise GanopsError(
            f"no allowed method ({', '.join(allowed)}) can be chosen: synthetic images did not beat the baselines ({losers or 'none checked'})"
        )
    best = max(_ordered(set(fallback), METHODS), key=lambda m: _mean_over(complete[m], lambda r: r.means[DECIDING]))
    chosen = f"{best} has the best balanced accuracy among the baselines ({_mean_over(complete[best], lambda r: r.means[DECIDING]):.3f} averaged over {', '.join(classifiers)}, {seeds})"
    if not synthetic:
        return best, f"no synthetic method was checked; {chosen}"
    return best, f"synthetic images did not beat the baselines, so {chosen}; {losers}"


def format_benefit(table: BenefitTable) -> str:
    """The table as plain text: one line per classifier x method with the mean minority recall, balanced accuracy
    and macro F1, and the paired balanced-accuracy difference to the classifier's reference with its 95% interval."""
    seeds = len(table.seeds)
    lines = [
        f"Benefit check: {seeds} seed{'s' if seeds != 1 else ''}, {table.validation_images} validation images, "
        f"rebalanced classes: {', '.join(table.minority) or '-'}",
        "The validation split is carved from your training data (stratified by class), not from a test set.",
        f"{'classifier':<10} {'method':<13} {'min.recall':>10} {'bal.acc':>8} {'macro F1':>8}  balanced accuracy vs best baseline (95% interval)",
    ]
    for row in table.rows:
        versus = "(reference)" if row.method == row.reference else f"{_versus(row)} vs {row.reference}"
        m = row.means
        lines.append(
            f"{row.classifier:<10} {row.method:<13} {m['minority_recall']:>10.3f} {m['balanced_accuracy']:>8.3f} {m['macro_f1']:>8.3f}  {versus}"
        )
    return "\n".join(lines)


def run_check(
    candidates_for: Callable[[np.ndarray, np.ndarray, int], list[Candidate]],
    x: np.ndarray,
    y: np.ndarray,
    labels: list[str],
    minority: list[str],
    seeds: list[int],
    val_fraction: float = 0.3,
    classifiers: tuple[str, ...] = CLASSIFIERS,
    progress: Callable[[str], None] | None = None,
) -> BenefitTable:
    """The benefit check: for each seed, a stratified validation split of (x, y); `candidates_for(train_x,
    train_y, seed)` builds one Candidate per method from the training part only; every candidate is trained with
    every classifier and scored on the validation part. Raises GanopsError on an unknown minority label or
    classifier, no seeds, a class too small to split, or a method built twice."""
    unknown = [m for m in minority if m not in labels] + [c for c in classifiers if c not in CLASSIFIERS]
    if unknown or not minority or not seeds or not classifiers:
        raise GanopsError(
            f"the benefit check needs minority classes among ({', '.join(labels)}), classifiers among ({', '.join(CLASSIFIERS)}) "
            f"and at least one seed; got minority {minority}, classifiers {list(classifiers)}, seeds {seeds}"
        )
    minority_idx = [labels.index(m) for m in minority]
    scores: dict[tuple[str, str, int], dict[str, float]] = {}
    validation_images = 0
    for seed in seeds:
        train, val = stratified_split(y, labels, val_fraction, seed)
        validation_images = len(val)
        candidates = candidates_for(x[train], y[train], seed)
        methods = [c.method for c in candidates]
        if len(set(methods)) != len(methods):
            raise GanopsError(f"the benefit check got the same method twice for seed {seed}: {methods}")
        for candidate in candidates:
            for classifier in classifiers:
                predicted = fit_predict(classifier, candidate, x[val], len(labels), seed)
                scores[(candidate.method, classifier, seed)] = score(y[val], predicted, minority_idx)
                if progress:
                    done = scores[(candidate.method, classifier, seed)][DECIDING]
                    progress(f"seed {seed}: {candidate.method}/{classifier} balanced accuracy {done:.3f}")
    return benefit_table(scores, seeds, minority, validation_images)
