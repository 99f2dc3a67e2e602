"""The one combiner: every metric of a stored generator against a dataset version, as typed Scores.

fid_domain with KID, precision/recall, a bootstrap interval and, for conditional generators, per-class FID, from
the dataset's own extractor; plus the standard Inception metrics against cached reference statistics when
`evaluate.inception` is set. The same seed gives every generator the same latent vectors, so a candidate and a
champion are compared alike.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from components.config import EvaluateConfig
from components.core.device import pick_device
from components.core.errors import ConfigError
from components.core.names import DOMAIN, EXTRACTOR_ACCURACY, FID, FID_DOMAIN, FID_DOMAIN_REAL_SPLIT, INCEPTION, metric_name
from components.core.pixels import to_uint8
from components.data.images import load_images
from components.evaluation.domain import features_of, real_split_fid
from components.evaluation.extra import bootstrap_fid, kid, paired_bootstrap_fid, per_class_fid, precision_recall
from components.evaluation.extractors import EXTRACTORS, ExtractorInputs
from components.evaluation.fid_between import compare, reference_stats_cached
from components.evaluation.frechet import features_to_stats, stats_to_fid
from components.evaluation.stats import StatsAccumulator
from components.training.networks import GeneratorSpec
from components.training.weights import load_generator, sample


@dataclass(frozen=True)
class Scores:
    """Every metric (floats only, named by metric_name) and what produced them."""

    metrics: dict[str, float]
    extractor: str  # the domain extractor's cache key (dataset md5, version, epochs, seed)
    num_samples: int
    reference_stats: Path | None = None  # the dataset's cached Inception statistics, when computed

    def to_dict(self) -> dict:
        return {**asdict(self), "reference_stats": str(self.reference_stats) if self.reference_stats else None}


def check_shape(spec: GeneratorSpec, image_shape: tuple[int, ...], what: str) -> None:
    """Raise ConfigError when a generator's images do not have the dataset's (channels, height, width)."""
    if spec.image_shape != tuple(image_shape):
        raise ConfigError(
            f"{what} makes {spec.channels}x{spec.image_size}x{spec.image_size} images but the dataset has {'x'.join(map(str, image_shape))}"
        )


def _domain(data_root: Path, labels: list[str], dataset_md5: str, cfg: EvaluateConfig, cache_dir: Path, seed: int):
    """The real images, their labels and the dataset's own extractor (trained once per dataset version, cached)."""
    images, targets = load_images(Path(data_root), labels)
    real = torch.from_numpy(images)
    extractor = EXTRACTORS[DOMAIN](
        ExtractorInputs(
            cache_dir,
            cfg.batch_size,
            images=real,
            labels=torch.from_numpy(targets),
            num_classes=len(labels),
            dataset_md5=dataset_md5,
            epochs=cfg.extractor_epochs,
            seed=seed,
        )
    )
    return real, targets, extractor


def proportional_labels(targets: np.ndarray, num_classes: int, n: int) -> torch.Tensor:
    """n class labels in the real data's proportions (largest remainders), cycling through the classes in turn so
    any prefix is mixed: a conditional generator is compared with imbalanced data as the data is, not as if balanced."""
    counts = np.bincount(targets, minlength=num_classes).astype(float)
    quota = counts / counts.sum() * n
    take = np.floor(quota).astype(int)
    take[np.argsort(-(quota - take), kind="stable")[: n - take.sum()]] += 1
    order = np.argsort(np.concatenate([np.arange(k) / max(k, 1) for k in take]), kind="stable")
    return torch.from_numpy(np.repeat(np.arange(num_classes), take)[order])


def _generate(weights: Path, image_shape: tuple[int, ...], cfg: EvaluateConfig, seed: int, targets: np.ndarray):
    """`cfg.num_samples` images of the generator at `weights` from the latents of `seed` (the same for every
    generator), with their class labels (a conditional generator's in the real `targets`' proportions)."""
    generator, spec, _ = load_generator(Path(weights))
    check_shape(spec, image_shape, f"generator {weights}")
    device = pick_device("auto")  # the latents come from a CPU generator: the same on every device
    fake_labels = (
        proportional_labels(targets, spec.num_classes, cfg.num_samples)
        if spec.conditional
        else torch.zeros(cfg.num_samples, dtype=torch.long)
    )
    generated = to_uint8(
        sample(generator.to(device), cfg.num_samples, seed, cfg.batch_size, str(device), labels=fake_labels if spec.conditional else None)
    )
    return generated, spec, fake_labels


