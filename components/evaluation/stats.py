"""Feature statistics that stream: mean and covariance accumulate in float64, batch by batch, on the device the
features come from.

50,000 x 2048 features never sit in memory: the accumulator keeps a count, a sum and a sum of outer products
(2048 x 2048 float64 = 32 MiB), shifted by the first batch's mean so the covariance does not lose precision.
Features that an extractor leaves on a GPU are accumulated there (one float64 matrix product per batch); nothing
crosses to the host until the statistics are read. For the metrics that need samples (KID, precision/recall,
bootstrap), a capped reservoir keeps a uniform random subset of rows on the host.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from components.core.atomic import replace_file


class StatsAccumulator:
    """Add feature batches (N, D) (numpy or torch, any device); read mean, cov (numpy float64) and an optional
    uniform sample of at most `keep` rows."""

    def __init__(self, keep: int = 0, seed: int = 0):
        self.n = 0
        self.shift: torch.Tensor | None = None
        self.sum: torch.Tensor | None = None
        self.outer: torch.Tensor | None = None
        self.keep, self.rng, self.seen = keep, np.random.default_rng(seed), 0
        self.sample: list[np.ndarray] = []

    def add(self, features: np.ndarray | torch.Tensor) -> None:
        f = torch.as_tensor(features).to(torch.float64)
        if f.ndim != 2 or not len(f):
            return
        if self.shift is None:
            self.shift = f.mean(0)
            self.sum = torch.zeros_like(self.shift)
            self.outer = torch.zeros(f.shape[1], f.shape[1], dtype=torch.float64, device=f.device)
        shift, total, outer = self._moments()
        c = f - shift
        self.n += len(f)
        total.add_(c.sum(0))
        outer.addmm_(c.T, c)
        if self.keep:
            self._reservoir(f.cpu().numpy())

    def _reservoir(self, f: np.ndarray) -> None:
        for row in f:
            self.seen += 1
            if len(self.sample) < self.keep:
                self.sample.append(row)
            else:
                j = self.rng.integers(0, self.seen)
                if j < self.keep:
                    self.sample[j] = row

    def _moments(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The shift, the shifted sum and the shifted sum of outer products; raises ValueError before any rows."""
        if self.shift is None or self.sum is None or self.outer is None:
            raise ValueError("no feature rows added yet: add a batch before reading the statistics")
        return self.shift, self.sum, self.outer

    def mean(self) -> np.ndarray:
        shift, total, _ = self._moments()
        return (shift + total / self.n).cpu().numpy()

    def cov(self) -> np.ndarray:
        if self.n < 2:
            raise ValueError(f"need at least 2 feature rows for a covariance, got {self.n}")
        _, total, outer = self._moments()
        centred = total / self.n
        return ((outer - self.n * torch.outer(centred, centred)) / (self.n - 1)).cpu().numpy()

    def stats(self) -> tuple[np.ndarray, np.ndarray]:
        return self.mean(), self.cov()

    def features(self) -> np.ndarray:
        return np.stack(self.sample) if self.sample else np.zeros((0, 0))


def save_stats(path: Path, mu: np.ndarray, sigma: np.ndarray, **meta: object) -> Path:
    """Write `mu`, `sigma` (pytorch-fid's .npz layout) plus string metadata, atomically."""
    # Any: numpy's stub for savez(**kwds) would also let a dict of arrays fill its `allow_pickle: bool` parameter.
    strings: dict[str, Any] = {k: np.asarray(str(v)) for k, v in meta.items()}
    replace_file(lambda tmp: np.savez(tmp, mu=mu, sigma=sigma, **strings), path)
    return path


def load_stats(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read `mu` and `sigma` from an .npz (no pickles allowed). Raises ValueError naming what is wrong."""
    with np.load(path, allow_pickle=False) as data:
        if "mu" not in data or "sigma" not in data:
            raise ValueError(f"{path} has no 'mu' and 'sigma' arrays (found: {', '.join(data.files)})")
        mu, sigma = data["mu"].astype(np.float64), data["sigma"].astype(np.float64)
    if mu.ndim != 1 or sigma.shape != (mu.size, mu.size):
        raise ValueError(f"{path}: mu {mu.shape} and sigma {sigma.shape} do not match")
    if not (np.isfinite(mu).all() and np.isfinite(sigma).all()):
        raise ValueError(f"{path}: mu or sigma holds NaN or infinite values")
    return mu, sigma
