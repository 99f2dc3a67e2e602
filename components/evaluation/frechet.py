"""The Frechet distance over feature statistics: the bottom of evaluation, pure numpy.

`frechet_distance` is exact and real-valued. S1 S2 has the same eigenvalues as the symmetric positive
semi-definite matrix L^T S2 L, where S1 = L L^T (Cholesky), so tr(sqrt(S1 S2)) is the sum of the square roots
of that matrix's eigenvalues: one Cholesky and one symmetric eigenvalue solve, no complex sqrtm. When S1 is
singular (fewer samples than dimensions) Cholesky fails and L is replaced by sqrt(S1) from a symmetric
eigendecomposition, which gives the same eigenvalues. Eigenvalues below zero (round-off) are clipped to zero,
the exact value for a PSD matrix, so the result is always finite.
"""

from __future__ import annotations

import numpy as np


def features_to_stats(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance (float64, unbiased) of features (N, D)."""
    f = np.asarray(features, dtype=np.float64)
    if f.ndim != 2 or f.shape[0] < 2:
        raise ValueError(f"need at least 2 feature rows of shape (N, D), got {f.shape}")
    return f.mean(axis=0), np.cov(f, rowvar=False)


def _sqrt_psd(matrix: np.ndarray) -> np.ndarray:
    values, vectors = np.linalg.eigh((matrix + matrix.T) / 2)
    return (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """||mu1 - mu2||^2 + tr(S1) + tr(S2) - 2 tr(sqrt(S1 S2)), in float64, never complex."""
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    s1, s2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or s1.shape != s2.shape or s1.shape != (mu1.size, mu1.size):
        raise ValueError(f"shape mismatch: mu {mu1.shape} vs {mu2.shape}, sigma {s1.shape} vs {s2.shape}")
    try:
        factor = np.linalg.cholesky(s1)
        middle = factor.T @ s2 @ factor
    except np.linalg.LinAlgError:  # singular S1: the symmetric square root has the same effect
        root1 = _sqrt_psd(s1)
        middle = root1 @ s2 @ root1
    eig = np.linalg.eigvalsh((middle + middle.T) / 2)
    trace_sqrt = np.sqrt(np.clip(eig, 0.0, None)).sum()
    diff = mu1 - mu2
    value = float(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * trace_sqrt)
    return max(value, 0.0)


def stats_to_fid(stats_a: tuple[np.ndarray, np.ndarray], stats_b: tuple[np.ndarray, np.ndarray]) -> float:
    return frechet_distance(stats_a[0], stats_a[1], stats_b[0], stats_b[1])