def evaluate_generator(
    weights: Path, data_root: Path, labels: list[str], dataset_md5: str, cfg: EvaluateConfig, cache_dir: Path, seed: int
) -> Scores:
    """Score the generator stored at `weights` against the ImageFolder at `data_root` (version `dataset_md5`)."""
    real, targets, extractor = _domain(data_root, labels, dataset_md5, cfg, cache_dir, seed)
    generated, spec, fake_labels = _generate(weights, tuple(real.shape[1:]), cfg, seed, targets)
    real_f, fake_f = features_of(extractor, real), features_of(extractor, generated)
    metrics = {
        FID_DOMAIN: stats_to_fid(features_to_stats(fake_f), features_to_stats(real_f)),
        FID_DOMAIN_REAL_SPLIT: real_split_fid(extractor, real, seed),
        EXTRACTOR_ACCURACY: extractor.accuracy,
    }
    metrics.update({metric_name(k, DOMAIN): v for k, v in kid(real_f, fake_f, subsets=20).items()})
    metrics.update({metric_name(k, DOMAIN): v for k, v in precision_recall(real_f, fake_f).items()})
    if cfg.bootstrap_rounds:
        metrics.update({metric_name(k, DOMAIN): v for k, v in bootstrap_fid(real_f, fake_f, cfg.bootstrap_rounds, seed=seed).items()})
    if spec.conditional:
        for label, value in per_class_fid(real_f, targets, fake_f, fake_labels.numpy()).items():
            metrics[metric_name(FID, DOMAIN, "class", labels[label])] = value
    reference = None
    if cfg.inception:
        inception, reference = _inception_metrics(generated, data_root, dataset_md5, cfg, cache_dir)
        metrics.update(inception)
    return Scores(metrics=metrics, extractor=extractor.key, num_samples=cfg.num_samples, reference_stats=reference)


def paired_difference(
    candidate: Path, champion: Path, data_root: Path, labels: list[str], dataset_md5: str, cfg: EvaluateConfig, cache_dir: Path, seed: int
) -> dict[str, float]:
    """fid_diff_domain (candidate minus champion) and its paired bootstrap interval, both generators sampled from
    the same latents; empty when evaluate.bootstrap_rounds is 0."""
    if not cfg.bootstrap_rounds:
        return {}
    real, targets, extractor = _domain(data_root, labels, dataset_md5, cfg, cache_dir, seed)
    shape = tuple(real.shape[1:])
    fake_a, fake_b = (features_of(extractor, _generate(w, shape, cfg, seed, targets)[0]) for w in (candidate, champion))
    paired = paired_bootstrap_fid(features_of(extractor, real), fake_a, fake_b, rounds=cfg.bootstrap_rounds, seed=seed)
    return {metric_name(k, DOMAIN): v for k, v in paired.items()}


def _inception_metrics(
    generated: torch.Tensor, data_root: Path, dataset_md5: str, cfg: EvaluateConfig, cache_dir: Path
) -> tuple[dict[str, float], Path]:
    """Standard Inception FID (+ KID, precision/recall) against cached reference statistics of the dataset."""
    extractor = EXTRACTORS[INCEPTION](
        ExtractorInputs(cache_dir, cfg.inception_batch_size, weights=cfg.inception_weights or None, precision=cfg.inception_precision)
    )
    ref_stats, ref_feats, path = reference_stats_cached(cache_dir / "stats", dataset_md5, Path(data_root), extractor, keep=2000)
    acc = StatsAccumulator(keep=2000)
    for i in range(0, len(generated), extractor.batch_size):
        acc.add(extractor(generated[i : i + extractor.batch_size]))
    result = compare(ref_stats, ref_feats, acc.stats(), acc.features(), extra=True)
    return {k: v for k, v in result.items() if k.endswith(f"_{INCEPTION}")}, path
