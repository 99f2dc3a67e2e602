"""The metrics around FID, from the same features: KID, improved precision and recall, per-class FID and a
bootstrap confidence interval for FID. Pure functions over feature arrays; names say which extractor was used
(`kid_inception`, `precision_domain`, ...), the caller adds the suffix.
"""

from __future__ import annotations

import numpy as np
import torch

from components.core.names import FID_CI_HIGH as FID_HIGH
from components.core.names import FID_CI_LOW as FID_LOW
from components.core.names import KID, KID_STD, PAIRED_DIFF, PAIRED_DIFF_CI_HIGH, PAIRED_DIFF_CI_LOW, PRECISION, RECALL
from components.evaluation.frechet import features_to_stats, frechet_distance


def polynomial_mmd_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD^2 with the cubic polynomial kernel k(a, b) = (a.b / d + 1)^3 (Binkowski et al. 2018)."""
    d = x.shape[1]
    kxx, kyy, kxy = ((x @ x.T) / d + 1) ** 3, ((y @ y.T) / d + 1) ** 3, ((x @ y.T) / d + 1) ** 3
    m, n = len(x), len(y)
    sum_xx = (kxx.sum() - np.trace(kxx)) / (m * (m - 1))
    sum_yy = (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
    return float(sum_xx + sum_yy - 2 * kxy.mean())


def kid(real: np.ndarray, fake: np.ndarray, subsets: int = 100, subset_size: int = 1000, seed: int = 0) -> dict:
    """KID: mean and standard deviation of the unbiased MMD^2 over random subsets (torch-fidelity's defaults)."""
    size = min(subset_size, len(real), len(fake))
    if size < 2:
        raise ValueError(f"KID needs at least 2 samples per side, got {len(real)} and {len(fake)}")
    rng = np.random.default_rng(seed)
    values = [
        polynomial_mmd_unbiased(real[rng.choice(len(real), size, replace=False)], fake[rng.choice(len(fake), size, replace=False)])
        for _ in range(subsets)
    ]
    return {KID: float(np.mean(values)), KID_STD: float(np.std(values))}


def _kth_neighbour_radii(points: torch.Tensor, k: int, batch: int) -> torch.Tensor:
    radii = []
    for i in range(0, len(points), batch):
        d = torch.cdist(points[i : i + batch], points)
        radii.append(d.kthvalue(k + 1, dim=1).values)  # +1: each point is its own nearest neighbour
    return torch.cat(radii)


def _inside_manifold(points: torch.Tensor, manifold: torch.Tensor, radii: torch.Tensor, batch: int) -> torch.Tensor:
    inside = []
    for i in range(0, len(points), batch):
        d = torch.cdist(points[i : i + batch], manifold)
        inside.append((d <= radii[None, :]).any(dim=1))
    return torch.cat(inside)


def precision_recall(real: np.ndarray, fake: np.ndarray, k: int = 3, batch: int = 1024) -> dict:
    """Improved precision and recall (Kynkaanniemi et al. 2019): the fraction of fake samples inside the real
    k-NN manifold, and of real samples inside the fake one."""
    r, f = torch.from_numpy(np.asarray(real, np.float64)), torch.from_numpy(np.asarray(fake, np.float64))
    if len(r) <= k or len(f) <= k:
        raise ValueError(f"precision/recall with k={k} needs more than {k} samples per side")
    precision = _inside_manifold(f, r, _kth_neighbour_radii(r, k, batch), batch).double().mean().item()
    recall = _inside_manifold(r, f, _kth_neighbour_radii(f, k, batch), batch).double().mean().item()
    return {PRECISION: precision, RECALL: recall}


def bootstrap_fid(real: np.ndarray, fake: np.ndarray, rounds: int = 20, level: float = 0.95, seed: int = 0) -> dict:
    """A bootstrap interval for FID: resample both feature sets with replacement `rounds` times.

    Resampling repeats rows, which shrinks covariances and biases every bootstrap FID upwards; the percentile
    interval is therefore shifted by that bias (bootstrap mean minus the full-sample FID), so it brackets the
    estimate and its width shows the sampling noise a gate should not mistake for an improvement.
    """
    rng = np.random.default_rng(seed)
    estimate = frechet_distance(*features_to_stats(real), *features_to_stats(fake))
    values = []
    for _ in range(rounds):
        a = features_to_stats(real[rng.integers(0, len(real), len(real))])
        b = features_to_stats(fake[rng.integers(0, len(fake), len(fake))])
        values.append(frechet_distance(*a, *b))
    bias = float(np.mean(values)) - estimate
    low, high = np.percentile(values, [(1 - level) / 2 * 100, (1 + level) / 2 * 100]) - bias
    return {FID_LOW: float(max(low, 0.0)), FID_HIGH: float(high)}


def paired_bootstrap_fid(
    real: np.ndarray, fake_a: np.ndarray, fake_b: np.ndarray, rounds: int = 20, level: float = 0.95, seed: int = 0
) -> dict:
    """The interval of FID(a) - FID(b) when row i of `fake_a` and of `fake_b` come from the same latent vector.

    Each round draws one resample of the real rows and one of the latent indices, used for both generators, so
    what the two share (the real sample, the latents) cancels in the difference and only the generators differ.
    Interval shifted by the bootstrap bias, as in `bootstrap_fid`; a negative upper bound means a is better.
    """
    if len(fake_a) != len(fake_b):
        raise ValueError(f"paired samples must have equal length, got {len(fake_a)} and {len(fake_b)}")
    rng = np.random.default_rng(seed)
    ref = features_to_stats(real)
    estimate = frechet_distance(*ref, *features_to_stats(fake_a)) - frechet_distance(*ref, *features_to_stats(fake_b))
    values = []
    for _ in range(rounds):
        r = features_to_stats(real[rng.integers(0, len(real), len(real))])
        idx = rng.integers(0, len(fake_a), len(fake_a))
        values.append(frechet_distance(*r, *features_to_stats(fake_a[idx])) - frechet_distance(*r, *features_to_stats(fake_b[idx])))
    bias = float(np.mean(values)) - estimate
    low, high = np.percentile(values, [(1 - level) / 2 * 100, (1 + level) / 2 * 100]) - bias
    return {PAIRED_DIFF: float(estimate), PAIRED_DIFF_CI_LOW: float(low), PAIRED_DIFF_CI_HIGH: float(high)}


def per_class_fid(real: np.ndarray, real_labels: np.ndarray, fake: np.ndarray, fake_labels: np.ndarray) -> dict[int, float]:
    """FID between real and generated features of each class (for conditional generators)."""
    out = {}
    for label in np.unique(real_labels):
        r, f = real[real_labels == label], fake[fake_labels == label]
        if len(r) >= 2 and len(f) >= 2:
            out[int(label)] = frechet_distance(*features_to_stats(r), *features_to_stats(f))
    return out
