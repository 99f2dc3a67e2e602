"""The quality check a generator must pass before its images become training data.

For every class it is to generate: a classifier trained on the real data (the fid_domain extractor's network, its
loss weighted by inverse class frequency since the data is imbalanced, cached per content hash) must label at least `min_class_accuracy` of the class's samples as that class, and the
class's fid_domain (samples against one random half of its real images, in that classifier's features) must stay
under `class_fid_factor` times the class's own real-vs-real FID (the other half against the same half, at the same
size) (for a class with at least `min_real_for_fid` real images: below that, the FID mostly measures
the few real images' covariance, so the classifier decides alone, and the report says so). The decision is a pure
function of the measured numbers.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from components.config import SynthesisConfig
from components.core.atomic import file_digest
from components.core.errors import GanopsError
from components.core.pixels import to_unit_range
from components.data.images import list_files, load_images
from components.evaluation.domain import DomainExtractor, features_of, load_or_train_extractor
from components.evaluation.frechet import features_to_stats, stats_to_fid
from components.serving.runtime import Served
from components.synthesis.generate import images_of, require_conditional


@dataclass(frozen=True)
class ClassQuality:
    label: str
    accuracy: float  # fraction of the samples the classifier labels as `label`
    fid: float  # fid_domain of h samples against h real images of the class (one random half)
    floor: float  # fid_domain of the other half of the class's real images against the same half
    real_images: int
    samples: int
    passed: bool
    reason: str  # the rule broken, or "ok"


@dataclass(frozen=True)
class QualityReport:
    classes: list[ClassQuality]
    classifier_accuracy: float  # on a held-out tenth of the real data
    min_class_accuracy: float
    class_fid_factor: float
    data_sha256: str  # the real data the classifier and the FIDs come from

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.classes)

    @property
    def failures(self) -> list[ClassQuality]:
        return [c for c in self.classes if not c.passed]

    def to_dict(self) -> dict:
        return {**asdict(self), "passed": self.passed}


def judge_class(
    label: str, accuracy: float, fid: float, floor: float, real_images: int, samples: int, cfg: SynthesisConfig
) -> ClassQuality:
    """Pass or fail one class on its measured numbers (pure)."""
    ceiling = cfg.class_fid_factor * floor
    if not accuracy >= cfg.min_class_accuracy:
        reason = f"the classifier labels {accuracy:.1%} of its samples as {label!r} (needs {cfg.min_class_accuracy:.0%})"
    elif real_images >= cfg.min_real_for_fid and not fid <= ceiling:
        reason = f"its fid_domain is {fid:.2f}, over {cfg.class_fid_factor:g} x its real-vs-real {floor:.2f} = {ceiling:.2f}"
    else:
        return ClassQuality(
            label,
            accuracy,
            fid,
            floor,
            real_images,
            samples,
            True,
            "ok"
            if real_images >= cfg.min_real_for_fid
            else f"ok by the classifier alone: {real_images} real images are too few for a per-class FID",
        )
    return ClassQuality(label, accuracy, fid, floor, real_images, samples, False, reason)


def folder_digest(root: Path) -> str:
    """sha256 over every data file's relative path and content hash: the real data's identity, whatever its path."""
    digest = hashlib.sha256()
    for rel in list_files(root):
        digest.update(f"{rel.as_posix()}\t{file_digest(root / rel)}\n".encode())
    return digest.hexdigest()


def label_folders(root: Path) -> list[str]:
    """The label folders of an ImageFolder, sorted (its class order when no generator gives one)."""
    return sorted({rel.parts[0] for rel in list_files(root) if len(rel.parts) > 1})


def real_data(root: Path, labels: list[str]) -> tuple[torch.Tensor, np.ndarray]:
    """The real images (uint8, N C H W) and label indices; refuses a label folder the generator does not know."""
    unknown = [f for f in label_folders(root) if f not in labels]
    if unknown:
        raise GanopsError(f"{root}/{unknown[0]}: the generator does not know the class {unknown[0]!r} (it knows {', '.join(labels)})")
    images, targets = load_images(root, labels)
    return torch.from_numpy(images), targets


def class_numbers(
    extractor: DomainExtractor, served: Served, label: str, real: torch.Tensor, n: int, seed: int
) -> tuple[float, float, float]:
    """(accuracy of `n` samples of `label`, fid, floor). Both FIDs at the same sizes (FID's bias grows as 1/size):
    h samples against one random half of the class's h real images each, and the floor the other half against it."""
    fake = torch.from_numpy(images_of(served, label, n, seed)).permute(0, 3, 1, 2).contiguous()
    if tuple(fake.shape[1:]) != tuple(real.shape[1:]):
        raise GanopsError(
            f"{served.model_name} version {served.version} makes {'x'.join(map(str, fake.shape[1:]))} images "
            f"but the data has {'x'.join(map(str, real.shape[1:]))}"
        )
    with torch.no_grad():
        predicted = extractor.model.eval()(to_unit_range(fake)).argmax(1).numpy()
    accuracy = float(np.mean(predicted == served.labels.index(label)))
    h = min(len(real) // 2, n)
    if h < 2:
        return accuracy, float("inf"), float("nan")
    order = torch.randperm(len(real), generator=torch.Generator().manual_seed(seed))
    half_a, half_b = (features_to_stats(features_of(extractor, real[order[i * h : (i + 1) * h]])) for i in (0, 1))
    fid = stats_to_fid(features_to_stats(features_of(extractor, fake[:h])), half_b)
    return accuracy, fid, stats_to_fid(half_a, half_b)


@dataclass(frozen=True)
class RealData:
    """The real data a generator is judged against, and the classifier trained on it (cached per content hash)."""

    images: torch.Tensor  # uint8 (N, C, H, W)
    targets: np.ndarray  # class indices in the generator's label order
    sha256: str  # folder_digest of the data
    classifier: DomainExtractor | None  # None when no generator is involved (oversample, SMOTE): nothing to judge


def read_real_data(served: Served, data: Path, cfg: SynthesisConfig, cache_dir: Path) -> RealData:
    """The real images of `data` and the class-balanced classifier of the quality check, from the cache or trained now."""
    real, targets = real_data(data, require_conditional(served))
    key = folder_digest(data)
    extractor = load_or_train_extractor(
        cache_dir,
        f"quality-{key[:24]}",
        real,
        torch.from_numpy(targets),
        len(served.labels),
        cfg.classifier_epochs,
        cfg.seed,
        balanced=True,
    )
    return RealData(real, targets, key, extractor)


def read_real_images(data: Path, labels: list[str]) -> RealData:
    """The real images of `data` alone, for the methods that need no generator (and so no quality classifier)."""
    real, targets = real_data(data, labels)
    return RealData(real, targets, folder_digest(data), None)


def check_quality(served: Served, real_set: RealData, classes: list[str], cfg: SynthesisConfig) -> QualityReport:
    """Measure and judge every class in `classes` of the conditional generator `served` against the real data."""
    real, targets, key, extractor = real_set.images, real_set.targets, real_set.sha256, real_set.classifier
    if extractor is None:
        raise GanopsError("the quality check needs the real data's classifier: read the data with read_real_data")
    results = []
    for label in classes:
        mine = real[torch.from_numpy(targets == served.labels.index(label))]
        accuracy, fid, floor = class_numbers(extractor, served, label, mine, cfg.quality_samples, cfg.seed)
        results.append(judge_class(label, accuracy, fid, floor, len(mine), cfg.quality_samples, cfg))
    return QualityReport(results, extractor.accuracy, cfg.min_class_accuracy, cfg.class_fid_factor, key)


def format_quality(report: QualityReport) -> str:
    rows = [f"quality check {'passed' if report.passed else 'FAILED'} (classifier held-out accuracy {report.classifier_accuracy:.1%}):"]
    for c in report.classes:
        rows.append(
            f"  {c.label:>8}  accuracy {c.accuracy:6.1%}  fid_domain {c.fid:8.2f} (real-vs-real {c.floor:6.2f})  ({c.real_images} real, "
            f"{c.samples} samples)  {c.reason if c.passed else 'FAIL: ' + c.reason}"
        )
    return "\n".join(rows)
