"""Evaluation: Frechet distance over feature statistics, and the offline `fid_domain` extractor.

`frechet_distance` is exact and real-valued. S1 S2 has the same eigenvalues as the symmetric positive
semi-definite matrix L^T S2 L, where S1 = L L^T (Cholesky), so tr(sqrt(S1 S2)) is the sum of the square roots
of that matrix's eigenvalues: one Cholesky and one symmetric eigenvalue solve, no complex sqrtm. When S1 is
singular (fewer samples than dimensions) Cholesky fails and L is replaced by sqrt(S1) from a symmetric
eigendecomposition, which gives the same eigenvalues. Eigenvalues below zero (round-off) are clipped to zero,
the exact value for a PSD matrix, so the result is always finite.

`fid_domain` uses a small classifier trained on the dataset itself (networks.FeatureClassifier), cached per
dataset md5. It is NOT the standard Inception FID and is never reported under that name.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from components.atomic import replace_file
from components.networks import FeatureClassifier

FID_DOMAIN = "fid_domain"
FID_DOMAIN_REAL_SPLIT = "fid_domain_real_split"  # FID between two halves of the real data: the noise floor
EXTRACTOR_ACCURACY = "extractor_accuracy"
EXTRACTOR_VERSION = 1  # bump when FeatureClassifier or its training changes, so old caches are not reused


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


@dataclass
class Extractor:
    model: FeatureClassifier
    accuracy: float  # on a held-out tenth of the dataset
    key: str  # cache key: dataset md5 + extractor version

    @torch.no_grad()
    def features(self, images: torch.Tensor, batch_size: int = 500) -> np.ndarray:
        """Features (N, 128) of images in [-1, 1], (N, C, H, W)."""
        self.model.eval()
        out = [self.model.features(images[i : i + batch_size]).double().numpy() for i in range(0, len(images), batch_size)]
        return np.concatenate(out)


def quantize(images: torch.Tensor) -> torch.Tensor:
    """Round generated images to the 8-bit grid real images live on, so both sides are measured alike."""
    return torch.round((images.clamp(-1, 1) + 1) * 127.5) / 127.5 - 1


def train_extractor(images: torch.Tensor, labels: torch.Tensor, num_classes: int, epochs: int, seed: int) -> tuple[FeatureClassifier, float]:
    """Train the feature classifier on 90% of the data; returns (model, held-out accuracy)."""
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    n = len(images)
    order = torch.randperm(n, generator=gen)
    held = max(1, n // 10)
    test_idx, train_idx = order[:held], order[held:]
    model = FeatureClassifier(images.shape[1], images.shape[2], num_classes)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(epochs):
        model.train()
        perm = train_idx[torch.randperm(len(train_idx), generator=gen)]
        for i in range(0, len(perm), 64):
            idx = perm[i : i + 64]
            loss = F.cross_entropy(model(images[idx]), labels[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        accuracy = (model(images[test_idx]).argmax(1) == labels[test_idx]).float().mean().item()
    return model, accuracy


def load_or_train_extractor(cache_dir: Path, dataset_md5: str, images: torch.Tensor, labels: torch.Tensor,
                            num_classes: int, epochs: int, seed: int = 0) -> Extractor:
    """The dataset's extractor from the cache, or trained now and cached (written atomically)."""
    key = f"{dataset_md5}-v{EXTRACTOR_VERSION}-e{epochs}-s{seed}"
    weights, meta = cache_dir / f"{key}.safetensors", cache_dir / f"{key}.json"
    model = FeatureClassifier(images.shape[1], images.shape[2], num_classes)
    if weights.is_file() and meta.is_file():
        model.load_state_dict(load_file(str(weights)))
        return Extractor(model.eval(), json.loads(meta.read_text())["accuracy"], key)
    model, accuracy = train_extractor(images, labels, num_classes, epochs, seed)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    replace_file(lambda tmp: save_file(state, str(tmp)), weights)
    info = json.dumps({"accuracy": accuracy, "dataset_md5": dataset_md5, "epochs": epochs})
    replace_file(lambda tmp: tmp.write_text(info), meta)
    return Extractor(model, accuracy, key)


