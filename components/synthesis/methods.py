"""The ways `ganops rebalance` fills a minority class, each a function from the real images and how many each class
needs to the images it adds:

- gan: generated images of the class, filtered: up to `candidates_factor` candidates are drawn per image needed
  and one is kept only when the quality check's classifier (trained on the real data) gives its requested class at
  least `min_confidence` (Bhattarai et al., ICASSP 2020, keep GAN samples by a classifier's confidence);
- oversample: real images of the class repeated (imbalanced-learn's RandomOverSampler);
- smote: interpolations between a real image and one of its nearest neighbours of the same class (SMOTE);
- mix: `mix_real_fraction` of the added images repeated real ones, the rest filtered generated ones.

Images are uint8 (N, C, H, W) with class indices; every draw is a pure function of the seed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from imblearn.over_sampling import SMOTE, RandomOverSampler

from components.core.errors import GanopsError
from components.core.names import GAN, MIX, OVERSAMPLE
from components.core.names import SMOTE as SMOTE_METHOD
from components.core.pixels import to_unit_range
from components.serving.runtime import Served
from components.synthesis.generate import images_of

SMOTE_NEIGHBOURS = 5  # imbalanced-learn's default; fewer when a class has fewer images
SMOTE_ROUNDS = 10  # draws to replace interpolations that rounded onto an existing image
SCORE_BATCH = 1000  # candidates scored by the classifier at once: memory stays bounded


@dataclass(frozen=True)
class Filtered:
    """What filtering did for one class: candidates drawn, kept (at most the number needed), rejected."""

    drawn: int
    kept: int
    rejected: int
    kept_indices: list[int] = field(default_factory=list)  # positions in the class's latent stream (seed, class)


@dataclass(frozen=True)
class Added:
    """Images a method adds to the real set, and where each came from."""

    x: np.ndarray  # uint8 (M, C, H, W)
    y: np.ndarray  # int64 (M,)
    kind: list[str]  # per image: "gan", "oversample" or "smote"
    repeated_from: list[int] = field(default_factory=list)  # for each oversampled image, its row in the real set
    filtering: dict[int, Filtered] = field(default_factory=dict)  # per class index, for the generated images

    @staticmethod
    def empty(shape: tuple[int, ...]) -> Added:
        return Added(np.zeros((0, *shape), np.uint8), np.zeros(0, np.int64), [])


def _strategy(y: np.ndarray, need: dict[int, int]) -> dict[int, int]:
    """imbalanced-learn's sampling_strategy: the count each class reaches (classes that need nothing left out)."""
    counts = np.bincount(y, minlength=max(need, default=0) + 1)
    return {c: int(counts[c]) + n for c, n in need.items() if n > 0}


def oversample(x: np.ndarray, y: np.ndarray, need: dict[int, int], seed: int) -> Added:
    """`need[c]` real images of class c drawn again at random (with replacement) by RandomOverSampler."""
    strategy = _strategy(y, need)
    if not strategy:
        return Added.empty(x.shape[1:])
    sampler = RandomOverSampler(sampling_strategy=strategy, random_state=seed)
    sampler.fit_resample(np.arange(len(y)).reshape(-1, 1), y)
    rows = np.asarray(sampler.sample_indices_[len(y) :])
    return Added(x[rows], y[rows].astype(np.int64), [OVERSAMPLE] * len(rows), [int(r) for r in rows])


def smote(x: np.ndarray, y: np.ndarray, need: dict[int, int], seed: int, labels: list[str]) -> Added:
    """`need[c]` SMOTE interpolations of class c's images (pixels as vectors), rounded to uint8, none a copy of a
    real image or of another (rounding can land an interpolation on its neighbour: such draws are replaced by new
    ones, from seeds derived from `seed`). Raises GanopsError naming a class with a single image."""
    strategy = _strategy(y, need)
    if not strategy:
        return Added.empty(x.shape[1:])
    lonely = [c for c in strategy if np.sum(y == c) < 2]
    if lonely:
        raise GanopsError(f"class {labels[lonely[0]]!r} has {int(np.sum(y == lonely[0]))} image: SMOTE needs at least 2 to interpolate")
    seen = {row.tobytes() for row in x}
    kept: dict[int, list[np.ndarray]] = {c: [] for c in strategy}
    for attempt in range(SMOTE_ROUNDS):
        short = {c: need[c] - len(kept[c]) for c in strategy if len(kept[c]) < need[c]}
        if not short:
            break
        for row, c in zip(*_smote_draw(x, y, short, seed * SMOTE_ROUNDS + attempt), strict=True):
            if row.tobytes() not in seen and len(kept[int(c)]) < need[int(c)]:
                seen.add(row.tobytes())
                kept[int(c)].append(row)
    rows = [(row, c) for c in strategy for row in kept[c]]
    if not rows:
        return Added.empty(x.shape[1:])
    return Added(np.stack([r for r, _ in rows]), np.array([c for _, c in rows], np.int64), [SMOTE_METHOD] * len(rows))


