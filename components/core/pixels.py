"""Pixel conversions between stored images (uint8, 0..255) and network images (float, [-1, 1]), written once."""

from __future__ import annotations

import numpy as np
import torch


def to_unit_range(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 (N, C, H, W) -> float32 in [-1, 1]."""
    tensor = torch.from_numpy(images) if isinstance(images, np.ndarray) else images
    return tensor.float().div_(127.5).sub_(1.0)


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """Images in [-1, 1] -> uint8 0..255, rounded as an 8-bit PNG writer would."""
    return ((images.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


def quantize(images: torch.Tensor) -> torch.Tensor:
    """Round images in [-1, 1] to the 8-bit grid real images live on, so both sides are measured alike."""
    return torch.round((images.clamp(-1, 1) + 1) * 127.5) / 127.5 - 1