def real_split_fid(extractor: Extractor, real: torch.Tensor, seed: int, batch_size: int) -> float:
    """FID between two random halves of the real images: how low FID can go on this data."""
    order = torch.randperm(len(real), generator=torch.Generator().manual_seed(seed))
    half = len(real) // 2
    a = features_to_stats(extractor.features(real[order[:half]], batch_size))
    b = features_to_stats(extractor.features(real[order[half:]], batch_size))
    return stats_to_fid(a, b)


def evaluate_generator(weights: Path, data_root: Path, labels: list[str], dataset_md5: str, cfg, cache_dir: Path, seed: int) -> dict:
    """fid_domain (with KID, precision/recall, a bootstrap interval and, for conditional generators, per-class FID)
    of a stored generator against the dataset, with the dataset's cached extractor; plus the standard Inception
    metrics when `cfg.inception` is set. `cfg` is the EvaluateConfig.

    The same seed gives every generator the same latent vectors, so a candidate and a champion are compared alike.
    """
    from components.data import load_images
    from components.metrics_extra import bootstrap_fid, kid, per_class_fid, precision_recall
    from components.weights import load_generator, sample

    images, targets = load_images(Path(data_root), labels)
    real = torch.from_numpy(images).float().div(127.5).sub(1.0)
    extractor = load_or_train_extractor(cache_dir / "extractors", dataset_md5, real, torch.from_numpy(targets), len(labels),
                                        cfg.extractor_epochs, seed)
    generator, spec, _ = load_generator(Path(weights))
    if (spec["channels"], spec["image_size"]) != tuple(real.shape[1:3]):
        raise ValueError(f"generator makes {spec['channels']}x{spec['image_size']}px images, the dataset has {tuple(real.shape[1:])}")
    fake_labels = torch.arange(cfg.num_samples) % max(spec.get("num_classes", 0), 1)
    generated = quantize(sample(generator, cfg.num_samples, seed, cfg.batch_size, labels=fake_labels if spec.get("num_classes") else None))
    real_f, fake_f = extractor.features(real, cfg.batch_size), extractor.features(generated, cfg.batch_size)
    scores = {FID_DOMAIN: stats_to_fid(features_to_stats(fake_f), features_to_stats(real_f)),
              FID_DOMAIN_REAL_SPLIT: real_split_fid(extractor, real, seed, cfg.batch_size),
              EXTRACTOR_ACCURACY: extractor.accuracy, "extractor": extractor.key, "num_samples": cfg.num_samples}
    scores.update({f"{k}_domain": v for k, v in kid(real_f, fake_f, subsets=20).items()})
    scores.update({f"{k}_domain": v for k, v in precision_recall(real_f, fake_f).items()})
    if cfg.bootstrap_rounds:
        scores.update({f"{k}_domain": v for k, v in bootstrap_fid(real_f, fake_f, cfg.bootstrap_rounds, seed=seed).items()})
    if spec.get("num_classes"):
        for label, value in per_class_fid(real_f, targets, fake_f, fake_labels.numpy()).items():
            scores[f"{FID_DOMAIN}_class_{labels[label]}"] = value
    if cfg.inception:
        scores.update(_inception_scores(generated, data_root, dataset_md5, cfg, cache_dir))
    return scores


def _inception_scores(generated: torch.Tensor, data_root: Path, dataset_md5: str, cfg, cache_dir: Path) -> dict:
    """Standard Inception FID (+ KID, precision/recall) against cached reference statistics of the dataset."""
    from components.fid_sources import FID_INCEPTION, compare, inception_extractor, reference_stats_cached
    from components.inception import to_uint8
    from components.stats import StatsAccumulator

    extractor = inception_extractor(cfg.inception_weights or None, cache_dir / "inception", cfg.inception_batch_size)
    ref_stats, ref_feats, path = reference_stats_cached(cache_dir / "stats", dataset_md5, Path(data_root), extractor, keep=2000)
    acc = StatsAccumulator(keep=2000)
    uint8 = to_uint8(generated)
    for i in range(0, len(uint8), extractor.batch_size):
        acc.add(extractor(uint8[i : i + extractor.batch_size]))
    result = compare(ref_stats, ref_feats, acc.stats(), acc.features(), extra=True)
    return {FID_INCEPTION: result[FID_INCEPTION], "reference_stats": str(path),
            **{k: v for k, v in result.items() if k.endswith("_inception") and k != FID_INCEPTION}}