def _smote_draw(x: np.ndarray, y: np.ndarray, need: dict[int, int], seed: int) -> tuple[np.ndarray, np.ndarray]:
    """One SMOTE draw of need[c] images of class c, rounded to uint8 (N, C, H, W), with their classes."""
    strategy = _strategy(y, need)
    fewest = min(int(np.sum(y == c)) for c in strategy)
    sampler = SMOTE(sampling_strategy=strategy, k_neighbors=min(SMOTE_NEIGHBOURS, fewest - 1), random_state=seed)
    flat, out_y = sampler.fit_resample(x.reshape(len(x), -1).astype(np.float64), y)
    new = np.clip(np.rint(flat[len(y) :]), 0, 255).astype(np.uint8).reshape(-1, *x.shape[1:])
    return new, np.asarray(out_y[len(y) :], dtype=np.int64)


def class_confidence(classifier: torch.nn.Module, images: np.ndarray, class_index: int) -> np.ndarray:
    """The classifier's probability of `class_index` for each uint8 (N, C, H, W) image, SCORE_BATCH at a time."""
    classifier.eval()
    out = []
    with torch.no_grad():
        for start in range(0, len(images), SCORE_BATCH):
            logits = classifier(to_unit_range(torch.from_numpy(images[start : start + SCORE_BATCH])))
            out.append(torch.softmax(logits.float(), 1)[:, class_index].numpy())
    return np.concatenate(out) if out else np.zeros(0, np.float32)


def filtered_class(
    served: Served, classifier: torch.nn.Module, label: str, n: int, min_confidence: float, factor: int, seed: int
) -> tuple[np.ndarray, Filtered]:
    """Up to `n` generated images of `label` whose classifier confidence is at least `min_confidence`, taken in the
    order of the class's latent stream from `n * factor` candidates (fewer kept when too few pass)."""
    if n <= 0:
        return np.zeros((0, *served.manifest["output"]["images"][1:]), np.uint8), Filtered(0, 0, 0)
    candidates = images_of(served, label, n * factor, seed).transpose(0, 3, 1, 2).copy()
    passed = np.flatnonzero(class_confidence(classifier, candidates, served.labels.index(label)) >= min_confidence)
    kept = passed[:n]
    drawn = int(kept[-1]) + 1 if len(kept) == n else len(candidates)  # stops drawing once it has enough
    return candidates[kept], Filtered(drawn, len(kept), drawn - len(kept), [int(i) for i in kept])


def generated(served: Served, classifier: torch.nn.Module, need: dict[int, int], min_confidence: float, factor: int, seed: int) -> Added:
    """Filtered generated images for every class in `need` (see filtered_class)."""
    xs, ys, filtering = [], [], {}
    for c, n in need.items():
        images, counts = filtered_class(served, classifier, served.labels[c], n, min_confidence, factor, seed)
        xs.append(images)
        ys.append(np.full(len(images), c, np.int64))
        filtering[c] = counts
    if not xs:
        return Added.empty(tuple(served.manifest["output"]["images"][1:]))
    x = np.concatenate(xs)
    return Added(x, np.concatenate(ys), [GAN] * len(x), filtering=filtering)


def split_need(need: dict[int, int], real_fraction: float) -> tuple[dict[int, int], dict[int, int]]:
    """mix: (images repeated, images generated) per class, `real_fraction` of each class's need repeated (pure)."""
    repeated = {c: int(round(n * real_fraction)) for c, n in need.items()}
    return repeated, {c: n - repeated[c] for c, n in need.items()}


def concat(first: Added, *rest: Added) -> Added:
    """Several methods' additions as one (row numbers of repeated images stay those of the real set)."""
    parts = (first, *rest)
    return Added(
        np.concatenate([p.x for p in parts]),
        np.concatenate([p.y for p in parts]),
        [k for p in parts for k in p.kind],
        [r for p in parts for r in p.repeated_from],
        {c: f for p in parts for c, f in p.filtering.items()},
    )


def added_by(
    method: str,
    x: np.ndarray,
    y: np.ndarray,
    need: dict[int, int],
    seed: int,
    labels: list[str],
    make_generated: Callable[[dict[int, int]], Added],
    real_fraction: float,
) -> Added:
    """The images `method` adds (gan, oversample, smote or mix) to the real (x, y) so class c gains need[c];
    `make_generated(need)` draws the filtered generated images (only the methods that use the generator run it)."""
    if method == GAN:
        return make_generated(need)
    if method == OVERSAMPLE:
        return oversample(x, y, need, seed)
    if method == SMOTE_METHOD:
        return smote(x, y, need, seed, labels)
    if method == MIX:
        repeated, synthetic = split_need(need, real_fraction)
        return concat(oversample(x, y, repeated, seed), make_generated(synthetic))
    raise GanopsError(f"--method {method!r} adds no images (one of {GAN}, {OVERSAMPLE}, {SMOTE_METHOD}, {MIX})")
