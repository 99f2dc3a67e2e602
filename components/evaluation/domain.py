"""The `fid_domain` feature extractor: a small classifier trained on the dataset itself, cached per dataset md5.

It is NOT the standard Inception FID and is never reported under that name; it is the default on small or
non-natural images (8x8 digits) and whenever the Inception weights are absent.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from components.core.atomic import replace_file
from components.core.names import DOMAIN
from components.core.pixels import to_unit_range
from components.evaluation.frechet import features_to_stats, stats_to_fid

EXTRACTOR_VERSION = 1  # bump when FeatureClassifier or its training changes, so old caches are not reused


class FeatureClassifier(nn.Module):
    """A small CNN classifier trained on the dataset; its hidden layer gives `fid_domain` features."""

    feature_dim = 128

    def __init__(self, channels: int, image_size: int, num_classes: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, 32, 3, 1, 1),
            nn.ReLU(True),
            nn.Conv2d(32, 64, 3, 2, 1),
            nn.ReLU(True),
            nn.Flatten(),
            nn.Linear(64 * ((image_size + 1) // 2) ** 2, self.feature_dim),
            nn.ReLU(True),
        )
        self.head = nn.Linear(self.feature_dim, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


@dataclass
class DomainExtractor:
    model: FeatureClassifier
    accuracy: float  # on a held-out tenth of the dataset
    key: str  # cache key: dataset md5 + extractor version
    batch_size: int = 500
    name: str = DOMAIN

    @property
    def tag(self) -> str:
        return self.name

    @torch.no_grad()
    def __call__(self, images_uint8: torch.Tensor) -> np.ndarray:
        """Features (N, 128) of uint8 images (N, C, H, W)."""
        self.model.eval()
        return self.model.features(to_unit_range(images_uint8)).double().numpy()


def train_extractor(
    images: torch.Tensor, labels: torch.Tensor, num_classes: int, epochs: int, seed: int, balanced: bool = False
) -> tuple[FeatureClassifier, float]:
    """Train the feature classifier on 90% of the data; returns (model, held-out accuracy). `balanced` weighs each
    class's loss by the inverse of its frequency, so a minority class is not traded away for the majority."""
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    n = len(images)
    order = torch.randperm(n, generator=gen)
    held = max(1, n // 10)
    test_idx, train_idx = order[:held], order[held:]
    model = FeatureClassifier(images.shape[1], images.shape[2], num_classes)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    counts = torch.bincount(labels[train_idx], minlength=num_classes).clamp(min=1).float()
    weights = (counts.sum() / (num_classes * counts)) if balanced else None
    for _ in range(epochs):
        model.train()
        perm = train_idx[torch.randperm(len(train_idx), generator=gen)]
        for i in range(0, len(perm), 64):
            idx = perm[i : i + 64]
            loss = F.cross_entropy(model(images[idx]), labels[idx], weight=weights)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        accuracy = (model(images[test_idx]).argmax(1) == labels[test_idx]).float().mean().item()
    return model, accuracy


def load_or_train_extractor(
    cache_dir: Path,
    dataset_md5: str,
    images: torch.Tensor,
    labels: torch.Tensor,
    num_classes: int,
    epochs: int,
    seed: int = 0,
    batch_size: int = 500,
    balanced: bool = False,
) -> DomainExtractor:
    """The dataset's extractor from the cache, or trained now on `images` (uint8) and cached (written atomically)."""
    key = f"{dataset_md5}-v{EXTRACTOR_VERSION}-e{epochs}-s{seed}" + ("-balanced" if balanced else "")
    weights, meta = cache_dir / f"{key}.safetensors", cache_dir / f"{key}.json"
    model = FeatureClassifier(images.shape[1], images.shape[2], num_classes)
    if weights.is_file() and meta.is_file():
        model.load_state_dict(load_file(str(weights)))
        return DomainExtractor(model.eval(), json.loads(meta.read_text())["accuracy"], key, batch_size)
    model, accuracy = train_extractor(to_unit_range(images), labels, num_classes, epochs, seed, balanced)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    replace_file(lambda tmp: save_file(state, str(tmp)), weights)
    info = json.dumps({"accuracy": accuracy, "dataset_md5": dataset_md5, "epochs": epochs})
    replace_file(lambda tmp: tmp.write_text(info), meta)
    return DomainExtractor(model, accuracy, key, batch_size)


def features_of(extractor, images_uint8: torch.Tensor) -> np.ndarray:
    """Features of every image as float64 on the host, `extractor.batch_size` at a time (any extractor: numpy, or
    a tensor on its device)."""
    step = extractor.batch_size
    return np.concatenate(
        [torch.as_tensor(extractor(images_uint8[i : i + step])).double().cpu().numpy() for i in range(0, len(images_uint8), step)]
    )


def real_split_fid(extractor, real_uint8: torch.Tensor, seed: int) -> float:
    """FID between two random halves of the real images: how low FID can go on this data."""
    order = torch.randperm(len(real_uint8), generator=torch.Generator().manual_seed(seed))
    half = len(real_uint8) // 2
    a = features_to_stats(features_of(extractor, real_uint8[order[:half]]))
    b = features_to_stats(features_of(extractor, real_uint8[order[half:]]))
    return stats_to_fid(a, b)
