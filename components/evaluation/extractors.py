"""Feature extractors, registered by name in EXTRACTORS; each metric's name carries its extractor's name
(`fid_domain`, `kid_inception`), and `gate.metric` may name the FID of any of them.

An extractor is a callable from uint8 images (N, C, H, W) to features (N, D), with `name`, `batch_size` and `tag`
(its name and its precision setting where that is not fp32: what cached statistics are keyed by):
float64 numpy (domain), or a float32 tensor left on the extractor's device (inception), which StatsAccumulator
accumulates there. Builders take an ExtractorInputs and return one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from components.core.device import pick_device
from components.core.errors import GanopsError
from components.core.names import DOMAIN, INCEPTION
from components.core.plugins import Registry
from components.evaluation.domain import DomainExtractor, load_or_train_extractor
from components.evaluation.inception import load_inception, preprocess, resolve_weights

FP32, TF32 = "fp32", "tf32"
INCEPTION_PRECISIONS = (FP32, TF32)  # TF32 applies on CUDA only


@dataclass(frozen=True)
class ExtractorInputs:
    """What a builder may need: the cache folder and batch size always; the dataset for extractors trained on it
    (domain); a weights file for pretrained ones (inception)."""

    cache_dir: Path
    batch_size: int = 50  # 0: inception_batch_size(device)
    device: str = "auto"
    images: torch.Tensor | None = None  # uint8 (N, C, H, W)
    labels: torch.Tensor | None = None
    num_classes: int = 0
    dataset_md5: str = ""
    epochs: int = 8
    seed: int = 0
    weights: str | None = None
    precision: str = FP32  # inception: one of INCEPTION_PRECISIONS


@dataclass
class InceptionExtractor:
    model: torch.nn.Module
    device: torch.device
    batch_size: int = 50
    name: str = INCEPTION
    allow_tf32: bool = False  # see below

    @property
    def tag(self) -> str:
        return f"{self.name}-{TF32}" if self.allow_tf32 else self.name

    @torch.no_grad()
    def __call__(self, images_uint8: torch.Tensor) -> torch.Tensor:
        x = preprocess(images_uint8.to(self.device))  # the resize runs on the extractor's device
        # cuDNN's convolutions default to TF32 on CUDA: measured on an H100 and an H200, features then differ from the
        # reference TorchScript's by up to 0.004 (FID by 0.005 at 50,000 samples), and a 50,000-sample FID takes about
        # half the time (12.9 s against 23.9 s on the H100). In true fp32 (the default) they are identical.
        cudnn = torch.backends.cudnn
        with cudnn.flags(enabled=cudnn.enabled, benchmark=cudnn.benchmark, deterministic=cudnn.deterministic, allow_tf32=self.allow_tf32):
            return self.model(x)  # stays on the device: no host round trip per batch


def inception_batch_size(device: torch.device) -> int:
    """Images per Inception batch when none is set: 256 on a GPU (a few GB of activations at 299x299), 50 on CPU."""
    return 256 if device.type == "cuda" else 50


class Extractor(Protocol):
    """What every builder in EXTRACTORS returns (see the module docstring)."""

    name: str
    batch_size: int

    @property
    def tag(self) -> str: ...

    def __call__(self, images_uint8: torch.Tensor) -> np.ndarray | torch.Tensor: ...


EXTRACTORS: Registry[Callable[[ExtractorInputs], Extractor]] = Registry("feature extractor")


@EXTRACTORS.register(DOMAIN)
def domain_extractor(inputs: ExtractorInputs) -> DomainExtractor:
    """The dataset's own classifier (trained on first use, cached per dataset md5 under cache_dir/extractors).

    Raises GanopsError when `inputs` carries no dataset images or labels to train it on.
    """
    if inputs.images is None or inputs.labels is None:
        raise GanopsError("the domain feature extractor needs the dataset's images and labels (ExtractorInputs.images, .labels)")
    return load_or_train_extractor(
        inputs.cache_dir / "extractors",
        inputs.dataset_md5,
        inputs.images,
        inputs.labels,
        inputs.num_classes,
        inputs.epochs,
        inputs.seed,
        inputs.batch_size,
    )


@EXTRACTORS.register(INCEPTION)
def inception_extractor(inputs: ExtractorInputs) -> InceptionExtractor:
    """The standard FID Inception-v3 (weights resolved as docs/configuration.md, "Inception weights", says; cached under cache_dir/inception)."""
    if inputs.precision not in INCEPTION_PRECISIONS:
        raise GanopsError(
            f"Inception precision {inputs.precision!r} (--precision, evaluate.inception_precision) is not one of "
            f"{', '.join(INCEPTION_PRECISIONS)}"
        )
    device = pick_device(inputs.device)
    return InceptionExtractor(
        load_inception(resolve_weights(inputs.weights, inputs.cache_dir / "inception"), device),
        device,
        inputs.batch_size or inception_batch_size(device),
        allow_tf32=inputs.precision == TF32 and device.type == "cuda",
    )
